import hopkit
import numpy as np
import pytest
from conftest import BACKENDS, power_law_graph, tol
from hopkit.ops.propagate import layer_weights

COMBINES = ["mean", "sum", "last", [0.5, -1.0, 2.0, 0.25]]


def dense_propagate(A, X, alpha, w=None):
    D = np.zeros(A.shape)
    vals = w if w is not None else (A.values if A.values is not None else np.ones(A.nnz))
    np.add.at(D, (A.row_ids(), A.indices.astype(np.int64)), vals)
    out = np.zeros((A.n_rows, X.shape[1]))
    H = X.astype(np.float64)
    if alpha[0]:
        out += alpha[0] * H
    for a in alpha[1:]:
        H = D @ H
        out += a * H
    return out


def square_graph(rng, n=70, nnz=600, index_dtype=np.int64, values=np.float64):
    return power_law_graph(n, n, nnz, rng, index_dtype, values=values, empty=(0, n // 2, n - 1))


@pytest.mark.parametrize("layers", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("combine", ["mean", "sum", "last"])
def test_reference_matches_dense(rng, layers, combine):
    A = square_graph(rng)
    X = rng.standard_normal((70, 5))
    alpha = layer_weights("t", layers, combine)
    Y = hopkit.propagate(A, X, layers, combine, backend="numpy")
    np.testing.assert_allclose(Y, dense_propagate(A, X, alpha), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("combine", COMBINES)
@pytest.mark.parametrize("F", [1, 7, 64, 100])
def test_propagate_matches_reference(rng, backend, dtype, index_dtype, combine, F):
    A = square_graph(rng, index_dtype=index_dtype, values=dtype)
    A = A.normalize("sym")  # keep A^l X bounded for float32 tolerances
    X = rng.standard_normal((70, F)).astype(dtype)
    Y = hopkit.propagate(A, X, 3, combine, backend=backend)
    assert Y.dtype == dtype and Y.shape == (70, F)
    np.testing.assert_allclose(Y, hopkit.propagate(A, X, 3, combine, backend="numpy"),
                               **tol(dtype))


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
@pytest.mark.parametrize("layers", [0, 1, 2, 5])
def test_layers_edge_weight_and_pattern_only(rng, backend, layers):
    A = square_graph(rng)
    X = rng.standard_normal((70, 6))
    w = rng.uniform(0.1, 0.5, A.nnz)
    alpha = np.linspace(1.0, 0.2, layers + 1)
    Y = hopkit.propagate(A, X, layers, alpha, edge_weight=w, backend=backend)
    np.testing.assert_allclose(Y, dense_propagate(A, X, alpha, w), rtol=1e-10, atol=1e-10)
    P = hopkit.CSR(A.indptr, A.indices, shape=A.shape)  # no values: weight 1
    Y = hopkit.propagate(P, X / 10, layers, "sum", backend=backend)
    np.testing.assert_allclose(Y, dense_propagate(P, X / 10, np.ones(layers + 1)),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
def test_rectangular_single_hop_and_edge_cases(rng, backend):
    A = power_law_graph(30, 20, 150, rng, values=np.float64, empty=(0, 29))
    X = rng.standard_normal((20, 4))
    Y = hopkit.propagate(A, X, 1, "last", backend=backend)
    np.testing.assert_allclose(Y, hopkit.spmm(A, X, backend="numpy"), rtol=1e-12)
    Y = hopkit.propagate(A, X, 1, [0.0, 3.0], backend=backend)
    np.testing.assert_allclose(Y, 3 * hopkit.spmm(A, X, backend="numpy"), rtol=1e-12)
    A0 = hopkit.CSR([0], [], shape=(0, 0))  # zero nodes
    assert hopkit.propagate(A0, np.ones((0, 3)), 3, backend=backend).shape == (0, 3)
    A1 = hopkit.CSR([0, 0, 0, 0], [], shape=(3, 3))  # zero edges: only layer 0 survives
    np.testing.assert_allclose(hopkit.propagate(A1, np.ones((3, 2)), 3, backend=backend),
                               np.full((3, 2), 0.25))
    A2 = hopkit.CSR([0, 1], [0], [2.0], shape=(1, 1))  # single node with a self loop
    np.testing.assert_allclose(hopkit.propagate(A2, np.ones((1, 1)), 2, "sum", backend=backend),
                               [[1 + 2 + 4]])


def test_matches_chained_spmm_and_torch_types(rng):
    torch = pytest.importorskip("torch")
    A = square_graph(rng, values=np.float32).normalize("sym")
    X = torch.randn(70, 16)
    Y = hopkit.propagate(A, X, 3)
    assert isinstance(Y, torch.Tensor) and Y.dtype == torch.float32
    H, acc = X, X.clone()
    for _ in range(3):
        H = hopkit.spmm(A, H)
        acc = acc + H
    torch.testing.assert_close(Y, acc / 4, rtol=2e-5, atol=2e-5)


def test_does_not_modify_inputs(rng):
    A = square_graph(rng)
    X = rng.standard_normal((70, 3))
    X0, v0 = X.copy(), A.values.copy()
    hopkit.propagate(A, X, 4)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(A.values, v0)


# ------------------------------------------------------------------ autograd
@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
@pytest.mark.parametrize("combine", ["mean", "last", [0.3, -0.7, 1.1, 0.5]])
def test_gradcheck(rng, backend, combine):
    torch = pytest.importorskip("torch")
    A = power_law_graph(12, 12, 45, rng, values=np.float64, empty=(0, 5, 11))  # isolated too
    X = torch.tensor(rng.standard_normal((12, 3)), requires_grad=True)
    fn = lambda X: hopkit.propagate(A, X, 3, combine, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (X,))
    w = torch.tensor(rng.uniform(0.5, 1.5, A.nnz))  # explicit weights: read via A.T.perm
    fn = lambda X: hopkit.propagate(A, X, 3, combine, edge_weight=w, backend=backend)  # noqa
    assert torch.autograd.gradcheck(fn, (X,))


def test_gradcheck_rectangular_and_single_node():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    A = power_law_graph(9, 6, 20, rng, values=np.float64, empty=(2,))
    X = torch.tensor(rng.standard_normal((6, 2)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda X: hopkit.propagate(A, X, 1, "last"), (X,))
    A1 = hopkit.CSR([0, 0], [], shape=(1, 1))
    X1 = torch.tensor([[2.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda X: hopkit.propagate(A1, X, 3, "sum"), (X1,))


def test_lightgcn_module_accepts_csr_and_edge_index(rng):
    torch = pytest.importorskip("torch")
    from hopkit.nn import LightGCNPropagation

    e = rng.integers(0, 30, (2, 200))
    ei = torch.from_numpy(np.unique(np.concatenate([e, e[::-1]], axis=1), axis=1))  # undirected
    x = torch.randn(30, 8, requires_grad=True)
    A = hopkit.CSR.from_edge_index(ei, num_nodes=30).normalize("sym")
    m = LightGCNPropagation(layers=3)
    y1 = m(x, ei)
    y2 = LightGCNPropagation(layers=3, normalize=False)(x, A)
    torch.testing.assert_close(y1, y2)
    torch.testing.assert_close(y1, torch.from_numpy(
        dense_propagate(A, x.detach().numpy(), np.full(4, 0.25)).astype(np.float32)),
        rtol=1e-5, atol=1e-5)
    y1.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


def test_lightgcn_module_matches_pyg(rng):
    torch = pytest.importorskip("torch")
    pyg = pytest.importorskip("torch_geometric.nn")
    from hopkit.nn import LightGCNPropagation

    src, dst = rng.integers(0, 40, 300), rng.integers(0, 40, 300)
    ei = torch.from_numpy(np.unique(np.stack([np.r_[src, dst], np.r_[dst, src]]), axis=1))
    x = torch.randn(40, 16)
    conv = pyg.LGConv()
    h, acc = x, x
    for _ in range(3):
        h = conv(h, ei)
        acc = acc + h
    torch.testing.assert_close(LightGCNPropagation(3)(x, ei), acc / 4, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ errors
def test_propagate_errors(rng):
    A = square_graph(rng, n=10, nnz=40)
    X = np.ones((10, 4))
    with pytest.raises(ValueError, match=r"propagate: layers must be a non-negative integer, "
                                         r"got -1"):
        hopkit.propagate(A, X, -1)
    with pytest.raises(ValueError, match="propagate: layers must be a non-negative integer"):
        hopkit.propagate(A, X, 1.5)
    with pytest.raises(ValueError, match=r"combine weights must have length layers \+ 1 = 4, "
                                         r"got shape \(3,\)"):
        hopkit.propagate(A, X, 3, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="propagate: combine must be one of"):
        hopkit.propagate(A, X, 3, "max")
    with pytest.raises(ValueError, match="combine weights must be finite"):
        hopkit.propagate(A, X, 1, [1.0, np.nan])
    with pytest.raises(ValueError, match=r"propagate: X must have 10 rows, got 9"):
        hopkit.propagate(A, X[:9])
    with pytest.raises(ValueError, match=r"edge_weight must have shape \(40,\)"):
        hopkit.propagate(A, X, edge_weight=np.ones(39))
    with pytest.raises(TypeError, match="edge_weight must have the dtype of X"):
        hopkit.propagate(A, X, edge_weight=np.ones(40, dtype=np.float32))
    R = power_law_graph(10, 8, 30, rng)
    with pytest.raises(ValueError, match=r"propagate: A must be square .* got shape \(10, 8\)"):
        hopkit.propagate(R, np.ones((8, 2)), 2)
    with pytest.raises(ValueError, match="propagate: A must be square"):
        hopkit.propagate(R, np.ones((8, 2)), 1, "mean")


def test_propagate_edge_weight_grad_is_refused(rng):
    torch = pytest.importorskip("torch")
    A = square_graph(rng, n=10, nnz=40)
    w = torch.ones(40, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="gradients wrt edge_weight are not supported"):
        hopkit.propagate(A, torch.ones(10, 2, dtype=torch.float64), 2, edge_weight=w)


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
def test_gradcheck_on_a_transpose_with_explicit_weights(rng, backend):
    """B = A.T caches A as its transpose; B's explicit weights must be read
    through the inverse of B.perm in the backward."""
    torch = pytest.importorskip("torch")
    A = power_law_graph(12, 12, 45, rng, values=np.float64, empty=(0, 5))
    B = A.T
    w = torch.tensor(rng.uniform(0.5, 1.5, B.nnz))
    X = torch.tensor(rng.standard_normal((12, 3)), requires_grad=True)
    fn = lambda X: hopkit.propagate(B, X, 2, "sum", edge_weight=w, backend=backend)  # noqa
    assert torch.autograd.gradcheck(fn, (X,))
