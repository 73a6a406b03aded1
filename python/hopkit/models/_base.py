"""What every recommender shares: id maps, recommend(), save/load."""

from __future__ import annotations

import json
import os

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
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not \
                1 <= k <= self.n_items:
            raise ValueError(f"recommend: k must be an integer in [1, {self.n_items}] (the "
                             f"number of items), got {k!r}")
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
        if original_ids:
            ids = self.item_ids
            out = np.empty(items.shape, dtype=object)
            out[...] = None
            ok = items >= 0
            out[ok] = ids[items[ok]]
            return out, scores
        return items, scores

    def evaluate(self, test, ks=(20,), metrics=("recall", "ndcg"), batch_size=None):
        """Metrics on a users x items test CSR (rows aligned with training),
        excluding training items: ``hopkit.evaluate``."""
        self._check_fitted("evaluate")
        test = test.test if isinstance(test, Dataset) else test
        if test is None or test.shape != self.train.shape:
            raise ValueError(f"evaluate: test must be a CSR of shape {self.train.shape}, got "
                             f"{None if test is None else test.shape}")
        emb = self.embeddings()
        if emb is not None:
            return hopkit.evaluate(emb[0], emb[1], self.train, test, ks=tuple(ks),
                                   metrics=tuple(metrics), batch_size=batch_size)
        # dense score blocks: bound them (batch x n_items floats)
        return hopkit.evaluate(None, None, self.train, test, ks=tuple(ks), metrics=tuple(metrics),
                               batch_size=batch_size or 1024, score_fn=self.score_block)

    # ---------------------------------------------------------------- persistence
    def _config(self) -> dict:
        return {}

    def _arrays(self) -> dict:
        return {}

    def _restore(self, config, arrays):
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
        meta, arrays = read_model_dir(path)
        if meta["model"] != cls.name and cls is not Recommender:
            raise ModelError(f"{path}: holds a {meta['model']!r} model, not {cls.name!r}")
        obj = cls.__new__(cls)
        Recommender.__init__(obj)
        obj.user_ids = _ids_from_json(meta["user_ids"])
        obj.item_ids = _ids_from_json(meta["item_ids"])
        obj.train = CSR(arrays["train_indptr"], arrays["train_indices"], None,
                        (meta["n_users"], meta["n_items"]))
        obj.fit_time = meta.get("fit_time")
        obj._restore(meta["config"], arrays)
        return obj


def _ids_to_json(ids):
    ids = np.asarray(ids)
    if ids.dtype.kind in "iu":
        n = len(ids)
        if n and ids[0] == 0 and ids[-1] == n - 1 and bool(np.all(np.diff(ids) == 1)):
            return {"range": n}
        return {"int": ids.tolist()}
    return {"str": ids.astype(str).tolist()}


def _ids_from_json(obj):
    if "range" in obj:
        return np.arange(obj["range"], dtype=np.int64)
    if "int" in obj:
        return np.asarray(obj["int"], dtype=np.int64)
    return np.asarray(obj["str"], dtype=str)


def read_model_dir(path):
    """(meta, arrays) of a saved model; ModelError for anything unusable."""
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
        with open(cfg) as f:
            meta = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"{cfg}: unreadable model config ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != "hopkit-model":
        raise ModelError(f"{cfg}: not a hopkit model config")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{cfg}: model format version {meta.get('format_version')!r} is not "
                         f"supported by hopkit {hopkit.__version__} (expects {FORMAT_VERSION}); "
                         "retrain or use the hopkit version that wrote it")
    for key in ("model", "n_users", "n_items", "config", "user_ids", "item_ids"):
        if key not in meta:
            raise ModelError(f"{cfg}: model config lacks {key!r}")
    try:
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ModelError(f"{npz}: unreadable model arrays ({e})") from None
    for key in ("train_indptr", "train_indices"):
        if key not in arrays:
            raise ModelError(f"{npz}: lacks array {key!r}")
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
