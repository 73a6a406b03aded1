"""propagate: fused multi-hop propagation with layer combination."""

from __future__ import annotations

import numbers

import numpy as np

from .. import _backend
from .._torch import is_tensor
from ..csr import CSR, as_csr
from ._common import check_dense as _check_dense
from ._common import check_edge_weight
from ._common import to_numpy as _to_numpy
from ._cuda import route as _route

COMBINES = ("mean", "sum", "last")


def layer_weights(op, layers, combine) -> np.ndarray:
    """alpha_0..alpha_L (float64) for ``combine``."""
    if isinstance(layers, bool) or not isinstance(layers, numbers.Integral) or layers < 0:
        raise ValueError(f"{op}: layers must be a non-negative integer, got {layers!r}")
    layers = int(layers)
    if isinstance(combine, str):
        if combine == "mean":
            return np.full(layers + 1, 1.0 / (layers + 1))
        if combine == "sum":
            return np.ones(layers + 1)
        if combine == "last":
            a = np.zeros(layers + 1)
            a[-1] = 1.0
            return a
        raise ValueError(f"{op}: combine must be one of {COMBINES} or a sequence of "
                         f"layers + 1 weights, got {combine!r}")
    w = _to_numpy(combine)
    try:
        a = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{op}: combine must be one of {COMBINES} or a sequence of "
                         f"layers + 1 weights, got {combine!r}") from None
    if a.ndim != 1 or a.shape[0] != layers + 1:
        raise ValueError(f"{op}: combine weights must have length layers + 1 = {layers + 1}, "
                         f"got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{op}: combine weights must be finite, got {a.tolist()}")
    return np.ascontiguousarray(a)


def _edge_weights(op, A: CSR, edge_weight, dtype, torch_mode, cuda=False):
    """(E, from_values): the [nnz] weights (edge_weight, else A.values, else
    None), checked from metadata; on the torch path A.values stay for the
    operator's caller to supply (E None, from_values True)."""
    if edge_weight is None:
        return (None if torch_mode else A.values_as(dtype)), True
    return check_edge_weight(op, edge_weight, dtype, ((A.nnz,),), "one weight per nonzero of A",
                             cuda), False


def propagate_np(A: CSR, Xn, alpha, E, eperm, be):
    """The NumPy-level call: out [n_rows, F]; one work buffer when layers >= 2."""
    F = Xn.shape[1]
    out = np.empty((A.n_rows, F), dtype=Xn.dtype)
    work = np.empty((A.n_rows, F), dtype=Xn.dtype) if len(alpha) > 2 else None
    be.propagate(A.indptr, A.indices, A.n_rows, A.n_cols, Xn, F, E, eperm, alpha, out, work)
    return out


def transpose_weights(A: CSR, E, from_values):
    """(AT, E_T, eperm) to run the same propagation on A's transpose: cached
    transposed values when the weights are A.values, else the weights read
    through the transpose's perm (never gathered)."""
    from .spmm import transpose_perm

    AT = A.T
    if E is None:
        return AT, None, None
    if from_values:
        return AT, AT.values_as(E.dtype), None
    return AT, E, transpose_perm(A)  # AT.perm, or A.perm inverted when A came from .T


def propagate(A, X, layers=3, combine="mean", edge_weight=None, backend=None):
    """Multi-hop propagation ``sum_{l=0..L} alpha_l A^l X`` in one native call.

    Parameters
    ----------
    A : hopkit.CSR (or scipy / torch sparse), rows are targets. Square unless
        ``layers == 1`` with a zero weight on layer 0 (e.g. ``combine="last"``).
    X : [n_cols, F] float32/float64 NumPy array or torch tensor.
    layers : L >= 0.
    combine : ``"mean"`` (alpha_l = 1/(L+1), LightGCN), ``"sum"``, ``"last"``
        (A^L X) or a sequence of L+1 weights.
    edge_weight : [nnz] weights in CSR order (same dtype as X); default
        ``A.values``; none -> 1.
    backend : ``"auto"``/None, ``"native"``, ``"numba"`` or ``"numpy"``.

    Evaluated by Horner's rule (``Z_k = alpha_k X + A Z_{k+1}``): the working
    memory is the output plus one [n_rows, F] buffer, whatever L. For torch
    inputs the result is differentiable wrt X; the backward is the same fused
    call on the cached transpose (``dX = sum_l alpha_l (A^T)^l dY``), with no
    saved activations. Gradients wrt ``edge_weight`` are not supported (use
    ``hopkit.spmm`` per layer for learnable edge weights).
    """
    op = "propagate"
    A = as_csr(A, op)
    alpha = layer_weights(op, layers, combine)
    dev, ins, back = _route(op, backend, X=X, edge_weight=edge_weight)
    X, edge_weight, cuda = ins["X"], ins["edge_weight"], dev is not None
    X = _check_dense(op, "X", X, rows=A.n_cols, cuda=cuda)
    if A.n_rows != A.n_cols and not (len(alpha) == 2 and alpha[0] == 0):
        raise ValueError(f"{op}: A must be square for layers >= 2 or a nonzero layer-0 weight "
                         f"(A^l X must chain), got shape {A.shape} with layers={len(alpha) - 1}")
    torch_mode = is_tensor(X) or is_tensor(edge_weight)
    E, from_values = _edge_weights(op, A, edge_weight, X.dtype, torch_mode, cuda)
    if torch_mode and is_tensor(edge_weight) and edge_weight.requires_grad:
        raise ValueError(f"{op}: gradients wrt edge_weight are not supported (the fused "
                         "backward keeps no activations); use hopkit.spmm per layer, or "
                         "pass edge_weight.detach()")
    if torch_mode:  # hopkit::propagate, on every device
        from ..torch_ops.propagate import propagate_csr

        return back(propagate_csr(A, X, E, alpha, backend))
    return propagate_np(A, X, alpha, E, None, _backend.resolve(backend, op))
