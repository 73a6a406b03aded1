"""hopkit::sample_negatives: uniform negatives per user, rejecting the user's
positives (counter-based: the same result for every thread count, backend
and device)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..ops._common import check_ids
from ..ops.sampling import negatives_dtype
from .graph import csr_arrays, kernel_backend

_DT = {"int32": torch.int32, "int64": torch.int64}


def _out_dtype(users, n_cols):
    return _DT[negatives_dtype(str(users.dtype).removeprefix("torch."), n_cols)]


@torch.library.custom_op("hopkit::sample_negatives", mutates_args=())
def sample_negatives(indptr: Tensor, indices: Tensor, n_cols: int, users: Tensor, n_neg: int,
                     seed: int, backend: str) -> Tensor:
    """seed: the uint64 seed as int64 (two's complement: schema ints are signed)."""
    be, arr = kernel_backend(backend, "sample_negatives", users)
    u = check_ids("sample_negatives", "users", users, indptr.shape[0] - 1, "R")
    u = u.to(_out_dtype(users, n_cols)).contiguous()
    out = u.new_empty(u.shape[0] * n_neg)
    if out.numel():
        be.sample_negatives(arr(indptr), arr(indices), n_cols, arr(u), n_neg, seed % 2**64,
                            arr(out))
    return out.reshape(u.shape[0], n_neg)


@sample_negatives.register_fake
def _(indptr, indices, n_cols, users, n_neg, seed, backend):
    return users.new_empty((users.shape[0], n_neg), dtype=_out_dtype(users, n_cols))


def sample_negatives_tensors(R, users, n_neg, seed, backend):
    signed = seed - 2**64 if seed >= 2**63 else seed
    indptr, indices = csr_arrays(R, users.device)
    return sample_negatives(indptr, indices, R.n_cols, users.detach(), n_neg, signed,
                            backend or "auto")
