"""Negative sampling for BPR training: validation, allocation, dispatch."""

from __future__ import annotations

import numpy as np

from .. import _backend
from .._torch import is_tensor
from ..csr import CSR, as_csr
from ._common import check_device as _check_device
from ._common import check_ids as _check_ids
from ._common import check_ids_meta as _check_ids_meta
from ._cuda import route as _route


def _check_rows_sorted(op, R: CSR):
    """Rows must be sorted and duplicate-free (the sampler binary-searches them)."""
    ok = R._cache.get("rows_sorted_unique")
    if ok is None:
        idx = np.asarray(R.indices, dtype=np.int64)
        step = np.diff(idx)
        inner = np.ones(max(R.nnz - 1, 0), dtype=bool)
        starts = R.indptr[1:-1]
        starts = starts[(starts > 0) & (starts < R.nnz)]
        inner[starts - 1] = False  # a step across a row boundary may go down
        bad = inner & (step <= 0)
        ok = -1 if not bad.any() else int(np.flatnonzero(bad)[0])
        R._cache["rows_sorted_unique"] = ok
    if ok >= 0:
        raise ValueError(f"{op}: R must have sorted, duplicate-free columns in each row; "
                         f"indices[{ok}] = {R.indices[ok]} >= indices[{ok + 1}] = "
                         f"{R.indices[ok + 1]} (build it with CSR.from_coo)")


def _check_seed(op, seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not \
            0 <= int(seed) < 2**64:
        raise ValueError(f"{op}: seed must be an integer in [0, 2**64), got {seed!r}")
    return int(seed)


def sample_negatives(R, users, n_neg=1, seed=0, backend=None):
    """Uniform negative items per user, rejecting the user's positives.

    Parameters
    ----------
    R : hopkit.CSR (users x items; sorted, duplicate-free rows, as ``from_coo``
        builds them), a scipy sparse matrix or a torch sparse tensor.
    users : int32/int64 array or tensor [B] of rows of R.
    n_neg : negatives per user (>= 0).
    seed : integer in [0, 2**64). Sample ``b * n_neg + j`` depends only on
        ``(seed, b * n_neg + j)`` (counter-based splitmix64), so the result is
        the same for every thread count and backend.

    Returns an array (or tensor, if ``users`` is one, on its device) [B, n_neg]
    with the dtype of ``users``, int64 when R has more than 2**31 columns:
    items not in the user's row, uniform over those items; -1 for a user who
    has interacted with every item. CUDA ``users`` get the same items as on
    the CPU (the draws are the same counter-based stream; R is uploaded once
    and cached on it).
    """
    op = "sample_negatives"
    R = as_csr(R, op, "R")
    dev, ins, back = _route(op, backend, users=users)
    users = ins["users"]
    if dev is None:
        _check_device(op, users=users)
    if isinstance(n_neg, bool) or not isinstance(n_neg, (int, np.integer)) or n_neg < 0:
        raise ValueError(f"{op}: n_neg must be an integer >= 0, got {n_neg!r}")
    if R.n_cols >= 2**32:
        raise ValueError(f"{op}: R must have fewer than 2**32 columns, got {R.n_cols}")
    seed = _check_seed(op, seed)
    _check_rows_sorted(op, R)
    if is_tensor(users):  # hopkit::sample_negatives; the ids' range is checked there
        from ..torch_ops.sampling import sample_negatives_tensors

        _check_ids_meta(op, "users", users)
        return back(sample_negatives_tensors(R, users, int(n_neg), seed, backend))
    return negatives_np(R.indptr, R.indices, R.n_rows, R.n_cols, users, int(n_neg), seed,
                        _backend.resolve(backend, op))


def negatives_dtype(users_dtype, n_cols):
    """The output's index dtype: the users' (int32 or int64), int64 when the
    item ids need it."""
    return users_dtype if users_dtype in ("int32", "int64") and n_cols <= 2**31 else "int64"


def negatives_np(indptr, indices, n_rows, n_cols, users, n_neg, seed, be):
    """[B, n_neg] negatives on validated R arrays; users range-checked here."""
    u = _check_ids("sample_negatives", "users", users, n_rows, "R")
    u = np.ascontiguousarray(u, dtype=negatives_dtype(u.dtype.name, n_cols))
    out = np.empty(u.shape[0] * n_neg, dtype=u.dtype)
    if out.size:
        be.sample_negatives(indptr, indices, n_cols, u, n_neg, seed, out)
    return out.reshape(u.shape[0], n_neg)


SAMPLING = ("pairs", "users")


def check_sampling(op, sampling):
    """``sampling`` must name one of bpr_triples' epoch modes (SAMPLING)."""
    if sampling not in SAMPLING:
        raise ValueError(f"{op}: sampling must be one of {SAMPLING}, got {sampling!r}")
    return sampling


def bpr_triples(R, seed=0, sampling="pairs", backend=None):
    """One epoch of BPR triples ``(users, pos, neg)``: int64 arrays of length
    ``R.nnz``, one negative each (``sample_negatives``); reproducible for a seed.

    ``sampling="pairs"``: every nonzero (u, i) of R once, in a random order
    (what PyG's and RecBole's LightGCN loops do). ``sampling="users"``: R.nnz
    draws of a user uniformly among those with at least one item, then one of
    that user's items uniformly (what the LightGCN paper's code does: every
    user weighs the same, as in the user-averaged Recall/NDCG, instead of in
    proportion to their degree).
    """
    op = "bpr_triples"
    R = as_csr(R, op, "R")
    seed = _check_seed(op, seed)
    check_sampling(op, sampling)
    rng = np.random.default_rng(seed)
    indices = np.asarray(R.indices, dtype=np.int64)
    if sampling == "pairs":
        perm = rng.permutation(R.nnz)
        users, pos = R.row_ids()[perm], indices[perm]
    else:
        deg = R.row_degree()
        active = np.flatnonzero(deg > 0)
        users = active[rng.integers(0, len(active), R.nnz)] if R.nnz else active[:0]
        pos = indices[np.asarray(R.indptr, dtype=np.int64)[users]
                      + rng.integers(0, deg[users])]
    neg = sample_negatives(R, users, 1, seed=seed, backend=backend)[:, 0]
    return users, pos, neg
