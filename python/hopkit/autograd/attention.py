"""torch.autograd Function for attention_aggregate (flash-attention style:
the backward recomputes the probabilities from the saved log-sum-exp)."""

from __future__ import annotations

import numpy as np
import torch

from ..ops.attention import attention_backward_np, attention_forward_np


class AttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, Q, K, V, A, Qn, Kn, Vn, args):
        out, lse = attention_forward_np(A, Qn, Kn, Vn, *args)
        ctx.A, ctx.Qn, ctx.Kn, ctx.Vn, ctx.args = A, Qn, Kn, Vn, args
        ctx.out, ctx.lse = out, lse  # O(N * F) output and O(N * heads) statistics
        return out if isinstance(out, torch.Tensor) else torch.from_numpy(out)

    @staticmethod
    def backward(ctx, dout):
        if not any(ctx.needs_input_grad[:3]):
            return (None,) * 8
        if isinstance(ctx.out, torch.Tensor):  # CUDA backend: device tensors
            g = dout.detach().contiguous()
        else:
            g = np.ascontiguousarray(dout.detach().contiguous().numpy())
        dQ, dK, dV = attention_backward_np(ctx.A, ctx.Qn, ctx.Kn, ctx.Vn, *ctx.args[:-1],
                                           ctx.out, g, ctx.lse, ctx.args[-1])
        grads = [(x if isinstance(x, torch.Tensor) else torch.from_numpy(x)) if need else None
                 for x, need in zip((dQ, dK, dV), ctx.needs_input_grad[:3], strict=True)]
        return (*grads, None, None, None, None, None)


def _tensor(x, xn):
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(xn)


def attention_torch(A, Q, K, V, Qn, Kn, Vn, args):
    return AttentionFunction.apply(_tensor(Q, Qn), _tensor(K, Kn), _tensor(V, Vn), A, Qn, Kn,
                                   Vn, args)
