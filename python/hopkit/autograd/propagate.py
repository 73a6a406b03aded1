"""torch.autograd Function for propagate: the backward is the same fused
multi-hop call on the cached transpose (the map is linear in X)."""

from __future__ import annotations

import numpy as np
import torch

from ..ops._cuda import is_cuda_backend
from ..ops.propagate import propagate_np, transpose_weights


def _tensor(a):
    return a if isinstance(a, torch.Tensor) else torch.from_numpy(a)


class PropagateFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, A, Xn, alpha, E, from_values, be):
        ctx.A, ctx.alpha, ctx.E, ctx.from_values, ctx.be = A, alpha, E, from_values, be
        return _tensor(propagate_np(A, Xn, alpha, E, None, be))

    @staticmethod
    def backward(ctx, dY):
        dX = None
        if ctx.needs_input_grad[0]:
            if is_cuda_backend(ctx.be):
                from ..ops._cuda import propagate_transpose

                AT, ET, eperm = propagate_transpose(ctx.A, ctx.E, ctx.from_values, dY.device)
                dYn = dY.detach().contiguous()
            else:
                AT, ET, eperm = transpose_weights(ctx.A, ctx.E, ctx.from_values)
                dYn = np.ascontiguousarray(dY.detach().contiguous().numpy())
            dX = _tensor(propagate_np(AT, dYn, ctx.alpha, ET, eperm, ctx.be))
        return dX, None, None, None, None, None, None


def propagate_torch(A, X, Xn, alpha, E, from_values, be):
    Xt = X if isinstance(X, torch.Tensor) else torch.from_numpy(Xn)
    return PropagateFunction.apply(Xt, A, Xn, alpha, E, from_values, be)
