"""bpr_loss: the BPR loss of a batch of triples, fused (no gathered rows)."""

from __future__ import annotations

import numpy as np

from .. import _backend
from .._torch import is_tensor
from ._common import check_contiguous
from ._common import check_dense as _check_dense
from ._common import check_device as _check_device
from ._common import check_ids as _check_ids
from ._cuda import route as _route


def bpr_inputs(op, user_emb, item_emb, users, pos, neg):
    """Validated (Un, Vn, shared, users, pos, neg): C-contiguous tables and
    one index dtype (int32 when all three are int32, else int64)."""
    Un, Vn, shared = bpr_tables(op, user_emb, item_emb, users, pos, neg)
    u = _check_ids(op, "users", users, Un.shape[0], "user_emb")
    p = _check_ids(op, "pos", pos, Vn.shape[0], "item_emb")
    n = _check_ids(op, "neg", neg, Vn.shape[0], "item_emb")
    if not u.shape == p.shape == n.shape:
        raise ValueError(f"{op}: users, pos and neg must have one length, got {u.shape[0]}, "
                         f"{p.shape[0]} and {n.shape[0]}")
    if u.shape[0] == 0:
        raise ValueError(f"{op}: need at least one triple, got 0")
    it = np.int32 if u.dtype == p.dtype == n.dtype == np.int32 else np.int64
    u, p, n = (np.ascontiguousarray(a, dtype=it) for a in (u, p, n))
    return Un, Vn, shared, u, p, n


def bpr_tables(op, user_emb, item_emb, users, pos, neg, cuda=False):
    """(U, V, shared) checked from metadata (NumPy tables come back
    C-contiguous, tensors as they are; CUDA tables must be contiguous)."""
    if not cuda:
        _check_device(op, user_emb=user_emb, item_emb=item_emb, users=users, pos=pos, neg=neg)
    shared = item_emb is user_emb
    Un = _check_dense(op, "user_emb", user_emb)
    Vn = Un if shared else _check_dense(op, "item_emb", item_emb, dtype=Un.dtype)
    if cuda:
        for name, t in (("user_emb", Un), ("item_emb", Vn)):
            check_contiguous(op, name, t)
    if Vn.shape[1] != Un.shape[1]:
        raise ValueError(f"{op}: item_emb must have the {Un.shape[1]} columns of user_emb, "
                         f"got shape {tuple(Vn.shape)}")
    return Un, Vn, shared


def softplus_mean(x):
    """mean_b log(1 + exp(x_b)) in float64, stable for any x."""
    return float(np.logaddexp(0.0, x.astype(np.float64)).mean())


def sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -x.astype(np.float64)))


def bpr_loss(user_emb, item_emb, users, pos, neg, backend=None):
    """Mean BPR loss of a batch of (user, positive, negative) triples:
    ``mean_b softplus(<u_b, v_neg_b> - <u_b, v_pos_b>)`` (= -mean log sigmoid
    of the score margin), with u = ``user_emb[users]``, v = ``item_emb[...]``.

    Parameters
    ----------
    user_emb : [n_users, F] float32/float64 NumPy array or torch tensor (CPU
        or CUDA; ids on the tables' device).
    item_emb : [n_items, F], same dtype. Pass ``user_emb`` itself (the same
        object) when users and items are rows of one table (LightGCN's
        propagated [users; items] matrix, item ids already offset): the
        gradient then lands in that one table.
    users, pos, neg : [B] integer ids (B >= 1) into user_emb / item_emb.
    backend : ``"auto"``/None, ``"native"``, ``"numba"`` or ``"numpy"``.

    Returns the loss: a NumPy scalar of the tables' dtype for NumPy input; a
    0-d tensor for torch input, differentiable wrt both tables. Nothing of
    size [B, F] is built: the forward is one pass computing the B margins
    (dot products in float64), the backward writes the dense gradient tables
    directly, each row summed by one thread in a fixed order (the same bits
    for any thread count; on CUDA, each row by one warp in a fixed order).
    """
    op = "bpr_loss"
    shared_in = item_emb is user_emb
    dev, ins, back = _route(op, backend, user_emb=user_emb,
                            item_emb=None if shared_in else item_emb, users=users, pos=pos,
                            neg=neg)
    if is_tensor(ins["user_emb"]) or is_tensor(ins["item_emb"]):
        from ..torch_ops.bpr import bpr_loss_tensors

        user_emb, users, pos, neg = ins["user_emb"], ins["users"], ins["pos"], ins["neg"]
        item_emb = user_emb if shared_in else ins["item_emb"]
        U, V, shared = bpr_tables(op, user_emb, item_emb, users, pos, neg, dev is not None)
        return back(bpr_loss_tensors(op, U, None if shared else V, users, pos, neg, backend))
    Un, Vn, shared, u, p, n = bpr_inputs(op, user_emb, item_emb, users, pos, neg)
    be = _backend.resolve(backend, op)
    x = bpr_scores_np(Un, Vn, shared, u, p, n, be)
    return Un.dtype.type(softplus_mean(x))


def bpr_scores_np(Un, Vn, shared, u, p, n, be):
    x = np.empty(u.shape[0], dtype=Un.dtype)
    be.bpr_scores(Un, Vn, Un.shape[1], u, p, n, shared, x)
    return x
