"""hopkit.nn against the installed torch_geometric: outputs and gradients on
randomised graphs (directed, duplicate edges, self-loops, isolated nodes),
every adjacency kind, and no cache that can serve another graph."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pyg = pytest.importorskip("torch_geometric.nn")

import hopkit  # noqa: E402
from hopkit.nn import LGConv, LightGCNPropagation, SpMM  # noqa: E402

TOL = dict(rtol=1e-6, atol=1e-9)


def random_edge_index(rng, n=50, E=300, isolated=5):
    """Directed edges with duplicates and self-loops; the last `isolated`
    nodes touch no edge."""
    ei = rng.integers(0, n - isolated, (2, E))
    ei[:, :10] = ei[:, 10:20]  # duplicates
    ei[1, 20:25] = ei[0, 20:25]  # self-loops
    return torch.from_numpy(ei)


def grads(out, inputs):
    return torch.autograd.grad((out * out).sum(), inputs)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("weighted", [True, False])
def test_lgconv_equals_pyg_on_edge_index(seed, normalize, weighted):
    rng = np.random.default_rng(seed)
    ei = random_edge_index(rng)
    x = torch.randn(50, 8, dtype=torch.float64, requires_grad=True)
    w = torch.rand(ei.shape[1], dtype=torch.float64, requires_grad=True) if weighted else None
    ins = [x] + ([w] if weighted else [])
    ours = LGConv(normalize=normalize)(x, ei, w)
    ref = pyg.LGConv(normalize=normalize)(x, ei, w)
    torch.testing.assert_close(ours, ref, **TOL)
    for a, b in zip(grads(ours, ins), grads(ref, ins), strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("layout", ["coo", "coo_uncoalesced", "csr", "csc", "hopkit"])
def test_lgconv_equals_pyg_on_sparse_adjacency(layout):
    rng = np.random.default_rng(1)
    ei = random_edge_index(rng)
    vals = torch.rand(ei.shape[1], dtype=torch.float64)
    coo = torch.sparse_coo_tensor(ei.flip(0), vals, (50, 50))  # adj_t: rows are targets
    ref_adj = coo.coalesce()
    adj = {"coo": ref_adj, "coo_uncoalesced": coo, "csr": ref_adj.to_sparse_csr(),
           "csc": ref_adj.to_sparse_csc(),
           "hopkit": hopkit.CSR.from_torch(ref_adj.to_sparse_csr())}[layout]
    x = torch.randn(50, 8, dtype=torch.float64, requires_grad=True)
    for normalize in (True, False):
        ours = LGConv(normalize=normalize)(x, adj)
        ref = pyg.LGConv(normalize=normalize)(x, ref_adj)
        torch.testing.assert_close(ours, ref, **TOL)
        torch.testing.assert_close(grads(ours, [x])[0], grads(ref, [x])[0], **TOL)


def test_sparse_tensor_input():
    torch_sparse = pytest.importorskip("torch_sparse")
    rng = np.random.default_rng(2)
    ei = random_edge_index(rng)
    adj = torch_sparse.SparseTensor(row=ei[1], col=ei[0], sparse_sizes=(50, 50))
    x = torch.randn(50, 8, dtype=torch.float64)
    torch.testing.assert_close(LGConv()(x, adj), pyg.LGConv()(x, adj), **TOL)


def test_sampled_loop_never_serves_a_stale_graph():
    """A new edge_index of the same shape every step (the allocator reuses
    addresses): each output must be the output for that step's graph."""
    rng = np.random.default_rng(3)
    conv, ref = LGConv(), pyg.LGConv()
    x = torch.randn(40, 4, dtype=torch.float64)
    for _ in range(30):
        ei = torch.from_numpy(rng.integers(0, 40, (2, 120)))
        torch.testing.assert_close(conv(x, ei), ref(x, ei), **TOL)
        del ei


def test_inplace_edit_of_edge_index_is_seen():
    rng = np.random.default_rng(4)
    ei = torch.from_numpy(rng.integers(0, 30, (2, 100)))
    x = torch.randn(30, 4, dtype=torch.float64)
    conv = LGConv()
    conv(x, ei)
    ei[0, :50] = (ei[0, :50] + 7) % 30
    torch.testing.assert_close(conv(x, ei), pyg.LGConv()(x, ei), **TOL)
    ei.numpy()[1, :10] = 0  # an edit the version counter does not see
    torch.testing.assert_close(conv(x, ei), pyg.LGConv()(x, ei), **TOL)


def test_cached_true_reuses_the_first_graph_until_reset():
    rng = np.random.default_rng(5)
    x = torch.randn(30, 4, dtype=torch.float64)
    e1, e2 = (torch.from_numpy(rng.integers(0, 30, (2, 90))) for _ in range(2))
    conv = LGConv(cached=True)
    torch.testing.assert_close(conv(x, e1), pyg.LGConv()(x, e1), **TOL)
    torch.testing.assert_close(conv(x, e2), pyg.LGConv()(x, e1), **TOL)  # the promise
    conv.reset_parameters()
    torch.testing.assert_close(conv(x, e2), pyg.LGConv()(x, e2), **TOL)


def test_lightgcn_propagation_equals_pyg_stack():
    rng = np.random.default_rng(6)
    ei = random_edge_index(rng)
    x = torch.randn(50, 8, dtype=torch.float64, requires_grad=True)
    w = torch.rand(ei.shape[1], dtype=torch.float64)
    conv = pyg.LGConv()
    h, acc = x, x
    for _ in range(3):
        h = conv(h, ei, w)
        acc = acc + h
    ours = LightGCNPropagation(3)(x, ei, w)
    torch.testing.assert_close(ours, acc / 4, **TOL)
    torch.testing.assert_close(grads(ours, [x])[0], grads(acc / 4, [x])[0], **TOL)


def test_spmm_module_equals_pyg_aggregation():
    from torch_geometric.utils import scatter

    rng = np.random.default_rng(7)
    ei = random_edge_index(rng)
    x = torch.randn(50, 8, dtype=torch.float64)
    for reduce in ("sum", "mean", "max", "min"):
        ref = scatter(x[ei[0]], ei[1], 0, dim_size=50, reduce=reduce)
        torch.testing.assert_close(SpMM(reduce)(x, ei), ref, **TOL)


def test_pyg_lightgcn_model_takes_hopkit_conv(monkeypatch):
    """PyG's LightGCN builds its layers from torch_geometric's LGConv name and
    calls reset_parameters on them: hopkit's conv in its place gives the same
    embeddings and loss."""
    import torch_geometric.nn.models.lightgcn as lg

    rng = np.random.default_rng(8)
    ei = random_edge_index(rng, n=60, E=400)
    torch.manual_seed(0)
    ref = lg.LightGCN(60, 16, num_layers=3).double()
    monkeypatch.setattr(lg, "LGConv", LGConv)
    torch.manual_seed(0)
    ours = lg.LightGCN(60, 16, num_layers=3).double()
    assert all(isinstance(c, LGConv) for c in ours.convs)
    ours.reset_parameters()
    ours.embedding.weight.data.copy_(ref.embedding.weight.data)
    torch.testing.assert_close(ours.get_embedding(ei), ref.get_embedding(ei), **TOL)


def test_errors():
    x = torch.randn(10, 4)
    ei = torch.tensor([[0, 1], [1, 12]])
    with pytest.raises(ValueError, match=r"edge_index must lie in \[0, 10\) \(num_nodes\); "
                                         r"edge_index\[1, 1\] = 12"):
        LGConv()(x, ei)
    with pytest.raises(ValueError, match=r"LGConv: edge_index must have shape \(2, num_edges\)"):
        LGConv()(x, torch.zeros(3, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match="LGConv: edge_index must be int32 or int64"):
        LGConv()(x, torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"LGConv: edge_weight must have shape \(2,\)"):
        LGConv()(x, ei.clamp(max=9), torch.ones(3))
    with pytest.raises(TypeError, match="LGConv: edge_weight must have the dtype of x"):
        LGConv()(x, ei.clamp(max=9), torch.ones(2, dtype=torch.float64))
    adj = torch.sparse_coo_tensor(ei.clamp(max=9), torch.ones(2), (10, 10))
    with pytest.raises(ValueError, match="LGConv: edge_weight is for an edge_index"):
        LGConv()(x, adj, torch.ones(2))
    with pytest.raises(ValueError, match=r"LGConv: the adjacency must be 10 x 10"):
        LGConv()(x, torch.sparse_coo_tensor(ei.clamp(max=9), torch.ones(2), (10, 11)))


# ---------------------------------------------------------------- GATConv
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("heads,concat", [(1, True), (3, True), (3, False)])
@pytest.mark.parametrize("self_loops", [True, False])
def test_gatconv_equals_pyg(seed, heads, concat, self_loops):
    from hopkit.nn import GATConv

    rng = np.random.default_rng(seed)
    ei = random_edge_index(rng)
    torch.manual_seed(seed)
    kw = dict(heads=heads, concat=concat, add_self_loops=self_loops, negative_slope=0.15,
              residual=seed == 1, bias=seed != 2)
    ref = pyg.GATConv(12, 5, **kw).double()
    ours = GATConv(12, 5, **kw).double()
    ours.load_state_dict(ref.state_dict())  # PyG's parameter names and shapes
    x = torch.randn(50, 12, dtype=torch.float64, requires_grad=True)
    a, b = ours(x, ei), ref(x, ei)
    torch.testing.assert_close(a, b, **TOL)
    pa = [x] + [p for _, p in sorted(ours.named_parameters())]
    pb = [x] + [p for _, p in sorted(ref.named_parameters())]
    for ga, gb in zip(grads(a, pa), grads(b, pb), strict=True):
        torch.testing.assert_close(ga, gb, **TOL)


def test_gatconv_on_a_sparse_adjacency_equals_edge_index():
    from hopkit.nn import GATConv

    rng = np.random.default_rng(3)
    ei = random_edge_index(rng)
    adj = torch.sparse_coo_tensor(ei.flip(0), torch.ones(ei.shape[1]), (50, 50)).coalesce()
    eu = adj.indices().flip(0)  # the coalesced graph as an edge_index
    conv = GATConv(6, 4, heads=2).double()
    x = torch.randn(50, 6, dtype=torch.float64)
    torch.testing.assert_close(conv(x, adj), conv(x, eu), **TOL)
    ref = pyg.GATConv(6, 4, heads=2).double()
    ref.load_state_dict(conv.state_dict())
    torch.testing.assert_close(conv(x, adj), ref(x, eu), **TOL)


def test_gatconv_refusals():
    from hopkit.nn import GATConv

    with pytest.raises(ValueError, match="GATConv: attention dropout is not supported"):
        GATConv(4, 4, dropout=0.5)
    with pytest.raises(ValueError, match="GATConv: edge features are not supported"):
        GATConv(4, 4, edge_dim=3)
    with pytest.raises(ValueError, match="GATConv: in_channels must be an int"):
        GATConv((4, 5), 4)
    with pytest.raises(ValueError, match="return_attention_weights are not supported"):
        GATConv(4, 4)(torch.randn(3, 4), torch.tensor([[0], [1]]), return_attention_weights=True)
