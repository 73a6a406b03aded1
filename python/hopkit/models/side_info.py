"""Side information in the graph: attribute nodes joined to items and users,
and the cold-item baselines.

The augmented interaction matrix of a users x items R, item attributes
A_I [n_items, n_ia] and user attributes A_U [n_users, n_ua] is::

    R' = [[ R          w A_U ],      (n_users + n_ia) x (n_items + n_ua)
          [ w A_I^T    0     ]]

item-attribute nodes are extra rows ("users" holding their items), user-
attribute nodes extra columns ("items" held by their users), every attribute
edge with weight ``w``. The bipartite graph of R' is LightGCN's graph; the
item-item operator of R' reaches an item through its attributes (item ->
attribute -> item paths), so an item with no interactions still gets scores.
``w = 0`` gives back the model without side information exactly.
"""

from __future__ import annotations

import time

import numpy as np

import hopkit

from ..csr import CSR
from ..data.loaders import from_csr
from .filters import TURBO_FILTERS, TurboCF, _number, axpy, degree_power
from .lightgcn import LightGCN


def _attr_matrix(att, n, what):
    if att is None:
        return None
    M = getattr(att, "matrix", att)
    M = hopkit.as_csr(M, "augmented_matrix", what)
    if M.shape[0] != n:
        raise ValueError(f"augmented_matrix: {what} has {M.shape[0]} rows, expected {n} "
                         f"(load it against the dataset's id map)")
    return M


def augmented_matrix(R: CSR, item_attributes=None, user_attributes=None, weight=1.0) -> CSR:
    """R' (module docstring) as a float32 CSR: 1 on interactions, ``weight``
    on attribute edges. ``item_attributes`` / ``user_attributes``: an
    ``Attributes`` or an entities x attributes CSR (binary)."""
    import scipy.sparse as sp

    weight = float(weight)
    if not np.isfinite(weight) or weight < 0:
        raise ValueError(f"augmented_matrix: weight must be a finite number >= 0, got {weight}")
    n_u, n_i = R.shape
    AI = _attr_matrix(item_attributes, n_i, "item_attributes")
    AU = _attr_matrix(user_attributes, n_u, "user_attributes")
    Rs = sp.csr_matrix((np.ones(R.nnz, np.float32), np.asarray(R.indices), np.asarray(R.indptr)),
                       shape=R.shape)

    def binary(M):
        m = M.to_scipy().astype(np.float32)
        m.data[:] = weight
        return m

    n_ia = AI.shape[1] if AI is not None else 0
    n_ua = AU.shape[1] if AU is not None else 0
    top = sp.hstack([Rs, binary(AU)]) if AU is not None else Rs
    blocks = [top]
    if AI is not None:
        blocks.append(sp.hstack([binary(AI).T, sp.csr_matrix((n_ia, n_ua), dtype=np.float32)]))
    M = sp.vstack(blocks).tocsr()
    M.sort_indices()
    return CSR(M.indptr.astype(np.int64), M.indices.astype(np.int32), M.data.astype(np.float32),
               (n_u + n_ia, n_i + n_ua))


class SideInfoTurboCF(TurboCF):
    """Turbo-CF on the augmented matrix R' (module docstring): P = R_a'^T R_a'
    with R_a' = D_r^-alpha R' D_c^-(1 - alpha) (weighted degrees), user u's
    scores ``x_u f(P)`` with x_u its row of R' (its items and, with user
    attributes, ``w`` on its attributes), cut to the real items. ``weight``
    (the attribute edge weight w) 0 is plain Turbo-CF. Not saved by
    ``save`` (the attributes are not part of a model directory)."""

    name = "turbo-cf-side"

    def __init__(self, alpha=0.6, filter=2, weight=0.1, batch_size=256):
        super().__init__(alpha, filter, batch_size)
        self.weight = _number("SideInfoTurboCF", "weight", weight)
        self._cfg = {**self._cfg, "weight": self.weight}
        self.item_attributes = self.user_attributes = None

    def fit(self, data, item_attributes=None, user_attributes=None):
        self.item_attributes, self.user_attributes = item_attributes, user_attributes
        return super().fit(data)

    def _prepare(self):
        Ra = augmented_matrix(self.train, self.item_attributes, self.user_attributes,
                              self.weight)
        self._aug = Ra
        rows = Ra.row_ids()
        cols = np.asarray(Ra.indices)
        du = degree_power(np.bincount(rows, weights=Ra.values, minlength=Ra.shape[0]),
                          -self.alpha)
        dc = degree_power(np.bincount(cols, weights=Ra.values, minlength=Ra.shape[1]),
                          -(1.0 - self.alpha))
        vals = (Ra.values * du[rows] * dc[cols]).astype(np.float32)
        Rn = CSR(Ra.indptr, Ra.indices, vals, Ra.shape, validate=False)
        RnT = Rn.T
        self._P = lambda X: hopkit.spmm(RnT, hopkit.spmm(Rn, X))

    def _scores(self, users):
        Ra = self._aug
        users = np.asarray(users, np.int64)
        X = np.zeros((Ra.shape[1], len(users)), np.float32)
        for b, u in enumerate(users):
            lo, hi = Ra.indptr[u], Ra.indptr[u + 1]
            X[np.asarray(Ra.indices[lo:hi]), b] = Ra.values[lo:hi]
        c = TURBO_FILTERS[self.filter]
        y = c[-1] * X
        for ck in c[-2::-1]:
            y = self._P(y)
            if ck:
                axpy(y, ck, X)
        return np.ascontiguousarray(y[: self.n_items])

    def save(self, path):
        raise NotImplementedError("SideInfoTurboCF.save: models with side information are not "
                                  "saved (refit them with the attributes)")


class SideInfoLightGCN(LightGCN):
    """LightGCN on the bipartite graph of R' (module docstring): attribute
    nodes get their own layer-0 embeddings, attribute edges weight ``weight``
    in the normalised adjacency, and BPR samples the attribute rows of R' as
    well (an item-attribute node "prefers" its items), so a cold item's
    embedding is trained and propagated through its attributes. Fit once
    (``fit(data, item_attributes=..., user_attributes=..., epochs=...)``);
    ``embeddings()`` / ``score_block`` / ``recommend`` / ``evaluate`` answer
    for the real users and items. Not saved by ``save``."""

    name = "lightgcn-side"

    def __init__(self, weight=1.0, **kw):
        super().__init__(**kw)
        self.weight = _number("SideInfoLightGCN", "weight", weight)
        self._real = None

    def fit(self, data, item_attributes=None, user_attributes=None, **kw):
        if self._real is not None:
            raise RuntimeError("SideInfoLightGCN.fit: fit once (the graph is built at the first "
                               "call)")
        ds = self._set_data(data)
        R = self.train
        Ra = augmented_matrix(R, item_attributes, user_attributes, self.weight)
        self._aug = Ra
        binary = CSR(Ra.indptr, Ra.indices, None, Ra.shape, validate=False)
        keep_ids = (self.user_ids, self.item_ids)
        self.train = None
        self._E0 = None
        try:
            super().fit(from_csr(binary), **kw)
        finally:
            self._real = (R, ds)
            self.train = R
            self.user_ids, self.item_ids = keep_ids
            self._user_emb = None
        return self

    def _graph(self):
        if getattr(self, "_A", None) is None:
            self._A = hopkit.bipartite_adjacency(self._aug)
        return self._A

    def _refresh_embeddings(self):
        import torch

        with torch.no_grad():
            E = self._propagate(self._weights()).numpy()
        n_rows = self._aug.shape[0]
        self._user_emb = np.ascontiguousarray(E[: self.n_users])
        self._item_emb = np.ascontiguousarray(E[n_rows: n_rows + self.n_items])

    def embeddings(self):
        if self._real is None:  # during training: the whole augmented layout
            return super().embeddings()
        if self._user_emb is None:
            self._refresh_embeddings()
        return self._user_emb, self._item_emb

    def save(self, path):
        raise NotImplementedError("SideInfoLightGCN.save: models with side information are not "
                                  "saved (refit them with the attributes)")


# ---------------------------------------------------------------- cold-item baselines
class _Scorer:
    """A fitted score function: ``score_block(users) -> [B, n_items]``."""

    def fit(self, data, item_attributes=None):
        t0 = time.perf_counter()
        ds = getattr(data, "train", data)
        self.train = ds if isinstance(ds, CSR) else hopkit.as_csr(ds, "fit")
        self.n_users, self.n_items = self.train.shape
        self.A = _attr_matrix(item_attributes, self.n_items, "item_attributes")
        self._fit()
        self.fit_time = time.perf_counter() - t0
        return self

    def _fit(self):
        pass


class RandomScores(_Scorer):
    """Uniform random scores, seeded per user (reproducible)."""

    def __init__(self, seed=0):
        self.seed = int(seed)

    def score_block(self, users):
        return np.stack([np.random.default_rng([self.seed, int(u)]).random(self.n_items)
                         for u in users]).astype(np.float32)


class AttributePopularity(_Scorer):
    """Non-personalised: an item's score is the mean, over its attributes, of
    the attribute's popularity (training interactions of the items holding
    it); items without attributes score 0."""

    def _fit(self):
        A = self.A.to_scipy()
        A.data[:] = 1.0
        pop = np.bincount(np.asarray(self.train.indices), minlength=self.n_items)
        apop = A.T @ pop.astype(np.float64)
        n_attr = np.asarray(A.sum(axis=1)).ravel()
        self.item_score = np.divide(A @ apop, n_attr, out=np.zeros(self.n_items),
                                    where=n_attr > 0).astype(np.float32)

    def score_block(self, users):
        return np.broadcast_to(self.item_score, (len(users), self.n_items)).copy()


class AttributeKNN(_Scorer):
    """Attribute-only item kNN: cosine similarity of the items' binary
    attribute vectors, the top ``k`` neighbours of each item kept; user u's
    score of item j = sum over u's training items i of sim(i, j)."""

    def __init__(self, k=100):
        self.k = int(k)

    def _fit(self):
        import scipy.sparse as sp

        A = self.A.to_scipy().astype(np.float64)
        A.data[:] = 1.0
        norm = np.sqrt(np.asarray(A.multiply(A).sum(axis=1)).ravel())
        An = sp.diags(np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0)) @ A
        S = (An @ An.T).toarray()
        np.fill_diagonal(S, 0.0)
        if self.k < S.shape[0]:  # keep the top-k neighbours i of each item j (column)
            cut = np.partition(S, -self.k, axis=0)[-self.k]
            S[S < cut[None, :]] = 0.0
        self.S = S.astype(np.float32)

    def score_block(self, users):
        Rs = self.train.to_scipy()
        Rs.data[:] = 1.0
        return np.asarray(Rs[np.asarray(users)] @ self.S, dtype=np.float32)
