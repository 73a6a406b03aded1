"""spmm and COO->CSR: hopkit vs scipy.sparse, torch.sparse, PyG, Numba.

Byte model of one spmm (the fraction of measured copy bandwidth printed as
``bw``): indptr + indices + values read once, one X row per nonzero, Y
written once: 8(N+1) + (4|8 + 4) nnz + 4 nnz F + 4 N F bytes (float32).
"""

from __future__ import annotations

import numpy as np

import hopkit

from ._common import copy_bandwidth, gowalla_graph, row, timeit

GROUP = "spmm"


def spmm_bytes(A, F, itemsize=4):
    return (8 * (A.n_rows + 1) + A.nnz * (A.indices.itemsize + itemsize)
            + A.nnz * F * itemsize + A.n_rows * F * itemsize)


def _peers(A, X, reduce, torch, backward):
    """{name: callable} computing the same aggregation (forward, or forward +
    backward wrt X when ``backward``)."""
    peers = {}
    G = None
    if torch is not None:
        Xt = torch.from_numpy(X)
        G = torch.randn(A.n_rows, X.shape[1])
        At = A.to_torch()
        ei = torch.from_numpy(A.to_edge_index())
        w = torch.from_numpy(np.asarray(A.values))
        tred = {"sum": "sum", "mean": "mean", "max": "amax"}[reduce]

        def with_grad(f):
            if not backward:
                return lambda: f(Xt)

            def run():
                x = Xt.detach().requires_grad_(True)
                f(x).backward(G)
            return run

        peers["hopkit"] = with_grad(lambda x: hopkit.spmm(A, x, reduce))
        if reduce == "sum":
            peers["torch.sparse.mm(csr)"] = with_grad(lambda x: torch.sparse.mm(At, x))
        peers[f"torch.sparse.mm(csr, reduce='{tred}')"] = with_grad(
            lambda x: torch.sparse.mm(At, x, reduce=tred))
        try:
            from torch_geometric.nn import LGConv
            from torch_geometric.utils import scatter

            if reduce == "sum":
                conv = LGConv(normalize=False)
                peers["PyG LGConv(edge_index)"] = with_grad(lambda x: conv(x, ei, w))
            else:
                src, dst = ei[0], ei[1]
                pr = {"mean": "mean", "max": "max"}[reduce]
                peers[f"PyG scatter(reduce='{pr}')"] = with_grad(
                    lambda x: scatter(x[src] * w[:, None], dst, 0, A.n_rows, pr))
        except ImportError:
            pass
    else:
        peers["hopkit"] = lambda: hopkit.spmm(A, X, reduce)
    if not backward:
        if reduce == "sum":
            S = A.to_scipy()
            peers["scipy csr @ X"] = lambda: S @ X
        if hopkit.config()["backends"]["numba"]:
            peers["numba"] = lambda: hopkit.spmm(A, X, reduce, backend="numba")
    return peers


def _check(A, X):
    """hopkit's answer against independent oracles before anything is timed."""
    S = A.to_scipy()
    np.testing.assert_allclose(hopkit.spmm(A, X), S @ X, rtol=1e-4, atol=1e-5)
    deg = np.maximum(A.row_degree(), 1)[:, None]
    np.testing.assert_allclose(hopkit.spmm(A, X, "mean"), (S @ X) / deg, rtol=1e-4, atol=1e-5)


def run(quick=False):
    try:
        import torch
    except ImportError:
        torch = None
    _, A = gowalla_graph()
    bw = copy_bandwidth()
    rows = []
    threads = hopkit.get_num_threads()
    print(f"[spmm] graph: {A}, copy bandwidth {bw / 1e9:.1f} GB/s, threads {threads}")
    rng = np.random.default_rng(0)
    dims = (64,) if quick else (16, 64, 256)
    reduces = ("sum", "max") if quick else ("sum", "mean", "max")
    repeats = 5 if quick else 9
    for F in dims:
        X = rng.standard_normal((A.n_cols, F)).astype(np.float32)
        _check(A, X)
        nbytes = spmm_bytes(A, F)
        for reduce in reduces:
            for backward in (False, True):
                case = f"{reduce} {'fwd+bwd' if backward else 'fwd'} F={F}"
                for name, fn in _peers(A, X, reduce, torch, backward).items():
                    try:
                        t = timeit(fn, repeats=repeats, warmup=2)[0]
                    except Exception as e:  # a peer lacking this op is reported, not fatal
                        rows.append(row(GROUP, case, name, float("nan"), error=str(e)[:60]))
                        rows[-1]["median_ms"] = None
                        continue
                    extra = {}
                    if name == "hopkit" and not backward:
                        extra["bw"] = nbytes / t / bw
                    rows.append(row(GROUP, case, name, t, **extra))
    rows += run_coo(A, repeats)
    return rows


def run_coo(A, repeats=7):
    """COO -> CSR of the adjacency's triplets in shuffled order."""
    import scipy.sparse as sp

    rng = np.random.default_rng(1)
    p = rng.permutation(A.nnz)
    r = A.row_ids()[p].astype(np.int32)
    c = np.asarray(A.indices)[p]
    v = np.asarray(A.values)[p]
    B = hopkit.CSR.from_coo(r, c, v, A.shape)
    assert np.array_equal(B.indptr, A.indptr) and np.array_equal(B.indices, A.indices)
    case = f"COO->CSR nnz={A.nnz}"
    t_h = timeit(lambda: hopkit.CSR.from_coo(r, c, v, A.shape), repeats=repeats)[0]
    t_s = timeit(lambda: sp.coo_matrix((v, (r, c)), shape=A.shape).tocsr(), repeats=repeats)[0]
    return [row(GROUP, case, "hopkit", t_h), row(GROUP, case, "scipy coo.tocsr()", t_s)]


if __name__ == "__main__":
    from ._common import report

    report(run())
