"""torch.autograd Function for bpr_loss: the forward keeps only the B score
margins; the backward writes the dense gradient tables in one native call."""

from __future__ import annotations

import torch

from ..ops.bpr import bpr_grads_np, bpr_scores_np, softplus_mean


class BprLossFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, U, V, Un, Vn, shared, u, p, n, be):
        x = bpr_scores_np(Un, Vn, shared, u, p, n, be)
        ctx.args = (Un, Vn, shared, u, p, n, x, be)
        return torch.tensor(softplus_mean(x), dtype=U.dtype)

    @staticmethod
    def backward(ctx, g):
        Un, Vn, shared, u, p, n, x, be = ctx.args
        dU, dV = bpr_grads_np(Un, Vn, shared, u, p, n, x, float(g), be)
        # a shared table gets its whole gradient once (autograd adds None as zero)
        dV = None if shared else torch.from_numpy(dV)
        return torch.from_numpy(dU), dV, None, None, None, None, None, None, None


def bpr_loss_torch(user_emb, item_emb, Un, Vn, shared, u, p, n, be):
    U = user_emb if isinstance(user_emb, torch.Tensor) else torch.from_numpy(Un)
    V = item_emb if isinstance(item_emb, torch.Tensor) else torch.from_numpy(Vn)
    return BprLossFunction.apply(U, V, Un, Vn, shared, u, p, n, be)
