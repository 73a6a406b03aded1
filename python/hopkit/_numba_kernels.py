"""Numba backend: the fast fallback when the native extension is absent.

Same contract as ``hopkit.reference`` (see its docstring). The spmm kernels
are parallel over rows with ``prange``; CSR construction reuses the NumPy
reference. Optional arrays travel as empty arrays plus a flag so that each
kernel compiles once per (value dtype, index dtype).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import reference as _ref
from .codes import MESSAGES, REDUCES, SCORES

COPY, MUL, ADD, EDGE = (MESSAGES[k] for k in ("copy", "mul", "add", "edge"))
SUM, MEAN, MAX, MIN = (REDUCES[k] for k in ("sum", "mean", "max", "min"))
DOT = SCORES["dot"]

coo_to_csr = _ref.coo_to_csr
topk_prepare = _ref.topk_prepare
csr_sum_duplicates = _ref.csr_sum_duplicates
csr_transpose = _ref.csr_transpose


@njit(inline="always")
def _msg(message, x, ev):
    if message == COPY:
        return x
    if message == MUL:
        return x * ev
    if message == ADD:
        return x + ev
    return ev


@njit(parallel=True, cache=True)
def _forward(indptr, indices, X, E, e_vec, eperm, has_perm, message, reduce, Y, arg):
    n_rows, F = Y.shape
    for i in prange(n_rows):
        b, end = indptr[i], indptr[i + 1]
        for f in range(F):
            Y[i, f] = 0
            if reduce >= MAX:
                arg[i, f] = -1
        for e in range(b, end):
            j = indices[e]
            ee = eperm[e] if has_perm else e
            for f in range(F):
                ev = E[ee, f if e_vec else 0] if message != COPY else E[0, 0]
                x = X[j, f] if message != EDGE else ev
                m = _msg(message, x, ev)
                if reduce <= MEAN:
                    Y[i, f] += m
                else:
                    better = m > Y[i, f] if reduce == MAX else m < Y[i, f]
                    if better or (arg[i, f] < 0 and m == m):
                        Y[i, f] = m
                        arg[i, f] = e
        if reduce == MEAN and end > b:
            for f in range(F):
                Y[i, f] /= end - b


@njit(parallel=True, cache=True)
def _edge_grad(indptr, indices, X, E, e_vec, eperm, has_perm, message, reduce, dY, arg, dE):
    n_rows, F = dY.shape
    for i in prange(n_rows):
        for e in range(indptr[i], indptr[i + 1]):
            ee = eperm[e] if has_perm else e
            j = indices[e]
            for f in range(dE.shape[1]):
                dE[ee, f] = 0
            for f in range(F):
                if reduce >= MAX and arg[i, f] != e:
                    continue
                c = dY[i, f] * X[j, f] if message == MUL else dY[i, f]
                dE[ee, f if e_vec else 0] += c


@njit(cache=True)
def _arg_grad_x(indices, E, e_vec, eperm, has_perm, message, dY, arg, dX):
    n_rows, F = dY.shape
    dX[:] = 0
    for i in range(n_rows):
        for f in range(F):
            e = arg[i, f]
            if e < 0:
                continue
            g = dY[i, f]
            if message == MUL:
                ee = eperm[e] if has_perm else e
                g = g * E[ee, f if e_vec else 0]
            dX[indices[e], f] += g


def _prep(X, F, E, e_width, eperm, nnz, dtype):
    X2 = X if X is not None else np.zeros((0, F), dtype=dtype)
    e_vec = e_width != 0 and not (e_width == 1 and F != 1)
    if E is None or e_width == 0:
        E2 = np.zeros((1, 1), dtype=dtype)
    else:
        E2 = E.reshape(nnz, F if e_vec else 1)
    perm = eperm if eperm is not None else np.zeros(1, dtype=np.int64)
    return X2, E2, e_vec, perm, eperm is not None


def spmm_forward(indptr, indices, n_rows, n_cols, X, F, E, e_width, eperm, message, reduce, Y,
                 arg):
    X2, E2, e_vec, perm, has_perm = _prep(X, F, E, e_width, eperm, indices.shape[0], Y.dtype)
    if arg is not None:
        arg2 = arg
    elif reduce >= MAX:  # the kernel tracks winners in it
        arg2 = np.empty(Y.shape, dtype=np.int64)
    else:
        arg2 = np.zeros((1, 1), dtype=np.int64)
    _forward(indptr, indices, X2, E2, e_vec, perm, has_perm, message, reduce, Y, arg2)


def spmm_edge_grad(indptr, indices, n_rows, n_cols, X, F, E, e_width, eperm, message, reduce,
                   dY, arg, dE):
    nnz = indices.shape[0]
    X2, E2, e_vec, perm, has_perm = _prep(X, F, E, e_width, eperm, nnz, dY.dtype)
    arg2 = arg if arg is not None else np.zeros((1, 1), dtype=np.int64)
    dE2 = dE.reshape(nnz, F if e_vec else 1)
    _edge_grad(indptr, indices, X2, E2, e_vec, perm, has_perm, message, reduce, dY, arg2, dE2)


def spmm_arg_grad_x(indptr, indices, n_rows, n_cols, X, F, E, e_width, eperm, message, reduce,
                    dY, arg, dX):
    X2, E2, e_vec, perm, has_perm = _prep(X, F, E, e_width, eperm, indices.shape[0], dY.dtype)
    _arg_grad_x(indices, E2, e_vec, perm, has_perm, message, dY, arg, dX)


# ---------------------------------------------------------------- negative sampling
@njit(inline="always")
def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(inline="always")
def _draw(key, t, n):
    z = _mix64(key + np.uint64(t) * np.uint64(0x9E3779B97F4A7C15))
    return np.int64(((z >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))


@njit(parallel=True, cache=True)
def _sample_negatives(indptr, indices, n_items, users, n_neg, seed, out, tries):
    n = users.shape[0] * n_neg
    base = _mix64(np.uint64(seed))
    for s in prange(n):
        u = np.int64(users[s // n_neg])
        lo = indptr[u]
        deg = indptr[u + 1] - lo
        key = _mix64(base ^ np.uint64(s))
        item = -1
        if deg < n_items:
            for t in range(tries):
                c = _draw(key, t, n_items)
                a, b = lo, lo + deg
                while a < b:
                    m = (a + b) // 2
                    if indices[m] < c:
                        a = m + 1
                    else:
                        b = m
                if a == lo + deg or indices[a] != c:
                    item = c
                    break
            if item < 0:
                r = _draw(key, tries, n_items - deg)
                a, b = np.int64(0), deg
                while a < b:
                    m = (a + b) // 2
                    if np.int64(indices[lo + m]) - m <= r:
                        a = m + 1
                    else:
                        b = m
                item = r + a
        out[s] = item


def sample_negatives(indptr, indices, n_items, users, n_neg, seed, out):
    _sample_negatives(indptr, indices, np.int64(n_items), users, np.int64(n_neg),
                      np.uint64(seed), out, _ref.NEGATIVE_TRIES)

# ---------------------------------------------------------------- propagate
@njit(parallel=True, cache=True)
def _propagate_hop(indptr, indices, W, has_w, eperm, has_perm, src, X, a, b, use_x, dst):
    """dst[i] = a * X[i] + b * sum_e w_e src[indices[e]] (one Horner step)."""
    n_rows, F = dst.shape
    for i in prange(n_rows):
        for f in range(F):
            dst[i, f] = 0
        for e in range(indptr[i], indptr[i + 1]):
            j = indices[e]
            w = (W[eperm[e]] if has_perm else W[e]) if has_w else 1.0
            for f in range(F):
                dst[i, f] += w * src[j, f]
        for f in range(F):
            dst[i, f] = (a * X[i, f] if use_x else 0.0) + b * dst[i, f]


def propagate(indptr, indices, n_rows, n_cols, X, F, E, eperm, alpha, out, work):
    L = len(alpha) - 1
    if L == 0:
        out[...] = alpha[0] * X
        return
    W = E if E is not None else np.zeros(1, dtype=out.dtype)
    perm = eperm if eperm is not None else np.zeros(1, dtype=np.int64)
    src = X
    for h in range(L):
        k = L - 1 - h
        dst = out if k % 2 == 0 else work
        b = alpha[L] if h == 0 else 1.0
        _propagate_hop(indptr, indices, W, E is not None, perm, eperm is not None, src, X,
                       out.dtype.type(alpha[k]), out.dtype.type(b), alpha[k] != 0, dst)
        src = dst


# ---------------------------------------------------------------- bpr
@njit(parallel=True, cache=True)
def _bpr_scores(U, V, users, pos, neg, x):
    for b in prange(users.shape[0]):
        u, p, n = users[b], pos[b], neg[b]
        s = 0.0
        for f in range(U.shape[1]):
            s += np.float64(U[u, f]) * (np.float64(V[n, f]) - np.float64(V[p, f]))
        x[b] = s


@njit(cache=True)
def _bpr_backward(U, V, users, pos, neg, c, gu, gv):
    """Serial scatter into float64 tables (gv is gu when the table is shared)."""
    for b in range(users.shape[0]):
        u, p, n, cb = users[b], pos[b], neg[b], np.float64(c[b])
        for f in range(U.shape[1]):
            uf = np.float64(U[u, f])
            gu[u, f] += cb * (np.float64(V[n, f]) - np.float64(V[p, f]))
            gv[n, f] += cb * uf
            gv[p, f] -= cb * uf


def bpr_scores(U, V, F, users, pos, neg, shared, x):
    _bpr_scores(U, V, users, pos, neg, x)


def bpr_backward(U, V, F, users, pos, neg, shared, c, dU, dV):
    gu = np.zeros(U.shape)
    gv = gu if shared else np.zeros(V.shape)
    _bpr_backward(U, V, users, pos, neg, c, gu, gv)
    dU[...] = gu
    if not shared:
        dV[...] = gv


# ---------------------------------------------------------------- attention
@njit(inline="always")
def _att_score(Q, K, i, j, h, dk, score, scale, slope):
    """(score, d score / d pre-activation) of edge (i, j), head h."""
    if score == DOT:
        s = 0.0
        for d in range(dk):
            s += Q[i, h * dk + d] * K[j, h * dk + d]
        return scale * s, 1.0
    z = Q[i, h] + K[j, h]
    if z > 0:
        return z, 1.0
    return slope * z, slope


@njit(parallel=True, cache=True)
def _att_forward(indptr, indices, Q, K, V, heads, dk, dv, score, scale, slope, out, lse):
    n_rows = out.shape[0]
    for i in prange(n_rows):
        for f in range(heads * dv):
            out[i, f] = 0
        for h in range(heads):
            m = -np.inf
            lsum = 0.0
            for e in range(indptr[i], indptr[i + 1]):
                j = indices[e]
                s, _ = _att_score(Q, K, i, j, h, dk, score, scale, slope)
                if s > m:
                    c = np.exp(m - s)
                    lsum *= c
                    for f in range(h * dv, (h + 1) * dv):
                        out[i, f] *= c
                    m = s
                # a -inf score weighs 0 (exp(-inf - -inf) would be NaN); NaN propagates
                p = 0.0 if s == -np.inf else np.exp(s - m)
                lsum += p
                for f in range(dv):
                    out[i, h * dv + f] += p * V[j, h * dv + f]
            if lsum > 0:
                for f in range(h * dv, (h + 1) * dv):
                    out[i, f] /= lsum
                lse[i, h] = m + np.log(lsum)
            else:
                lse[i, h] = -np.inf


@njit(inline="always")
def _att_ds(Q, K, V, dout, lse, delta, i, j, h, dk, dv, score, scale, slope):
    s, g = _att_score(Q, K, i, j, h, dk, score, scale, slope)
    p = np.exp(s - lse[i, h])
    dp = 0.0
    for f in range(dv):
        dp += dout[i, h * dv + f] * V[j, h * dv + f]
    return p, p * (dp - delta[i, h]), g


@njit(parallel=True, cache=True)
def _att_backward(indptr, indices, t_indptr, t_indices, Q, K, V, heads, dk, dv, score, scale,
                  slope, out, dout, lse, delta, dQ, dK, dV):
    n_rows, n_cols = dQ.shape[0], dK.shape[0]
    for i in prange(n_rows):
        for h in range(heads):
            d = 0.0
            for f in range(h * dv, (h + 1) * dv):
                d += dout[i, f] * out[i, f]
            delta[i, h] = d
        for f in range(dQ.shape[1]):
            dQ[i, f] = 0
        for e in range(indptr[i], indptr[i + 1]):
            j = indices[e]
            for h in range(heads):
                p, ds, g = _att_ds(Q, K, V, dout, lse, delta, i, j, h, dk, dv, score, scale,
                                   slope)
                if score == DOT:
                    for d in range(dk):
                        dQ[i, h * dk + d] += ds * scale * K[j, h * dk + d]
                else:
                    dQ[i, h] += ds * g
    for j in prange(n_cols):
        for f in range(dK.shape[1]):
            dK[j, f] = 0
        for f in range(dV.shape[1]):
            dV[j, f] = 0
        for t in range(t_indptr[j], t_indptr[j + 1]):
            i = t_indices[t]
            for h in range(heads):
                p, ds, g = _att_ds(Q, K, V, dout, lse, delta, i, j, h, dk, dv, score, scale,
                                   slope)
                for f in range(h * dv, (h + 1) * dv):
                    dV[j, f] += p * dout[i, f]
                if score == DOT:
                    for d in range(dk):
                        dK[j, h * dk + d] += ds * scale * Q[i, h * dk + d]
                else:
                    dK[j, h] += ds * g


def attention_forward(indptr, indices, n_rows, n_cols, Q, K, V, heads, dk, dv, score, scale,
                      slope, out, lse):
    _att_forward(indptr, indices, Q, K, V, heads, dk, dv, score, out.dtype.type(scale),
                 out.dtype.type(slope), out, lse)


def attention_backward(indptr, indices, t_indptr, t_indices, n_rows, n_cols, Q, K, V, heads,
                       dk, dv, score, scale, slope, out, dout, lse, dQ, dK, dV):
    delta = np.empty((n_rows, heads), dtype=out.dtype)
    _att_backward(indptr, indices, t_indptr, t_indices, Q, K, V, heads, dk, dv, score,
                  out.dtype.type(scale), out.dtype.type(slope), out, dout, lse, delta, dQ, dK,
                  dV)
@njit(parallel=True, cache=True)
def _topk(Q, X, k, has_ex, ex_indptr, ex_indices, has_map, ex_rows, has_cand, cand_indptr,
          cand_indices, S, Idx, scored):
    """scored: Q holds the scores [B, N] (selection only; X unused)."""
    B, d = Q.shape
    N = Q.shape[1] if scored else X.shape[0]
    for b in prange(B):
        tmp = S[b, :1].copy()  # casts a float64 sum to the output dtype
        ep = 0
        ee = 0
        if has_ex:
            row = np.int64(b)
            if has_map:
                row = np.int64(ex_rows[b])
            ep = ex_indptr[row]
            ee = ex_indptr[row + 1]
        c0 = cand_indptr[b] if has_cand else 0
        nc = cand_indptr[b + 1] - c0 if has_cand else N
        cnt = 0
        for c in range(nc):
            j = np.int64(c)
            if has_cand:
                j = np.int64(cand_indices[c0 + c])
            if scored:
                tmp[0] = Q[b, j]
            else:
                acc = 0.0
                for f in range(d):
                    acc += Q[b, f] * X[j, f]
                tmp[0] = acc
            s = tmp[0]
            # Items arrive in increasing order: a tie with the k-th loses.
            if cnt == k:
                if not s > S[b, k - 1]:
                    continue
            elif not s > -np.inf:  # NaN and -inf never enter
                continue
            while ep < ee and ex_indices[ep] < j:
                ep += 1
            if ep < ee and ex_indices[ep] == j:
                continue
            p = min(cnt, k - 1)
            while p > 0 and S[b, p - 1] < s:
                S[b, p] = S[b, p - 1]
                Idx[b, p] = Idx[b, p - 1]
                p -= 1
            S[b, p] = s
            Idx[b, p] = j
            if cnt < k:
                cnt += 1


def topk(queries, prepared, n_items, k, ex_indptr, ex_indices, ex_rows, cand_indptr,
         cand_indices, scores, idx):
    _run_topk(queries, prepared, k, ex_indptr, ex_indices, ex_rows, cand_indptr, cand_indices,
              scores, idx, False)


def topk_select(S, k, ex_indptr, ex_indices, ex_rows, scores, idx):
    _run_topk(S, S[:0], k, ex_indptr, ex_indices, ex_rows, None, None, scores, idx, True)


def _run_topk(queries, items, k, ex_indptr, ex_indices, ex_rows, cand_indptr, cand_indices,
              scores, idx, scored):
    """topk (scored=False: queries @ items.T) or topk_select (scored=True:
    queries are the scores [B, N]) through the one Numba kernel."""
    z64 = np.zeros(1, dtype=np.int64)
    zi = np.zeros(1, dtype=ex_indices.dtype if ex_indices is not None else
                  (cand_indices.dtype if cand_indices is not None else np.int64))
    _topk(queries, items, k, ex_indptr is not None,
          ex_indptr if ex_indptr is not None else z64,
          ex_indices if ex_indices is not None else zi,
          ex_rows is not None, ex_rows if ex_rows is not None else z64,
          cand_indptr is not None, cand_indptr if cand_indptr is not None else z64,
          cand_indices if cand_indices is not None else zi, scores, idx, scored)
