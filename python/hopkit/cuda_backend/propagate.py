"""Fused multi-hop propagation on the device (csrc/cuda/propagate.cu): L hops
queued on the current stream, no host synchronisation between them."""

from __future__ import annotations

import numpy as np
import torch

from ._common import acc_dtype, device_graph, dtype_code, ids64, mod, ptr, stream


def propagate(indptr, indices, n_rows, n_cols, X, F, E, eperm, alpha, out, work):
    device = out.device
    G = device_graph(indptr, indices, n_rows, n_cols, device)
    a = alpha.detach().cpu().numpy() if isinstance(alpha, torch.Tensor) else np.asarray(alpha)
    n_ws = G.n_slots * F
    ws = torch.empty(n_ws, dtype=acc_dtype(out.dtype), device=device) if n_ws else None
    mod().propagate(G.desc, G.plan, dtype_code("propagate", "X", out.dtype), ptr(X), F, ptr(E),
                    ptr(ids64(eperm, device)), [float(v) for v in a], ptr(out), ptr(work),
                    ptr(ws), stream(device))
