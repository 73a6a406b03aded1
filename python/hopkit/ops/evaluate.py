"""evaluate: full-ranking evaluation of a recommender (top-k with the training
items excluded, then ranking metrics per user)."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from ..csr import as_csr
from ._common import check_device as _check_device
from ._common import to_numpy as _to_numpy
from .topk import ItemIndex, _check_ids, _dense, sorted_rows, topk, topk_scores

METRICS = ("recall", "ndcg", "precision", "hit_rate", "map")
# beyond-accuracy metrics, from the same top-k lists (docs/recommender.md,
# "Beyond-accuracy metrics"); "exposure" needs ``groups``
BEYOND = ("coverage", "avg_popularity", "gini", "novelty", "exposure")
ALL_METRICS = METRICS + BEYOND
# of those, the ones defined per user (the others describe all lists together)
PER_USER_BEYOND = ("avg_popularity", "novelty", "exposure")


def _hits(test, users, idx, n_items):
    """hits[u, r] = idx[u, r] is a test item of users[u] (padding -1 never)."""
    indptr, indices = sorted_rows(test)
    rows = np.repeat(np.arange(test.n_rows, dtype=np.int64), np.diff(indptr))
    keys = rows * n_items + indices  # sorted: rows sorted, each row sorted
    q = users[:, None] * n_items + idx
    pos = np.searchsorted(keys, q)
    found = np.zeros(q.shape, dtype=bool)
    inside = pos < len(keys)
    found[inside] = keys[pos[inside]] == q[inside]
    return found & (idx >= 0)


def ranking_metrics(hits, n_test, ks, metrics):
    """Per-user metrics {"name@k": float64 [n]} from a hit matrix [n, max(ks)]
    (row u: whether the item at rank r is a test item) and |test| per user."""
    H = hits.astype(np.float64)
    n_test = np.asarray(n_test, dtype=np.float64)
    out = {}
    for k in ks:
        h = H[:, :k]
        nh = h.sum(axis=1)
        ideal = np.minimum(k, n_test)
        for m in metrics:
            if m == "recall":
                v = nh / n_test
            elif m == "precision":
                v = nh / k
            elif m == "hit_rate":
                v = (nh > 0).astype(np.float64)
            elif m == "ndcg":
                disc = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
                idcg = np.concatenate([[0.0], np.cumsum(disc)])[ideal.astype(np.int64)]
                v = (h @ disc) / idcg
            else:  # map
                prec = np.cumsum(h, axis=1) / np.arange(1, k + 1, dtype=np.float64)
                v = (prec * h).sum(axis=1) / ideal
            out[f"{m}@{k}"] = v
    return out


def _check_groups(op, groups, n_items):
    """groups -> (int64 [n_items], n_groups), or (None, 0)."""
    if groups is None:
        return None, 0
    g = _to_numpy(groups)
    if not isinstance(g, np.ndarray):
        g = np.asarray(g)
    if g.dtype.kind not in "iu":
        raise TypeError(f"{op}: groups must be an integer array (int32/int64), got dtype "
                        f"{g.dtype}")
    if g.shape != (n_items,):
        raise ValueError(f"{op}: groups must have shape ({n_items},) (one group id per "
                         f"item), got {g.shape}")
    if n_items and g.min() < 0:
        b = int(np.flatnonzero(g < 0)[0])
        raise ValueError(f"{op}: groups must be non-negative group ids; groups[{b}] = "
                         f"{int(g[b])}")
    g = g.astype(np.int64)
    return g, (int(g.max()) + 1 if n_items else 0)


def _item_popularity(train, n_items):
    """Training users per item (duplicates in a row counted once), int64 [n_items]."""
    _, indices = sorted_rows(train)
    return np.bincount(np.asarray(indices, dtype=np.int64), minlength=n_items)[:n_items]


def popularity_groups(train, n_groups=10):
    """Popularity groups for ``evaluate(groups=...)``: items ranked by their
    number of training users (ties: smaller item id first) and cut into
    ``n_groups`` groups of equal size (sizes differ by at most one), group 0
    the least popular, group ``n_groups - 1`` the most. Returns int64
    [n_items]."""
    op = "popularity_groups"
    train = as_csr(train, op, "train")
    if isinstance(n_groups, bool) or not isinstance(n_groups, numbers.Integral) or n_groups < 1:
        raise ValueError(f"{op}: n_groups must be a positive integer, got {n_groups!r}")
    n = train.n_cols
    order = np.argsort(_item_popularity(train, n), kind="stable")
    g = np.empty(n, dtype=np.int64)
    g[order] = (np.arange(n, dtype=np.int64) * int(n_groups)) // max(n, 1)
    return g


class _Beyond:
    """Beyond-accuracy metrics accumulated block by block from the top-k
    lists: per-item counts per cut-off (coverage, gini, exposure) and
    per-user values (avg_popularity, novelty, exposure shares)."""

    def __init__(self, metrics, ks, n, popularity, n_users, groups, n_groups):
        self.metrics, self.ks, self.n_groups = metrics, ks, n_groups
        self.n_items = len(popularity)
        self.pop = popularity.astype(np.float64)
        # self-information of an item: -log2(share of training users who had it)
        self.info = -np.log2(np.maximum(popularity, 1) / max(n_users, 1))
        self.groups = groups
        self.counts = {k: np.zeros(self.n_items, dtype=np.int64) for k in ks}
        self.per = {}
        for k in ks:
            for m in ("avg_popularity", "novelty"):
                if m in metrics:
                    self.per[f"{m}@{k}"] = np.zeros(n)
            if "exposure" in metrics:
                self.per[f"exposure@{k}"] = np.zeros((n, n_groups))

    def add(self, b0, idx):
        idx = np.asarray(idx, dtype=np.int64)
        nb = idx.shape[0]
        for k in self.ks:
            ik = idx[:, :k]
            valid = ik >= 0
            safe = np.where(valid, ik, 0)
            items = ik[valid]
            self.counts[k] += np.bincount(items, minlength=self.n_items)
            with np.errstate(invalid="ignore", divide="ignore"):
                length = valid.sum(axis=1).astype(np.float64)
                if "avg_popularity" in self.metrics:
                    self.per[f"avg_popularity@{k}"][b0:b0 + nb] = \
                        np.where(valid, self.pop[safe], 0.0).sum(axis=1) / length
                if "novelty" in self.metrics:
                    self.per[f"novelty@{k}"][b0:b0 + nb] = \
                        np.where(valid, self.info[safe], 0.0).sum(axis=1) / length
                if "exposure" in self.metrics:
                    rows = np.repeat(np.arange(nb, dtype=np.int64), valid.sum(axis=1))
                    c = np.bincount(rows * self.n_groups + self.groups[items],
                                    minlength=nb * self.n_groups).reshape(nb, self.n_groups)
                    self.per[f"exposure@{k}"][b0:b0 + nb] = c / length[:, None]

    def result(self):
        means, per = {}, {}
        n_items = self.n_items
        for k in self.ks:
            c = self.counts[k]
            total = int(c.sum())
            for m in self.metrics:
                name = f"{m}@{k}"
                if m == "coverage":
                    means[name] = float((c > 0).sum() / n_items) if total else float("nan")
                elif m == "gini":
                    if not total:
                        means[name] = float("nan")
                        continue
                    cs = np.sort(c).astype(np.float64)
                    j = np.arange(1, n_items + 1, dtype=np.float64)
                    means[name] = float(((2 * j - n_items - 1) * cs).sum() / (n_items * total))
                elif m == "exposure":
                    gc = np.bincount(self.groups, weights=c.astype(np.float64),
                                     minlength=self.n_groups)
                    means[name] = gc / total if total else np.full(self.n_groups, np.nan)
                    per[name] = self.per[name]
                else:  # per-user means over users with at least one recommended item
                    v = self.per[name]
                    ok = ~np.isnan(v)
                    means[name] = float(v[ok].mean()) if ok.any() else float("nan")
                    per[name] = v
        return means, per


def evaluate(user_emb, item_emb, train, test, ks=(20,), metrics=METRICS, users=None,
             batch_size=None, return_per_user=False, *, score_fn=None, groups=None,
             backend=None):
    """Full-ranking evaluation: for every user with test items, the top
    ``max(ks)`` items by inner product over all items except the user's
    training items (``hopkit.topk`` with ``exclude=train``), then per-user
    metrics averaged over those users.

    Parameters
    ----------
    user_emb : [n_users, d], item_emb : [n_items, d] (or a hopkit.ItemIndex),
        float32/float64, NumPy or torch.
    train, test : CSR [n_users, n_items] (hopkit / scipy / torch sparse):
        items seen in training (never ranked) and held-out items.
    ks : cut-offs, e.g. ``(20,)`` or ``(10, 20, 50)``.
    metrics : any of ``"recall", "ndcg", "precision", "hit_rate", "map"``
        (accuracy) and ``"coverage", "avg_popularity", "gini", "novelty",
        "exposure"`` (beyond accuracy, below). The default is the five
        accuracy metrics; ``groups`` adds ``"exposure"``.
    users : optional user ids to evaluate (default all); users without test
        items are skipped either way.
    batch_size : users per topk call (default: all at once; topk never holds
        a users x items score matrix, so this only bounds the [batch, k] lists).
    return_per_user : also return ``{"users": ids, "recall@20": [n], ...}``:
        every metric that is defined per user (the accuracy metrics,
        avg_popularity, novelty; exposure as [n, n_groups]), for
        ``hopkit.compare``. coverage and gini describe all lists together
        and have no per-user value.
    score_fn : for models whose scores are not one inner product: a callable
        taking an int64 array of user ids [B] and returning their scores
        against every item, [B, n_items] (NumPy or CPU tensor); user_emb and
        item_emb are then None and the ranking uses ``hopkit.topk_scores``
        (same selection and exclusion as topk). batch_size then defaults to
        ~2^26 / n_items users, so one score block stays near 256 MB.
    groups : optional int array [n_items] of non-negative group ids (an
        attribute, a popularity decile: ``hopkit.popularity_groups``); adds
        ``"exposure@k"``, the share of all recommended slots that go to each
        group, a float64 array [max(groups) + 1].

    Definitions, for a user with test set T and ranked list r_1..r_k (hit_i =
    1 when r_i is in T):

    * recall@k = hits / |T|; precision@k = hits / k; hit_rate@k = 1 if any hit;
    * ndcg@k = DCG / IDCG with binary relevance, DCG = sum_i hit_i / log2(i + 1)
      (i = 1-based rank), IDCG the DCG of min(k, |T|) hits at the top;
    * map@k = (sum_i hit_i * precision@i) / min(k, |T|) (average precision
      truncated at k, normalised by the most hits possible).

    Beyond accuracy (pop_i = the number of training users of item i, n_items
    the number of columns, L_u the user's list cut at k, padding -1 left out):

    * coverage@k = |union of L_u| / n_items;
    * avg_popularity@k = mean over users of mean_{i in L_u} pop_i (RecBole's
      AveragePopularity);
    * gini@k = Gini index of c_i, the number of lists that hold item i (every
      item, unrecommended ones with c_i = 0): sum_j (2j - n_items - 1) c_(j) /
      (n_items sum c), c sorted ascending, j 1-based (RecBole's GiniIndex);
      0 = equal exposure, 1 - 1/n_items = one item takes every slot;
    * novelty@k = mean over users of mean_{i in L_u} -log2(max(pop_i, 1) /
      n_users) (self-information of the share of training users who had
      the item, Zhou et al. 2010; an item nobody had counts as one user's);
    * exposure@k[g] = (slots holding an item of group g) / (all slots).

    Returns ``{"recall@20": mean, ...}`` (float; exposure an array), and with
    ``return_per_user`` a second dict of per-user float64 arrays plus
    ``"users"``. With no user to evaluate every mean is NaN.
    """
    op = "evaluate"
    train = as_csr(train, op, "train")
    test = as_csr(test, op, "test")
    if score_fn is not None:
        if user_emb is not None or item_emb is not None:
            raise ValueError(f"{op}: pass either score_fn or user_emb and item_emb, not both")
        if not callable(score_fn):
            raise TypeError(f"{op}: score_fn must be callable, got {type(score_fn).__name__}")
        n_users, n_items = train.n_rows, max(train.n_cols, test.n_cols)
    else:
        _check_device(op, user_emb=user_emb,
                      item_emb=None if isinstance(item_emb, ItemIndex) else item_emb)
        Ue = _dense(op, "user_emb", user_emb)
        index = item_emb if isinstance(item_emb, ItemIndex) else ItemIndex(item_emb)
        n_users, n_items = Ue.shape[0], index.shape[0]
    for name, A in (("train", train), ("test", test)):
        if A.n_rows != n_users:
            raise ValueError(f"{op}: {name} must have one row per user ({n_users}, "
                             f"user_emb.shape[0]), got {A.n_rows}")
        _check_ids(op, name, A, n_items)
    if isinstance(ks, numbers.Integral):
        ks = (ks,)
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1
                     for k in ks):
        raise ValueError(f"{op}: ks must be positive integers, got {ks}")
    ks = tuple(int(k) for k in ks)
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    bad = [m for m in metrics if not isinstance(m, str) or m not in ALL_METRICS]
    if bad or not metrics:
        raise ValueError(f"{op}: metrics must be among {ALL_METRICS}, got {metrics} "
                         f"(unknown: {tuple(bad)})")
    groups, n_groups = _check_groups(op, groups, n_items)
    if groups is not None and "exposure" not in metrics:
        metrics = metrics + ("exposure",)
    if "exposure" in metrics and groups is None:
        raise ValueError(f"{op}: metric 'exposure' needs groups (an int array [n_items] of "
                         f"group ids), got groups=None")
    accuracy = tuple(m for m in metrics if m in METRICS)
    beyond = tuple(m for m in metrics if m in BEYOND)
    if users is None:
        users = np.arange(n_users, dtype=np.int64)
    else:
        users = np.asarray(_to_numpy(users))
        if users.ndim != 1 or users.dtype.kind not in "iu":
            raise ValueError(f"{op}: users must be a 1-D integer array, got {users.dtype} "
                             f"with shape {users.shape}")
        out = (users < 0) | (users >= n_users)
        if out.any():
            b = int(np.flatnonzero(out)[0])
            raise ValueError(f"{op}: users must lie in [0, {n_users}); users[{b}] = "
                             f"{int(users[b])}")
        users = users.astype(np.int64)
    n_test_all = np.diff(sorted_rows(test)[0])
    users = users[n_test_all[users] > 0]
    if batch_size is None:
        batch_size = max(1, len(users) if score_fn is None else (1 << 26) // max(n_items, 1))
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or batch_size < 1:
        raise ValueError(f"{op}: batch_size must be a positive integer, got {batch_size}")
    K = max(ks)
    hits = np.zeros((len(users), K), dtype=bool)
    acc = _Beyond(beyond, ks, len(users), _item_popularity(train, n_items), n_users,
                  groups, n_groups) if beyond else None
    for b0 in range(0, len(users), batch_size):
        ub = users[b0:b0 + batch_size]
        if score_fn is None:
            _, idx = topk(Ue[ub], index, K, exclude=train, exclude_rows=ub, backend=backend)
        else:
            S = score_fn(ub)
            shape = tuple(getattr(S, "shape", ()))
            if shape != (len(ub), n_items):
                raise ValueError(f"{op}: score_fn must return scores of shape ({len(ub)}, "
                                 f"{n_items}) for {len(ub)} users, got {shape}")
            _, idx = topk_scores(S, K, exclude=train, exclude_rows=ub, backend=backend)
        idx = _to_numpy(idx)
        hits[b0:b0 + len(ub)] = _hits(test, ub, idx, n_items)
        if acc is not None:
            acc.add(b0, idx)
    per_user = ranking_metrics(hits, n_test_all[users], ks, accuracy)
    means = {name: (float(v.mean()) if len(v) else float("nan")) for name, v in per_user.items()}
    if acc is not None:
        m2, p2 = acc.result()
        means.update(m2)
        per_user.update(p2)
    # one order: metric by metric as asked, each at every k
    order = [f"{m}@{k}" for k in ks for m in metrics]
    means = {name: means[name] for name in order}
    per_user = {name: per_user[name] for name in order if name in per_user}
    if return_per_user:
        return means, {"users": users, **per_user}
    return means


# ---------------------------------------------------------------------------- compare
@dataclass(frozen=True)
class PairedTest:
    """One metric of ``hopkit.compare``: a's per-user values against b's on
    the same users. ``mean_diff`` = mean(a - b), ``ci`` its two-sided
    Student-t confidence interval, ``p_ttest`` the paired t-test's p-value
    (scipy.stats.ttest_rel), ``p_wilcoxon`` the Wilcoxon signed-rank test's
    (scipy.stats.wilcoxon, zero differences dropped). When every difference
    is zero both p-values are 1.0 and the interval is (0, 0)."""

    metric: str
    n_users: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci: tuple
    confidence: float
    t_statistic: float
    p_ttest: float
    w_statistic: float
    p_wilcoxon: float

    def significant(self, alpha=0.05, test="ttest"):
        """Whether the chosen test's p-value is below alpha."""
        if test not in ("ttest", "wilcoxon"):
            raise ValueError(f"significant: test must be 'ttest' or 'wilcoxon', got {test!r}")
        return (self.p_ttest if test == "ttest" else self.p_wilcoxon) < alpha


class Comparison(dict):
    """``hopkit.compare``'s result: ``{metric: PairedTest}`` in the metrics'
    order; ``str()`` is a table."""

    def __init__(self, tests, names=("a", "b")):
        super().__init__(tests)
        self.names = names

    def __str__(self):
        a, b = self.names
        head = ["metric", "n", a, b, f"{a} - {b}", "CI", "p (t-test)", "p (Wilcoxon)"]
        rows = [(t.metric, str(t.n_users), f"{t.mean_a:.4f}", f"{t.mean_b:.4f}",
                 f"{t.mean_diff:+.4f}", f"[{t.ci[0]:+.4f}, {t.ci[1]:+.4f}]",
                 f"{t.p_ttest:.3g}", f"{t.p_wilcoxon:.3g}") for t in self.values()]
        w = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r))
                 for r in [head] + rows]
        conf = next(iter(self.values())).confidence if self else 0.95
        return "\n".join(lines + [f"(CI: {conf:.0%} for the mean difference)"])

    __repr__ = __str__


def _per_user_dict(op, name, x):
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], dict):
        x = x[1]  # what evaluate(..., return_per_user=True) returned
    if not isinstance(x, dict) or "users" not in x:
        raise TypeError(f"{op}: {name} must be the per-user dict of "
                        f"evaluate(..., return_per_user=True) (with 'users'), got "
                        f"{type(x).__name__}")
    return x


def compare(a, b, metrics=None, *, confidence=0.95, names=("a", "b")):
    """Paired tests between two models' per-user metrics on the same users.

    ``a`` and ``b``: what ``hopkit.evaluate(..., return_per_user=True)``
    returned (the ``(means, per_user)`` pair or its per-user dict), for the
    same test users. ``metrics``: names such as ``"recall@20"`` (default:
    every per-user metric the two have in common; an exposure [n, n_groups]
    is tested group by group as ``"exposure@20[g]"``). Returns a
    ``Comparison`` ``{metric: PairedTest}`` (mean difference a - b, its
    ``confidence`` Student-t interval, paired t-test and Wilcoxon
    signed-rank p-values). Users whose value is NaN in either (an empty
    list: avg_popularity, novelty, exposure) are left out of that metric.
    """
    from scipy import stats

    op = "compare"
    a = _per_user_dict(op, "a", a)
    b = _per_user_dict(op, "b", b)
    ua, ub = np.asarray(a["users"]), np.asarray(b["users"])
    if ua.shape != ub.shape or not np.array_equal(ua, ub):
        raise ValueError(f"{op}: a and b must be evaluated on the same users in the same "
                         f"order, got {len(ua)} and {len(ub)} users"
                         + (" (different ids)" if ua.shape == ub.shape else ""))
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) \
            or not 0 < confidence < 1:
        raise ValueError(f"{op}: confidence must lie in (0, 1), got {confidence!r}")
    common = [m for m in a if m != "users" and m in b]
    if metrics is None:
        metrics = common
    elif isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics)
    bad = [m for m in metrics if m not in common]
    if bad:
        raise ValueError(f"{op}: metrics must be per-user metrics present in both a and b "
                         f"{tuple(common)}, got unknown {tuple(bad)}")
    if not metrics:
        raise ValueError(f"{op}: no per-user metric in common between a and b")
    tests = {}
    for m in metrics:
        va, vb = np.asarray(a[m], dtype=np.float64), np.asarray(b[m], dtype=np.float64)
        if va.shape != vb.shape:
            raise ValueError(f"{op}: {m} has shape {va.shape} in a and {vb.shape} in b")
        if va.ndim == 2:
            cols = [(f"{m}[{g}]", va[:, g], vb[:, g]) for g in range(va.shape[1])]
        else:
            cols = [(m, va, vb)]
        for name, x, y in cols:
            tests[name] = _paired(stats, name, x, y, float(confidence))
    return Comparison(tests, tuple(names))


def _paired(stats, name, x, y, confidence):
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    n = len(x)
    d = x - y
    nan = float("nan")
    if n == 0:
        return PairedTest(name, 0, nan, nan, nan, (nan, nan), confidence, nan, nan, nan, nan)
    mean_a, mean_b, md = float(x.mean()), float(y.mean()), float(d.mean())
    if not d.any():
        return PairedTest(name, n, mean_a, mean_b, 0.0, (0.0, 0.0), confidence, 0.0, 1.0,
                          0.0, 1.0)
    if n > 1:
        se = float(d.std(ddof=1)) / np.sqrt(n)
        h = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
        ci = (md - h, md + h)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = stats.ttest_rel(x, y)
        t_stat, p_t = float(t.statistic), float(t.pvalue)
    else:
        ci, t_stat, p_t = (nan, nan), nan, nan
    w = stats.wilcoxon(x, y)
    return PairedTest(name, n, mean_a, mean_b, md, ci, confidence, t_stat, p_t,
                      float(w.statistic), float(w.pvalue))
