"""hopkit.CSR: a validated compressed-sparse-row graph.

Rows are message *targets*: ``spmm(A, X)[i]`` aggregates ``X[j]`` over the
nonzeros ``(i, j)`` of row i. ``CSR.from_edge_index`` follows PyG (messages flow
from ``edge_index[0]`` to ``edge_index[1]``, so the CSR row is ``edge_index[1]``).
"""

from __future__ import annotations

import numpy as np

from . import _backend
from ._torch import is_tensor, require_torch

_INDEX_DTYPES = (np.int32, np.int64)
_VALUE_DTYPES = (np.float32, np.float64)


def _as_numpy(x, name, op):
    if is_tensor(x):
        if x.device.type != "cpu":
            raise TypeError(f"{op}: {name} is on {x.device}; CSR arrays live on the CPU")
        x = x.detach().resolve_conj().numpy()
    return np.asarray(x)


def _is_cupy(x) -> bool:
    return type(x).__module__.split(".")[0] == "cupy"


def _first_bad(mask) -> int:
    return int(np.flatnonzero(mask)[0])


def _index_array(x, name, op, length=None):
    a = _as_numpy(x, name, op)
    if a.ndim != 1:
        raise ValueError(f"{op}: {name} must be 1-D, got shape {a.shape}")
    if a.size == 0 and a.dtype.kind == "f":  # [] parses as float64
        a = a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{op}: {name} must have an integer dtype, got {a.dtype}")
    if a.dtype not in _INDEX_DTYPES:
        a = a.astype(np.int64)
    if length is not None and a.shape[0] != length:
        raise ValueError(f"{op}: {name} must have length {length}, got {a.shape[0]}")
    return np.ascontiguousarray(a)


def _value_array(x, name, op, length):
    if x is None:
        return None
    a = _as_numpy(x, name, op)
    if a.dtype not in _VALUE_DTYPES:
        raise TypeError(f"{op}: {name} must be float32 or float64, got {a.dtype}")
    if a.ndim != 1 or a.shape[0] != length:
        raise ValueError(f"{op}: {name} must have shape ({length},), got {a.shape}")
    finite = np.isfinite(a)
    if not finite.all():
        raise ValueError(f"{op}: {name} must be finite; {name}[{_first_bad(~finite)}] is "
                         f"{a[_first_bad(~finite)]}")
    return np.ascontiguousarray(a)


def _shape(shape, op):
    """shape as two Python ints >= 0 (NumPy integers accepted; floats, bools not)."""
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if dims is None or len(dims) != 2 or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0
            for d in dims):
        raise ValueError(f"{op}: shape must be two integers (n_rows, n_cols) >= 0, got {shape!r}")
    return int(dims[0]), int(dims[1])


def _readonly(a):
    if a is None:
        return None
    v = a.view()
    v.flags.writeable = False
    return v


class CSR:
    """A sparse matrix / graph in CSR form.

    Parameters
    ----------
    indptr : int array [n_rows + 1] (stored as int64)
    indices : int32 or int64 array [nnz] (other integer dtypes become int64)
    values : optional float32/float64 array [nnz]
    shape : (n_rows, n_cols); n_cols defaults to ``max(indices) + 1``

    ``weighted`` is ``values is not None``.

    Validation (each failure is a ``ValueError`` naming the argument and the
    first bad position): indptr starts at 0, ends at nnz and never decreases;
    indices lie in ``[0, n_cols)``; values are finite. The arrays are not
    copied when they already have a valid dtype and layout, and hopkit never
    writes into them.
    """

    __slots__ = ("indptr", "indices", "values", "weighted", "shape", "_cache", "__weakref__")

    def __init__(self, indptr, indices, values=None, shape=None, *, validate=True):
        op = "CSR"
        indptr = _index_array(indptr, "indptr", op)
        if indptr.dtype != np.int64:
            indptr = indptr.astype(np.int64)
        if indptr.shape[0] < 1:
            raise ValueError(f"{op}: indptr must have at least one entry (n_rows + 1), got 0")
        indices = _index_array(indices, "indices", op)
        nnz = indices.shape[0]
        n_rows = indptr.shape[0] - 1
        if shape is None:
            n_cols = int(indices.max()) + 1 if nnz else 0
        else:
            rows_given, n_cols = _shape(shape, op)
            if rows_given != n_rows:
                raise ValueError(f"{op}: shape must be (len(indptr) - 1, n_cols) = ({n_rows}, "
                                 f"n_cols >= 0), got {tuple(shape)}")
        if validate:
            if indptr[0] != 0:
                raise ValueError(f"{op}: indptr must start at 0, got indptr[0] = {indptr[0]}")
            if indptr[-1] != nnz:
                raise ValueError(f"{op}: indptr must end at nnz = len(indices) = {nnz}, got "
                                 f"indptr[-1] = {indptr[-1]}")
            dec = np.diff(indptr) < 0
            if dec.any():
                b = _first_bad(dec)
                raise ValueError(f"{op}: indptr must be non-decreasing; indptr[{b + 1}] = "
                                 f"{indptr[b + 1]} < indptr[{b}] = {indptr[b]}")
            if nnz:
                bad = (indices < 0) | (indices >= n_cols)
                if bad.any():
                    b = _first_bad(bad)
                    raise ValueError(f"{op}: indices must lie in [0, {n_cols}); indices[{b}] = "
                                     f"{indices[b]}")
        values = _value_array(values, "values", op, nnz) if validate else values
        self.indptr = _readonly(indptr)
        self.indices = _readonly(indices)
        self.values = _readonly(values)
        # a plain bool (values is not None): code traced by torch.compile reads
        # it, so the compiled program guards on a bool, not on the array
        self.weighted = values is not None
        self.shape = (n_rows, n_cols)
        self._cache = {}

    # ------------------------------------------------------------ basics
    @property
    def nnz(self) -> int:
        return int(self.indices.shape[0])

    @property
    def n_rows(self) -> int:
        return self.shape[0]

    @property
    def n_cols(self) -> int:
        return self.shape[1]

    def __repr__(self):
        v = "none" if self.values is None else str(self.values.dtype)
        return (f"CSR(shape={self.shape}, nnz={self.nnz}, indices={self.indices.dtype}, "
                f"values={v})")

    def row_degree(self) -> np.ndarray:
        """Number of stored entries per row (int64)."""
        return np.diff(self.indptr)

    def row_ids(self) -> np.ndarray:
        """Row of every nonzero (int64, cached)."""
        if "row_ids" not in self._cache:
            self._cache["row_ids"] = _readonly(
                np.repeat(np.arange(self.n_rows, dtype=np.int64), self.row_degree()))
        return self._cache["row_ids"]

    def select_rows(self, rows) -> CSR:
        """The rows ``rows`` (int array, in that order, repeats allowed) as a
        new CSR [len(rows), n_cols]: one vectorised gather of their entries."""
        rows = np.asarray(rows, np.int64)
        lo, hi = self.indptr[rows], self.indptr[rows + 1]
        indptr = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(hi - lo, out=indptr[1:])
        take = np.arange(indptr[-1], dtype=np.int64) + np.repeat(lo - indptr[:-1], hi - lo)
        return CSR(indptr, self.indices[take], None if self.values is None else
                   self.values[take], (len(rows), self.n_cols), validate=False)

    def values_as(self, dtype):
        """``values`` cast to ``dtype`` (cached), or None."""
        if self.values is None:
            return None
        dtype = np.dtype(dtype)
        if self.values.dtype == dtype:
            return self.values
        key = ("values", dtype.str)
        if key not in self._cache:
            self._cache[key] = _readonly(self.values.astype(dtype))
        return self._cache[key]

    def inv_degree(self, dtype) -> np.ndarray:
        """1 / row length (0 for empty rows), for mean aggregation (cached)."""
        key = ("inv_degree", np.dtype(dtype).str)
        if key not in self._cache:
            d = self.row_degree().astype(np.float64)
            inv = np.divide(1.0, d, out=np.zeros_like(d), where=d > 0)
            self._cache[key] = _readonly(inv.astype(dtype))
        return self._cache[key]

    # ------------------------------------------------------------ transpose
    @property
    def T(self) -> CSR:
        """The transpose, computed natively once and cached (with ``perm``:
        edge t of ``A.T`` is edge ``A.T.perm[t]`` of ``A``)."""
        t = self._cache.get("T")
        if t is None:
            be = _backend.resolve(None, "CSR.T")
            t_indptr, t_indices, perm = be.csr_transpose(self.indptr, self.indices, self.n_cols)
            values = None if self.values is None else self.values[perm]
            t = CSR(t_indptr, t_indices, values, (self.n_cols, self.n_rows), validate=False)
            t._cache["perm"] = _readonly(perm)
            t._cache["T"] = self
            self._cache["T"] = t
        return t

    @property
    def perm(self):
        """For a transpose made by ``.T``: the edge of the original per edge."""
        return self._cache.get("perm")

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_coo(cls, row, col, values=None, shape=None, sum_duplicates=True, backend=None):
        """Build from COO triplets with a native parallel counting sort (O(nnz)).

        Columns end up sorted within each row. With ``sum_duplicates`` equal
        (row, col) pairs are merged: their values are summed, and without
        values the pair becomes a single edge (the graph is a pattern).
        """
        op = "CSR.from_coo"
        if any((is_tensor(x) and x.device.type == "cuda") or _is_cupy(x)
               for x in (row, col, values)):
            from .cuda_backend.csr import csr_from_coo  # sorted on the device (csrc/cuda/csr.cu)

            return csr_from_coo(cls, row, col, values, shape, sum_duplicates)
        row = _index_array(row, "row", op)
        col = _index_array(col, "col", op, length=row.shape[0])
        if col.dtype != row.dtype:
            row, col = row.astype(np.int64), col.astype(np.int64)
        nnz = row.shape[0]
        values = _value_array(values, "values", op, nnz)
        if shape is None:
            shape = (int(row.max()) + 1 if nnz else 0, int(col.max()) + 1 if nnz else 0)
        n_rows, n_cols = _shape(shape, op)
        be = _backend.resolve(backend, op)
        bad, bad_row, indptr, cols, _perm, vals, uniq = be.coo_to_csr(n_rows, n_cols, row, col,
                                                                      values)
        if bad >= 0:
            name, arr, lim = ("row", row, n_rows) if bad_row else ("col", col, n_cols)
            raise ValueError(f"{op}: {name} must lie in [0, {lim}); {name}[{bad}] = {arr[bad]}")
        if sum_duplicates and int(uniq.sum()) != nnz:
            indptr, cols, vals = be.csr_sum_duplicates(indptr, cols, vals, uniq)
        return cls(indptr, cols, vals, (n_rows, n_cols), validate=False)

    @classmethod
    def from_edge_index(cls, edge_index, num_nodes=None, edge_weight=None, sum_duplicates=True):
        """PyG convention: ``edge_index[0]`` = source j, ``edge_index[1]`` = target i;
        the CSR row is the target, so ``spmm(A, X)`` equals PyG's ``propagate``."""
        op = "CSR.from_edge_index"
        if is_tensor(edge_index) and edge_index.device.type == "cuda":
            if edge_index.dim() != 2 or edge_index.shape[0] != 2:
                raise ValueError(f"{op}: edge_index must have shape (2, num_edges), got "
                                 f"{tuple(edge_index.shape)}")
            if num_nodes is None:
                num_nodes = int(edge_index.max()) + 1 if edge_index.numel() else 0
            return cls.from_coo(edge_index[1], edge_index[0], edge_weight, (num_nodes, num_nodes),
                                sum_duplicates=sum_duplicates)
        ei = _as_numpy(edge_index, "edge_index", op)
        if ei.ndim != 2 or ei.shape[0] != 2:
            raise ValueError(f"{op}: edge_index must have shape (2, num_edges), got {ei.shape}")
        if num_nodes is None:
            num_nodes = int(ei.max()) + 1 if ei.size else 0
        return cls.from_coo(ei[1], ei[0], edge_weight, (num_nodes, num_nodes),
                            sum_duplicates=sum_duplicates)

    @classmethod
    def from_scipy(cls, m):
        """From any scipy.sparse matrix/array (converted to CSR by scipy if needed)."""
        import scipy.sparse as sp

        if not sp.issparse(m):
            raise TypeError(f"CSR.from_scipy: expected a scipy.sparse matrix, got {type(m)}")
        if m.dtype.kind not in "biuf":
            raise TypeError(f"CSR.from_scipy: the matrix must have real values; got dtype "
                            f"{m.dtype}")
        m = m.tocsr()
        values = m.data
        if values.dtype not in _VALUE_DTYPES:
            values = values.astype(np.float32 if values.dtype.itemsize <= 4 else np.float64)
        return cls(m.indptr, m.indices, values, m.shape)

    @classmethod
    def from_torch(cls, t):
        """From a torch sparse COO or CSR tensor (CPU)."""
        torch = require_torch("CSR.from_torch")
        if not isinstance(t, torch.Tensor) or t.layout not in (torch.sparse_coo, torch.sparse_csr):
            raise TypeError("CSR.from_torch: expected a torch sparse COO or CSR tensor")
        if t.dim() != 2:
            raise ValueError(f"CSR.from_torch: expected a 2-D tensor, got {t.dim()}-D")
        shape = tuple(t.shape)
        if t.layout == torch.sparse_csr:
            return cls(t.crow_indices(), t.col_indices(), t.values(), shape)
        t = t.coalesce()
        idx = t.indices()
        return cls.from_coo(idx[0], idx[1], t.values(), shape)

    # ------------------------------------------------------------ exporters
    def to_scipy(self):
        import scipy.sparse as sp

        data = self.values if self.values is not None else np.ones(self.nnz, dtype=np.float32)
        return sp.csr_matrix((data, self.indices, self.indptr), shape=self.shape)

    def to_torch(self, dtype=None):
        """A torch sparse CSR tensor (values default to ones, float32)."""
        torch = require_torch("CSR.to_torch")
        data = self.values if self.values is not None else np.ones(self.nnz, dtype=np.float32)
        vals = torch.from_numpy(np.array(data))
        if dtype is not None:
            vals = vals.to(dtype)
        return torch.sparse_csr_tensor(torch.from_numpy(np.array(self.indptr)),
                                       torch.from_numpy(np.array(self.indices, dtype=np.int64)),
                                       vals, size=self.shape)

    def to_edge_index(self):
        """PyG edge_index [2, nnz] (int64): row 0 = source (column), row 1 = target."""
        return np.stack([self.indices.astype(np.int64), self.row_ids()])

    # ------------------------------------------------------------ normalisation
    def normalize(self, kind="sym", dtype=None) -> CSR:
        """Degree-normalised copy: ``"sym"`` D_r^-1/2 A D_c^-1/2, ``"row"``
        D_r^-1 A, ``"col"`` A D_c^-1. Degrees are weighted (sums of values, or
        counts without values); rows/columns of degree <= 0 become zero."""
        if kind not in ("sym", "row", "col"):
            raise ValueError(f"CSR.normalize: kind must be 'sym', 'row' or 'col', got {kind!r}")
        dtype = np.dtype(dtype or (self.values.dtype if self.values is not None else np.float32))
        w = (self.values.astype(np.float64) if self.values is not None
             else np.ones(self.nnz, dtype=np.float64))
        rows = self.row_ids()
        cols = self.indices

        def inv(d, p):  # 1 / d^p where d > 0, else 0
            d = d.astype(np.float64)  # bincount of no entries is int64
            return np.divide(1.0, np.power(d, p, where=d > 0, out=np.ones_like(d)),
                             out=np.zeros_like(d), where=d > 0)

        if kind in ("sym", "row"):
            w = w * inv(np.bincount(rows, weights=w, minlength=self.n_rows),
                        0.5 if kind == "sym" else 1.0)[rows]
        if kind in ("sym", "col"):
            base = (self.values.astype(np.float64) if self.values is not None
                    else np.ones(self.nnz))
            cdeg = np.bincount(cols, weights=base, minlength=self.n_cols)
            w = w * inv(cdeg, 0.5 if kind == "sym" else 1.0)[cols]
        return CSR(self.indptr, self.indices, w.astype(dtype), self.shape, validate=False)


def as_csr(A, op="hopkit", name="A") -> CSR:
    """Accept a hopkit.CSR, a scipy sparse matrix or a torch sparse tensor
    (``name``: the argument, for the error message)."""
    if isinstance(A, CSR):
        return A
    if is_tensor(A) and A.layout != require_torch(op).strided:
        return CSR.from_torch(A)
    try:
        import scipy.sparse as sp

        if sp.issparse(A):
            return CSR.from_scipy(A)
    except ImportError:
        pass
    raise TypeError(f"{op}: {name} must be a hopkit.CSR (or scipy/torch sparse matrix), got "
                    f"{type(A).__name__}")


def bipartite_adjacency(R, normalize="sym", dtype=np.float32) -> CSR:
    """The (U+I) x (U+I) adjacency [[0, R], [R^T, 0]] of a users x items
    interaction matrix R, normalised as LightGCN does (``"sym"``), or ``None``
    for the raw 0/1 (or weighted) adjacency."""
    R = as_csr(R, "bipartite_adjacency", "R")
    U, n_items = R.shape
    RT = R.T
    idx_dtype = np.int64 if U + n_items > np.iinfo(np.int32).max else R.indices.dtype
    indptr = np.concatenate([R.indptr, R.nnz + RT.indptr[1:]])
    indices = np.concatenate([R.indices.astype(idx_dtype) + U, RT.indices.astype(idx_dtype)])
    values = None
    if R.values is not None:
        values = np.concatenate([R.values, RT.values])
    A = CSR(indptr, indices, values, (U + n_items, U + n_items), validate=False)
    if normalize is None:
        return A
    return A.normalize(normalize, dtype=dtype)
