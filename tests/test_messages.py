"""Generalised messages (copy / mul / add / edge-only) forward + backward for
every reduce, and the GraphNetworkBlock built on them."""

import hopkit
import numpy as np
import pytest
from conftest import BACKENDS, power_law_graph

REDUCES = ["sum", "mean", "max", "min"]


def dense(A, X, E, message, reduce):
    rows = A.row_ids()
    Eb = E if E.ndim == 2 else E[:, None]
    M = {"mul": lambda: X[A.indices] * Eb, "add": lambda: X[A.indices] + Eb,
         "edge": lambda: np.broadcast_to(Eb, (A.nnz, Eb.shape[1]))}[message]()
    out = np.zeros((A.n_rows, M.shape[1]))
    for i in range(A.n_rows):
        seg = M[rows == i]
        if len(seg):
            out[i] = getattr(seg, {"sum": "sum", "mean": "mean", "max": "max",
                                   "min": "min"}[reduce])(0)
    return out


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
@pytest.mark.parametrize("reduce", REDUCES)
def test_edge_only_messages_all_reduces(rng, backend, reduce):
    A = power_law_graph(25, 25, 120, rng, empty=(0, 12))
    E = rng.standard_normal((A.nnz, 3))
    Y = hopkit.spmm(A, None, reduce, E, backend=backend)
    np.testing.assert_allclose(Y, dense(A, None, E, "edge", reduce), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
@pytest.mark.parametrize("reduce", REDUCES)
def test_copy_message_ignores_values(rng, backend, reduce):
    A = power_law_graph(25, 20, 120, rng, values=np.float64, empty=(3,))
    X = rng.standard_normal((20, 4))
    Y = hopkit.spmm(A, X, reduce, message="copy", backend=backend)
    np.testing.assert_allclose(Y, dense(A, X, np.ones(A.nnz), "mul", reduce), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
@pytest.mark.parametrize("reduce", REDUCES)
def test_gradcheck_scalar_add_and_edge_only(rng, backend, reduce):
    torch = pytest.importorskip("torch")
    A = power_law_graph(12, 10, 45, rng, empty=(0, 5, 11))
    X = torch.tensor(rng.standard_normal((10, 3)), requires_grad=True)
    w = torch.tensor(rng.standard_normal(A.nnz), requires_grad=True)
    fn = lambda X, w: hopkit.spmm(A, X, reduce, w, message="add", backend=backend)  # noqa
    assert torch.autograd.gradcheck(fn, (X, w))
    E = torch.tensor(rng.standard_normal((A.nnz, 2)), requires_grad=True)
    fn = lambda E: hopkit.spmm(A, None, reduce, E, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (E,))


def test_edge_feature_errors(rng):
    A = power_law_graph(10, 8, 40, rng)
    X = np.ones((8, 4))
    for bad in (np.ones(41), np.ones((40, 5)), np.ones((39, 4))):
        with pytest.raises(ValueError, match=r"spmm: edge_weight must have shape \(40,\) or "
                                             r"\(40, 4\)"):
            hopkit.spmm(A, X, "sum", bad, message="add")
    with pytest.raises(ValueError, match="message='copy' ignores edge features"):
        hopkit.spmm(A, X, "sum", np.ones(40), message="copy")


# ------------------------------------------------------------------ GraphNetworkBlock
def _torch_gn(block, A, x, e, u, torch):
    """The same block written with index_add / scatter (independent of hopkit.spmm)."""
    rows = torch.from_numpy(A.row_ids().astype(np.int64))
    cols = torch.from_numpy(A.indices.astype(np.int64))
    u = u.reshape(1, -1)
    e2 = block.edge_mlp(torch.cat([e, x[cols], x[rows], u.expand(A.nnz, -1)], 1))
    msg = {"add": lambda: block.node_lin(x)[cols] + e2,
           "mul": lambda: block.node_lin(x)[cols] * e2, "edge": lambda: e2}[block.message]()
    agg = torch.zeros(A.n_rows, e2.shape[1], dtype=x.dtype)
    if block.reduce == "sum":
        agg = agg.index_add(0, rows, msg)
    else:  # empty rows keep 0, as in hopkit
        red = {"mean": "mean", "max": "amax", "min": "amin"}[block.reduce]
        agg = agg.index_reduce(0, rows, msg, red, include_self=False)
    x2 = block.node_mlp(torch.cat([x, agg, u.expand(A.n_rows, -1)], 1))
    u2 = block.global_mlp(torch.cat([u, x2.mean(0, keepdim=True), e2.mean(0, keepdim=True)], 1))
    return x2, e2, u2


@pytest.mark.filterwarnings("ignore:index_reduce")
@pytest.mark.parametrize("message", ["add", "mul", "edge"])
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_graph_network_block(rng, message, reduce):
    torch = pytest.importorskip("torch")
    from hopkit.nn import GraphNetworkBlock

    torch.manual_seed(0)
    A = power_law_graph(30, 30, 150, rng, empty=(4,))
    indptr, indices = A.indptr.copy(), A.indices.copy()
    x = torch.randn(30, 5, dtype=torch.float64, requires_grad=True)
    e = torch.randn(A.nnz, 3, dtype=torch.float64, requires_grad=True)
    u = torch.randn(2, dtype=torch.float64)
    block = GraphNetworkBlock(5, 3, 2, node_out=8, edge_out=6, global_out=4, hidden=16,
                              reduce=reduce, message=message).double()
    x2, e2, u2 = block(A, x, e, u)
    # same nodes and edges, richer features
    assert x2.shape == (30, 8) and e2.shape == (A.nnz, 6) and u2.shape == (1, 4)
    np.testing.assert_array_equal(A.indptr, indptr)
    np.testing.assert_array_equal(A.indices, indices)
    want = _torch_gn(block, A, x, e, u, torch)
    for got, ref in zip((x2, e2, u2), want, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    loss = x2.square().sum() + e2.sum() + u2.sum()
    loss.backward()
    assert x.grad is not None and e.grad is not None
    assert all(p.grad is not None for p in block.parameters())
    # stacking: the output graph feeds the next block
    block2 = GraphNetworkBlock(8, 6, 4, hidden=8).double()
    x3, e3, u3 = block2(A, x2, e2, u2)
    assert x3.shape == (30, 8) and e3.shape == (A.nnz, 6) and u3.shape == (1, 4)


def test_graph_network_block_errors(rng):
    torch = pytest.importorskip("torch")
    from hopkit.nn import GraphNetworkBlock

    A = power_law_graph(10, 10, 30, rng)
    block = GraphNetworkBlock(4, 3, 2)
    with pytest.raises(ValueError, match=r"GraphNetworkBlock: e must have shape \(30, 3\), got "
                                         r"\(29, 3\)"):
        block(A, torch.randn(10, 4), torch.randn(29, 3), torch.randn(2))
    with pytest.raises(ValueError, match="GraphNetworkBlock: message must be one of"):
        GraphNetworkBlock(4, 3, 2, message="max")
