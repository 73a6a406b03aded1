"""spmm (g-SpMM) and sddmm: validation, allocation, dispatch."""

from __future__ import annotations

import numpy as np

from .. import _backend, codes
from .._torch import is_tensor
from ..csr import CSR, as_csr
from ._common import check_dense as _check_dense
from ._common import check_edge_weight
from ._cuda import route as _route

REDUCES = codes.REDUCES
MESSAGES = {k: v for k, v in codes.MESSAGES.items() if k != "edge"}  # the user's choices
EDGE = codes.MESSAGES["edge"]  # the edge features alone (X is None)


def _edge_features(op, A: CSR, edge_weight, F, dtype, message, torch_mode=False, cuda=False):
    """Returns (E, e_width): explicit edge_weight, else A.values, else none.
    Checked from metadata alone; a NumPy E comes back C-contiguous, a tensor
    as it is (A.values then stay for the torch path to supply: E None with
    e_width 1)."""
    if message == "copy":
        if edge_weight is not None:
            raise ValueError(f"{op}: message='copy' ignores edge features; pass "
                             "message='mul' or 'add' to use edge_weight")
        return None, 0
    if edge_weight is None:
        if torch_mode:
            return None, int(A.weighted)
        return A.values_as(dtype), int(A.weighted)
    E = check_edge_weight(op, edge_weight, dtype, ((A.nnz,), (A.nnz, F)),
                          "one value or one row per nonzero of A", cuda)
    return E, (1 if E.ndim == 1 else F)


# ---------------------------------------------------------------- kernel level
# NumPy arrays and the CPU backends (tensors take the torch operators).
def _call(fn, A: CSR, X, F, E, e_width, eperm, msg, red, *rest):
    return fn(A.indptr, A.indices, A.n_rows, A.n_cols, X, F, E, e_width, eperm, msg, red, *rest)


def spmm_forward_np(A: CSR, X, F, dtype, E, e_width, msg, red, be, want_arg=True):
    Y = np.empty((A.n_rows, F), dtype=dtype)
    arg = np.empty((A.n_rows, F), dtype=np.int64) if red >= 2 and want_arg else None
    _call(be.spmm_forward, A, X, F, E, e_width, None, msg, red, Y, arg)
    return Y, arg


def transpose_perm(A: CSR):
    """perm of A.T (edge t of A.T is edge perm[t] of A). When A itself came
    from ``.T``, A.T is the cached original, which has no perm: use the
    inverse of A.perm then (cached)."""
    AT = A.T
    if AT.perm is not None:
        return AT.perm
    inv = A._cache.get("inv_perm")
    if inv is None:
        inv = np.empty(A.nnz, dtype=np.int64)
        inv[A.perm] = np.arange(A.nnz, dtype=np.int64)
        inv.flags.writeable = False
        A._cache["inv_perm"] = inv
    return inv


def _scaled_dY(A: CSR, dY, red):
    return dY * A.inv_degree(dY.dtype)[:, None] if red == REDUCES["mean"] else dY


def spmm_grad_x_np(A: CSR, X, F, E, e_width, msg, red, arg, dY, be):
    """d loss / d X. Sum/mean run the forward kernel on the cached transpose
    (edge features read through its perm, never gathered; no atomics);
    max/min scatter through the kept arg."""
    if red >= 2:
        dX = np.empty((A.n_cols, F), dtype=dY.dtype)
        _call(be.spmm_arg_grad_x, A, X, F, E, e_width, None, msg, red, dY, arg, dX)
        return dX
    AT = A.T
    tmsg = MESSAGES["mul"] if msg == MESSAGES["mul"] else MESSAGES["copy"]
    eperm = None
    if tmsg == MESSAGES["copy"]:
        E, e_width = None, 0
    elif E is A.values_as(E.dtype):
        E = AT.values_as(E.dtype)  # already in the transpose's order: no indirection
    else:
        eperm = transpose_perm(A)  # edge features read through the perm, never gathered
    Z = np.ascontiguousarray(_scaled_dY(A, dY, red))
    dX = np.empty((A.n_cols, F), dtype=dY.dtype)
    _call(be.spmm_forward, AT, Z, F, E, e_width, eperm, tmsg, REDUCES["sum"], dX, None)
    return dX


def spmm_edge_grad_np(A: CSR, X, F, E, e_width, msg, red, arg, dY, be):
    """d loss / d edge features (shape of E): SDDMM-type per-edge products."""
    dE = np.empty((A.nnz,) if e_width == 1 else (A.nnz, F), dtype=dY.dtype)
    _call(be.spmm_edge_grad, A, X, F, E, e_width, None, msg, red,
          np.ascontiguousarray(_scaled_dY(A, dY, red)), arg, dE)
    return dE


# ---------------------------------------------------------------- public API
def spmm(A, X, reduce="sum", edge_weight=None, *, message=None, return_arg=False, backend=None):
    """Sparse message passing: ``Y[i] = reduce_{e=(i,j) in A} msg(X[j], w_e)``.

    Parameters
    ----------
    A : hopkit.CSR (or scipy / torch sparse), shape [n_rows, n_cols]; rows are
        targets.
    X : [n_cols, F] float32/float64 NumPy array or torch tensor, or ``None``
        to aggregate the edge features alone (DGL's ``copy_e``).
    reduce : ``"sum"``, ``"mean"``, ``"max"`` or ``"min"``. Empty rows give 0
        (and arg -1 for max/min). Max/min ties keep the first edge in CSR
        order; NaN messages never win.
    edge_weight : [nnz] or [nnz, F] edge features in CSR order (same dtype as
        X); default ``A.values``; none -> weight 1.
    message : ``"mul"`` (default when there are edge features: ``X[j] * w``),
        ``"add"`` (``X[j] + w``) or ``"copy"`` (``X[j]``, edge features ignored).
    return_arg : also return the winning edge position per output entry
        (max/min only; int64 [n_rows, F]).
    backend : ``"auto"``/None, ``"native"``, ``"numba"`` or ``"numpy"``.

    Returns Y [n_rows, F] of X's type, dtype and device (and arg on request).
    For torch inputs the result is differentiable wrt X and edge_weight: sum/mean
    backward runs on the cached transpose (no atomics), max/min backward
    through the arg kept from the forward; the edge-weight gradient is the
    per-edge dot product of dY[i] and X[j] (an SDDMM).
    """
    op = "spmm"
    A = as_csr(A, op)
    if reduce not in REDUCES:
        raise ValueError(f"{op}: reduce must be one of {tuple(REDUCES)}, got {reduce!r}")
    if message is not None and message not in MESSAGES:
        raise ValueError(f"{op}: message must be one of {tuple(MESSAGES)}, got {message!r}")
    if return_arg and reduce not in ("max", "min"):
        raise ValueError(f"{op}: return_arg needs reduce='max' or 'min', got {reduce!r}")
    dev, ins, back = _route(op, backend, X=X, edge_weight=edge_weight)
    X, edge_weight, cuda = ins["X"], ins["edge_weight"], dev is not None
    torch_mode = is_tensor(X) or is_tensor(edge_weight)
    if X is None:
        if edge_weight is None and not A.weighted:
            raise ValueError(f"{op}: X is None, so edge features (edge_weight or A.values) are "
                             "required")
        Ew = edge_weight if edge_weight is not None else A.values
        F = 1 if Ew.ndim == 1 else Ew.shape[1]
        dtype, msg_name = Ew.dtype, "mul"
    else:
        X = _check_dense(op, "X", X, rows=A.n_cols, cuda=cuda)
        F, dtype = X.shape[1], X.dtype
        msg_name = message or "mul"
    if F == 0:  # nothing to aggregate (and e_width 0 would read as "no edge features")
        return back(_empty_result(A, X if X is not None else edge_weight, return_arg))
    E, e_width = _edge_features(op, A, edge_weight, F, dtype, msg_name, torch_mode, cuda)
    msg = MESSAGES[msg_name] if e_width else MESSAGES["copy"]
    if X is None:
        msg = EDGE
    red = REDUCES[reduce]
    if torch_mode:  # hopkit::spmm, on every device
        from ..torch_ops.spmm import spmm_csr

        Y, arg = spmm_csr(A, X, E, e_width, msg, red, return_arg, backend)
        return back((Y, arg) if return_arg else Y)
    be = _backend.resolve(backend, op)
    Y, arg = spmm_forward_np(A, X, F, dtype, E, e_width, msg, red, be, want_arg=return_arg)
    return (Y, arg) if return_arg else Y


def _empty_result(A: CSR, like, return_arg):
    """Y [n_rows, 0] (and arg) of like's type and dtype."""
    if is_tensor(like):
        Y = like.new_empty((A.n_rows, 0))
        arg = Y.long()  # int64, like every arg
    else:
        Y, arg = np.empty((A.n_rows, 0), like.dtype), np.empty((A.n_rows, 0), np.int64)
    return (Y, arg) if return_arg else Y


def sddmm(A, U, V, *, scale=False, backend=None):
    """Sampled dense-dense product: ``out[e] = <U[i], V[j]>`` for every nonzero
    e = (i, j) of A, in CSR order (times ``A.values[e]`` when ``scale``).

    U: [n_rows, F], V: [n_cols, F], same float dtype; NumPy or torch (then
    differentiable wrt U and V). This is the edge-score kernel and the
    edge-weight gradient of spmm.
    """
    op = "sddmm"
    A = as_csr(A, op)
    dev, ins, back = _route(op, backend, U=U, V=V)
    U, V, cuda = ins["U"], ins["V"], dev is not None
    U = _check_dense(op, "U", U, rows=A.n_rows, cuda=cuda)
    V = _check_dense(op, "V", V, rows=A.n_cols, dtype=U.dtype, cuda=cuda)
    if U.shape[1] != V.shape[1]:
        raise ValueError(f"{op}: U and V must have the same width, got {U.shape[1]} and "
                         f"{V.shape[1]}")
    if scale and not A.weighted:
        raise ValueError(f"{op}: scale=True needs A.values")
    if is_tensor(U) or is_tensor(V):  # hopkit::sddmm, on every device
        from ..torch_ops.spmm import sddmm_csr

        return back(sddmm_csr(A, U, V, scale, backend))
    return sddmm_np(A, U, V, scale, _backend.resolve(backend, op))


def sddmm_np(A: CSR, U, V, scale, be):
    out = spmm_edge_grad_np(A, V, U.shape[1], None, 1, MESSAGES["mul"], REDUCES["sum"], None,
                            U, be)
    if scale:
        out *= A.values_as(out.dtype)
    return out
