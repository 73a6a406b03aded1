"""Fused BPR on the device (csrc/cuda/bpr.cu). The margins: one warp per
triple, float64 dot products. The backward: every destination row of dU / dV
gets its terms from a slot list sorted by row on the device (a stable sort,
so each row sums its terms in triple order, in float64, with no atomics; the
same bits on every run)."""

from __future__ import annotations

import torch

from ._common import dtype_code, mod, ptr, stream


def bpr_scores(U, V, F, users, pos, neg, shared, x):
    mod().bpr_scores(dtype_code("bpr_loss", "user_emb", U.dtype), ptr(U), ptr(V), F,
                     users.dtype == torch.int64, ptr(users), ptr(pos), ptr(neg),
                     int(users.shape[0]), ptr(x), stream(x.device))


def _rows(Src, F, rows, src, w, out):
    """out[r] = sum over slots s with rows[s] == r (in slot order) of w[s] * Src[src[s]]."""
    n = out.shape[0]
    rows = rows.to(torch.int64)
    order = torch.sort(rows, stable=True).indices
    srt = rows[order]
    row_ptr = torch.searchsorted(srt, torch.arange(n + 1, dtype=torch.int64, device=rows.device))
    src_s = src.to(torch.int64)[order].contiguous()  # named: alive until the kernel is queued
    w_s = w[order].contiguous()
    mod().bpr_rows(dtype_code("bpr_loss", "user_emb", out.dtype), ptr(Src), F, n, ptr(row_ptr),
                   ptr(src_s), ptr(w_s), ptr(out), stream(out.device))


def bpr_backward(U, V, F, users, pos, neg, shared, c, dU, dV):
    """Gradients of sum_b c[b] x[b] into dU / dV (every row written: the
    rows no triple touches get 0, as in the zeroed tables the contract takes)."""
    cat = torch.cat
    if shared:  # one table: all four kinds of terms land in dU, read from U
        _rows(U, F, cat([users, users, neg, pos]), cat([neg, pos, users, users]),
              cat([c, -c, c, -c]), dU)
        return
    _rows(V, F, cat([users, users]), cat([neg, pos]), cat([c, -c]), dU)
    _rows(U, F, cat([neg, pos]), cat([users, users]), cat([c, -c]), dV)
