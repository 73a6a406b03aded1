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
import traceback

import hopkit
import numpy as np
import torch
from hopkit.bench._common import report
from hopkit.data.synthetic import synthetic

RESULTS = []


DEVICE = {"type": "cuda"}


def cuda_time(fn, repeats=20, warmup=3, inner=1):
    """Median milliseconds per fn() on the current stream, by CUDA events
    around `inner` back-to-back calls (inner > 1 lets the host queue the next
    call while the device runs this one, as a training loop does); wall time
    for a --device cpu dry run."""
    if DEVICE["type"] != "cuda":
        return wall_time(fn, repeats=min(repeats, 3), warmup=1)
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(inner):
            fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / inner)
    return statistics.median(times)


def graph_time(fn, repeats=20):
    """Median milliseconds of one replay of fn() captured as a CUDA graph: the
    device time alone, with no host launch overhead. None when fn cannot be
    captured (or on a CPU dry run)."""
    if DEVICE["type"] != "cuda":
        return None
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
    except Exception as e:  # noqa: BLE001 - a peer that cannot be captured is reported as such
        print(f"  (graph capture failed: {str(e).splitlines()[0][:100]})", file=sys.stderr)
        torch.cuda.synchronize()
        return None
    ms = cuda_time(g.replay, repeats=repeats, warmup=2)
    del g
    return ms


def wall_time(fn, repeats=5, warmup=1):
    """Median wall milliseconds of a host-synchronous fn() (work on other streams)."""
    import time

    for _ in range(warmup):
        fn()
    sync = torch.cuda.synchronize if DEVICE["type"] == "cuda" else (lambda: None)
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def add(group, case, impl, ms, **extra):
    RESULTS.append({"group": group, "case": case, "impl": impl, "median_ms": ms, **extra})
    print(f"    {group} | {case} | {impl}: {ms:.4g} ms", flush=True)  # partial log if cut short


def na(group, case, impl, why):
    RESULTS.append({"group": group, "case": case, "impl": impl, "median_ms": None, "n/a": why})


# ---------------------------------------------------------------- machine roofs
def copy_bandwidth(dev):
    n = 1 << 28 if dev.type == "cuda" else 1 << 24  # 1 GiB of float32 on the GPU
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
def graphs(quick, tiny=False):
    if tiny:  # a few seconds on a CPU: checks the script, measures nothing useful
        return [("tiny", synthetic(1500, 2000, 30000, seed=0))]
    out = [("gowalla", synthetic(29858, 40981, 1027370, seed=0))]
    if not quick:
        out.append(("gowalla_x10", synthetic(298580, 409810, 10273700, seed=0)))
    return out


def torch_csr(A, dev, dtype):
    vals = torch.from_numpy(np.array(A.values)).to(dtype)
    return torch.sparse_csr_tensor(torch.from_numpy(np.array(A.indptr)),
                                   torch.from_numpy(np.array(A.indices, dtype=np.int64)),
                                   vals, size=A.shape).to(dev)


def check(group, case, impl, got, want, rtol, atol):
    """True when got matches want; otherwise records impl as n/a (check failed)."""
    try:
        torch.testing.assert_close(got.float(), want.float(), rtol=rtol, atol=atol)
    except AssertionError as e:
        na(group, case, impl, "CHECK FAILED: " + str(e).splitlines()[0][:120])
        print(f"[{group}] {case}: {impl} disagrees with its peer:\n{e}", file=sys.stderr)
        return False
    return True


# ---------------------------------------------------------------- spmm
def bench_spmm(gname, A, dev, bw, sweep=False):
    F = 64
    dtypes = [(torch.float32, 1e-4)] + ([(torch.bfloat16, 3e-2)] if dev.type == "cuda" else [])
    for dtype, tol in dtypes:
        case = f"{gname} sum F={F} {str(dtype).split('.')[-1]}"
        X = torch.randn(A.n_cols, F, device=dev, dtype=dtype)
        Y = hopkit.spmm(A, X)
        At = torch_csr(A, dev, dtype)
        try:
            Yt = torch.sparse.mm(At, X)
        except RuntimeError as e:  # cuSPARSE has no bf16 CSR SpMM on some builds
            Yt = None
            na("spmm", case, "torch.sparse.mm", str(e).splitlines()[0][:80])
        # Checked against float32 arithmetic on the same inputs: a half-type
        # peer's own rounding is not the truth (hopkit accumulates in float32).
        want = torch.sparse.mm(At.float(), X.float()) if dtype != torch.float32 else Yt
        if not check("spmm", case, "hopkit", Y, want, tol, tol):
            continue
        es = X.element_size()
        # The byte model: indptr + indices + values once, one X row per
        # nonzero, Y once. Compulsory: the same with X read once.
        structure = (A.n_rows + 1) * 8 + A.nnz * (4 + es) + A.n_rows * F * es
        model = {"issue": structure + A.nnz * F * es, "compulsory": structure + A.n_cols * F * es}

        def fracs(ms, model=model):
            return {f"frac_bw_{k}": v / (ms * 1e-3) / bw for k, v in model.items()}

        impls = [("hopkit", lambda: hopkit.spmm(A, X))]  # noqa: B023
        if Yt is not None:
            impls.append(("torch.sparse.mm", lambda: torch.sparse.mm(At, X)))  # noqa: B023
        for impl, fn in impls:
            t = cuda_time(fn, inner=10)
            g = graph_time(fn)
            add("spmm", case, impl, t, graph_ms=g, **fracs(t),
                **({} if g is None else {"graph_" + k: v for k, v in fracs(g).items()}))
        if sweep:
            _seg_len_sweep(gname, A, X, fracs)


def _seg_len_sweep(gname, A, X, fracs):
    """hopkit spmm over row-segment lengths (device CSR plan rebuilt) x
    unrolls (edges in flight per lane group; auto = the default by dtype)."""
    from hopkit.cuda_backend import _common as cu

    case = f"{gname} sum F={X.shape[1]} {str(X.dtype).split('.')[-1]}"
    key = ("torch_graph", str(X.device))  # the device graph: its plan is cached with its tensors
    mod = hopkit._backend.cuda_module()
    if mod is None or DEVICE["type"] != "cuda":
        return
    keep_seg, keep_u = cu.SEG_LEN, mod.spmm_unroll()
    try:
        for seg in (32, 64, 128, 256):
            cu.SEG_LEN = seg
            A._cache.pop(key, None)
            hopkit.spmm(A, X)
            for u in (0, 1, 2, 4):
                mod.set_spmm_unroll(u)
                t = cuda_time(lambda: hopkit.spmm(A, X), inner=10)
                add("spmm-tuning", case, f"seg_len={seg} unroll={u or 'auto'}", t, **fracs(t))
    finally:
        cu.SEG_LEN = keep_seg
        mod.set_spmm_unroll(keep_u)
        A._cache.pop(key, None)


# ---------------------------------------------------------------- propagate
def _hopkit_propagate(A, x, layers):
    """hopkit.propagate (mean of layers 0..L, fused), else chained spmm (named)."""
    if hasattr(hopkit, "propagate"):
        return hopkit.propagate(A, x, layers, combine="mean"), "hopkit.propagate"
    h, acc = x, x
    for _ in range(layers):
        h = hopkit.spmm(A, h)
        acc = acc + h
    return acc / (layers + 1), "hopkit spmm x3"


def bench_propagate(gname, A, dev):
    layers, F = 3, 64
    case = f"{gname} {layers} layers fwd+bwd F={F}"
    fcase = f"{gname} {layers} layers forward F={F}"
    x0 = torch.randn(A.n_rows, F, device=dev)
    try:
        from torch_geometric.nn import LGConv
    except ImportError:
        LGConv = None
    ei = torch.from_numpy(A.to_edge_index()).to(dev)
    w = torch.from_numpy(np.array(A.values)).to(dev)

    def hop_fwd(x):
        return _hopkit_propagate(A, x, layers)[0]

    def hop():
        x = x0.detach().requires_grad_()
        out = hop_fwd(x)
        out.square().sum().backward()
        return out, x.grad

    _, impl = _hopkit_propagate(A, x0, layers)
    if LGConv is not None:
        conv = LGConv(normalize=False).to(dev)

        def pyg_fwd(x):
            h, acc = x, x
            for _ in range(layers):
                h = conv(h, ei, w)
                acc = acc + h
            return acc / (layers + 1)

        def pyg():
            x = x0.detach().requires_grad_()
            out = pyg_fwd(x)
            out.square().sum().backward()
            return out, x.grad

        (o1, g1), (o2, g2) = hop(), pyg()
        if not (check("propagate", case, "hopkit", o1, o2, 1e-4, 1e-4)
                and check("propagate", case, "hopkit (grad)", g1, g2, 1e-3, 1e-3)):
            return
        add("propagate", case, "PyG LGConv x3", cuda_time(pyg, repeats=10, inner=3))
        with torch.no_grad():
            add("propagate", fcase, "PyG LGConv x3", cuda_time(lambda: pyg_fwd(x0), inner=3))
    else:
        na("propagate", case, "PyG LGConv x3", "torch_geometric not installed")
    add("propagate", case, "hopkit", cuda_time(hop, repeats=10, inner=3), via=impl,
        graph_ms=graph_time(hop))
    with torch.no_grad():
        add("propagate", fcase, "hopkit", cuda_time(lambda: hop_fwd(x0), inner=3), via=impl,
            graph_ms=graph_time(lambda: hop_fwd(x0)))


# ---------------------------------------------------------------- attention
def bench_attention(gname, A, dev):
    """GAT attention forward: PyG GATConv (linear + attention + aggregation) vs
    the same linear layer in torch + hopkit.attention_aggregate(score="gat")."""
    F = 64
    case = f"{gname} GAT attention fwd F={F} heads=1"
    try:
        from torch_geometric.nn import GATConv
    except ImportError:
        na("attention", case, "PyG GATConv", "torch_geometric not installed")
        return
    if not hasattr(hopkit, "attention_aggregate"):
        na("attention", case, "hopkit", "hopkit.attention_aggregate not in this build")
        return
    x = torch.randn(A.n_rows, F, device=dev)
    ei = torch.from_numpy(A.to_edge_index()).to(dev)
    conv = GATConv(F, F, heads=1, add_self_loops=False, bias=False).to(dev)
    lin = getattr(conv, "lin", None) or conv.lin_src
    a_src, a_dst = conv.att_src.detach().reshape(1, F), conv.att_dst.detach().reshape(1, F)
    W = lin.weight.detach()

    def hop():
        h = x @ W.T
        q = (h * a_dst).sum(1, keepdim=True)
        k = (h * a_src).sum(1, keepdim=True)
        return hopkit.attention_aggregate(A, q, k, h, score="gat", negative_slope=0.2)

    with torch.no_grad():
        want = conv(x, ei)
        if not check("attention", case, "hopkit", hop(), want, 1e-4, 1e-4):
            return
        add("attention", case, "PyG GATConv", cuda_time(lambda: conv(x, ei), repeats=10))
        add("attention", case, "hopkit", cuda_time(hop, repeats=10))


# ---------------------------------------------------------------- top-k
def bench_topk(gname, R, dev, sgemm, bf16, sweep=False):
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

    def scores_only():  # the peer's matrix products alone: its floor
        for b0 in range(0, U, batch):
            users[b0:b0 + batch] @ items.T

    flops = 2.0 * U * n_items * F
    t_peer = cuda_time(peer, repeats=5)
    add("topk", case, "torch mm+mask+topk", t_peer, frac_sgemm=flops / (t_peer * 1e-3) / sgemm)
    t_mm = cuda_time(scores_only, repeats=5)
    add("topk", case, "torch mm alone (no mask, no select)", t_mm,
        frac_sgemm=flops / (t_mm * 1e-3) / sgemm)
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
    idx = hopkit.topk(users, items, k, exclude=R)[1]
    want = peer()
    agree = (idx == want).float().mean().item()
    if agree < 0.999:  # torch.topk breaks ties arbitrarily; hopkit by index
        na("topk", case, "hopkit", f"CHECK FAILED: agrees with torch on {agree:.4f}")
        return
    t = cuda_time(lambda: hopkit.topk(users, items, k, exclude=R), repeats=5)
    add("topk", case, "hopkit", t, frac_sgemm=flops / (t * 1e-3) / sgemm,
        frac_bf16_gemm=flops / (t * 1e-3) / bf16)
    if sweep:  # scores per query tile
        import importlib

        cu = importlib.import_module("hopkit.cuda_backend.topk")
        keep = cu.TOPK_TILE_SCORES
        try:
            for tile in (1 << 24, 1 << 25, 1 << 27, 1 << 28):
                cu.TOPK_TILE_SCORES = tile
                t = cuda_time(lambda: hopkit.topk(users, items, k, exclude=R), repeats=5)
                add("topk-tile", case, f"tile={tile >> 20}M scores", t)
        finally:
            cu.TOPK_TILE_SCORES = keep


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_bench.json")
    ap.add_argument("--quick", action="store_true", help="Gowalla size only")
    ap.add_argument("--tiny", action="store_true", help="a tiny graph (for --device cpu)")
    ap.add_argument("--sweep", action="store_true",
                    help="also time spmm with other row-segment lengths and unrolls, and "
                         "topk with other tile sizes (first graph only)")
    ap.add_argument("--device", default="cuda",
                    help="cuda (default), or cpu for a dry run of the script's logic")
    args = ap.parse_args(argv)
    DEVICE["type"] = args.device
    if args.device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("gpu_bench: no CUDA device")
        if hopkit._backend.cuda_module() is None:
            sys.exit("gpu_bench: hopkit was built without CUDA (hopkit._cuda missing)")
        dev = torch.device("cuda", torch.cuda.current_device())
        name = torch.cuda.get_device_name(dev)
    else:
        dev, name = torch.device("cpu"), f"CPU dry run ({platform.processor() or 'cpu'})"
    bw = copy_bandwidth(dev)
    sgemm = gemm_rate(dev, torch.float32, 8192 if args.device == "cuda" else 1024)
    bf16 = gemm_rate(dev, torch.bfloat16, 8192 if args.device == "cuda" else 1024)
    print(f"device: {name}; torch {torch.__version__}; python {platform.python_version()}")
    print(f"measured D2D copy bandwidth {bw / 1e9:.0f} GB/s, sgemm {sgemm / 1e12:.1f} TFLOP/s, "
          f"bf16 GEMM {bf16 / 1e12:.1f} TFLOP/s")
    for gi, (gname, R) in enumerate(graphs(args.quick, args.tiny)):
        A = hopkit.bipartite_adjacency(R)  # symmetric normalised (U+I) adjacency, float32
        print(f"{gname}: {R.shape[0]} users, {R.shape[1]} items, adjacency nnz {A.nnz}")
        sweep = args.sweep and gi == 0  # tuning sweeps on the first graph only
        groups = [("spmm", lambda: bench_spmm(gname, A, dev, bw, sweep)),  # noqa: B023
                  ("propagate", lambda: bench_propagate(gname, A, dev)),  # noqa: B023
                  ("attention", lambda: bench_attention(gname, A, dev)),  # noqa: B023
                  ("topk", lambda: bench_topk(gname, R, dev, sgemm, bf16, sweep))]  # noqa: B023
        for group, run in groups:
            print(f"  {group} ...", flush=True)
            try:  # one failing group is reported and the others still run
                run()
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                na(group, gname, "hopkit", f"ERROR: {type(e).__name__}: {str(e)[:150]}")
                if DEVICE["type"] == "cuda":
                    torch.cuda.synchronize()
    report(RESULTS)
    with open(args.out, "w") as f:
        json.dump({"device": name, "torch": torch.__version__, "copy_bandwidth_GBps": bw / 1e9,
                   "sgemm_TFLOPs": sgemm / 1e12, "bf16_gemm_TFLOPs": bf16 / 1e12,
                   "rows": RESULTS}, f, indent=1)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
