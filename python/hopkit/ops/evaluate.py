"""evaluate: full-ranking evaluation of a recommender (top-k with the training
items excluded, then ranking metrics per user)."""

from __future__ import annotations

import numbers

import numpy as np

from ..csr import as_csr
from ._common import check_device as _check_device
from ._common import to_numpy as _to_numpy
from .topk import ItemIndex, _check_ids, _dense, sorted_rows, topk, topk_scores

METRICS = ("recall", "ndcg", "precision", "hit_rate", "map")


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


def evaluate(user_emb, item_emb, train, test, ks=(20,), metrics=METRICS, users=None,
             batch_size=None, return_per_user=False, *, score_fn=None, backend=None):
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
    metrics : any of ``"recall", "ndcg", "precision", "hit_rate", "map"``.
    users : optional user ids to evaluate (default all); users without test
        items are skipped either way.
    batch_size : users per topk call (default: all at once; topk never holds
        a users x items score matrix, so this only bounds the [batch, k] lists).
    return_per_user : also return ``{"users": ids, "recall@20": [n], ...}``.
    score_fn : for models whose scores are not one inner product: a callable
        taking an int64 array of user ids [B] and returning their scores
        against every item, [B, n_items] (NumPy or CPU tensor); user_emb and
        item_emb are then None and the ranking uses ``hopkit.topk_scores``
        (same selection and exclusion as topk). batch_size then defaults to
        ~2^26 / n_items users, so one score block stays near 256 MB.

    Definitions, for a user with test set T and ranked list r_1..r_k (hit_i =
    1 when r_i is in T):

    * recall@k = hits / |T|; precision@k = hits / k; hit_rate@k = 1 if any hit;
    * ndcg@k = DCG / IDCG with binary relevance, DCG = sum_i hit_i / log2(i + 1)
      (i = 1-based rank), IDCG the DCG of min(k, |T|) hits at the top;
    * map@k = (sum_i hit_i * precision@i) / min(k, |T|) (average precision
      truncated at k, normalised by the most hits possible).

    Returns ``{"recall@20": mean, ...}`` (float), and with
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
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise ValueError(f"{op}: metrics must be among {METRICS}, got {tuple(metrics)}")
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
    per_user = ranking_metrics(hits, n_test_all[users], ks, metrics)
    means = {name: (float(v.mean()) if len(v) else float("nan")) for name, v in per_user.items()}
    if return_per_user:
        return means, {"users": users, **per_user}
    return means
