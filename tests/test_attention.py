import math

import hopkit
import numpy as np
import pytest
from conftest import BACKENDS, power_law_graph, tol
from hopkit import _backend


def dense_attention(A, Q, K, V, heads, score="dot", scale=None, slope=0.2):
    """Row by row with an explicit softmax (independent of the reference)."""
    n_rows = A.n_rows
    dk, dv = Q.shape[1] // heads, V.shape[1] // heads
    if score == "gat":
        dk = 1
    scale = 1 / math.sqrt(dk) if scale is None else scale
    out = np.zeros((n_rows, heads * dv))
    for i in range(n_rows):
        js = A.indices[A.indptr[i]:A.indptr[i + 1]]
        if len(js) == 0:
            continue
        for h in range(heads):
            if score == "dot":
                s = scale * (K[js, h * dk:(h + 1) * dk] @ Q[i, h * dk:(h + 1) * dk])
            else:
                z = Q[i, h] + K[js, h]
                s = np.where(z > 0, z, slope * z)
            p = np.exp(s - s.max())
            p /= p.sum()
            out[i, h * dv:(h + 1) * dv] = p @ V[js, h * dv:(h + 1) * dv]
    return out


def graph(rng, n_rows=40, n_cols=30, nnz=300, index_dtype=np.int64):
    empty = (0, min(17, n_rows // 2), n_rows - 1)
    return power_law_graph(n_rows, n_cols, nnz, rng, index_dtype, empty=empty)


@pytest.mark.parametrize("score", ["dot", "gat"])
@pytest.mark.parametrize("heads", [1, 3])
def test_reference_matches_dense(rng, score, heads):
    A = graph(rng)
    dq = heads if score == "gat" else 4 * heads
    Q, K = rng.standard_normal((40, dq)), rng.standard_normal((30, dq))
    V = rng.standard_normal((30, 5 * heads))
    Y = hopkit.attention_aggregate(A, Q, K, V, heads, score, backend="numpy")
    np.testing.assert_allclose(Y, dense_attention(A, Q, K, V, heads, score), rtol=1e-12,
                               atol=1e-12)
    assert (Y[0] == 0).all() and (Y[17] == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("score,heads,dk,dv", [("dot", 1, 64, 64), ("dot", 4, 16, 8),
                                                ("dot", 2, 3, 5), ("gat", 4, 1, 16),
                                                ("gat", 1, 1, 7)])
def test_attention_matches_reference(rng, backend, dtype, index_dtype, score, heads, dk, dv):
    A = graph(rng, index_dtype=index_dtype)
    Q = rng.standard_normal((40, heads * dk)).astype(dtype)
    K = rng.standard_normal((30, heads * dk)).astype(dtype)
    V = rng.standard_normal((30, heads * dv)).astype(dtype)
    Y = hopkit.attention_aggregate(A, Q, K, V, heads, score, backend=backend)
    assert Y.dtype == dtype and Y.shape == (40, heads * dv)
    np.testing.assert_allclose(
        Y, hopkit.attention_aggregate(A, Q, K, V, heads, score, backend="numpy"), **tol(dtype))


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
def test_large_logits_are_stable_and_edge_cases(rng, backend):
    A = graph(rng)
    Q = 200 * rng.standard_normal((40, 8))  # logits in the thousands: naive exp overflows
    K = rng.standard_normal((30, 8))
    V = rng.standard_normal((30, 8))
    Y = hopkit.attention_aggregate(A, Q, K, V, 2, backend=backend)
    assert np.isfinite(Y).all()
    np.testing.assert_allclose(Y, dense_attention(A, Q, K, V, 2), rtol=1e-9, atol=1e-9)
    Q32, K32, V32 = (t.astype(np.float32) for t in (Q, K, V))
    Y = hopkit.attention_aggregate(A, Q32, K32, V32, 2, backend=backend)
    np.testing.assert_allclose(Y, dense_attention(A, *(t.astype(np.float64) for t in
                                                       (Q32, K32, V32)), 2), rtol=1e-4,
                               atol=1e-4)
    A0 = hopkit.CSR([0], [], shape=(0, 0))
    z = np.ones((0, 4))
    assert hopkit.attention_aggregate(A0, z, z, z, backend=backend).shape == (0, 4)
    A1 = hopkit.CSR([0, 0, 0], [], shape=(2, 3))  # zero edges
    Y = hopkit.attention_aggregate(A1, np.ones((2, 4)), np.ones((3, 4)), np.ones((3, 6)), 2,
                                   backend=backend)
    np.testing.assert_array_equal(Y, np.zeros((2, 6)))
    A2 = hopkit.CSR([0, 1], [0], shape=(1, 1))  # single node, self loop: softmax = 1
    Y = hopkit.attention_aggregate(A2, np.ones((1, 2)), np.ones((1, 2)), np.full((1, 3), 7.0),
                                   backend=backend)
    np.testing.assert_allclose(Y, [[7.0, 7.0, 7.0]])


# ------------------------------------------------------------------ autograd
def _gradcheck(A, shapes, heads, score, backend, rng):
    torch = pytest.importorskip("torch")
    Q, K, V = (torch.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes)
    fn = lambda Q, K, V: hopkit.attention_aggregate(A, Q, K, V, heads, score,  # noqa: E731
                                                    backend=backend)
    assert torch.autograd.gradcheck(fn, (Q, K, V))


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
@pytest.mark.parametrize("score,heads,dk,dv", [("dot", 1, 3, 3), ("dot", 2, 3, 2),
                                                ("gat", 2, 1, 3)])
def test_gradcheck(rng, backend, score, heads, dk, dv):
    A = power_law_graph(12, 10, 45, rng, empty=(0, 5, 11))  # empty rows, isolated columns
    _gradcheck(A, [(12, heads * dk), (10, heads * dk), (10, heads * dv)], heads, score, backend,
               rng)


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
def test_gradcheck_single_node_and_isolated(rng, backend):
    A = hopkit.CSR([0, 1], [0], shape=(1, 1))
    _gradcheck(A, [(1, 4), (1, 4), (1, 2)], 2, "dot", backend, rng)
    A = hopkit.CSR([0, 2, 2, 3], [0, 2, 2], shape=(3, 4))  # isolated node 1 (both ways), 3
    _gradcheck(A, [(3, 2), (4, 2), (4, 3)], 1, "dot", backend, rng)
    _gradcheck(A, [(3, 1), (4, 1), (4, 3)], 1, "gat", backend, rng)


def test_matches_plain_torch_forward_and_backward(rng):
    torch = pytest.importorskip("torch")
    A = graph(rng)
    H, dk, dv = 2, 4, 3
    Q = torch.randn(40, H * dk, requires_grad=True)
    K = torch.randn(30, H * dk, requires_grad=True)
    V = torch.randn(30, H * dv, requires_grad=True)
    G = torch.randn(40, H * dv)
    Y = hopkit.attention_aggregate(A, Q, K, V, H)
    gh = torch.autograd.grad(Y, (Q, K, V), G)
    rows = torch.from_numpy(np.array(A.row_ids()))
    cols = torch.from_numpy(A.indices.astype(np.int64))
    s = (Q.view(40, H, dk)[rows] * K.view(30, H, dk)[cols]).sum(-1) / math.sqrt(dk)
    m = torch.full((40, H), -torch.inf).scatter_reduce(0, rows[:, None].expand(-1, H), s,
                                                       "amax")
    p = torch.exp(s - m[rows])
    den = torch.zeros(40, H).index_add(0, rows, p)
    a = p / den[rows]
    Yt = torch.zeros(40, H, dv).index_add(0, rows, a[..., None] * V.view(30, H, dv)[cols])
    Yt = Yt.reshape(40, H * dv)
    torch.testing.assert_close(Y, Yt, rtol=1e-5, atol=1e-5)
    gt = torch.autograd.grad(Yt, (Q, K, V), G)
    for x, y in zip(gh, gt, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_inplace_change_before_backward_is_detected(rng):
    torch = pytest.importorskip("torch")
    A = graph(rng)
    Q = torch.randn(40, 4, requires_grad=True)
    K, V = torch.randn(30, 4), torch.randn(30, 4)
    Y = hopkit.attention_aggregate(A, Q, K, V)
    K.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        Y.sum().backward()


@pytest.mark.parametrize("score", ["dot", "gat"])
def test_inf_and_nan_scores_propagate_like_reference(rng, score):
    # issue 13 item 8: the native float fast exp shifted a negative exponent for NaN
    # (undefined behaviour, fatal in the sanitizer build); NaN must still come out as NaN.
    if _backend.native_module() is None:
        pytest.skip("native extension not built")
    A = graph(rng)
    w = 8 if score == "dot" else 2  # gat: one scalar per node and head
    Q = rng.standard_normal((40, w)).astype(np.float32)
    K = rng.standard_normal((30, w)).astype(np.float32)
    V = rng.standard_normal((30, 8)).astype(np.float32)
    Q[3, 0], Q[5, 1], Q[7, :] = np.nan, np.inf, -np.inf
    K[2, w // 2], K[9, 0] = np.inf, np.nan
    Y = hopkit.attention_aggregate(A, Q, K, V, 2, score, backend="native")
    ref = hopkit.attention_aggregate(A, Q.astype(np.float64), K.astype(np.float64),
                                     V.astype(np.float64), 2, score, backend="numpy")
    assert np.isnan(ref).any() and np.isfinite(ref).any()
    np.testing.assert_array_equal(np.isnan(Y), np.isnan(ref))
    np.testing.assert_allclose(Y, ref, rtol=1e-4, atol=1e-4, equal_nan=True)


# ------------------------------------------------------------------ errors
def test_attention_errors(rng):
    A = graph(rng, 10, 8, 40)
    Q, K, V = np.ones((10, 8)), np.ones((8, 8)), np.ones((8, 6))
    op = "attention_aggregate"
    with pytest.raises(ValueError, match=rf"{op}: heads \(3\) must divide the width of Q and K "
                                         r"\(8\)"):
        hopkit.attention_aggregate(A, Q, K, V, heads=3)
    with pytest.raises(ValueError, match=rf"{op}: heads \(4\) must divide the width of V \(6\)"):
        hopkit.attention_aggregate(A, Q, K, V, heads=4)
    with pytest.raises(ValueError, match=rf"{op}: K must have the width of Q \(8\), got 4"):
        hopkit.attention_aggregate(A, Q, K[:, :4], V)
    with pytest.raises(ValueError, match=rf"{op}: K must have 8 rows, got 7"):
        hopkit.attention_aggregate(A, Q, K[:7], V)
    with pytest.raises(ValueError, match=rf"{op}: V must have 8 rows, got 10"):
        hopkit.attention_aggregate(A, Q, K, np.ones((10, 6)))
    with pytest.raises(ValueError, match=rf"{op}: heads must be a positive integer, got 0"):
        hopkit.attention_aggregate(A, Q, K, V, heads=0)
    with pytest.raises(ValueError, match=rf"{op}: score must be one of"):
        hopkit.attention_aggregate(A, Q, K, V, score="additive")
    with pytest.raises(ValueError, match=r"with score='gat', Q and K must have heads = 2"):
        hopkit.attention_aggregate(A, Q, K, V, heads=2, score="gat")
    with pytest.raises(TypeError, match=rf"{op}: V must have the same dtype"):
        hopkit.attention_aggregate(A, Q, K, V.astype(np.float32))
