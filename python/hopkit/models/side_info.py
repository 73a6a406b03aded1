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
from ._base import ModelError, as_dataset
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


def _binary(M):
    return None if M is None else CSR(M.indptr, M.indices, None, M.shape, validate=False)


def _pad_rows(M, n):
    """An attribute CSR grown to ``n`` rows (new entities: no attributes)."""
    if M is None or M.shape[0] == n:
        return M
    indptr = np.concatenate([np.asarray(M.indptr),
                             np.full(n - M.shape[0], M.indptr[-1], np.asarray(M.indptr).dtype)])
    return CSR(indptr, M.indices, None, (n, M.shape[1]), validate=False)


_ATTR = (("item", "item_attributes"), ("user", "user_attributes"))


class _SavesAttributes:
    """Save / load of the attribute matrices a side-information model was
    fitted with (``save`` writes them beside the model's arrays, so a model
    directory is self-contained): arrays ``item_attr_indptr`` /
    ``item_attr_indices`` [n_items + 1] / [edges] (and ``user_attr_*``), the
    number of attribute columns in the config (``n_item_attributes`` /
    ``n_user_attributes``, null when there are none)."""

    def _set_attributes(self, data, item_attributes, user_attributes):
        """The attribute matrices (binary CSRs) checked against ``data``'s
        shape before anything changes."""
        n_users, n_items = as_dataset(data).train.shape
        self.item_attributes = _binary(_attr_matrix(item_attributes, n_items, "item_attributes"))
        self.user_attributes = _binary(_attr_matrix(user_attributes, n_users, "user_attributes"))

    def _attr_config(self):
        return {f"n_{w}_attributes": None if getattr(self, a) is None else
                int(getattr(self, a).shape[1]) for w, a in _ATTR}

    def _pop_attr_config(self, config):
        widths = {}
        for w, _ in _ATTR:
            v = config.pop(f"n_{w}_attributes", None)
            if v is not None and (type(v) is not int or v < 0):
                raise ValueError(f"n_{w}_attributes must be null or an integer >= 0, got {v!r}")
            widths[w] = v
        return widths

    def _attr_arrays(self):
        out = {}
        for w, a in _ATTR:
            M = getattr(self, a)
            if M is not None:
                out[f"{w}_attr_indptr"] = np.asarray(M.indptr)
                out[f"{w}_attr_indices"] = np.asarray(M.indices)
        return out

    def _attr_spec(self, n_users, n_items):
        idx = (np.int32, np.int64)
        spec = {}
        for w, n in (("item", n_items), ("user", n_users)):
            if self._attr_widths[w] is not None:
                spec[f"{w}_attr_indptr"] = (idx, (n + 1,))
                spec[f"{w}_attr_indices"] = (idx, (f"{w} attribute edges",))
        return spec

    def _attr_restore(self, arrays):
        for w, a in _ATTR:
            M = None
            if self._attr_widths[w] is not None:
                n = self.n_items if w == "item" else self.n_users
                try:
                    M = CSR(arrays[f"{w}_attr_indptr"], arrays[f"{w}_attr_indices"], None,
                            (n, self._attr_widths[w]))
                except ValueError as e:
                    raise ModelError(f"model.npz: the {w} attribute matrix is invalid ({e})") \
                        from None
            setattr(self, a, M)


class SideInfoTurboCF(_SavesAttributes, TurboCF):
    """Turbo-CF on the augmented matrix R' (module docstring): P = R_a'^T R_a'
    with R_a' = D_r^-alpha R' D_c^-(1 - alpha) (weighted degrees), user u's
    scores ``x_u f(P)`` with x_u its row of R' (its items and, with user
    attributes, ``w`` on its attributes), cut to the real items. ``weight``
    (the attribute edge weight w) 0 is plain Turbo-CF. ``save`` stores the
    attribute matrices with the model; ``partial_fit`` gives new users /
    items no attributes."""

    name = "turbo-cf-side"

    def __init__(self, alpha=0.6, filter=2, weight=0.1, batch_size=256):
        super().__init__(alpha, filter, batch_size)
        self.weight = _number("SideInfoTurboCF", "weight", weight)
        self._cfg = {**self._cfg, "weight": self.weight}
        self.item_attributes = self.user_attributes = None

    def fit(self, data, item_attributes=None, user_attributes=None):
        self._set_attributes(data, item_attributes, user_attributes)
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

    def _partial_update(self, old_train, users, items, state, **options):
        self.item_attributes = _pad_rows(self.item_attributes, self.n_items)
        self.user_attributes = _pad_rows(self.user_attributes, self.n_users)
        super()._partial_update(old_train, users, items, state, **options)

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

    # ---------------------------------------------------------------- persistence
    def _config(self):
        return {**super()._config(), **self._attr_config()}

    def _set_config(self, config):
        widths = self._pop_attr_config(config)
        self._reinit(config)
        self._attr_widths = widths

    def _arrays(self):
        return {**super()._arrays(), **self._attr_arrays()}

    def _array_spec(self, n_users, n_items):
        return {**super()._array_spec(n_users, n_items), **self._attr_spec(n_users, n_items)}

    def _restore(self, arrays):
        self._attr_restore(arrays)
        super()._restore(arrays)  # _prepare: R' rebuilt from the training CSR + attributes


class SideInfoLightGCN(_SavesAttributes, LightGCN):
    """LightGCN on the bipartite graph of R' (module docstring): attribute
    nodes get their own layer-0 embeddings, attribute edges weight ``weight``
    in the normalised adjacency, and BPR samples the attribute rows of R' as
    well (an item-attribute node "prefers" its items), so a cold item's
    embedding is trained and propagated through its attributes. Fit once
    (``fit(data, item_attributes=..., user_attributes=..., epochs=...)``);
    ``embeddings()`` / ``score_block`` / ``recommend`` / ``evaluate`` answer
    for the real users and items. ``save`` stores the attribute matrices and
    the whole layer-0 table (attribute nodes included); no ``partial_fit``
    or fold-in."""

    name = "lightgcn-side"

    def __init__(self, weight=1.0, **kw):
        super().__init__(**kw)
        self.weight = _number("SideInfoLightGCN", "weight", weight)
        self._real = None
        self.item_attributes = self.user_attributes = None

    def fit(self, data, item_attributes=None, user_attributes=None, **kw):
        if self._real is not None:
            raise RuntimeError("SideInfoLightGCN.fit: fit once (the graph is built at the first "
                               "call)")
        self._set_attributes(data, item_attributes, user_attributes)
        ds = self._set_data(data)
        R = self.train
        Ra = augmented_matrix(R, self.item_attributes, self.user_attributes, self.weight)
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

    def _update_state(self):
        raise NotImplementedError("SideInfoLightGCN.partial_fit is not implemented (the "
                                  "attribute rows of the graph would move); fit a new model on "
                                  "the union")

    def _fold_in(self, H):
        raise NotImplementedError("SideInfoLightGCN has no fold-in (its user rows sit in the "
                                  "augmented graph); fit with the new users")

    # ---------------------------------------------------------------- persistence
    def _config(self):
        return {**super()._config(), "weight": self.weight, **self._attr_config()}

    def _set_config(self, config):
        widths = self._pop_attr_config(config)
        super()._set_config(config)  # LightGCN's: history, epoch, then the constructor
        self._attr_widths = widths

    def _arrays(self):
        return {**super()._arrays(), **self._attr_arrays()}

    def _array_spec(self, n_users, n_items):
        spec = super()._array_spec(n_users, n_items)
        w = self._attr_widths
        n = n_users + n_items + (w["item"] or 0) + (w["user"] or 0)  # R' rows + columns
        f32 = (np.float32,)
        spec["embedding0"] = (f32, (n, self.dim))
        if "embedding0_avg" in spec:
            spec["embedding0_avg"] = (f32, (n, self.dim), True)
        return {**spec, **self._attr_spec(n_users, n_items)}

    def _restore(self, arrays):
        self._attr_restore(arrays)
        self._aug = augmented_matrix(self.train, self.item_attributes, self.user_attributes,
                                     self.weight)
        super()._restore(arrays)
        self._real = (self.train, None)


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
