"""hopkit.serving: the batched Recommender, fold-in, explanations, and the HTTP
service over a real uvicorn server on a free loopback port (started and
stopped here, every wait bounded)."""

import asyncio
import contextlib
import json
import socket
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from hopkit.csr import CSR  # noqa: E402
from hopkit.data import load, synthetic  # noqa: E402
from hopkit.models import GraphFilter, LightGCN, Popularity  # noqa: E402
from hopkit.serving import Recommender, create_app  # noqa: E402

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Synthetic interactions with string ids (ids are served as loaded)."""
    R = synthetic(120, 90, 1500, seed=3)
    rows = np.repeat(np.arange(R.shape[0]), np.diff(R.indptr))
    d = tmp_path_factory.mktemp("data")
    lines = (f"u{u},i{i}\n" for u, i in zip(rows, R.indices, strict=True))
    (d / "train.csv").write_text("".join(lines))
    return load(str(d / "train.csv"))


@pytest.fixture(scope="module")
def models(data, tmp_path_factory):
    out = {}
    for name, m in (("gf", GraphFilter(k=8).fit(data)),
                    ("gf_ideal", GraphFilter(k=8, linear=False).fit(data)),
                    ("lgcn", LightGCN(dim=8, layers=2, seed=1).fit(data, epochs=2,
                                                                    progress=False)),
                    ("pop", Popularity().fit(data))):
        path = tmp_path_factory.mktemp(name) / "model"
        m.save(str(path))
        out[name] = (m, str(path))
    return out


def seen_ids(model, row):
    R = model.train
    return [model.item_ids[i] for i in R.indices[R.indptr[row]:R.indptr[row + 1]]]


# ---------------------------------------------------------------------------- core
@pytest.mark.parametrize("name", ["gf", "gf_ideal", "lgcn", "pop"])
def test_batch_equals_model_recommend(models, name):
    model, _ = models[name]
    rec = Recommender(model)
    users = list(range(0, model.n_users, 7))
    reqs = [{"user": model.user_ids[u], "k": 3 + u % 5} for u in users]
    reqs.insert(2, {"history": ["nope"], "k": 4})  # a cold start in the middle of the batch
    res = rec.recommend(reqs)
    del res[2]
    items, scores = model.recommend(users, k=8)
    items = model.item_ids[items]
    for b, (u, r) in enumerate(zip(users, res, strict=True)):
        k = 3 + u % 5
        assert r["user"] == model.user_ids[u] and not r["cold_start"]
        assert r["items"] == items[b, :k].tolist()
        np.testing.assert_allclose(r["scores"], scores[b, :k], rtol=1e-5, atol=1e-7)
        assert not set(r["items"]) & set(seen_ids(model, u))


def test_exclusions_include_seen_and_cold_start(models):
    model, _ = models["lgcn"]
    rec = Recommender(model)
    u = model.user_ids[5]
    base = rec.recommend([{"user": u, "k": 6}])[0]["items"]
    r_ex, r_seen, r_cold = rec.recommend([
        {"user": u, "k": 6, "exclude": base[:2] + ["unknown-item"]},
        {"user": u, "k": model.n_items, "include_seen": True},
        {"history": ["unknown-item"], "k": 5}])
    assert r_ex["items"][:4] == base[2:] and not set(base[:2]) & set(r_ex["items"])
    assert len(r_seen["items"]) == model.n_items  # nothing excluded
    pop = np.bincount(model.train.indices, minlength=model.n_items)
    top = np.lexsort((np.arange(model.n_items), -pop))[:5]
    assert r_cold["cold_start"] and r_cold["items"] == [model.item_ids[i] for i in top]
    assert r_cold["scores"] == pop[top].astype(float).tolist()


def test_fold_in_graph_filter_is_exact(models):
    model, _ = models["gf"]
    users = [0, 4, 9]
    hist = [model.train.indices[model.train.indptr[u]:model.train.indptr[u + 1]] for u in users]
    np.testing.assert_allclose(model.fold_in(hist), model.score_block(users), rtol=1e-6,
                               atol=1e-8)
    rec = Recommender(model)
    u = model.user_ids[4]
    by_user, by_hist = rec.recommend([{"user": u, "k": 10},
                                      {"history": seen_ids(model, 4) + ["zz"], "k": 10}])
    assert by_hist["items"] == by_user["items"] and by_hist["user"] is None
    np.testing.assert_allclose(by_hist["scores"], by_user["scores"], rtol=1e-6)


def test_fold_in_lightgcn_formula(models):
    """e_h = 1/(L+1) sum_{l=1..L} sum_{i in h} E_i^(l-1) / sqrt(|h| d_i): for a
    trained user's history this is the user's propagated embedding without
    its own layer-0 term E0_u / (L+1)."""
    model, _ = models["lgcn"]
    users = np.arange(0, model.n_users, 5)
    hist = [model.train.indices[model.train.indptr[u]:model.train.indptr[u + 1]] for u in users]
    U = model.embeddings()[0][users]
    E0 = model._weights().numpy()[users]
    np.testing.assert_allclose(model.fold_in(hist), U - E0 / (model.layers + 1), rtol=1e-4,
                               atol=1e-6)
    # it is not the trivial answer: the layer-0 term matters
    assert np.abs(E0).max() > 1e-3


def test_popularity_ignores_history(models):
    model, _ = models["pop"]
    a, b = Recommender(model).recommend([{"history": ["i1", "i2"], "k": 5, "include_seen": True},
                                         {"user": "u1", "k": 5, "include_seen": True}])
    assert a["items"] == b["items"] and not a["cold_start"]


def test_explanations(models):
    model, _ = models["gf"]
    rec = Recommender(model)
    row = 2
    r = rec.recommend([{"user": model.user_ids[row], "k": 5, "explain": True}])[0]
    ex = r["explanations"]
    assert [e["item"] for e in ex] == r["items"]
    # the dense normalised co-interaction P~ = R~^T R~ of this tiny model, as the oracle
    Rd = model.train.to_scipy().toarray().astype(np.float64)
    du, di = Rd.sum(1), Rd.sum(0)
    Rn = Rd / np.sqrt(np.maximum(du, 1))[:, None] / np.sqrt(np.maximum(di, 1))[None, :]
    P = Rn.T @ Rn
    col = {c: j for j, c in enumerate(model.item_ids.tolist())}
    hist = np.flatnonzero(Rd[row])
    for e in ex:
        i = col[e["item"]]
        want = sorted(((P[j, i], j) for j in hist if P[j, i] > 0), key=lambda t: (-t[0], t[1]))
        assert 1 <= len(e["paths"]) <= 3 and len(e["paths"]) == min(3, len(want))
        assert [col[p["via"]] for p in e["paths"]] == [j for _, j in want[:3]]
        np.testing.assert_allclose([p["weight"] for p in e["paths"]], [w for w, _ in want[:3]],
                                   rtol=1e-5)
        assert set(e) == {"item", "paths"} and all(set(p) == {"via", "weight"}
                                                   for p in e["paths"])
    json.dumps(r)  # plain JSON types only
    cold = rec.recommend([{"history": [], "k": 2, "explain": True}])[0]
    assert cold["cold_start"] and all(e["paths"] == [] for e in cold["explanations"])


# ---------------------------------------------------------------------------- HTTP
class Server:
    """uvicorn on a free loopback port in a thread; stop() joins it."""

    def __init__(self, app):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        # inherited by accepted connections: without it the response's second
        # segment waits for the client's delayed ACK (~40 ms per request)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.01)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()
        assert not self.thread.is_alive()


@pytest.fixture(scope="module")
def service(models, tmp_path_factory):
    srv = Server(create_app(models["gf"][1], max_batch=16, max_wait_ms=2, admin_token=TOKEN,
                            max_body=64 * 1024))
    with httpx.Client(base_url=srv.url, timeout=10) as client:
        yield srv, client
    srv.stop()


def test_contract(service, models):
    _, c = service
    model = models["gf"][0]
    h = c.get("/healthz")
    assert h.status_code == 200
    info = h.json()
    assert info["model"] == "graph-filter" and info["n_items"] == model.n_items
    assert info["n_users"] == model.n_users and isinstance(info["version"], int)
    u = model.user_ids[1]
    r = c.post("/recommend", json={"user": u, "k": 4})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"user", "items", "scores", "cold_start"} and body["user"] == u
    assert body["items"] == model.item_ids[model.recommend([1], k=4)[0][0]].tolist()
    assert body["scores"] == sorted(body["scores"], reverse=True)
    r = c.post("/recommend", json={"history": seen_ids(model, 1), "k": 4, "explain": True})
    assert r.json()["items"] == body["items"] and len(r.json()["explanations"]) == 4
    reqs = [{"user": model.user_ids[i], "k": 2 + i} for i in range(5)] + [{"history": []}]
    b = c.post("/recommend/batch", json={"requests": reqs})
    assert b.status_code == 200
    res = b.json()["results"]
    assert [len(x["items"]) for x in res] == [2, 3, 4, 5, 6, 10]
    assert res[-1]["cold_start"] and [x["user"] for x in res[:5]] == model.user_ids[:5].tolist()
    m = c.get("/metrics")
    assert m.status_code == 200 and "text/plain" in m.headers["content-type"]
    for name in ("hopkit_requests_total", "hopkit_errors_total", "hopkit_batch_size_bucket",
                 "hopkit_request_latency_seconds_bucket", "hopkit_model_version"):
        assert name in m.text


@pytest.mark.parametrize("method,path,body,status,field", [
    ("POST", "/recommend", b'{"user": "u1", "k": ', 400, "body"),
    ("POST", "/recommend", b"\xff\xfe", 400, "body"),
    ("POST", "/recommend", b"[" * 100000, 413, "body"),
    ("POST", "/recommend", json.dumps({"user": "nobody"}).encode(), 404, "user"),
    ("POST", "/recommend", json.dumps({"user": "u1", "k": 0}).encode(), 422, "k"),
    ("POST", "/recommend", json.dumps({"user": "u1", "k": 10**6}).encode(), 422, "k"),
    ("POST", "/recommend", json.dumps({"user": "u1", "k": "5"}).encode(), 422, "k"),
    ("POST", "/recommend", json.dumps({"user": "u1", "k": True}).encode(), 422, "k"),
    ("POST", "/recommend", json.dumps({"user": 1}).encode(), 422, "user"),
    ("POST", "/recommend", json.dumps({"user": "u1", "exclude": "i1"}).encode(), 422, "exclude"),
    ("POST", "/recommend", json.dumps({"history": [1, 2]}).encode(), 422, "history"),
    ("POST", "/recommend", json.dumps({"user": "u1", "explain": 1}).encode(), 422, "explain"),
    ("POST", "/recommend", json.dumps({"usr": "u1"}).encode(), 422, "field"),
    ("POST", "/recommend", json.dumps({}).encode(), 422, "user"),
    ("POST", "/recommend", b"[1, 2]", 422, "object"),
    ("POST", "/recommend/batch", json.dumps({"requests": [{"user": "u1"}, {"k": 1}]}).encode(),
     422, "requests[1]"),
    ("POST", "/recommend/batch", b"{}", 422, "requests"),
    ("GET", "/nowhere", None, 404, "route"),
    ("GET", "/recommend", None, 405, "route"),
    ("POST", "/admin/reload", b'{"model": "x"}', 401, "authorization"),
])
def test_error_codes(service, method, path, body, status, field):
    _, c = service
    r = c.request(method, path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert field in r.json()["error"]
    assert c.post("/recommend", json={"user": "u1", "k": 1}).status_code == 200  # still serving


def test_error_without_content_length(service):
    srv, _ = service
    host, port = srv.url[7:].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:  # chunked, too large
        s.sendall(b"POST /recommend HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + b"10001\r\n" + b"[" * 0x10001 + b"\r\n0\r\n\r\n")
        assert b" 413 " in s.recv(4096).split(b"\r\n")[0] + b" "


@pytest.mark.parametrize("name", ["lgcn", "gf"])
def test_32_concurrent_clients_equal_serial(models, name):
    """Answers under 32 concurrent clients (so in batches of varying size and
    composition) equal the serial ones: bit for bit for a dot-product model
    (one FMA chain per score in hopkit.topk); for GF-CF the items, and the
    scores up to float32 rounding (its dense GEMM's blocking depends on the
    batch size)."""
    model, path = models[name]
    srv = Server(create_app(path, max_batch=64, max_wait_ms=5))
    try:
        reqs = [{"user": model.user_ids[i % model.n_users], "k": 1 + i % 9,
                 "exclude": [model.item_ids[i % model.n_items]]} for i in range(48)]
        reqs += [{"history": seen_ids(model, i)[:3], "k": 5} for i in range(16)]
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        with httpx.Client(base_url=srv.url, timeout=20, limits=limits) as c:
            serial = [c.post("/recommend", json=r).json() for r in reqs]

            def client(chunk):  # one of 32 concurrent clients (httpx.Client is thread-safe)
                return [c.post("/recommend", json=reqs[i]).json() for i in chunk]

            chunks = [list(range(j, len(reqs), 32)) for j in range(32)]
            with ThreadPoolExecutor(32) as pool:
                got = list(pool.map(client, chunks))
            sizes = [line for line in c.get("/metrics").text.splitlines()
                     if line.startswith(("hopkit_batch_size_count", "hopkit_batch_size_sum"))]
        for chunk, res in zip(chunks, got, strict=True):
            for i, r in zip(chunk, res, strict=True):
                if name == "lgcn":
                    assert r == serial[i]
                else:
                    assert r["items"] == serial[i]["items"]
                    np.testing.assert_allclose(r["scores"], serial[i]["scores"], rtol=1e-5)
        count, total = (float(x.split()[-1]) for x in sizes)
        assert total == 2 * len(reqs) and count < total  # some calls answered several requests
    finally:
        srv.stop()


def test_admin_disabled_without_token(models):
    srv = Server(create_app(models["pop"][1]))
    try:
        r = httpx.post(srv.url + "/admin/reload", json={"model": models["gf"][1]},
                       headers={"authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert r.status_code == 404 and "disabled" in r.json()["error"]
    finally:
        srv.stop()


def test_reload_under_traffic(models):
    app = create_app(models["lgcn"][1], max_wait_ms=1, admin_token=TOKEN)
    srv = Server(app)
    failures, done, count, olds = [], threading.Event(), [0], []

    def traffic():
        with httpx.Client(base_url=srv.url, timeout=20) as cc:
            while not done.is_set():
                r = cc.post("/recommend", json={"user": "u3", "k": 5})
                count[0] += 1
                if r.status_code != 200 or len(r.json()["items"]) != 5:
                    failures.append(r.text)

    try:
        threads = [threading.Thread(target=traffic) for _ in range(4)]
        for t in threads:
            t.start()
        auth = {"authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            assert c.post("/admin/reload", json={"model": models["lgcn"][1]},
                          headers={"authorization": "Bearer wrong"}).status_code == 401
            versions = []
            for name in ("gf", "pop", "lgcn"):
                rec = app.state.service.rec  # it and its CSRs (a CSR caches its transpose: a cycle)
                olds += [weakref.ref(x) for x in (rec, rec.model, *(
                    v for v in vars(rec).values() if isinstance(v, CSR)))]
                del rec
                r = c.post("/admin/reload", json={"model": models[name][1]}, headers=auth)
                assert r.status_code == 202
                deadline = time.monotonic() + 20
                while c.get("/healthz").json()["reload"]["state"] == "loading":
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                versions.append(c.get("/healthz").json())
            bad = c.post("/admin/reload", json={"model": "/nonexistent", "wait": True},
                         headers=auth)
            assert bad.status_code == 422 and "not found" in bad.json()["error"]
            after = c.get("/healthz").json()
        done.set()
        for t in threads:
            t.join(timeout=20)
        assert [v["model"] for v in versions] == ["graph-filter", "popularity", "lightgcn"]
        assert [v["version"] for v in versions] == [2, 3, 4]
        assert after["version"] == 4 and after["reload"]["state"] == "failed"
        assert failures == [] and count[0] > 0
        # the service freezes the collector's objects at start (Service.freeze_gc),
        # the first model (LightGCN: cycles) included; a reload must still free
        # every model it replaced
        deadline = time.monotonic() + 15
        while any(w() is not None for w in olds):
            assert time.monotonic() < deadline, "a replaced model was never freed"
            time.sleep(0.05)
    finally:
        done.set()
        srv.stop()


class Echo:
    """A fake Recommender for the batcher tests: answers 10 x each request and
    records the size and time span of every call."""

    def __init__(self, delay=0.0):
        self.sizes, self.spans, self.delay = [], [], delay

    def recommend(self, reqs):
        t = time.monotonic()
        self.sizes.append(len(reqs))
        time.sleep(self.delay)
        self.spans.append((t, time.monotonic()))
        return [r * 10 for r in reqs]


@contextlib.asynccontextmanager
async def running_batcher(**kw):
    from hopkit.serving.app import MicroBatcher

    b = MicroBatcher(**kw)
    b.start()
    try:
        yield b
    finally:
        await b.stop()


def test_micro_batcher_bounds_and_deadline():
    """The batcher never exceeds max_batch, answers every request with its own
    result, waits about max_wait for a lone request, and sends a request that
    already waited max_wait behind a running batch in the next call at once."""
    async def scenario():
        async with running_batcher(max_batch=8, max_wait_s=0.05) as b:
            rec = Echo()
            got = await asyncio.gather(*(b.submit(rec, i) for i in range(20)))
            assert got == [10 * i for i in range(20)]
            assert max(rec.sizes) <= 8 and sum(rec.sizes) == 20 and rec.sizes[:2] == [8, 8]
            t0 = time.monotonic()
            assert await b.submit(rec, 3) == 30
            assert 0.04 <= time.monotonic() - t0 < 2.0  # a lone request waits max_wait
        async with running_batcher(max_batch=8, max_wait_s=0.5) as b:
            slow = Echo(delay=0.8)
            first = asyncio.ensure_future(b.submit(slow, 1))
            await asyncio.sleep(0.55)  # the first batch is running (from 0.5 s to 1.3 s)
            second = asyncio.ensure_future(b.submit(slow, 2))  # due at 1.05 s
            assert await first == 10 and await second == 20
            assert slow.sizes == [1, 1]
            # the second starts when the first ends, not max_wait (0.5 s) later
            assert slow.spans[1][0] - slow.spans[0][1] < 0.25

    asyncio.run(scenario())


def test_micro_batcher_survives_a_batch_whose_clients_all_left():
    """Every request of a batch cancelled before it runs: nothing is computed
    for them and the batcher keeps answering later requests."""
    async def scenario():
        async with running_batcher(max_batch=8, max_wait_s=0.05) as b:
            rec = Echo()
            gone = [asyncio.ensure_future(b.submit(rec, i)) for i in range(3)]
            await asyncio.sleep(0.01)  # queued, the batch not closed yet
            for t in gone:
                t.cancel()
            await asyncio.sleep(0.1)  # that batch closes with no live request
            assert rec.sizes == []
            assert await asyncio.wait_for(b.submit(rec, 4), 5) == 40
            assert rec.sizes == [1]

    asyncio.run(scenario())
