"""topk: batched top-K inner-product retrieval with exclusion; ItemIndex."""

from __future__ import annotations

import numbers

import numpy as np

from .. import _backend
from .._torch import is_tensor
from ..csr import CSR, as_csr
from ._common import check_dense as _check_dense
from ._common import check_device as _check_device
from ._common import dtype_name as _dtype_name
from ._common import to_numpy as _to_numpy
from ._cuda import route as _route


def _dense(op, name, x, dtype=None, as_numpy=True, cuda=False):
    """check_dense with topk's wording; a C-contiguous NumPy array unless
    ``as_numpy`` is False (a tensor then stays a tensor, for the operator)."""
    a = _check_dense(op, name, x, dtype=dtype, same_as="the dtype of queries", cuda=cuda)
    return np.ascontiguousarray(_to_numpy(a)) if as_numpy else a


class ItemIndex:
    """Items [N, d] prepared once for repeated :func:`topk` calls.

    The native backend packs the items into its micro-kernel's panel layout
    (128-byte panels of items, feature-major) once, here, instead of on every
    call; a serving loop over single queries then reads the packed items
    straight from memory (FAISS ``IndexFlatIP`` likewise keeps its vectors).
    The caller's array is referenced, not copied (the Numba/NumPy backends
    read it directly) and never written; do not modify it while the index is
    in use. Pass the index as ``items`` to ``topk`` (or ``evaluate``).
    """

    __slots__ = ("items", "_prepared", "torch_in", "device")

    def __init__(self, items):
        dev, ins, _ = _route("ItemIndex", None, items=items)
        self.device = dev  # None for host items; a CUDA index keeps the device tensor
        self.torch_in = is_tensor(ins["items"])
        if dev is None:
            _check_device("ItemIndex", items=items)
            self.items = _dense("ItemIndex", "items", items)
        else:
            self.items = _dense("ItemIndex", "items", ins["items"], as_numpy=False,
                                cuda=True).detach()
        self._prepared = {}

    @property
    def shape(self):
        return self.items.shape

    @property
    def dtype(self):
        return self.items.dtype

    def __len__(self):
        return self.items.shape[0]

    def __repr__(self):
        return f"ItemIndex(shape={self.shape}, dtype={self.dtype})"

    def prepared(self, be):
        """The items in backend ``be``'s layout (built on first use, cached)."""
        key = _backend.name_of(be)
        p = self._prepared.get(key)
        if p is None:
            p = be.topk_prepare(self.items)
            self._prepared[key] = p
        return p


def sorted_rows(A: CSR):
    """(indptr, indices) of A with every row sorted and free of duplicates:
    A's own arrays when they already are (checked once, cached on A)."""
    c = A._cache.get("topk_sorted_rows")
    if c is None:
        ind = A.indices
        if A.nnz > 1:
            rows = A.row_ids()
            same = rows[1:] == rows[:-1]
            ok = not bool(np.any(same & (ind[1:] <= ind[:-1])))
        else:
            ok = True
        if ok:
            c = (A.indptr, ind)
        else:
            rows = A.row_ids()
            order = np.lexsort((ind, rows))
            s, r = ind[order], rows[order]
            keep = np.ones(len(s), dtype=bool)
            keep[1:] = (r[1:] != r[:-1]) | (s[1:] != s[:-1])
            s, r = np.ascontiguousarray(s[keep]), r[keep]
            indptr = np.zeros(A.n_rows + 1, dtype=np.int64)
            np.cumsum(np.bincount(r, minlength=A.n_rows), out=indptr[1:])
            c = (indptr, s)
        A._cache["topk_sorted_rows"] = c
    return c


def _check_ids(op, name, A: CSR, N):
    """Every id of A must be an item: A.n_cols <= N, or its largest id < N."""
    if A.n_cols <= N or A.nnz == 0:
        return
    bad = np.flatnonzero(A.indices >= N)
    if len(bad):
        e = int(bad[0])
        r = int(np.searchsorted(A.indptr, e, side="right") - 1)
        raise ValueError(f"{op}: {name} ids must lie in [0, {N}) (items.shape[0]); row {r} has "
                         f"item {int(A.indices[e])}")


def _check_pair(op, Q, X):
    """queries [B, d] and items [N, d] of one dtype (NumPy or torch); (B, N)."""
    if _dtype_name(X) != _dtype_name(Q):
        raise TypeError(f"{op}: items must have the dtype of queries ({_dtype_name(Q)}), got "
                        f"{_dtype_name(X)}")
    if X.shape[1] != Q.shape[1]:
        raise ValueError(f"{op}: items must have d = {Q.shape[1]} columns (queries.shape[1]), "
                         f"got {X.shape[1]}")
    return Q.shape[0], X.shape[0]


def _check_k(op, k):
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"{op}: k must be an integer, got {type(k).__name__}")
    if k < 0:
        raise ValueError(f"{op}: k must be >= 0, got {k}")
    return int(k)


def _exclusion(op, exclude, exclude_rows, B, N):
    if exclude is None:
        if exclude_rows is not None:
            raise ValueError(f"{op}: exclude_rows needs exclude (the CSR whose rows it selects)")
        return None, None, None
    E = as_csr(exclude, op, "exclude")
    _check_ids(op, "exclude", E, N)
    indptr, indices = sorted_rows(E)
    if exclude_rows is None:
        if E.n_rows != B:
            raise ValueError(f"{op}: exclude must have one row per query ({B} rows), or pass "
                             f"exclude_rows to map queries to its rows; got {E.n_rows} rows")
        return indptr, indices, None
    if is_tensor(exclude_rows):  # metadata here, the range inside the operator
        _check_exclude_rows_meta(op, exclude_rows, B)
        return indptr, indices, exclude_rows
    return indptr, indices, check_exclude_rows(op, exclude_rows, B, E.n_rows)


def _check_exclude_rows_meta(op, r, B):
    if r.ndim != 1 or not _dtype_name(r).startswith(("int", "uint")):
        raise ValueError(f"{op}: exclude_rows must be a 1-D integer array, got "
                         f"{_dtype_name(r)} with shape {tuple(r.shape)}")
    if r.shape[0] != B:
        raise ValueError(f"{op}: exclude_rows must have one entry per query ({B}), got "
                         f"{r.shape[0]}")


def check_exclude_rows(op, exclude_rows, B, n_rows):
    """exclude_rows as int64 [B] with values in [0, n_rows) (exclude's rows)."""
    r = np.asarray(_to_numpy(exclude_rows))
    _check_exclude_rows_meta(op, r, B)
    if B:
        bad = (r < 0) | (r >= n_rows)
        if bad.any():
            b = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{op}: exclude_rows must lie in [0, {n_rows}) (exclude.shape[0])"
                             f"; exclude_rows[{b}] = {int(r[b])}")
    return np.ascontiguousarray(r, dtype=np.int64)


def _candidates(op, candidates, B, N):
    if candidates is None:
        return None, None
    C = as_csr(candidates, op, "candidates")
    if C.n_rows != B:
        raise ValueError(f"{op}: candidates must have one row per query ({B} rows), got "
                         f"{C.n_rows}")
    _check_ids(op, "candidates", C, N)
    return sorted_rows(C)


def topk(queries, items, k, exclude=None, exclude_rows=None, candidates=None, *, backend=None):
    """The k items with the largest inner product for each query.

    Parameters
    ----------
    queries : [B, d] float32/float64, NumPy array or torch tensor.
    items : [N, d] of the same dtype, or a :class:`hopkit.ItemIndex`.
    k : int >= 0. Rows have k entries; when fewer than k items are left (after
        exclusion / candidates, or k > N) the tail is idx -1, score -inf.
    exclude : optional CSR (hopkit / scipy / torch sparse): row r lists item
        ids never returned for the query mapped to row r (e.g. the training
        items of a user). Rows may be unsorted or repeat ids.
    exclude_rows : optional int array [B]: query b uses row ``exclude_rows[b]``
        of ``exclude`` (so ``exclude=train, exclude_rows=user_ids`` serves any
        batch of users without slicing). Default: row b (exclude has B rows).
    candidates : optional CSR with B rows: query b only scores the items of
        row b (filtered serving).
    backend : "auto"/None, "native", "numba" or "numpy".

    Returns ``(scores, idx)``: scores [B, k] in the input dtype, sorted
    descending; idx [B, k] int64. Ties go to the smaller item index, on every
    backend. NaN and -inf scores never enter the top-k (a NaN in a query or
    item row removes the affected scores; a row with every score NaN is all
    padding). Torch in (queries, items or an ItemIndex built from a tensor)
    gives torch tensors out (no gradient); NumPy in gives NumPy out.
    """
    op = "topk"
    index = items if isinstance(items, ItemIndex) else None
    if index is not None and index.device is None and is_tensor(queries) \
            and queries.device.type == "cuda":
        raise TypeError(f"{op}: queries are on {queries.device} but items is an ItemIndex of "
                        "CPU arrays; build the ItemIndex from a CUDA tensor")
    dev, ins, back = _route(op, backend, queries=queries,
                            items=index.items if index is not None and index.device is not None
                            else (None if index is not None else items))
    queries, cuda = ins["queries"], dev is not None
    if index is None:
        items = ins["items"]
    if not cuda:
        _check_device(op, queries=queries, items=None if index is not None else items)
    torch_out = is_tensor(queries) or (index.torch_in if index is not None else is_tensor(items))
    # tensors in: hopkit::topk (a host ItemIndex keeps the native packed layout, outside it)
    as_op = torch_out and (index is None or cuda)
    Q = _dense(op, "queries", queries, as_numpy=not as_op, cuda=cuda)
    if index is not None:
        X = index.items
    else:
        X = _dense(op, "items", items, as_numpy=not as_op, cuda=cuda)
    if cuda:
        Q, X = Q.detach(), X.detach()
    B, N = _check_pair(op, Q, X)
    k = _check_k(op, k)
    ex_indptr, ex_indices, ex_rows = _exclusion(op, exclude, exclude_rows, B, N)
    c_indptr, c_indices = _candidates(op, candidates, B, N)
    if (ex_indices is not None and c_indices is not None
            and ex_indices.dtype != c_indices.dtype):
        ex_indices, c_indices = ex_indices.astype(np.int64), c_indices.astype(np.int64)
    if as_op:
        from ..torch_ops.topk import topk_tensors

        return back(topk_tensors(Q, X, k, ex_indptr, ex_indices, ex_rows, c_indptr, c_indices,
                                 backend))
    be = _backend.resolve(backend, op)
    scores = np.full((B, k), -np.inf, dtype=Q.dtype)
    idx = np.full((B, k), -1, dtype=np.int64)
    if k and B:
        prepared = index.prepared(be) if index is not None else be.topk_prepare(X)
        be.topk(Q, prepared, N, k, ex_indptr, ex_indices, ex_rows, c_indptr, c_indices,
                scores, idx)
    if torch_out:
        import torch

        return torch.from_numpy(scores), torch.from_numpy(idx)
    return scores, idx


def topk_scores(scores, k, exclude=None, exclude_rows=None, *, backend=None):
    """The k largest of given scores per row, with exclusion: the selection of
    :func:`topk` for models whose scores are not one inner product (e.g. the
    GF-CF graph filter scores a block of users against all items).

    scores : [B, N] float32/float64, NumPy array or torch tensor (CPU or
        CUDA; on CUDA also float16/bfloat16, selected in float32).
    k, exclude, exclude_rows : as in :func:`topk` (item j is column j).

    Returns ``(scores, idx)`` [B, k], sorted descending, ties to the smaller
    item index, padded with -inf / -1; NaN and -inf never enter. Runs the
    native blocked select (threshold-pruned buffers, exclusion walk) in
    parallel over rows and, for few rows, over item ranges; on CUDA the
    select kernel of ``topk`` over the given matrix.
    """
    op = "topk_scores"
    dev, ins, back = _route(op, backend, scores=scores)
    scores, cuda = ins["scores"], dev is not None
    if not cuda:
        _check_device(op, scores=scores)
    S = _dense(op, "scores", scores, as_numpy=not is_tensor(scores), cuda=cuda)
    B, N = S.shape
    k = _check_k(op, k)
    ex_indptr, ex_indices, ex_rows = _exclusion(op, exclude, exclude_rows, B, N)
    if is_tensor(S):
        from ..torch_ops.topk import topk_scores_tensors

        return back(topk_scores_tensors(S, k, ex_indptr, ex_indices, ex_rows, backend))
    be = _backend.resolve(backend, op)
    out_s = np.full((B, k), -np.inf, dtype=S.dtype)
    idx = np.full((B, k), -1, dtype=np.int64)
    if k and B and N:
        be.topk_select(S, k, ex_indptr, ex_indices, ex_rows, out_s, idx)
    return out_s, idx
