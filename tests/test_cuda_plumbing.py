"""The Python side of the CUDA backend (hopkit/cuda_backend, the routing in
ops/_cuda.py, the torch operators' kernels and autograd formulas with the
CUDA backend) run without a GPU: CPU tensors are routed down the CUDA path
(``_backend.resolve`` returns the CUDA backend for them) and `hopkit._cuda` is
replaced by a NumPy stand-in that reads and writes the same raw pointers
(ctypes) with the reference semantics of each kernel contract. This checks
argument order, shapes, dtypes, allocation, caching and autograd wiring of
every wrapper; the CUDA kernels themselves are tested by tests/test_cuda.py
on a GPU."""

import contextlib
import ctypes
import importlib

import hopkit
import numpy as np
import pytest
from conftest import power_law_graph
from hopkit import _backend
from hopkit import reference as ref
from hopkit.ops import _cuda as cu

torch = pytest.importorskip("torch")

from hopkit import cuda_backend as cb  # noqa: E402 (needs torch)
from hopkit.torch_ops import spmm as spmm_ops  # noqa: E402

cb_csr = importlib.import_module("hopkit.cuda_backend.csr")
cb_topk = importlib.import_module("hopkit.cuda_backend.topk")  # the module, not the function

NP = {0: np.float32, 1: np.float64, 2: np.float16}


def view(ptr, dtype, shape):
    """NumPy view of `shape` elements of `dtype` at address `ptr`."""
    n = int(np.prod(shape))
    if n == 0:
        return np.zeros(shape, dtype)
    assert ptr, "null pointer for a non-empty array"
    buf = (ctypes.c_char * (n * np.dtype(dtype).itemsize)).from_address(ptr)
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def csr_views(csr):
    ip, ix, n_rows, n_cols, nnz = csr
    return view(ip, np.int64, (n_rows + 1,)), view(ix, np.int32, (nnz,)), n_rows, n_cols, nnz


class FakeCuda:
    """hopkit._cuda's functions, same signatures, computed on the host."""

    TOPK_MAX_K = 256
    calls: list

    def __init__(self):
        self.calls = []

    def spmm_forward(self, csr, plan, dtype, X, F, E, e_width, eperm, msg, red, mask, Y, arg,
                     ws_val, ws_arg, stream):
        self.calls.append("spmm_forward")
        indptr, indices, n_rows, n_cols, nnz = csr_views(csr)
        assert len(plan) == 9 and plan[3] >= n_rows  # n_segs
        T = NP[dtype]
        Xa = view(X, T, (n_cols, F)).astype(np.float64) if X else None
        Ea = (view(E, T, (nnz,) if e_width == 1 else (nnz, F)).astype(np.float64)
              if e_width else None)
        ep = view(eperm, np.int64, (nnz,)) if eperm else None
        Ya = view(Y, T, (n_rows, F))
        out = np.zeros((n_rows, F))
        if mask:
            mk = view(mask, np.int64, (n_cols, F))
            rows = np.repeat(np.arange(n_rows), np.diff(indptr))
            ee = ep
            m = Xa[indices] if msg != 3 else np.zeros((nnz, F))
            if msg == 1:
                m = m * (Ea[ee][:, None] if e_width == 1 else Ea[ee])
            m = m * (mk[indices] == ee[:, None])
            np.add.at(out, rows, m)
        else:
            g = np.empty((n_rows, F), dtype=np.int64) if red >= 2 else None
            ref.spmm_forward(indptr, indices, n_rows, n_cols, Xa, F, Ea, e_width, ep, msg, red,
                             out, g)
            if arg:
                view(arg, np.int64, (n_rows, F))[...] = g
        Ya[...] = out.astype(T)

    def spmm_edge_grad(self, csr, dtype, X, F, E, e_width, eperm, msg, red, dY, arg, dE,
                       stream):
        self.calls.append("spmm_edge_grad")
        indptr, indices, n_rows, n_cols, nnz = csr_views(csr)
        T = NP[dtype]
        Xa = view(X, T, (n_cols, F)).astype(np.float64) if X else None
        g = view(arg, np.int64, (n_rows, F)) if arg else None
        shape = (nnz,) if e_width == 1 else (nnz, F)
        out = np.empty(shape)
        ref.spmm_edge_grad(indptr, indices, n_rows, n_cols, Xa, F, None, e_width,
                           view(eperm, np.int64, (nnz,)) if eperm else None, msg, red,
                           view(dY, T, (n_rows, F)).astype(np.float64), g, out)
        view(dE, T, shape)[...] = out.astype(T)

    def propagate(self, csr, plan, dtype, X, F, E, eperm, alpha, out, work, ws, stream):
        self.calls.append("propagate")
        indptr, indices, n_rows, n_cols, nnz = csr_views(csr)
        T = NP[dtype]
        res = np.empty((n_rows, F))
        wk = np.empty((n_rows, F))
        ref.propagate(indptr, indices, n_rows, n_cols, view(X, T, (n_cols, F)).astype(np.float64),
                      F, view(E, T, (nnz,)).astype(np.float64) if E else None,
                      view(eperm, np.int64, (nnz,)) if eperm else None, np.asarray(alpha), res,
                      wk)
        view(out, T, (n_rows, F))[...] = res.astype(T)

    def attention_forward(self, csr, plan, dtype, Q, K, V, heads, dk, dv, score, scale, slope,
                          out, lse, ws, stream):
        self.calls.append("attention_forward")
        assert len(plan) == 9 and (ws != 0) == (plan[8] > 0)  # a workspace exactly for split rows
        indptr, indices, n_rows, n_cols, nnz = csr_views(csr)
        T = NP[dtype]
        ref.attention_forward(indptr, indices, n_rows, n_cols, view(Q, T, (n_rows, heads * dk)),
                              view(K, T, (n_cols, heads * dk)), view(V, T, (n_cols, heads * dv)),
                              heads, dk, dv, score, scale, slope,
                              view(out, T, (n_rows, heads * dv)), view(lse, T, (n_rows, heads)))

    def attention_backward(self, csr, csr_t, dtype, Q, K, V, heads, dk, dv, score, scale, slope,
                           out, dout, lse, delta, dQ, dK, dV, stream):
        self.calls.append("attention_backward")
        indptr, indices, n_rows, n_cols, nnz = csr_views(csr)
        t_indptr, t_indices, *_ = csr_views(csr_t)
        T = NP[dtype]
        ref.attention_backward(
            indptr, indices, t_indptr, t_indices, n_rows, n_cols,
            view(Q, T, (n_rows, heads * dk)), view(K, T, (n_cols, heads * dk)),
            view(V, T, (n_cols, heads * dv)), heads, dk, dv, score, scale, slope,
            view(out, T, (n_rows, heads * dv)), view(dout, T, (n_rows, heads * dv)),
            view(lse, T, (n_rows, heads)), view(dQ, T, (n_rows, heads * dk)),
            view(dK, T, (n_cols, heads * dk)), view(dV, T, (n_cols, heads * dv)))

    def topk_select(self, s_dtype, S, nq, N, k, q0, ex_indptr, ex_indices, ex_rows,
                    cand_indptr, cand_indices, scores_out, idx_out, ws, stream):
        chunks = 1 if cand_indptr or N <= 8192 else -(-N // 8192)  # as csrc/cuda/topk.cu
        if ws == -1:  # the workspace query
            return nq * chunks * k * ((4 if s_dtype == 0 else 8) + 4) + 16 if chunks > 1 else 0
        assert (ws != 0) == (chunks > 1)
        self.calls.append("topk_select")
        assert 1 <= k <= self.TOPK_MAX_K
        T = NP[s_dtype]
        so, io = view(scores_out, T, (nq, k)), view(idx_out, np.int64, (nq, k))
        if cand_indptr:
            cip = view(cand_indptr, np.int64, (q0 + nq + 1,))
            Sv = view(S, T, (int(cip[-1]),))
        else:
            Sv = view(S, T, (nq, N))
        for q in range(nq):
            gq = q0 + q
            if cand_indptr:
                b, e = cip[gq], cip[gq + 1]
                items = view(cand_indices, np.int64, (int(e),))[b:e]
                s = Sv[b:e].astype(np.float64)
            else:
                items, s = np.arange(N), Sv[q].astype(np.float64)
            keep = ~np.isnan(s) & (s > -np.inf)
            if ex_indptr:
                r = view(ex_rows, np.int64, (gq + 1,))[gq] if ex_rows else gq
                eip = view(ex_indptr, np.int64, (r + 2,))
                ex = view(ex_indices, np.int64, (int(eip[r + 1]),))[eip[r]:eip[r + 1]]
                keep &= ~np.isin(items, ex)
            items, s = items[keep], s[keep]
            order = np.lexsort((items, -s))[:k]
            so[q, :len(order)] = s[order]
            io[q, :len(order)] = items[order]

    def bpr_scores(self, dtype, U, V, F, ids_i64, users, pos, neg, B, x, stream):
        self.calls.append("bpr_scores")
        T, it = NP[dtype], np.int64 if ids_i64 else np.int32
        u, p, n = (view(a, it, (B,)) for a in (users, pos, neg))
        nu = int(u.max()) + 1
        ni = int(max(p.max(), n.max())) + 1
        Ua, Va = view(U, T, (nu, F)), view(V, T, (ni, F))
        ref.bpr_scores(Ua, Va, F, u, p, n, U == V, view(x, T, (B,)))

    def bpr_rows(self, dtype, Src, F, n_rows, row_ptr, src, w, out, stream):
        self.calls.append("bpr_rows")
        T = NP[dtype]
        rp = view(row_ptr, np.int64, (n_rows + 1,))
        ns = int(rp[-1])
        sr, wa = view(src, np.int64, (ns,)), view(w, T, (ns,)).astype(np.float64)
        assert (np.diff(rp) >= 0).all()
        S = view(Src, T, (int(sr.max()) + 1 if ns else 0, F)).astype(np.float64)
        acc = np.zeros((n_rows, F))
        rows = np.repeat(np.arange(n_rows), np.diff(rp))
        np.add.at(acc, rows, wa[:, None] * S[sr])
        view(out, T, (n_rows, F))[...] = acc.astype(T)

    def sample_negatives(self, indptr, indices, indices_i64, n_items, users, users_i64, n_batch,
                         n_neg, seed, out, out_i64, stream):
        self.calls.append("sample_negatives")
        u = view(users, np.int64 if users_i64 else np.int32, (n_batch,))
        ip = view(indptr, np.int64, (int(u.max()) + 2 if n_batch else 1,))
        ix = view(indices, np.int64 if indices_i64 else np.int32, (int(ip[-1]),))
        o = view(out, np.int64 if out_i64 else np.int32, (n_batch * n_neg,))
        ref.sample_negatives(ip, ix, n_items, u, n_neg, seed, o)

    def sort_temp_bytes(self, n):
        return 16

    def coo_to_csr(self, n_rows, n_cols, nnz, index_i64, rows, cols, value_dtype, values,
                   indptr, cols_out, values_out, bad, scratch, stream):
        self.calls.append("coo_to_csr")
        it = np.int64 if index_i64 else np.int32
        r, c = view(rows, it, (nnz,)).astype(np.int64), view(cols, it, (nnz,)).astype(np.int64)
        badv = view(bad, np.int64, (1,))
        wrong = np.flatnonzero((r < 0) | (r >= n_rows) | (c < 0) | (c >= n_cols))
        if len(wrong):
            p = int(wrong[0])
            badv[0] = 2 * p + (0 if (r[p] < 0 or r[p] >= n_rows) else 1)
            return
        badv[0] = -1
        order = np.lexsort((c, r))
        view(indptr, np.int64, (n_rows + 1,))[...] = np.searchsorted(r[order],
                                                                     np.arange(n_rows + 1))
        view(cols_out, it, (nnz,))[...] = c[order]
        if values:
            vt = NP[value_dtype]
            view(values_out, vt, (nnz,))[...] = view(values, vt, (nnz,))[order]

    def csr_transpose(self, n_rows, n_cols, nnz, index_i64, indptr, indices, t_indptr,
                      t_indices, perm, scratch, stream):
        self.calls.append("csr_transpose")
        it = np.int64 if index_i64 else np.int32
        ip = view(indptr, np.int64, (n_rows + 1,))
        tp, ti, pm = ref.csr_transpose(ip, view(indices, it, (nnz,)), n_cols)
        view(t_indptr, np.int64, (n_cols + 1,))[...] = tp
        view(t_indices, it, (nnz,))[...] = ti
        view(perm, np.int64, (nnz,))[...] = pm


@pytest.fixture
def fake(monkeypatch):
    """CPU tensors take the CUDA path; hopkit._cuda is the NumPy stand-in.
    ``with fake.off():`` computes a CPU reference in between."""
    f = FakeCuda()
    real_route = cu.route
    f.on = True

    def route(op, backend, **arrays):
        if f.on and any(isinstance(x, torch.Tensor) for x in arrays.values()):
            _, out, back = real_route(op, backend, **arrays)
            return torch.device("cpu"), out, back
        return real_route(op, backend, **arrays)

    @contextlib.contextmanager
    def off():
        f.on = False
        monkeypatch.setattr(_backend, "DEVICE_TYPES", ("cuda",))
        try:
            yield
        finally:
            f.on = True
            monkeypatch.setattr(_backend, "DEVICE_TYPES", ("cuda", "cpu"))

    f.off = off
    for name in ("spmm", "propagate", "attention", "topk", "bpr", "sampling"):  # the modules
        monkeypatch.setattr(importlib.import_module(f"hopkit.ops.{name}"), "_route", route)
    monkeypatch.setattr(cu, "route", route)
    monkeypatch.setattr(_backend, "DEVICE_TYPES", ("cuda", "cpu"))
    monkeypatch.setattr(_backend, "cuda_module", lambda: f)
    for name in ("_common", "attention", "bpr", "csr", "propagate", "sampling", "spmm", "topk"):
        m = importlib.import_module(f"hopkit.cuda_backend.{name}")
        if hasattr(m, "stream"):
            monkeypatch.setattr(m, "stream", lambda device: 0)
    monkeypatch.setattr(cb_topk, "_Pipeline", SerialPipeline)
    # CPU tensors must reach the operators' Python kernels, which take the fake path
    was_on = torch._C._dispatch_has_kernel_for_dispatch_key("hopkit::spmm", "CPU")
    spmm_ops.cpp_kernel(False)
    yield f
    if was_on:
        spmm_ops.cpp_kernel(True)


class SerialPipeline:
    """cu._Pipeline for CPU tensors: one implicit stream, the same call order."""

    def __init__(self, device):
        self.marks = 0

    def hand_over(self, S):
        pass

    def on_side(self):
        return contextlib.nullcontext()

    def mark(self):
        self.marks += 1
        return self.marks

    def wait(self, event):
        assert 0 < event <= self.marks

    def join(self):
        pass


def _fresh(A):
    return hopkit.CSR(A.indptr, A.indices, A.values, A.shape)


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("message", ["mul", "add"])
@pytest.mark.parametrize("vector", [False, True])
def test_spmm_wrappers_and_autograd(fake, rng, reduce, message, vector):
    A = power_law_graph(40, 30, 500, rng, values=np.float64, empty=(0, 39))
    F = 6
    X = rng.standard_normal((30, F))
    E = rng.standard_normal((A.nnz, F) if vector else A.nnz)
    outs = []
    for path in ("cpu", "fake"):
        x = torch.from_numpy(X).requires_grad_()
        e = torch.from_numpy(E).requires_grad_()
        B = _fresh(A)
        if path == "cpu":
            with fake.off():  # the CPU operators
                Y = hopkit.spmm(B, x, reduce, e, message=message)
                (Y * torch.linspace(-1, 1, F)).sum().backward()
        else:
            fake.calls.clear()
            Y = hopkit.spmm(B, x, reduce, e, message=message)
            assert "spmm_forward" in fake.calls
            (Y * torch.linspace(-1, 1, F)).sum().backward()
        outs.append((Y.detach(), x.grad, e.grad))
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_spmm_default_weights_mean_and_transposed_csr(fake, rng):
    A = _fresh(power_law_graph(40, 30, 500, rng, values=np.float64, empty=(3,)))
    for M in (A, A.T):  # A.T: the X gradient reads the weights through the inverse perm
        X = torch.randn(M.n_cols, 5, dtype=torch.float64, requires_grad=True)
        torch.autograd.gradcheck(lambda x: hopkit.spmm(M, x, "mean"), (X,))  # noqa: B023
        w = torch.rand(M.nnz, dtype=torch.float64, requires_grad=True)
        torch.autograd.gradcheck(lambda x, e: hopkit.spmm(M, x, "sum", e),  # noqa: B023
                                 (X, w))
    Y, arg = hopkit.spmm(A, torch.randn(30, 5, dtype=torch.float64), "max", return_arg=True)
    assert arg.dtype == torch.int64 and arg.shape == (40, 5)
    Yh = hopkit.spmm(A, torch.randn(30, 8).half())
    assert Yh.dtype == torch.float16


def test_sddmm_wrapper(fake, rng):
    A = _fresh(power_law_graph(30, 20, 300, rng, values=np.float64))
    U = torch.randn(30, 4, dtype=torch.float64, requires_grad=True)
    V = torch.randn(20, 4, dtype=torch.float64, requires_grad=True)
    got = hopkit.sddmm(A, U, V, scale=True)
    want = hopkit.sddmm(A, U.detach().numpy(), V.detach().numpy(), scale=True, backend="numpy")
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12)
    torch.autograd.gradcheck(lambda u, v: hopkit.sddmm(A, u, v, scale=True), (U, V))


def test_propagate_wrapper(fake, rng):
    A = hopkit.bipartite_adjacency(power_law_graph(20, 15, 200, rng), dtype=np.float64)
    X = torch.randn(A.n_cols, 3, dtype=torch.float64, requires_grad=True)
    w = torch.rand(A.nnz, dtype=torch.float64)
    for combine in ("mean", [0.5, 0.0, 2.0, 1.0]):
        want = hopkit.propagate(A, X.detach().numpy(), 3, combine, backend="numpy")
        np.testing.assert_allclose(hopkit.propagate(A, X, 3, combine).detach().numpy(), want,
                                   rtol=1e-12, atol=1e-12)
        torch.autograd.gradcheck(lambda x: hopkit.propagate(A, x, 3, combine), (X,))  # noqa: B023
        torch.autograd.gradcheck(lambda x: hopkit.propagate(A.T, x, 3, combine, w),  # noqa: B023
                                 (X,))
    with pytest.raises(ValueError, match="propagate: gradients wrt edge_weight"):
        hopkit.propagate(A, X, 3, edge_weight=w.clone().requires_grad_())


@pytest.mark.parametrize("score", ["dot", "gat"])
def test_attention_wrapper(fake, rng, score):
    A = _fresh(power_law_graph(25, 20, 250, rng, empty=(1,)))
    heads = 2
    dk = 1 if score == "gat" else 3
    ts = [torch.randn(n, heads * d, dtype=torch.float64, requires_grad=True)
          for n, d in ((25, dk), (20, dk), (20, 4))]
    want = hopkit.attention_aggregate(A, *[t.detach().numpy() for t in ts], heads, score,
                                      backend="numpy")
    got = hopkit.attention_aggregate(A, *ts, heads, score)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12, atol=1e-12)
    torch.autograd.gradcheck(lambda q, k, v: hopkit.attention_aggregate(A, q, k, v, heads, score),
                             ts)
    assert "attention_backward" in fake.calls
    with pytest.raises(TypeError, match="attention_aggregate: Q must be float32 or float64"):
        hopkit.attention_aggregate(A, *[t.detach().half() for t in ts], heads, score)


@pytest.mark.parametrize("tile", [None, 350 * 4])  # 350 * 4: 4 queries per score tile
@pytest.mark.parametrize("k", [0, 5, 300])
def test_topk_wrapper(fake, rng, monkeypatch, k, tile):
    if tile:
        monkeypatch.setattr(cb_topk, "TOPK_TILE_SCORES", tile)
    U = rng.integers(-2, 3, (30, 4)).astype(np.float32)
    It = rng.integers(-2, 3, (350, 4)).astype(np.float32)
    train = power_law_graph(30, 350, 900, rng, empty=(4,))
    rows = rng.integers(0, 30, 12)
    for kw, Q in (({}, U), ({"exclude": train}, U), ({"candidates": train}, U),
                  ({"exclude": train, "exclude_rows": rows}, U[:12])):
        s, i = hopkit.topk(torch.from_numpy(Q), torch.from_numpy(It), k, **kw)
        s_c, i_c = hopkit.topk(Q, It, k, backend="numpy", **kw)
        np.testing.assert_array_equal(i.numpy(), i_c)
        np.testing.assert_array_equal(s.numpy(), s_c)
    if 0 < k <= 256:
        assert "topk_select" in fake.calls
    hs, hi = hopkit.topk(torch.from_numpy(U).half(), torch.from_numpy(It).half(), 3)
    assert hs.dtype == torch.float16 and hi.shape == (30, 3)


def test_csr_construction_wrappers(fake, rng):
    r = rng.integers(0, 20, 300)
    c = rng.integers(0, 15, 300)
    v = rng.standard_normal(300)
    want = hopkit.CSR.from_coo(r, c, v, shape=(21, 15))
    got = cb_csr.csr_from_coo(hopkit.CSR, torch.from_numpy(r), torch.from_numpy(c).to(torch.int32),
                          torch.from_numpy(v), (21, 15), True)
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-12)
    bad = c.copy()
    bad[9] = 15
    with pytest.raises(ValueError, match=r"CSR.from_coo: col must lie in \[0, 15\); col\[9\] = 15"):
        cb_csr.csr_from_coo(hopkit.CSR, torch.from_numpy(r), torch.from_numpy(bad), None,
                            (21, 15), True)
    t_indptr, t_indices, perm = cb.csr_transpose(torch.from_numpy(want.indptr),
                                                 torch.from_numpy(want.indices), want.n_cols)
    np.testing.assert_array_equal(t_indptr.numpy(), want.T.indptr)
    np.testing.assert_array_equal(t_indices.numpy(), want.T.indices)
    np.testing.assert_array_equal(perm.numpy(), want.T.perm)


# ---------------------------------------------------------------- the ops that got a CUDA path
@pytest.mark.parametrize("k", [0, 4, 300])
def test_topk_scores_and_item_index(fake, rng, k):
    S = rng.integers(-3, 4, (12, 350)).astype(np.float64)
    S[2, 5] = np.nan
    train = power_law_graph(12, 350, 400, rng, empty=(3,))
    rows = rng.integers(0, 12, 7)
    for kw, s in (({}, S), ({"exclude": train}, S), ({"exclude": train, "exclude_rows": rows},
                                                     S[:7])):
        fake.calls.clear()
        got = hopkit.topk_scores(torch.from_numpy(s), k, **kw)
        want = hopkit.topk_scores(s, k, backend="numpy", **kw)
        np.testing.assert_array_equal(got[1].numpy(), want[1])
        np.testing.assert_array_equal(got[0].numpy(), want[0])
        assert ("topk_select" in fake.calls) == (0 < k <= 256)
    Q = rng.integers(-2, 3, (9, 4)).astype(np.float32)
    It = rng.integers(-2, 3, (350, 4)).astype(np.float32)
    index = hopkit.ItemIndex(torch.from_numpy(It))
    assert index.device is not None and isinstance(index.items, torch.Tensor)
    s, i = hopkit.topk(torch.from_numpy(Q), index, k, exclude=train, exclude_rows=rows[:9 - 2]
                       .tolist() + [0, 1])
    s_c, i_c = hopkit.topk(Q, It, k, exclude=train, exclude_rows=rows[:7].tolist() + [0, 1],
                           backend="numpy")
    np.testing.assert_array_equal(i.numpy(), i_c)
    np.testing.assert_array_equal(s.numpy(), s_c)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
def test_bpr_loss_and_gradients(fake, rng, shared, id_dtype):
    U = torch.randn(20, 5, dtype=torch.float64, requires_grad=True)
    V = U if shared else torch.randn(30, 5, dtype=torch.float64, requires_grad=True)
    n_items = 20 if shared else 30
    u, p, n = (torch.from_numpy(rng.integers(0, m, 64).astype(id_dtype))
               for m in (20, n_items, n_items))
    fake.calls.clear()
    loss = hopkit.bpr_loss(U, V, u, p, n)
    want = hopkit.bpr_loss(U.detach().numpy(), U.detach().numpy() if shared
                           else V.detach().numpy(), u.numpy(), p.numpy(), n.numpy(),
                           backend="numpy")
    np.testing.assert_allclose(float(loss.detach()), float(want), rtol=1e-12)
    loss.backward()
    assert {"bpr_scores", "bpr_rows"} <= set(fake.calls)
    with fake.off():
        U2 = U.detach().clone().requires_grad_()
        V2 = U2 if shared else V.detach().clone().requires_grad_()
        hopkit.bpr_loss(U2, V2, u, p, n).backward()
    torch.testing.assert_close(U.grad, U2.grad, rtol=1e-12, atol=1e-14)
    if not shared:
        torch.testing.assert_close(V.grad, V2.grad, rtol=1e-12, atol=1e-14)
    if shared:
        torch.autograd.gradcheck(lambda a: hopkit.bpr_loss(a, a, u, p, n),
                                 (U.detach().clone().requires_grad_(),))
    else:
        torch.autograd.gradcheck(lambda a, b: hopkit.bpr_loss(a, b, u, p, n),
                                 (U.detach().clone().requires_grad_(),
                                  V.detach().clone().requires_grad_()))
    bad = n.clone()
    bad[3] = n_items
    with pytest.raises(ValueError, match=rf"bpr_loss: neg must lie in \[0, {n_items}\).*"
                                         rf"neg\[3\] = {n_items}"):
        hopkit.bpr_loss(U, V, u, p, bad)


@pytest.mark.parametrize("users_dtype", [np.int32, np.int64])
def test_sample_negatives_same_draws_as_cpu(fake, rng, users_dtype):
    G = power_law_graph(40, 60, 900, rng, empty=(2,))
    R = hopkit.CSR.from_coo(G.row_ids(), G.indices, shape=G.shape, sum_duplicates=True)
    users = rng.integers(0, 40, 50).astype(users_dtype)
    for seed in (0, 7, 2**64 - 1):
        got = hopkit.sample_negatives(R, torch.from_numpy(users), 3, seed=seed)
        want = hopkit.sample_negatives(R, users, 3, seed=seed, backend="numpy")
        assert got.dtype == torch.from_numpy(users).dtype
        np.testing.assert_array_equal(got.numpy(), want)
    assert "sample_negatives" in fake.calls
    dense = np.ones((2, 60), dtype=bool)  # user 0 has every item, user 1 all but item 59
    dense[1, 59] = False
    Rf = hopkit.CSR.from_coo(*np.nonzero(dense), shape=(2, 60))
    got = hopkit.sample_negatives(Rf, torch.tensor([0, 1, 1]), 2, seed=3)
    np.testing.assert_array_equal(got.numpy(), [[-1, -1], [59, 59], [59, 59]])
    with pytest.raises(ValueError, match=r"sample_negatives: users must lie in \[0, 40\)"):
        hopkit.sample_negatives(R, torch.tensor([0, 40]), 1)


def test_nn_modules_on_the_cuda_backend_equal_pyg(fake, rng):
    """The nn modules on the CUDA backend (edge_index grouped by the device
    transpose, the operators' CUDA kernels) give PyG's outputs and gradients."""
    pyg = pytest.importorskip("torch_geometric.nn")
    from hopkit.nn import GATConv, LGConv, LightGCNPropagation, SpMM
    from torch_geometric.utils import scatter

    tol = dict(rtol=1e-6, atol=1e-9)
    n, E = 50, 300
    ei = torch.from_numpy(np.stack([rng.integers(0, n - 5, E), rng.integers(0, n - 5, E)]))
    x = torch.randn(n, 8, dtype=torch.float64, requires_grad=True)
    w = torch.rand(E, dtype=torch.float64, requires_grad=True)
    for normalize in (True, False):
        fake.calls.clear()
        a = LGConv(normalize=normalize)(x, ei, w)
        b = pyg.LGConv(normalize=normalize)(x, ei, w)
        assert "csr_transpose" in fake.calls and "spmm_forward" in fake.calls
        torch.testing.assert_close(a, b, **tol)
        ga = torch.autograd.grad(a.square().sum(), [x, w])
        gb = torch.autograd.grad(b.square().sum(), [x, w])
        for p, q in zip(ga, gb, strict=True):
            torch.testing.assert_close(p, q, **tol)
    torch.testing.assert_close(SpMM("max")(x, ei), scatter(x[ei[0]], ei[1], 0, dim_size=n,
                                                           reduce="max"), **tol)
    h, acc = x, x
    for _ in range(3):
        h = pyg.LGConv()(h, ei)
        acc = acc + h
    torch.testing.assert_close(LightGCNPropagation(3)(x, ei), acc / 4, **tol)
    ref_gat = pyg.GATConv(8, 4, heads=2).double()
    ours = GATConv(8, 4, heads=2).double()
    ours.load_state_dict(ref_gat.state_dict())
    torch.testing.assert_close(ours(x, ei), ref_gat(x, ei), **tol)
    with pytest.raises(ValueError, match=r"edge_index must lie in \[0, 50\)"):
        LGConv()(x, ei.clone().index_fill_(1, torch.tensor([4]), 50))


def test_resolve_picks_the_cuda_backend_for_device_tensors(fake):
    dev = torch.device("cpu")  # a device type the fixture hands to the CUDA backend
    assert _backend.resolve(None, "spmm", dev) is cb
    assert _backend.resolve("cuda", "spmm", dev) is cb
    assert _backend.name_of(cb) == "cuda"
    with pytest.raises(TypeError, match="spmm: backend='numba' runs on CPU arrays"):
        _backend.resolve("numba", "spmm", dev)
    with fake.off():
        with pytest.raises(TypeError, match="spmm: backend='cuda' needs CUDA tensors"):
            _backend.resolve("cuda", "spmm", dev)


def _opcheck_cases():
    from test_torch_ops import CASES

    return CASES


@pytest.mark.parametrize("name,args", _opcheck_cases(),
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(_opcheck_cases())])
def test_opcheck_on_the_cuda_backend(fake, name, args):
    """torch.library.opcheck of every operator with its kernel on the CUDA
    backend (schema, fake kernel vs real outputs, autograd, AOT dispatch)."""
    fake.calls.clear()
    torch.library.opcheck(getattr(torch.ops.hopkit, name).default, args)
    assert fake.calls or name == "topk_scores"  # (the k = 0 case runs no kernel)

