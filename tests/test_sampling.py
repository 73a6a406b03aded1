"""Negative sampler: every backend equals the NumPy reference bit for bit,
samples avoid positives, are uniform, reproducible, and errors are clear."""

import hopkit
import numpy as np
import pytest
from conftest import BACKENDS, power_law_graph


def graph(rng, index_dtype=np.int64):
    A = power_law_graph(200, 150, 3000, rng, index_dtype)
    # dedup rows (the sampler needs sorted duplicate-free rows) and add a full row
    A = hopkit.CSR.from_coo(A.row_ids(), np.asarray(A.indices, np.int64), shape=A.shape)
    rows = np.r_[A.row_ids(), np.full(150, 199)]
    cols = np.r_[np.asarray(A.indices, np.int64), np.arange(150)]
    keep = rows != 198  # row 198 empty
    return hopkit.CSR.from_coo(rows[keep].astype(index_dtype), cols[keep].astype(index_dtype),
                               shape=A.shape)


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("user_dtype", [np.int32, np.int64])
def test_matches_reference_and_avoids_positives(rng, backend, index_dtype, user_dtype):
    R = graph(rng, index_dtype)
    users = rng.integers(0, R.n_rows, 500).astype(user_dtype)
    users[:3] = [0, 198, 199]
    neg = hopkit.sample_negatives(R, users, n_neg=4, seed=7, backend=backend)
    ref = hopkit.sample_negatives(R, users, n_neg=4, seed=7, backend="numpy")
    assert neg.dtype == user_dtype and neg.shape == (500, 4)
    np.testing.assert_array_equal(neg, ref)
    D = R.to_scipy().toarray() > 0
    assert (neg[2] == -1).all()  # user 199 has every item
    ok = neg[users != 199]
    assert ((ok >= 0) & (ok < R.n_cols)).all()
    assert not D[np.repeat(users[users != 199], 4), ok.ravel()].any()


def test_dense_row_fallback_is_exact_and_uniform():
    # user 0 has all items but 3 and 97: rejection fails, the exact fallback picks
    cols = np.setdiff1d(np.arange(100), [3, 97])
    R = hopkit.CSR.from_coo(np.zeros(cols.size, np.int64), cols, shape=(1, 100))
    for be in BACKENDS + ["numpy"]:
        neg = hopkit.sample_negatives(R, np.zeros(4000, np.int64), 1, seed=1, backend=be)
        assert set(np.unique(neg).tolist()) == {3, 97}
        assert abs((neg == 3).mean() - 0.5) < 0.05


def test_uniform_and_seeded():
    R = hopkit.CSR.from_coo(np.array([0, 0]), np.array([1, 4]), shape=(1, 10))
    neg = hopkit.sample_negatives(R, np.zeros(40000, np.int64), 1, seed=3)[:, 0]
    counts = np.bincount(neg, minlength=10)
    assert counts[1] == counts[4] == 0
    expected = 40000 / 8
    assert np.all(np.abs(counts[counts > 0] - expected) < 5 * np.sqrt(expected))
    again = hopkit.sample_negatives(R, np.zeros(40000, np.int64), 1, seed=3)[:, 0]
    other = hopkit.sample_negatives(R, np.zeros(40000, np.int64), 1, seed=4)[:, 0]
    np.testing.assert_array_equal(neg, again)
    assert (neg != other).mean() > 0.5


def test_thread_count_independent(rng):
    if "native" not in BACKENDS:
        pytest.skip("native extension not built")
    R = graph(rng)
    users = rng.integers(0, R.n_rows, 300000)
    n0 = hopkit.get_num_threads()
    try:
        hopkit.set_num_threads(1)
        a = hopkit.sample_negatives(R, users, seed=11)
        hopkit.set_num_threads(max(2, n0))
        b = hopkit.sample_negatives(R, users, seed=11)
    finally:
        hopkit.set_num_threads(n0)
    np.testing.assert_array_equal(a, b)


def test_bpr_triples(rng):
    R = graph(rng)
    u, p, n = hopkit.bpr_triples(R, seed=5)
    assert u.shape == p.shape == n.shape == (R.nnz,)
    D = R.to_scipy().toarray() > 0
    assert D[u, p].all()
    assert sorted(zip(u.tolist(), p.tolist(), strict=True)) == sorted(zip(R.row_ids().tolist(),
                                                             R.indices.tolist(), strict=True))
    full = u == 199
    assert (n[full] == -1).all() and not D[u[~full], n[~full]].any()
    u2, p2, n2 = hopkit.bpr_triples(R, seed=5)
    np.testing.assert_array_equal(n, n2)


def test_bpr_triples_user_uniform(rng):
    R = graph(rng)
    u, p, n = hopkit.bpr_triples(R, seed=5, sampling="users")
    assert u.shape == p.shape == n.shape == (R.nnz,)
    D = R.to_scipy().toarray() > 0
    assert D[u, p].all()
    full = u == 199
    assert (n[full] == -1).all() and not D[u[~full], n[~full]].any()
    # users uniform over those with items, whatever their degree (pairs mode
    # draws them in proportion to it); positives uniform within the row
    deg = R.row_degree()
    big = []
    for s in range(40):
        u, p, _ = hopkit.bpr_triples(R, seed=s, sampling="users")
        big.append((u, p))
    u = np.concatenate([a for a, _ in big])
    p = np.concatenate([b for _, b in big])
    counts = np.bincount(u, minlength=R.n_rows)
    assert (counts[deg == 0] == 0).all()
    active = deg > 0
    expect = len(u) / active.sum()
    assert np.abs(counts[active] - expect).max() < 6 * np.sqrt(expect)
    assert np.corrcoef(counts[active], deg[active])[0, 1] < 0.3
    top = int(np.argmax(deg))
    items = p[u == top]
    hist = np.bincount(items, minlength=R.n_cols)[R.indices[R.indptr[top]:R.indptr[top + 1]]]
    assert hist.sum() == len(items)
    assert np.abs(hist - len(items) / len(hist)).max() < 6 * np.sqrt(len(items) / len(hist))
    np.testing.assert_array_equal(hopkit.bpr_triples(R, seed=5, sampling="users")[2],
                                  hopkit.bpr_triples(R, seed=5, sampling="users")[2])
    with pytest.raises(ValueError, match="bpr_triples: sampling must be one of"):
        hopkit.bpr_triples(R, sampling="edges")


def test_torch_in_torch_out(rng):
    torch = pytest.importorskip("torch")
    R = graph(rng)
    out = hopkit.sample_negatives(R, torch.arange(10), 2, seed=1)
    assert isinstance(out, torch.Tensor) and out.shape == (10, 2) and out.dtype == torch.int64


def test_errors():
    R = hopkit.CSR.from_coo(np.array([0, 1]), np.array([1, 2]), shape=(2, 3))
    with pytest.raises(ValueError, match=r"sample_negatives: users must lie in \[0, 2\).*"
                                         r"users\[1\] = 5"):
        hopkit.sample_negatives(R, np.array([0, 5]))
    with pytest.raises(TypeError, match="sample_negatives: users must have an integer dtype"):
        hopkit.sample_negatives(R, np.array([0.0]))
    with pytest.raises(ValueError, match="sample_negatives: n_neg must be an integer >= 0"):
        hopkit.sample_negatives(R, np.array([0]), n_neg=-1)
    with pytest.raises(ValueError, match=r"sample_negatives: seed must be an integer in"):
        hopkit.sample_negatives(R, np.array([0]), seed=-3)
    U = hopkit.CSR(np.array([0, 2]), np.array([2, 1]), shape=(1, 3))
    with pytest.raises(ValueError, match="sorted, duplicate-free columns"):
        hopkit.sample_negatives(U, np.array([0]))
    assert hopkit.sample_negatives(R, np.array([0, 1]), n_neg=0).shape == (2, 0)


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
@pytest.mark.parametrize("n_cols", [3 * 2**30, 2**32 - 1])
def test_wide_catalogue_int32_users_gives_valid_ids(backend, n_cols):
    # issue 13 item 3: int32 users made the output int32, so ids >= 2**31 wrapped negative
    R = hopkit.CSR.from_coo([0, 1], [3, n_cols - 2], shape=(2, n_cols))
    users = np.array([0, 1, 1, 0], dtype=np.int32)
    out = hopkit.sample_negatives(R, users, 64, seed=3, backend=backend)
    assert out.dtype == np.int64
    assert out.min() >= 0 and out.max() < n_cols and (out >= 2**31).any()
    np.testing.assert_array_equal(out, hopkit.sample_negatives(R, users.astype(np.int64), 64,
                                                               seed=3, backend=backend))
    small = hopkit.CSR.from_coo([0], [3], shape=(1, 2**31))  # ids up to 2**31 - 1: int32 holds them
    assert hopkit.sample_negatives(small, users[:1], 2, backend=backend).dtype == np.int32


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
def test_no_interactions_at_all(backend):
    # issue 13 item 5: the NumPy backend raised IndexError when R.nnz == 0
    R = hopkit.CSR([0, 0, 0], [], shape=(2, 5))
    out = hopkit.sample_negatives(R, np.array([0, 1, 1]), 7, seed=11, backend=backend)
    assert out.shape == (3, 7) and out.min() >= 0 and out.max() < 5
    np.testing.assert_array_equal(out, hopkit.sample_negatives(R, np.array([0, 1, 1]), 7,
                                                               seed=11, backend="numpy"))
    R0 = hopkit.CSR([0, 0], [], shape=(1, 0))  # no items: every user is "full"
    np.testing.assert_array_equal(hopkit.sample_negatives(R0, [0], 2, backend=backend), [[-1, -1]])
