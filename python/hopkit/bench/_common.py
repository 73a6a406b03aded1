"""Shared benchmark machinery: timing, machine roofs, the benchmark graph,
result rows and the report (table, JSON, PNG bar chart of the ratios)."""

from __future__ import annotations

import functools
import gc
import json
import time

import numpy as np


def timeit(fn, repeats=7, warmup=2, min_time=0.0):
    """Median and all wall times (seconds) of ``fn()`` over ``repeats`` runs
    after ``warmup`` runs; repeats grow until ``min_time`` seconds are spent."""
    for _ in range(warmup):
        fn()
    times = []
    t_total = 0.0
    while len(times) < repeats or t_total < min_time:
        gc.disable()
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        gc.enable()
        times.append(dt)
        t_total += dt
        if len(times) >= 10 * repeats:
            break
    return float(np.median(times)), times


def timeit_interleaved(fns, repeats=7, warmup=1):
    """{name: median seconds} of each ``fns[name]()``, timed round-robin (one
    call of each per round) so that load from other processes on a shared
    machine falls on every implementation alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            gc.disable()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            gc.enable()
    return {name: float(np.median(t)) for name, t in times.items()}


@functools.cache
def copy_bandwidth(nbytes=512 * 2**20) -> float:
    """Measured copy bandwidth in bytes/s (read + write counted), the best of
    a NumPy copy (one thread) and a torch copy (all threads) of ``nbytes``."""
    n = nbytes // 4
    src = np.ones(n, dtype=np.float32)
    dst = np.empty_like(src)
    best = timeit(lambda: np.copyto(dst, src), repeats=5, warmup=1)[0]
    try:
        import torch

        s, d = torch.from_numpy(src), torch.from_numpy(dst)
        best = min(best, timeit(lambda: d.copy_(s), repeats=5, warmup=1)[0])
    except ImportError:
        pass
    return 2.0 * nbytes / best


@functools.cache
def sgemm_rate(n=2048) -> float:
    """Measured float32 GEMM rate in flop/s (torch.mm if present, else NumPy)."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = a.copy()
    try:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        t = timeit(lambda: torch.mm(ta, tb), repeats=5, warmup=1)[0]
    except ImportError:
        t = timeit(lambda: a @ b, repeats=5, warmup=1)[0]
    return 2.0 * n**3 / t


@functools.cache
def gowalla_graph(seed=0):
    """(R, A): the Gowalla-shaped users x items interactions (29,858 x 40,981,
    1,027,370 pairs) and its symmetric normalised (U+I) adjacency (~2.05M nnz)."""
    import hopkit
    from hopkit.data import gowalla_like

    R = gowalla_like(seed)
    return R, hopkit.bipartite_adjacency(R)


def row(group, case, impl, seconds, **extra):
    """One result: ``seconds`` is the median wall time of ``impl`` on ``case``."""
    return {"group": group, "case": case, "impl": impl, "median_ms": seconds * 1e3, **extra}


def report(rows, out=print):
    """Print one table per case: each implementation's median time and the
    ratio peer_time / hopkit_time (> 1 means hopkit is faster)."""
    cases = {}
    for r in rows:
        cases.setdefault((r["group"], r["case"]), []).append(r)
    for (group, case), rs in cases.items():
        ref = next((r for r in rs if r["impl"] == "hopkit"), None)
        out(f"\n[{group}] {case}")
        for r in rs:
            ratio = ""
            if ref is not None and r is not ref and r.get("median_ms"):
                ratio = f"  hopkit is {r['median_ms'] / ref['median_ms']:6.2f}x faster"
            extras = "  ".join(f"{k}={_fmt(v)}" for k, v in r.items()
                               if k not in ("group", "case", "impl", "median_ms"))
            ms = "   n/a   " if r.get("median_ms") is None else f"{r['median_ms']:9.2f}"
            out(f"  {r['impl']:<34} {ms} ms{ratio}  {extras}")


def _fmt(v):
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def ratios(rows):
    """{(group, case, peer): peer_time / hopkit_time}."""
    out = {}
    for r in rows:
        if r["impl"] == "hopkit" or r.get("median_ms") is None:
            continue
        ref = next((x for x in rows if x["group"] == r["group"] and x["case"] == r["case"]
                    and x["impl"] == "hopkit"), None)
        if ref is not None:
            out[(r["group"], r["case"], r["impl"])] = r["median_ms"] / ref["median_ms"]
    return out


def write_json(rows, path):
    with open(path, "w") as f:
        json.dump({"rows": rows, "copy_bandwidth_GBps": copy_bandwidth() / 1e9}, f, indent=1)


def plot(rows, path):
    """Bar chart of hopkit's speed-up over each peer (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rat = ratios(rows)
    if not rat:
        return
    labels = [f"{c}\nvs {p}" for (_, c, p) in rat]
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(rat)), 5))
    ax.bar(range(len(rat)), list(rat.values()))
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(rat)))
    ax.set_xticklabels(labels, rotation=90, fontsize=6)
    ax.set_ylabel("speed-up of hopkit (peer time / hopkit time)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
