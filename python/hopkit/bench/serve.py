"""Load test of ``hopkit serve`` against a one-request-per-call baseline.

    python -m hopkit.bench serve [--data ../shared/data/yelp2018] [--models-dir DIR]
        [--duration 6] [--reload-duration 30] [--soak 600] [--json F]

For each model (GraphFilter and LightGCN fitted on the data, or loaded from
``--models-dir``): the service runs on loopback in a subprocess (``hopkit
serve``); a bounded open-loop asyncio HTTP client (keep-alive connections,
requests scheduled at a fixed rate for a fixed time, latency from the
scheduled send, a timeout per request, a cap on requests in flight) offers
doubling rates until the service saturates, then bisects twice between the
last good and the first failing rate, and reports per rate p50/p95/p99,
achieved throughput, errors and the mean batch size (from /metrics). Right
after, the same client ramps the baseline service (a second subprocess, up
from the start, idle until then): the same framework (Starlette on uvicorn,
the same event loop), one request per call, for LightGCN FAISS
``IndexFlatIP`` searched for k + history length with the seen items filtered
out, for GraphFilter (no item vectors: its linear filter is not an inner
product) ``score_rows`` of the one request and a NumPy top-k with the seen
items filtered. Then, at half of hopkit's saturation rate: a latency run, a
run with ``POST /admin/reload`` every 2 s, and a soak sampling the service's
resident memory. Requests: random known users, 10% with the history of a
random user instead; k = 20. Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

K = 20
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "..", "..", "shared", "data",
                                             "yelp2018"))


# ---------------------------------------------------------------------------- client
class Conn:
    """One keep-alive HTTP/1.1 connection (a minimal client: the load
    generator shares the machine with the service, so it must be cheap)."""

    def __init__(self, host, port):
        self.host, self.port, self.r = host, port, None

    async def request(self, data):
        if self.r is None:
            self.r, self.w = await asyncio.open_connection(self.host, self.port)
            self.w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.w.write(data)
        head = await self.r.readuntil(b"\r\n\r\n")
        n = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                n = int(line[15:])
        body = await self.r.readexactly(n)
        return int(head[9:12]), body

    def close(self):
        if self.r is not None:
            self.w.close()
            self.r = None


def http(method, path, body=b"", headers=()):
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{extra}Content-Length: {len(body)}\r\n\r\n").encode() + body


async def drive(port, bodies, rate, duration, conns=64, timeout=5.0, max_inflight=2000,
                during=None):
    """Offer ``rate`` requests/s for ``duration`` s (open loop); returns a dict
    of latencies (s), errors and achieved throughput. Times are
    ``time.perf_counter`` (uvloop's event-loop clock counts whole
    milliseconds)."""
    now = time.perf_counter
    pool = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(Conn("127.0.0.1", port))
    lat, last = [], [0.0]
    kinds = {}  # error kind -> count: "timeout", "http 503", "connection", "client bound"

    def fail(kind):
        kinds[kind] = kinds.get(kind, 0) + 1

    async def one(data, t_sched):
        conn = await pool.get()
        try:
            status, _ = await asyncio.wait_for(conn.request(data),
                                               max(0.01, t_sched + timeout - now()))
            if status == 200:
                last[0] = now()
                lat.append(last[0] - t_sched)
            else:
                fail(f"http {status}")
        except asyncio.TimeoutError:
            conn.close()
            fail("timeout")
        except (OSError, asyncio.IncompleteReadError, ValueError):
            conn.close()
            fail("connection")
        finally:
            pool.put_nowait(conn)

    tasks = set()
    n = int(rate * duration)
    t0 = now()
    side = asyncio.ensure_future(during(t0)) if during else None
    for i in range(n):
        t = t0 + i / rate
        if t > now():
            await asyncio.sleep(t - now())
        if len(tasks) >= max_inflight:
            fail("client bound")  # not sent: counted as failed
            continue
        task = asyncio.ensure_future(one(bodies[i % len(bodies)], t))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 5)
    if side:
        side.cancel()
    while not pool.empty():
        pool.get_nowait().close()
    span = max(last[0], t0 + duration) - t0
    a = np.sort(np.asarray(lat)) * 1e3
    pct = {f"p{q}": float(np.percentile(a, q)) if len(a) else float("nan") for q in (50, 95, 99)}
    return {"offered": rate, "sent": n, "ok": len(lat), "errors": sum(kinds.values()),
            "error_kinds": kinds, "throughput": len(lat) / span, **pct,
            "max": float(a[-1]) if len(a) else float("nan"),
            "over_20ms": int(np.count_nonzero(a > 20.0))}


async def get(port, path, data=None):
    c = Conn("127.0.0.1", port)
    try:
        return await c.request(data or http("GET", path))
    finally:
        c.close()


def batch_stats(port):
    _, text = asyncio.run(get(port, "/metrics"))
    vals = {}
    for line in text.decode().splitlines():
        for name in ("hopkit_batch_size_sum", "hopkit_batch_size_count"):
            if line.startswith(name + " "):
                vals[name] = float(line.split()[-1])
    return vals.get("hopkit_batch_size_sum", 0.0), vals.get("hopkit_batch_size_count", 0.0)


def _run(coro):
    """Run the client on uvloop when installed (a cheaper client disturbs the
    service it shares the machine with less), with what it holds before the
    run frozen out of the cyclic collector (the client loads the model to
    build its requests: a full collection of its heap took ~50 ms, a stall
    that the latencies, measured from the scheduled send, then counted
    against the service)."""
    gc.collect()
    gc.freeze()
    try:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(coro)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    finally:
        gc.unfreeze()


def run_rate(port, bodies, rate, duration, batched, during=None):
    s0 = batch_stats(port) if batched else None
    r = _run(drive(port, bodies, rate, duration, during=during))
    if batched:
        s1 = batch_stats(port)
        calls = s1[1] - s0[1]
        r["batch"] = (s1[0] - s0[0]) / calls if calls else float("nan")
    else:
        r["batch"] = 1.0
    return r


def ramp(port, bodies, duration, batched, start=100, label="", refine=2):
    """Doubling rates until the achieved throughput falls below 90% of the
    offered rate or a request fails, then ``refine`` bisections between the
    last good rate and the first failing one; returns the rows and the
    saturation throughput (the best achieved at a rate with 0 errors and at
    least 90% of the offered rate achieved)."""
    rows = []

    def run(rate):
        r = run_rate(port, bodies, rate, duration, batched)
        rows.append(r)
        print(f"  {label:9s} {fmt_row(r)}", flush=True)
        return r["errors"] == 0 and r["throughput"] >= 0.9 * rate

    good, bad = 0.0, float(start)
    while run(bad):
        good, bad = bad, 2 * bad
        if bad > 51200:
            break
    for _ in range(refine if good else 0):
        mid = round((good + bad) / 2)
        if run(mid):
            good = mid
        else:
            bad = mid
    ok = [r["throughput"] for r in rows if r["errors"] == 0 and
          r["throughput"] >= 0.9 * r["offered"]]
    return rows, max(ok) if ok else 0.0


def fmt_row(r):
    return (f"offered {r['offered']:7.0f}/s  achieved {r['throughput']:7.0f}/s  p50 "
            f"{r['p50']:7.2f}  p95 {r['p95']:7.2f}  p99 {r['p99']:7.2f} ms  errors "
            f"{r['errors']:5d}  batch {r['batch']:5.1f}"
            + (f"  ({', '.join(f'{k} {v}' for k, v in sorted(r['error_kinds'].items()))})"
               if r["errors"] else ""))


# ---------------------------------------------------------------------------- servers
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv, port):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    p = subprocess.Popen([sys.executable, *argv], env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:
        try:
            if asyncio.run(get(port, "/healthz"))[0] == 200:
                return p
        except OSError:
            pass
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            raise RuntimeError(f"server {argv} did not start")
        time.sleep(0.2)


def stop(p):
    p.terminate()
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def baseline_app(model_dir):
    """The baseline: one request per call on the default thread pool."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from hopkit.models import load_model

    model = load_model(model_dir)
    R = model.train
    user_row = {u: r for r, u in enumerate(np.asarray(model.user_ids).tolist())}
    item_col = {i: c for c, i in enumerate(np.asarray(model.item_ids).tolist())}
    item_ids = np.asarray(model.item_ids).tolist()
    V = model.item_vectors()
    if V is not None:
        import faiss

        index = faiss.IndexFlatIP(V.shape[1])
        index.add(np.ascontiguousarray(V, np.float32))
        U = model.embeddings()[0]

    def answer(obj):
        k = obj.get("k", 10)
        if "history" in obj:
            seen = np.unique([item_col[i] for i in obj["history"] if i in item_col])
            H = model.history_rows([seen])
        else:
            u = user_row[obj["user"]]
            seen = R.indices[R.indptr[u]:R.indptr[u + 1]]
        if V is not None:
            q = model.fold_in(H) if "history" in obj else U[u:u + 1]
            D, idx = index.search(np.ascontiguousarray(q, np.float32), k + len(seen))
            s = set(seen.tolist())
            keep = [(i, d) for i, d in zip(idx[0].tolist(), D[0].tolist(), strict=True)
                    if i >= 0 and i not in s][:k]
        else:
            from hopkit.csr import CSR

            rows = H if "history" in obj else CSR(
                np.array([0, len(seen)]), seen, np.ones(len(seen), np.float32),
                (1, model.n_items), validate=False)
            sc = model.score_rows(rows)[0]
            sc[seen] = -np.inf
            top = np.argpartition(-sc, k)[:k]
            top = top[np.lexsort((top, -sc[top]))]
            keep = [(i, float(sc[i])) for i in top.tolist()]
        return {"user": obj.get("user"), "items": [item_ids[i] for i, _ in keep],
                "scores": [d for _, d in keep], "cold_start": False}

    # one answer of each kind before serving: imports (torch, through the GEMM)
    # happen here, not in concurrent handler threads
    answer({"user": next(iter(user_row)), "k": K})
    answer({"history": item_ids[:3], "k": K})
    gc.collect()  # as hopkit serve does (serving/app.py, Service.freeze_gc)
    gc.freeze()

    async def recommend(request: Request):
        obj = json.loads(await request.body())
        return JSONResponse(await run_in_threadpool(answer, obj))

    async def healthz(request):
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/recommend", recommend, methods=["POST"]),
                             Route("/healthz", healthz)])


# ---------------------------------------------------------------------------- driver
def fit_models(data, out, lgcn_epochs):
    from hopkit.data import load
    from hopkit.models import GraphFilter, LightGCN

    ds = None
    paths = {}
    for name in ("graph-filter", "lightgcn"):
        path = os.path.join(out, name)
        paths[name] = path
        if os.path.isfile(os.path.join(path, "model.json")):
            continue
        ds = ds or load(data)
        t = time.perf_counter()
        if name == "graph-filter":
            m = GraphFilter().fit(ds)
        else:
            m = LightGCN(lr=5e-3, batch_size=8192).fit(ds, epochs=lgcn_epochs, eval_every=0,
                                                       progress=False)
        m.save(path)
        print(f"fitted {name} in {time.perf_counter() - t:.0f} s -> {path}", flush=True)
    return paths


def request_bodies(model_dir, n=4000, seed=0):
    from hopkit.models import load_model

    m = load_model(model_dir)
    rng = random.Random(seed)
    users = np.asarray(m.user_ids).tolist()
    items = np.asarray(m.item_ids).tolist()
    R = m.train
    out = []
    for _ in range(n):
        u = rng.randrange(m.n_users)
        if rng.random() < 0.1:
            h = [items[i] for i in R.indices[R.indptr[u]:R.indptr[u + 1]].tolist()]
            obj = {"history": h, "k": K}
        else:
            obj = {"user": users[u], "k": K}
        out.append(http("POST", "/recommend", json.dumps(obj).encode()))
    return out


def bench_model(name, path, args, token_file):
    """Both services up at once (the idle one costs no CPU), their ramps back
    to back so that both see the same machine, then hopkit's half-saturation,
    reload and soak runs."""
    bodies = request_bodies(path)
    res = {"model": name}
    port, bport = free_port(), free_port()
    p = start(["-m", "hopkit.cli", "serve", "--model", path, "--port", str(port),
               "--admin-token-file", token_file], port)
    b = None
    try:
        b = start(["-m", "hopkit.bench.serve", "--baseline-server", path, "--port", str(bport)],
                  bport)
        print(f"[{name}] hopkit serve (max-batch 128, max-wait-ms 2)", flush=True)
        run_rate(port, bodies, 100, 2, True)  # warm-up
        res["hopkit"], res["hopkit_saturation"] = ramp(port, bodies, args.duration, True,
                                                       label="hopkit")
        print(f"[{name}] baseline (one request per call, "
              f"{'FAISS IndexFlatIP' if name == 'lightgcn' else 'score_rows + NumPy top-k'})",
              flush=True)
        run_rate(bport, bodies, 50, 2, False)
        res["baseline"], res["baseline_saturation"] = ramp(bport, bodies, args.duration, False,
                                                           start=50, label="baseline")
        stop(b)
        b = None
        ratio = res["hopkit_saturation"] / max(res["baseline_saturation"], 1e-9)
        res["ratio"] = ratio
        print(f"[{name}] saturation: hopkit {res['hopkit_saturation']:.0f}/s, baseline "
              f"{res['baseline_saturation']:.0f}/s, ratio {ratio:.2f}", flush=True)
        half = max(res["hopkit_saturation"] / 2, 50)
        r = run_rate(port, bodies, half, args.duration * 2, True)
        res["half"] = r
        print(f"  half-sat  {fmt_row(r)}  p99/p50 {r['p99'] / r['p50']:.2f}", flush=True)
        token = open(token_file).read().strip()
        reloads = []

        async def reloader(t0):
            data = http("POST", "/admin/reload", json.dumps({"model": path}).encode(),
                        [("Authorization", f"Bearer {token}")])
            while True:
                await asyncio.sleep(2)
                st, _ = await get(port, "/admin/reload", data)
                reloads.append(st)

        r = run_rate(port, bodies, half, args.reload_duration, True, during=reloader)
        r["reloads"] = len(reloads)
        r["reload_status"] = sorted(set(reloads))
        res["reload"] = r
        print(f"  reload    {fmt_row(r)}  reloads {len(reloads)} (HTTP {sorted(set(reloads))})",
              flush=True)
        if args.soak:
            samples = []

            async def sampler(t0):
                while True:
                    samples.append(rss_mb(p.pid))
                    await asyncio.sleep(1)

            r = run_rate(port, bodies, half, args.soak, True, during=sampler)
            warm = samples[min(5, len(samples) - 1):]
            r["rss_mb"] = {"start": warm[0], "max": max(warm), "end": warm[-1]}
            res["soak"] = r
            print(f"  soak {args.soak:.0f}s {fmt_row(r)}  p99/p50 {r['p99'] / r['p50']:.2f}  "
                  f"RSS MB start {warm[0]:.0f} max {max(warm):.0f} end {warm[-1]:.0f}",
                  flush=True)
    finally:
        stop(p)
        if b is not None:
            stop(b)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hopkit.bench serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help="the dataset the models are fitted on")
    p.add_argument("--models-dir", help="reuse / keep the fitted models here")
    p.add_argument("--models", default="graph-filter,lightgcn", help="comma-separated")
    p.add_argument("--lgcn-epochs", type=int, default=3, help="LightGCN training epochs")
    p.add_argument("--duration", type=float, default=6.0, help="seconds per offered rate")
    p.add_argument("--reload-duration", type=float, default=30.0,
                   help="seconds of the run with a reload every 2 s")
    p.add_argument("--soak", type=float, default=600.0, help="soak seconds (0: skip)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--baseline-server", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.baseline_server:
        import uvicorn

        uvicorn.run(baseline_app(args.baseline_server), host="127.0.0.1", port=args.port,
                    log_level="warning", access_log=False)
        return 0
    work = args.models_dir or tempfile.mkdtemp(prefix="hopkit-serve-bench-")
    os.makedirs(work, exist_ok=True)
    paths = fit_models(args.data, work, args.lgcn_epochs)
    token_file = os.path.join(work, "admin-token")
    with open(token_file, "w") as f:
        f.write(os.urandom(16).hex())
    results = [bench_model(name, paths[name], args, token_file)
               for name in args.models.split(",")]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
