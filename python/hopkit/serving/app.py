"""The HTTP service: a Starlette app whose handlers put parsed requests on an
asyncio micro-batcher; each batch is one ``Recommender.recommend`` call run
off the event loop (docs/serving.md). Needs the ``serve`` extra."""

from __future__ import annotations

import asyncio
import collections
import gc
import hmac
import json
import os
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .core import Recommender, RequestError

MAX_BODY = 1 << 20  # bytes


def _error(status, message):
    return JSONResponse({"error": message}, status_code=status)


class MicroBatcher:
    """Requests arriving within ``max_wait_s`` of the oldest waiting one (or
    until ``max_batch``) become one ``recommend`` call on a worker thread.
    One batch runs at a time; requests arriving meanwhile form the next
    batch, so batches grow with the load, and a request that already waited
    ``max_wait_s`` behind a running batch goes in the next call at once. A
    batch only mixes requests parsed against the same Recommender (a reload
    never moves a request to another model). The wait costs one timer per
    batch, not a task per request."""

    def __init__(self, max_batch=128, max_wait_s=0.002, on_batch=None):
        self.max_batch, self.max_wait_s, self.on_batch = max_batch, max_wait_s, on_batch
        self._pending = collections.deque()  # (rec, req, future, arrival time)
        self._wake = self._full = self._task = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="hopkit-batch")

    def start(self):
        self._wake, self._full = asyncio.Event(), asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self):
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._pool.shutdown(wait=True)

    async def submit(self, rec, req):
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((rec, req, fut, loop.time()))
        self._wake.set()
        if len(self._pending) >= self.max_batch:
            self._full.set()
        return await fut

    async def _collect(self):
        while not self._pending:
            self._wake.clear()
            await self._wake.wait()
        left = self._pending[0][3] + self.max_wait_s - asyncio.get_running_loop().time()
        if left > 0 and len(self._pending) < self.max_batch:
            self._full.clear()
            try:
                async with asyncio.timeout(left):
                    await self._full.wait()
            except TimeoutError:
                pass
        n = min(len(self._pending), self.max_batch)
        return [self._pending.popleft()[:3] for _ in range(n)]

    async def _run(self):
        while True:
            await self._serve(await self._collect())

    async def _serve(self, batch):
        """One collected batch (its locals, which hold its Recommenders, die
        on return: a replaced model is not kept alive until the next batch)."""
        groups = {}
        for item in batch:
            if item[2].done():  # its client went away: nothing to answer
                continue
            groups.setdefault(id(item[0]), []).append(item)
        for items in groups.values():
            rec = items[0][0]
            try:
                results = await asyncio.get_running_loop().run_in_executor(
                    self._pool, rec.recommend, [req for _, req, _ in items])
            except Exception as e:  # a bug, not user input: fail these requests only
                for _, _, fut in items:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            if self.on_batch is not None:
                self.on_batch(len(items))
            for (_, _, fut), res in zip(items, results, strict=True):
                if not fut.done():
                    fut.set_result(res)


class Service:
    """The state behind the app: the current Recommender (swapped atomically
    on reload), the batcher and the metrics."""

    def __init__(self, model_dir, max_batch=128, max_wait_ms=2.0, admin_token=None,
                 max_body=MAX_BODY, recommender=None):
        self.rec = recommender or Recommender.load(model_dir, version=1)
        self.admin_token, self.max_body = admin_token, max_body
        self.reload_state = {"state": "idle", "error": None}
        self._reload_lock = threading.Lock()
        reg = self.registry = CollectorRegistry()
        self.requests = Counter("hopkit_requests", "HTTP requests", ["endpoint", "status"],
                                registry=reg)
        self.errors = Counter("hopkit_errors", "HTTP requests answered with an error",
                              ["endpoint", "status"], registry=reg)
        self.latency = Histogram("hopkit_request_latency_seconds", "request latency",
                                 ["endpoint"], registry=reg,
                                 buckets=(.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5,
                                          1, 2, 5))
        self.batch_size = Histogram("hopkit_batch_size", "requests per native top-K call",
                                    registry=reg, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256,
                                                           512))
        self.version = Gauge("hopkit_model_version", "version of the model being served",
                             registry=reg)
        self.version.set(self.rec.version)
        self.batcher = MicroBatcher(max_batch, max_wait_ms / 1000.0,
                                    on_batch=self.batch_size.observe)

    # ------------------------------------------------------------ plumbing
    def observe(self, endpoint, status, t0):
        self.requests.labels(endpoint, str(status)).inc()
        if status >= 400:
            self.errors.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(time.perf_counter() - t0)

    async def body(self, request):
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > self.max_body):
            raise RequestError(413, f"body: larger than {self.max_body} bytes")
        chunks, n = [], 0
        async for c in request.stream():
            n += len(c)
            if n > self.max_body:
                raise RequestError(413, f"body: larger than {self.max_body} bytes")
            chunks.append(c)
        try:
            return json.loads(b"".join(chunks))
        except (ValueError, RecursionError) as e:
            raise RequestError(400, f"body: malformed JSON ({str(e)[:80]})") from None

    def endpoint(self, name, fn):
        async def handler(request):
            t0 = time.perf_counter()
            try:
                resp = await fn(request)
            except RequestError as e:
                resp = _error(e.status, str(e))
            except Exception:  # never reached by user input; keep serving
                resp = _error(500, "internal error")
            self.observe(name, resp.status_code, t0)
            return resp
        return handler

    # ------------------------------------------------------------ handlers
    async def recommend(self, request):
        obj = await self.body(request)
        rec = self.rec
        return JSONResponse(await self.batcher.submit(rec, rec.parse(obj)))

    async def recommend_batch(self, request):
        obj = await self.body(request)
        if not isinstance(obj, dict) or set(obj) != {"requests"} or \
                not isinstance(obj["requests"], list):
            raise RequestError(422, 'requests: the body must be {"requests": [...]}')
        rec = self.rec
        parsed = []
        for n, r in enumerate(obj["requests"]):
            try:
                parsed.append(rec.parse(r))
            except RequestError as e:
                raise RequestError(e.status, f"requests[{n}].{e}") from None
        results = await asyncio.gather(*(self.batcher.submit(rec, p) for p in parsed))
        return JSONResponse({"results": list(results)})

    async def healthz(self, request):
        return JSONResponse({"status": "ok", **self.rec.info(), "reload": self.reload_state})

    async def metrics(self, request):
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    async def reload(self, request):
        if self.admin_token is None:
            raise RequestError(404, "admin: disabled (start the service with "
                               "--admin-token-file)")
        auth = request.headers.get("authorization", "")
        if not (auth.startswith("Bearer ") and hmac.compare_digest(
                auth[7:].strip().encode(), self.admin_token.encode())):
            raise RequestError(401, "authorization: a valid 'Bearer TOKEN' is required")
        obj = await self.body(request)
        if not isinstance(obj, dict) or not isinstance(obj.get("model"), str) or \
                set(obj) - {"model", "wait"} or type(obj.get("wait", False)) is not bool:
            raise RequestError(422, 'model: the body must be {"model": DIR[, "wait": bool]}')
        if not self._reload_lock.acquire(blocking=False):
            raise RequestError(409, "model: a reload is already in progress")
        self.reload_state = {"state": "loading", "error": None, "model": obj["model"]}
        loop = asyncio.get_running_loop()
        task = loop.run_in_executor(None, self._load, obj["model"], loop)
        if obj.get("wait"):
            await task
            if self.reload_state["state"] == "failed":
                raise RequestError(422, f"model: {self.reload_state['error']}")
            return JSONResponse({"status": "ok", **self.rec.info()})
        return JSONResponse({"status": "loading", "model": obj["model"]}, status_code=202)

    # ------------------------------------------------------------ the collector
    @staticmethod
    def freeze_gc():
        """Collect, then move every object alive (the model, torch, the app)
        out of the cyclic collector's reach (``gc.freeze``). A full
        collection of the ~170k objects a loaded service holds takes 45-115 ms
        with the GIL held, and one came every few seconds under load: each
        stalled every request in flight (docs/serving.md). Frozen, a full
        collection scans only what requests allocate."""
        gc.collect()
        gc.freeze()

    async def release(self, old, timeout=10.0):
        """After a reload: once the old Recommender is gone (``old``, a weakref:
        the Recommender itself is in no cycle, so it dies by reference count
        when the last batch and handler using it let go; bounded wait), thaw,
        collect what it held in cycles (a CSR and its cached transpose, torch
        modules) and freeze again, so that a reload frees the old model
        instead of leaving it frozen. One full collection per reload, at a
        known time. Waiting on the weakref, not on the batcher's queue, also
        covers a handler still holding it between its batch's end and its
        reply."""
        deadline = time.monotonic() + timeout
        while old() is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        gc.unfreeze()
        self.freeze_gc()

    def _load(self, path, loop):
        """Load and warm the new model in a worker thread, then swap it in:
        requests already parsed keep their Recommender."""
        try:  # this thread only: the batches keep their CPU share while it loads
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        try:
            new = Recommender.load(path, version=self.rec.version + 1)
            old, self.rec = weakref.ref(self.rec), new
            self.version.set(new.version)
            self.reload_state = {"state": "idle", "error": None, "model": path}
            if not loop.is_closed():  # closed: the service stopped while this loaded
                asyncio.run_coroutine_threadsafe(self.release(old), loop)
        except Exception as e:  # a bad directory: keep serving the old model
            self.reload_state = {"state": "failed", "error": str(e)[:300], "model": path}
        finally:
            self._reload_lock.release()


def create_app(model_dir=None, max_batch=128, max_wait_ms=2.0, admin_token=None,
               max_body=MAX_BODY, recommender=None) -> Starlette:
    """The ASGI app over the model in ``model_dir`` (or a ready
    ``recommender``). ``admin_token``: enables ``POST /admin/reload``."""
    svc = Service(model_dir, max_batch, max_wait_ms, admin_token, max_body, recommender)

    async def not_found(request, exc):
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        msg = {404: f"route: no route {request.url.path!r:.60}",
               405: f"route: method {request.method} not allowed on {request.url.path!r:.60}"}
        svc.observe("other", status, time.perf_counter())
        return _error(status, msg.get(status, "route: bad request"))

    routes = [Route("/recommend", svc.endpoint("recommend", svc.recommend), methods=["POST"]),
              Route("/recommend/batch", svc.endpoint("batch", svc.recommend_batch),
                    methods=["POST"]),
              Route("/healthz", svc.endpoint("healthz", svc.healthz), methods=["GET"]),
              Route("/metrics", svc.metrics, methods=["GET"]),
              Route("/admin/reload", svc.endpoint("reload", svc.reload), methods=["POST"])]

    async def lifespan(app):
        svc.batcher.start()
        svc.freeze_gc()
        yield
        await svc.batcher.stop()
        gc.unfreeze()

    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found},
                    lifespan=_ctx(lifespan))
    app.state.service = svc
    return app


def _ctx(gen):
    from contextlib import asynccontextmanager

    return asynccontextmanager(gen)
