"""g-SpMM on the device (csrc/cuda/spmm.cu), with the backend contract's
signatures. The max/min gradient wrt X runs the forward kernel on the
device transpose, masked by the kept arg (no atomics), where the CPU
backends scatter through the arg."""

from __future__ import annotations

import torch

from ..codes import MESSAGES, REDUCES
from ._common import acc_dtype, device_graph, dtype_code, ids64, mod, ptr, stream

MUL, COPY = MESSAGES["mul"], MESSAGES["copy"]
SUM = REDUCES["sum"]


def forward(G, X, F, E, e_width, eperm, message, reduce, mask, Y, arg):
    device = Y.device
    n_ws = G.n_slots * F
    ws_val = torch.empty(n_ws, dtype=acc_dtype(Y.dtype), device=device) if n_ws else None
    ws_arg = torch.empty(n_ws, dtype=torch.int32, device=device) if n_ws and reduce >= 2 else None
    mod().spmm_forward(G.desc, G.plan, dtype_code("spmm", "X", Y.dtype), ptr(X), F, ptr(E),
                       e_width, ptr(ids64(eperm, device)), message, reduce, ptr(mask), ptr(Y),
                       ptr(arg), ptr(ws_val), ptr(ws_arg), stream(device))


def spmm_forward(indptr, indices, n_rows, n_cols, X, F, E, e_width, eperm, message, reduce, Y,
                 arg):
    G = device_graph(indptr, indices, n_rows, n_cols, Y.device)
    forward(G, X, F, E, e_width, eperm, message, reduce, None, Y, arg)


def spmm_edge_grad(indptr, indices, n_rows, n_cols, X, F, E, e_width, eperm, message, reduce,
                   dY, arg, dE):
    device = dE.device
    G = device_graph(indptr, indices, n_rows, n_cols, device)
    mod().spmm_edge_grad(G.desc, dtype_code("spmm", "dY", dY.dtype), ptr(X), F, ptr(E), e_width,
                         ptr(ids64(eperm, device)), message, reduce, ptr(dY),
                         ptr(arg if reduce >= 2 else None), ptr(dE), stream(device))


def spmm_arg_grad_x(indptr, indices, n_rows, n_cols, X, F, E, e_width, eperm, message, reduce,
                    dY, arg, dX):
    """Edge t of the transpose (stored edge perm[t] of A) passes dY[i, f] to
    dX[j, f] only where it won. The kernel reads the edge features at, and
    compares the mask with, one id per edge: the stored position (no eperm),
    else the caller's edge id (eperm[perm[t]], with the arg mapped through
    eperm too)."""
    device = dX.device
    G = device_graph(indptr, indices, n_rows, n_cols, device)
    t_indptr, t_indices, perm = G.transpose()
    GT = device_graph(t_indptr, t_indices, n_cols, n_rows, device)
    if eperm is None:
        kperm, mask = perm, arg
    else:
        ep = ids64(eperm, device)
        kperm = ep[perm]
        mask = torch.where(arg >= 0, ep[arg.clamp(min=0)], torch.full_like(arg, -1))
    tmsg = MUL if message == MUL else COPY
    E_, ew = (E, e_width) if tmsg == MUL else (None, 0)
    forward(GT, dY, F, E_, ew, kperm, tmsg, SUM, mask.contiguous(), dX, None)
