"""torch.compile (fullgraph, static and dynamic shapes) and torch.export
through hopkit's operators: no graph break, the eager results, the eager
errors. Most cases compile with the ``aot_eager`` backend (dynamo + AOT
autograd, which is what sees hopkit's fake kernels and autograd formulas);
the LightGCN step also runs through inductor."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import hopkit  # noqa: E402
from hopkit.nn import GraphNetworkBlock, LGConv  # noqa: E402

RTOL = dict(rtol=1e-6, atol=1e-7)


def bipartite(seed=0, U=60, n_items=80, density=0.05):
    import scipy.sparse as sp

    R = sp.random(U, n_items, density=density, random_state=seed, format="csr")
    return hopkit.bipartite_adjacency(hopkit.CSR.from_scipy(R))


def breaks(fn, *args):
    e = torch._dynamo.explain(fn)(*args)
    assert not e.break_reasons, e.break_reasons
    return e.graph_break_count


# ---------------------------------------------------------------- LightGCN step
def lightgcn_problem(seed=0):
    A = bipartite(seed)
    rng = np.random.default_rng(seed)
    ids = [torch.from_numpy(rng.integers(lo, hi, 128)) for lo, hi in
           ((0, 60), (60, 140), (60, 140))]

    def state():
        torch.manual_seed(seed)
        E0 = torch.nn.Parameter(torch.randn(A.n_rows, 16) * 0.1)
        return E0, torch.zeros_like(E0), torch.zeros_like(E0)

    def step(E0, m, v, t: int, lr=1e-2, b1=0.9, b2=0.999, eps=1e-8):
        """propagate + bpr_loss + backward + an Adam step, all in one graph."""
        E0.grad = None
        E = hopkit.propagate(A, E0, 3)
        loss = hopkit.bpr_loss(E, E, *ids) + 1e-4 * E0.square().sum()
        loss.backward()
        with torch.no_grad():
            g = E0.grad
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            E0.sub_(lr * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps))
        return loss.detach()

    return state, step


# aot_eager (what sees hopkit's fake kernels and autograd formulas) with static and dynamic
# shapes; inductor once, static (one C++ build per test run keeps CI short)
@pytest.mark.parametrize("backend,dynamic", [("aot_eager", False), ("aot_eager", True),
                                             ("inductor", False)])
def test_lightgcn_training_step_compiles_fullgraph(dynamic, backend):
    state, step = lightgcn_problem()
    with torch._dynamo.config.patch(trace_autograd_ops=True):
        s0, s1 = state(), state()
        eager = [step(*s0, t) for t in range(1, 5)]
        cstep = torch.compile(step, fullgraph=True, dynamic=dynamic, backend=backend)
        comp = [cstep(*s1, t) for t in range(1, 5)]
        assert breaks(step, *state(), 1) == 0
    torch.testing.assert_close(torch.stack(comp), torch.stack(eager), **RTOL)
    torch.testing.assert_close(s1[0].detach(), s0[0].detach(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- models
class GAT(torch.nn.Module):
    """Two GAT-style layers on hopkit.attention_aggregate (score="gat")."""

    def __init__(self, A, f_in, hidden, heads):
        super().__init__()
        self.A, self.heads, self.hidden = A, heads, hidden
        self.lin1 = torch.nn.Linear(f_in, heads * hidden, bias=False)
        self.att1 = torch.nn.Parameter(torch.randn(2, heads, hidden) * 0.3)
        self.lin2 = torch.nn.Linear(heads * hidden, hidden, bias=False)
        self.att2 = torch.nn.Parameter(torch.randn(2, 1, hidden) * 0.3)

    def layer(self, x, lin, att, heads):
        h = lin(x)
        hh = h.view(-1, heads, h.shape[1] // heads)
        q, k = (hh * att[0]).sum(-1), (hh * att[1]).sum(-1)
        return hopkit.attention_aggregate(self.A, q, k, h, heads=heads, score="gat")

    def forward(self, x):
        x = torch.relu(self.layer(x, self.lin1, self.att1, self.heads))
        return self.layer(x, self.lin2, self.att2, 1)


class LGConvNet(torch.nn.Module):
    """A PyG-style model: an embedding table and LGConv layers on edge_index."""

    def __init__(self, n, dim=8, layers=3):
        super().__init__()
        self.emb = torch.nn.Embedding(n, dim)
        self.convs = torch.nn.ModuleList(LGConv() for _ in range(layers))

    def forward(self, edge_index, edge_weight):
        x = h = self.emb.weight
        for conv in self.convs:
            h = conv(h, edge_index, edge_weight)
            x = x + h
        return x / (len(self.convs) + 1)


def square_graph(seed=1, n=40, E=200):
    rng = np.random.default_rng(seed)
    ei = rng.integers(0, n, (2, E))
    return hopkit.CSR.from_edge_index(ei, num_nodes=n, sum_duplicates=False), torch.from_numpy(ei)


def check_model(model, args, dynamic, grad_of):
    """Compiled (fullgraph) forward and backward equal the eager ones."""
    ref = model(*args)
    ref_g = torch.autograd.grad(ref.square().sum(), grad_of)
    cm = torch.compile(model, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    out = cm(*args)
    out_g = torch.autograd.grad(out.square().sum(), grad_of)
    torch.testing.assert_close(out, ref, **RTOL)
    for a, b in zip(out_g, ref_g, strict=True):
        torch.testing.assert_close(a, b, **RTOL)
    assert breaks(model, *args) == 0


@pytest.mark.parametrize("dynamic", [False, True])
def test_gat_model_compiles(dynamic):
    torch.manual_seed(0)
    A, _ = square_graph()
    model = GAT(A, 12, 8, heads=4).double()
    x = torch.randn(40, 12, dtype=torch.float64)
    check_model(model, (x,), dynamic, [model.lin1.weight, model.att1, model.att2])


@pytest.mark.parametrize("dynamic", [False, True])
def test_graph_network_block_compiles(dynamic):
    torch.manual_seed(0)
    A, _ = square_graph()
    block = GraphNetworkBlock(6, 3, 2, hidden=16, reduce="mean").double()
    x = torch.randn(40, 6, dtype=torch.float64, requires_grad=True)
    e = torch.randn(A.nnz, 3, dtype=torch.float64)
    u = torch.randn(2, dtype=torch.float64)

    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = block

        def forward(self, x, e, u):
            xn, en, un = self.block(A, x, e, u)
            return torch.cat([xn.flatten(), en.flatten(), un.flatten()])

    check_model(Flat(), (x, e, u), dynamic, [x, block.edge_mlp[0].weight])


@pytest.mark.parametrize("dynamic", [False, True])
def test_fresh_lgconv_model_compiles_before_any_eager_call(dynamic):
    torch.manual_seed(0)
    _, ei = square_graph()
    w = torch.rand(ei.shape[1])
    model = LGConvNet(40)
    out = torch.compile(model, fullgraph=True, dynamic=dynamic, backend="aot_eager")(ei, w)
    torch.testing.assert_close(out, model(ei, w), **RTOL)
    ei2 = torch.from_numpy(np.random.default_rng(9).integers(0, 40, (2, 200)))  # new graph
    cm = torch.compile(model, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    torch.testing.assert_close(cm(ei2, w), model(ei2, w), **RTOL)
    assert breaks(model, ei, w) == 0


def test_csr_without_cached_transpose_compiles():
    """A CSR first seen inside the compiled region: its graph (with the
    transpose) is a constant of the traced program, computed aside while
    tracing (nothing is stored on the CSR by the trace)."""
    A, _ = square_graph(seed=3)
    x = torch.randn(40, 5, dtype=torch.float64, requires_grad=True)

    def f(x):
        return hopkit.spmm(A, x, "mean").square().sum()

    g = torch.autograd.grad(torch.compile(f, fullgraph=True, backend="aot_eager")(x), x)[0]
    B = hopkit.CSR(A.indptr, A.indices, shape=A.shape)
    torch.testing.assert_close(g, torch.autograd.grad(
        hopkit.spmm(B, x, "mean").square().sum(), x)[0], **RTOL)
    assert "torch_graph" not in A._cache


def test_fresh_weighted_csr_compiles_and_another_csr_retraces():
    """A weighted CSR never used eagerly compiles with fullgraph (its values
    are cast in the graph); the program is guarded on the CSR object, so the
    same compiled function given another CSR of the same shape answers for
    that one, not the first."""
    rng = np.random.default_rng(7)

    def csr():
        ei = rng.integers(0, 50, (2, 300))
        return hopkit.CSR.from_coo(ei[1], ei[0], rng.random(300).astype(np.float32),
                                   shape=(50, 50))

    A, B = csr(), csr()
    x = torch.randn(50, 8)
    f = torch.compile(lambda M, x: hopkit.spmm(M, x), fullgraph=True, backend="aot_eager")
    ya, yb = f(A, x), f(B, x)
    torch.testing.assert_close(ya, hopkit.spmm(A, x), **RTOL)
    torch.testing.assert_close(yb, hopkit.spmm(B, x), **RTOL)
    assert not torch.allclose(ya, yb)


# ---------------------------------------------------------------- export
def test_export_lightgcn_and_lgconv_models():
    A = bipartite(2)

    class LightGCNProp(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Parameter(torch.randn(A.n_rows, 8))

        def forward(self, users, items):
            E = hopkit.propagate(A, self.emb, 3)
            return (E[users] * E[items]).sum(-1)

    m = LightGCNProp()
    users, items = torch.arange(10), torch.arange(60, 70)
    ep = torch.export.export(m, (users, items))
    torch.testing.assert_close(ep.module()(users, items), m(users, items), **RTOL)

    _, ei = square_graph()
    w = torch.rand(ei.shape[1])
    net = LGConvNet(40)
    ep = torch.export.export(net, (ei, w))
    torch.testing.assert_close(ep.module()(ei, w), net(ei, w), **RTOL)
    ei2 = torch.from_numpy(np.random.default_rng(5).integers(0, 40, (2, 200)))
    torch.testing.assert_close(ep.module()(ei2, w), net(ei2, w), **RTOL)


def test_compiled_inference_calls_spmm_nograd_and_retraces_for_grad():
    """Where nothing requires grad a compiled program calls hopkit::spmm_nograd
    (no Python autograd layer). Dynamo guards requires_grad and the grad
    mode, so the same compiled function on an input that requires grad is
    traced again, with hopkit::spmm, and gives the eager gradient; under
    no_grad it takes spmm_nograd again."""
    A, _ = square_graph()
    seen = []

    def backend(gm, example_inputs):
        seen.append({str(n.target) for n in gm.graph.nodes if n.op == "call_function"})
        return gm

    f = torch.compile(lambda x: hopkit.spmm(A, x), backend=backend, fullgraph=True)
    x = torch.randn(40, 4)
    torch.testing.assert_close(f(x), hopkit.spmm(A, x), **RTOL)
    assert "hopkit.spmm_nograd.default" in seen[-1] and "hopkit.spmm.default" not in seen[-1]
    xa, xb, w = x.clone().requires_grad_(), x.clone().requires_grad_(), torch.randn(40, 4)
    (f(xa) * w).sum().backward()
    assert "hopkit.spmm.default" in seen[-1] and len(seen) == 2
    (hopkit.spmm(A, xb) * w).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, **RTOL)
    with torch.no_grad():
        f(xa)
    assert "hopkit.spmm_nograd.default" in seen[-1] and len(seen) == 3


def test_exported_inference_program_still_trains():
    """Exported with an input that needs no grad, the program is later called
    on one that does (an exported program has no guards): the sum/mean and
    max backward still give the eager gradients."""
    A, _ = square_graph()

    class Layer(torch.nn.Module):
        def __init__(self, reduce):
            super().__init__()
            self.reduce = reduce

        def forward(self, x):
            return hopkit.spmm(A, x, self.reduce)

    for reduce in ("sum", "mean", "max"):
        x = torch.randn(40, 4)
        ep = torch.export.export(Layer(reduce), (x,))
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        w = torch.randn(40, 4)
        (ep.module()(xa) * w).sum().backward()
        (hopkit.spmm(A, xb, reduce) * w).sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad, **RTOL)


# ---------------------------------------------------------------- errors
def test_compiled_errors_are_the_eager_errors():
    A, ei = square_graph()

    def f(x):
        return hopkit.spmm(A, x)

    cf = torch.compile(f, backend="aot_eager")
    for bad, exc, msg in ((torch.randn(39, 4), ValueError, "spmm: X must have 40 rows, got 39"),
                          (torch.randn(40, 4).half(), TypeError,
                           "spmm: X must be float32 or float64, got float16"),
                          (torch.randn(40), ValueError, r"spmm: X must be 2-D, got shape \(40,\)")):
        with pytest.raises(exc, match=msg):
            f(bad)
        with pytest.raises(exc, match=msg):
            cf(bad)
    conv = torch.compile(LGConv(), backend="aot_eager")
    with pytest.raises(ValueError, match=r"edge_index must lie in \[0, 40\)"):
        conv(torch.randn(40, 4), ei + 1)
    loss = torch.compile(lambda E, u: hopkit.bpr_loss(E, E, u, u, u), backend="aot_eager")
    with pytest.raises(ValueError, match=r"bpr_loss: users must lie in \[0, 40\)"):
        loss(torch.randn(40, 4), torch.tensor([0, 40]))


@pytest.mark.parametrize("dynamic", [False, True])
def test_gatconv_compiles(dynamic):
    """Self-loops make the edge count data-dependent (an unbacked size)."""
    from hopkit.nn import GATConv

    torch.manual_seed(0)
    _, ei = square_graph()
    conv = GATConv(6, 4, heads=2).double()
    x = torch.randn(40, 6, dtype=torch.float64, requires_grad=True)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x):
            return self.conv(x, ei)

    check_model(Net(), (x,), dynamic, [x, conv.lin.weight, conv.att_src])


# ---------------------------------------------------------------- CUDA (skipped without a GPU)
def gpu_present():
    from hopkit import _backend

    return _backend.cuda_module() is not None and torch.cuda.is_available()


needs_gpu = pytest.mark.skipif(not gpu_present(),
                               reason="no CUDA device (or hopkit._cuda not built)")


@needs_gpu
@pytest.mark.parametrize("dynamic", [False, True])
def test_lightgcn_step_compiles_fullgraph_on_cuda(dynamic):
    """propagate + bpr_loss + backward on CUDA tensors: one graph, no break,
    the eager result (the CUDA kernels under the operators)."""
    A = bipartite()
    dev = torch.device("cuda", torch.cuda.current_device())
    rng = np.random.default_rng(0)
    ids = [torch.from_numpy(rng.integers(lo, hi, 128)).to(dev) for lo, hi in
           ((0, 60), (60, 140), (60, 140))]
    torch.manual_seed(0)
    E0 = (torch.randn(A.n_rows, 16, device=dev) * 0.1).requires_grad_()

    def f(E0):
        E = hopkit.propagate(A, E0, 3)
        return hopkit.bpr_loss(E, E, *ids) + 1e-4 * E0.square().sum()

    f(E0)  # one eager call caches the CSR's transpose and device copies
    assert breaks(f, E0) == 0
    cf = torch.compile(f, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    g_e = torch.autograd.grad(f(E0), E0)[0]
    g_c = torch.autograd.grad(cf(E0), E0)[0]
    torch.testing.assert_close(g_c, g_e, rtol=1e-5, atol=1e-6)


@needs_gpu
def test_lgconv_and_gatconv_compile_fullgraph_on_cuda():
    from hopkit.nn import GATConv

    dev = torch.device("cuda", torch.cuda.current_device())
    ei = square_graph()[1].to(dev)
    w = torch.rand(ei.shape[1], device=dev)
    model = LGConvNet(40).to(dev)
    cm = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(cm(ei, w), model(ei, w), **RTOL)
    gat = GATConv(8, 4, heads=2).to(dev)
    x = torch.randn(40, 8, device=dev)
    cg = torch.compile(gat, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(cg(x, ei), gat(x, ei), rtol=1e-5, atol=1e-6)

