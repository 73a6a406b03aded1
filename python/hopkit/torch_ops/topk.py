"""hopkit::topk and hopkit::topk_scores: top-K retrieval with exclusion as
operators (outputs carry no gradient). The exclusion and candidate CSRs cross
as (indptr, indices) tensors with sorted, duplicate-free rows; ``ex_rows``
maps each query to its exclusion row and is range-checked here."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .. import _backend
from .graph import as_np, from_np
from .spmm import _NP, as_tensor


def _rows(ex_indptr, ex_rows, B):
    if ex_rows is None:
        return None
    from ..ops.topk import check_exclude_rows

    return check_exclude_rows("topk", as_np(ex_rows), B, ex_indptr.shape[0] - 1)


def _outputs(B, k, dtype):
    return np.full((B, k), -np.inf, dtype=_NP[dtype]), np.full((B, k), -1, dtype=np.int64)


@torch.library.custom_op("hopkit::topk", mutates_args=())
def topk(queries: Tensor, items: Tensor, k: int, ex_indptr: Tensor | None,
         ex_indices: Tensor | None, ex_rows: Tensor | None, c_indptr: Tensor | None,
         c_indices: Tensor | None, backend: str) -> tuple[Tensor, Tensor]:
    """(scores [B, k], idx [B, k] int64), sorted, ties to the smaller item."""
    be = _backend.resolve(backend, "topk")
    B, N = queries.shape[0], items.shape[0]
    scores, idx = _outputs(B, k, queries.dtype)
    rows = _rows(ex_indptr, ex_rows, B)
    if k and B:
        X = as_np(items)
        be.topk(as_np(queries), be.topk_prepare(X), N, k, as_np(ex_indptr), as_np(ex_indices),
                rows, as_np(c_indptr), as_np(c_indices), scores, idx)
    return torch.from_numpy(scores), torch.from_numpy(idx)


@topk.register_fake
def _(queries, items, k, ex_indptr, ex_indices, ex_rows, c_indptr, c_indices, backend):
    B = queries.shape[0]
    return queries.new_empty((B, k)), queries.new_empty((B, k), dtype=torch.int64)


@torch.library.custom_op("hopkit::topk_scores", mutates_args=())
def topk_scores(scores: Tensor, k: int, ex_indptr: Tensor | None, ex_indices: Tensor | None,
                ex_rows: Tensor | None, backend: str) -> tuple[Tensor, Tensor]:
    be = _backend.resolve(backend, "topk_scores")
    B, N = scores.shape
    out_s, idx = _outputs(B, k, scores.dtype)
    rows = _rows(ex_indptr, ex_rows, B)
    if k and B and N:
        be.topk_select(as_np(scores), k, as_np(ex_indptr), as_np(ex_indices), rows, out_s, idx)
    return torch.from_numpy(out_s), torch.from_numpy(idx)


@topk_scores.register_fake
def _(scores, k, ex_indptr, ex_indices, ex_rows, backend):
    B = scores.shape[0]
    return scores.new_empty((B, k)), scores.new_empty((B, k), dtype=torch.int64)


def _t(a):
    return None if a is None else (a if isinstance(a, Tensor) else from_np(a))


def topk_tensors(Q, X, k, ex_indptr, ex_indices, ex_rows, c_indptr, c_indices, backend):
    """hopkit.topk's torch path on validated inputs (NumPy CSR arrays or tensors)."""
    return topk(as_tensor(Q).detach(), as_tensor(X).detach(), k, _t(ex_indptr), _t(ex_indices),
                _t(ex_rows), _t(c_indptr), _t(c_indices), backend or "auto")


def topk_scores_tensors(S, k, ex_indptr, ex_indices, ex_rows, backend):
    return topk_scores(S.detach(), k, _t(ex_indptr), _t(ex_indices), _t(ex_rows),
                       backend or "auto")
