"""Fused softmax attention on the device (csrc/cuda/attention.cu): forward
over A's rows; backward pass 1 over A's rows (dQ), pass 2 over the
transpose's (dK, dV), no atomics."""

from __future__ import annotations

import torch

from ._common import device_graph, dtype_code, mod, ptr, stream


def attention_forward(indptr, indices, n_rows, n_cols, Q, K, V, heads, dk, dv, score, scale,
                      slope, out, lse):
    device = out.device
    G = device_graph(indptr, indices, n_rows, n_cols, device)
    n_ws = G.n_slots * heads * (dv + 2)  # split rows' (acc, m, l) partials
    ws = torch.empty(n_ws, dtype=Q.dtype, device=device) if n_ws else None
    mod().attention_forward(G.desc, G.plan, dtype_code("attention_aggregate", "Q", Q.dtype),
                            ptr(Q), ptr(K), ptr(V), heads, dk, dv, score, scale, slope, ptr(out),
                            ptr(lse), ptr(ws), stream(device))


def attention_backward(indptr, indices, t_indptr, t_indices, n_rows, n_cols, Q, K, V, heads, dk,
                       dv, score, scale, slope, out, dout, lse, dQ, dK, dV):
    device = dQ.device
    G = device_graph(indptr, indices, n_rows, n_cols, device)
    GT = device_graph(t_indptr, t_indices, n_cols, n_rows, device)
    delta = torch.empty((n_rows, heads), dtype=Q.dtype, device=device)
    mod().attention_backward(G.desc, GT.desc, dtype_code("attention_aggregate", "Q", Q.dtype),
                             ptr(Q), ptr(K), ptr(V), heads, dk, dv, score, scale, slope,
                             ptr(out), ptr(dout), ptr(lse), ptr(delta), ptr(dQ), ptr(dK),
                             ptr(dV), stream(device))
