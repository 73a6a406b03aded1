"""What every recommender shares: id maps, recommend(), save/load."""

from __future__ import annotations

import json
import os
import time
import zipfile
import zlib

import numpy as np

import hopkit

from ..csr import CSR
from ..data.loaders import Dataset, _lookup, from_csr

FORMAT_VERSION = 1
CONFIG_FILE = "model.json"
ARRAYS_FILE = "model.npz"


class ModelError(ValueError):
    """A model directory that is missing files or is incompatible."""


def as_dataset(data) -> Dataset:
    if isinstance(data, Dataset):
        return data
    if isinstance(data, CSR):
        return from_csr(data)
    return from_csr(hopkit.as_csr(data, "fit"))


class Recommender:
    """Base class: subclasses set ``name``, implement ``_fit``,
    ``_score_block(users) -> [B, n_items]`` or ``embeddings()``, and the
    arrays/config to save."""

    name = "base"

    def __init__(self):
        self.train = None
        self.user_ids = None
        self.item_ids = None
        self.fit_time = None

    # ---------------------------------------------------------------- data
    def _set_data(self, data):
        ds = as_dataset(data)
        self.train = ds.train
        self.user_ids = np.asarray(ds.user_ids)
        self.item_ids = np.asarray(ds.item_ids)
        return ds

    @property
    def n_users(self) -> int:
        return self.train.shape[0]

    @property
    def n_items(self) -> int:
        return self.train.shape[1]

    def _check_fitted(self, op):
        if self.train is None:
            raise RuntimeError(f"{type(self).__name__}.{op}: call fit() (or load()) first")

    def user_index(self, original_ids):
        """Rows of original user ids (KeyError naming unknown ids)."""
        return _lookup(self.user_ids, original_ids, "user")

    def embeddings(self):
        """(user_emb, item_emb) when scores are a dot product, else None."""
        return None

    def item_vectors(self):
        """The item matrix [n_items, d] of a dot-product model (what the
        vectors of ``fold_in`` are scored against), else None."""
        emb = self.embeddings()
        return None if emb is None else emb[1]

    def score_block(self, users) -> np.ndarray:
        """Scores [len(users), n_items] for rows ``users`` (dense, one batch)."""
        emb = self.embeddings()
        U, V = emb
        return np.asarray(U[np.asarray(users)] @ V.T)

    # ---------------------------------------------------------------- serving
    def recommend(self, users, k=10, exclude_seen=True, original_ids=False):
        """Top-``k`` items for each user.

        ``users`` are rows (0..n_users-1), or original ids with
        ``original_ids=True`` (then the returned items are original item ids
        too). Items the user interacted with in training are excluded when
        ``exclude_seen``. Returns ``(items [B, k], scores [B, k])`` sorted by
        score; a user with fewer than k unseen items gets -1 / -inf padding
        (``None`` / -inf with original ids). Raises KeyError for an unknown
        original id and ValueError for k outside [1, n_items].
        """
        self._check_fitted("recommend")
        self._check_k("recommend", k)
        if original_ids:
            rows = self.user_index(users)
        else:
            rows = np.atleast_1d(np.asarray(users, dtype=np.int64))
            bad = (rows < 0) | (rows >= self.n_users)
            if bad.any():
                raise KeyError(f"unknown user row(s) {rows[bad][:5].tolist()}: rows lie in "
                               f"[0, {self.n_users})")
        excl = self.train if exclude_seen else None
        emb = self.embeddings()
        outs, outi = [], []
        step = 4096 if emb is not None else 1024  # dense score blocks stay <= 1024 x n_items
        for s in range(0, len(rows), step):
            rb = rows[s:s + step]
            if emb is not None:
                sc, ix = hopkit.topk(np.ascontiguousarray(emb[0][rb]), emb[1], int(k),
                                     exclude=excl, exclude_rows=rb if excl is not None else None)
            else:
                sc, ix = hopkit.topk_scores(self.score_block(rb), int(k), exclude=excl,
                                            exclude_rows=rb if excl is not None else None)
            outs.append(np.asarray(sc))
            outi.append(np.asarray(ix))
        scores = np.concatenate(outs) if outs else np.zeros((0, k), np.float32)
        items = np.concatenate(outi) if outi else np.zeros((0, k), np.int64)
        return (self._original_items(items) if original_ids else items), scores

    def _original_items(self, items):
        out = np.empty(items.shape, dtype=object)
        out[...] = None
        ok = items >= 0
        out[ok] = self.item_ids[items[ok]]
        return out

    def _check_k(self, op, k):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not \
                1 <= k <= self.n_items:
            raise ValueError(f"{op}: k must be an integer in [1, {self.n_items}] (the "
                             f"number of items), got {k!r}")

    # ---------------------------------------------------------------- fold-in
    def item_rows(self, original_ids):
        """Columns of original item ids, -1 for an id unknown to the model."""
        ids = np.asarray(self.item_ids)
        q = np.asarray(list(original_ids) if not isinstance(original_ids, np.ndarray)
                       else original_ids)
        if len(q) == 0 or len(ids) == 0:
            return np.full(len(q), -1, np.int64)
        if ids.dtype.kind != q.dtype.kind:
            ids, q = ids.astype(str), q.astype(str)
        order = np.argsort(ids, kind="stable")
        p = np.minimum(np.searchsorted(ids[order], q), len(ids) - 1)
        return np.where(ids[order][p] == q, order[p], -1).astype(np.int64)

    def history_rows(self, histories, original_ids=False) -> CSR:
        """Histories (one list of item columns per new user, or of original
        item ids with ``original_ids=True``) as a binary CSR [B, n_items]:
        each row's known items sorted and de-duplicated; unknown original ids
        are dropped (ValueError for a column outside [0, n_items))."""
        self._check_fitted("history_rows")
        rows = []
        for h in histories:
            h = self.item_rows(h) if original_ids else np.asarray(h, np.int64).reshape(-1)
            if not original_ids and ((h < 0) | (h >= self.n_items)).any():
                raise ValueError(f"history_rows: item columns must lie in [0, {self.n_items}), "
                                 f"got {h[(h < 0) | (h >= self.n_items)][:5].tolist()}")
            rows.append(np.unique(h[h >= 0]))
        indptr = np.zeros(len(rows) + 1, np.int64)
        np.cumsum([len(r) for r in rows], out=indptr[1:])
        indices = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        return CSR(indptr, indices, np.ones(len(indices), np.float32),
                   (len(rows), self.n_items), validate=False)

    def fold_in(self, histories, original_ids=False):
        """Represent new users by their histories, without refitting.

        ``histories``: a binary CSR [B, n_items] (see ``history_rows``) or a
        list of item lists. Returns what the model scores with: user vectors
        [B, d] for a dot-product model (score = vectors @ embeddings()[1].T),
        else the score rows [B, n_items] (GraphFilter with its linear
        filter). GraphFilter is exact (a history scores as a trained user
        with those items); LightGCN propagates the history one hop into the
        trained item layers (docs/serving.md); Popularity ignores it."""
        self._check_fitted("fold_in")
        H = histories if isinstance(histories, CSR) else self.history_rows(histories,
                                                                           original_ids)
        return self._fold_in(H)

    def _fold_in(self, H):
        raise NotImplementedError(f"{type(self).__name__} has no fold-in")

    def popularity(self) -> np.ndarray:
        """Training interactions per item (float32): the cold-start score."""
        if getattr(self, "_pop_for", None) is not self.train:
            self._pop = np.bincount(self.train.indices, minlength=self.n_items).astype(
                np.float32)
            self._pop_for = self.train
        return self._pop

    def recommend_history(self, histories, k=10, exclude_seen=True, original_ids=False):
        """Top-``k`` items for new users given by their histories (item lists,
        original ids with ``original_ids=True``): ``fold_in``, then top-K with
        the history excluded when ``exclude_seen``. A history with no known
        item gets the most popular items. Returns ``(items, scores,
        cold_start [B] bool)``."""
        self._check_fitted("recommend_history")
        self._check_k("recommend_history", k)
        H = self.history_rows(histories, original_ids)
        cold = H.row_degree() == 0
        q = self._fold_in(H)
        excl = H if exclude_seen else None
        V = self.item_vectors()
        if V is not None:
            sc, ix = hopkit.topk(np.ascontiguousarray(q), V, int(k), exclude=excl)
        else:
            sc, ix = hopkit.topk_scores(np.ascontiguousarray(q), int(k), exclude=excl)
        sc, ix = np.array(sc), np.array(ix)
        if cold.any():
            pop = self.popularity()
            psc, pix = hopkit.topk(np.ones((1, 1), np.float32), pop[:, None], int(k))
            sc[cold], ix[cold] = psc[0], pix[0]
        return (self._original_items(ix) if original_ids else ix), sc, cold

    def evaluate(self, test, ks=(20,), metrics=("recall", "ndcg"), batch_size=None, *,
                 groups=None, return_per_user=False):
        """Metrics on a users x items test CSR (rows aligned with training),
        excluding training items: ``hopkit.evaluate`` (beyond-accuracy
        metrics, ``groups`` and ``return_per_user`` as there)."""
        self._check_fitted("evaluate")
        test = test.test if isinstance(test, Dataset) else test
        if test is None or test.shape != self.train.shape:
            raise ValueError(f"evaluate: test must be a CSR of shape {self.train.shape}, got "
                             f"{None if test is None else test.shape}")
        kw = dict(ks=tuple(ks), metrics=tuple(metrics), groups=groups,
                  return_per_user=return_per_user)
        emb = self.embeddings()
        if emb is not None:
            return hopkit.evaluate(emb[0], emb[1], self.train, test, batch_size=batch_size, **kw)
        # dense score blocks: bound them (batch x n_items floats)
        return hopkit.evaluate(None, None, self.train, test, batch_size=batch_size or 1024,
                               score_fn=self.score_block, **kw)

    # ---------------------------------------------------------------- incremental
    def partial_fit(self, new_interactions, new_ids="add", **options):
        """Add interactions to a fitted model without a refit (docs/recommender.md,
        "Incremental updates").

        ``new_interactions`` are in the data's original ids, as ``fit`` takes
        data: a pair ``(users, items)`` of equal-length id sequences, an array
        [n, 2] of (user, item) rows, a ``Dataset`` (its ``train``, through its
        id maps) or a CSR (row r / column c are ids r / c, as ``fit(csr)``
        names them). Ids the model has not seen are new users / items,
        appended after the existing rows / columns in sorted id order
        (``new_ids="add"``); ``new_ids="error"`` refuses them (ValueError
        naming them), ``"skip"`` drops their pairs. Pairs already in the
        training data, or repeated in the update, count once (the data is
        binary); an empty update, or one of repeated pairs only, leaves the
        model unchanged. ``options`` go to the model's update (GraphFilter /
        BSPM / ChebyCF: ``n_iter``; LightGCN: ``steps``, ``lr``,
        ``batch_size``). Returns ``self``; ``self.last_update`` says what was
        added (pairs, duplicates, skipped, new users, new items, seconds).

        ValueError naming ``new_interactions`` for ids of the wrong type
        (strings for a model with integer ids or the reverse, non-integral
        numbers, negative integers) or a malformed argument."""
        self._check_fitted("partial_fit")
        if new_ids not in ("add", "error", "skip"):
            raise ValueError(f"partial_fit: new_ids must be 'add', 'error' or 'skip', got "
                             f"{new_ids!r}")
        t0 = time.perf_counter()
        options = self._partial_options(**options)
        users, items = _update_pairs(new_interactions)
        uq = _update_ids(users, self.user_ids, "user")
        iq = _update_ids(items, self.item_ids, "item")
        ur, ir = _positions(self.user_ids, uq), _positions(self.item_ids, iq)
        unknown = (ur < 0) | (ir < 0)
        skipped = 0
        if unknown.any() and new_ids == "error":
            bad = sorted(set(uq[ur < 0].tolist()))[:5], sorted(set(iq[ir < 0].tolist()))[:5]
            raise ValueError(f"partial_fit: new_interactions name ids the model has not seen "
                             f"(users {bad[0]}, items {bad[1]}) and new_ids='error'")
        if unknown.any() and new_ids == "skip":
            skipped = int(unknown.sum())
            uq, iq, ur, ir = uq[~unknown], iq[~unknown], ur[~unknown], ir[~unknown]
        new_u = np.unique(uq[ur < 0])
        new_i = np.unique(iq[ir < 0])
        n_u0, n_i0 = self.n_users, self.n_items
        ur = ur.copy()
        ir = ir.copy()
        ur[ur < 0] = n_u0 + np.searchsorted(new_u, uq[ur < 0])
        ir[ir < 0] = n_i0 + np.searchsorted(new_i, iq[ir < 0])
        shape = (n_u0 + len(new_u), n_i0 + len(new_i))
        old = self.train
        if len(ur):
            R = CSR.from_coo(np.concatenate([old.row_ids(), ur]).astype(np.int64),
                             np.concatenate([np.asarray(old.indices), ir]).astype(np.int64),
                             None, shape=shape)
        else:
            R = old
        added = R.nnz - old.nnz
        info = {"pairs": int(len(users)), "added": int(added),
                "duplicates": int(len(ur) - added), "skipped": skipped,
                "new_users": int(len(new_u)), "new_items": int(len(new_i)), "seconds": 0.0}
        if added:
            self._check_update(shape)
            # the added pairs (rows in the new index), sorted, de-duplicated
            key = ur.astype(np.int64) * shape[1] + ir
            okey = old.row_ids().astype(np.int64) * shape[1] + np.asarray(old.indices)
            key = np.unique(key)  # okey is ascending (rows in order, sorted columns)
            p = np.minimum(np.searchsorted(okey, key), max(len(okey) - 1, 0))
            key = key[~(okey[p] == key)] if len(okey) else key
            state = self._update_state()
            self.train = R
            self.user_ids = _append_ids(self.user_ids, new_u)
            self.item_ids = _append_ids(self.item_ids, new_i)
            self._partial_update(old, key // shape[1], key % shape[1], state, **options)
        info["seconds"] = time.perf_counter() - t0
        self.last_update = info
        return self

    def _check_update(self, shape):
        """Refuse an update to ``shape`` before anything changes (EASE's limit)."""

    def _update_state(self):
        """What the update needs from the model before train changes."""
        return None

    def _partial_options(self, **options):
        """The update's options, checked (ValueError / TypeError)."""
        if options:
            raise TypeError(f"{type(self).__name__}.partial_fit: unexpected option(s) "
                            f"{sorted(options)}")
        return {}

    def _partial_update(self, old_train, users, items, state, **options):
        """Update the model for ``self.train`` = ``old_train`` + the pairs
        (``users``, ``items``) (rows / columns in the new index)."""
        raise NotImplementedError(f"{type(self).__name__}.partial_fit is not implemented; "
                                  "call fit() on the union of the data")

    # ---------------------------------------------------------------- persistence
    def _config(self) -> dict:
        return {}

    def _arrays(self) -> dict:
        return {}

    def _set_config(self, config):
        """Apply a saved config (TypeError / ValueError if it is invalid)."""
        self._reinit(config)

    def _array_spec(self, n_users, n_items) -> dict:
        """``name -> (dtypes, shape[, optional])`` of every array of this
        model in model.npz; a string in a shape is a size that must agree
        across arrays."""
        return {}

    def _restore(self, arrays):
        """Take the model's arrays (already checked against _array_spec)."""
        raise NotImplementedError

    def _reinit(self, config):
        """Re-run the subclass constructor with a saved config, keeping the
        training data and id maps that load() already set."""
        keep = (self.train, self.user_ids, self.item_ids, self.fit_time)
        type(self).__init__(self, **config)
        self.train, self.user_ids, self.item_ids, self.fit_time = keep

    def save(self, path):
        """Write ``model.npz`` (arrays, training CSR) and ``model.json``
        (format version, model name, config, id maps) into directory ``path``."""
        self._check_fitted("save")
        check_save_dir(path)
        os.makedirs(path, exist_ok=True)
        arrays = dict(self._arrays())
        arrays["train_indptr"] = np.asarray(self.train.indptr)
        arrays["train_indices"] = np.asarray(self.train.indices)
        np.savez(os.path.join(path, ARRAYS_FILE), **arrays)
        meta = {
            "format": "hopkit-model",
            "format_version": FORMAT_VERSION,
            "hopkit_version": hopkit.__version__,
            "model": self.name,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "fit_time": self.fit_time,
            "config": self._config(),
            "user_ids": _ids_to_json(self.user_ids),
            "item_ids": _ids_to_json(self.item_ids),
        }
        tmp = os.path.join(path, CONFIG_FILE + ".tmp")
        with open(tmp, "w") as f:
            json.dump(meta, f)
        os.replace(tmp, os.path.join(path, CONFIG_FILE))
        return path

    @classmethod
    def load(cls, path):
        """Load a saved model; ModelError naming the file for anything that
        does not agree with the format or the saved config."""
        meta, arrays = read_model_dir(path)
        if meta["model"] != cls.name and cls is not Recommender:
            raise ModelError(f"{path}: holds a {meta['model']!r} model, not {cls.name!r}")
        cfg, npz = os.path.join(path, CONFIG_FILE), os.path.join(path, ARRAYS_FILE)
        obj = cls.__new__(cls)
        Recommender.__init__(obj)
        obj.user_ids, obj.item_ids = meta["user_ids"], meta["item_ids"]
        obj.fit_time = meta.get("fit_time")
        try:
            obj._set_config(dict(meta["config"]))
        except (TypeError, ValueError) as e:
            raise ModelError(f"{cfg}: invalid {cls.name} config ({e})") from None
        n_users, n_items = meta["n_users"], meta["n_items"]
        spec = {"train_indptr": ((np.int32, np.int64), (n_users + 1,)),
                "train_indices": ((np.int32, np.int64), ("nnz",))}
        spec.update(obj._array_spec(n_users, n_items))
        _check_arrays(npz, arrays, spec)
        try:
            obj.train = CSR(arrays["train_indptr"], arrays["train_indices"], None,
                            (n_users, n_items))
            _check_sorted_rows(obj.train)
        except ValueError as e:
            raise ModelError(f"{npz}: the training matrix is invalid ({e})") from None
        obj._restore(arrays)
        return obj


def check_save_dir(path):
    """ModelError unless ``path`` is a directory or can become one."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ModelError(f"{path}: exists and is not a directory; a model is saved as a "
                         "directory (pick a new path or an existing directory)")


def _ids_to_json(ids):
    ids = np.asarray(ids)
    if ids.dtype.kind in "iu":
        n = len(ids)
        if n and ids[0] == 0 and ids[-1] == n - 1 and bool(np.all(np.diff(ids) == 1)):
            return {"range": n}
        return {"int": ids.tolist()}
    return {"str": ids.astype(str).tolist()}


def _ids_from_json(cfg, name, obj, n):
    """The id map ``name`` of model.json, checked: n distinct ids."""
    if not (isinstance(obj, dict) and len(obj) == 1 and set(obj) <= {"range", "int", "str"}):
        raise ModelError(f'{cfg}: {name} must be an object {{"range": n}}, {{"int": [...]}} or '
                         f'{{"str": [...]}}, got {str(obj)[:80]}')
    (kind, v), = obj.items()
    size = v if kind == "range" else len(v) if isinstance(v, list) else None
    if kind == "range" and not _is_count(v) or kind != "range" and size is None:
        raise ModelError(f"{cfg}: {name}: {kind!r} must be "
                         f"{'an integer >= 0' if kind == 'range' else 'a list'}, got {v!r:.80}")
    if size != n:
        raise ModelError(f"{cfg}: {name} has {size} ids, expected {n} "
                         f"({'n_users' if name == 'user_ids' else 'n_items'})")
    if kind == "range":
        return np.arange(n, dtype=np.int64)
    if kind == "int":
        if not all(type(x) is int and -2**63 <= x < 2**63 for x in v):
            raise ModelError(f"{cfg}: {name}: 'int' must be a list of integers (64-bit)")
        ids = np.asarray(v, dtype=np.int64)
    else:
        if not all(type(x) is str for x in v):
            raise ModelError(f"{cfg}: {name}: 'str' must be a list of strings")
        ids = np.asarray(v, dtype=str)
    s = np.sort(ids)
    dup = np.flatnonzero(s[1:] == s[:-1])
    if len(dup):
        raise ModelError(f"{cfg}: {name} has a repeated id {s[dup[0]].item()!r}")
    return ids


def _is_count(v):
    return type(v) is int and v >= 0


def _check_arrays(npz, arrays, spec):
    """Every array of ``spec`` present (unless optional) with its dtype and
    shape, and no other."""
    for name in arrays:
        if name not in spec:
            raise ModelError(f"{npz}: unexpected array {name!r} (this model has "
                             f"{sorted(spec)})")
    sizes = {}
    for name, (dtypes, shape, *optional) in spec.items():
        if name not in arrays:
            if optional and optional[0]:
                continue
            raise ModelError(f"{npz}: lacks array {name!r}")
        a = arrays[name]
        if a.dtype not in dtypes:
            raise ModelError(f"{npz}: array {name!r} has dtype {a.dtype}, expected "
                             f"{' or '.join(np.dtype(d).name for d in dtypes)}")
        want = tuple(sizes.setdefault(d, a.shape[k]) if isinstance(d, str) and k < a.ndim
                     else d for k, d in enumerate(shape))
        if a.shape != want:
            raise ModelError(f"{npz}: array {name!r} has shape {a.shape}, expected {want}")


def _check_sorted_rows(R):
    """ValueError unless the columns of every row are strictly increasing."""
    ix = np.asarray(R.indices, np.int64)
    bad = np.diff(ix) <= 0
    bad[np.asarray(R.indptr[1:-1]) - 1] = False  # a new row may start lower
    if bad.any():
        b = int(np.flatnonzero(bad)[0])
        raise ValueError(f"column indices must be strictly increasing within each row; "
                         f"indices[{b + 1}] = {ix[b + 1]} follows {ix[b]}")


def read_model_dir(path):
    """(meta, arrays) of a saved model, with ``meta["user_ids"]`` /
    ``meta["item_ids"]`` as arrays; ModelError naming the file for anything
    unusable."""
    if not os.path.isdir(path):
        raise ModelError(f"model directory not found: {path}")
    cfg = os.path.join(path, CONFIG_FILE)
    npz = os.path.join(path, ARRAYS_FILE)
    for f in (cfg, npz):
        if not os.path.isfile(f):
            raise ModelError(f"{path}: not a hopkit model directory ({os.path.basename(f)} is "
                             "missing); create one with `hopkit train ... --out DIR` or "
                             "model.save(DIR)")
    try:
        with open(cfg, "rb") as f:
            meta = json.loads(f.read().decode("utf-8"))
    except RecursionError:
        raise ModelError(f"{cfg}: unreadable model config (nested too deeply)") from None
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError included
        raise ModelError(f"{cfg}: unreadable model config ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != "hopkit-model":
        raise ModelError(f"{cfg}: not a hopkit model config")
    version = meta.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ModelError(f"{cfg}: model format version {version!r} is not "
                         f"supported by hopkit {hopkit.__version__} (expects {FORMAT_VERSION}); "
                         "retrain or use the hopkit version that wrote it")
    for key in ("model", "n_users", "n_items", "config", "user_ids", "item_ids"):
        if key not in meta:
            raise ModelError(f"{cfg}: model config lacks {key!r}")
    if not isinstance(meta["model"], str):
        raise ModelError(f"{cfg}: 'model' must be a string, got {meta['model']!r:.80}")
    for key in ("n_users", "n_items"):
        if not _is_count(meta[key]):
            raise ModelError(f"{cfg}: {key!r} must be an integer >= 0, got {meta[key]!r:.80}")
    if not isinstance(meta["config"], dict):
        raise ModelError(f"{cfg}: 'config' must be an object, got {meta['config']!r:.80}")
    fit_time = meta.get("fit_time")
    if fit_time is not None and (type(fit_time) not in (int, float)):
        raise ModelError(f"{cfg}: 'fit_time' must be a number or null, got {fit_time!r:.80}")
    meta["user_ids"] = _ids_from_json(cfg, "user_ids", meta["user_ids"], meta["n_users"])
    meta["item_ids"] = _ids_from_json(cfg, "item_ids", meta["item_ids"], meta["n_items"])
    try:
        z = np.load(npz, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ModelError(f"{npz}: unreadable model arrays ({e or type(e).__name__})") from None
    return meta, arrays


def load_model(path):
    """Load any saved hopkit recommender (the class is read from model.json)."""
    from . import MODELS

    meta, _ = read_model_dir(path)
    cls = MODELS.get(meta["model"])
    if cls is None:
        raise ModelError(f"{path}: unknown model type {meta['model']!r} (known: "
                         f"{sorted(MODELS)})")
    return cls.load(path)


# ---------------------------------------------------------------- partial_fit helpers
def _update_pairs(new):
    """(users, items) arrays of original ids from ``partial_fit``'s argument."""
    if isinstance(new, Dataset):
        R = new.train
        return (np.asarray(new.user_ids)[R.row_ids()], np.asarray(new.item_ids)[
            np.asarray(R.indices)])
    if isinstance(new, CSR) or hasattr(new, "tocsr"):
        R = new if isinstance(new, CSR) else hopkit.as_csr(new, "partial_fit")
        return R.row_ids().astype(np.int64), np.asarray(R.indices).astype(np.int64)
    if isinstance(new, tuple) and len(new) == 2:
        u, i = np.asarray(new[0]).reshape(-1), np.asarray(new[1]).reshape(-1)
        if len(u) != len(i):
            raise ValueError(f"partial_fit: new_interactions (users, items) must have equal "
                             f"lengths, got {len(u)} and {len(i)}")
        return u, i
    try:
        a = np.asarray(new)
    except (ValueError, TypeError):
        a = None
    if a is None or a.dtype == object and a.ndim != 2:
        raise ValueError("partial_fit: new_interactions must be (users, items), an array "
                         "[n, 2] of (user, item) ids, a Dataset or a CSR, got "
                         f"{type(new).__name__}")
    if a.size == 0:
        return a.reshape(-1)[:0], a.reshape(-1)[:0]
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"partial_fit: new_interactions as an array must have shape [n, 2] "
                         f"(user, item), got shape {a.shape}")
    return a[:, 0], a[:, 1]


def _update_ids(q, ids, what):
    """``q`` as ids of the model's kind (int64 or str); ValueError otherwise."""
    ids = np.asarray(ids)
    q = np.asarray(q)
    integer_model = ids.dtype.kind in "iu" or (len(ids) == 0 and q.dtype.kind in "iuf")
    if len(q) == 0:
        return q.astype(np.int64 if integer_model else str)
    if integer_model:
        if q.dtype.kind == "f":
            if not np.all(np.isfinite(q)) or not np.all(q == np.round(q)):
                raise ValueError(f"partial_fit: new_interactions has non-integral {what} ids "
                                 f"(e.g. {q[~np.isfinite(q) | (q != np.round(q))][:3].tolist()})"
                                 f"; this model's {what} ids are integers")
            q = q.astype(np.int64)
        elif q.dtype.kind == "b" or q.dtype.kind not in "iu":
            raise ValueError(f"partial_fit: new_interactions has {what} ids of type "
                             f"{q.dtype} (e.g. {q[:3].tolist()}); this model's {what} ids are "
                             "integers")
        q = q.astype(np.int64)
        if (q < 0).any() and (len(ids) == 0 or ids.min() >= 0):
            raise ValueError(f"partial_fit: new_interactions has negative {what} ids "
                             f"{q[q < 0][:5].tolist()}; ids lie in [0, inf)")
        return q
    if q.dtype.kind not in "USO" or (q.dtype.kind == "O" and not all(
            isinstance(x, str) for x in q.tolist())):
        raise ValueError(f"partial_fit: new_interactions has {what} ids of type {q.dtype} "
                         f"(e.g. {q[:3].tolist()}); this model's {what} ids are strings")
    return q.astype(str)


def _positions(ids, q):
    """Index of each ``q`` in ``ids``, -1 where absent."""
    ids = np.asarray(ids)
    if len(q) == 0 or len(ids) == 0:
        return np.full(len(q), -1, np.int64)
    if ids.dtype.kind not in "iu":
        ids = ids.astype(str)
    order = np.argsort(ids, kind="stable")
    p = np.minimum(np.searchsorted(ids[order], q), len(ids) - 1)
    return np.where(ids[order][p] == q, order[p], -1).astype(np.int64)


def _append_ids(ids, new):
    ids = np.asarray(ids)
    if len(new) == 0:
        return ids
    if ids.dtype.kind in "iu":
        return np.concatenate([ids.astype(np.int64), np.asarray(new, np.int64)])
    return np.concatenate([ids.astype(str), np.asarray(new, str)])
