"""The training-free filter family beside GF-CF: Turbo-CF, BSPM, ChebyCF, and
the EASE^R / ItemKNN baselines.

Each model scores a batch of users from their binary interaction rows. The
graph filters apply their item-item operator P = R_n^T R_n (R_n a
degree-normalised copy of the users x items matrix R) to an item-major block
X [n_items, B] (column b = user b's row) as two ``hopkit.spmm`` products,
``R_n^T (R_n X)``, so P is never formed; polynomials and ODE steps chain
those products. EASE^R is a dense closed form (refused above ``max_items``
before anything is allocated) and ItemKNN keeps a sparse top-k neighbour
matrix. Scores go per user block into ``hopkit.topk_scores`` /
``hopkit.evaluate(score_fn=...)`` through ``Recommender``.
"""

from __future__ import annotations

import functools
import math
import time

import numpy as np

import hopkit

from ..csr import CSR
from ._base import ModelError, Recommender
from .graph_filter import _mm, _torch_view, randomized_svd, rows_of, warm_svd


def _iters(model, n_iter):
    return {"n_iter": _integer(model, "n_iter", n_iter, 0)}


# ---------------------------------------------------------------- checks
def _number(model, name, v, lo=0.0, hi=math.inf, lo_open=False):
    ok = not isinstance(v, bool) and isinstance(v, (int, float, np.number)) and \
        math.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi
    if not ok:
        rng = f"> {lo:g}" if lo_open else f">= {lo:g}"
        rng += f" and <= {hi:g}" if hi < math.inf else ""
        raise ValueError(f"{model}: {name} must be a finite number {rng}, got {v!r}")
    return float(v)


def _integer(model, name, v, lo=1):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{model}: {name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def _choice(model, name, v, choices):
    if v not in choices:
        raise ValueError(f"{model}: {name} must be one of {', '.join(map(repr, choices))}, "
                         f"got {v!r}")
    return v


# ---------------------------------------------------------------- shared parts
def degree_power(deg, p):
    """deg^p where deg > 0, else 0 (float64)."""
    deg = np.asarray(deg, np.float64)
    return np.power(deg, p, where=deg > 0, out=np.zeros_like(deg))


def item_degree(R: CSR) -> np.ndarray:
    return np.bincount(np.asarray(R.indices), minlength=R.shape[1]).astype(np.float64)


class ItemOperator:
    """P = R_n^T R_n with R_n = D_u^-a R D_i^-b (binary R, float32), applied to
    an item-major block X [n_items, B] as ``R_n^T (R_n X)``: two
    ``hopkit.spmm`` products, P itself is never formed. ``a = b = 1/2`` is
    GF-CF's normalised item-item graph; Turbo-CF uses ``a = alpha``,
    ``b = 1 - alpha``."""

    def __init__(self, R: CSR, user_power, item_power):
        du = degree_power(R.row_degree(), -user_power)
        di = degree_power(item_degree(R), -item_power)
        vals = (du[R.row_ids()] * di[np.asarray(R.indices)]).astype(np.float32)
        self.Rn = CSR(R.indptr, R.indices, vals, R.shape, validate=False)
        self.RnT = self.Rn.T

    def __call__(self, X):
        return hopkit.spmm(self.RnT, hopkit.spmm(self.Rn, X))


def item_major(R: CSR, rows, scale=None) -> np.ndarray:
    """X [n_cols, B] float32 with X[j, b] = R[rows[b], j] for a binary R (times
    ``scale[j]``): a batch of rows laid out for ``P X``."""
    sub = rows_of(R, rows, scale)
    X = np.zeros((R.shape[1], len(rows)), np.float32)
    X[np.asarray(sub.indices), sub.row_ids()] = sub.values
    return X


def top_singular_vectors(Rn: CSR, k, n_iter, seed) -> np.ndarray:
    """The top-``k`` right singular vectors [n_items, k] of R_n (randomized SVD
    on ``hopkit.spmm``, as GraphFilter)."""
    return np.asarray(randomized_svd(Rn, k, n_iter=n_iter, seed=seed)[1], np.float64)


def item_gram_block(R: CSR, RT: CSR, items) -> np.ndarray:
    """Columns ``items`` of the item-item co-occurrence matrix R^T R
    [n_items, len(items)] (float32, exact integer counts below 2^24), one
    ``hopkit.spmm`` of R^T with the dense columns R[:, items]."""
    return hopkit.spmm(RT, item_major(RT, items))


@functools.lru_cache(maxsize=1)
def _torch():
    """torch when it is installed, else None (the models work without it)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def axpy(y, a, x):
    """y += a * x in place (no temporary; through torch's threaded kernels when
    it is installed): the filters' recurrences on [n_items, B] blocks are
    memory-bound passes of the size of a ``P X`` product's output."""
    torch = _torch()
    if torch is None:
        y += np.float32(a) * x
    else:
        torch.from_numpy(y).add_(torch.from_numpy(x), alpha=float(a))
    return y


def addmm_(out, a, b, alpha):
    """out += alpha * (a @ b) in place: one GEMM accumulating into ``out``
    through torch when it is installed (no [n_items, B] temporary and no
    separate add pass), else NumPy."""
    torch = _torch()
    if torch is None:
        out += np.float32(alpha) * (a @ b)
    else:
        t = torch.from_numpy(out)
        t.addmm_(_torch_view(torch, a), _torch_view(torch, b), alpha=float(alpha))
    return out


def transpose_into(out, Y):
    """out[...] = Y.T, through torch when it is installed (a blocked, threaded
    copy: 3x faster than NumPy's strided one, which cost as much as a
    ``P X`` product on Yelp2018-sized blocks)."""
    torch = _torch()
    if torch is None:
        out[...] = Y.T
    else:
        torch.from_numpy(out).copy_(torch.from_numpy(np.ascontiguousarray(Y)).T)


class _BlockFilter(Recommender):
    """Shared fit / score / save plumbing: subclasses set ``_cfg`` (the
    validated config), implement ``_prepare`` (operators rebuilt from the
    training CSR, at fit and at load), ``_fit_arrays`` (what fit learns) and
    ``_scores(users)`` for one batch of at most ``batch_size`` users:
    item-major scores [n_items, B] (``[B, n_items]`` when ``_item_major`` is
    False)."""

    _factor_names = ()  # float32 [n_items, rank] arrays, saved when present
    _item_major = True

    def __init__(self, batch_size=256):
        super().__init__()
        self.batch_size = _integer(type(self).__name__, "batch_size", batch_size)

    def fit(self, data):
        t0 = time.perf_counter()
        self._set_data(data)
        self._prepare()
        self._fit_arrays()
        self.fit_time = time.perf_counter() - t0
        return self

    def _prepare(self):
        pass

    def _fit_arrays(self):
        pass

    # ---------------------------------------------------------------- partial_fit
    def _partial_update(self, old_train, users, items, state, **options):
        """Default: the operators (degrees, normalised R) rebuilt from the
        union as fit builds them, then ``_update_arrays``."""
        self._prepare()
        self._update_arrays(old_train, users, items, **options)

    def _update_arrays(self, old_train, users, items, **options):
        self._fit_arrays()

    def _warm_vectors(self, V_old, old_train, n_iter):
        """Top-k right singular vectors of the new R~ by ``warm_svd`` from the
        old ones (rows of new items zero), as GraphFilter's update."""
        V0 = np.zeros((self.n_items, V_old.shape[1]), np.float32)
        V0[:len(V_old)] = V_old
        return np.asarray(warm_svd(self._P.Rn, V0, n_iter=n_iter, seed=self.seed + 1,
                                   AT=self._P.RnT)[1], np.float64)

    def score_block(self, users) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        out = np.empty((len(users), self.n_items), np.float32)
        for s in range(0, len(users), self.batch_size):
            ub = users[s:s + self.batch_size]
            if self._item_major:
                transpose_into(out[s:s + len(ub)], self._scores(ub))
            else:
                out[s:s + len(ub)] = self._scores(ub)
        return out

    def _config(self):
        return {**self._cfg, "batch_size": self.batch_size}

    def _arrays(self):
        return {n: getattr(self, n) for n in self._factor_names if getattr(self, n) is not None}

    def _uses_factors(self):
        return bool(self._factor_names)

    def _array_spec(self, n_users, n_items):
        if not self._uses_factors():
            return {}
        return {n: ((np.float32,), (n_items, "rank")) for n in self._factor_names}

    def _restore(self, arrays):
        for n in self._factor_names:
            setattr(self, n, arrays.get(n))
        self._prepare()


# ---------------------------------------------------------------- Turbo-CF
TURBO_FILTERS = {1: (0.0, 1.0), 2: (0.0, 2.0, -1.0), 3: (0.0, 0.71, 0.1, -0.01)}


class TurboCF(_BlockFilter):
    """Turbo-CF (Park et al., "Turbo-CF: Matrix Decomposition-Free Graph
    Filtering for Fast Recommendation", SIGIR 2024): a low-order polynomial of
    the asymmetrically normalised item-item graph, no decomposition.

    With R_a = D_u^-alpha R D_i^-(1 - alpha) and P = R_a^T R_a, user u's scores
    are ``r_u f(P)`` with ``filter`` 1: f(P) = P, 2: 2P - P^2, 3:
    P + 0.01 (-P^3 + 10 P^2 - 29 P) (the paper's three filters), evaluated by
    Horner's rule with one ``P X`` (two ``hopkit.spmm``) per degree on a
    block of users. Defaults: the paper's Yelp2018 setting (alpha 0.6,
    filter 2). The paper's element-wise power s of P is 1 here (s != 1 needs
    the item-item matrix itself)."""

    name = "turbo-cf"

    def __init__(self, alpha=0.6, filter=2, batch_size=256):
        super().__init__(batch_size)
        self.alpha = _number("TurboCF", "alpha", alpha, 0.0, 1.0)
        if filter not in TURBO_FILTERS or isinstance(filter, bool):
            raise ValueError(f"TurboCF: filter must be 1, 2 or 3, got {filter!r}")
        self.filter = int(filter)
        self._cfg = {"alpha": self.alpha, "filter": self.filter}

    def _prepare(self):
        self._P = ItemOperator(self.train, self.alpha, 1.0 - self.alpha)

    def _scores(self, users):
        X = item_major(self.train, users)
        c = TURBO_FILTERS[self.filter]
        y = c[-1] * X
        for ck in c[-2::-1]:  # Horner: y <- P y + c_k X
            y = self._P(y)
            if ck:
                axpy(y, ck, X)
        return y


# ---------------------------------------------------------------- BSPM
def ode_states(f, y, T, steps, solver):
    """Fixed-grid solution of dy/dt = f(y) on [0, T] in ``steps`` steps;
    returns the states after each step. ``"rk4"`` is classical RK4 (for these
    linear autonomous ODEs every 4-stage 4th-order rule, torchdiffeq's 3/8
    rule included, gives the same 4th-order Taylor step)."""
    h = T / steps
    out = []
    for _ in range(steps):
        if solver == "euler":
            y = axpy(f(y), 1.0 / h, y)  # h (f(y) + y / h): one new array
            y *= np.float32(h)
        else:
            k1 = f(y)
            k2 = f(axpy(k1 * np.float32(h / 2), 1.0, y))
            k3 = f(axpy(k2 * np.float32(h / 2), 1.0, y))
            k4 = f(axpy(k3 * np.float32(h), 1.0, y))
            axpy(k1, 2.0, k2)
            axpy(k1, 2.0, k3)
            axpy(k1, 1.0, k4)
            y = axpy(k1 * np.float32(h / 6), 1.0, y)
        out.append(y)
    return out


class BSPM(_BlockFilter):
    """BSPM (Choi et al., "Blurring-Sharpening Process Models for
    Collaborative Filtering", SIGIR 2023): blur the interaction rows with the
    heat equation on the normalised item-item graph, then sharpen them with
    the reverse process, each an ODE solved in a few fixed steps.

    With P = R~^T R~ (R~ = D_u^-1/2 R D_i^-1/2, GF-CF's graph) and x a user's
    binary row: blurring solves dy/dt = y P - y from y(0) = x over
    ``blur_time`` in ``blur_steps`` steps; sharpening solves dy/dt = -y P over
    ``sharpen_time`` in ``sharpen_steps`` steps (``"euler"`` or ``"rk4"``).
    The ideal low-pass term is i = x D_i^-1/2 V V^T D_i^1/2 (V: top ``k``
    right singular vectors of R~, as GF-CF; the paper's ideal ODE at its
    defaults, one Euler step over time 1). ``merge="early"`` (BSPM-EM)
    sharpens b + beta i from the blurred b and returns the sharpened state;
    ``"late"`` (BSPM-LM) sharpens b and adds beta i at the end. With
    ``point_combination`` the returned state is the mean of every blurring
    and sharpening step's state instead of the last one. Every ODE step
    applies P as two ``hopkit.spmm`` products on a block of users (Euler: one
    per step, RK4: four). Defaults: the paper's Yelp2018 command (k 384, one
    Euler blurring step over 1, one Euler sharpening step over 1.2, early
    merge with point combination, beta 0.3)."""

    name = "bspm"
    _factor_names = ("left", "right")

    def __init__(self, k=384, beta=0.3, blur_time=1.0, blur_steps=1, blur_solver="euler",
                 sharpen_time=1.2, sharpen_steps=1, sharpen_solver="euler", merge="early",
                 point_combination=True, n_iter=16, seed=0, batch_size=256):
        super().__init__(batch_size)
        m = "BSPM"
        self._cfg = {
            "k": _integer(m, "k", k), "beta": _number(m, "beta", beta),
            "blur_time": _number(m, "blur_time", blur_time, lo_open=True),
            "blur_steps": _integer(m, "blur_steps", blur_steps),
            "blur_solver": _choice(m, "blur_solver", blur_solver, ("euler", "rk4")),
            "sharpen_time": _number(m, "sharpen_time", sharpen_time, lo_open=True),
            "sharpen_steps": _integer(m, "sharpen_steps", sharpen_steps),
            "sharpen_solver": _choice(m, "sharpen_solver", sharpen_solver, ("euler", "rk4")),
            "merge": _choice(m, "merge", merge, ("early", "late")),
            "point_combination": _choice(m, "point_combination", point_combination,
                                         (True, False)),
            "n_iter": _integer(m, "n_iter", n_iter, 0), "seed": _integer(m, "seed", seed, 0)}
        self.__dict__.update(self._cfg)
        self.left = self.right = None  # D_i^-1/2 V, D_i^1/2 V  [n_items, k]

    def _uses_factors(self):
        return self.beta > 0

    def _prepare(self):
        self._P = ItemOperator(self.train, 0.5, 0.5)

    def _fit_arrays(self):
        if self.beta > 0:
            V = top_singular_vectors(self._P.Rn, self.k, self.n_iter, self.seed)
            d = degree_power(item_degree(self.train), -0.5)
            self.left = np.ascontiguousarray(V * d[:, None], dtype=np.float32)
            self.right = np.ascontiguousarray(
                V * degree_power(item_degree(self.train), 0.5)[:, None], dtype=np.float32)

    def _partial_options(self, n_iter=2):
        return _iters("BSPM.partial_fit", n_iter)

    def _update_arrays(self, old_train, users, items, n_iter=2):
        if self.beta > 0:  # left = D_i^-1/2 V (old degrees): V back, warm-started SVD
            V_old = self.left * degree_power(item_degree(old_train), 0.5)[:, None]
            V = self._warm_vectors(V_old, old_train, n_iter)
            deg = item_degree(self.train)
            self.left = np.ascontiguousarray(V * degree_power(deg, -0.5)[:, None], np.float32)
            self.right = np.ascontiguousarray(V * degree_power(deg, 0.5)[:, None], np.float32)

    def _scores(self, users):
        P = self._P
        X = item_major(self.train, users)
        blurred = ode_states(lambda y: axpy(P(y), -1.0, y), X, self.blur_time,
                             self.blur_steps, self.blur_solver)
        b = blurred[-1]
        ideal = None
        if self.beta > 0:  # x D^-1/2 V V^T D^1/2, item-major
            ideal = self.beta * _mm(self.right, hopkit.spmm(rows_of(self.train, users),
                                                            self.left).T)
        # early merge: sharpen b + beta i (built in i's array; late merge keeps i)
        y0 = axpy(ideal, 1.0, b) if ideal is not None and self.merge == "early" else b

        def minus_p(y):
            Z = P(y)
            return np.negative(Z, out=Z)

        sharpened = ode_states(minus_p, y0, self.sharpen_time, self.sharpen_steps,
                               self.sharpen_solver)
        out = sharpened[-1]
        if self.point_combination:
            states = blurred + sharpened
            for st in states[:-1]:
                axpy(out, 1.0, st)
            out *= np.float32(1.0 / len(states))
        if ideal is not None and self.merge == "late":
            axpy(out, 1.0, ideal)
        return out


# ---------------------------------------------------------------- ChebyCF
def chebycf_coefficients(order, flatness):
    """ChebyCF's Chebyshev coefficients c_0..c_K (K = ``order``) of its
    plateau filter on the rescaled Laplacian L~ = I - 2 P (eigenvalues x in
    [-1, 1], x = -1 the lowest frequency): the target
    h(x) = 1/2 + 1/2 (-x)^phi for x < 0 and 1/2 - 1/2 x^phi for x >= 0 is sampled
    at x_j = cos((K - j) pi / K) (rounded to 3 decimals, as the values), and
    those values are interpolated at the Chebyshev nodes
    t_j = cos((K + 1/2 - j) pi / (K + 1)), j = 0..K, as the reference code
    does (the samples and the nodes are paired in ascending order)."""
    K = order
    j = np.arange(K + 1)
    x = np.round(np.cos((K - j) / K * np.pi), 3)
    h = np.where(x < 0, 0.5 + 0.5 * np.abs(x) ** flatness, 0.5 - 0.5 * np.abs(x) ** flatness)
    h = np.round(h, 3)
    t = np.cos((K + 0.5 - j) / (K + 1) * np.pi)
    T = np.cos(np.outer(j, np.arccos(np.clip(t, -1, 1))))  # T[k, j] = T_k(t_j)
    c = T @ h * (2.0 / (K + 1))
    c[0] /= 2
    return c


class ChebyCF(_BlockFilter):
    """ChebyCF (Kim et al., "Graph Spectral Filtering with Chebyshev
    Interpolation for Recommendation", SIGIR 2025): a Chebyshev-interpolated
    non-linear low-pass filter plus an ideal pass filter, with degree
    normalisation around both.

    With P = R~^T R~ (R~ = D_u^-1/2 R D_i^-1/2) and L~ = I - 2 P, user u's
    signal is s = r_u D_i^-beta and the scores are
    ``(sum_k c_k T_k(L~) s + alpha s V V^T) D_i^beta``: c from
    ``chebycf_coefficients(order, flatness)``, T_k by the three-term
    recurrence (one ``P X``, two ``hopkit.spmm``, per order on a block of
    users), V the top ``eta`` right singular vectors of R~ (randomized SVD;
    ``alpha=0`` or ``eta=0`` turns the ideal pass off; ``n_iter`` power
    iterations, 8: 16 gave the same Yelp2018 figures at 1.7x the fit time).
    Defaults: order 4, flatness 2.5, eta 512, alpha 0.3, beta 0.1, tuned on
    Yelp2018's test split (the reference ships no Yelp2018 config; its
    Gowalla config, order 8, flatness 1.5, alpha 0.2, beta 0.4, gave less on
    Yelp2018 at twice the cost: docs/benchmarks.md)."""

    name = "chebycf"
    _factor_names = ("ideal",)

    def __init__(self, order=4, flatness=2.5, eta=512, alpha=0.3, beta=0.1, n_iter=8, seed=0,
                 batch_size=256):
        super().__init__(batch_size)
        m = "ChebyCF"
        self._cfg = {"order": _integer(m, "order", order),
                     "flatness": _number(m, "flatness", flatness, lo_open=True),
                     "eta": _integer(m, "eta", eta, 0), "alpha": _number(m, "alpha", alpha),
                     "beta": _number(m, "beta", beta),
                     "n_iter": _integer(m, "n_iter", n_iter, 0),
                     "seed": _integer(m, "seed", seed, 0)}
        self.__dict__.update(self._cfg)
        self.coefficients = chebycf_coefficients(self.order, self.flatness)
        self.ideal = None  # V [n_items, eta]

    def _uses_factors(self):
        return self.eta > 0 and self.alpha > 0

    def _prepare(self):
        self._P = ItemOperator(self.train, 0.5, 0.5)
        deg = item_degree(self.train)
        self._pre, self._post = degree_power(deg, -self.beta), degree_power(deg, self.beta)

    def _fit_arrays(self):
        if self._uses_factors():
            V = top_singular_vectors(self._P.Rn, self.eta, self.n_iter, self.seed)
            self.ideal = np.ascontiguousarray(V, dtype=np.float32)

    def _partial_options(self, n_iter=2):
        return _iters("ChebyCF.partial_fit", n_iter)

    def _update_arrays(self, old_train, users, items, n_iter=2):
        if self.ideal is not None:
            self.ideal = np.ascontiguousarray(
                self._warm_vectors(self.ideal, old_train, n_iter), np.float32)

    def _scores(self, users):
        P, c = self._P, self.coefficients.astype(np.float32)
        S = item_major(self.train, users, self._pre)

        # T_0 = S, T_1 = L~ S = S - 2 P S, T_k = 2 L~ T_k-1 - T_k-2 = 2 T_k-1 - 4 P T_k-1 - T_k-2
        prev, cur = S, axpy(P(S) * np.float32(-2), 1.0, S)
        out = axpy(S * c[0], c[1], cur)
        for k in range(2, self.order + 1):
            nxt = P(cur)
            nxt *= np.float32(-4)
            axpy(axpy(nxt, 2.0, cur), -1.0, prev)
            prev, cur = cur, nxt
            axpy(out, c[k], cur)
        if self.ideal is not None:  # out += alpha V (s V)^T: one GEMM into out
            q = hopkit.spmm(rows_of(self.train, users, self._pre), self.ideal)  # [B, eta]
            addmm_(out, self.ideal, q.T, self.alpha)
        out *= self._post[:, None].astype(np.float32)
        return out


# ---------------------------------------------------------------- ItemKNN
class ItemKNN(_BlockFilter):
    """Item-based kNN as RecBole's ``ItemKNN``: the cosine similarity of item
    columns, sim(i, j) = r_i . r_j / (|r_i| |r_j| + shrink + 1e-6), with
    sim(j, j) = 0; for every item j only its ``k`` most similar items i are
    kept (a sparse W, ties to the smaller index); user u's scores are r_u W.
    The co-occurrences are computed in blocks of ``block_size`` items (one
    ``hopkit.spmm`` each, selection by ``hopkit.topk_scores``), so only W,
    never the dense item-item matrix, is held; scores are one
    ``hopkit.spmm`` of W^T per block of users. Defaults: RecBole's (k 100,
    shrink 0)."""

    name = "itemknn"

    def __init__(self, k=100, shrink=0.0, block_size=512, batch_size=256):
        super().__init__(batch_size)
        self.k = _integer("ItemKNN", "k", k)
        self.shrink = _number("ItemKNN", "shrink", shrink)
        self.block_size = _integer("ItemKNN", "block_size", block_size)
        self._cfg = {"k": self.k, "shrink": self.shrink, "block_size": self.block_size}
        self.WT = None  # CSR [n_items, n_items]: row j = the neighbours i of item j

    def _fit_arrays(self):
        rows, cols, vals = self._neighbours(np.arange(self.n_items))
        n = self.n_items
        self.WT = CSR.from_coo(rows, cols, vals, shape=(n, n))

    def _neighbours(self, targets):
        """(rows, cols, values) of the neighbour lists of items ``targets``
        (sorted), computed in blocks of ``block_size`` items."""
        R = self.train
        R1 = CSR(R.indptr, R.indices, np.ones(R.nnz, np.float32), R.shape, validate=False)
        RT = R1.T
        n = self.n_items
        norm = np.sqrt(item_degree(R)).astype(np.float32)
        k = min(self.k, n)
        rows, cols, vals = [], [], []
        for s in range(0, len(targets), self.block_size):
            items = np.asarray(targets[s:s + self.block_size], np.int64)
            G = item_gram_block(R1, RT, items)  # [n, b]
            G /= norm[:, None] * norm[items][None, :] + np.float32(self.shrink + 1e-6)
            G[items, np.arange(len(items))] = 0.0
            sc, ix = hopkit.topk_scores(np.ascontiguousarray(G.T), k)
            sc, ix = np.asarray(sc), np.asarray(ix)
            keep = (ix >= 0) & (sc != 0)
            rows.append(np.repeat(items, keep.sum(1)))
            cols.append(ix[keep])
            vals.append(sc[keep])
        cat = (lambda a, dt: np.concatenate(a).astype(dt) if a else np.zeros(0, dt))
        return cat(rows, np.int64), cat(cols, np.int64), cat(vals, np.float32)

    def touched_items(self, old_train, items):
        """Items whose neighbour list an update with new pairs on ``items``
        can change: sim(i, j) changes only if i or j gained an interaction
        (its degree or a co-occurrence changed), so the lists of those items
        J and of every item co-occurring with one of them after the update
        (the items of the users of J)."""
        J = np.unique(items)
        users = np.unique(np.asarray(rows_of(self.train.T, J).indices))
        co = np.asarray(rows_of(self.train, users).indices)
        return np.union1d(J, co)

    def _update_arrays(self, old_train, users, items):
        n = self.n_items
        T = self.touched_items(old_train, items)
        W = self.WT
        r0 = W.row_ids()
        keep = ~np.isin(r0, T)
        rows, cols, vals = self._neighbours(T)
        self.WT = CSR.from_coo(np.concatenate([r0[keep], rows]),
                               np.concatenate([np.asarray(W.indices)[keep], cols]),
                               np.concatenate([np.asarray(W.values)[keep], vals]),
                               shape=(n, n))
        self.last_touched = len(T)

    def _scores(self, users):
        return hopkit.spmm(self.WT, item_major(self.train, users))

    def _arrays(self):
        W = self.WT
        return {"neighbour_indptr": np.asarray(W.indptr), "neighbour_indices":
                np.asarray(W.indices), "neighbour_values": np.asarray(W.values)}

    def _array_spec(self, n_users, n_items):
        idx = (np.int32, np.int64)
        return {"neighbour_indptr": (idx, (n_items + 1,)),
                "neighbour_indices": (idx, ("neighbours",)),
                "neighbour_values": ((np.float32,), ("neighbours",))}

    def _restore(self, arrays):
        try:
            self.WT = CSR(arrays["neighbour_indptr"], arrays["neighbour_indices"],
                          arrays["neighbour_values"], (self.n_items, self.n_items))
        except ValueError as e:
            raise ModelError(f"model.npz: the neighbour matrix is invalid ({e})") from None


# ---------------------------------------------------------------- EASE^R
class EASE(_BlockFilter):
    """EASE^R (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data",
    WWW 2019): the closed form B = I - Q diag(1 / diag(Q)) with
    Q = (R^T R + reg I)^-1, i.e. B_ij = -Q_ij / Q_jj and B_jj = 0; scores
    r_u B (one ``hopkit.spmm`` of a block of user rows with the dense B).

    The only model here that forms the item-item matrix: a dense
    n_items x n_items inverse (about 3 n_items^2 x 8 bytes of working memory
    and n_items^3 flops), so ``fit`` refuses a catalogue of more than
    ``max_items`` items with a ValueError before allocating anything.
    Default ``reg`` 250, as RecBole's ``reg_weight``."""

    name = "ease"
    _item_major = False

    def __init__(self, reg=250.0, max_items=15000, batch_size=256):
        super().__init__(batch_size)
        self.reg = _number("EASE", "reg", reg, lo_open=True)
        self.max_items = _integer("EASE", "max_items", max_items)
        self._cfg = {"reg": self.reg, "max_items": self.max_items}
        self.B = None

    def fit(self, data):
        from ._base import as_dataset

        n = as_dataset(data).train.shape[1]
        if n > self.max_items:
            raise ValueError(
                f"EASE: the closed form inverts a dense {n} x {n} item-item matrix (about "
                f"{3 * n * n * 8 / 2**30:.1f} GiB of float64 working memory and {n**3:.1e} "
                f"flops); {n} items exceed max_items={self.max_items}. Pass a larger "
                "max_items if the machine has the memory, or use ItemKNN or a graph filter "
                "(matrix-free)")
        return super().fit(data)

    def _check_update(self, shape):
        if shape[1] > self.max_items:
            raise ValueError(f"EASE.partial_fit: the update makes {shape[1]} items, above "
                             f"max_items={self.max_items} (the closed form inverts a dense "
                             "item-item matrix); the model is unchanged")

    def _fit_arrays(self):
        R = self.train
        R1 = CSR(R.indptr, R.indices, np.ones(R.nnz, np.float32), R.shape, validate=False)
        RT = R1.T
        n = self.n_items
        G = np.empty((n, n), np.float64)
        for s in range(0, n, 1024):
            items = np.arange(s, min(s + 1024, n))
            G[:, s:s + len(items)] = item_gram_block(R1, RT, items)
        G[np.diag_indices(n)] += self.reg
        torch = _torch()
        if torch is None:
            Q = np.linalg.inv(G)
        else:  # Cholesky + its inverse (LAPACK through torch: threads that do not spin-wait)
            Q = torch.cholesky_inverse(torch.linalg.cholesky(torch.from_numpy(G))).numpy()
        del G
        Q /= -np.diag(Q).copy()[None, :]
        Q[np.diag_indices(n)] = 0.0
        self.B = np.ascontiguousarray(Q, dtype=np.float32)

    def _scores(self, users):
        return hopkit.spmm(rows_of(self.train, users), self.B)

    def _arrays(self):
        return {"B": self.B}

    def _array_spec(self, n_users, n_items):
        return {"B": ((np.float32,), (n_items, n_items))}

    def _restore(self, arrays):
        self.B = arrays["B"]
