"""NumPy reference backend: the test oracle for every backend, dtype and device.

Every backend module (``hopkit._native``, ``hopkit._numba_kernels`` and this
one) implements these functions with the same arguments and out-parameters,
on arrays that ``hopkit.ops`` has already validated and made C-contiguous:

* ``spmm_forward(indptr, indices, n_rows, n_cols, X, F, E, e_width, eperm,
  message, reduce, Y, arg)`` writes ``Y[i] = reduce_e msg(X[indices[e]], E[e])``
  and, for max/min when ``arg`` is not None, the winning edge position (-1
  for an empty row);
* ``spmm_edge_grad(..., dY, arg, dE)``: gradient wrt the edge features (dY is
  already divided by the row length for mean);
* ``spmm_arg_grad_x(..., dY, arg, dX)``: gradient wrt X for max/min;
* ``coo_to_csr``, ``csr_sum_duplicates``, ``csr_transpose``: CSR construction
  (``coo_to_csr``'s perm may be None: the caller does not use it).
* ``topk_prepare(items) -> prepared`` (the items in the backend's layout;
  identity here) and ``topk(queries, prepared, n_items, k, ex_indptr,
  ex_indices, ex_rows, cand_indptr, cand_indices, scores, idx)``: the k best
  inner products per query (ties to the smaller item, NaN / -inf never
  enter, excluded items never, only candidates when given) into scores/idx
  [B, k], which the caller pre-fills with -inf / -1. Exclusion / candidate
  rows are sorted and unique; ex_rows maps a query to its exclusion row.
* ``bpr_scores(U, V, F, users, pos, neg, shared, x)`` writes
  ``x[b] = U[users[b]] . (V[neg[b]] - V[pos[b]])`` and ``bpr_backward(...,
  c, dU, dV)`` the gradients of ``sum_b c[b] x[b]`` wrt U and V into zeroed
  dU / dV (``shared``: V is U and dV is dU, one table).

Message codes: 0 copy, 1 mul, 2 add, 3 edge (edge features alone). Reduce
codes: 0 sum, 1 mean, 2 max, 3 min. Sum and mean accumulate in float64; max and
min compare the messages in the input dtype (so every backend picks the same
winner); ties keep the first edge; NaN messages never win.
"""

from __future__ import annotations

import numpy as np

from .codes import MESSAGES, REDUCES, SCORES

COPY, MUL, ADD, EDGE = (MESSAGES[k] for k in ("copy", "mul", "add", "edge"))
SUM, MEAN, MAX, MIN = (REDUCES[k] for k in ("sum", "mean", "max", "min"))


def _row_ids(indptr, n_rows):
    return np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(indptr))


def _edge_feats(E, e_width, eperm, nnz, F):
    if E is None or e_width == 0:
        return None
    Ep = E if eperm is None else E[eperm]
    return Ep.reshape(nnz, 1) if e_width == 1 else Ep.reshape(nnz, F)


def _messages(indices, X, E, e_width, eperm, message, nnz, F, dtype):
    ev = _edge_feats(E, e_width, eperm, nnz, F)
    ev = None if ev is None else ev.astype(dtype)
    if message == EDGE:
        return np.broadcast_to(ev, (nnz, F)).copy()
    xg = X[indices].astype(dtype)
    if message == COPY:
        return xg
    if message == MUL:
        return xg * ev
    return xg + ev


def _segment(ufunc, M, indptr, n_rows, fill):
    F = M.shape[1]
    out = np.full((n_rows, F), fill, dtype=M.dtype)
    starts = indptr[:-1]
    nonempty = indptr[1:] > starts
    if nonempty.any():
        out[nonempty] = ufunc.reduceat(M, starts[nonempty], axis=0)
    return out


def spmm_forward(indptr, indices, n_rows, n_cols, X, F, E, e_width, eperm, message, reduce, Y,
                 arg):
    nnz = indices.shape[0]
    deg = np.diff(indptr)
    if reduce in (SUM, MEAN):
        M = _messages(indices, X, E, e_width, eperm, message, nnz, F, np.float64)
        S = _segment(np.add, M, indptr, n_rows, 0.0)
        if reduce == MEAN:
            S = S / np.maximum(deg, 1)[:, None]
        Y[...] = S
        return
    M = _messages(indices, X, E, e_width, eperm, message, nnz, F, Y.dtype)
    best = _segment(np.fmax if reduce == MAX else np.fmin, M, indptr, n_rows, np.nan)
    rows = _row_ids(indptr, n_rows)
    pos = np.arange(nnz, dtype=np.int64)[:, None]
    cand = np.where(M == best[rows], pos, np.iinfo(np.int64).max)
    win = _segment(np.minimum, cand, indptr, n_rows, np.iinfo(np.int64).max)
    empty = np.isnan(best)
    Y[...] = np.where(empty, 0, best)
    if arg is not None:
        arg[...] = np.where(empty, -1, win)


def spmm_edge_grad(indptr, indices, n_rows, n_cols, X, F, E, e_width, eperm, message, reduce,
                   dY, arg, dE):
    nnz = indices.shape[0]
    rows = _row_ids(indptr, n_rows)
    dmsg = np.ones((nnz, F)) if message != MUL else X[indices].astype(np.float64)
    G = dY[rows].astype(np.float64) * dmsg  # d loss / d E[e, f] for every (e, f)
    if reduce in (MAX, MIN):
        G = G * (arg[rows] == np.arange(nnz)[:, None])
    out = G.sum(axis=1) if e_width == 1 and F != 1 else G
    if eperm is not None:
        full = np.zeros_like(out)
        full[eperm] = out
        out = full
    dE[...] = out.reshape(dE.shape)


def spmm_arg_grad_x(indptr, indices, n_rows, n_cols, X, F, E, e_width, eperm, message, reduce,
                    dY, arg, dX):
    acc = np.zeros(dX.shape, dtype=np.float64)
    i, f = np.nonzero(arg >= 0)
    e = arg[i, f]
    g = dY[i, f].astype(np.float64)
    if message == MUL:
        ev = _edge_feats(E, e_width, eperm, indices.shape[0], F)
        g = g * (ev[e, 0] if ev.shape[1] == 1 else ev[e, f])
    np.add.at(acc, (indices[e].astype(np.int64), f), g)
    dX[...] = acc


def coo_to_csr(n_rows, n_cols, rows, cols, values):
    rows64 = rows.astype(np.int64)
    cols64 = cols.astype(np.int64)
    bad = (rows64 < 0) | (rows64 >= n_rows) | (cols64 < 0) | (cols64 >= n_cols)
    if bad.any():
        b = int(np.flatnonzero(bad)[0])
        return b, not (0 <= rows64[b] < n_rows), None, None, None, None, None
    perm = np.lexsort((np.arange(rows.shape[0]), cols64, rows64)).astype(np.int64)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows64, minlength=n_rows), out=indptr[1:])
    cols_out = cols[perm]
    r = rows64[perm]
    new = np.ones(len(perm), dtype=bool)
    new[1:] = (r[1:] != r[:-1]) | (cols_out[1:] != cols_out[:-1])
    uniq = np.bincount(r[new], minlength=n_rows).astype(np.int64)
    vals = None if values is None else values[perm]
    return -1, False, indptr, cols_out, perm, vals, uniq


def csr_sum_duplicates(indptr, cols, values, uniq):
    n_rows = indptr.shape[0] - 1
    r = _row_ids(indptr, n_rows)
    new = np.ones(cols.shape[0], dtype=bool)
    new[1:] = (r[1:] != r[:-1]) | (cols[1:] != cols[:-1])
    out_indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(uniq, out=out_indptr[1:])
    out_values = None
    if values is not None:
        out_values = np.add.reduceat(values, np.flatnonzero(new)) if len(cols) else values[:0]
    return out_indptr, cols[new], out_values


def csr_transpose(indptr, indices, n_cols):
    n_rows = indptr.shape[0] - 1
    rows = _row_ids(indptr, n_rows)
    perm = np.argsort(indices, kind="stable").astype(np.int64)
    t_indptr = np.zeros(n_cols + 1, dtype=np.int64)
    np.cumsum(np.bincount(indices.astype(np.int64), minlength=n_cols), out=t_indptr[1:])
    return t_indptr, rows[perm].astype(indices.dtype), perm


# ---------------------------------------------------------------- negative sampling
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
NEGATIVE_TRIES = 32


def mix64(z):
    """splitmix64 finalizer on uint64 arrays (wrapping arithmetic)."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _draw(key, t, n):
    with np.errstate(over="ignore"):
        z = mix64(key + np.uint64(t) * _GOLDEN)
    return ((z >> np.uint64(32)) * np.asarray(n, dtype=np.uint64) >> np.uint64(32)).astype(
        np.int64)


def sample_negatives(indptr, indices, n_items, users, n_neg, seed, out):
    """out[b * n_neg + j]: an item not in row users[b] (see csrc/include/hopkit/sampling.h:
    counter-based draws, binary-search rejection, exact fallback, -1 for a full row)."""
    n = users.shape[0] * n_neg
    s = np.arange(n, dtype=np.uint64)
    u = np.repeat(users.astype(np.int64), n_neg)
    key = mix64(mix64(np.uint64(seed)) ^ s)
    lo, deg = indptr[u], indptr[u + 1] - indptr[u]
    res = np.full(n, -1, dtype=np.int64)
    todo = np.flatnonzero(deg < n_items)
    for t in range(NEGATIVE_TRIES):
        if todo.size == 0:
            break
        c = _draw(key[todo], t, n_items)
        found = _in_rows(indices, lo[todo], deg[todo], c)
        res[todo[~found]] = c[~found]
        todo = todo[found]
    for i in todo:  # exact fallback: the r-th item missing from the row
        row = np.asarray(indices[lo[i]:lo[i] + deg[i]], dtype=np.int64)
        r = int(_draw(key[i:i + 1], NEGATIVE_TRIES, n_items - deg[i])[0])
        res[i] = r + int(np.searchsorted(row - np.arange(deg[i]), r, side="right"))
    out[...] = res.astype(out.dtype)


def _in_rows(indices, lo, deg, c):
    """Vectorised membership of c[k] in the sorted row (lo[k], deg[k])."""
    if len(indices) == 0:
        return np.zeros(len(c), dtype=bool)
    left, right = lo.copy(), lo + deg
    while True:
        active = left < right
        if not active.any():
            break
        mid = (left + right) // 2
        v = np.where(active, indices[np.minimum(mid, max(len(indices) - 1, 0))], 0)
        go_right = active & (v < c)
        left = np.where(go_right, mid + 1, left)
        right = np.where(active & ~go_right, mid, right)
    end = lo + deg
    hit = left < end
    return hit & (indices[np.minimum(left, max(len(indices) - 1, 0))] == c)

# ---------------------------------------------------------------- propagate
def propagate(indptr, indices, n_rows, n_cols, X, F, E, eperm, alpha, out, work):
    """out = sum_l alpha[l] A^l X (layers = len(alpha) - 1), summed layer by
    layer in float64 (the kernels use Horner's rule; ``work`` is unused here)."""
    nnz = indices.shape[0]
    w = None if E is None else (E if eperm is None else E[eperm]).astype(np.float64)
    H = X.astype(np.float64)
    acc = np.zeros((n_rows, F))
    if alpha[0] != 0:
        acc += alpha[0] * H
    for layer in range(1, len(alpha)):
        M = H[indices] if w is None else H[indices] * w.reshape(nnz, 1)
        H = _segment(np.add, M, indptr, n_rows, 0.0)
        acc += alpha[layer] * H
    out[...] = acc


# ---------------------------------------------------------------- bpr
def bpr_scores(U, V, F, users, pos, neg, shared, x):
    u = U[users].astype(np.float64)
    x[...] = np.einsum("bf,bf->b", u, V[neg].astype(np.float64) - V[pos].astype(np.float64))


def bpr_backward(U, V, F, users, pos, neg, shared, c, dU, dV):
    c = c.astype(np.float64)[:, None]
    gu = np.zeros(U.shape)
    gv = gu if shared else np.zeros(V.shape)
    np.add.at(gu, users, c * (V[neg].astype(np.float64) - V[pos].astype(np.float64)))
    cu = c * U[users].astype(np.float64)
    np.add.at(gv, neg, cu)
    np.add.at(gv, pos, -cu)
    dU[...] = gu
    if not shared:
        dV[...] = gv


# ---------------------------------------------------------------- attention
DOT, GAT = SCORES["dot"], SCORES["gat"]


def _attention_scores(rows, indices, Q, K, n_rows, n_cols, heads, dk, score, scale, slope):
    """Per-edge scores [nnz, heads] and, for GAT, d score / d pre-activation."""
    Qh = Q.astype(np.float64).reshape(n_rows, heads, dk)
    Kh = K.astype(np.float64).reshape(n_cols, heads, dk)
    if score == DOT:
        return scale * np.einsum("ehd,ehd->eh", Qh[rows], Kh[indices]), None
    z = Qh[rows, :, 0] + Kh[indices, :, 0]
    return np.where(z > 0, z, slope * z), np.where(z > 0, 1.0, slope)


def attention_forward(indptr, indices, n_rows, n_cols, Q, K, V, heads, dk, dv, score, scale,
                      slope, out, lse):
    """out[i, h] = sum_j softmax_j(s_ij) V[j, h] with materialised per-edge
    scores (float64); lse[i, h] = log sum_j exp(s_ij), -inf for an empty row."""
    rows = _row_ids(indptr, n_rows)
    s, _ = _attention_scores(rows, indices, Q, K, n_rows, n_cols, heads, dk, score, scale,
                             slope)
    m = _segment(np.maximum, s, indptr, n_rows, -np.inf)
    p = np.exp(s - m[rows]) if len(rows) else s
    lsum = _segment(np.add, p, indptr, n_rows, 0.0)
    with np.errstate(divide="ignore"):
        lse[...] = np.where(lsum > 0, m + np.log(np.where(lsum > 0, lsum, 1.0)), -np.inf)
    P = p / lsum[rows] if len(rows) else p
    Vh = V.astype(np.float64).reshape(n_cols, heads, dv)
    M = (P[:, :, None] * Vh[indices]).reshape(len(rows), heads * dv)
    out[...] = _segment(np.add, M, indptr, n_rows, 0.0)


def attention_backward(indptr, indices, t_indptr, t_indices, n_rows, n_cols, Q, K, V, heads,
                       dk, dv, score, scale, slope, out, dout, lse, dQ, dK, dV):
    """dQ, dK, dV by the chain rule on materialised per-edge tensors (float64);
    the transpose (t_indptr, t_indices) is not needed here."""
    rows = _row_ids(indptr, n_rows)
    idx = indices.astype(np.int64)
    s, g = _attention_scores(rows, indices, Q, K, n_rows, n_cols, heads, dk, score, scale,
                             slope)
    P = np.exp(s - lse[rows].astype(np.float64))
    dO = dout.astype(np.float64).reshape(n_rows, heads, dv)
    Oh = out.astype(np.float64).reshape(n_rows, heads, dv)
    Vh = V.astype(np.float64).reshape(n_cols, heads, dv)
    delta = np.einsum("ihd,ihd->ih", dO, Oh)
    dp = np.einsum("ehd,ehd->eh", dO[rows], Vh[idx])
    ds = P * (dp - delta[rows])
    gV = np.zeros((n_cols, heads, dv))
    np.add.at(gV, idx, P[:, :, None] * dO[rows])
    gQ = np.zeros((n_rows, heads, dk))
    gK = np.zeros((n_cols, heads, dk))
    if score == DOT:
        Qh = Q.astype(np.float64).reshape(n_rows, heads, dk)
        Kh = K.astype(np.float64).reshape(n_cols, heads, dk)
        np.add.at(gQ, rows, scale * ds[:, :, None] * Kh[idx])
        np.add.at(gK, idx, scale * ds[:, :, None] * Qh[rows])
    else:
        np.add.at(gQ[:, :, 0], rows, ds * g)
        np.add.at(gK[:, :, 0], idx, ds * g)
    dQ[...] = gQ.reshape(dQ.shape)
    dK[...] = gK.reshape(dK.shape)
    dV[...] = gV.reshape(dV.shape)
def topk_prepare(items):
    return items


def topk(queries, prepared, n_items, k, ex_indptr, ex_indices, ex_rows, cand_indptr,
         cand_indices, scores, idx):
    """Brute force: float64 scores, explicit masks, a stable (score desc, item
    asc) lexsort per query. ``prepared`` is ``topk_prepare(items)``: the items."""
    X = prepared.astype(np.float64)
    _select(lambda b0, b1: queries[b0:b1].astype(np.float64) @ X.T, queries.shape[0], n_items,
            k, ex_indptr, ex_indices, ex_rows, cand_indptr, cand_indices, scores, idx)


def topk_select(S, k, ex_indptr, ex_indices, ex_rows, scores, idx):
    """The selection of ``topk`` on given scores S [B, N]."""
    _select(lambda b0, b1: S[b0:b1], S.shape[0], S.shape[1], k, ex_indptr, ex_indices,
            ex_rows, None, None, scores, idx)


def _select(score_block, B, N, k, ex_indptr, ex_indices, ex_rows, cand_indptr, cand_indices,
            scores, idx):
    step = max(1, (1 << 22) // max(N, 1))
    for b0 in range(0, B, step):
        b1 = min(B, b0 + step)
        S = score_block(b0, b1)
        valid = ~np.isnan(S) & (S > -np.inf)
        for r in range(b0, b1):
            if cand_indptr is not None:
                keep = np.zeros(N, dtype=bool)
                keep[cand_indices[cand_indptr[r]:cand_indptr[r + 1]]] = True
                valid[r - b0] &= keep
            if ex_indptr is not None:
                e = ex_rows[r] if ex_rows is not None else r
                valid[r - b0, ex_indices[ex_indptr[e]:ex_indptr[e + 1]]] = False
            ids = np.flatnonzero(valid[r - b0])
            order = np.lexsort((ids, -S[r - b0, ids]))[:k]
            n = len(order)
            scores[r, :n] = S[r - b0, ids[order]]
            idx[r, :n] = ids[order]
