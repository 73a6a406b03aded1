"""attention_aggregate: fused softmax attention over each row's neighbours."""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import _backend, codes
from .._torch import is_tensor
from ..csr import CSR, as_csr
from ._common import check_contiguous
from ._common import check_dense as _check_dense
from ._cuda import route as _route

SCORES = codes.SCORES


def default_scale(dk):
    return 1.0 / math.sqrt(dk) if dk else 1.0


def attention_forward_np(A: CSR, Qn, Kn, Vn, heads, dk, dv, score, scale, slope, be):
    out = np.empty((A.n_rows, heads * dv), dtype=Qn.dtype)
    lse = np.empty((A.n_rows, heads), dtype=Qn.dtype)
    be.attention_forward(A.indptr, A.indices, A.n_rows, A.n_cols, Qn, Kn, Vn, heads, dk, dv,
                         score, scale, slope, out, lse)
    return out, lse


def attention_backward_np(A: CSR, Qn, Kn, Vn, heads, dk, dv, score, scale, slope, out, dout,
                          lse, be):
    AT = A.T
    dQ, dK, dV = np.empty_like(Qn), np.empty_like(Kn), np.empty_like(Vn)
    be.attention_backward(A.indptr, A.indices, AT.indptr, AT.indices, A.n_rows, A.n_cols, Qn,
                          Kn, Vn, heads, dk, dv, score, scale, slope, out, dout, lse, dQ, dK,
                          dV)
    return dQ, dK, dV


def attention_aggregate(A, Q, K, V, heads=1, score="dot", *, scale=None, negative_slope=0.2,
                        backend=None):
    """Softmax attention over each target row's neighbours, fused in one pass.

    For every row i of A (the target), head h and neighbour j (a nonzero
    (i, j); A's values are ignored)::

        s_ij = <Q[i, h], K[j, h]> * scale         (score="dot", scale = 1/sqrt(dk))
        s_ij = LeakyReLU(Q[i, h] + K[j, h])       (score="gat", one scalar per head)
        out[i, h] = sum_j softmax_j(s_ij) V[j, h]  (an empty row gives 0)

    Shapes: Q [n_rows, heads * dk], K [n_cols, heads * dk], V [n_cols, heads * dv]
    (dv may differ from dk); with score="gat", Q and K are [., heads]: GAT's
    per-node scalars ``a_dst . W x_i`` and ``a_src . W x_j``. Returns
    [n_rows, heads * dv] (heads concatenated), NumPy or torch like Q.

    The softmax is computed online (running max and sum per row and head), so
    nothing per edge is stored; the forward keeps only the output and one
    log-sum-exp per (row, head). For torch inputs the result is differentiable
    wrt Q, K and V; the backward recomputes the probabilities in one pass over
    the rows (dQ) and one over the cached transpose (dK, dV), without atomics.
    """
    op = "attention_aggregate"
    A = as_csr(A, op)
    if score not in SCORES:
        raise ValueError(f"{op}: score must be one of {tuple(SCORES)}, got {score!r}")
    if isinstance(heads, bool) or not isinstance(heads, numbers.Integral) or heads < 1:
        raise ValueError(f"{op}: heads must be a positive integer, got {heads!r}")
    heads = int(heads)
    dev, ins, back = _route(op, backend, Q=Q, K=K, V=V)
    Q, K, V = ins["Q"], ins["K"], ins["V"]
    Qn = Q = _check_dense(op, "Q", Q, rows=A.n_rows)  # float32/float64 on every device
    Kn = K = _check_dense(op, "K", K, rows=A.n_cols, dtype=Qn.dtype)
    Vn = V = _check_dense(op, "V", V, rows=A.n_cols, dtype=Qn.dtype)
    if dev is not None:
        for name, t in (("Q", Q), ("K", K), ("V", V)):
            check_contiguous(op, name, t)
    if Kn.shape[1] != Qn.shape[1]:
        raise ValueError(f"{op}: K must have the width of Q ({Qn.shape[1]}), got {Kn.shape[1]}")
    if score == "gat":
        if Qn.shape[1] != heads:
            raise ValueError(f"{op}: with score='gat', Q and K must have heads = {heads} "
                             f"columns (one scalar per node and head), got {Qn.shape[1]}")
    elif Qn.shape[1] % heads:
        raise ValueError(f"{op}: heads ({heads}) must divide the width of Q and K "
                         f"({Qn.shape[1]})")
    if Vn.shape[1] % heads:
        raise ValueError(f"{op}: heads ({heads}) must divide the width of V ({Vn.shape[1]})")
    dk, dv = Qn.shape[1] // heads, Vn.shape[1] // heads
    slope = float(negative_slope)
    # x - x == 0 is False exactly for inf and NaN, and traces (math.isfinite does not)
    if not (scale is None or float(scale) - float(scale) == 0) or not slope - slope == 0:
        raise ValueError(f"{op}: scale and negative_slope must be finite, got {scale}, {slope}")
    if is_tensor(Q) or is_tensor(K) or is_tensor(V):  # hopkit::attention_aggregate
        from ..torch_ops.attention import attention_csr

        # the default scale is resolved inside the operator (dk may be symbolic)
        scale = None if scale is None else float(scale)
        return back(attention_csr(A, Q, K, V, heads, SCORES[score], scale, slope, backend))
    scale = default_scale(dk) if scale is None else float(scale)
    be = _backend.resolve(backend, op)
    return attention_forward_np(A, Q, K, V, heads, dk, dv, SCORES[score], scale, slope, be)[0]
