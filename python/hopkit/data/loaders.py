"""Interaction loaders: text files -> a users x items CSR with id maps.

Formats (``format=``):

* ``"lightgcn"``: one line per user, ``uid item item ...`` (the LightGCN /
  NGCF ``train.txt`` / ``test.txt`` files). Ids must be integers. A line with
  a user and no items is allowed (the user has no interactions).
* ``"csv"``: an edge list ``user, item[, rating][, timestamp]`` separated by
  commas, tabs or whitespace (``sep=None`` sniffs it from the first line),
  with or without a header line (``header=None`` detects one: a first line
  whose rating/timestamp fields are not numbers, or whose fields are known
  column names such as ``user_id``, ``item``, ``rating``). Ids may be any
  token (strings are kept as strings in the id maps).
* ``"movielens"``: ``ratings.dat`` (``user::item::rating::timestamp``) or
  ``u.data`` (tab separated, same columns); integer ids.
* ``"recbole"``: a RecBole ``.inter`` file, tab separated, with a typed
  header such as ``user_id:token  item_id:token  rating:float
  timestamp:float``; columns are found by name.

``"auto"`` picks by file name (``*.inter`` -> recbole, ``ratings.dat`` /
``u.data`` -> movielens, ``train.txt``-style files whose lines have a varying
number of fields -> lightgcn, else csv).

Rules shared by all formats:

* **Duplicates.** Equal (user, item) pairs are merged into one interaction.
  ``duplicates="last"`` (default) keeps the rating and timestamp of the last
  occurrence in file order, ``"first"`` the first, ``"error"`` raises with the
  file name and the line numbers of both occurrences.
* **Rating threshold.** With ``rating_threshold=t`` only interactions whose
  rating is >= t are kept (applied after merging duplicates); it needs a
  rating column.
* **Id maps.** Users and items are numbered in sorted order of their original
  ids (numbers sort numerically, tokens as strings); ``user_ids[u]`` /
  ``item_ids[i]`` give the original id of row u / column i. For the lightgcn
  format the ids are already dense 0..n-1 and the maps are the identity
  (``n_users`` = largest user id + 1 over train and test), exactly as the
  LightGCN code reads these files.
* **Unseen ids in a test file** (edge-list formats: a user or item that never
  occurs in the training file): ``unseen="skip"`` (default) drops the test
  interaction and counts it in ``Dataset.skipped``; ``unseen="error"`` raises
  with file name and line number.
* **Reading.** Regular files only; decoded strictly with ``encoding``
  (undecodable bytes are a DataError naming file:line); lines end at ``\\n``
  or ``\\r\\n`` only and whitespace-separated fields split on spaces and
  tabs only. Integer ids are ASCII digits with an optional ``-``, within
  int64. lightgcn ids at or beyond ``DENSE_ID_MARGIN + DENSE_IDS_PER_TOKEN *
  (ids in the files)`` are refused (``remap_ids=True`` numbers them densely).
* **Errors.** A missing path is a ``FileNotFoundError``; an empty file, a
  malformed line, a non-integer id where integers are required or a
  non-numeric rating/timestamp raise ``DataError`` (a ``ValueError``) naming
  the file and the 1-based line number.
"""

from __future__ import annotations

import codecs
import os
import re
import stat
from dataclasses import dataclass, field

import numpy as np

from ..csr import CSR

FORMATS = ("auto", "lightgcn", "csv", "movielens", "recbole")
_HEADER_WORDS = {"user", "item", "rating", "timestamp", "time", "userid", "itemid", "user_id",
                 "item_id", "movie", "movieid", "movie_id", "score", "count", "weight", "label",
                 "uid", "iid", "ts", "business_id"}


class DataError(ValueError):
    """A malformed or unusable data file (the message names file and line)."""


@dataclass
class Interactions:
    """Raw interactions before indexing: parallel arrays plus line numbers."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray | None
    timestamps: np.ndarray | None
    lines: np.ndarray  # 1-based line number of each interaction
    path: str
    n_users_hint: int = 0  # lightgcn: users listed with no items still count
    integer_ids: bool = True
    max_user_line: int = 0  # lightgcn: the line of the largest user id
    n_tokens: int = 0  # lightgcn: ids in the file (users and items)


@dataclass
class Dataset:
    """A users x items interaction dataset with id maps back to original ids.

    ``train`` / ``test`` are binary CSR matrices (values None, columns sorted
    per row, no duplicates). ``train_ratings`` / ``train_timestamps`` (or
    None) are aligned with ``train.indices``. ``skipped`` counts dropped
    test interactions by reason.
    """

    train: CSR
    test: CSR | None
    user_ids: np.ndarray
    item_ids: np.ndarray
    name: str = ""
    train_ratings: np.ndarray | None = None
    train_timestamps: np.ndarray | None = None
    skipped: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return self.train.shape[0]

    @property
    def n_items(self) -> int:
        return self.train.shape[1]

    def user_index(self, original_ids):
        """Rows of the given original user ids (KeyError for an unknown id)."""
        return _lookup(self.user_ids, original_ids, "user")

    def item_index(self, original_ids):
        return _lookup(self.item_ids, original_ids, "item")

    def summary(self) -> str:
        t = f", test {self.test.nnz} interactions" if self.test is not None else ""
        s = "".join(f", skipped {v} test interactions ({k})" for k, v in self.skipped.items() if v)
        return (f"{self.name or 'dataset'}: {self.n_users} users, {self.n_items} items, "
                f"train {self.train.nnz} interactions{t}{s}")


def _lookup(ids, query, what):
    ids = np.asarray(ids)
    q = np.atleast_1d(np.asarray(query))
    if ids.dtype.kind in "iu":
        try:
            q = q.astype(np.int64)
        except ValueError as e:
            raise KeyError(f"unknown {what} id(s) {query!r}: {what} ids are integers") from e
    else:
        q = q.astype(str)
    pos = np.searchsorted(ids, q) if _is_sorted(ids) else None
    if pos is None:
        order = np.argsort(ids, kind="stable")
        p = np.searchsorted(ids[order], q)
        p = np.minimum(p, len(ids) - 1) if len(ids) else p
        ok = len(ids) > 0 and (ids[order][p] == q)
        out = order[p]
    else:
        p = np.minimum(pos, max(len(ids) - 1, 0))
        ok = (ids[p] == q) if len(ids) else np.zeros(q.shape, bool)
        out = p
    ok = np.asarray(ok, dtype=bool)
    if not ok.all():
        bad = q[~ok][:5].tolist()
        raise KeyError(f"unknown {what} id(s) {bad}")
    return out.astype(np.int64)


def _is_sorted(a):
    return len(a) < 2 or bool(np.all(a[1:] >= a[:-1]))


# ---------------------------------------------------------------------------- reading
_INT = re.compile(r"-?[0-9]+")  # ASCII digits only: no "1_000", no "+5", no other scripts
_INT64 = 2**63
_FIELD_SEP = re.compile(r"[ \t]+")  # whitespace-separated formats: spaces and tabs only
_DIGITS_LINE = re.compile(r"[0-9 \t]*")


def _regular_file(path, what="data file"):
    """FileNotFoundError / DataError unless ``path`` is a regular file (or a
    directory, when ``what`` allows one)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    if os.path.isdir(path):
        raise DataError(f"{path}: expected a file, got a directory")
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise DataError(f"{path}: not a regular file (a FIFO, device or socket); {what}s must "
                        "be regular files")


def _read_lines(path, encoding="utf-8"):
    """The lines of a regular file, split on \\n or \\r\\n only (not on the other
    characters ``str.splitlines`` treats as line breaks, which may occur in ids)."""
    _regular_file(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}:{line}: byte {data[e.start:e.start + 1].hex()!r} is not valid "
                        f"{encoding} ({e.reason}); pass the file's encoding, e.g. "
                        "encoding='latin-1' (CLI: --encoding latin-1)") from None
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    if "\r" in text.replace("\r\n", ""):  # would fuse lines into wrong ids silently
        n = next(n for n, line in enumerate(lines, 1) if "\r" in line)
        raise DataError(f"{path}:{n}: a carriage return (\\r) not followed by \\n; lines must "
                        "end with \\n or \\r\\n (convert old Mac line ends first)")
    if not any(line.strip(" \t") for line in lines):
        raise DataError(f"{path}: the file is empty (no interactions)")
    return lines


def _parse_int(tok):
    """The integer written as ASCII digits with an optional '-', or None."""
    return int(tok) if _INT.fullmatch(tok) else None


def _int(tok, path, lineno, what):
    v = _parse_int(tok)
    if v is None:
        raise DataError(f"{path}:{lineno}: {what} must be an integer, got {tok!r}")
    if not -_INT64 <= v < _INT64:
        raise DataError(f"{path}:{lineno}: {what} {tok} does not fit in a 64-bit integer")
    return v


def _float(tok, path, lineno, what):
    try:
        v = float(tok)
    except ValueError:
        raise DataError(f"{path}:{lineno}: {what} must be a number, got {tok!r}") from None
    if not np.isfinite(v):
        raise DataError(f"{path}:{lineno}: {what} must be finite, got {tok!r}")
    return v


def read_lightgcn(path, encoding="utf-8") -> Interactions:
    """``uid item item ...`` per line (integers)."""
    users, items, lines = [], [], []
    max_user, max_user_line, n_tokens = -1, 0, 0
    for n, line in enumerate(_read_lines(path, encoding), 1):
        # fast path for the usual line of ASCII digits and separators; else (and
        # for an id past int64) the per-token check that names the bad token
        digits = _DIGITS_LINE.fullmatch(line) is not None
        toks = line.split() if digits else _fields(line)
        if not toks:
            continue
        vals = list(map(int, toks)) if digits else None
        if vals is None or max(vals) >= _INT64:
            vals = [_int(t, path, n, "lightgcn id") for t in toks]
        if min(vals) < 0:
            raise DataError(f"{path}:{n}: ids must be >= 0, got {min(vals)}")
        u = vals[0]
        if u > max_user:
            max_user, max_user_line = u, n
        n_tokens += len(vals)
        users.extend([u] * (len(vals) - 1))
        items.extend(vals[1:])
        lines.extend([n] * (len(vals) - 1))
    return Interactions(np.asarray(users, np.int64), np.asarray(items, np.int64), None, None,
                        np.asarray(lines, np.int64), path, n_users_hint=max_user + 1,
                        max_user_line=max_user_line, n_tokens=n_tokens)


def _fields(line):
    """Whitespace-separated fields (spaces and tabs)."""
    return [t for t in _FIELD_SEP.split(line) if t]


def _is_num(t):
    try:
        float(t)
        return True
    except ValueError:
        return False


def _sniff_sep(line):
    if "::" in line:
        return "::"
    if "\t" in line:
        return "\t"
    if "," in line:
        return ","
    return None  # whitespace


def _split(line, sep):
    return _fields(line) if sep is None else [t.strip(" \t") for t in line.split(sep)]


def read_edges(path, sep=None, header=None, columns=None, integer_ids=False,
               fmt="csv", encoding="utf-8", raw=None) -> Interactions:
    """An edge list ``user, item[, rating][, timestamp]``.

    ``columns`` maps "user"/"item"/"rating"/"timestamp" to field positions
    (default 0, 1, 2, 3 when present). ``integer_ids`` requires integer ids.
    ``raw``: the file's lines when the caller has read them already.
    """
    raw = _read_lines(path, encoding) if raw is None else raw
    first_i = _first_line(raw)
    if sep is None:
        sep = _sniff_sep(raw[first_i])
    first = _split(raw[first_i], sep)
    if header is None:
        words = {t.lower().split(":")[0] for t in first}
        header = bool(words & _HEADER_WORDS) or (len(first) > 2 and not all(
            _is_num(t) for t in first[2:]))
    cols = dict(columns or {})
    start = first_i
    if header:
        names = [t.lower().split(":")[0] for t in first]
        if not cols:
            cols = _columns_from_names(names, path)
        start = first_i + 1
    width = len(first)
    if not cols:
        cols = {"user": 0, "item": 1}
        if width > 2:
            cols["rating"] = 2
        if width > 3:
            cols["timestamp"] = 3
    need = max(cols.values()) + 1
    users, items, ratings, times, lines = [], [], [], [], []
    ri, ti = cols.get("rating"), cols.get("timestamp")
    ui, ii = cols["user"], cols["item"]
    for n in range(start, len(raw)):
        line = raw[n]
        shown = line.strip(" \t")[:80]
        if not shown:
            continue
        toks = _split(line, sep)
        if len(toks) < need:
            raise DataError(f"{path}:{n + 1}: expected at least {need} fields "
                            f"(user, item{', rating' if ri is not None else ''}"
                            f"{', timestamp' if ti is not None else ''}), got {len(toks)}: "
                            f"{shown!r}")
        u, i = toks[ui], toks[ii]
        if not u or not i:
            raise DataError(f"{path}:{n + 1}: empty user or item id: {shown!r}")
        if integer_ids:
            u, i = _int(u, path, n + 1, "user id"), _int(i, path, n + 1, "item id")
        users.append(u)
        items.append(i)
        if ri is not None:
            ratings.append(_float(toks[ri], path, n + 1, "rating"))
        if ti is not None:
            times.append(_float(toks[ti], path, n + 1, "timestamp"))
        lines.append(n + 1)
    if not users:
        raise DataError(f"{path}: the file has a header but no interactions")
    users_a, items_a = _ids_array(users), _ids_array(items)
    return Interactions(users_a, items_a,
                        np.asarray(ratings, np.float64) if ri is not None else None,
                        np.asarray(times, np.float64) if ti is not None else None,
                        np.asarray(lines, np.int64), path,
                        integer_ids=users_a.dtype.kind == "i" and items_a.dtype.kind == "i")


def _ids_array(vals):
    """int64 ids when every id is a canonical integer that fits, else strings."""
    if vals and isinstance(vals[0], int):
        return np.asarray(vals, np.int64)
    ints = [int(v) if _CANONICAL_INT.fullmatch(v) else None for v in vals]
    if all(v is not None and -_INT64 <= v < _INT64 for v in ints):
        return np.asarray(ints, np.int64)
    return np.asarray(vals, dtype=str)


_CANONICAL_INT = re.compile(r"-?(0|[1-9][0-9]*)")


def _first_line(raw):
    """Index of the first non-blank line (_read_lines ensures there is one)."""
    return next(i for i, line in enumerate(raw) if line.strip(" \t"))


def _columns_from_names(names, path):
    cols = {}
    for k, name in enumerate(names):
        if "user" in name or name in ("uid",):
            cols.setdefault("user", k)
        elif "item" in name or "movie" in name or name in ("iid", "business_id"):
            cols.setdefault("item", k)
        elif name in ("rating", "score", "weight", "count", "label"):
            cols.setdefault("rating", k)
        elif "time" in name or name == "ts":
            cols.setdefault("timestamp", k)
    if "user" not in cols or "item" not in cols:
        if len(names) >= 2 and "user" not in cols and "item" not in cols:
            cols = {"user": 0, "item": 1}
            if len(names) > 2:
                cols["rating"] = 2
            if len(names) > 3:
                cols["timestamp"] = 3
        else:
            raise DataError(f"{path}:1: header {names} names no user and item columns")
    return cols


def read_movielens(path, encoding="utf-8") -> Interactions:
    """``ratings.dat`` (``::``) or ``u.data`` (tab): user item rating timestamp."""
    sep = "::" if path.endswith(".dat") else None
    return read_edges(path, sep=sep, header=False, integer_ids=True, fmt="movielens",
                      columns={"user": 0, "item": 1, "rating": 2, "timestamp": 3},
                      encoding=encoding)


def read_recbole(path, encoding="utf-8") -> Interactions:
    """A RecBole ``.inter`` file: typed header ``field:type`` (tab separated)."""
    raw = _read_lines(path, encoding)
    first = _first_line(raw)
    head = raw[first].split("\t")
    if not all(":" in h for h in head):
        raise DataError(f"{path}:{first + 1}: a RecBole .inter file needs a typed header like "
                        f"'user_id:token<TAB>item_id:token', got {raw[first][:80]!r}")
    names = [h.split(":")[0].strip(" \t").lower() for h in head]
    cols = _columns_from_names(names, path)
    return read_edges(path, sep="\t", header=True, columns=cols, fmt="recbole", raw=raw)


def detect_format(path, encoding="utf-8") -> str:
    base = os.path.basename(path).lower()
    if base.endswith(".inter"):
        return "recbole"
    if base in ("ratings.dat", "u.data") or base.endswith(".dat"):
        return "movielens"
    lines = [_fields(line) for line in _read_lines(path, encoding)[:50] if line.strip(" \t")]
    if any("," in t or "::" in t for toks in lines for t in toks):
        return "csv"
    widths = {len(toks) for toks in lines}
    all_int = all(_parse_int(t) is not None for toks in lines for t in toks)
    # edge lists have a constant width of 2..4; lightgcn lines (all integers) vary
    if all_int and (len(widths) > 1 or max(widths) > 4):
        return "lightgcn"
    if all_int and widths == {2} and base.startswith(("train", "test")) and base.endswith(".txt"):
        return "lightgcn"
    return "csv"


def read(path, format="auto", encoding="utf-8", **kw) -> Interactions:
    if format not in FORMATS:
        raise ValueError(f"load: format must be one of {FORMATS}, got {format!r}")
    if format == "auto":
        format = detect_format(path, encoding)
    if format == "lightgcn":
        return read_lightgcn(path, encoding)
    if format == "movielens":
        return read_movielens(path, encoding)
    if format == "recbole":
        return read_recbole(path, encoding)
    return read_edges(path, encoding=encoding, **kw)


# ---------------------------------------------------------------------------- indexing
def _dedup(u, i, inter: Interactions, duplicates):
    """Indices of the kept occurrence of each (u, i) pair, in file order."""
    n = len(u)
    key = u.astype(np.int64) * (int(i.max()) + 1 if n else 1) + i
    order = np.argsort(key, kind="stable")
    ks = key[order]
    newgrp = np.r_[True, ks[1:] != ks[:-1]] if n else np.zeros(0, bool)
    if duplicates == "error" and not newgrp.all():
        d = int(np.flatnonzero(~newgrp)[0])
        a, b = inter.lines[order[d - 1]], inter.lines[order[d]]
        raise DataError(f"{inter.path}:{b}: duplicate interaction (same user and item as line "
                        f"{a}); pass duplicates='first' or 'last' to merge")
    if duplicates == "first":
        keep = order[newgrp]
    else:
        last = np.r_[newgrp[1:], True] if n else newgrp
        keep = order[last]
    return np.sort(keep)


def _index(ids, extra=None):
    """Sorted unique ids (the id map)."""
    return np.unique(ids if extra is None else np.concatenate([ids, extra]))


def build(train: Interactions, test: Interactions | None = None, rating_threshold=None,
          duplicates="last", unseen="skip", identity_ids=False, name="") -> Dataset:
    """Index raw interactions into a :class:`Dataset` (see the module docstring)."""
    if duplicates not in ("first", "last", "error"):
        raise ValueError(f"load: duplicates must be 'first', 'last' or 'error', got "
                         f"{duplicates!r}")
    if unseen not in ("skip", "error"):
        raise ValueError(f"load: unseen must be 'skip' or 'error', got {unseen!r}")
    if rating_threshold is not None and train.ratings is None:
        raise DataError(f"{train.path}: rating_threshold={rating_threshold} needs a rating "
                        "column, the file has none")
    if identity_ids:
        _check_dense_ids([train] + ([test] if test is not None else []))
        n_u = max(train.n_users_hint, int(train.users.max(initial=-1)) + 1)
        n_i = int(train.items.max(initial=-1)) + 1
        if test is not None:
            n_u = max(n_u, test.n_users_hint, int(test.users.max(initial=-1)) + 1)
            n_i = max(n_i, int(test.items.max(initial=-1)) + 1)
        user_ids, item_ids = np.arange(n_u, dtype=np.int64), np.arange(n_i, dtype=np.int64)
    else:
        if test is not None:
            _harmonise(train, test)
        user_ids, item_ids = _index(train.users), _index(train.items)

    def index(inter: Interactions, is_test):
        skipped = {}
        if identity_ids:
            u, i = inter.users, inter.items
            ok = np.ones(len(u), bool)
        else:
            u = np.searchsorted(user_ids, inter.users)
            i = np.searchsorted(item_ids, inter.items)
            ok_u = (u < len(user_ids)) & (user_ids[np.minimum(u, len(user_ids) - 1)]
                                           == inter.users)
            ok_i = (i < len(item_ids)) & (item_ids[np.minimum(i, len(item_ids) - 1)]
                                           == inter.items)
            ok = ok_u & ok_i
            if not ok.all():
                if unseen == "error":
                    b = int(np.flatnonzero(~ok)[0])
                    what = "user" if not ok_u[b] else "item"
                    val = (inter.users[b] if what == "user" else inter.items[b]).tolist()
                    raise DataError(f"{inter.path}:{inter.lines[b]}: {what} {val!r} does not "
                                    "occur in the training data (pass unseen='skip' to drop "
                                    "such test interactions)")
                skipped = {"unseen user": int((~ok_u).sum()),
                           "unseen item": int((ok_u & ~ok_i).sum())}
        sel = np.flatnonzero(ok)
        u, i = u[sel].astype(np.int64), i[sel].astype(np.int64)
        keep = _dedup(u, i, _subset(inter, sel), duplicates)
        r = inter.ratings[sel][keep] if inter.ratings is not None else None
        t = inter.timestamps[sel][keep] if inter.timestamps is not None else None
        u, i = u[keep], i[keep]
        if rating_threshold is not None and r is not None:
            m = r >= rating_threshold
            skipped["below rating threshold"] = int((~m).sum())
            u, i = u[m], i[m]
            r = r[m]
            t = t[m] if t is not None else None
        return u, i, r, t, skipped

    u, i, r, t, _ = index(train, False)
    shape = (len(user_ids), len(item_ids))
    R, r, t = _to_csr(u, i, r, t, shape)
    ds = Dataset(R, None, user_ids, item_ids, name=name, train_ratings=r, train_timestamps=t)
    if test is not None:
        tu, ti, _, _, skipped = index(test, True)
        ds.test = _to_csr(tu, ti, None, None, shape)[0]
        ds.skipped = {k: v for k, v in skipped.items() if v}
    if ds.train.nnz == 0:
        raise DataError(f"{train.path}: no training interactions left"
                        + (f" after rating_threshold={rating_threshold}"
                           if rating_threshold is not None else ""))
    return ds


# identity id maps (lightgcn) allocate per id up to the largest: allow ids up to
# this many plus a margin per id the files hold, refuse the rest (a 16-byte file
# naming item 10^9 would otherwise ask for gigabytes)
DENSE_ID_MARGIN = 2**20
DENSE_IDS_PER_TOKEN = 16


def _check_dense_ids(inters):
    """DataError for an id far beyond the number of ids in the files."""
    n_tokens = sum(x.n_tokens for x in inters)
    limit = DENSE_ID_MARGIN + DENSE_IDS_PER_TOKEN * n_tokens
    for x in inters:
        i = int(np.argmax(x.items)) if len(x.items) else None
        for what, top, line in (("user", x.n_users_hint - 1, x.max_user_line),
                                ("item", None if i is None else int(x.items[i]),
                                 None if i is None else int(x.lines[i]))):
            if top is not None and top >= limit:
                raise DataError(
                    f"{x.path}:{line}: {what} id {top} is far beyond the {n_tokens} ids in the "
                    f"files (the limit is {limit}): the lightgcn format uses ids as row and "
                    f"column numbers, so this would make {top + 1} {what}s; pass "
                    "remap_ids=True (CLI: --remap-ids) to number the ids that occur densely")


def _harmonise(a: Interactions, b: Interactions):
    for name in ("users", "items"):
        x, y = getattr(a, name), getattr(b, name)
        if x.dtype.kind != y.dtype.kind:
            setattr(a, name, x.astype(str))
            setattr(b, name, y.astype(str))


def _subset(inter: Interactions, sel):
    return Interactions(inter.users[sel], inter.items[sel], None, None, inter.lines[sel],
                        inter.path)


def _to_csr(u, i, r, t, shape):
    """Binary CSR (columns sorted per row) plus ratings/timestamps in CSR order."""
    order = np.lexsort((i, u))
    u, i = u[order], i[order]
    indptr = np.zeros(shape[0] + 1, np.int64)
    np.cumsum(np.bincount(u, minlength=shape[0]), out=indptr[1:])
    idx_dtype = np.int32 if max(shape) < 2**31 else np.int64
    R = CSR(indptr, i.astype(idx_dtype), None, shape)
    return R, (r[order] if r is not None else None), (t[order] if t is not None else None)


# ---------------------------------------------------------------------------- public
_PAIRS = (("train.txt", "test.txt"), ("data1.txt", "test1.txt"), ("train.csv", "test.csv"),
          ("train.tsv", "test.tsv"), ("train.inter", "test.inter"))


def find_files(path):
    """(train_file, test_file or None) for a file or a dataset directory."""
    if not os.path.isdir(path):
        _regular_file(path, "data path")
        return path, None
    for a, b in _PAIRS:
        if os.path.isfile(os.path.join(path, a)):
            t = os.path.join(path, b)
            return os.path.join(path, a), (t if os.path.isfile(t) else None)
    for name in ("ratings.dat", "u.data"):
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name), None
    inters = sorted(f for f in os.listdir(path) if f.endswith(".inter"))
    if len(inters) == 1:
        return os.path.join(path, inters[0]), None
    raise DataError(f"{path}: no interaction file found (expected train.txt [+ test.txt], "
                    "data1.txt + test1.txt, ratings.dat, u.data or one *.inter file)")


def load(path, test=None, format="auto", rating_threshold=None, duplicates="last",
         unseen="skip", sep=None, header=None, encoding="utf-8", remap_ids=False) -> Dataset:
    """Load interactions from ``path`` (a file or a dataset directory).

    A directory holding ``train.txt`` + ``test.txt`` (LightGCN), ``data1.txt``
    + ``test1.txt`` (LightGCN's LastFM), ``train.csv``/``test.csv``, or a
    single ``ratings.dat`` / ``u.data`` / ``*.inter`` file is recognised;
    ``test=`` names a test file explicitly. Without a test file
    ``Dataset.test`` is None: split with :func:`split_random` or
    :func:`split_leave_last`. See the module docstring for formats, duplicate
    handling, thresholds and errors.

    ``encoding`` decodes the files (undecodable bytes are a DataError naming
    file and line). ``remap_ids=True`` numbers lightgcn-format ids densely
    (sorted, like the edge-list formats) instead of using them as row and
    column numbers, which is refused for ids far beyond the number of ids in
    the files.
    """
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise ValueError(f"load: unknown encoding {encoding!r}") from None
    train_path, test_path = find_files(path)
    if test is not None:
        _regular_file(test, "test file")
        test_path = test
    fmt = detect_format(train_path, encoding) if format == "auto" else format
    kw = {"sep": sep, "header": header} if fmt == "csv" else {}
    tr = read(train_path, fmt, encoding, **kw)
    te = read(test_path, fmt, encoding, **kw) if test_path else None
    name = os.path.basename(os.path.normpath(path))
    return build(tr, te, rating_threshold=rating_threshold, duplicates=duplicates,
                 unseen=unseen, identity_ids=(fmt == "lightgcn" and not remap_ids), name=name)


def from_csr(R: CSR, test: CSR | None = None, name="") -> Dataset:
    """Wrap an in-memory users x items CSR (identity id maps)."""
    return Dataset(R, test, np.arange(R.shape[0]), np.arange(R.shape[1]), name=name)


# ---------------------------------------------------------------------------- splits
def _rows_of(R: CSR):
    return R.row_ids()


def _split_mask(ds_or_R, test_mask):
    ds = ds_or_R if isinstance(ds_or_R, Dataset) else from_csr(ds_or_R)
    R = ds.train
    rows = _rows_of(R)
    cols = np.asarray(R.indices, np.int64)
    tr = ~test_mask

    def sub(m):
        return _to_csr(rows[m], cols[m], None, None, R.shape)[0]

    out = Dataset(sub(tr), sub(test_mask), ds.user_ids, ds.item_ids, name=ds.name,
                  train_ratings=ds.train_ratings[tr] if ds.train_ratings is not None else None,
                  train_timestamps=(ds.train_timestamps[tr] if ds.train_timestamps is not None
                                    else None))
    return out


def split_random(data, test_fraction=0.2, seed=0, min_train=1) -> Dataset:
    """Per-user random split of the training interactions of ``data`` (a
    Dataset or a CSR): each user with n interactions keeps
    ``max(min_train, n - round(test_fraction * n))`` in train (users with
    n <= min_train keep all); the rest go to the returned ``test``.
    Reproducible for a fixed ``seed``."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"split_random: test_fraction must lie in [0, 1), got {test_fraction}")
    ds = data if isinstance(data, Dataset) else from_csr(data)
    R = ds.train
    deg = R.row_degree()
    rng = np.random.default_rng(seed)
    n_test = np.minimum(np.round(test_fraction * deg).astype(np.int64),
                        np.maximum(deg - min_train, 0))
    rank = _rank_in_row(R, rng.random(R.nnz))
    return _split_mask(ds, rank < np.repeat(n_test, deg))


def split_leave_last(data, n=1, min_train=1) -> Dataset:
    """Leave-last split: each user's ``n`` latest interactions (by timestamp,
    ties by file order) go to test, as long as ``min_train`` remain in train.
    Needs timestamps (a Dataset loaded with a timestamp column)."""
    if not isinstance(data, Dataset) or data.train_timestamps is None:
        raise ValueError("split_leave_last: needs a Dataset with timestamps (load a file with a "
                         "timestamp column), got none")
    R = data.train
    deg = R.row_degree()
    n_test = np.minimum(int(n), np.maximum(deg - min_train, 0))
    # rank 0 = latest: sort key descending timestamp within the row
    rank = _rank_in_row(R, -data.train_timestamps)
    return _split_mask(data, rank < np.repeat(n_test, deg))


def _rank_in_row(R: CSR, key):
    """Rank (0 = smallest key) of each nonzero within its row (stable)."""
    rows = _rows_of(R)
    order = np.lexsort((np.arange(R.nnz), key, rows))
    rank = np.empty(R.nnz, np.int64)
    rank[order] = np.arange(R.nnz) - np.repeat(R.indptr[:-1], R.row_degree())
    return rank
