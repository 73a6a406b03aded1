"""hopkit::sample_negatives: uniform negatives per user, rejecting the user's
positives (counter-based: the same result for every thread count)."""

from __future__ import annotations

import torch
from torch import Tensor

from .. import _backend
from ..ops.sampling import negatives_dtype, negatives_np
from .graph import as_np, from_np

_DT = {"int32": torch.int32, "int64": torch.int64}


@torch.library.custom_op("hopkit::sample_negatives", mutates_args=())
def sample_negatives(indptr: Tensor, indices: Tensor, n_cols: int, users: Tensor, n_neg: int,
                     seed: int, backend: str) -> Tensor:
    """seed: the uint64 seed as int64 (two's complement: schema ints are signed)."""
    be = _backend.resolve(backend, "sample_negatives")
    out = negatives_np(as_np(indptr), as_np(indices), indptr.shape[0] - 1, n_cols, as_np(users),
                       n_neg, seed % 2**64, be)
    return torch.from_numpy(out)


@sample_negatives.register_fake
def _(indptr, indices, n_cols, users, n_neg, seed, backend):
    dt = _DT[negatives_dtype(str(users.dtype).removeprefix("torch."), n_cols)]
    return users.new_empty((users.shape[0], n_neg), dtype=dt)


def sample_negatives_tensors(R, users, n_neg, seed, backend):
    signed = seed - 2**64 if seed >= 2**63 else seed
    return sample_negatives(from_np(R.indptr), from_np(R.indices), R.n_cols, users.detach(),
                            n_neg, signed, backend or "auto")
