import os
import subprocess
import sys

import hopkit
import numpy as np
import pytest
from conftest import BACKENDS, power_law_graph, tol

REDUCES = ["sum", "mean", "max", "min"]


def ref(A, X, reduce, **kw):
    return hopkit.spmm(A, X, reduce, backend="numpy", **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("F", [1, 7, 64, 100])
def test_spmm_matches_reference(rng, backend, reduce, dtype, index_dtype, F):
    A = power_law_graph(120, 90, 1500, rng, index_dtype, values=dtype, empty=(0, 60, 119))
    X = rng.standard_normal((90, F)).astype(dtype)
    Y, arg = hopkit.spmm(A, X, reduce, backend=backend, return_arg=True) if reduce in (
        "max", "min") else (hopkit.spmm(A, X, reduce, backend=backend), None)
    assert Y.dtype == dtype and Y.shape == (120, F)
    if arg is None:
        np.testing.assert_allclose(Y, ref(A, X, reduce), **tol(dtype))
    else:
        Yr, argr = ref(A, X, reduce, return_arg=True)
        np.testing.assert_array_equal(Y, Yr)  # max/min are exact
        np.testing.assert_array_equal(arg, argr)
        assert (arg[0] == -1).all() and (Y[0] == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("message", ["mul", "add"])
@pytest.mark.parametrize("vector", [False, True])
def test_generalized_messages(rng, backend, reduce, message, vector):
    A = power_law_graph(60, 50, 700, rng, values=np.float64, empty=(3,))
    F = 20
    X = rng.standard_normal((50, F))
    E = rng.standard_normal((A.nnz, F) if vector else A.nnz)
    Y = hopkit.spmm(A, X, reduce, E, message=message, backend=backend)
    np.testing.assert_allclose(Y, ref(A, X, reduce, edge_weight=E, message=message),
                               **tol(np.float64))
    # against a dense computation
    D = np.full((60, F), np.nan)
    rows = A.row_ids()
    Eb = E if vector else E[:, None]
    M = X[A.indices] * Eb if message == "mul" else X[A.indices] + Eb
    for i in range(60):
        seg = M[rows == i]
        if len(seg):
            D[i] = {"sum": seg.sum(0), "mean": seg.mean(0), "max": seg.max(0),
                    "min": seg.min(0)}[reduce]
        else:
            D[i] = 0
    np.testing.assert_allclose(Y, D, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
def test_edge_only_messages(rng, backend):
    A = power_law_graph(30, 30, 200, rng)
    E = rng.standard_normal((A.nnz, 4))
    Y = hopkit.spmm(A, None, "sum", E, backend=backend)
    want = np.zeros((30, 4))
    np.add.at(want, A.row_ids(), E)
    np.testing.assert_allclose(Y, want, rtol=1e-12, atol=1e-12)


def test_max_ties_take_first_edge_and_nan_never_wins():
    A = hopkit.CSR([0, 3], [0, 1, 2], shape=(1, 3))
    X = np.array([[1.0, np.nan], [1.0, 2.0], [0.5, 2.0]], dtype=np.float32)
    for be in BACKENDS + ["numpy"]:
        Y, arg = hopkit.spmm(A, X, "max", return_arg=True, backend=be)
        np.testing.assert_array_equal(Y, [[1.0, 2.0]])
        np.testing.assert_array_equal(arg, [[0, 1]])


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
def test_edge_cases(backend):
    X = np.ones((0, 3), dtype=np.float32)
    A0 = hopkit.CSR([0], [], shape=(0, 0))
    assert hopkit.spmm(A0, X, backend=backend).shape == (0, 3)
    A1 = hopkit.CSR([0, 0, 0], [], shape=(2, 4))  # zero edges
    for r in REDUCES:
        Y = hopkit.spmm(A1, np.ones((4, 3)), r, backend=backend)
        np.testing.assert_array_equal(Y, np.zeros((2, 3)))
    # one huge row beside many tiny ones
    rows = np.r_[np.zeros(5000, dtype=np.int64), np.arange(1, 200)]
    cols = np.r_[np.arange(5000) % 300, np.arange(199) % 300]
    A2 = hopkit.CSR.from_coo(rows, cols, shape=(200, 300), sum_duplicates=False)
    X2 = np.random.default_rng(0).standard_normal((300, 8))
    np.testing.assert_allclose(hopkit.spmm(A2, X2, "mean", backend=backend),
                               ref(A2, X2, "mean"), rtol=1e-10)


def test_noncontiguous_input_is_copied(rng):
    A = power_law_graph(20, 20, 100, rng)
    X = rng.standard_normal((20, 8))
    np.testing.assert_allclose(hopkit.spmm(A, X[:, ::2]), hopkit.spmm(A, X[:, ::2].copy()))
    Xf = np.asfortranarray(X)
    np.testing.assert_allclose(hopkit.spmm(A, Xf), hopkit.spmm(A, X))


def test_spmm_matches_scipy(rng):
    A = power_law_graph(200, 150, 3000, rng, values=np.float64)
    X = rng.standard_normal((150, 16))
    np.testing.assert_allclose(hopkit.spmm(A, X), A.to_scipy() @ X, rtol=1e-12)


# ------------------------------------------------------------------ errors
def test_spmm_errors(rng):
    A = power_law_graph(10, 8, 40, rng, values=np.float32)
    X = np.ones((8, 4), dtype=np.float32)
    with pytest.raises(ValueError, match=r"spmm: X must have 8 rows, got 7"):
        hopkit.spmm(A, X[:7])
    with pytest.raises(TypeError, match="spmm: X must be float32 or float64, got int64"):
        hopkit.spmm(A, np.ones((8, 4), dtype=np.int64))
    with pytest.raises(ValueError, match=r"spmm: X must be 2-D, got shape \(8,\)"):
        hopkit.spmm(A, np.ones(8, dtype=np.float32))
    with pytest.raises(ValueError, match="spmm: reduce must be one of"):
        hopkit.spmm(A, X, "prod")
    with pytest.raises(ValueError, match="spmm: message must be one of"):
        hopkit.spmm(A, X, message="div")
    with pytest.raises(ValueError, match=r"edge_weight must have shape \(40,\) or \(40, 4\)"):
        hopkit.spmm(A, X, edge_weight=np.ones(39, dtype=np.float32))
    with pytest.raises(TypeError, match="edge_weight must have the dtype of X"):
        hopkit.spmm(A, X, edge_weight=np.ones(40))
    with pytest.raises(ValueError, match="backend must be one of"):
        hopkit.spmm(A, X, backend="gpu")
    with pytest.raises(TypeError, match="A must be a hopkit.CSR"):
        hopkit.spmm(np.eye(3), X)
    with pytest.raises(ValueError, match="return_arg needs reduce='max' or 'min'"):
        hopkit.spmm(A, X, return_arg=True)


def test_numpy_api_without_torch():
    """The NumPy API must work with torch absent (import blocked)."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, hopkit\n"
        "A = hopkit.CSR.from_coo([0, 1, 1], [1, 0, 1], [1.0, 2.0, 3.0])\n"
        "Y = hopkit.spmm(A, np.ones((2, 3)), 'max')\n"
        "assert type(Y) is np.ndarray and Y.tolist() == [[1.0] * 3, [3.0] * 3]\n"
        "e = hopkit.sddmm(A, np.ones((2, 3)), np.ones((2, 3)))\n"
        "assert e.tolist() == [3.0] * 3\n"
        "hopkit.show_config()\n"
        "print('ok')\n"
    )
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_backend_env_var(monkeypatch, rng):
    from hopkit import _backend

    A = power_law_graph(20, 20, 80, rng)
    X = rng.standard_normal((20, 3))
    monkeypatch.setenv("HOPKIT_BACKEND", "numpy")
    assert _backend.resolve(None) is _backend.reference_module()
    np.testing.assert_allclose(hopkit.spmm(A, X), ref(A, X, "sum"))
    monkeypatch.setenv("HOPKIT_BACKEND", "cuda-please")
    with pytest.raises(ValueError, match="spmm: backend must be one of"):
        hopkit.spmm(A, X)


def test_fallback_warns_once_when_native_missing(monkeypatch, rng):
    from hopkit import _backend

    A = power_law_graph(20, 20, 80, rng)
    X = rng.standard_normal((20, 3))
    monkeypatch.setitem(_backend._cache, "native", None)
    monkeypatch.setattr(_backend, "_warned", False)
    with pytest.warns(RuntimeWarning, match="native extension not available"):
        Y = hopkit.spmm(A, X)
    np.testing.assert_allclose(Y, ref(A, X, "sum"))
    with pytest.raises(ValueError, match="backend='native' requested but"):
        hopkit.spmm(A, X, backend="native")


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
def test_grad_on_a_transpose_with_edge_weights(backend):
    """A made by .T: A.T is the cached original (no perm), so the X gradient
    must read the edge weights through the inverse of A.perm."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    B = hopkit.CSR.from_coo(rng.integers(0, 6, 40), rng.integers(0, 5, 40), shape=(6, 5),
                            sum_duplicates=False)
    A = B.T
    X = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    E = torch.rand(A.nnz, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda x, e: hopkit.spmm(A, x, "sum", e, backend=backend), (X, E))
