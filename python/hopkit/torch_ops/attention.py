"""hopkit::attention_aggregate and its backward operator (flash-attention
style: the backward recomputes the probabilities from the saved
log-sum-exp; nothing per edge is kept)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..ops.attention import default_scale
from .graph import kernel_backend, refuse_forward_ad


@torch.library.custom_op("hopkit::attention_aggregate", mutates_args=())
def attention_aggregate(indptr: Tensor, indices: Tensor, t_indptr: Tensor, t_indices: Tensor,
                        n_cols: int, Q: Tensor, K: Tensor, V: Tensor, heads: int, score: int,
                        scale: float | None, slope: float, backend: str) -> tuple[Tensor, Tensor]:
    """(out [n_rows, heads * dv], lse [n_rows, heads]); scale None: 1/sqrt(dk)."""
    be, arr = kernel_backend(backend, "attention_aggregate", Q)
    n_rows = indptr.shape[0] - 1
    dk, dv = Q.shape[1] // heads if score == 0 else 1, V.shape[1] // heads
    scale = default_scale(dk) if scale is None else scale
    out = Q.new_empty((n_rows, heads * dv))
    lse = Q.new_empty((n_rows, heads))
    be.attention_forward(arr(indptr), arr(indices), n_rows, n_cols, arr(Q), arr(K), arr(V), heads,
                         dk, dv, score, scale, slope, arr(out), arr(lse))
    return out, lse


@attention_aggregate.register_fake
def _(indptr, indices, t_indptr, t_indices, n_cols, Q, K, V, heads, score, scale, slope,
      backend):
    n_rows = indptr.shape[0] - 1
    return Q.new_empty((n_rows, V.shape[1])), Q.new_empty((n_rows, heads))


@torch.library.custom_op("hopkit::attention_backward", mutates_args=())
def attention_backward(indptr: Tensor, indices: Tensor, t_indptr: Tensor, t_indices: Tensor,
                       n_cols: int, Q: Tensor, K: Tensor, V: Tensor, heads: int, score: int,
                       scale: float | None, slope: float, out: Tensor, dout: Tensor, lse: Tensor,
                       backend: str) -> tuple[Tensor, Tensor, Tensor]:
    be, arr = kernel_backend(backend, "attention_aggregate", Q)
    n_rows = indptr.shape[0] - 1
    dk, dv = Q.shape[1] // heads if score == 0 else 1, V.shape[1] // heads
    scale = default_scale(dk) if scale is None else scale
    dQ, dK, dV = (torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in (Q, K, V))
    be.attention_backward(arr(indptr), arr(indices), arr(t_indptr), arr(t_indices), n_rows,
                          n_cols, arr(Q), arr(K), arr(V), heads, dk, dv, score, scale, slope,
                          arr(out), arr(dout), arr(lse), arr(dQ), arr(dK), arr(dV))
    return dQ, dK, dV


@attention_backward.register_fake
def _(indptr, indices, t_indptr, t_indices, n_cols, Q, K, V, heads, score, scale, slope, out,
      dout, lse, backend):
    return torch.empty_like(Q), torch.empty_like(K), torch.empty_like(V)


def _setup(ctx, inputs, output):
    # Saved so that autograd detects in-place changes of the inputs or the
    # output between forward and backward (the kernels read them).
    ctx.save_for_backward(*inputs[5:8], *output)
    ctx.mark_non_differentiable(output[1])  # the log-sum-exp
    ctx.graph, ctx.cfg = inputs[:5], inputs[8:]


def _backward(ctx, dout, _dlse):
    Q, K, V, out, lse = ctx.saved_tensors
    dQ, dK, dV = attention_backward(*ctx.graph, Q, K, V, *ctx.cfg[:4], out, dout.contiguous(),
                                    lse, ctx.cfg[4])
    need = ctx.needs_input_grad[5:8]
    return (None,) * 5 + tuple(g if n else None for g, n in zip((dQ, dK, dV), need,
                                                                 strict=True)) + (None,) * 5


attention_aggregate.register_autograd(_backward, setup_context=_setup)


def attention_csr(A, Q, K, V, heads, score, scale, slope, backend):
    """hopkit.attention_aggregate's torch path, on validated inputs."""
    from .graph import from_csr
    from .spmm import as_tensor

    Q, K, V = as_tensor(Q), as_tensor(K), as_tensor(V)
    refuse_forward_ad("attention_aggregate", (Q, K, V))
    g = from_csr(A, Q.device)
    return attention_aggregate(g.indptr, g.indices, g.t_indptr, g.t_indices, g.n_cols, Q, K, V,
                               heads, score, scale, slope, backend or "auto")[0]
