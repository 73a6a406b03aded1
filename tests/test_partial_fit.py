"""partial_fit: incremental updates of every model (docs/recommender.md,
"Incremental updates"). Small synthetic data, fast."""

import numpy as np
import pytest
from hopkit.csr import CSR
from hopkit.data.loaders import from_csr
from hopkit.models import BSPM, EASE, ChebyCF, GraphFilter, ItemKNN, LightGCN, Popularity, TurboCF


def _split(nu=300, ni=200, density=0.05, hold=0.03, new_users=5, new_items=4, seed=0,
           blocks=None):
    """(R0, held-back (users, items), R_union): the last ``new_users`` users
    and ``new_items`` items appear only in the held-back pairs. With
    ``blocks`` the data has that many planted user/item groups (a spectral
    gap after the first ``blocks`` singular values)."""
    rng = np.random.default_rng(seed)
    if blocks:
        gu, gi = rng.integers(0, blocks, nu), rng.integers(0, blocks, ni)
        p = np.where(gu[:, None] == gi[None, :], 0.3, 0.005)
    else:
        p = np.full((nu, ni), density)
    u, i = np.nonzero(rng.random((nu, ni)) < p)
    keep = (rng.random(len(u)) > hold) & (u < nu - new_users) & (i < ni - new_items)
    R0 = CSR.from_coo(u[keep], i[keep], None, shape=(nu - new_users, ni - new_items))
    full = CSR.from_coo(u, i, None, shape=(nu, ni))
    return R0, (u[~keep], i[~keep]), full


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


EXACT = [(TurboCF, {}), (TurboCF, {"filter": 3, "alpha": 0.4}),
         (ItemKNN, {"k": 10, "block_size": 37}), (ItemKNN, {"k": 5, "shrink": 2.0}),
         (BSPM, {"beta": 0.0}), (BSPM, {"beta": 0.0, "blur_solver": "rk4", "merge": "late"}),
         (ChebyCF, {"eta": 0}), (GraphFilter, {"alpha": 0.0}), (EASE, {}), (Popularity, {})]


@pytest.mark.parametrize("cls,kw", EXACT, ids=lambda x: getattr(x, "__name__", str(x)))
def test_partial_fit_exact_models_match_refit(cls, kw):
    """Without an SVD the update is the refit, to float rounding (ItemKNN,
    Turbo-CF, BSPM's blur/sharpen part: bit for bit here)."""
    R0, (u, i), full = _split()
    a = cls(**kw).fit(R0).partial_fit((u, i))
    b = cls(**kw).fit(full)
    assert a.train.shape == full.shape and np.array_equal(a.train.indices, full.indices)
    users = np.arange(full.shape[0])
    Sa, Sb = a.score_block(users), b.score_block(users)
    np.testing.assert_allclose(Sa, Sb, rtol=1e-6, atol=1e-6 * np.abs(Sb).max())
    assert a.last_update["added"] == len(u) and a.last_update["new_users"] == 5 \
        and a.last_update["new_items"] == 4
    ia, _ = a.recommend(users[:50], k=10)
    ib, _ = b.recommend(users[:50], k=10)
    assert (ia == ib).mean() > 0.99


def test_partial_fit_itemknn_recomputes_only_touched_items():
    R0, (u, i), full = _split(nu=400, ni=300, density=0.01, hold=0.002, new_users=0,
                              new_items=0)
    a = ItemKNN(k=10).fit(R0).partial_fit((u, i))
    assert a.last_touched < a.n_items  # only the touched items' lists were recomputed
    b = ItemKNN(k=10).fit(full)
    for name in ("indptr", "indices", "values"):
        assert np.array_equal(getattr(a.WT, name), getattr(b.WT, name))


@pytest.mark.parametrize("cls,kw", [(GraphFilter, {"k": 8}), (BSPM, {"k": 8}),
                                    (ChebyCF, {"eta": 8})],
                         ids=["GraphFilter", "BSPM", "ChebyCF"])
def test_partial_fit_svd_models_within_tolerance_with_a_gap(cls, kw):
    """The stated tolerance: with a spectral gap after k (8 planted groups,
    k = 8), the warm-started SVD (2 subspace iterations) gives scores within
    2% (relative Frobenius) of the exact SVD of the union (scipy) and of a
    refit, and top-10 lists that agree with a refit's on >= 95% of items."""
    R0, (u, i), full = _split(nu=400, ni=300, blocks=8, hold=0.03)
    users = np.arange(full.shape[0])
    a = cls(**kw).fit(R0).partial_fit((u, i))
    b = cls(**kw).fit(full)
    Sa, Sb = a.score_block(users), b.score_block(users)
    assert _rel(Sa, Sb) < 0.02
    if cls is GraphFilter:
        ex = GraphFilter(k=8, svd="scipy").fit(full).score_block(users)
        assert _rel(Sa, ex) < 0.02
        assert _rel(Sa, ex) <= 1.5 * _rel(Sb, ex) + 1e-3  # as accurate as a refit
    ia, _ = a.recommend(users, k=10)
    ib, _ = b.recommend(users, k=10)
    overlap = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(ia, ib, strict=False)])
    assert overlap >= 0.95


def test_partial_fit_graph_filter_without_gap_within_refit_spread():
    """Without a spectral gap (uniform random data, k = 32) the top-k
    subspace is ill-determined: a refit with another seed moves the scores
    as much; partial_fit stays within that spread of the refit."""
    R0, (u, i), full = _split()
    users = np.arange(full.shape[0])
    a = GraphFilter(k=32).fit(R0).partial_fit((u, i)).score_block(users)
    b = GraphFilter(k=32).fit(full).score_block(users)
    c = GraphFilter(k=32, seed=1).fit(full).score_block(users)
    assert _rel(a, b) <= 1.2 * _rel(c, b)


def test_partial_fit_original_ids_and_save_load(tmp_path):
    R0, (u, i), full = _split()
    ds = from_csr(R0)
    ds.user_ids = np.array([f"u{k}" for k in range(R0.shape[0])])
    ds.item_ids = np.array([f"i{k}" for k in range(R0.shape[1])])
    m = TurboCF().fit(ds)
    m.partial_fit((np.array([f"u{k}" for k in u]), np.array([f"i{k}" for k in i])))
    assert m.n_users == full.shape[0] and list(m.user_ids[-2:]) == ["u298", "u299"]
    items, _ = m.recommend(["u299"], k=3, original_ids=True)
    assert all(str(x).startswith("i") for x in items[0])
    m.save(tmp_path / "m")
    m2 = TurboCF.load(tmp_path / "m")
    assert np.array_equal(m2.user_ids, m.user_ids)
    np.testing.assert_array_equal(m2.score_block([0, 299]), m.score_block([0, 299]))
    with pytest.raises(ValueError, match="new_interactions.*strings"):
        m.partial_fit(([1, 2], [3, 4]))


def test_partial_fit_input_forms_agree():
    R0, (u, i), full = _split()
    ref = TurboCF().fit(R0).partial_fit((u, i))
    delta = CSR.from_coo(u, i, None, shape=(u.max() + 1, i.max() + 1))
    for arg in (np.stack([u, i], 1), delta, from_csr(delta), (list(u), list(i))):
        m = TurboCF().fit(R0).partial_fit(arg)
        assert np.array_equal(m.train.indices, ref.train.indices)
        assert np.array_equal(m.user_ids, ref.user_ids)


def test_partial_fit_empty_and_repeated_pairs_are_no_ops():
    R0, (u, i), _ = _split()
    m = GraphFilter(k=8).fit(R0)
    left = m.left.copy()
    for arg in ((np.zeros(0, np.int64), np.zeros(0, np.int64)), np.zeros((0, 2), np.int64)):
        m.partial_fit(arg)
        assert m.last_update["added"] == 0 and m.train is not None
    r, c = R0.row_ids()[:20], np.asarray(R0.indices)[:20]
    m.partial_fit((np.concatenate([r, r]), np.concatenate([c, c])))
    assert m.last_update == {**m.last_update, "pairs": 40, "added": 0, "duplicates": 40}
    assert np.array_equal(m.left, left) and m.n_users == R0.shape[0]
    # repeats mixed with new pairs: the new ones added once
    m.partial_fit((np.concatenate([r, u, u]), np.concatenate([c, i, i])))
    assert m.last_update["added"] == len(u) and m.last_update["duplicates"] == 20 + len(u)


def test_partial_fit_bad_input():
    R0, (u, i), _ = _split()
    m = TurboCF().fit(R0)
    n = m.train.nnz
    with pytest.raises(ValueError, match="new_interactions.*negative"):
        m.partial_fit(([-1], [0]))
    with pytest.raises(ValueError, match="new_interactions.*non-integral"):
        m.partial_fit((np.array([0.5]), np.array([1.0])))
    with pytest.raises(ValueError, match="new_interactions.*integers"):
        m.partial_fit((np.array(["a"]), np.array(["b"])))
    with pytest.raises(ValueError, match="new_interactions.*shape"):
        m.partial_fit(np.zeros((3, 3), np.int64))
    with pytest.raises(ValueError, match="new_interactions.*equal lengths"):
        m.partial_fit(([0, 1], [0]))
    with pytest.raises(ValueError, match="new_ids='error'"):
        m.partial_fit((u, i), new_ids="error")
    with pytest.raises(ValueError, match="new_ids must be"):
        m.partial_fit((u, i), new_ids="grow")
    with pytest.raises(TypeError, match="unexpected option"):
        m.partial_fit((u, i), n_iter=3)
    assert m.train.nnz == n  # nothing changed
    m.partial_fit((u, i), new_ids="skip")
    assert m.n_users == R0.shape[0] and m.last_update["skipped"] > 0
    with pytest.raises(ValueError, match="n_iter"):
        GraphFilter(k=4).fit(R0).partial_fit((u, i), n_iter=-1)
    with pytest.raises(RuntimeError, match="fit"):
        TurboCF().partial_fit((u, i))
    e = EASE(max_items=R0.shape[1]).fit(R0)
    with pytest.raises(ValueError, match="max_items.*unchanged"):
        e.partial_fit((u, i))
    assert e.n_items == R0.shape[1]


def _bpr_on(model, users, items, negs):
    import torch

    U, V = model.embeddings()
    s = (U[users] * V[items]).sum(1) - (U[users] * V[negs]).sum(1)
    return float(torch.nn.functional.softplus(-torch.from_numpy(s)).mean())


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_partial_fit_lightgcn_touched_rows_only(ema):
    pytest.importorskip("torch")
    import torch

    R0, (u, i), full = _split(nu=200, ni=150, density=0.06, hold=0.05)
    m = LightGCN(dim=16, layers=2, lr=1e-2, ema=ema).fit(R0, epochs=2, progress=False)
    E_old = m._E0.detach().clone()
    avg_old = None if m._E0_avg is None else m._E0_avg.clone()
    nu0, ni0 = R0.shape
    nu, ni = full.shape
    rng = np.random.default_rng(1)
    negs = rng.integers(0, ni, len(u))
    # new rows enter the "before" loss as the model would initialise them: score the
    # held pairs after 0 steps
    m0 = LightGCN(dim=16, layers=2, lr=1e-2, ema=ema).fit(R0, epochs=2, progress=False)
    m0.partial_fit((u, i), steps=0)
    before = _bpr_on(m0, u, i, negs)
    m.partial_fit((u, i), steps=60)
    after = _bpr_on(m, u, i, negs)
    assert after < before - 0.05
    assert m.update_losses[-1] < m.update_losses[0]
    E = m._E0.detach()
    assert E.shape == (nu + ni, 16)
    touched = set(m.touched_rows.tolist())
    assert touched == set(np.unique(u).tolist()) | {nu + j for j in np.unique(i)}
    old_to_new = [(r, r) for r in range(nu0)] + [(nu0 + j, nu + j) for j in range(ni0)]
    untouched = [(o, n) for o, n in old_to_new if n not in touched]
    assert untouched
    for o, n in untouched:
        assert torch.equal(E[n], E_old[o])
        if avg_old is not None:
            assert torch.equal(m._E0_avg[n], avg_old[o])
    # the new rows start as the model initialises (normal, std init_std) and are touched
    new = [r for r in range(nu0, nu)] + [nu + j for j in range(ni0, ni)]
    assert set(new) <= touched
    # steps=0: new rows only, drawn with std init_std
    E0 = m0._E0.detach()[new]
    assert 0.03 < float(E0.std()) < 0.3
    items, _ = m.recommend([nu - 1], k=5)
    assert items.shape == (1, 5)
    m.fit(full, epochs=1, progress=False)  # training continues (a fresh Adam state)


def test_partial_fit_lightgcn_options():
    pytest.importorskip("torch")
    R0, (u, i), _ = _split(nu=60, ni=40, density=0.1)
    m = LightGCN(dim=8, layers=1).fit(R0, epochs=1, progress=False)
    for kw in ({"steps": -1}, {"lr": 0}, {"batch_size": 0}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            m.partial_fit((u, i), **kw)


def test_warm_svd_rayleigh_ritz():
    """warm_svd (partial_fit's SVD update): from the old matrix's singular
    vectors, one block iteration and a Rayleigh-Ritz step give orthonormal
    vectors spanning the new top-k subspace (a gap after k) as closely as a
    randomized SVD from scratch, and singular values of the new matrix."""
    from hopkit.models.graph_filter import randomized_svd, warm_svd

    R0, (u, i), full = _split(nu=400, ni=300, blocks=8, hold=0.03, new_users=0, new_items=4)
    A0, A = (M.normalize("sym", dtype=np.float32) for M in (R0, full))
    V0 = np.zeros((300, 8), np.float32)
    V0[:296] = randomized_svd(A0, 8, seed=0)[1]
    s, V = warm_svd(A, V0, n_iter=1, seed=1)
    assert V.shape == (300, 8) and V.dtype == np.float32
    np.testing.assert_allclose(V.T @ V, np.eye(8), atol=1e-4)
    _, s_ex, vt = np.linalg.svd(A.to_scipy().toarray())
    np.testing.assert_allclose(s, s_ex[:8], rtol=1e-3)
    # distance of the subspaces: || (I - V V^T) V_exact ||
    Ve = vt[:8].T
    assert np.linalg.norm(Ve - V @ (V.T @ Ve)) < 0.05
    assert np.abs(V[296:]).sum() > 0  # new items enter the subspace
    # an all-zero start column (k larger than the old rank) is left out, not a NaN
    s2, V2 = warm_svd(A, np.zeros((300, 8), np.float32), n_iter=1, oversample=16, seed=0)
    assert np.isfinite(V2).all() and np.isfinite(s2).all()
