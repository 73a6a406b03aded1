import hopkit
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import power_law_graph


@pytest.mark.parametrize("backend", ["native", "numpy"])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_from_coo_matches_scipy(rng, backend, index_dtype):
    if backend == "native" and hopkit.config()["backends"]["native"] is False:
        pytest.skip("native extension not built")
    n, m, nnz = 300, 200, 5000
    r = rng.integers(0, n, nnz).astype(index_dtype)
    c = rng.integers(0, m, nnz).astype(index_dtype)
    v = rng.standard_normal(nnz)
    A = hopkit.CSR.from_coo(r, c, v, shape=(n, m), backend=backend)
    S = sp.coo_matrix((v, (r, c)), shape=(n, m)).tocsr()
    S.sum_duplicates()
    S.sort_indices()
    assert A.indices.dtype == index_dtype
    np.testing.assert_array_equal(A.indptr, S.indptr)
    np.testing.assert_array_equal(A.indices, S.indices)
    np.testing.assert_allclose(A.values, S.data, rtol=1e-12)


def test_from_coo_keeps_duplicates_in_input_order(rng):
    A = hopkit.CSR.from_coo([1, 0, 1, 1], [2, 0, 2, 0], [1.0, 2.0, 3.0, 4.0], shape=(2, 3),
                            sum_duplicates=False)
    np.testing.assert_array_equal(A.indptr, [0, 1, 4])
    np.testing.assert_array_equal(A.indices, [0, 0, 2, 2])
    np.testing.assert_array_equal(A.values, [2.0, 4.0, 1.0, 3.0])


def test_pattern_duplicates_collapse():
    A = hopkit.CSR.from_coo([0, 0, 0], [1, 1, 2], shape=(1, 3))
    np.testing.assert_array_equal(A.indices, [1, 2])
    assert A.values is None


def test_transpose_cached_and_correct(rng):
    A = power_law_graph(50, 70, 600, rng, values=np.float64)
    T = A.T
    assert A.T is T and T.T is A
    np.testing.assert_allclose(T.to_scipy().toarray(), A.to_scipy().toarray().T)
    np.testing.assert_array_equal(T.values, A.values[T.perm])
    for r in range(T.n_rows):  # sorted within rows
        seg = T.indices[T.indptr[r]:T.indptr[r + 1]]
        assert np.all(np.diff(seg) >= 0)


def test_edge_index_pyg_convention():
    ei = np.array([[0, 1, 2], [1, 2, 0]])  # 0->1, 1->2, 2->0
    A = hopkit.CSR.from_edge_index(ei)
    X = np.array([[1.0], [10.0], [100.0]])
    np.testing.assert_allclose(hopkit.spmm(A, X), [[100.0], [1.0], [10.0]])
    np.testing.assert_array_equal(A.to_edge_index(), ei[:, [2, 0, 1]])


def test_scipy_and_torch_round_trip(rng):
    torch = pytest.importorskip("torch")
    A = power_law_graph(40, 30, 300, rng, values=np.float32)
    B = hopkit.CSR.from_scipy(A.to_scipy())
    np.testing.assert_array_equal(B.indices, A.indices)
    C = hopkit.CSR.from_torch(A.to_torch())
    np.testing.assert_allclose(C.to_scipy().toarray(), A.to_scipy().toarray())
    D = hopkit.CSR.from_torch(A.to_torch().to_sparse_coo())
    np.testing.assert_allclose(D.to_scipy().toarray(), A.to_scipy().toarray(), rtol=1e-6)
    assert isinstance(A.to_torch(), torch.Tensor)


@pytest.mark.parametrize("kind", ["sym", "row", "col"])
def test_normalize(rng, kind):
    A = power_law_graph(30, 30, 200, rng, values=np.float64, empty=(5,))
    D = A.to_scipy().toarray()
    r, c = D.sum(1), D.sum(0)
    with np.errstate(divide="ignore"):
        ir = np.where(r > 0, 1 / r, 0)
        ic = np.where(c > 0, 1 / c, 0)
    want = {"sym": np.sqrt(ir)[:, None] * D * np.sqrt(ic)[None],
            "row": ir[:, None] * D, "col": D * ic[None]}[kind]
    np.testing.assert_allclose(A.normalize(kind).to_scipy().toarray(), want, rtol=1e-12)


def test_bipartite_adjacency(rng):
    R = hopkit.CSR.from_coo([0, 0, 1, 2], [0, 1, 1, 3], shape=(3, 4))
    A = hopkit.bipartite_adjacency(R, normalize=None)
    D = A.to_scipy().toarray()
    Rd = R.to_scipy().toarray()
    np.testing.assert_array_equal(D[:3, 3:], Rd)
    np.testing.assert_array_equal(D[3:, :3], Rd.T)
    assert D[:3, :3].sum() == 0 and D[3:, 3:].sum() == 0
    An = hopkit.bipartite_adjacency(R)
    deg = D.sum(1)
    inv = np.where(deg > 0, np.sqrt(np.maximum(deg, 1e-300)) ** -1, 0)
    np.testing.assert_allclose(An.to_scipy().toarray(), inv[:, None] * D * inv[None], rtol=1e-6)
    assert An.values.dtype == np.float32


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("kwargs,msg", [
    (dict(indptr=[1, 2], indices=[0]), "indptr must start at 0"),
    (dict(indptr=[0, 2], indices=[0]), r"indptr must end at nnz = len\(indices\) = 1"),
    (dict(indptr=[0, 2, 1, 2], indices=[0, 1]), r"non-decreasing; indptr\[2\] = 1"),
    (dict(indptr=[0, 1, 2], indices=[0, 5], shape=(2, 3)), r"indices\[1\] = 5"),
    (dict(indptr=[0, 1, 2], indices=[0, -1], shape=(2, 3)), r"indices\[1\] = -1"),
    (dict(indptr=[0, 1], indices=[0], values=[np.nan]), r"values\[0\] is nan"),
    (dict(indptr=[0, 1], indices=[0], values=[1.0, 2.0]), r"values must have shape \(1,\)"),
    (dict(indptr=[0, 1], indices=[0], shape=(3, 3)), "shape must be"),
])
def test_csr_validation(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        hopkit.CSR(**kwargs)


def test_csr_dtype_errors():
    with pytest.raises(TypeError, match="indices must have an integer dtype"):
        hopkit.CSR([0, 1], [0.5])
    with pytest.raises(TypeError, match="values must be float32 or float64"):
        hopkit.CSR([0, 1], [0], values=np.array([1], dtype=np.int32))


@pytest.mark.parametrize("backend", ["native", "numpy"])
def test_from_coo_errors(backend):
    with pytest.raises(ValueError, match=r"row must lie in \[0, 2\); row\[1\] = 7"):
        hopkit.CSR.from_coo([0, 7], [0, 0], shape=(2, 2), backend=backend)
    with pytest.raises(ValueError, match=r"col must lie in \[0, 2\); col\[0\] = -3"):
        hopkit.CSR.from_coo([0, 1], [-3, 0], shape=(2, 2), backend=backend)
    with pytest.raises(ValueError, match="col must have length 2"):
        hopkit.CSR.from_coo([0, 1], [0], shape=(2, 2), backend=backend)


def test_caller_arrays_untouched(rng):
    r = rng.integers(0, 20, 100)
    c = rng.integers(0, 20, 100)
    v = rng.standard_normal(100)
    r0, c0, v0 = r.copy(), c.copy(), v.copy()
    A = hopkit.CSR.from_coo(r, c, v, shape=(20, 20))
    assert A.T.nnz == A.nnz
    A.normalize()
    np.testing.assert_array_equal(r, r0)
    np.testing.assert_array_equal(c, c0)
    np.testing.assert_array_equal(v, v0)
    with pytest.raises(ValueError):
        A.indices[0] = 1  # hopkit's views are read-only


def test_empty_graphs():
    A = hopkit.CSR([0], [], shape=(0, 0))
    assert A.nnz == 0 and A.T.shape == (0, 0)
    B = hopkit.CSR.from_coo([], [], shape=(3, 4))
    np.testing.assert_array_equal(B.indptr, [0, 0, 0, 0])
    assert B.T.shape == (4, 3)


@pytest.mark.parametrize("n_cols", [50, 2**33])  # 32-bit and 64-bit radix keys
def test_from_coo_wide_and_long_rows(rng, n_cols):
    n, nnz = 1500, 20000
    r = np.r_[np.zeros(5000, dtype=np.int64), rng.integers(0, n, nnz - 5000)]
    c = rng.integers(0, min(n_cols, 10**12), nnz)
    c[::7] = n_cols - 1
    v = rng.standard_normal(nnz)
    A = hopkit.CSR.from_coo(r, c, v, shape=(n, n_cols))
    key = r * n_cols + c
    order = np.argsort(key, kind="stable")
    uk, first = np.unique(key[order], return_index=True)
    sums = np.add.reduceat(v[order], first)
    np.testing.assert_array_equal(A.indices, uk % n_cols)
    np.testing.assert_array_equal(A.indptr, np.r_[0, np.cumsum(np.bincount(uk // n_cols,
                                                                           minlength=n))])
    np.testing.assert_allclose(A.values, sums, rtol=1e-12)


@pytest.mark.parametrize("shape", [(3000, 1), (3000, 70000), (2**20, 2**30)])
def test_from_coo_parallel_paths(rng, shape):
    # Big enough for the threaded chunks and blocks; (n, 1) takes the no-column-pass
    # path, (2**20, 2**30) int32 indices with 64-bit keys in a scratch array.
    n, m = shape
    nnz = 200_000
    r = rng.integers(0, min(n, 3000), nnz).astype(np.int32)
    r[::5] = n - 1
    c = rng.integers(0, min(m, 5000), nnz).astype(np.int32)
    c[::3] = m - 1
    v = rng.standard_normal(nnz).astype(np.float32)
    order = np.lexsort((c, r))  # stable: duplicates in input order
    A = hopkit.CSR.from_coo(r, c, v, shape, sum_duplicates=False)
    np.testing.assert_array_equal(A.indices, c[order])
    np.testing.assert_array_equal(A.values, v[order])
    np.testing.assert_array_equal(A.indptr, np.r_[0, np.cumsum(np.bincount(r, minlength=n))])
    B = hopkit.CSR.from_coo(r, c, v, shape)
    S = sp.coo_matrix((v.astype(np.float64), (r, c)), shape=shape).tocsr()
    S.sum_duplicates()
    np.testing.assert_array_equal(B.indptr, S.indptr)
    np.testing.assert_array_equal(B.indices, S.indices)
    np.testing.assert_allclose(B.values, S.data, rtol=1e-5, atol=1e-5)


def test_from_coo_first_bad_position_across_chunks(rng):
    nnz = 400_000
    r = rng.integers(0, 100, nnz)
    c = rng.integers(0, 100, nnz)
    r[350_000] = 100  # later chunk
    c[250_001] = -1   # earlier chunk: reported first
    with pytest.raises(ValueError, match=r"col must lie in \[0, 100\); col\[250001\] = -1"):
        hopkit.CSR.from_coo(r, c, shape=(100, 100))
    c[250_001] = 0
    with pytest.raises(ValueError, match=r"row must lie in \[0, 100\); row\[350000\] = 100"):
        hopkit.CSR.from_coo(r, c, shape=(100, 100))


# ------------------------------------------------------------------ issue 13: hostile shapes
FROM_COO_BACKENDS = ["native", "numba", "numpy"]


def _from_coo_or_skip(backend, *args, **kwargs):
    if backend == "native" and not hopkit.config()["backends"]["native"]:
        pytest.skip("native extension not built")
    if backend == "numba" and not hopkit.config()["backends"]["numba"]:
        pytest.skip("numba not installed")
    return hopkit.CSR.from_coo(*args, backend=backend, **kwargs)


def test_from_coo_huge_n_cols_returns():
    # The native sort-key setup looped forever (shift by 64) for n_cols > 2**62, ignoring
    # Ctrl-C: run it in a subprocess so a regression fails instead of hanging the suite.
    import os
    import subprocess
    import sys

    code = ("import hopkit; A = hopkit.CSR.from_coo([0, 0], [2**62 + 7, 3], shape=(1, 2**63 - 1), "
            "backend='native'); print(A.indices.tolist())")
    if not hopkit.config()["backends"]["native"]:
        pytest.skip("native extension not built")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str([3, 2**62 + 7])


@pytest.mark.parametrize("backend", FROM_COO_BACKENDS)
@pytest.mark.parametrize("n_rows, n_cols, index_dtype", [
    (4096, 2**62, np.int64),        # row-block bits + column bits > 64
    (100_000, 2**63 - 1, np.int64),
    (1, 2**32, np.int32),           # 32-bit key with 32 column bits (shift by 32)
    (600, 2**31, np.int32),
])
def test_from_coo_wide_keys_keep_rows(rng, backend, n_rows, n_cols, index_dtype):
    nnz = 3000
    hi = min(n_cols, np.iinfo(index_dtype).max)
    r = rng.integers(0, n_rows, nnz).astype(index_dtype)
    c = rng.integers(0, hi, nnz, dtype=np.int64).astype(index_dtype)
    r[:2], c[:2] = n_rows - 1, [0, hi - 1]
    A = _from_coo_or_skip(backend, r, c, shape=(n_rows, n_cols), sum_duplicates=False)
    order = np.lexsort((c, r))
    np.testing.assert_array_equal(A.row_ids(), r[order])
    np.testing.assert_array_equal(A.indices, c[order])
    B = _from_coo_or_skip(backend, [n_rows - 1], [0], shape=(n_rows, n_cols))
    assert B.row_ids().tolist() == [n_rows - 1]


@pytest.mark.parametrize("kind", ["sym", "row", "col"])
def test_normalize_no_nonzeros(kind):
    for A in (hopkit.CSR([0, 0], [], shape=(1, 3)),
              hopkit.CSR([0, 0], np.array([], np.int32), np.array([], np.float64), (1, 3))):
        N = A.normalize(kind)
        assert N.shape == (1, 3) and N.nnz == 0 and N.values.shape == (0,)


@pytest.mark.parametrize("normalize", ["sym", None])
def test_bipartite_adjacency_no_nonzeros(normalize):
    A = hopkit.bipartite_adjacency(hopkit.CSR([0, 0, 0], [], shape=(2, 3)), normalize=normalize)
    assert A.shape == (5, 5) and A.nnz == 0
    np.testing.assert_array_equal(A.indptr, np.zeros(6))


def test_from_scipy_non_real_data_is_type_error():
    for data in (np.array([1 + 2j]), np.array([1 + 0j], np.complex64)):
        m = sp.csr_matrix((data, [0], [0, 1]), shape=(1, 2))
        with pytest.raises(TypeError, match=r"CSR.from_scipy: the matrix must have real values; "
                                            r"got dtype complex"):
            hopkit.CSR.from_scipy(m)
    for data, dtype in ((np.array([3]), np.float64), (np.array([True]), np.float32),
                        (np.array([2], np.float16), np.float32)):
        A = hopkit.CSR.from_scipy(sp.csr_matrix((data, [1], [0, 1]), shape=(1, 2)))
        assert A.values.dtype == dtype and A.values[0] == data[0]


@pytest.mark.parametrize("shape", [(1.0, 4.5), (1, 4.0), (1.0, 4), (True, 3), (1, "4"),
                                   (1, None), (1,), (1, 2, 3), 5])
def test_shape_must_be_integers(shape):
    with pytest.raises(ValueError, match=r"CSR: shape must be two integers \(n_rows, n_cols\)"):
        hopkit.CSR([0, 1], [0], shape=shape)
    with pytest.raises(ValueError, match=r"CSR.from_coo: shape must be two integers"):
        hopkit.CSR.from_coo([0], [0], shape=shape)


def test_shape_accepts_numpy_integers():
    A = hopkit.CSR([0, 1], [0], shape=(np.int32(1), np.int64(4)))
    assert A.shape == (1, 4) and all(type(s) is int for s in A.shape)
    B = hopkit.CSR.from_coo([0], [3], shape=np.array([1, 4]))
    assert B.shape == (1, 4) and all(type(s) is int for s in B.shape)


def test_select_rows_matches_scipy(rng):
    CSR = hopkit.CSR
    A = CSR.from_coo(rng.integers(0, 50, 400), rng.integers(0, 30, 400),
                     rng.standard_normal(400).astype(np.float32), shape=(50, 30))
    for rows in ([], [3], [49, 0, 3, 3], rng.integers(0, 50, 80)):
        got = A.select_rows(np.asarray(rows, np.int64))
        want = A.to_scipy()[np.asarray(rows, np.int64)]
        assert got.shape == want.shape
        np.testing.assert_array_equal(got.indptr, want.indptr)
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_array_equal(got.values, want.data)
    assert CSR.from_coo([0, 1], [1, 0], shape=(2, 2)).select_rows([1]).values is None
