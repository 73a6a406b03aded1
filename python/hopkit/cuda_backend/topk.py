"""Top-K on the device, with the backend contract's ``topk`` /
``topk_prepare`` / ``topk_select``.

Dense: queries in tiles of at most 2**26 scores; each tile is scored by
torch.mm (cuBLAS, TF32 off) and reduced by the select kernel
(csrc/cuda/topk.cu: exclusion, NaN / -inf dropped, ties to the smaller
index). ``topk_select`` (given scores) runs the same kernel on the caller's
score matrix. Candidates: one SDDMM over the candidate CSR, then the same
kernel over its rows. k > TOPK_MAX_K: masked tiles and a stable descending
sort (same order and padding).
"""

from __future__ import annotations

import numpy as np
import torch

from ..codes import MESSAGES, REDUCES
from ._common import ids64, mod, ptr, stream

TOPK_TILE_SCORES = 1 << 26  # scores per query tile (two tiles are alive at once)
_SIDE_STREAMS: dict = {}


def topk_prepare(items):
    return items  # the device kernels read the items as they are


def _score_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _score_tile(Qb, X, sdt, buf=None):
    """Qb @ X.T in sdt (float32 for float32/half inputs, float64 for float64),
    exact float32 products (TF32 off), half inputs with float32 output.
    Written into buf (a tile buffer at least Qb's rows long) when given."""
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        if Qb.dtype in (torch.float16, torch.bfloat16):
            try:
                return torch.mm(Qb, X.T, out_dtype=torch.float32)
            except (TypeError, RuntimeError):
                return torch.mm(Qb.float(), X.float().T)
        if buf is None:
            return torch.mm(Qb, X.T)
        return torch.mm(Qb, X.T, out=buf[:Qb.shape[0]])
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev


def _result_buffer(scores):
    """The select kernel's output: scores itself when it is float32/float64."""
    sdt = _score_dtype(scores.dtype)
    return scores if sdt == scores.dtype else torch.full(scores.shape, float("-inf"), dtype=sdt,
                                                         device=scores.device)


def topk(queries, prepared, n_items, k, ex_indptr, ex_indices, ex_rows, cand_indptr,
         cand_indices, scores, idx):
    """scores / idx [B, k], pre-filled with -inf / -1 by the caller."""
    Q, X, device = queries, prepared, scores.device
    B, N = Q.shape[0], n_items
    if not (k and B):
        return
    out_s = _result_buffer(scores)
    sdt = out_s.dtype
    ex = (ids64(ex_indptr, device), ids64(ex_indices, device), ids64(ex_rows, device))
    cand = None
    if cand_indptr is not None:
        from .spmm import spmm_edge_grad

        ci, cx = ids64(cand_indptr, device), ids64(cand_indices, device)
        Sc = torch.empty(cx.shape[0], dtype=Q.dtype, device=device)
        spmm_edge_grad(ci, cx, B, N, X, Q.shape[1], None, 1, None, MESSAGES["mul"],
                       REDUCES["sum"], Q, None, Sc)
        cand = (ci, cx, Sc.to(sdt))
    if k > mod().TOPK_MAX_K:
        tiles = (_cand_tiles(cand, B, N, sdt, device) if cand is not None
                 else _dense_tile_iter(Q, X, sdt))
        _by_sort(tiles, B, N, k, ex, out_s, idx, device)
    elif cand is not None:
        _select(cand[2], B, N, k, 0, ex, cand, out_s, idx, device)
    else:
        _dense_tiles(Q, X, k, sdt, ex, out_s, idx, device)
    if out_s is not scores:
        scores.copy_(out_s)


def topk_select(S, k, ex_indptr, ex_indices, ex_rows, scores, idx):
    """The k best of given scores S [B, N] per row, into scores / idx."""
    device = scores.device
    B, N = S.shape
    if not (k and B and N):
        return
    out_s = _result_buffer(scores)
    S = S if S.dtype == out_s.dtype else S.to(out_s.dtype)
    ex = (ids64(ex_indptr, device), ids64(ex_indices, device), ids64(ex_rows, device))
    if k > mod().TOPK_MAX_K:
        bq = max(1, min(B, TOPK_TILE_SCORES // max(N, 1)))
        tiles = ((b0, min(B, b0 + bq), S[b0:b0 + bq]) for b0 in range(0, B, bq))
        _by_sort(tiles, B, N, k, ex, out_s, idx, device)
    else:
        _select(S.contiguous(), B, N, k, 0, ex, None, out_s, idx, device)
    if out_s is not scores:
        scores.copy_(out_s)


class _Pipeline:
    """Stream order of the tile loop: the current stream scores tiles, a side
    stream (one per device) selects them."""

    def __init__(self, device):
        self.main = torch.cuda.current_stream(device)
        self.side = _SIDE_STREAMS.get(device.index)
        if self.side is None:
            self.side = _SIDE_STREAMS[device.index] = torch.cuda.Stream(device)
        self.side.wait_stream(self.main)  # inputs and outputs were written on main

    def hand_over(self, S):
        """S, just written on main, is read next on side."""
        S.record_stream(self.side)  # the allocator must not reuse it before side is done
        self.side.wait_stream(self.main)

    def on_side(self):
        return torch.cuda.stream(self.side)

    def mark(self):
        return self.side.record_event()

    def wait(self, event):
        self.main.wait_event(event)

    def join(self):
        self.main.wait_stream(self.side)


def _dense_tiles(Q, X, k, sdt, ex, out_s, idx, device):
    """Scores query tiles on the current stream and selects each on a side
    stream, so that selecting tile i can overlap scoring tile i + 1. Two
    score buffers alternate; events order every reuse, and the current
    stream waits for the side stream before returning."""
    B, N = Q.shape[0], X.shape[0]
    bq = max(1, min(B, TOPK_TILE_SCORES // max(N, 1)))
    pipe = _Pipeline(device)
    bufs, freed = [None, None], [None, None]
    for i, b0 in enumerate(range(0, B, bq)):
        b1, slot = min(B, b0 + bq), i % 2
        if freed[slot] is not None:
            pipe.wait(freed[slot])  # the side stream is done with this buffer
        S = _score_tile(Q[b0:b1], X, sdt, bufs[slot])
        if bufs[slot] is None:
            bufs[slot] = S
        pipe.hand_over(S)
        with pipe.on_side():
            _select(S, b1 - b0, N, k, b0, ex, None, out_s[b0:b1], idx[b0:b1], device)
        freed[slot] = pipe.mark()
    pipe.join()


def _select(S, nq, N, k, q0, ex, cand, out_s, out_i, device):
    args = (0 if S.dtype == torch.float32 else 1, ptr(S), nq, N, k, q0, ptr(ex[0]),
            ptr(ex[1]), ptr(ex[2]), ptr(None if cand is None else cand[0]),
            ptr(None if cand is None else cand[1]), ptr(out_s), ptr(out_i))
    n_ws = mod().topk_select(*args, -1, 0)  # bytes of the per-chunk lists, if several chunks
    ws = torch.empty(n_ws, dtype=torch.uint8, device=device) if n_ws else None
    mod().topk_select(*args, ptr(ws), stream(device))


def _dense_tile_iter(Q, X, sdt):
    B, N = Q.shape[0], X.shape[0]
    bq = max(1, min(B, TOPK_TILE_SCORES // max(N, 1)))
    for b0 in range(0, B, bq):
        b1 = min(B, b0 + bq)
        yield b0, b1, _score_tile(Q[b0:b1], X, sdt)


def _cand_tiles(cand, B, N, sdt, device):
    """Dense [rows, N] tiles holding the candidates' scores, -inf elsewhere."""
    ci = cand[0].cpu().numpy()
    bq = max(1, min(B, TOPK_TILE_SCORES // max(N, 1)))
    for b0 in range(0, B, bq):
        b1 = min(B, b0 + bq)
        S = torch.full((b1 - b0, N), float("-inf"), dtype=sdt, device=device)
        lo, hi = int(ci[b0]), int(ci[b1])
        r = np.repeat(np.arange(b1 - b0), np.diff(ci[b0:b1 + 1]))
        S[torch.from_numpy(r).to(device), cand[1][lo:hi]] = cand[2][lo:hi]
        yield b0, b1, S


def _by_sort(tiles, B, N, k, ex, out_s, idx, device):
    """Fallback for k > TOPK_MAX_K: masked score tiles, NaN -> -inf, stable
    descending sort (equal scores keep the smaller index first), -inf -> -1.
    The exclusion rows are read on the host (one copy per call)."""
    ninf = float("-inf")
    ex_h = None if ex[0] is None else [None if a is None else a.cpu().numpy() for a in ex]
    for b0, b1, S in tiles:
        S = torch.where(torch.isnan(S), ninf, S)  # (nan_to_num would also clip -inf)
        if ex_h is not None:
            ex_indptr, ex_indices, ex_rows = ex_h
            rows = np.arange(b0, b1) if ex_rows is None else np.asarray(ex_rows[b0:b1])
            starts, ends = ex_indptr[rows], ex_indptr[rows + 1]
            r = np.repeat(np.arange(b1 - b0), ends - starts)
            cols = (np.concatenate([ex_indices[s:e] for s, e in zip(starts, ends, strict=True)])
                    if len(r) else np.zeros(0, dtype=np.int64))
            S[torch.from_numpy(r).to(device),
              torch.from_numpy(cols.astype(np.int64)).to(device)] = ninf
        vals, order = torch.sort(S, dim=1, descending=True, stable=True)
        m = min(k, N)
        vals, order = vals[:, :m], order[:, :m]
        order = torch.where(vals == ninf, torch.full_like(order, -1), order)
        out_s[b0:b1, :m] = vals
        idx[b0:b1, :m] = order
