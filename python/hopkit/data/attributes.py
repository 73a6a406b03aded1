"""Side information: item and user attributes as an entities x attributes CSR.

Sources (each returns an :class:`Attributes` aligned with a Dataset's id map,
``ids`` = ``Dataset.item_ids`` or ``Dataset.user_ids``):

* :func:`load_recbole_features`: a RecBole ``.item`` / ``.user`` file (tab
  separated, typed header ``field:type``). Every ``token`` field value
  becomes an attribute node ``field=value`` (e.g. ``release_year=1995``,
  ``occupation=technician``); a ``token_seq`` field gives one node per
  space-separated token (``class=Comedy``); a ``float`` field is bucketed
  into ``float_buckets`` quantile bins (``age=q2``), or skipped with
  ``float_buckets=0``. ``fields`` picks fields (default: all but the id and
  free-text fields named in ``exclude``, by default ``movie_title``,
  ``zip_code`` and names ending in ``title`` / ``name``); ``buckets`` maps a
  token field to numeric bin edges (``{"age": [18, 25, 35, 45, 56]}``):
  its integer values become ``field=b<k>`` buckets instead of tokens.
* :func:`load_kg`: a knowledge graph ``.kg`` (``head_id relation_id
  tail_id``) plus ``.link`` (``item_id entity_id``): an item's attributes are
  the entities next to its entity, ``relation=tail`` for triples with the
  item as head and ``~relation=head`` for triples with it as tail (one hop).
* :func:`load_attribute_csv`: lines ``id, attribute`` (comma, tab or
  whitespace separated; a header line ``id,attribute``-like is detected);
  several lines per id.

Ids that the id map does not hold are counted in ``Attributes.skipped``
(``{"unknown item": n}``) and dropped, or raise ``DataError`` naming the
file and line with ``unseen="error"``. Attribute nodes are numbered in sorted
order of their names; duplicate (entity, attribute) pairs are merged;
``min_count`` drops attributes held by fewer entities.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..csr import CSR
from .loaders import DataError, _ids_array, _read_lines, _sniff_sep, _split

_FREE_TEXT = ("movie_title", "zip_code")


@dataclass
class Attributes:
    """Binary entities x attributes matrix with attribute names.

    ``matrix`` [n_entities, n_attributes] (values None: binary) rows aligned
    with the id map it was loaded against; ``names[a]`` the attribute's name
    (``"class=Comedy"``); ``skipped`` counts dropped lines by reason."""

    matrix: CSR
    names: np.ndarray
    kind: str = "item"
    skipped: dict = field(default_factory=dict)

    @property
    def n_attributes(self) -> int:
        return self.matrix.shape[1]

    def concat(self, other: Attributes) -> Attributes:
        """Both attribute sets side by side (same entities)."""
        if other.matrix.shape[0] != self.matrix.shape[0]:
            raise ValueError(f"Attributes.concat: {self.matrix.shape[0]} vs "
                             f"{other.matrix.shape[0]} entities")
        a, b = self.matrix.to_scipy(), other.matrix.to_scipy()
        import scipy.sparse as sp

        m = sp.hstack([a, b]).tocsr()
        m.sort_indices()
        sk = dict(self.skipped)
        for k, v in other.skipped.items():
            sk[k] = sk.get(k, 0) + v
        return Attributes(CSR(m.indptr, m.indices, None, m.shape),
                          np.concatenate([self.names, other.names]), self.kind, sk)

    def field_of(self) -> np.ndarray:
        """The field name of each attribute (the part before ``=``)."""
        return np.asarray([str(n).split("=", 1)[0] for n in self.names])


def _check_unseen(unseen):
    if unseen not in ("skip", "error"):
        raise ValueError(f"attributes: unseen must be 'skip' or 'error', got {unseen!r}")


def _map_ids(ids, raw, lines, path, kind, unseen):
    """Rows of raw ids in the id map (-1 = unknown; DataError with 'error')."""
    ids = np.asarray(ids)
    raw = _ids_array(list(raw)) if len(raw) else np.zeros(0, ids.dtype)
    if ids.dtype.kind != raw.dtype.kind:
        ids, raw = ids.astype(str), raw.astype(str)
    order = np.argsort(ids, kind="stable")
    if len(ids) == 0:
        rows = np.full(len(raw), -1, np.int64)
    else:
        p = np.minimum(np.searchsorted(ids[order], raw), len(ids) - 1)
        rows = np.where(ids[order][p] == raw, order[p], -1).astype(np.int64)
    bad = rows < 0
    if bad.any() and unseen == "error":
        b = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}:{lines[b]}: {kind} {raw[b].tolist()!r} does not occur in the "
                        f"interaction data (pass unseen='skip' to drop such lines)")
    return rows


def _build(rows, names, n, kind, skipped, min_count=1):
    """Attributes from parallel (row, attribute name) lists, rows >= 0."""
    rows = np.asarray(rows, np.int64)
    names = np.asarray(names, dtype=str) if len(names) else np.zeros(0, str)
    vocab, col = np.unique(names, return_inverse=True)
    key = np.unique(rows * max(len(vocab), 1) + col)
    r, c = key // max(len(vocab), 1), key % max(len(vocab), 1)
    if min_count > 1 and len(vocab):
        cnt = np.bincount(c, minlength=len(vocab))
        keep_attr = np.flatnonzero(cnt >= min_count)
        remap = np.full(len(vocab), -1, np.int64)
        remap[keep_attr] = np.arange(len(keep_attr))
        m = remap[c] >= 0
        r, c, vocab = r[m], remap[c[m]], vocab[keep_attr]
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(r, minlength=n), out=indptr[1:])
    order = np.lexsort((c, r))
    M = CSR(indptr, c[order].astype(np.int32), None, (n, len(vocab)))
    return Attributes(M, vocab, kind, {k: v for k, v in skipped.items() if v})


def _bucket_floats(vals, n_buckets):
    """Quantile bucket labels q0..q{n-1} of a float column (nan: None)."""
    v = np.asarray(vals, np.float64)
    ok = np.isfinite(v)
    out = [None] * len(v)
    if not ok.any():
        return out
    edges = np.unique(np.quantile(v[ok], np.linspace(0, 1, n_buckets + 1)[1:-1]))
    b = np.searchsorted(edges, v, side="right")
    for j in np.flatnonzero(ok):
        out[j] = f"q{int(b[j])}"
    return out


def load_recbole_features(path, ids, kind="item", fields=None, exclude=None, float_buckets=5,
                          buckets=None, unseen="skip", min_count=1,
                          encoding="utf-8") -> Attributes:
    """Attributes from a RecBole ``.item`` / ``.user`` file (module docstring)."""
    _check_unseen(unseen)
    raw = _read_lines(path, encoding)
    first = next(i for i, line in enumerate(raw) if line.strip(" \t"))
    head = raw[first].split("\t")
    if not all(":" in h for h in head):
        raise DataError(f"{path}:{first + 1}: a RecBole feature file needs a typed header like "
                        f"'item_id:token<TAB>class:token_seq', got {raw[first][:80]!r}")
    names = [h.split(":")[0].strip(" \t") for h in head]
    types = [h.split(":", 1)[1].strip(" \t").lower() for h in head]
    id_col = next((k for k, nm in enumerate(names) if nm.lower() == f"{kind}_id"), 0)
    excl = set(_FREE_TEXT if exclude is None else exclude)
    buckets = dict(buckets or {})
    use = []
    for k, (nm, ty) in enumerate(zip(names, types, strict=True)):
        if k == id_col:
            continue
        if fields is not None:
            if nm in fields:
                use.append(k)
            continue
        if nm in excl or nm.lower().endswith(("title", "name")):
            continue
        if ty == "float" and not float_buckets and nm not in buckets:
            continue
        if ty in ("token", "token_seq", "float"):
            use.append(k)
    if fields is not None:
        missing = set(fields) - {names[k] for k in use}
        if missing:
            raise DataError(f"{path}:{first + 1}: no field(s) {sorted(missing)} in the header "
                            f"{names}")
    raw_ids, lines, cells = [], [], []
    for n in range(first + 1, len(raw)):
        if not raw[n].strip(" \t"):
            continue
        toks = raw[n].split("\t")
        if len(toks) <= id_col or not toks[id_col].strip(" \t"):
            raise DataError(f"{path}:{n + 1}: no {kind} id in {raw[n][:80]!r}")
        toks += [""] * (len(names) - len(toks))
        raw_ids.append(toks[id_col].strip(" \t"))
        lines.append(n + 1)
        cells.append(toks)
    rows = _map_ids(ids, raw_ids, lines, path, kind, unseen)
    skipped = {f"unknown {kind}": int((rows < 0).sum())}
    out_rows, out_names = [], []
    for k in use:
        nm, ty = names[k], types[k]
        col = [c[k].strip(" \t") for c in cells]
        if nm in buckets:
            edges = np.asarray(buckets[nm], np.float64)
            labels = []
            for j, v in enumerate(col):
                try:
                    labels.append(f"b{int(np.searchsorted(edges, float(v), side='right'))}")
                except ValueError:
                    if v:
                        raise DataError(f"{path}:{lines[j]}: field {nm!r} is bucketed and needs "
                                        f"a number, got {v!r}") from None
                    labels.append(None)
        elif ty == "float":
            vals = []
            for j, v in enumerate(col):
                try:
                    vals.append(float(v) if v else np.nan)
                except ValueError:
                    raise DataError(f"{path}:{lines[j]}: float field {nm!r} must be a number, "
                                    f"got {v!r}") from None
            labels = _bucket_floats(vals, int(float_buckets))
        else:
            labels = col
        for j, lab in enumerate(labels):
            if rows[j] < 0 or not lab:
                continue
            toks = lab.split() if ty == "token_seq" else [lab]
            for t in toks:
                out_rows.append(rows[j])
                out_names.append(f"{nm}={t}")
    return _build(out_rows, out_names, len(ids), kind, skipped, min_count)


def _typed_table(path, encoding, want):
    """(columns by name, line numbers) of a RecBole atomic file."""
    raw = _read_lines(path, encoding)
    first = next(i for i, line in enumerate(raw) if line.strip(" \t"))
    names = [h.split(":")[0].strip(" \t").lower() for h in raw[first].split("\t")]
    idx = []
    for w in want:
        k = next((k for k, nm in enumerate(names) if nm == w), None)
        if k is None:
            raise DataError(f"{path}:{first + 1}: no {w!r} column in the header {names}")
        idx.append(k)
    cols = [[] for _ in want]
    lines = []
    for n in range(first + 1, len(raw)):
        if not raw[n].strip(" \t"):
            continue
        toks = [t.strip(" \t") for t in raw[n].split("\t")]
        if len(toks) <= max(idx):
            raise DataError(f"{path}:{n + 1}: expected {len(names)} tab-separated fields, got "
                            f"{len(toks)}")
        for c, k in zip(cols, idx, strict=True):
            c.append(toks[k])
        lines.append(n + 1)
    return cols, lines


def load_kg(kg_path, link_path, ids, unseen="skip", inverse=True, min_count=1,
            encoding="utf-8") -> Attributes:
    """Item attributes from a knowledge graph (``.kg``) and item-entity links
    (``.link``): one hop, ``relation=tail`` and (``inverse``)
    ``~relation=head`` (module docstring). Links naming unknown items are
    counted as ``unknown item``; triples touching no linked item are ignored."""
    _check_unseen(unseen)
    (l_items, l_ents), l_lines = _typed_table(link_path, encoding, ("item_id", "entity_id"))
    rows = _map_ids(ids, l_items, l_lines, link_path, "item", unseen)
    skipped = {"unknown item": int((rows < 0).sum())}
    ent2rows: dict = {}
    for r, e in zip(rows, l_ents, strict=True):
        if r >= 0:
            ent2rows.setdefault(e, []).append(int(r))
    (h, rel, t), _ = _typed_table(kg_path, encoding, ("head_id", "relation_id", "tail_id"))
    out_rows, out_names = [], []
    for a, r, b in zip(h, rel, t, strict=True):
        for it in ent2rows.get(a, ()):
            out_rows.append(it)
            out_names.append(f"{r}={b}")
        if inverse:
            for it in ent2rows.get(b, ()):
                out_rows.append(it)
                out_names.append(f"~{r}={a}")
    return _build(out_rows, out_names, len(ids), "item", skipped, min_count)


def load_attribute_csv(path, ids, kind="item", sep=None, header=None, unseen="skip",
                       min_count=1, encoding="utf-8") -> Attributes:
    """Attributes from lines ``id, attribute`` (module docstring)."""
    _check_unseen(unseen)
    raw = _read_lines(path, encoding)
    first = next(i for i, line in enumerate(raw) if line.strip(" \t"))
    if sep is None:
        sep = _sniff_sep(raw[first])
    start = first
    if header is None:
        words = {t.lower().split(":")[0] for t in _split(raw[first], sep)}
        header = bool(words & {"id", "item", "user", "item_id", "user_id", "attribute",
                               "attr", "tag", "genre", "feature"})
    if header:
        start = first + 1
    raw_ids, attrs, lines = [], [], []
    for n in range(start, len(raw)):
        if not raw[n].strip(" \t"):
            continue
        toks = _split(raw[n], sep)
        if len(toks) < 2 or not toks[0] or not toks[1]:
            raise DataError(f"{path}:{n + 1}: expected 'id{',' if sep == ',' else ' '}"
                            f"attribute', got {raw[n][:80]!r}")
        raw_ids.append(toks[0])
        attrs.append(toks[1])
        lines.append(n + 1)
    rows = _map_ids(ids, raw_ids, lines, path, kind, unseen)
    skipped = {f"unknown {kind}": int((rows < 0).sum())}
    keep = rows >= 0
    kept = [a for a, k in zip(attrs, keep, strict=True) if k]
    return _build(rows[keep], kept, len(ids), kind, skipped, min_count)


# ---------------------------------------------------------------- cold-item protocol
@dataclass
class ColdSplit:
    """The cold-item protocol's split of one Dataset.

    ``cold_items``: the held-out items (sorted); ``warm_items`` the rest.
    ``data``: a Dataset whose ``train`` holds no interaction of a cold item
    (the cold columns are empty; shapes and id maps unchanged) and whose
    ``test`` is a per-user random ``warm_test_fraction`` of the warm
    interactions (None when 0). ``cold_test``: every interaction of the cold
    items (users x items, zero outside the cold columns)."""

    data: object
    cold_test: CSR
    cold_items: np.ndarray
    warm_items: np.ndarray
    seed: int = 0


def split_cold_items(data, fraction=0.2, seed=0, warm_test_fraction=0.2) -> ColdSplit:
    """Hold out every interaction of a random ``fraction`` of the items
    (``round(fraction * n_items)`` items drawn with ``seed``); the warm
    interactions are split per user with :func:`split_random` (same seed)
    into train and a warm test. Reproducible for a fixed seed."""
    from .loaders import Dataset, _to_csr, from_csr, split_random

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split_cold_items: fraction must lie in (0, 1), got {fraction}")
    ds = data if isinstance(data, Dataset) else from_csr(data)
    R = ds.train
    n_items = R.shape[1]
    rng = np.random.default_rng(seed)
    n_cold = int(round(fraction * n_items))
    cold = np.sort(rng.choice(n_items, n_cold, replace=False)).astype(np.int64)
    is_cold = np.zeros(n_items, bool)
    is_cold[cold] = True
    rows, cols = R.row_ids(), np.asarray(R.indices, np.int64)
    m = is_cold[cols]

    def sub(mask):
        return _to_csr(rows[mask], cols[mask], None, None, R.shape)[0]

    warm = Dataset(sub(~m), None, ds.user_ids, ds.item_ids, name=ds.name,
                   train_ratings=None if ds.train_ratings is None else ds.train_ratings[~m],
                   train_timestamps=(None if ds.train_timestamps is None
                                     else ds.train_timestamps[~m]))
    if warm_test_fraction:
        warm = split_random(warm, warm_test_fraction, seed=seed)
    return ColdSplit(warm, sub(m), cold, np.flatnonzero(~is_cold).astype(np.int64), int(seed))


def evaluate_items(score_fn, train: CSR, test: CSR, items, ks=(20,),
                   metrics=("recall", "ndcg"), batch_size=1024) -> dict:
    """``hopkit.evaluate`` with the candidates restricted to ``items``: every
    user with a test interaction among ``items`` ranks those items only (by
    ``score_fn(users) -> [B, n_items]``), training items excluded."""
    import hopkit

    items = np.asarray(items, np.int64)

    def cols(M):
        return CSR.from_scipy(M.to_scipy()[:, items])

    tr, te = cols(train), cols(test)
    tr = CSR(tr.indptr, tr.indices, None, tr.shape)
    te = CSR(te.indptr, te.indices, None, te.shape)

    def fn(users):
        return np.ascontiguousarray(np.asarray(score_fn(users))[:, items], dtype=np.float32)

    return hopkit.evaluate(None, None, tr, te, ks=tuple(ks), metrics=tuple(metrics),
                           batch_size=batch_size, score_fn=fn)
