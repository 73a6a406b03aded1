"""Beyond-accuracy metrics of hopkit.evaluate (coverage, avg_popularity, gini,
novelty, exposure per item group), per-user values and hopkit.compare,
against a plain NumPy brute force on small random data."""

import hopkit
import hopkit.data
import hopkit.models
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import write_lightgcn_split
from hopkit.ops.evaluate import ALL_METRICS, BEYOND
from scipy import stats

KS = (1, 5, 12)


def _data(seed, n_users=40, n_items=25, p_train=0.25, p_test=0.12, d=3):
    rng = np.random.default_rng(seed)
    R = rng.random((n_users, n_items)) < p_train
    T = (rng.random((n_users, n_items)) < p_test) & ~R
    R[3] = True  # a user who has every item: empty lists (padding only)
    T[3, 0] = True
    R[:, 7] = False  # an item nobody had in training
    # integer-valued embeddings force ties (broken by the smaller item index)
    U = rng.integers(-2, 3, size=(n_users, d)).astype(np.float64)
    V = rng.integers(-2, 3, size=(n_items, d)).astype(np.float64)
    return U, V, R, T


def _brute_lists(U, V, R, T, K):
    """Users with test items and their top-K lists (full score row, training
    items dropped, stable order: score descending, smaller item first)."""
    users, lists = [], []
    for u in range(U.shape[0]):
        if not T[u].any():
            continue
        s = U[u] @ V.T
        cand = [i for i in np.lexsort((np.arange(len(s)), -s)) if not R[u, i]]
        users.append(u)
        lists.append(cand[:K])
    return users, lists


def _brute(U, V, R, T, ks, groups):
    n_users, n_items = R.shape
    users, lists = _brute_lists(U, V, R, T, max(ks))
    pop = R.sum(axis=0)
    out, per = {}, {}
    n_groups = groups.max() + 1
    for k in ks:
        L = [lst[:k] for lst in lists]
        c = np.zeros(n_items)
        for lst in L:
            for i in lst:
                c[i] += 1
        out[f"coverage@{k}"] = len({i for lst in L for i in lst}) / n_items
        cs = np.sort(c)
        out[f"gini@{k}"] = sum((2 * (j + 1) - n_items - 1) * cs[j]
                               for j in range(n_items)) / (n_items * c.sum())
        ap, nov, ex = [], [], []
        for lst in L:
            if not lst:
                ap.append(np.nan)
                nov.append(np.nan)
                ex.append(np.full(n_groups, np.nan))
                continue
            ap.append(np.mean([pop[i] for i in lst]))
            nov.append(np.mean([-np.log2(max(pop[i], 1) / n_users) for i in lst]))
            ex.append(np.array([np.mean([groups[i] == g for i in lst])
                                for g in range(n_groups)]))
        per[f"avg_popularity@{k}"] = np.array(ap)
        per[f"novelty@{k}"] = np.array(nov)
        per[f"exposure@{k}"] = np.array(ex)
        out[f"avg_popularity@{k}"] = np.nanmean(ap)
        out[f"novelty@{k}"] = np.nanmean(nov)
        slots = np.array([groups[i] for lst in L for i in lst])
        out[f"exposure@{k}"] = np.array([(slots == g).mean() for g in range(n_groups)])
    return np.array(users), out, per


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("batch_size", [None, 7])
def test_beyond_accuracy_matches_brute_force(seed, batch_size):
    U, V, R, T = _data(seed)
    rng = np.random.default_rng(100 + seed)
    groups = rng.integers(0, 4, size=R.shape[1]).astype(np.int32)
    users, want, want_per = _brute(U, V, R, T, KS, groups)
    means, per = hopkit.evaluate(U, V, sp.csr_matrix(R), sp.csr_matrix(T), ks=KS,
                                 metrics=ALL_METRICS, groups=groups, batch_size=batch_size,
                                 return_per_user=True)
    np.testing.assert_array_equal(per["users"], users)
    for name, v in want.items():
        np.testing.assert_allclose(means[name], v, rtol=1e-12, atol=1e-12, err_msg=name)
    for name, v in want_per.items():
        np.testing.assert_allclose(per[name], v, rtol=1e-12, atol=1e-12, err_msg=name)
    assert "coverage@5" not in per and "gini@5" not in per  # no per-user value
    # exposure shares sum to one per cut-off and per user with a list
    for k in KS:
        assert means[f"exposure@{k}"].sum() == pytest.approx(1.0)
        e = per[f"exposure@{k}"]
        ok = ~np.isnan(e).any(axis=1)
        np.testing.assert_allclose(e[ok].sum(axis=1), 1.0)


def test_same_pass_score_fn_and_accuracy_unchanged():
    U, V, R, T = _data(4)
    train, test = sp.csr_matrix(R), sp.csr_matrix(T)
    acc = hopkit.evaluate(U, V, train, test, ks=KS)
    both = hopkit.evaluate(U, V, train, test, ks=KS, metrics=("recall", "ndcg") + BEYOND[:4])
    for k in KS:
        assert both[f"recall@{k}"] == acc[f"recall@{k}"]
        assert both[f"ndcg@{k}"] == acc[f"ndcg@{k}"]
    assert list(both)[:6] == ["recall@1", "ndcg@1", "coverage@1", "avg_popularity@1",
                              "gini@1", "novelty@1"]
    sf = hopkit.evaluate(None, None, train, test, ks=KS, metrics=BEYOND[:4],
                         score_fn=lambda ub: U[ub] @ V.T, batch_size=5)
    for name, v in sf.items():
        assert v == pytest.approx(both[name], rel=1e-12), name


def test_gini_extremes_and_popularity_groups():
    n_users, n_items = 6, 5
    R = np.zeros((n_users, n_items), dtype=bool)
    R[:, 4] = True
    R[0, 3] = True
    T = np.zeros_like(R)
    T[:, 0] = True
    # every user gets the same single item: Gini = 1 - 1/n_items
    U = np.ones((n_users, 1))
    V = np.array([[5.0], [1.0], [1.0], [1.0], [9.0]])
    m = hopkit.evaluate(U, V, sp.csr_matrix(R), sp.csr_matrix(T), ks=1,
                        metrics=("gini", "coverage", "novelty", "avg_popularity"))
    assert m["gini@1"] == pytest.approx(1 - 1 / n_items)
    assert m["coverage@1"] == pytest.approx(1 / n_items)
    assert m["avg_popularity@1"] == 0.0
    assert m["novelty@1"] == pytest.approx(np.log2(n_users))  # pop 0 counts as one user
    g = hopkit.popularity_groups(sp.csr_matrix(R), 2)
    # degrees [0, 0, 0, 1, 6]: the 3 least popular in group 0 (ties by id)
    np.testing.assert_array_equal(g, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(hopkit.popularity_groups(sp.csr_matrix(R), 5), [0, 1, 2, 3, 4])


def test_no_users_gives_nan():
    R = np.zeros((3, 4), dtype=bool)
    T = np.zeros_like(R)
    m = hopkit.evaluate(np.ones((3, 2)), np.ones((4, 2)), sp.csr_matrix(R), sp.csr_matrix(T),
                        ks=2, metrics=BEYOND, groups=np.zeros(4, dtype=np.int64))
    assert all(np.isnan(v).all() for v in m.values())


def test_models_pass_groups_through():
    data = hopkit.data.synthetic(60, 30, 500, seed=3)
    ds = hopkit.data.split_random(data, 0.2, seed=0)
    model = hopkit.models.Popularity().fit(ds)
    g = hopkit.popularity_groups(ds.train, 3)
    m, per = model.evaluate(ds.test, (5,), ("recall", "gini"), groups=g, return_per_user=True)
    assert set(m) == {"recall@5", "gini@5", "exposure@5"}
    assert per["exposure@5"].shape == (len(per["users"]), 3)
    # popularity recommends the most popular items: most exposure to the top group
    assert m["exposure@5"][2] > 0.9


def test_compare_matches_scipy():
    U, V, R, T = _data(5, n_users=80)
    train, test = sp.csr_matrix(R), sp.csr_matrix(T)
    rng = np.random.default_rng(9)
    a = hopkit.evaluate(U, V, train, test, ks=(5,), metrics=("recall", "ndcg", "novelty"),
                        groups=np.arange(R.shape[1]) % 2, return_per_user=True)
    b = hopkit.evaluate(U + rng.normal(size=U.shape), V, train, test, ks=(5,),
                        metrics=("recall", "ndcg", "novelty"),
                        groups=np.arange(R.shape[1]) % 2, return_per_user=True)
    res = hopkit.compare(a, b[1], confidence=0.9, names=("model", "noisy"))
    assert list(res) == ["recall@5", "ndcg@5", "novelty@5", "exposure@5[0]", "exposure@5[1]"]
    for name in ["ndcg@5", "novelty@5", "exposure@5[1]"]:
        col = int(name[-2]) if name.endswith("]") else None
        key = name.split("[")[0]
        x, y = a[1][key], b[1][key]
        if col is not None:
            x, y = x[:, col], y[:, col]
        ok = ~(np.isnan(x) | np.isnan(y))
        x, y = x[ok], y[ok]
        t = res[name]
        d = x - y
        assert t.n_users == len(x)
        assert t.mean_diff == pytest.approx(d.mean())
        assert t.mean_a == pytest.approx(x.mean()) and t.mean_b == pytest.approx(y.mean())
        assert t.p_ttest == pytest.approx(stats.ttest_rel(x, y).pvalue)
        assert t.p_wilcoxon == pytest.approx(stats.wilcoxon(x, y).pvalue)
        lo, hi = stats.t.interval(0.9, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
        assert t.ci == pytest.approx((lo, hi))
        assert t.significant(0.05) == (t.p_ttest < 0.05)
    text = str(res)
    assert "model - noisy" in text and "Wilcoxon" in text and "90%" in text
    same = hopkit.compare(a, a, "recall@5")
    t = same["recall@5"]
    assert (t.mean_diff, t.ci, t.p_ttest, t.p_wilcoxon) == (0.0, (0.0, 0.0), 1.0, 1.0)


def test_compare_detects_a_real_difference():
    # b is a worse copy of a on every user: both tests see it
    users = np.arange(200)
    rng = np.random.default_rng(0)
    x = rng.random(200)
    a = {"users": users, "recall@20": x}
    b = {"users": users, "recall@20": x - 0.05 - 0.01 * rng.random(200)}
    t = hopkit.compare(a, b)["recall@20"]
    assert t.mean_diff > 0.05 and t.ci[0] > 0.05 and t.p_ttest < 1e-10 and t.p_wilcoxon < 1e-10


@pytest.mark.parametrize("kw, exc, match", [
    (dict(groups=np.zeros(24, dtype=np.int64)), ValueError,
     r"evaluate: groups must have shape \(25,\)"),
    (dict(groups=np.zeros((25, 1), dtype=np.int64)), ValueError, r"groups must have shape"),
    (dict(groups=np.zeros(25)), TypeError,
     r"evaluate: groups must be an integer array.*float64"),
    (dict(groups=np.zeros(25, dtype=bool)), TypeError, r"groups must be an integer array.*bool"),
    (dict(groups=np.r_[np.zeros(24, np.int64), -1]), ValueError,
     r"groups must be non-negative group ids; groups\[24\] = -1"),
    (dict(metrics=("recall", "diversity")), ValueError,
     r"evaluate: metrics must be among .*unknown: \('diversity',\)"),
    (dict(metrics="exposure"), ValueError, r"metric 'exposure' needs groups"),
])
def test_bad_input(kw, exc, match):
    U, V, R, T = _data(0)
    with pytest.raises(exc, match=match):
        hopkit.evaluate(U, V, sp.csr_matrix(R), sp.csr_matrix(T), ks=5, **kw)


def test_compare_bad_input():
    a = {"users": np.arange(3), "recall@20": np.zeros(3)}
    with pytest.raises(ValueError, match=r"compare: a and b must be evaluated on the same users"):
        hopkit.compare(a, {"users": np.arange(4), "recall@20": np.zeros(4)})
    with pytest.raises(ValueError, match=r"same users.*different ids"):
        hopkit.compare(a, {"users": np.arange(1, 4), "recall@20": np.zeros(3)})
    with pytest.raises(ValueError, match=r"compare: metrics must be per-user metrics .*'ndcg@20'"):
        hopkit.compare(a, a, metrics=["ndcg@20"])
    with pytest.raises(TypeError, match=r"compare: b must be the per-user dict"):
        hopkit.compare(a, {"recall@20": 0.1})
    with pytest.raises(ValueError, match=r"compare: confidence must lie in \(0, 1\)"):
        hopkit.compare(a, a, confidence=1.5)
    with pytest.raises(ValueError, match=r"popularity_groups: n_groups must be a positive"):
        hopkit.popularity_groups(sp.csr_matrix(np.eye(3)), 0)


def test_cli_prints_beyond_accuracy(tmp_path, capsys):
    from hopkit.cli import main

    d = write_lightgcn_split(tmp_path / "data", 40, 30)
    out = str(tmp_path / "gf")
    assert main(["train", "--data", str(d), "--model", "graph-filter", "--rank", "4",
                 "--out", out]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", out, "--data", str(d), "-k", "5",
                 "--popularity-groups", "3"]) == 0
    text = capsys.readouterr().out
    for name in ["recall@5", "coverage@5", "avg_popularity@5", "gini@5", "novelty@5",
                 "exposure@5[pop group 0]", "exposure@5[pop group 2]"]:
        assert name in text, name
    assert main(["evaluate", "--model", out, "--data", str(d), "-k", "5",
                 "--popularity-groups", "0"]) == 0
    text = capsys.readouterr().out
    assert "gini@5" in text and "exposure" not in text
