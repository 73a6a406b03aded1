"""One-run GPU benchmark of hopkit's CUDA kernels against their peers.

    python benchmarks/gpu_bench.py [--out gpu_bench.json] [--quick]

Times, with CUDA events, in one process on the current GPU, on the
Gowalla-shaped graph (29,858 users x 40,981 items, 1.03M interactions; the
(U+I) adjacency has ~2.05M nonzeros) and on a 10x larger one:

* spmm sum forward, F = 64 (float32, bfloat16): hopkit vs torch.sparse.mm
  (cuSPARSE CSR), with the fraction of measured device-to-device copy
  bandwidth under the byte model (indptr + indices + values + X once + Y
  once: compulsory traffic);
* LightGCN propagation, 3 layers forward + backward: hopkit (propagate when
  it has a CUDA path, else 3 chained spmm, named as such) vs PyG LGConv x3 on
  edge_index (normalize=False with the same normalised weights);
* attention aggregation forward: hopkit.attention_aggregate (when it has a
  CUDA path) vs PyG GATConv on edge_index;
* all-user top-20 with exclusion of the training items: hopkit.topk (when it
  has a CUDA path) vs torch.mm + masking + torch.topk in user batches, and
  FAISS GPU (no exclusion; k + max train degree, then filtered) if present,
  with the fraction of the measured sgemm and bf16 GEMM rates.

Every hopkit result is checked against its peer before timing. Implementations
that are missing print as n/a with the reason. Ratios are peer time / hopkit
time (> 1: hopkit faster); absolute times depend on the device named in the
header.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys

import hopkit
import numpy as np
import torch
from hopkit.bench._common import report
from hopkit.data.synthetic import synthetic

RESULTS = []


def cuda_time(fn, repeats=20, warmup=3):
    """Median milliseconds of fn() on the current stream, by CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def wall_time(fn, repeats=5, warmup=1):
    """Median wall milliseconds of a host-synchronous fn() (work on other streams)."""
    import time

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def add(group, case, impl, ms, **extra):
    RESULTS.append({"group": group, "case": case, "impl": impl, "median_ms": ms, **extra})


def na(group, case, impl, why):
    RESULTS.append({"group": group, "case": case, "impl": impl, "median_ms": None, "n/a": why})


# ---------------------------------------------------------------- machine roofs
def copy_bandwidth(dev):
    n = 1 << 28  # 1 GiB of float32
    src = torch.ones(n, device=dev)
    dst = torch.empty_like(src)
    ms = cuda_time(lambda: dst.copy_(src), repeats=10)
    return 2 * src.numel() * 4 / (ms * 1e-3)


def gemm_rate(dev, dtype, n=8192):
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # sgemm means full float32
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    ms = cuda_time(lambda: torch.mm(a, b), repeats=10)
    torch.backends.cuda.matmul.allow_tf32 = prev
    return 2 * n**3 / (ms * 1e-3)


# ---------------------------------------------------------------- graphs
def graphs(quick):
    out = [("gowalla", synthetic(29858, 40981, 1027370, seed=0))]
    if not quick:
        out.append(("gowalla_x10", synthetic(298580, 409810, 10273700, seed=0)))
    return out


def torch_csr(A, dev, dtype):
    return torch.sparse_csr_tensor(torch.from_numpy(np.array(A.indptr)),
                                   torch.from_numpy(np.array(A.indices, dtype=np.int64)),
                                   torch.from_numpy(np.array(A.values)), size=A.shape,
                                   device=dev).to(dtype)


def check(name, got, want, rtol, atol):
    torch.testing.assert_close(got.float(), want.float(), rtol=rtol, atol=atol,
                               msg=lambda m: f"{name}: hopkit disagrees with its peer: {m}")


# ---------------------------------------------------------------- spmm
def bench_spmm(gname, A, dev, bw):
    F = 64
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 3e-2)):
        case = f"{gname} sum F={F} {str(dtype).split('.')[-1]}"
        X = torch.randn(A.n_cols, F, device=dev, dtype=dtype)
        Y = hopkit.spmm(A, X)
        At = torch_csr(A, dev, dtype)
        try:
            Yt = torch.sparse.mm(At, X)
            check(case, Y, Yt, tol, tol)
            t_peer = cuda_time(lambda: torch.sparse.mm(At, X))  # noqa: B023
        except RuntimeError as e:  # cuSPARSE has no bf16 CSR SpMM on some builds
            t_peer = None
            na("spmm", case, "torch.sparse.mm", str(e).splitlines()[0][:80])
        t = cuda_time(lambda: hopkit.spmm(A, X))  # noqa: B023
        es = X.element_size()
        nbytes = (A.n_rows + 1) * 8 + A.nnz * (4 + es) + (A.n_cols + A.n_rows) * F * es
        add("spmm", case, "hopkit", t, GBps=nbytes / (t * 1e-3) / 1e9,
            frac_copy_bw=nbytes / (t * 1e-3) / bw)
        if t_peer is not None:
            add("spmm", case, "torch.sparse.mm", t_peer, GBps=nbytes / (t_peer * 1e-3) / 1e9,
                frac_copy_bw=nbytes / (t_peer * 1e-3) / bw)


# ---------------------------------------------------------------- propagate
def _hopkit_propagate(A, x, layers):
    """hopkit.propagate if it takes CUDA tensors, else chained spmm (named)."""
    if hasattr(hopkit, "propagate"):
        try:
            return hopkit.propagate(A, x, layers), "hopkit.propagate"
        except TypeError:
            pass
    h, acc = x, x
    for _ in range(layers):
        h = hopkit.spmm(A, h)
        acc = acc + h
    return acc / (layers + 1), "hopkit spmm x3"


def bench_propagate(gname, A, dev):
    layers, F = 3, 64
    case = f"{gname} {layers} layers fwd+bwd F={F}"
    x0 = torch.randn(A.n_rows, F, device=dev)
    try:
        from torch_geometric.nn import LGConv
    except ImportError:
        LGConv = None
    ei = torch.from_numpy(A.to_edge_index()).to(dev)
    w = torch.from_numpy(np.array(A.values)).to(dev)

    def hop():
        x = x0.detach().requires_grad_()
        out, _ = _hopkit_propagate(A, x, layers)
        out.square().sum().backward()
        return out, x.grad

    _, impl = _hopkit_propagate(A, x0, layers)
    if LGConv is not None:
        conv = LGConv(normalize=False).to(dev)

        def pyg():
            x = x0.detach().requires_grad_()
            h, acc = x, x
            for _ in range(layers):
                h = conv(h, ei, w)
                acc = acc + h
            out = acc / (layers + 1)
            out.square().sum().backward()
            return out, x.grad

        (o1, g1), (o2, g2) = hop(), pyg()
        check(case, o1, o2, 1e-4, 1e-4)
        check(case + " grad", g1, g2, 1e-3, 1e-3)
        add("propagate", case, "PyG LGConv x3", cuda_time(pyg, repeats=10))
    else:
        na("propagate", case, "PyG LGConv x3", "torch_geometric not installed")
    add("propagate", case, "hopkit", cuda_time(hop, repeats=10), impl=impl)


# ---------------------------------------------------------------- attention
def bench_attention(gname, A, dev):
    F, heads = 64, 1
    case = f"{gname} attention fwd F={F} heads={heads}"
    try:
        from torch_geometric.nn import GATConv
    except ImportError:
        na("attention", case, "PyG GATConv", "torch_geometric not installed")
        GATConv = None
    x = torch.randn(A.n_rows, F, device=dev)
    ei = torch.from_numpy(A.to_edge_index()).to(dev)
    if GATConv is not None:
        conv = GATConv(F, F, heads=heads, add_self_loops=False).to(dev)
        add("attention", case, "PyG GATConv", cuda_time(lambda: conv(x, ei), repeats=10))
    if not hasattr(hopkit, "attention_aggregate"):
        na("attention", case, "hopkit", "hopkit.attention_aggregate not in this build")
        return
    q = torch.randn(A.n_rows, F, device=dev)
    try:
        hopkit.attention_aggregate(A, q, x, x)
    except (TypeError, ValueError) as e:
        na("attention", case, "hopkit", str(e)[:100])
        return
    add("attention", case, "hopkit", cuda_time(lambda: hopkit.attention_aggregate(A, q, x, x),
                                               repeats=10))


# ---------------------------------------------------------------- top-k
def bench_topk(gname, R, dev, sgemm, bf16):
    k, F = 20, 64
    case = f"{gname} all-user top-{k} F={F} with exclusion"
    U, n_items = R.shape
    users = torch.randn(U, F, device=dev)
    items = torch.randn(n_items, F, device=dev)
    indptr = torch.from_numpy(np.array(R.indptr)).to(dev)
    cols = torch.from_numpy(np.array(R.indices, dtype=np.int64)).to(dev)
    rows = torch.repeat_interleave(torch.arange(U, device=dev), indptr[1:] - indptr[:-1])
    batch = 4096

    def peer():
        out = torch.empty(U, k, dtype=torch.int64, device=dev)
        for b0 in range(0, U, batch):
            b1 = min(U, b0 + batch)
            S = users[b0:b1] @ items.T
            lo, hi = int(R.indptr[b0]), int(R.indptr[b1])
            S[rows[lo:hi] - b0, cols[lo:hi]] = -float("inf")
            out[b0:b1] = torch.topk(S, k, dim=1).indices
        return out

    flops = 2.0 * U * n_items * F
    t_peer = cuda_time(peer, repeats=5)
    add("topk", case, "torch mm+mask+topk", t_peer, frac_sgemm=flops / (t_peer * 1e-3) / sgemm)
    try:
        import faiss  # noqa: F401

        have_gpu_faiss = hasattr(faiss, "StandardGpuResources")
    except ImportError:
        have_gpu_faiss = False
    if have_gpu_faiss:
        res = faiss.StandardGpuResources()
        index = faiss.GpuIndexFlatIP(res, F)
        index.add(items.cpu().numpy())
        kk = k + int(np.diff(R.indptr).max())
        kk = min(kk, 2048)  # FAISS GPU k limit
        uq = users.cpu().numpy()
        add("topk", case, f"FAISS GPU flat IP (k={kk}, host queries, no exclusion)",
            wall_time(lambda: index.search(uq, kk), repeats=3))
    else:
        na("topk", case, "FAISS GPU", "faiss with GPU support not installed")
    if not hasattr(hopkit, "topk"):
        na("topk", case, "hopkit", "hopkit.topk not in this build")
        return
    try:
        got = hopkit.topk(users, items, k, exclude=R)
    except (TypeError, ValueError) as e:
        na("topk", case, "hopkit", str(e)[:100])
        return
    idx = got[0] if isinstance(got, tuple) else got
    want = peer()
    agree = (idx == want).float().mean().item()
    if agree < 0.999:
        raise AssertionError(f"{case}: hopkit.topk agrees with torch on only {agree:.4f}")
    t = cuda_time(lambda: hopkit.topk(users, items, k, exclude=R), repeats=5)
    add("topk", case, "hopkit", t, frac_sgemm=flops / (t * 1e-3) / sgemm,
        frac_bf16_gemm=flops / (t * 1e-3) / bf16)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_bench.json")
    ap.add_argument("--quick", action="store_true", help="Gowalla size only")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("gpu_bench: no CUDA device")
    if hopkit._backend.cuda_module() is None:
        sys.exit("gpu_bench: hopkit was built without CUDA (hopkit._cuda missing)")
    dev = torch.device("cuda", torch.cuda.current_device())
    name = torch.cuda.get_device_name(dev)
    bw = copy_bandwidth(dev)
    sgemm = gemm_rate(dev, torch.float32)
    bf16 = gemm_rate(dev, torch.bfloat16)
    print(f"device: {name}; torch {torch.__version__}; python {platform.python_version()}")
    print(f"measured D2D copy bandwidth {bw / 1e9:.0f} GB/s, sgemm {sgemm / 1e12:.1f} TFLOP/s, "
          f"bf16 GEMM {bf16 / 1e12:.1f} TFLOP/s")
    for gname, R in graphs(args.quick):
        A = hopkit.bipartite_adjacency(R)  # symmetric normalised (U+I) adjacency, float32
        print(f"{gname}: {R.shape[0]} users, {R.shape[1]} items, adjacency nnz {A.nnz}")
        bench_spmm(gname, A, dev, bw)
        bench_propagate(gname, A, dev)
        bench_attention(gname, A, dev)
        bench_topk(gname, R, dev, sgemm, bf16)
    report(RESULTS)
    with open(args.out, "w") as f:
        json.dump({"device": name, "torch": torch.__version__, "copy_bandwidth_GBps": bw / 1e9,
                   "sgemm_TFLOPs": sgemm / 1e12, "bf16_gemm_TFLOPs": bf16 / 1e12,
                   "rows": RESULTS}, f, indent=1)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
