"""torch.autograd Functions for spmm and sddmm."""

from __future__ import annotations

import numpy as np
import torch

from ..ops._cuda import is_cuda_backend
from ..ops.spmm import (
    EDGE,
    MESSAGES,
    REDUCES,
    sddmm_np,
    spmm_edge_grad_np,
    spmm_forward_np,
    spmm_grad_x_np,
)


def _np(t):
    return None if t is None else t.detach().contiguous().numpy()


def _grad_in(g, be):
    """An incoming gradient as the kernels take it: a contiguous CUDA tensor
    for the CUDA backend, else a C-contiguous NumPy array."""
    if is_cuda_backend(be):
        return g.detach().contiguous()
    return np.ascontiguousarray(_np(g))


def _tensor(a):
    return a if isinstance(a, torch.Tensor) else torch.from_numpy(a)


class SpMMFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, Ew, A, Xn, F, dtype, E, e_width, msg, red, be, want_arg):
        Y, arg = spmm_forward_np(A, Xn, F, dtype, E, e_width, msg, red, be, want_arg)
        ctx.A, ctx.Xn, ctx.E, ctx.arg = A, Xn, E, arg
        ctx.cfg = (F, e_width, msg, red, be)
        Y = _tensor(Y)
        arg_t = _tensor(arg) if arg is not None else torch.empty(0, dtype=torch.int64,
                                                                 device=Y.device)
        ctx.mark_non_differentiable(arg_t)
        return Y, arg_t

    @staticmethod
    def backward(ctx, dY, _darg):
        F, e_width, msg, red, be = ctx.cfg
        dYn = _grad_in(dY, be)
        dX = dE = None
        if ctx.needs_input_grad[0] and msg != EDGE:
            dX = _tensor(
                spmm_grad_x_np(ctx.A, ctx.Xn, F, ctx.E, e_width, msg, red, ctx.arg, dYn, be))
        if ctx.needs_input_grad[1]:
            dE = _tensor(
                spmm_edge_grad_np(ctx.A, ctx.Xn, F, ctx.E, e_width, msg, red, ctx.arg, dYn,
                                      be))
        return dX, dE, None, None, None, None, None, None, None, None, None, None


def spmm_torch(A, X, edge_weight, Xn, F, dtype, E, e_width, msg, red, be, return_arg):
    """torch entry of hopkit.spmm; returns (Y, arg or None). The max/min arg is
    only computed when asked for or needed by a backward pass."""
    Ew = edge_weight if isinstance(edge_weight, torch.Tensor) else None
    Xt = X if isinstance(X, torch.Tensor) else (None if X is None else torch.from_numpy(Xn))
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (Xt, Ew))
    want_arg = red >= 2 and (return_arg or needs_grad)
    Y, arg = SpMMFunction.apply(Xt, Ew, A, Xn, F, dtype, E, e_width, msg, red, be, want_arg)
    return Y, (arg if want_arg else None)


class SDDMMFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, U, V, A, Un, Vn, scale, be):
        ctx.A, ctx.Un, ctx.Vn, ctx.scale, ctx.be = A, Un, Vn, scale, be
        return _tensor(sddmm_np(A, Un, Vn, scale, be))

    @staticmethod
    def backward(ctx, g):
        A, be = ctx.A, ctx.be
        gn = _grad_in(g, be)
        if ctx.scale:
            if is_cuda_backend(be):
                from ..ops._cuda import edge_values

                gn = (gn * edge_values(A, gn.device, gn.dtype)).contiguous()
            else:
                gn = gn * A.values_as(gn.dtype)
        F, dtype = ctx.Un.shape[1], ctx.Un.dtype
        mul, sum_ = MESSAGES["mul"], REDUCES["sum"]
        dU = dV = None
        if ctx.needs_input_grad[0]:  # dU = A_g V
            dU = _tensor(spmm_forward_np(A, ctx.Vn, F, dtype, gn, 1, mul, sum_, be)[0])
        if ctx.needs_input_grad[1]:  # dV = A_g^T U
            Un = ctx.Un if is_cuda_backend(be) else np.ascontiguousarray(ctx.Un)
            dV = _tensor(spmm_grad_x_np(A, None, F, gn, 1, mul, sum_, None, Un, be))
        return dU, dV, None, None, None, None, None


def sddmm_torch(A, U, V, Un, Vn, scale, be):
    Ut = U if isinstance(U, torch.Tensor) else torch.from_numpy(Un)
    Vt = V if isinstance(V, torch.Tensor) else torch.from_numpy(Vn)
    return SDDMMFunction.apply(Ut, Vt, A, Un, Vn, scale, be)
