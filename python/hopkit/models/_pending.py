"""TEMPORARY shims (delete when the lead's ``hopkit.topk_scores`` and
``hopkit.evaluate(..., score_fn=...)`` land on main), with the agreed
signatures, built on plain NumPy selection and evaluate's own hit/metric
helpers. Installed on the hopkit module only where the real one is missing."""

from __future__ import annotations

import inspect

import numpy as np

import hopkit
from hopkit.ops.evaluate import _hits, ranking_metrics


def topk_scores(scores, k, exclude=None, exclude_rows=None):
    S = np.array(scores, dtype=np.float64 if np.asarray(scores).dtype == np.float64
                 else np.float32)
    B, n = S.shape
    if exclude is not None and B:
        rows = np.arange(B) if exclude_rows is None else np.asarray(exclude_rows, np.int64)
        lo, deg = exclude.indptr[rows], exclude.indptr[rows + 1] - exclude.indptr[rows]
        starts = np.cumsum(deg) - deg
        pos = np.repeat(lo - starts, deg) + np.arange(int(deg.sum()))
        S[np.repeat(np.arange(B), deg), np.asarray(exclude.indices)[pos]] = -np.inf
    kk = min(int(k), n)
    if kk == 0 or B == 0:
        idx = np.zeros((B, 0), np.int64)
    else:
        idx = np.argpartition(-S, kk - 1, axis=1)[:, :kk]
    sc = np.take_along_axis(S, idx, 1)
    order = np.lexsort((idx, -sc), axis=-1)
    idx, sc = np.take_along_axis(idx, order, 1), np.take_along_axis(sc, order, 1)
    idx = np.where(np.isneginf(sc), -1, idx).astype(np.int64)
    if kk < k:
        idx = np.pad(idx, ((0, 0), (0, k - kk)), constant_values=-1)
        sc = np.pad(sc, ((0, 0), (0, k - kk)), constant_values=-np.inf)
    return sc, idx


_real_evaluate = hopkit.evaluate


def evaluate(user_emb, item_emb, train, test, ks=(20,), metrics=("recall", "ndcg", "precision",
             "hit_rate", "map"), users=None, batch_size=None, return_per_user=False,
             score_fn=None, **kw):
    if score_fn is None:
        return _real_evaluate(user_emb, item_emb, train, test, ks=ks, metrics=metrics,
                              users=users, batch_size=batch_size,
                              return_per_user=return_per_user, **kw)
    n_items = test.shape[1]
    n_test = np.diff(test.indptr)
    users = np.arange(test.shape[0]) if users is None else np.asarray(users, np.int64)
    users = users[n_test[users] > 0]
    bs = batch_size or 1024
    K = max(ks)
    hits = np.zeros((len(users), K), dtype=bool)
    for s in range(0, len(users), bs):
        ub = users[s:s + bs]
        _, idx = topk_scores(score_fn(ub), K, train, ub)
        hits[s:s + len(ub)] = _hits(test, ub, idx, n_items)
    per_user = ranking_metrics(hits, n_test[users], ks, metrics)
    means = {name: float(v.mean()) if len(v) else float("nan") for name, v in per_user.items()}
    return (means, {"users": users, **per_user}) if return_per_user else means


if not hasattr(hopkit, "topk_scores"):
    hopkit.topk_scores = topk_scores
if "score_fn" not in inspect.signature(hopkit.evaluate).parameters:
    hopkit.evaluate = evaluate
