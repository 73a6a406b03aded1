"""propagate and attention_aggregate: hopkit vs PyG, torch.sparse, plain torch.

Cases (Gowalla-shaped graph, F = 64, float32, one process):

* 3-layer LightGCN propagation, mean combination, forward and forward +
  backward: ``hopkit.propagate`` vs PyG ``LGConv`` x 3 on edge_index (the
  normalised weights passed as edge_weight, normalize=False) and on a cached
  CSR ``adj_t`` (torch sparse CSR tensor), 3 chained ``torch.sparse.mm`` CSR
  calls, 3 chained ``hopkit.spmm`` calls (with autograd), and the Numba
  backend (forward).
* attention_aggregate forward + backward vs the same computation in plain
  torch (gather + sum logits, ``torch_geometric.utils.softmax``, index_add)
  and vs PyG ``TransformerConv`` / ``GATConv``: the hopkit rows run the same
  layer (the PyG module's own linear maps, then ``attention_aggregate``) and
  are checked equal to the PyG output before timing.

Byte model of one propagate (the fraction of measured copy bandwidth printed
as ``bw``), per hop: indptr + indices + values read once, one source row per
nonzero, the output row written once and, when the layer weight is nonzero,
the X row read once: 8(N+1) + (4 + 4) nnz + 4 F nnz + 8 N F bytes (float32).

Peak extra memory (``peak_MB``): in this process, after a warm-up call and
``malloc_trim``, VmHWM is reset through /proc/self/clear_refs and the growth
of the peak resident set over the resident set before the call is reported
(every allocator counts: NumPy, torch, C++). Inputs, the graph and its cached
transpose exist before the call; the result of the call is included.
"""

from __future__ import annotations

import ctypes
import gc
import math

import numpy as np

import hopkit

from ._common import copy_bandwidth, gowalla_graph, row, timeit

GROUP = "propagate"
LAYERS = 3


def propagate_bytes(A, F, layers=LAYERS, itemsize=4):
    hop = (8 * (A.n_rows + 1) + A.nnz * (A.indices.itemsize + itemsize)
           + A.nnz * F * itemsize + 2 * A.n_rows * F * itemsize)
    return layers * hop


# ---------------------------------------------------------------- memory
def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def peak_extra_bytes(fn):
    """Peak resident-set growth of one ``fn()`` call (None if unsupported)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        fn()
        gc.collect()
        libc.malloc_trim(0)
        before = _status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        out = fn()
        peak = _status("VmHWM")
        del out
        return max(peak - before, 0)
    except (OSError, KeyError):
        return None


# ---------------------------------------------------------------- propagate
def _mean_chain(step, x, layers=LAYERS):
    h, acc = x, x
    for _ in range(layers):
        h = step(h)
        acc = acc + h
    return acc / (layers + 1)


def propagate_peers(A, X, torch, backward):
    Xt = torch.from_numpy(X)
    G = torch.randn(A.n_rows, X.shape[1])
    At = A.to_torch()
    ei = torch.from_numpy(A.to_edge_index())
    w = torch.from_numpy(np.array(A.values))

    def with_grad(f):
        if not backward:
            return lambda: f(Xt)

        def run():
            x = Xt.detach().requires_grad_(True)
            f(x).backward(G)
            return x.grad
        return run

    peers = {"hopkit": with_grad(lambda x: hopkit.propagate(A, x, LAYERS))}
    try:
        from torch_geometric.nn import LGConv

        conv = LGConv(normalize=False)
        peers["PyG LGConv x3 (edge_index)"] = with_grad(
            lambda x: _mean_chain(lambda h: conv(h, ei, w), x))
        peers["PyG LGConv x3 (CSR adj_t)"] = with_grad(
            lambda x: _mean_chain(lambda h: conv(h, At), x))
    except ImportError:
        pass
    peers["torch.sparse.mm(csr) x3"] = with_grad(
        lambda x: _mean_chain(lambda h: torch.sparse.mm(At, h), x))
    peers["hopkit.spmm x3 (autograd)"] = with_grad(
        lambda x: _mean_chain(lambda h: hopkit.spmm(A, h), x))
    if not backward and hopkit.config()["backends"]["numba"]:
        peers["hopkit numba backend"] = lambda: hopkit.propagate(A, X, LAYERS, backend="numba")
    return peers


def _check_propagate(A, X):
    S = A.to_scipy()
    h, acc = X.astype(np.float64), X.astype(np.float64)
    for _ in range(LAYERS):
        h = S @ h
        acc += h
    np.testing.assert_allclose(hopkit.propagate(A, X, LAYERS), acc / (LAYERS + 1), rtol=1e-4,
                               atol=1e-5)


def run_propagate(A, torch, repeats, F=64, memory=True):
    rows = []
    bw = copy_bandwidth()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((A.n_cols, F)).astype(np.float32)
    _check_propagate(A, X)
    nbytes = propagate_bytes(A, F)
    nf = A.n_rows * F * 4
    for backward in (False, True):
        case = f"{LAYERS}-layer mean {'fwd+bwd' if backward else 'fwd'} F={F}"
        for name, fn in propagate_peers(A, X, torch, backward).items():
            t = timeit(fn, repeats=repeats, warmup=1)[0]
            extra = {}
            if name == "hopkit":
                extra["bw"] = nbytes * (2 if backward else 1) / t / bw
            if memory:
                mem = peak_extra_bytes(fn)
                if mem is not None:
                    extra["peak_MB"] = mem / 2**20
                    extra["peak_NF"] = mem / nf  # in units of N * F * 4 bytes
            rows.append(row(GROUP, case, name, t, **extra))
    return rows


# ---------------------------------------------------------------- attention
def _grad_step(f, inputs, G):
    """A callable running f(*inputs) forward and backward (gradient G)."""
    def run():
        xs = [t.detach().requires_grad_(True) for t in inputs]
        f(*xs).backward(G)
        return [x.grad for x in xs]
    return run


def _plain_torch_attention(torch, A, heads):
    from torch_geometric.utils import softmax

    src = torch.from_numpy(np.array(A.indices, dtype=np.int64))
    dst = torch.from_numpy(np.array(A.row_ids()))
    n = A.n_rows

    def f(Q, K, V):
        dk, dv = Q.shape[1] // heads, V.shape[1] // heads
        q, k = Q.view(-1, heads, dk), K.view(-1, heads, dk)
        s = (q[dst] * k[src]).sum(-1) / math.sqrt(dk)
        p = softmax(s, dst, num_nodes=n)
        msg = p.unsqueeze(-1) * V.view(-1, heads, dv)[src]
        return torch.zeros(n, heads, dv).index_add(0, dst, msg).view(n, heads * dv)
    return f


def run_attention(A, torch, repeats, F=64, memory=True):
    """attention_aggregate fwd+bwd vs plain torch and PyG convs (same layer)."""
    rows = []
    rng = np.random.default_rng(1)
    n = A.n_rows
    G = torch.randn(n, F)
    for heads in (1, 4):
        case = f"attention fwd+bwd heads={heads} F={F}"
        Q, K, V = (torch.from_numpy(rng.standard_normal((n, F)).astype(np.float32))
                   for _ in range(3))
        plain = _plain_torch_attention(torch, A, heads)
        torch.testing.assert_close(hopkit.attention_aggregate(A, Q, K, V, heads),
                                   plain(Q, K, V), rtol=1e-4, atol=1e-5)

        def mine(q, k, v, h=heads):
            return hopkit.attention_aggregate(A, q, k, v, h)

        impls = {"hopkit": _grad_step(mine, (Q, K, V), G),
                 "plain torch (gather, PyG softmax, index_add)": _grad_step(plain, (Q, K, V), G)}
        for name, fn in impls.items():
            t = timeit(fn, repeats=repeats, warmup=1)[0]
            extra = {}
            if memory:
                mem = peak_extra_bytes(fn)
                if mem is not None:
                    extra["peak_MB"] = mem / 2**20
            rows.append(row(GROUP, case, name, t, **extra))
    rows += _run_pyg_convs(A, torch, repeats, F, memory)
    return rows


def _run_pyg_convs(A, torch, repeats, F, memory):
    try:
        from torch_geometric.nn import GATConv, TransformerConv
    except ImportError:
        return []
    rows = []
    n = A.n_rows
    x0 = torch.randn(n, F)
    G = torch.randn(n, F)
    ei = torch.from_numpy(A.to_edge_index())
    torch.manual_seed(0)
    heads = 4
    tconv = TransformerConv(F, F // heads, heads=heads)
    gconv = GATConv(F, F // heads, heads=heads, add_self_loops=False)

    def hop_transformer(x):
        q, k, v = tconv.lin_query(x), tconv.lin_key(x), tconv.lin_value(x)
        return hopkit.attention_aggregate(A, q, k, v, heads) + tconv.lin_skip(x)

    def hop_gat(x):
        h = gconv.lin(x)
        C = F // heads
        a_src = (h.view(n, heads, C) * gconv.att_src).sum(-1)
        a_dst = (h.view(n, heads, C) * gconv.att_dst).sum(-1)
        return hopkit.attention_aggregate(A, a_dst, a_src, h, heads, "gat",
                                          negative_slope=gconv.negative_slope) + gconv.bias

    for label, conv, mine in (("TransformerConv", tconv, hop_transformer),
                              ("GATConv", gconv, hop_gat)):
        case = f"{label} layer fwd+bwd heads={heads} F={F}"
        with torch.no_grad():
            torch.testing.assert_close(mine(x0), conv(x0, ei), rtol=1e-4, atol=1e-4)

        for name, fn in (("hopkit", _grad_step(mine, (x0,), G)),
                         (f"PyG {label}", _grad_step(lambda x, c=conv: c(x, ei), (x0,), G))):
            t = timeit(fn, repeats=repeats, warmup=1)[0]
            extra = {}
            if memory:
                mem = peak_extra_bytes(fn)
                if mem is not None:
                    extra["peak_MB"] = mem / 2**20
            rows.append(row(GROUP, case, name, t, **extra))
    return rows


def run(quick=False):
    try:
        import torch
    except ImportError:
        print("[propagate] needs torch")
        return []
    _, A = gowalla_graph()
    print(f"[propagate] graph: {A}, copy bandwidth {copy_bandwidth() / 1e9:.1f} GB/s, "
          f"threads {hopkit.get_num_threads()}")
    repeats = 3 if quick else 7
    rows = run_propagate(A, torch, repeats)
    rows += run_attention(A, torch, repeats)
    return rows


if __name__ == "__main__":
    from ._common import report

    report(run())
