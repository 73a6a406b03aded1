"""torch.compile: hopkit's operators inside compiled programs.

Two cases, each timed round-robin (``timeit_interleaved``, medians) so that
load from other processes falls on every implementation alike; every output
is checked against its peer before timing.

* ``spmm per call``: a 1,000-node, 10,000-edge graph (random directed edges,
  weights 1, so 9,942 stored edges of weight 1-3 after duplicates are summed),
  F = 64, float32, forward only: hopkit.spmm on a hopkit.CSR
  against ``torch.sparse.mm`` on the same matrix as a torch sparse CSR tensor,
  eager and compiled (``torch.compile``, fullgraph for hopkit). At this size
  the call overhead (validation, dispatch, the operator boundary) is what is
  measured: 10,000 x 64 multiply-adds move ~2.6 MB. A third row times the
  compiled program with hopkit::spmm's C++ CPU kernel removed (its Python
  kernel, as on torch < 2.13), against torch.sparse.mm in the same rounds;
  a fourth the compiled layer in training (forward, a loss on Y, backward:
  the gradient wrt X checked against torch.sparse.mm's).
* ``LightGCN step``: one training step on the Gowalla-shaped graph (70,839
  nodes, ~2.05M adjacency nonzeros; ``--quick``: a 5,000 x 7,000, 120k-pair
  graph), d = 64, 3 layers, 8,192 BPR triples: propagation, BPR loss + L2,
  backward, and an Adam update written in torch ops (``torch.optim``'s step
  graph-breaks by design, see docs/compile.md). hopkit: ``propagate`` +
  ``bpr_loss`` eager and compiled (fullgraph, with
  ``torch._dynamo.config.trace_autograd_ops`` so that backward is in the
  graph); PyG: ``LGConv()`` x 3 on edge_index (normalising every call, as
  PyG's LightGCN ships) with the gathered BPR loss, eager and under
  ``torch.compile`` (inductor, graph breaks allowed).
"""

from __future__ import annotations

import numpy as np

import hopkit

from ._common import gowalla_graph, row, timeit_interleaved

GROUP = "compile"


def _spmm_case(torch, rounds):
    rng = np.random.default_rng(0)
    n, E, F = 1000, 10000, 64
    ei = rng.integers(0, n, (2, E))
    A = hopkit.CSR.from_coo(ei[1], ei[0], np.ones(E, np.float32), shape=(n, n))
    At = A.to_torch()
    X = torch.randn(n, F)
    ref = torch.sparse.mm(At, X)
    eager = {"hopkit": lambda: hopkit.spmm(A, X), "torch.sparse.mm": lambda: torch.sparse.mm(At, X)}
    hk = torch.compile(lambda x: hopkit.spmm(A, x), fullgraph=True)
    ts = torch.compile(lambda x: torch.sparse.mm(At, x))
    compiled = {"hopkit": lambda: hk(X), "torch.sparse.mm": lambda: ts(X)}
    Xg, W = X.clone().requires_grad_(), torch.randn(n, F)

    def train(f):  # a layer in training: forward, a loss on Y, backward; returns dL/dX
        def go():
            Xg.grad = None
            (f(Xg) * W).sum().backward()
            return Xg.grad
        return go

    trained = {"hopkit": train(hk), "torch.sparse.mm": train(ts)}
    gref = train(lambda x: torch.sparse.mm(At, x))()
    from hopkit.torch_ops.spmm import cpp_kernel

    rows = []
    # "Python kernel": the same compiled program with hopkit::spmm's C++ CPU kernel
    # removed (the dispatcher then calls the operator's Python kernel, as on torch < 2.13)
    for label, fns, cpp, want in (("eager", eager, True, ref), ("compiled", compiled, True, ref),
                                  ("compiled, Python kernel", compiled, False, ref),
                                  ("compiled, forward + backward", trained, True, gref)):
        if not cpp_kernel(cpp) and cpp:
            label += " (no C++ kernel: torch < 2.13)"
        try:
            for f in fns.values():
                torch.testing.assert_close(f(), want, rtol=1e-5, atol=1e-5)
            med = timeit_interleaved(fns, repeats=rounds, warmup=3)
        finally:
            cpp_kernel(True)
        case = f"spmm per call, 1k nodes / 10k edges, F=64, {label}"
        rows += [row(GROUP, case, name, t) for name, t in med.items()]
    return rows


def _graph(quick):
    if quick:
        from hopkit.data.synthetic import synthetic

        R = synthetic(5000, 7000, 120000, seed=0)
        return R, hopkit.bipartite_adjacency(R)
    return gowalla_graph()


def _adam(p, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    import torch

    with torch.no_grad():
        g = p.grad
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        p.sub_(lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps))


def _step_case(torch, quick, rounds):
    import torch.nn.functional as F

    R, A = _graph(quick)
    n, U = A.n_rows, R.n_rows
    rng = np.random.default_rng(1)
    e = rng.choice(R.nnz, size=8192, replace=False)
    ids = [torch.from_numpy(a.astype(np.int64)) for a in
           (R.row_ids()[e], R.indices[e] + U, rng.integers(0, R.n_cols, 8192) + U)]
    ei = torch.from_numpy(A.to_edge_index())  # the same symmetric graph as a PyG edge_index

    def hopkit_step(E0, m, v, t: int):
        E0.grad = None
        E = hopkit.propagate(A, E0, 3)
        loss = hopkit.bpr_loss(E, E, *ids) + 1e-4 * E0.square().sum() / 8192
        loss.backward()
        _adam(E0, m, v, t)
        return loss.detach()

    from torch_geometric.nn import LGConv

    convs = [LGConv() for _ in range(3)]

    def pyg_step(E0, m, v, t: int):
        E0.grad = None
        h, acc = E0, E0
        for conv in convs:
            h = conv(h, ei)
            acc = acc + h
        E = acc / 4
        eu, ep, en = E[ids[0]], E[ids[1]], E[ids[2]]
        loss = F.softplus((eu * en).sum(1) - (eu * ep).sum(1)).mean() \
            + 1e-4 * E0.square().sum() / 8192
        loss.backward()
        _adam(E0, m, v, t)
        return loss.detach()

    def state():
        torch.manual_seed(0)
        E0 = torch.nn.Parameter(torch.randn(n, 64) * 0.1)
        return [E0, torch.zeros_like(E0), torch.zeros_like(E0), 0]

    with torch._dynamo.config.patch(trace_autograd_ops=True):
        hk_c = torch.compile(hopkit_step, fullgraph=True)
        pyg_c = torch.compile(pyg_step)
        impls = {"hopkit": (hopkit_step, state()), "hopkit compiled": (hk_c, state()),
                 "PyG LGConv x3": (pyg_step, state()),
                 "PyG LGConv x3 compiled": (pyg_c, state())}
        first = {}
        for name, (fn, s) in impls.items():  # the same first step for every implementation
            s[3] += 1
            first[name] = fn(*s)
        for loss in first.values():
            torch.testing.assert_close(loss, first["hopkit"], rtol=1e-5, atol=1e-6)

        def runner(fn, s):
            def go():
                s[3] += 1
                fn(*s)
            return go

        fns = {name: runner(fn, s) for name, (fn, s) in impls.items()}
        med = timeit_interleaved(fns, repeats=rounds, warmup=1)
    case = f"LightGCN step, {n} nodes / {A.nnz} nnz, d=64, 3 layers, B=8192"
    # the report's reference row is "hopkit": the compiled step, then the eager one
    comp, eager = case + ", compiled", case + ", eager"
    return [row(GROUP, comp, "hopkit", med["hopkit compiled"]),
            row(GROUP, comp, "eager hopkit", med["hopkit"]),
            row(GROUP, comp, "PyG LGConv x3 compiled", med["PyG LGConv x3 compiled"]),
            row(GROUP, eager, "hopkit", med["hopkit"]),
            row(GROUP, eager, "PyG LGConv x3", med["PyG LGConv x3"])]


def run(quick=False):
    import torch

    rows = _spmm_case(torch, 101 if quick else 501)
    rows += _step_case(torch, quick, 5 if quick else 11)
    return rows
