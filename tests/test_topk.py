import hopkit
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import BACKENDS

ALL = BACKENDS + ["numpy"]


def brute(Q, X, k, exclude=None, rows=None, cand=None):
    """Independent oracle: float64 scores, explicit masking, stable argsort."""
    return brute_select(Q.astype(np.float64) @ X.astype(np.float64).T, k, exclude, rows, cand)


def brute_select(S, k, exclude=None, rows=None, cand=None):
    """Oracle for given scores S [B, N]: explicit masking, stable argsort."""
    B, N = S.shape
    valid = ~np.isnan(S) & (S > -np.inf)
    if exclude is not None:
        E = sp.csr_matrix(exclude)
        for b in range(B):
            r = b if rows is None else rows[b]
            valid[b, E.indices[E.indptr[r]:E.indptr[r + 1]]] = False
    if cand is not None:
        valid &= sp.csr_matrix(cand).toarray() != 0
    scores = np.full((B, k), -np.inf, dtype=S.dtype)
    idx = np.full((B, k), -1, dtype=np.int64)
    for b in range(B):
        # stable argsort of -score: equal scores keep increasing item order
        order = np.argsort(np.where(valid[b], -S[b], np.inf), kind="stable")
        order = order[valid[b, order]][:k]
        scores[b, :len(order)] = S[b, order]
        idx[b, :len(order)] = order
    return scores, idx


def random_csr(rng, n_rows, n_cols, density, index_dtype=np.int32):
    M = sp.random(n_rows, n_cols, density=density, random_state=rng, format="csr")
    return hopkit.CSR(M.indptr, M.indices.astype(index_dtype), None, M.shape)


def int_data(rng, B, N, d, dtype, lo=-2, hi=3):
    return (rng.integers(lo, hi, (B, d)).astype(dtype), rng.integers(lo, hi, (N, d)).astype(dtype))


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("shape", [(37, 300, 9, 12), (1, 1000, 64, 10), (130, 700, 1, 7),
                                   (5, 40, 3, 40), (5, 40, 3, 55)])
def test_topk_ties_exact(rng, backend, dtype, index_dtype, shape):
    """Integer-valued embeddings: many exact ties, identical indices everywhere."""
    B, N, d, k = shape
    Q, X = int_data(rng, B, N, d, dtype)
    E = random_csr(rng, B + 3, N, 0.1, index_dtype)
    rows = rng.integers(0, B + 3, B)
    for kw, ref in [({}, brute(Q, X, k)),
                    ({"exclude": E, "exclude_rows": rows}, brute(Q, X, k, E.to_scipy(), rows))]:
        s, i = hopkit.topk(Q, X, k, backend=backend, **kw)
        assert s.dtype == dtype and i.dtype == np.int64 and s.shape == (B, k) == i.shape
        np.testing.assert_array_equal(i, ref[1])
        np.testing.assert_array_equal(s, ref[0].astype(dtype))


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_topk_random_floats(rng, backend, dtype):
    B, N, d, k = 70, 2000, 48, 25
    Q = rng.standard_normal((B, d)).astype(dtype)
    X = rng.standard_normal((N, d)).astype(dtype)
    E = random_csr(rng, B, N, 0.05)
    s, i = hopkit.topk(Q, X, k, exclude=E, backend=backend)
    rs, ri = brute(Q, X, k, E.to_scipy())
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(s, rs, rtol=tol, atol=tol)
    # indices may only differ where the reference scores tie within rounding
    exact = Q.astype(np.float64) @ X.astype(np.float64).T
    np.testing.assert_allclose(np.take_along_axis(exact, i, 1), rs, rtol=tol, atol=tol)
    assert (np.diff(s, axis=1) <= 0).all()
    assert (i == ri).mean() > 0.99


@pytest.mark.parametrize("backend", ALL)
def test_topk_candidates(rng, backend):
    B, N, d, k = 23, 500, 16, 9
    Q, X = int_data(rng, B, N, d, np.float32)
    C = random_csr(rng, B, N, 0.04)
    E = random_csr(rng, 40, N, 0.2)
    rows = rng.integers(0, 40, B)
    s, i = hopkit.topk(Q, X, k, candidates=C, backend=backend)
    rs, ri = brute(Q, X, k, cand=C.to_scipy())
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_array_equal(s, rs.astype(np.float32))
    k = 25  # more than most rows have candidates left
    s, i = hopkit.topk(Q, X, k, exclude=E, exclude_rows=rows, candidates=C, backend=backend)
    rs, ri = brute(Q, X, k, E.to_scipy(), rows, C.to_scipy())
    np.testing.assert_array_equal(i, ri)
    # some rows have fewer than k candidates left: padded
    assert (i == -1).any() and np.isneginf(s[i == -1]).all()


@pytest.mark.parametrize("backend", ALL)
def test_topk_edge_cases(rng, backend):
    Q, X = int_data(rng, 4, 30, 5, np.float64)
    # k = 0
    s, i = hopkit.topk(Q, X, 0, backend=backend)
    assert s.shape == (4, 0) and i.shape == (4, 0)
    # k = N and k > N
    for k in (30, 45):
        s, i = hopkit.topk(Q, X, k, backend=backend)
        np.testing.assert_array_equal(i, brute(Q, X, k)[1])
        assert sorted(i[0, :30]) == list(range(30)) and (i[:, 30:] == -1).all()
    # all items excluded for query 1, empty exclusion rows for the others
    E = hopkit.CSR([0, 0, 30, 30, 30], np.arange(30), None, (4, 30))
    s, i = hopkit.topk(Q, X, 5, exclude=E, backend=backend)
    assert (i[1] == -1).all() and np.isneginf(s[1]).all()
    np.testing.assert_array_equal(i[[0, 2, 3]], brute(Q, X, 5)[1][[0, 2, 3]])
    # B = 0, N = 0
    s, i = hopkit.topk(Q[:0], X, 3, backend=backend)
    assert s.shape == (0, 3)
    s, i = hopkit.topk(Q, X[:0], 3, backend=backend)
    assert (i == -1).all() and np.isneginf(s).all()
    # d = 1
    s, i = hopkit.topk(Q[:, :1], X[:, :1], 7, backend=backend)
    np.testing.assert_array_equal(i, brute(Q[:, :1], X[:, :1], 7)[1])


@pytest.mark.parametrize("backend", ALL)
def test_topk_unsorted_duplicate_exclusion_rows(rng, backend):
    Q, X = int_data(rng, 3, 50, 4, np.float32)
    # row 0 lists 7, 3, 7, 40 (unsorted, duplicated); row 2 lists 49, 0
    E = hopkit.CSR([0, 4, 4, 6], [7, 3, 7, 40, 49, 0], None, (3, 50), validate=True)
    s, i = hopkit.topk(Q, X, 50, exclude=E, backend=backend)
    ref = brute(Q, X, 50, sp.csr_matrix((np.ones(6), [7, 3, 7, 40, 49, 0], [0, 4, 4, 6]),
                                        shape=(3, 50)))
    np.testing.assert_array_equal(i, ref[1])
    assert (i[0] >= 0).sum() == 47 and (i[2] >= 0).sum() == 48


@pytest.mark.parametrize("backend", ALL)
def test_topk_nan_and_inf(rng, backend):
    """NaN and -inf scores never enter; +inf scores rank first."""
    Q, X = int_data(rng, 3, 20, 4, np.float32)
    X[5, 0] = np.nan          # item 5: NaN score for every query
    Q[1, 2] = np.nan          # query 1: every score NaN -> all padding
    X[8] = [np.inf, 0, 0, 0]  # item 8: +-inf or NaN depending on the query
    s, i = hopkit.topk(Q, X, 20, backend=backend)
    ref_s, ref_i = brute(Q, X, 20)
    np.testing.assert_array_equal(i, ref_i)
    assert (i != 5).all() and (i[1] == -1).all()
    assert not np.isnan(s).any()
    for b in (0, 2):
        if Q[b, 0] > 0:
            assert i[b, 0] == 8 and s[b, 0] == np.inf
        else:
            assert 8 not in i[b]


@pytest.mark.parametrize("backend", ALL)
def test_item_index_and_torch(rng, backend):
    torch = pytest.importorskip("torch")
    Q, X = int_data(rng, 10, 200, 8, np.float32)
    index = hopkit.ItemIndex(X)
    ref = brute(Q, X, 6)
    for _ in range(2):  # prepared once, reused
        s, i = hopkit.topk(Q, index, 6, backend=backend)
        np.testing.assert_array_equal(i, ref[1])
    st, it = hopkit.topk(torch.from_numpy(Q), torch.from_numpy(X), 6, backend=backend)
    assert isinstance(st, torch.Tensor) and it.dtype == torch.int64 and st.dtype == torch.float32
    np.testing.assert_array_equal(it.numpy(), ref[1])
    st, it = hopkit.topk(Q, hopkit.ItemIndex(torch.from_numpy(X)), 6, backend=backend)
    assert isinstance(it, torch.Tensor)
    # inputs untouched
    Q2, X2 = Q.copy(), X.copy()
    hopkit.topk(Q, X, 6, exclude=random_csr(rng, 10, 200, 0.1), backend=backend)
    np.testing.assert_array_equal(Q, Q2)
    np.testing.assert_array_equal(X, X2)


def test_topk_parallel_paths_agree(rng):
    """Small B (item chunks merged) and large B (query chunks) on the native
    backend: same answer as the reference, with exclusion."""
    if "native" not in BACKENDS:
        pytest.skip("native extension not built")
    N, d = 20000, 16
    X = rng.integers(-3, 4, (N, d)).astype(np.float32)
    for B in (1, 3, 16, 300):
        Q = rng.integers(-3, 4, (B, d)).astype(np.float32)
        E = random_csr(rng, B, N, 0.01)
        s, i = hopkit.topk(Q, X, 30, exclude=E, backend="native")
        s2, i2 = hopkit.topk(Q, X, 30, exclude=E, backend="numpy")
        np.testing.assert_array_equal(i, i2)
        np.testing.assert_array_equal(s, s2)


def test_topk_errors(rng):
    Q, X = int_data(rng, 4, 30, 5, np.float32)
    E = random_csr(rng, 4, 30, 0.2)
    with pytest.raises(ValueError, match=r"topk: items must have d = 5 columns \(queries.shape"
                                         r"\[1\]\), got 6"):
        hopkit.topk(Q, np.zeros((30, 6), np.float32), 3)
    with pytest.raises(TypeError, match="topk: items must have the dtype of queries"):
        hopkit.topk(Q, X.astype(np.float64), 3)
    with pytest.raises(TypeError, match="topk: queries must be float32 or float64, got int64"):
        hopkit.topk(Q.astype(np.int64), X, 3)
    with pytest.raises(ValueError, match="topk: queries must be 2-D"):
        hopkit.topk(Q[0], X, 3)
    with pytest.raises(ValueError, match="topk: k must be >= 0, got -1"):
        hopkit.topk(Q, X, -1)
    with pytest.raises(TypeError, match="topk: k must be an integer, got float"):
        hopkit.topk(Q, X, 2.5)
    big = hopkit.CSR([0, 1, 1, 1, 1], [31], None, (4, 40))
    with pytest.raises(ValueError, match=r"topk: exclude ids must lie in \[0, 30\) "
                                         r"\(items.shape\[0\]\); row 0 has item 31"):
        hopkit.topk(Q, X, 3, exclude=big)
    with pytest.raises(ValueError, match=r"topk: exclude must have one row per query \(4 rows\)"):
        hopkit.topk(Q, X, 3, exclude=random_csr(rng, 5, 30, 0.2))
    with pytest.raises(ValueError, match=r"topk: exclude_rows must lie in \[0, 4\) "
                                         r"\(exclude.shape\[0\]\); exclude_rows\[2\] = 4"):
        hopkit.topk(Q, X, 3, exclude=E, exclude_rows=[0, 1, 4, 2])
    with pytest.raises(ValueError, match=r"topk: exclude_rows must lie in \[0, 4\)"):
        hopkit.topk(Q, X, 3, exclude=E, exclude_rows=[0, -1, 3, 2])
    with pytest.raises(ValueError, match=r"topk: exclude_rows must have one entry per query "
                                         r"\(4\), got 3"):
        hopkit.topk(Q, X, 3, exclude=E, exclude_rows=[0, 1, 2])
    with pytest.raises(ValueError, match="topk: exclude_rows needs exclude"):
        hopkit.topk(Q, X, 3, exclude_rows=[0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"topk: candidates must have one row per query"):
        hopkit.topk(Q, X, 3, candidates=random_csr(rng, 3, 30, 0.2))
    with pytest.raises(ValueError, match=r"topk: candidates ids must lie in \[0, 30\)"):
        hopkit.topk(Q, X, 3, candidates=big)
    with pytest.raises(ValueError, match="topk: backend must be one of"):
        hopkit.topk(Q, X, 3, backend="gpu")


# ---------------------------------------------------------------- evaluate
def plain_metrics(U, V, train, test, k):
    """Plain NumPy full-ranking evaluation, one user at a time."""
    S = U.astype(np.float64) @ V.astype(np.float64).T
    tr, te = sp.csr_matrix(train), sp.csr_matrix(test)
    out = {m: [] for m in ("recall", "ndcg", "precision", "hit_rate", "map")}
    for u in range(U.shape[0]):
        T = set(te.indices[te.indptr[u]:te.indptr[u + 1]].tolist())
        if not T:
            continue
        s = S[u].copy()
        s[tr.indices[tr.indptr[u]:tr.indptr[u + 1]]] = -np.inf
        ranked = np.argsort(-s, kind="stable")[:k]
        hit = np.array([j in T for j in ranked], dtype=float)
        n = hit.sum()
        out["recall"].append(n / len(T))
        out["precision"].append(n / k)
        out["hit_rate"].append(float(n > 0))
        dcg = sum(h / np.log2(r + 2) for r, h in enumerate(hit))
        idcg = sum(1 / np.log2(r + 2) for r in range(min(k, len(T))))
        out["ndcg"].append(dcg / idcg)
        prec = np.cumsum(hit) / np.arange(1, k + 1)
        out["map"].append((prec * hit).sum() / min(k, len(T)))
    return {f"{m}@{k}": np.array(v) for m, v in out.items()}


def split_interactions(rng, n_users, n_items, density):
    R = sp.random(n_users, n_items, density=density, random_state=rng, format="csr")
    R.data[:] = 1
    coo = R.tocoo()
    is_test = rng.random(coo.nnz) < 0.3
    mk = lambda m: hopkit.CSR.from_scipy(sp.csr_matrix(
        (np.ones(m.sum()), (coo.row[m], coo.col[m])), shape=R.shape))
    return mk(~is_test), mk(is_test)


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_evaluate_matches_plain_numpy(rng, backend, dtype):
    n_users, n_items, d = 60, 150, 8
    U, V = int_data(rng, n_users, n_items, d, dtype, -3, 4)
    train, test = split_interactions(rng, n_users, n_items, 0.12)
    # users with no train items, with no test items, with more test items than k
    tr, te = train.to_scipy().tolil(), test.to_scipy().tolil()
    tr[0, :] = 0
    te[1, :] = 0
    te[2, :40] = 1
    tr[2, :40] = 0
    train = hopkit.CSR.from_scipy(tr.tocsr())
    test = hopkit.CSR.from_scipy(te.tocsr())
    train = hopkit.CSR(train.indptr, train.indices, None, train.shape)
    assert np.diff(train.indptr)[0] == 0 and np.diff(test.indptr)[1] == 0
    ks = (5, 20)
    means, per = hopkit.evaluate(U, V, train, test, ks=ks, return_per_user=True,
                                 backend=backend)
    assert 1 not in per["users"] and 0 in per["users"]
    for k in ks:
        plain = plain_metrics(U, V, train.to_scipy(), test.to_scipy(), k)
        for name, v in plain.items():
            np.testing.assert_allclose(per[name], v, rtol=1e-12, atol=1e-12, err_msg=name)
            assert means[name] == pytest.approx(v.mean(), rel=1e-12)
    assert per["recall@20"][list(per["users"]).index(2)] <= 0.5 + 1e-12  # |test| >= 40 > k
    # batches and a user subset give the same per-user numbers
    m2, p2 = hopkit.evaluate(U, V, train, test, ks=ks, users=np.arange(0, 60, 2), batch_size=7,
                             return_per_user=True, backend=backend)
    sel = np.isin(per["users"], p2["users"])
    np.testing.assert_allclose(p2["ndcg@20"], per["ndcg@20"][sel], rtol=1e-12)


def test_evaluate_torch_and_errors(rng):
    torch = pytest.importorskip("torch")
    U, V = int_data(rng, 20, 50, 4, np.float32)
    train, test = split_interactions(rng, 20, 50, 0.2)
    a = hopkit.evaluate(U, V, train, test, ks=10, metrics="ndcg")
    b = hopkit.evaluate(torch.from_numpy(U), torch.from_numpy(V), train, test, ks=10,
                        metrics=["ndcg"])
    assert a == b and list(a) == ["ndcg@10"]
    with pytest.raises(ValueError, match="evaluate: metrics must be among"):
        hopkit.evaluate(U, V, train, test, metrics=("auc",))
    with pytest.raises(ValueError, match=r"evaluate: ks must be positive integers"):
        hopkit.evaluate(U, V, train, test, ks=(0,))
    with pytest.raises(ValueError, match=r"evaluate: test must have one row per user \(20"):
        hopkit.evaluate(U, V, train, random_csr(rng, 19, 50, 0.1))
    with pytest.raises(ValueError, match=r"evaluate: users must lie in \[0, 20\)"):
        hopkit.evaluate(U, V, train, test, users=[3, 20])
    empty = hopkit.CSR(np.zeros(21, np.int64), np.zeros(0, np.int64), None, (20, 50))
    assert np.isnan(hopkit.evaluate(U, V, train, empty)["recall@20"])


@pytest.mark.parametrize("backend", ALL)
def test_topk_scipy_inputs_and_mixed_index_dtypes(rng, backend):
    Q, X = int_data(rng, 12, 90, 6, np.float64)
    E = sp.random(12, 90, density=0.2, random_state=3, format="csr")          # scipy, int32
    C = random_csr(rng, 12, 90, 0.5, np.int64)                               # int64 ids
    s, i = hopkit.topk(Q, X, 10, exclude=E, candidates=C, backend=backend)
    rs, ri = brute(Q, X, 10, E, None, C.to_scipy())
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_array_equal(s, rs)


def test_evaluate_accepts_item_index(rng):
    U, V = int_data(rng, 30, 80, 5, np.float32)
    train, test = split_interactions(rng, 30, 80, 0.15)
    a = hopkit.evaluate(U, V, train, test, ks=(5, 10))
    b = hopkit.evaluate(U, hopkit.ItemIndex(V), train, test, ks=(5, 10))
    assert a == b and set(a) == {f"{m}@{k}" for m in
                                 ("recall", "ndcg", "precision", "hit_rate", "map")
                                 for k in (5, 10)}


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 40, 55), (40, 300, 12), (2, 70000, 9),
                                   (9, 31, 0)])
def test_topk_scores_ties_exclusion_padding(rng, backend, dtype, shape):
    B, N, k = shape
    S = rng.integers(-3, 4, (B, N)).astype(dtype)
    S[0, : min(N, 2)] = np.nan
    if N > 3:
        S[-1, 3] = -np.inf
    E = random_csr(rng, B + 2, N, 0.2)
    rows = rng.integers(0, B + 2, B)
    for kw, ref in [({}, brute_select(S, k)),
                    ({"exclude": E, "exclude_rows": rows},
                     brute_select(S, k, E.to_scipy(), rows))]:
        s, i = hopkit.topk_scores(S, k, backend=backend, **kw)
        assert s.dtype == dtype and i.shape == (B, k) == s.shape
        np.testing.assert_array_equal(i, ref[1])
        np.testing.assert_array_equal(s, ref[0])


def test_topk_scores_matches_topk_and_errors(rng):
    Q, X = int_data(rng, 25, 400, 6, np.float32)
    E = random_csr(rng, 25, 400, 0.1)
    a = hopkit.topk(Q, X, 15, exclude=E)
    b = hopkit.topk_scores(Q @ X.T, 15, exclude=E)
    np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match=r"topk_scores: scores must be 2-D"):
        hopkit.topk_scores(np.zeros(5, np.float32), 2)
    with pytest.raises(TypeError, match=r"topk_scores: scores must be float32 or float64"):
        hopkit.topk_scores(np.zeros((2, 5), np.int64), 2)
    with pytest.raises(ValueError, match=r"topk_scores: k must be >= 0"):
        hopkit.topk_scores(np.zeros((2, 5)), -1)
    with pytest.raises(ValueError, match=r"topk_scores: exclude must have one row per query"):
        hopkit.topk_scores(np.zeros((2, 5)), 1, exclude=random_csr(rng, 3, 5, 0.5))


@pytest.mark.parametrize("backend", ALL)
def test_evaluate_score_fn_matches_embeddings(rng, backend):
    U, V = int_data(rng, 50, 120, 6, np.float64, -3, 4)
    train, test = split_interactions(rng, 50, 120, 0.15)
    calls = []

    def score_fn(users):
        calls.append(len(users))
        return U[users] @ V.T

    a = hopkit.evaluate(U, V, train, test, ks=(5, 20), backend=backend)
    b = hopkit.evaluate(None, None, train, test, ks=(5, 20), score_fn=score_fn, batch_size=16,
                        backend=backend)
    assert a == b and max(calls) <= 16 and len(calls) >= 3
    with pytest.raises(ValueError, match=r"evaluate: score_fn must return scores of shape"):
        hopkit.evaluate(None, None, train, test, score_fn=lambda u: np.zeros((len(u), 3)))
    with pytest.raises(ValueError, match=r"evaluate: pass either score_fn or user_emb"):
        hopkit.evaluate(U, V, train, test, score_fn=score_fn)


def test_dense_csr_arguments_are_named(rng):
    # issue 13 item 9: a dense exclude/candidates/train/test said "A must be a hopkit.CSR"
    Q, X = rng.standard_normal((4, 5)), rng.standard_normal((30, 5))
    dense = np.zeros((4, 30))
    for call, name in ((lambda: hopkit.topk(Q, X, 3, exclude=dense), "topk: exclude"),
                       (lambda: hopkit.topk(Q, X, 3, candidates=dense), "topk: candidates"),
                       (lambda: hopkit.topk_scores(Q @ X.T, 3, exclude=dense),
                        "topk_scores: exclude")):
        with pytest.raises(TypeError, match=name + r" must be a hopkit.CSR \(or scipy/torch "
                                                   r"sparse matrix\), got ndarray"):
            call()
    with pytest.raises(TypeError, match="evaluate: train must be a hopkit.CSR"):
        hopkit.evaluate(Q, X, dense, dense, ks=(3,))
