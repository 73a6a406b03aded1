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

COPY, MUL, ADD, EDGE = 0, 1, 2, 3
SUM, MEAN, MAX, MIN = 0, 1, 2, 3

coo_to_csr = _ref.coo_to_csr
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
