"""hopkit::bpr_loss: the mean BPR loss of a batch of triples, fused (the
forward keeps the B margins; the backward writes the dense gradient tables in
one backend call). ``V=None`` means one shared table (V is U)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..ops._common import check_ids
from .graph import kernel_backend, refuse_forward_ad


def _ids(U, V, users, pos, neg):
    """The ids as one index dtype, range-checked (the check needs the values,
    so it runs here, before the kernel)."""
    n_items = (U if V is None else V).shape[0]
    u = check_ids("bpr_loss", "users", users, U.shape[0], "user_emb")
    p = check_ids("bpr_loss", "pos", pos, n_items, "item_emb")
    n = check_ids("bpr_loss", "neg", neg, n_items, "item_emb")
    it = torch.int32 if u.dtype == p.dtype == n.dtype == torch.int32 else torch.int64
    return tuple(a.to(device=U.device, dtype=it).contiguous() for a in (u, p, n))


def softplus_mean(x):
    """mean_b log(1 + exp(x_b)) in float64, stable for any x."""
    x = x.to(torch.float64)
    return torch.logaddexp(torch.zeros_like(x), x).mean()


def _sigmoid(x):
    x = x.to(torch.float64)
    return torch.exp(-torch.logaddexp(torch.zeros_like(x), -x))


@torch.library.custom_op("hopkit::bpr_loss", mutates_args=())
def bpr_loss(U: Tensor, V: Tensor | None, users: Tensor, pos: Tensor, neg: Tensor,
             backend: str) -> tuple[Tensor, Tensor]:
    """(loss 0-d, margins [B]): margins x_b = <u_b, v_neg_b - v_pos_b>."""
    be, arr = kernel_backend(backend, "bpr_loss", U)
    u, p, n = _ids(U, V, users, pos, neg)
    x = U.new_empty(u.shape[0])
    Un = arr(U)
    be.bpr_scores(Un, Un if V is None else arr(V), U.shape[1], arr(u), arr(p), arr(n), V is None,
                  arr(x))
    return softplus_mean(x).to(U.dtype), x


@bpr_loss.register_fake
def _(U, V, users, pos, neg, backend):
    return U.new_empty(()), U.new_empty(users.shape)


@torch.library.custom_op("hopkit::bpr_backward", mutates_args=())
def bpr_backward(U: Tensor, V: Tensor | None, users: Tensor, pos: Tensor, neg: Tensor,
                 x: Tensor, g: Tensor, backend: str) -> tuple[Tensor, Tensor]:
    """(dU, dV) of g * loss; dV is [0] for a shared table (all in dU)."""
    be, arr = kernel_backend(backend, "bpr_loss", U)
    u, p, n = _ids(U, V, users, pos, neg)
    c = (g.to(torch.float64) * _sigmoid(x) / x.shape[0]).to(U.dtype)
    dU = torch.zeros_like(U)
    dV = U.new_empty(0) if V is None else torch.zeros_like(V)
    Un, dUn = arr(U), arr(dU)
    be.bpr_backward(Un, Un if V is None else arr(V), U.shape[1], arr(u), arr(p), arr(n),
                    V is None, arr(c), dUn, dUn if V is None else arr(dV))
    return dU, dV


@bpr_backward.register_fake
def _(U, V, users, pos, neg, x, g, backend):
    return torch.empty_like(U), (U.new_empty(0) if V is None else torch.empty_like(V))


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:5], output[1])
    ctx.mark_non_differentiable(output[1])  # the margins
    ctx.backend = inputs[5]


def _backward(ctx, g, _dx):
    U, V, users, pos, neg, x = ctx.saved_tensors
    dU, dV = bpr_backward(U, V, users, pos, neg, x, g, ctx.backend)
    return dU, (None if V is None else dV), None, None, None, None


bpr_loss.register_autograd(_backward, setup_context=_setup)


def bpr_loss_tensors(op, U, V, users, pos, neg, backend):
    """hopkit.bpr_loss's torch path (V None: one shared table); the ids'
    metadata is checked here, their range inside the operator."""
    from ..ops._common import check_ids_meta
    from .spmm import as_tensor

    ids = []
    for name, a in (("users", users), ("pos", pos), ("neg", neg)):
        a = as_tensor(a if isinstance(a, (Tensor, np.ndarray)) else np.asarray(a))
        check_ids_meta(op, name, a)
        ids.append(a)
    if not ids[0].shape[0] == ids[1].shape[0] == ids[2].shape[0]:
        raise ValueError(f"{op}: users, pos and neg must have one length, got "
                         f"{ids[0].shape[0]}, {ids[1].shape[0]} and {ids[2].shape[0]}")
    if ids[0].shape[0] == 0:
        raise ValueError(f"{op}: need at least one triple, got 0")
    U, V = as_tensor(U), as_tensor(V)
    refuse_forward_ad(op, (U, V))
    return bpr_loss(U, V, *ids, backend or "auto")[0]
