"""Training-free recommenders: GF-CF graph filters and popularity."""

from __future__ import annotations

import time

import numpy as np

import hopkit

from ..csr import CSR
from ._base import Recommender


def _mm(a, b):
    """Dense a @ b. Through torch when it is installed: NumPy's OpenBLAS
    thread pool spin-waits against hopkit's OpenMP threads and was 10-20x
    slower for these tall GEMMs on a busy 2-core machine."""
    try:
        import torch
    except ImportError:
        return a @ b
    return (_torch_view(torch, a) @ _torch_view(torch, b)).numpy()


def _torch_view(torch, a):
    """A torch view of ``a``; a transposed C-contiguous array (``right.T``)
    stays a transposed view instead of a copy (38 MB per call at Yelp2018)."""
    if a.ndim == 2 and not a.flags.c_contiguous and a.T.flags.c_contiguous:
        return torch.from_numpy(a.T).T
    return torch.from_numpy(np.ascontiguousarray(a))


def _orth(Y, passes=2, dtype=np.float64):
    """Orthonormal basis of the columns of Y by CholeskyQR (``passes`` times:
    a Gram GEMM, a small Cholesky and a GEMM each, far cheaper than
    Householder QR on a tall matrix); falls back to QR if the Gram matrix is
    not positive definite."""
    Q = np.asarray(Y, dtype=dtype)
    try:
        for _ in range(passes):
            G = _mm(Q.T, Q).astype(np.float64)
            L = np.linalg.cholesky(G + 1e-7 * np.trace(G) / len(G) * np.eye(len(G)))
            Q = _mm(Q, np.linalg.inv(L).T.astype(dtype))
    except np.linalg.LinAlgError:
        Q = np.linalg.qr(np.asarray(Y, dtype=np.float64))[0].astype(dtype)
    return Q


def rows_of(R: CSR, users, scale=None) -> CSR:
    """Rows ``users`` of R as a CSR [B, n_cols] with value 1 (or ``scale[j]``
    for column j), float32: the interaction rows a filter is applied to."""
    users = np.asarray(users, dtype=np.int64)
    lo, hi = R.indptr[users], R.indptr[users + 1]
    deg = hi - lo
    indptr = np.zeros(len(users) + 1, np.int64)
    np.cumsum(deg, out=indptr[1:])
    take = np.repeat(lo - indptr[:-1], deg) + np.arange(indptr[-1])
    cols = np.asarray(R.indices)[take]
    vals = np.ones(indptr[-1], np.float32) if scale is None else \
        np.asarray(scale, np.float32)[cols]
    return CSR(indptr, cols, vals, (len(users), R.shape[1]), validate=False)


def randomized_svd(A: CSR, k, oversample=16, n_iter=4, seed=0, dtype=np.float32, init=None):
    """Top-``k`` singular values and right singular vectors of a sparse
    ``A`` (Halko et al.), every product with A or A^T through ``hopkit.spmm``.
    Returns ``(s [k], V [n, k])`` with ``A V ~ U diag(s)``; ``n_iter`` power
    iterations with re-orthonormalisation make the leading subspace accurate
    for the slowly decaying spectra of interaction graphs.

    ``init`` [n, r] warm-starts the subspace iteration (``partial_fit``): the
    start block is ``init`` beside ``oversample`` random columns A^T G
    instead of k + oversample random ones, so a few iterations from the
    previous singular vectors of a slightly changed A reach the accuracy
    that ``n_iter`` iterations from random reach."""
    m, n = A.shape
    k = int(min(k, m, n))
    p = int(min(k + oversample, m, n))
    AT = A.T
    rng = np.random.default_rng(seed)

    def mul(M, X):
        return hopkit.spmm(M, np.ascontiguousarray(X, dtype=dtype))

    # power iterations: one float32 CholeskyQR pass only keeps the block well
    # conditioned; the final basis gets two float64 passes (CholeskyQR2)
    if init is None:
        Q = _orth(mul(AT, rng.standard_normal((m, p))), 1, np.float32)  # [n, p]
    else:
        init = np.asarray(init, dtype)[:, :k]
        extra = mul(AT, rng.standard_normal((m, max(p - init.shape[1], 0))))
        Q = _orth(np.hstack([init, extra]), 1, np.float32)
    for _ in range(n_iter):
        Q = _orth(mul(AT, _orth(mul(A, Q), 1, np.float32)), 1, np.float32)
    return _ritz(A, _orth(Q), k)  # A ~ A Q Q^T: right singular vectors of A Q


def warm_svd(A: CSR, V0, n_iter=1, oversample=16, seed=0, dtype=np.float32, AT=None):
    """Top-k right singular vectors of a sparse ``A`` that differs little
    from a matrix whose top-k right singular vectors were ``V0`` [n, k] (rows
    of new columns zero): ``partial_fit``'s update of the randomized SVD.

    The start block S = [V0, A^T G] (``oversample`` random columns beside
    the old vectors, so new directions can enter) goes through ``n_iter``
    block iterations S <- A^T (A S) (columns rescaled to unit norm, no
    orthonormalisation in between), then one Rayleigh-Ritz step on span(S):
    with the Gram matrices G = S^T S and H = (A S)^T (A S), the generalised
    eigenproblem H c = s^2 G c (through the Cholesky factor of G) gives the
    Ritz vectors V = S C, orthonormal up to float32 rounding. Cost:
    2 n_iter + 1 products with a block of k + oversample columns (every one
    through ``hopkit.spmm``) and three tall GEMMs, against randomized_svd's
    2 n_iter + 2 products and two CholeskyQR passes per iteration.
    Returns ``(s [k], V [n, k])``."""
    m, n = A.shape
    V0 = np.asarray(V0, dtype)
    k = int(min(V0.shape[1], m, n))
    p = int(min(k + oversample, m, n))
    AT = A.T if AT is None else AT
    rng = np.random.default_rng(seed)

    def mul(M, X):
        return hopkit.spmm(M, np.ascontiguousarray(X, dtype=dtype))

    S = V0[:, :k]
    if p > k:
        S = np.hstack([S, mul(AT, rng.standard_normal((m, p - k)).astype(dtype))])
    S = np.ascontiguousarray(S, dtype=dtype)
    for _ in range(n_iter):
        S = mul(AT, mul(A, S))
        norm = np.sqrt(np.einsum("ij,ij->j", S, S, dtype=np.float64))
        S *= np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0).astype(dtype)
    Y = mul(A, S)  # [m, p]
    G = _mm(S.T, S).astype(np.float64)
    H = _mm(Y.T, Y).astype(np.float64)
    live = np.diag(G) > 0  # a zero column (all-zero start column): left out
    G, H = G[np.ix_(live, live)], H[np.ix_(live, live)]
    try:
        L = np.linalg.cholesky(G + 1e-7 * np.trace(G) / len(G) * np.eye(len(G)))
    except np.linalg.LinAlgError:  # S lost rank: orthonormalise it instead
        Q = _orth(S[:, live])
        return _ritz(A, Q, k)
    Li = np.linalg.inv(L)
    w, W = np.linalg.eigh(Li @ H @ Li.T)
    order = np.argsort(w)[::-1][:k]
    C = np.zeros((p, len(order)))
    C[live] = Li.T @ W[:, order]
    return np.sqrt(np.maximum(w[order], 0.0)), _mm(S, C.astype(dtype))


def _ritz(A, Q, k):
    """Rayleigh-Ritz on an orthonormal basis Q [n, p]: (s [k], V [n, k])."""
    Bm = hopkit.spmm(A, np.ascontiguousarray(Q, dtype=np.float32)).astype(np.float64)
    w, W = np.linalg.eigh(_mm(Bm.T, Bm))
    order = np.argsort(w)[::-1][:k]
    return np.sqrt(np.maximum(w[order], 0.0)), _mm(Q, W[:, order])


class GraphFilter(Recommender):
    """GF-CF (Shen et al., "How Powerful is Graph Convolution for
    Recommendation?", CIKM 2021): no training, closed-form graph filters.

    With R the binary users x items matrix, D_u / D_i its user / item degrees
    and R~ = D_u^-1/2 R D_i^-1/2 (the normalised interaction matrix), the
    score of user u is::

        s_u = r_u R~^T R~  +  alpha * r_u D_i^-1/2 V V^T D_i^1/2

    The first term is the linear low-pass filter (the normalised item-item
    graph P~ = R~^T R~, applied as two ``hopkit.spmm`` products on a batch of
    users, so neither P~ nor a users x items score matrix is ever formed);
    the second is the ideal low-pass filter from the top ``k`` right singular
    vectors V of R~ (a randomized SVD on ``hopkit.spmm``, or scipy ``svds``
    with ``svd="scipy"``). The paper's defaults: ``alpha=0.3``, ``k=256``.
    ``alpha=0`` keeps only the linear filter; ``linear=False`` only the ideal
    one, whose scores are a dot product (served by ``hopkit.topk``).
    """

    name = "graph-filter"

    def __init__(self, alpha=0.3, k=256, linear=True, svd="randomized", n_iter=4, seed=0,
                 batch_size=256):
        super().__init__()
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) or \
                not 0 <= alpha < np.inf:
            raise ValueError(f"GraphFilter: alpha must be a finite number >= 0, got {alpha!r}")
        for nm, v, lo in (("k", k, 1), ("n_iter", n_iter, 0), ("batch_size", batch_size, 1),
                          ("seed", seed, 0)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"GraphFilter: {nm} must be an integer >= {lo}, got {v!r}"
                                 + (" (alpha=0 turns the ideal filter off)" if nm == "k" else ""))
        if svd not in ("randomized", "scipy"):
            raise ValueError(f"GraphFilter: svd must be 'randomized' or 'scipy', got {svd!r}")
        if not linear and alpha == 0:
            raise ValueError("GraphFilter: linear=False needs alpha > 0 (no filter left)")
        self.alpha, self.k, self.linear = float(alpha), int(k), bool(linear)
        self.svd, self.n_iter, self.seed, self.batch_size = svd, int(n_iter), int(seed), \
            int(batch_size)
        self.left = self.right = None  # [n_items, k]: D_i^-1/2 V, D_i^1/2 V

    def fit(self, data):
        t0 = time.perf_counter()
        self._set_data(data)
        self._prepare()
        if self.alpha > 0 and self.k > 0:
            Rn = self._Rn
            if self.svd == "scipy":
                from scipy.sparse.linalg import svds

                k = min(self.k, min(Rn.shape) - 1)
                _, _, vt = svds(Rn.to_scipy().astype(np.float64), k=k, random_state=self.seed)
                V = vt.T
            else:
                V = randomized_svd(Rn, self.k, n_iter=self.n_iter, seed=self.seed)[1]
            self._set_factors(V)
        self.fit_time = time.perf_counter() - t0
        return self

    def _prepare(self):
        R = self.train
        deg_u = R.row_degree().astype(np.float64)
        deg_i = np.bincount(R.indices, minlength=R.shape[1]).astype(np.float64)
        self._di = np.divide(1.0, np.sqrt(deg_i), out=np.zeros_like(deg_i), where=deg_i > 0)
        self._Rn = R.normalize("sym", dtype=np.float32)  # D_u^-1/2 R D_i^-1/2
        self._RnT = self._Rn.T
        self._Rbin = CSR(R.indptr, R.indices, np.ones(R.nnz, np.float32), R.shape,
                         validate=False)
        del deg_u

    # ---------------------------------------------------------------- partial_fit
    def _partial_options(self, n_iter=2):
        if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 0:
            raise ValueError(f"GraphFilter.partial_fit: n_iter must be an integer >= 0, got "
                             f"{n_iter!r}")
        return {"n_iter": int(n_iter)}

    def _update_state(self):
        return {"di": self._di}

    def _partial_update(self, old_train, users, items, state, n_iter=2):
        """Degrees, R~ and its transpose are rebuilt from the union (exact, as
        fit builds them); the singular vectors by ``warm_svd``: the old ones
        (zero rows for new items) beside 16 random columns, ``n_iter`` block
        iterations and a Rayleigh-Ritz step on the new R~ (``svd="scipy"``
        recomputes them with svds)."""
        V0 = None
        if self.left is not None:
            d0 = state["di"].astype(np.float32)
            inv = np.divide(np.float32(1), d0, out=np.zeros_like(d0), where=d0 > 0)
            V0 = np.zeros((self.n_items, self.left.shape[1]), np.float32)
            np.multiply(self.left, inv[:, None], out=V0[:len(d0)])  # left = D_i^-1/2 V
        if V0 is None or self.svd == "scipy":
            keep = self.user_ids, self.item_ids, self.fit_time
            self.fit(self.train)  # no ideal term, or svds: operators rebuilt as fit does
            self.user_ids, self.item_ids, self.fit_time = keep
            return
        self._prepare()
        V = warm_svd(self._Rn, V0, n_iter=n_iter, seed=self.seed + 1, AT=self._RnT)[1]
        self._set_factors(V)

    def _set_factors(self, V):
        d = self._di.astype(np.float32)
        V = np.asarray(V, np.float32)
        self.left = V * d[:, None]
        inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d > 0)
        self.right = V * inv[:, None]

    def _rows(self, users):
        """The binary rows of ``users`` as a CSR [B, n_items]."""
        return rows_of(self.train, users)

    def _queries(self, users):
        """Ideal-filter user factors r_u D_i^-1/2 V  [B, k] (one hopkit.spmm)."""
        return hopkit.spmm(self._rows(users), self.left)

    def embeddings(self):
        if self.linear:
            return None
        return self._queries(np.arange(self.n_users)), self.right

    def item_vectors(self):
        return None if self.linear else self.right

    def score_block(self, users) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        out = np.zeros((len(users), self.n_items), np.float32)
        for s in range(0, len(users), self.batch_size):
            ub = users[s:s + self.batch_size]
            out[s:s + len(ub)] = self.score_rows(self._rows(ub))
        return out

    def score_rows(self, rows) -> np.ndarray:
        """Scores [B, n_items] of binary interaction rows (a CSR [B, n_items]
        with unit values or none): a function of the row alone, so a new user's
        history scores exactly as a trained user with those items."""
        B = rows.shape[0]
        ids = rows.row_ids()
        blocks = []
        for s in range(0, B, self.batch_size):
            e = min(B, s + self.batch_size)
            lo, hi = rows.indptr[s], rows.indptr[e]
            sub = CSR(rows.indptr[s:e + 1] - lo, rows.indices[lo:hi],
                      None if rows.values is None else rows.values[lo:hi],
                      (e - s, self.n_items), validate=False)
            Z = self._linear_rows(sub, ids[lo:hi] - s).T if self.linear else None
            if self.alpha > 0 and self.left is not None:
                G = _mm(hopkit.spmm(sub, self.left), self.right.T)
                G *= self.alpha
                if Z is not None:
                    G += Z
                Z = G
            blocks.append(np.zeros((e - s, self.n_items), np.float32) if Z is None else
                          np.ascontiguousarray(Z))
        if len(blocks) == 1:
            return blocks[0]
        return np.concatenate(blocks) if blocks else np.zeros((0, self.n_items), np.float32)

    def _linear_rows(self, sub, row_of):
        """Z = R~^T R~ r_B^T [n_items, b] for the binary rows ``sub`` (entry t in
        row ``row_of[t]``): Y = R~ X [n_users, b], then Z = R~^T Y. When the
        rows touch few items (serving-sized batches), Y is summed over the
        users of those items only, through the transposed slice of R~^T at
        the items, instead of a pass over all of R~: the same terms in the
        same order, less the zero ones."""
        b = sub.shape[0]
        items, pos = np.unique(sub.indices, return_inverse=True)
        M = self._RnT.select_rows(items)  # [|items|, n_users]: the users of the items
        if 4 * M.nnz < self._Rn.nnz:
            X = np.zeros((len(items), b), np.float32)
            X[pos, row_of] = 1.0
            Y = hopkit.spmm(M.T, X)
        else:
            X = np.zeros((self.n_items, b), np.float32)
            X[sub.indices, row_of] = 1.0
            Y = hopkit.spmm(self._Rn, X)
        return hopkit.spmm(self._RnT, Y)

    def _fold_in(self, H):
        if self.linear:
            return self.score_rows(H)
        return hopkit.spmm(H, self.left)

    def _config(self):
        return {"alpha": self.alpha, "k": self.k, "linear": self.linear, "svd": self.svd,
                "n_iter": self.n_iter, "seed": self.seed, "batch_size": self.batch_size}

    def _arrays(self):
        if self.left is None:
            return {}
        return {"left": self.left, "right": self.right}

    def _array_spec(self, n_users, n_items):
        if self.alpha == 0:
            return {}
        return {name: ((np.float32,), (n_items, "rank")) for name in ("left", "right")}

    def _restore(self, arrays):
        self.left, self.right = arrays.get("left"), arrays.get("right")
        self._prepare()


class Popularity(Recommender):
    """Most-popular baseline: every user gets the items with the most training
    interactions (a dot product of a constant user factor with the item
    degrees, so it is served by ``hopkit.topk``)."""

    name = "popularity"

    def __init__(self):
        super().__init__()
        self.item_score = None

    def fit(self, data):
        t0 = time.perf_counter()
        self._set_data(data)
        self.item_score = np.bincount(self.train.indices, minlength=self.n_items).astype(
            np.float32)
        self.fit_time = time.perf_counter() - t0
        return self

    def _partial_update(self, old_train, users, items, state):
        self.item_score = np.bincount(self.train.indices, minlength=self.n_items).astype(
            np.float32)  # exact: the item degrees of the union

    def embeddings(self):
        return (np.ones((self.n_users, 1), np.float32),
                np.ascontiguousarray(self.item_score[:, None]))

    def _fold_in(self, H):
        return np.ones((H.shape[0], 1), np.float32)  # a history does not change popularity

    def _arrays(self):
        return {"item_score": self.item_score}

    def _array_spec(self, n_users, n_items):
        return {"item_score": ((np.float32,), (n_items,))}

    def _restore(self, arrays):
        self.item_score = arrays["item_score"]
