"""The serving core: a thread-safe, read-only Recommender answering a batch of
heterogeneous requests with one native top-K call (docs/serving.md)."""

from __future__ import annotations

import numpy as np

import hopkit

from ..csr import CSR
from ..models import load_model

FIELDS = ("user", "history", "k", "exclude", "include_seen", "explain")
MAX_PATHS = 3


class RequestError(ValueError):
    """A request the service refuses: ``status`` (400, 404, 413, 422) and a
    message naming the field."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Request:
    """A parsed request: ``row`` the user's row (-1: none), ``history`` the
    known item columns of a history (None: no history), ``exclude`` item
    columns, ``k``, flags."""

    __slots__ = ("user", "row", "history", "k", "exclude", "include_seen", "explain")

    def __init__(self, user, row, history, k, exclude, include_seen, explain):
        self.user, self.row, self.history, self.k = user, row, history, k
        self.exclude, self.include_seen, self.explain = exclude, include_seen, explain


def _id_type(ids):
    return int if np.asarray(ids).dtype.kind in "iu" else str


def _is_id(x, typ):
    """An id of the model's type (NumPy scalars accepted from Python callers)."""
    if typ is int:
        return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))
    return isinstance(x, str)


class Recommender:
    """Serve a fitted ``hopkit.models`` recommender.

    Built once (``Recommender(model)`` or ``Recommender.load(dir)``): id maps,
    the training CSR (seen items), the popularity fallback and, for
    dot-product models, a packed ``hopkit.ItemIndex`` of the item vectors
    with the item popularity as one more feature, so that trained users,
    folded-in histories and cold starts are one ``hopkit.topk`` call; models
    without vectors (GraphFilter's linear filter) score the batch with
    ``score_rows`` and select with one ``hopkit.topk_scores`` call. Every
    structure is read-only afterwards: ``recommend`` may be called from any
    number of threads at once.
    """

    def __init__(self, model, version=1, path=None):
        model._check_fitted("serving")
        self.model, self.version, self.path = model, version, path
        self.name, self.n_users, self.n_items = model.name, model.n_users, model.n_items
        self.train = model.train
        self._user_type, self._item_type = _id_type(model.user_ids), _id_type(model.item_ids)
        self._user_ids = np.asarray(model.user_ids).tolist()
        self._item_ids = np.asarray(model.item_ids).tolist()
        self._user_row = {u: r for r, u in enumerate(self._user_ids)}
        self._item_col = {i: c for c, i in enumerate(self._item_ids)}
        self._pop = model.popularity()
        V = model.item_vectors()
        self._index = self._U = None
        if V is not None:
            U = model.embeddings()[0]
            self._dim = V.shape[1]
            self._U = np.ascontiguousarray(U, np.float32)
            self._index = hopkit.ItemIndex(np.ascontiguousarray(
                np.hstack([V, self._pop[:, None]]), np.float32))
        Rn = self.train.normalize("sym", dtype=np.float32)  # D_u^-1/2 R D_i^-1/2
        self._RnT = Rn.T  # row i: the users of item i, weighted
        # pack the index and warm every path once, before any request arrives
        warm = [Request(None, -1, np.zeros(0, np.int64), 1, np.zeros(0, np.int64), False, False)]
        if self.n_users:
            warm.append(Request(None, 0, None, 1, np.zeros(0, np.int64), False, False))
        if self.n_items:  # a history: builds the model's fold-in structures
            warm.append(Request(None, -1, np.zeros(1, np.int64), 1, np.zeros(0, np.int64),
                                False, False))
        self.recommend(warm)

    @classmethod
    def load(cls, path, version=1):
        return cls(load_model(path), version=version, path=str(path))

    def info(self) -> dict:
        return {"model": self.name, "version": self.version, "path": self.path,
                "n_users": self.n_users, "n_items": self.n_items, "nnz": self.train.nnz}

    # ------------------------------------------------------------ parsing
    def _ids(self, obj, field, typ):
        if not isinstance(obj, list):
            raise RequestError(422, f"{field} must be a list of item ids, got "
                               f"{type(obj).__name__}")
        for x in obj:
            if not _is_id(x, typ):
                raise RequestError(422, f"{field}: item ids of this model are "
                                   f"{'integers' if typ is int else 'strings'}, got {x!r:.40}")
        get = self._item_col.get
        return np.array([c for c in map(get, obj) if c is not None], np.int64)

    def parse(self, obj) -> Request:
        """A request object (the JSON body of ``POST /recommend``) checked and
        mapped to rows; RequestError naming the field otherwise."""
        if not isinstance(obj, dict):
            raise RequestError(422, f"a request must be a JSON object, got {type(obj).__name__}")
        for f in obj:
            if f not in FIELDS:
                raise RequestError(422, f"unknown field {f!r:.40} (fields: {', '.join(FIELDS)})")
        k = obj.get("k", 10)
        if type(k) is not int or not 1 <= k <= self.n_items:
            raise RequestError(422, f"k must be an integer in [1, {self.n_items}] (the number of "
                               f"items), got {k!r:.40}")
        flags = []
        for f in ("include_seen", "explain"):
            v = obj.get(f, False)
            if type(v) is not bool:
                raise RequestError(422, f"{f} must be true or false, got {v!r:.40}")
            flags.append(v)
        user, row = obj.get("user"), -1
        if user is not None:
            if not _is_id(user, self._user_type):
                raise RequestError(422, f"user: user ids of this model are "
                                   f"{'integers' if self._user_type is int else 'strings'}, "
                                   f"got {user!r:.40}")
            user = user.item() if isinstance(user, np.generic) else user
            row = self._user_row.get(user, -1)
        history = obj.get("history")
        if history is not None:
            history = np.unique(self._ids(history, "history", self._item_type))
        elif user is None:
            raise RequestError(422, "user or history is required")
        elif row < 0:
            raise RequestError(404, f"user: unknown user {user!r:.40} (not in the training "
                               "data; send a history for a new user)")
        exclude = self._ids(obj.get("exclude", []), "exclude", self._item_type)
        return Request(user, row, history, k, exclude, *flags)

    # ------------------------------------------------------------ answering
    def _seen(self, r):
        if r.history is not None:
            return r.history
        return self.train.indices[self.train.indptr[r.row]:self.train.indptr[r.row + 1]]

    def recommend(self, requests) -> list:
        """Answer a batch: request dicts (as in ``POST /recommend``) or parsed
        ``Request`` objects; a list of result dicts in the same order. A
        history takes precedence over the user for scoring (the user is
        echoed); a history with no known item gets the most popular items
        with ``cold_start: true``."""
        reqs = [r if isinstance(r, Request) else self.parse(r) for r in requests]
        B = len(reqs)
        if B == 0:
            return []
        kmax = max(r.k for r in reqs)
        seen = [self._seen(r) for r in reqs]
        cold = np.array([r.history is not None and len(r.history) == 0 for r in reqs])
        hist = [b for b, r in enumerate(reqs) if r.history is not None and not cold[b]]
        known = [b for b, r in enumerate(reqs) if r.history is None]
        excl = _rows_csr([r.exclude if r.include_seen else np.concatenate([s, r.exclude])
                          for r, s in zip(reqs, seen, strict=True)], self.n_items)
        if self._index is not None:
            Q = np.zeros((B, self._dim + 1), np.float32)
            if known:
                Q[known, :self._dim] = self._U[[reqs[b].row for b in known]]
            if hist:
                H = _rows_csr([seen[b] for b in hist], self.n_items, values=True)
                Q[hist, :self._dim] = self.model.fold_in(H)
            Q[cold, self._dim] = 1.0
            sc, ix = hopkit.topk(Q, self._index, kmax, exclude=excl)
        else:
            S = np.empty((B, self.n_items), np.float32)
            warm = known + hist
            if warm:
                S[warm] = self.model.score_rows(
                    _rows_csr([seen[b] for b in warm], self.n_items, values=True))
            S[cold] = self._pop
            sc, ix = hopkit.topk_scores(S, kmax, exclude=excl)
        sc, ix = np.asarray(sc), np.asarray(ix)
        out = []
        for b, r in enumerate(reqs):
            items = ix[b, :r.k]
            items = items[items >= 0]
            res = {"user": r.user, "items": [self._item_ids[i] for i in items.tolist()],
                   "scores": sc[b, :len(items)].tolist(), "cold_start": bool(cold[b])}
            if r.explain:
                res["explanations"] = self.explain(seen[b], items)
            out.append(res)
        return out

    def explain(self, history, items) -> list:
        """For each item i, up to 3 paths user -> j -> i through history items
        j, weighted by the normalised co-interaction
        P~[j, i] = sum_v R[v, j] R[v, i] / (d_v sqrt(d_j d_i)) (GF-CF's
        item-item filter), strongest first (ties: the smaller column):
        ``[{"item": i, "paths": [{"via": j, "weight": w}, ...]}, ...]``.
        Computed as one ``hopkit.spmm`` of the history's rows of R~^T with
        the items' columns of R~ ([n_users, len(items)]): no item-item
        matrix."""
        history = np.asarray(history, np.int64)
        items = np.asarray(items, np.int64)
        out = [{"item": self._item_ids[i], "paths": []} for i in items.tolist()]
        if len(history) == 0 or len(items) == 0:
            return out
        RT = self._RnT
        D = np.zeros((self.n_users, len(items)), np.float32)  # columns of R~ at items
        for c, i in enumerate(items.tolist()):
            lo, hi = RT.indptr[i], RT.indptr[i + 1]
            D[RT.indices[lo:hi], c] = RT.values[lo:hi]
        W = hopkit.spmm(RT.select_rows(history), D)  # = P~[history, items]
        for c in range(len(items)):
            w = W[:, c]
            order = np.lexsort((history, -w))[:MAX_PATHS]
            out[c]["paths"] = [{"via": self._item_ids[history[j]], "weight": float(w[j])}
                               for j in order.tolist() if w[j] > 0]
        return out


def _rows_csr(rows, n_cols, values=False) -> CSR:
    indptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    indices = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
    return CSR(indptr, indices, np.ones(len(indices), np.float32) if values else None,
               (len(rows), n_cols), validate=False)
