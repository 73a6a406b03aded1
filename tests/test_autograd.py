import hopkit
import numpy as np
import pytest
from conftest import BACKENDS, power_law_graph

torch = pytest.importorskip("torch")

REDUCES = ["sum", "mean", "max", "min"]


def graph(rng):
    # empty first, middle and last rows; isolated columns (no edges)
    return power_law_graph(12, 10, 45, rng, values=np.float64, empty=(0, 5, 11))


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
@pytest.mark.parametrize("reduce", REDUCES)
def test_gradcheck_x_and_edge_weight(rng, backend, reduce):
    A = graph(rng)
    X = torch.tensor(rng.standard_normal((10, 3)), requires_grad=True)
    w = torch.tensor(rng.uniform(0.5, 1.5, A.nnz), requires_grad=True)
    fn = lambda X, w: hopkit.spmm(A, X, reduce, w, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (X, w), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("message", ["mul", "add"])
def test_gradcheck_vector_edge_features(rng, backend, reduce, message):
    A = graph(rng)
    X = torch.tensor(rng.standard_normal((10, 3)), requires_grad=True)
    E = torch.tensor(rng.standard_normal((A.nnz, 3)), requires_grad=True)
    fn = lambda X, E: hopkit.spmm(A, X, reduce, E, message=message, backend=backend)  # noqa
    assert torch.autograd.gradcheck(fn, (X, E), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
def test_gradcheck_x_with_csr_values(rng, backend):
    A = graph(rng)
    X = torch.tensor(rng.standard_normal((10, 4)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda X: hopkit.spmm(A, X, backend=backend), (X,))


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
def test_gradcheck_sddmm(rng, backend):
    A = graph(rng)
    U = torch.tensor(rng.standard_normal((12, 3)), requires_grad=True)
    V = torch.tensor(rng.standard_normal((10, 3)), requires_grad=True)
    fn = lambda U, V: hopkit.sddmm(A, U, V, scale=True, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (U, V))


def test_torch_output_type_and_matches_numpy(rng):
    A = graph(rng)
    X = rng.standard_normal((10, 5)).astype(np.float32)
    Y = hopkit.spmm(A, torch.from_numpy(X), "mean")
    assert isinstance(Y, torch.Tensor) and Y.dtype == torch.float32
    np.testing.assert_allclose(Y.numpy(), hopkit.spmm(A, X, "mean"))


def test_single_node_graph():
    A = hopkit.CSR([0, 1], [0], shape=(1, 1))
    X = torch.tensor([[2.0]], dtype=torch.float64, requires_grad=True)
    for r in REDUCES:
        assert torch.autograd.gradcheck(lambda X, r=r: hopkit.spmm(A, X, r), (X,))


def test_modules_accept_csr_and_edge_index(rng):
    from hopkit.nn import LGConv, SpMM

    ei = torch.from_numpy(rng.integers(0, 30, (2, 200)))
    x = torch.randn(30, 8)
    A = hopkit.CSR.from_edge_index(ei, num_nodes=30, sum_duplicates=False)
    y1 = LGConv()(x, ei)
    y2 = LGConv()(x, A)  # the same graph, duplicates kept: the same normalisation
    torch.testing.assert_close(y1, y2)
    y3 = SpMM("max")(x, ei)
    torch.testing.assert_close(y3, hopkit.spmm(A, x, "max"))


def test_lgconv_matches_pyg(rng):
    pyg = pytest.importorskip("torch_geometric.nn")
    src = rng.integers(0, 40, 300)
    dst = rng.integers(0, 40, 300)
    ei = torch.from_numpy(np.unique(np.stack([np.r_[src, dst], np.r_[dst, src]]), axis=1))
    x = torch.randn(40, 16)
    from hopkit.nn import LGConv

    torch.testing.assert_close(LGConv()(x, ei), pyg.LGConv()(x, ei), rtol=1e-5, atol=1e-5)


def test_device_errors(rng):
    A = graph(rng)
    X = torch.zeros(10, 3, device="meta")
    with pytest.raises(TypeError, match="spmm: X is on meta"):
        hopkit.spmm(A, X)
    with pytest.raises(ValueError, match="all tensors must be on one device"):
        hopkit.spmm(A, torch.zeros(10, 3), edge_weight=torch.zeros(A.nnz, device="meta"))
