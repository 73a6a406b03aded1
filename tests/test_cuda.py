"""CUDA backend: device results against the CPU (NumPy reference, float64
accumulation), gradcheck on the GPU in float64, device errors. Tests that need
a GPU take the `cuda` fixture and skip when there is none; the build checks
and the segment plan run everywhere."""

import importlib
import os
import shutil

import hopkit
import numpy as np
import pytest
from conftest import power_law_graph
from hopkit import _backend

torch = pytest.importorskip("torch")

from hopkit import cuda_backend as cb  # noqa: E402 (needs torch)
from hopkit.cuda_backend import _common as cbc  # noqa: E402

REDUCES = ["sum", "mean", "max", "min"]
DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
          "bfloat16": torch.bfloat16}
TOL = {torch.float32: 2e-5, torch.float64: 1e-11, torch.float16: 2e-3, torch.bfloat16: 1e-2}


@pytest.fixture
def cuda():
    if _backend.cuda_module() is None:
        pytest.skip("hopkit._cuda is not built")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch.device("cuda", torch.cuda.current_device())


# ---------------------------------------------------------------- everywhere
def test_cuda_module_built_when_nvcc_present():
    """With nvcc on PATH and HOPKIT_CUDA not OFF the CUDA module must have been
    built and must import (also with no driver), so .cu files cannot break unseen."""
    nat = _backend.native_module()
    if nat is None or not hasattr(nat, "cuda_option"):
        pytest.skip("native module absent or built before the CUDA build facts existed")
    if shutil.which("nvcc") is None or nat.cuda_option.upper() == "OFF":
        pytest.skip(f"no nvcc on PATH or HOPKIT_CUDA={nat.cuda_option}")
    assert nat.cuda_built, "nvcc is on PATH but CMake did not build hopkit._cuda"
    mod = _backend.cuda_module()
    assert mod is not None, "hopkit._cuda was built but does not import"
    assert mod.device_count() >= 0
    want = os.environ.get("HOPKIT_CUDA_ARCHITECTURES", "80;90")
    assert mod.architectures.split(",") == want.replace(",", ";").split(";")


@pytest.mark.parametrize("seg_len", [1, 3, 128])
def test_segment_plan_covers_every_edge_once_in_order(rng, seg_len):
    A = power_law_graph(50, 40, 900, rng, empty=(0, 7, 49))
    p = cbc.segment_plan(A.indptr, seg_len)
    deg = A.row_degree()
    assert p["n_segs"] == int(np.maximum(1, -(-deg // seg_len)).sum())
    starts, rows = p["seg_start"], p["seg_row"]
    ends = np.minimum(starts + seg_len, A.indptr[rows + 1])
    assert (np.diff(rows) >= 0).all() and (ends >= starts).all()
    covered = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])
    np.testing.assert_array_equal(covered, np.arange(A.nnz))
    # split rows: consecutive slots, one per segment, in segment order
    assert p["n_split"] == int((deg > seg_len).sum())
    for k, r in enumerate(p["split_row"]):
        slots = p["seg_slot"][rows == r]
        np.testing.assert_array_equal(slots, np.arange(p["split_ptr"][k], p["split_ptr"][k + 1]))
    single = np.flatnonzero(deg <= seg_len)
    assert (p["seg_slot"][np.isin(rows, single)] == -1).all()


def test_segment_plan_empty_graph():
    p = cbc.segment_plan(np.zeros(1, dtype=np.int64), 128)
    assert p["n_segs"] == 0 and p["n_split"] == 0 and p["n_slots"] == 0


# ---------------------------------------------------------------- on a GPU
def _graph(rng, dtype=np.float64):
    # row 0 has several segments (> SEG_LEN edges); rows 5, 60, 119 are empty
    A = power_law_graph(120, 90, 4000, rng, np.int64, values=dtype, empty=(5, 60, 119))
    assert A.row_degree().max() > 2 * cbc.SEG_LEN
    return A


@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("F", [1, 7, 64, 100, 300])
def test_spmm_matches_cpu(cuda, rng, reduce, dtype, F):
    A = _graph(rng)
    tdt = DTYPES[dtype]
    X = torch.randn(90, F, dtype=torch.float64).to(tdt)
    Xc = X.to(cuda)
    Yd, argd = (hopkit.spmm(A, Xc, reduce, return_arg=True) if reduce in ("max", "min")
                else (hopkit.spmm(A, Xc, reduce), None))
    assert Yd.device == cuda and Yd.dtype == tdt and Yd.shape == (120, F)
    # reference in float64 on the same (rounded) inputs; edge weights in tdt
    Aw = hopkit.CSR(A.indptr, A.indices,
                    torch.from_numpy(A.values).to(tdt).double().numpy(), A.shape)
    Yr, argr = hopkit.spmm(Aw, X.double().numpy(), reduce, return_arg=True, backend="numpy") \
        if reduce in ("max", "min") else (hopkit.spmm(Aw, X.double().numpy(), reduce,
                                                      backend="numpy"), None)
    got = Yd.double().cpu().numpy()
    t = TOL[tdt]
    np.testing.assert_allclose(got, Yr, rtol=t, atol=t * max(1.0, np.abs(Yr).max()))
    if argd is not None and tdt in (torch.float32, torch.float64):
        np.testing.assert_array_equal(argd.cpu().numpy(), argr)
        assert (argd[5] == -1).all() and (Yd[5] == 0).all()


@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("message", ["mul", "add"])
@pytest.mark.parametrize("vector", [False, True])
def test_messages_match_cpu(cuda, rng, reduce, message, vector):
    A = _graph(rng)
    F = 20
    X = rng.standard_normal((90, F))
    E = rng.standard_normal((A.nnz, F) if vector else A.nnz)
    want = hopkit.spmm(A, X, reduce, E, message=message, backend="numpy")
    got = hopkit.spmm(A, torch.from_numpy(X).to(cuda), reduce, torch.from_numpy(E).to(cuda),
                      message=message)
    np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-11, atol=1e-11)


def test_edge_only_and_copy(cuda, rng):
    A = _graph(rng)
    E = rng.standard_normal((A.nnz, 4))
    got = hopkit.spmm(A, None, "sum", torch.from_numpy(E).to(cuda))
    np.testing.assert_allclose(got.cpu().numpy(), hopkit.spmm(A, None, "sum", E, backend="numpy"),
                               rtol=1e-11, atol=1e-11)
    X = rng.standard_normal((90, 3))
    got = hopkit.spmm(A, torch.from_numpy(X).to(cuda), "sum", message="copy")
    np.testing.assert_allclose(got.cpu().numpy(),
                               hopkit.spmm(A, X, "sum", message="copy", backend="numpy"),
                               rtol=1e-11, atol=1e-11)


def test_deterministic(cuda, rng):
    A = _graph(rng, np.float32)
    X = torch.randn(90, 64, device=cuda)
    for reduce in REDUCES:
        a = hopkit.spmm(A, X, reduce)
        b = hopkit.spmm(A, X, reduce)
        assert torch.equal(a, b)


@pytest.mark.parametrize("shape", [(0, 0, 0), (5, 4, 0), (3, 0, 0)])
def test_empty_graphs(cuda, shape):
    n_rows, n_cols, _ = shape
    A = hopkit.CSR(np.zeros(n_rows + 1, dtype=np.int64), np.zeros(0, dtype=np.int64),
                   shape=(n_rows, n_cols))
    for F in (0, 3):
        X = torch.randn(n_cols, F, device=cuda)
        for reduce in REDUCES:
            Y = hopkit.spmm(A, X, reduce)
            assert Y.shape == (n_rows, F) and (Y == 0).all()


def test_sddmm_matches_cpu(cuda, rng):
    A = _graph(rng)
    U, V = rng.standard_normal((120, 33)), rng.standard_normal((90, 33))
    for scale in (False, True):
        want = hopkit.sddmm(A, U, V, scale=scale, backend="numpy")
        got = hopkit.sddmm(A, torch.from_numpy(U).to(cuda), torch.from_numpy(V).to(cuda),
                           scale=scale)
        np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("message", ["mul", "add"])
def test_gradcheck_on_gpu(cuda, rng, reduce, message):
    A = power_law_graph(30, 20, 400, rng, values=np.float64, empty=(0, 29))
    X = torch.randn(20, 5, dtype=torch.float64, device=cuda, requires_grad=True)
    E = torch.rand(A.nnz, dtype=torch.float64, device=cuda).add_(0.5).requires_grad_()
    torch.autograd.gradcheck(lambda x, e: hopkit.spmm(A, x, reduce, e, message=message), (X, E))
    Ev = torch.randn(A.nnz, 5, dtype=torch.float64, device=cuda, requires_grad=True)
    torch.autograd.gradcheck(lambda x, e: hopkit.spmm(A, x, reduce, e, message=message), (X, Ev))


def test_gradcheck_default_weights_and_sddmm(cuda, rng):
    A = power_law_graph(30, 20, 400, rng, values=np.float64, empty=(3,))
    A2 = hopkit.CSR(A.indptr, A.indices, A.values, A.shape)  # fresh caches
    # one long row: the transpose of a star has a row longer than SEG_LEN
    X = torch.randn(20, 4, dtype=torch.float64, device=cuda, requires_grad=True)
    torch.autograd.gradcheck(lambda x: hopkit.spmm(A2, x, "mean"), (X,))
    U = torch.randn(30, 4, dtype=torch.float64, device=cuda, requires_grad=True)
    torch.autograd.gradcheck(lambda u, v: hopkit.sddmm(A, u, v, scale=True), (U, X))
    star = hopkit.CSR.from_coo(np.arange(300) % 3, np.zeros(300, dtype=np.int64),
                               shape=(3, 2), sum_duplicates=False)
    Xs = torch.randn(2, 3, dtype=torch.float64, device=cuda, requires_grad=True)
    torch.autograd.gradcheck(lambda x: hopkit.spmm(star.T, hopkit.spmm(star, x), "max"), (Xs,))


def test_backward_matches_cpu(cuda, rng):
    A = _graph(rng, np.float32)
    X = torch.randn(90, 64)
    for reduce in REDUCES:
        xs = [X.clone().requires_grad_(), X.to(cuda).requires_grad_()]
        for x in xs:
            (hopkit.spmm(A, x, reduce) ** 2).sum().backward()
        # float32 sums of large terms cancel: compare on the gradient's scale
        scale = xs[0].grad.abs().max().item()
        torch.testing.assert_close(xs[1].grad.cpu(), xs[0].grad, rtol=1e-4, atol=1e-5 * scale)


def test_device_errors(cuda, rng):
    A = _graph(rng, np.float32)
    X = torch.randn(90, 8, device=cuda)
    with pytest.raises(ValueError, match="spmm: all tensors must be on one device"):
        hopkit.spmm(A, X, edge_weight=torch.ones(A.nnz))
    with pytest.raises(ValueError, match="spmm: X is a non-contiguous CUDA tensor"):
        hopkit.spmm(A, torch.randn(8, 90, device=cuda).t())
    with pytest.raises(TypeError, match="spmm: backend='numpy' runs on CPU arrays"):
        hopkit.spmm(A, X, backend="numpy")
    with pytest.raises(ValueError, match=r"spmm: X must have 90 rows, got 89"):
        hopkit.spmm(A, X[:89])
    with pytest.raises(TypeError, match="spmm: X must be float32, float64, float16 or bfloat16"):
        hopkit.spmm(A, torch.ones(90, 8, dtype=torch.int32, device=cuda))
    with pytest.raises(TypeError, match="spmm: edge_weight must have the dtype of X"):
        hopkit.spmm(A, X, edge_weight=torch.ones(A.nnz, dtype=torch.float64, device=cuda))
    if torch.cuda.device_count() > 1:
        other = torch.randn(90, 8, device="cuda:1")
        with pytest.raises(TypeError, match="but the current CUDA device is"):
            hopkit.spmm(A, other)


def test_cupy_in_cupy_out(cuda, rng):
    cupy = pytest.importorskip("cupy")
    A = _graph(rng, np.float32)
    X = rng.standard_normal((90, 16)).astype(np.float32)
    Y = hopkit.spmm(A, cupy.asarray(X))
    assert isinstance(Y, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(Y), hopkit.spmm(A, X, backend="numpy"), rtol=2e-5,
                               atol=2e-5)


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("with_values", [False, True])
@pytest.mark.parametrize("sum_duplicates", [False, True])
def test_coo_to_csr_on_device_matches_cpu(cuda, rng, index_dtype, with_values, sum_duplicates):
    rows = rng.integers(0, 50, 3000)
    cols = rng.integers(0, 40, 3000)
    vals = rng.standard_normal(3000) if with_values else None
    want = hopkit.CSR.from_coo(rows, cols, vals, shape=(52, 40), sum_duplicates=sum_duplicates)
    got = hopkit.CSR.from_coo(torch.from_numpy(rows).to(cuda, index_dtype),
                              torch.from_numpy(cols).to(cuda, index_dtype),
                              None if vals is None else torch.from_numpy(vals).to(cuda),
                              shape=(52, 40), sum_duplicates=sum_duplicates)
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    if with_values:
        np.testing.assert_allclose(got.values, want.values, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"CSR.from_coo: col must lie in \[0, 40\); col\[7\] = 40"):
        bad = cols.copy()
        bad[7] = 40
        hopkit.CSR.from_coo(torch.from_numpy(rows).to(cuda), torch.from_numpy(bad).to(cuda),
                            shape=(52, 40))
    empty = hopkit.CSR.from_coo(torch.zeros(0, dtype=index_dtype, device=cuda),
                                torch.zeros(0, dtype=index_dtype, device=cuda), shape=(3, 4))
    assert empty.nnz == 0 and (empty.indptr == 0).all()


def test_transpose_on_device_matches_cpu(cuda, rng):
    A = _graph(rng)
    t_indptr, t_indices, perm = cb.csr_transpose(torch.from_numpy(A.indptr).to(cuda),
                                                 torch.from_numpy(A.indices).to(cuda), A.n_cols)
    np.testing.assert_array_equal(t_indptr.cpu().numpy(), A.T.indptr)
    np.testing.assert_array_equal(t_indices.cpu().numpy(), A.T.indices)
    np.testing.assert_array_equal(perm.cpu().numpy(), A.T.perm)


# ---------------------------------------------------------------- propagate / attention / topk
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layers", [0, 1, 2, 3])
def test_propagate_matches_cpu(cuda, rng, dtype, layers):
    R = power_law_graph(60, 50, 900, rng, values=np.float64)
    A = hopkit.bipartite_adjacency(R, dtype=np.float64)
    tdt = DTYPES[dtype]
    X = torch.randn(A.n_cols, 24, dtype=torch.float64).to(tdt)
    Aw = hopkit.CSR(A.indptr, A.indices, torch.from_numpy(A.values).to(tdt).double().numpy(),
                    A.shape)
    want = hopkit.propagate(Aw, X.double().numpy(), layers, backend="numpy")
    got = hopkit.propagate(A, X.to(cuda), layers)
    assert got.dtype == tdt and got.device == cuda
    t = TOL[tdt] * (1 if tdt in (torch.float32, torch.float64) else 4)  # rounded per hop
    np.testing.assert_allclose(got.double().cpu().numpy(), want, rtol=t,
                               atol=t * max(1.0, np.abs(want).max()))


def test_propagate_gradcheck_on_gpu(cuda, rng):
    A = hopkit.bipartite_adjacency(power_law_graph(20, 15, 200, rng), dtype=np.float64)
    X = torch.randn(A.n_cols, 3, dtype=torch.float64, device=cuda, requires_grad=True)
    w = torch.rand(A.nnz, dtype=torch.float64, device=cuda)
    for combine in ("mean", "sum", [0.5, 0.0, 2.0, 1.0]):
        torch.autograd.gradcheck(lambda x: hopkit.propagate(A, x, 3, combine), (X,))  # noqa: B023
        torch.autograd.gradcheck(lambda x: hopkit.propagate(A, x, 3, combine, w),  # noqa: B023
                                 (X,))


@pytest.mark.parametrize("score", ["dot", "gat"])
@pytest.mark.parametrize("heads", [1, 3])
def test_attention_matches_cpu_and_gradcheck(cuda, rng, score, heads):
    A = power_law_graph(40, 30, 500, rng, empty=(2, 39))
    dk = 1 if score == "gat" else 5
    Q = rng.standard_normal((40, heads * dk))
    K = rng.standard_normal((30, heads * dk))
    V = rng.standard_normal((30, heads * 7))
    want = hopkit.attention_aggregate(A, Q, K, V, heads, score, backend="numpy")
    ts = [torch.from_numpy(a).to(cuda).requires_grad_() for a in (Q, K, V)]
    got = hopkit.attention_aggregate(A, *ts, heads, score)
    np.testing.assert_allclose(got.detach().cpu().numpy(), want, rtol=1e-11, atol=1e-11)
    torch.autograd.gradcheck(lambda q, k, v: hopkit.attention_aggregate(A, q, k, v, heads, score),
                             ts)


@pytest.mark.parametrize("score", ["dot", "gat"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_attention_split_rows_match_cpu(cuda, rng, score, dtype):
    """Rows of several segments (combined by the second kernel), empty rows,
    values wider than one feature tile; forward and gradients vs the CPU."""
    A = _graph(rng)
    heads, dk, dv = 2, (1 if score == "gat" else 9), 150
    arrays = [rng.standard_normal(shape) for shape in
              ((120, heads * dk), (90, heads * dk), (90, heads * dv))]
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    cpu = [torch.from_numpy(a).to(dtype).requires_grad_() for a in arrays]
    gpu = [t.detach().to(cuda).requires_grad_() for t in cpu]
    outs = [hopkit.attention_aggregate(A, *ts, heads, score) for ts in (cpu, gpu)]
    torch.testing.assert_close(outs[1].detach().cpu(), outs[0].detach(), rtol=tol, atol=tol)
    for o in outs:
        (o ** 2).sum().backward()
    for c, g in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(g.grad.cpu(), c.grad, rtol=tol, atol=tol * c.grad.abs().max())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [0, 1, 20, 300])
def test_topk_identical_to_cpu(cuda, rng, dtype, k):
    # integer-valued embeddings: exact scores with many ties (ties -> smaller index)
    U = rng.integers(-2, 3, (70, 6)).astype(np.float64)
    It = rng.integers(-2, 3, (400, 6)).astype(np.float64)
    train = power_law_graph(70, 400, 3000, rng, empty=(5,))
    Ut, Itt = torch.from_numpy(U).to(cuda, dtype), torch.from_numpy(It).to(cuda, dtype)
    for kw in ({}, {"exclude": train}, {"candidates": train}):
        s_cpu, i_cpu = hopkit.topk(U.astype(np.float32) if dtype == torch.float32 else U,
                                   It.astype(np.float32) if dtype == torch.float32 else It, k,
                                   **kw)
        s_gpu, i_gpu = hopkit.topk(Ut, Itt, k, **kw)
        assert s_gpu.device == cuda and i_gpu.dtype == torch.int64 and s_gpu.dtype == dtype
        np.testing.assert_array_equal(i_gpu.cpu().numpy(), i_cpu)
        np.testing.assert_array_equal(s_gpu.cpu().numpy(), s_cpu)


def _exclusion_csr(rng, n_rows, n_items, sizes):
    rows = [np.sort(rng.choice(n_items, size, replace=False)) for size in sizes]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    return hopkit.CSR(indptr, np.concatenate(rows).astype(np.int64), None, (n_rows, n_items))


@pytest.mark.parametrize("n_items", [9000, 40000])  # 2 and 5 chunks of 8192 scores
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [1, 20, 256])
def test_topk_long_rows_identical_to_cpu(cuda, rng, monkeypatch, dtype, k, n_items):
    """Rows of several steps and chunks (threshold seeding, buffer merges, the
    chunk-merge pass), long exclusion rows, a query whose scores ascend with
    the item index (every step beats the threshold), several score tiles."""
    n_q = 20
    monkeypatch.setattr(importlib.import_module("hopkit.cuda_backend.topk"), "TOPK_TILE_SCORES",
                        3 * n_items)  # 3 queries per tile: 7 tiles
    U = rng.integers(-3, 4, (n_q, 8)).astype(np.float64)
    It = rng.integers(-3, 4, (n_items, 8)).astype(np.float64)
    It[:, 0] = np.arange(n_items) * 2.0**-10  # exact in float32: every score is exact
    U[0] = 0.0
    U[0, 0] = 1.0  # query 0: ascending scores
    sizes = [2500, 3000, 2048, 2049, 0] + list(rng.integers(0, 50, n_q - 5))
    ex = _exclusion_csr(rng, n_q, n_items, sizes)
    npdt = np.float32 if dtype == torch.float32 else np.float64
    Ut, Itt = torch.from_numpy(U).to(cuda, dtype), torch.from_numpy(It).to(cuda, dtype)
    for kw in ({}, {"exclude": ex}):
        s_cpu, i_cpu = hopkit.topk(U.astype(npdt), It.astype(npdt), k, **kw)
        s_gpu, i_gpu = hopkit.topk(Ut, Itt, k, **kw)
        np.testing.assert_array_equal(i_gpu.cpu().numpy(), i_cpu)
        np.testing.assert_array_equal(s_gpu.cpu().numpy(), s_cpu)


def test_topk_nan_and_exclusion_rows(cuda, rng):
    U = torch.randn(5, 4, device=cuda)
    It = torch.randn(50, 4, device=cuda)
    It[7] = float("nan")
    train = power_law_graph(3, 50, 60, rng)
    rows = np.array([2, 0, 1, 2, 0])
    s, i = hopkit.topk(U, It, 60, exclude=train, exclude_rows=rows)
    s_c, i_c = hopkit.topk(U.cpu().numpy(), It.cpu().numpy(), 60, exclude=train,
                           exclude_rows=rows)
    np.testing.assert_array_equal(i.cpu().numpy(), i_c)
    assert (i.cpu().numpy() != 7).all()
    assert ((i == -1) == torch.isneginf(s)).all()


# ---------------------------------------------------------------- the ops that got a CUDA path
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [1, 20, 300])
def test_topk_scores_and_item_index_identical_to_cpu(cuda, rng, dtype, k):
    npdt = np.float32 if dtype == torch.float32 else np.float64
    S = rng.integers(-3, 4, (40, 9000)).astype(npdt)
    S[3, 10] = np.nan
    train = power_law_graph(40, 9000, 5000, rng, empty=(5,))
    s_c, i_c = hopkit.topk_scores(S, k, exclude=train)
    s_g, i_g = hopkit.topk_scores(torch.from_numpy(S).to(cuda), k, exclude=train)
    np.testing.assert_array_equal(i_g.cpu().numpy(), i_c)
    np.testing.assert_array_equal(s_g.cpu().numpy(), s_c)
    Q = rng.integers(-3, 4, (40, 8)).astype(npdt)
    It = rng.integers(-3, 4, (9000, 8)).astype(npdt)
    index = hopkit.ItemIndex(torch.from_numpy(It).to(cuda))
    s_g, i_g = hopkit.topk(torch.from_numpy(Q).to(cuda), index, k, exclude=train)
    s_c, i_c = hopkit.topk(Q, It, k, exclude=train)
    np.testing.assert_array_equal(i_g.cpu().numpy(), i_c)
    np.testing.assert_array_equal(s_g.cpu().numpy(), s_c)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bpr_loss_and_gradients_match_cpu(cuda, rng, shared, dtype):
    U = torch.randn(300, 32, dtype=dtype)
    V = U if shared else torch.randn(500, 32, dtype=dtype)
    n_items = V.shape[0]
    ids = [torch.from_numpy(rng.integers(0, m, 4096)) for m in (300, n_items, n_items)]
    outs = []
    for dev in ("cpu", cuda):
        u = U.to(dev).requires_grad_()
        v = u if shared else V.to(dev).requires_grad_()
        loss = hopkit.bpr_loss(u, v, *(i.to(dev) for i in ids))
        loss.backward()
        outs.append((loss.detach().cpu(), u.grad.cpu(), None if shared else v.grad.cpu()))
    tol = dict(rtol=1e-5, atol=1e-7) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-14)
    for a, b in zip(*outs, strict=True):
        if a is not None:
            torch.testing.assert_close(b, a, **tol)
    u = U.double().to(cuda).requires_grad_()
    torch.autograd.gradcheck(lambda t: hopkit.bpr_loss(t, t, *(i.to(cuda) % 300 for i in ids)),
                             (u,))
    g1 = torch.autograd.grad(hopkit.bpr_loss(u, u, *(i.to(cuda) % 300 for i in ids)), u)[0]
    g2 = torch.autograd.grad(hopkit.bpr_loss(u, u, *(i.to(cuda) % 300 for i in ids)), u)[0]
    assert torch.equal(g1, g2)  # deterministic: no atomics


@pytest.mark.parametrize("users_dtype", [torch.int32, torch.int64])
def test_sample_negatives_identical_to_cpu(cuda, rng, users_dtype):
    G = power_law_graph(200, 300, 20000, rng, empty=(7,))
    R = hopkit.CSR.from_coo(G.row_ids(), G.indices, shape=G.shape, sum_duplicates=True)
    users = torch.from_numpy(rng.integers(0, 200, 5000)).to(users_dtype)
    for seed in (0, 123, 2**64 - 1):
        want = hopkit.sample_negatives(R, users.numpy(), 4, seed=seed)
        got = hopkit.sample_negatives(R, users.to(cuda), 4, seed=seed)
        assert got.device.type == "cuda" and got.dtype == users_dtype
        np.testing.assert_array_equal(got.cpu().numpy(), want)  # the same draws


def test_nn_modules_on_cuda_match_cpu(cuda, rng):
    from hopkit.nn import GATConv, LGConv, LightGCNPropagation

    ei = torch.from_numpy(rng.integers(0, 60, (2, 400)))
    x = torch.randn(60, 8, dtype=torch.float64)
    w = torch.rand(400, dtype=torch.float64)
    for mod in (LGConv(), LightGCNPropagation(3)):
        torch.testing.assert_close(mod(x.to(cuda), ei.to(cuda), w.to(cuda)).cpu(), mod(x, ei, w),
                                   rtol=1e-10, atol=1e-12)
    gat = GATConv(8, 4, heads=2).double()
    torch.testing.assert_close(gat.to(cuda)(x.to(cuda), ei.to(cuda)).cpu(),
                               gat.cpu()(x, ei), rtol=1e-10, atol=1e-12)
