"""hopkit::topk and hopkit::topk_scores: top-K retrieval with exclusion as
operators (outputs carry no gradient). The exclusion and candidate CSRs cross
as (indptr, indices) tensors with sorted, duplicate-free rows; ``ex_rows``
maps each query to its exclusion row and is range-checked here."""

from __future__ import annotations

import torch
from torch import Tensor

from .graph import from_np, kernel_backend
from .spmm import as_tensor


def _rows(ex_indptr, ex_rows, B):
    """ex_rows range-checked (on the host: one copy back from a device) as int64."""
    if ex_rows is None:
        return None
    from ..ops.topk import check_exclude_rows

    r = check_exclude_rows("topk", ex_rows.detach().cpu().numpy(), B, ex_indptr.shape[0] - 1)
    return torch.from_numpy(r).to(ex_rows.device)


def _outputs(like, B, k):
    return (like.new_full((B, k), float("-inf")),
            like.new_full((B, k), -1, dtype=torch.int64))


@torch.library.custom_op("hopkit::topk", mutates_args=())
def topk(queries: Tensor, items: Tensor, k: int, ex_indptr: Tensor | None,
         ex_indices: Tensor | None, ex_rows: Tensor | None, c_indptr: Tensor | None,
         c_indices: Tensor | None, backend: str) -> tuple[Tensor, Tensor]:
    """(scores [B, k], idx [B, k] int64), sorted, ties to the smaller item."""
    be, arr = kernel_backend(backend, "topk", queries)
    B, N = queries.shape[0], items.shape[0]
    scores, idx = _outputs(queries, B, k)
    rows = _rows(ex_indptr, ex_rows, B)
    if k and B:
        be.topk(arr(queries), be.topk_prepare(arr(items)), N, k, arr(ex_indptr),
                arr(ex_indices), arr(rows), arr(c_indptr), arr(c_indices), arr(scores), arr(idx))
    return scores, idx


@topk.register_fake
def _(queries, items, k, ex_indptr, ex_indices, ex_rows, c_indptr, c_indices, backend):
    B = queries.shape[0]
    return queries.new_empty((B, k)), queries.new_empty((B, k), dtype=torch.int64)


@torch.library.custom_op("hopkit::topk_scores", mutates_args=())
def topk_scores(scores: Tensor, k: int, ex_indptr: Tensor | None, ex_indices: Tensor | None,
                ex_rows: Tensor | None, backend: str) -> tuple[Tensor, Tensor]:
    be, arr = kernel_backend(backend, "topk_scores", scores)
    B, N = scores.shape
    out_s, idx = _outputs(scores, B, k)
    rows = _rows(ex_indptr, ex_rows, B)
    if k and B and N:
        be.topk_select(arr(scores), k, arr(ex_indptr), arr(ex_indices), arr(rows), arr(out_s),
                       arr(idx))
    return out_s, idx


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
