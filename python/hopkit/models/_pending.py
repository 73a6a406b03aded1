"""TEMPORARY shims (delete when issues 3/4 and the lead's topk_scores/score_fn
land on main): topk, topk_scores, evaluate with the agreed
signatures, built on spmm and plain NumPy selection. Installed on the hopkit
module only where the real function is missing."""

from __future__ import annotations

import numpy as np

import hopkit


def _select(S, k, excl_rows, exclude):
    S = np.array(S, dtype=np.float32 if S.dtype == np.float32 else np.float64)
    B, n = S.shape
    if exclude is not None:
        for b in range(B):
            r = excl_rows[b]
            if r >= 0:
                S[b, exclude.indices[exclude.indptr[r]:exclude.indptr[r + 1]]] = -np.inf
    kk = min(k, n)
    idx = np.argsort(-S, axis=1, kind="stable")[:, :kk]
    sc = np.take_along_axis(S, idx, 1)
    idx = np.where(np.isneginf(sc), -1, idx).astype(np.int64)
    if kk < k:
        idx = np.pad(idx, ((0, 0), (0, k - kk)), constant_values=-1)
        sc = np.pad(sc, ((0, 0), (0, k - kk)), constant_values=-np.inf)
    return sc, idx


def topk_scores(scores, k, exclude=None, exclude_rows=None):
    S = np.asarray(scores)
    rows = np.arange(S.shape[0]) if exclude_rows is None else np.asarray(exclude_rows)
    return _select(S, k, rows, exclude)


def topk(queries, items, k, exclude=None, exclude_rows=None, candidates=None):
    Q, X = np.asarray(queries), np.asarray(items)
    rows = np.arange(Q.shape[0]) if exclude_rows is None else np.asarray(exclude_rows)
    outs, outi = [], []
    for s in range(0, Q.shape[0], 1024):
        sc, ix = _select(Q[s:s + 1024] @ X.T, k, rows[s:s + 1024], exclude)
        outs.append(sc)
        outi.append(ix)
    if not outs:
        return np.zeros((0, k), Q.dtype), np.zeros((0, k), np.int64)
    return np.concatenate(outs), np.concatenate(outi)


def evaluate(user_emb, item_emb, train, test, ks=(20,), metrics=("recall", "ndcg", "precision",
             "hit_rate", "map"), users=None, batch_size=None, return_per_user=False,
             score_fn=None):
    deg = np.diff(test.indptr)
    users = np.flatnonzero(deg > 0) if users is None else np.asarray(users)
    K = max(ks)
    bs = batch_size or 1024
    acc = {f"{m}@{k}": [] for k in ks for m in metrics}
    for s in range(0, len(users), bs):
        ub = users[s:s + bs]
        if score_fn is not None:
            _, idx = topk_scores(score_fn(ub), K, train, ub)
        else:
            _, idx = topk(user_emb[ub], item_emb, K, train, ub)
        for b, u in enumerate(ub):
            t = set(test.indices[test.indptr[u]:test.indptr[u + 1]].tolist())
            hits = np.array([i in t for i in idx[b]], dtype=float)
            for k in ks:
                h = hits[:k]
                nt = len(t)
                dcg = (h / np.log2(np.arange(2, k + 2))).sum()
                idcg = (1 / np.log2(np.arange(2, min(nt, k) + 2))).sum()
                prec = np.cumsum(h) / np.arange(1, k + 1)
                vals = {"recall": h.sum() / nt, "ndcg": dcg / idcg, "precision": h.sum() / k,
                        "hit_rate": float(h.sum() > 0), "map": (prec * h).sum() / min(nt, k)}
                for m in metrics:
                    acc[f"{m}@{k}"].append(vals[m])
    out = {key: float(np.mean(v)) if v else 0.0 for key, v in acc.items()}
    if return_per_user:
        return out, {key: np.asarray(v) for key, v in acc.items()}
    return out


for _name in ("topk", "topk_scores", "evaluate"):
    if not hasattr(hopkit, _name):
        setattr(hopkit, _name, globals()[_name])
