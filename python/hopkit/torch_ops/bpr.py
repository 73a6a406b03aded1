"""hopkit::bpr_loss: the mean BPR loss of a batch of triples, fused (the
forward keeps the B margins; the backward writes the dense gradient tables in
one native call). ``V=None`` means one shared table (V is U)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .. import _backend
from ..ops._common import check_ids
from ..ops.bpr import bpr_grads_np, bpr_scores_np, softplus_mean
from .graph import as_np


def _ids(U, V, users, pos, neg):
    """The ids as one index dtype, range-checked (the check needs the values,
    so it runs here, before the kernel)."""
    n_items = (U if V is None else V).shape[0]
    u = check_ids("bpr_loss", "users", as_np(users), U.shape[0], "user_emb")
    p = check_ids("bpr_loss", "pos", as_np(pos), n_items, "item_emb")
    n = check_ids("bpr_loss", "neg", as_np(neg), n_items, "item_emb")
    it = np.int32 if u.dtype == p.dtype == n.dtype == np.int32 else np.int64
    return (np.ascontiguousarray(a, dtype=it) for a in (u, p, n))


@torch.library.custom_op("hopkit::bpr_loss", mutates_args=())
def bpr_loss(U: Tensor, V: Tensor | None, users: Tensor, pos: Tensor, neg: Tensor,
             backend: str) -> tuple[Tensor, Tensor]:
    """(loss 0-d, margins [B]): margins x_b = <u_b, v_neg_b - v_pos_b>."""
    be = _backend.resolve(backend, "bpr_loss")
    Un = as_np(U)
    Vn = Un if V is None else as_np(V)
    x = bpr_scores_np(Un, Vn, V is None, *_ids(U, V, users, pos, neg), be)
    return torch.tensor(softplus_mean(x), dtype=U.dtype), torch.from_numpy(x)


@bpr_loss.register_fake
def _(U, V, users, pos, neg, backend):
    return U.new_empty(()), U.new_empty(users.shape)


@torch.library.custom_op("hopkit::bpr_backward", mutates_args=())
def bpr_backward(U: Tensor, V: Tensor | None, users: Tensor, pos: Tensor, neg: Tensor,
                 x: Tensor, g: Tensor, backend: str) -> tuple[Tensor, Tensor]:
    """(dU, dV) of g * loss; dV is [0] for a shared table (all in dU)."""
    be = _backend.resolve(backend, "bpr_loss")
    Un = as_np(U)
    Vn = Un if V is None else as_np(V)
    dU, dV = bpr_grads_np(Un, Vn, V is None, *_ids(U, V, users, pos, neg), as_np(x),
                          float(g), be)
    return torch.from_numpy(dU), (torch.empty(0, dtype=U.dtype) if V is None
                                  else torch.from_numpy(dV))


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
    return bpr_loss(as_tensor(U), as_tensor(V), *ids, backend or "auto")[0]
