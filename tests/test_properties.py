"""Hypothesis property suite: every op on every CPU backend against brute force
and the NumPy reference (docs/properties.md).

Inputs are integer-valued floats (sums and products are exact in float32 and
float64, so results are compared bit for bit and top-K ties are forced), with
NaN / +-inf injected where the contract says what happens, on hostile shapes:
zero rows, zero nonzeros, empty first / middle / last rows, one huge row,
k = 0, k = N, k > N. Every example runs on all CPU backends at once.

The default profile is bounded for CI (derandomized, a few dozen examples per
property); ``HOPKIT_HYPOTHESIS=long`` runs many more, with random seeds.
A property that finds a known defect leaves out exactly the failing region
(with a comment naming the defect), and that region is a named reproducer
test marked ``xfail(strict=True)`` (reason: the reproducer), so the suite stays
green, the defect visible, and a fix turns the xfail into a failure that asks
for the exclusion to be lifted.
"""

from __future__ import annotations

import math
import os

import hopkit
import numpy as np
import pytest
from hopkit import CSR, _backend
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# NaN / inf injection makes NumPy (the reference and the brute force) warn by design
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning",
                                        "ignore:overflow encountered:RuntimeWarning")

BACKENDS = ["numpy"] + [b for b, ok in (("native", _backend.native_module() is not None),
                                        ("numba", _backend.numba_module() is not None)) if ok]
BE = {b: _backend.resolve(b) for b in BACKENDS}

# ---------------------------------------------------------------- profiles
_PROFILE = os.environ.get("HOPKIT_HYPOTHESIS", "ci").lower()
if _PROFILE not in ("ci", "long"):
    raise ValueError(f"HOPKIT_HYPOTHESIS must be 'ci' or 'long', got {_PROFILE!r}")
_SCALE = 1 if _PROFILE == "ci" else 40
settings.register_profile(
    "hopkit-ci", deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "hopkit-long", deadline=None, derandomize=False, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_BASE = settings.get_profile(f"hopkit-{_PROFILE}")


def budget(n):
    """Settings for a property: n examples in CI, 40 n with HOPKIT_HYPOTHESIS=long."""
    return settings(_BASE, max_examples=n * _SCALE)


NAN, INF = float("nan"), float("inf")
DTYPES = st.sampled_from([np.float32, np.float64])
IDX = st.sampled_from([np.int32, np.int64])
# feature widths: tiny, and across the native kernels' 64 / 128 / 256-byte register chunks
WIDTHS = st.one_of(st.integers(0, 3), st.sampled_from([16, 17, 33, 65]))
LAYOUTS = ("random", "zero_nnz", "empty_first", "empty_middle", "empty_last", "huge_row")


# ---------------------------------------------------------------- strategies
def int_floats(draw, dtype, shape, lo=-3, hi=3):
    """An integer-valued float array (exact arithmetic, many ties)."""
    return draw(hnp.arrays(dtype, shape, elements=st.integers(lo, hi).map(float)))


def inject(draw, a, specials=(NAN, INF, -INF), max_n=3, min_n=0):
    """A copy of a with min_n..max_n entries replaced by NaN / +-inf."""
    a = a.copy()
    if a.size == 0 or not specials:
        return a
    n = draw(st.integers(min_n, max(max_n, min_n)))
    flat = a.reshape(-1)
    for _ in range(n):
        flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from(specials))
    return a


@st.composite
def graphs(draw, max_rows=7, max_cols=7, square=False, n_rows=None, n_cols=None,
           values="maybe", sorted_unique=False, max_deg=4, huge=24, value_range=(-2, 3)):
    """(CSR, layout): a random graph with a hostile layout, int32/int64 indices,
    optional integer-valued values; rows unsorted with repeats unless
    sorted_unique."""
    idt = draw(IDX)
    layout = draw(st.sampled_from(LAYOUTS))
    if n_rows is None:
        n_rows = draw(st.integers(0, max_rows))
    if n_cols is None:
        n_cols = n_rows if square else draw(st.integers(0, max_cols))
    deg = np.array(draw(st.lists(st.integers(0, max_deg), min_size=n_rows, max_size=n_rows)),
                   dtype=np.int64)
    if n_rows:
        if layout == "zero_nnz" or n_cols == 0:
            deg[:] = 0
        elif layout == "empty_first":
            deg[0] = 0
        elif layout == "empty_middle":
            deg[n_rows // 2] = 0
        elif layout == "empty_last":
            deg[-1] = 0
        elif layout == "huge_row":
            deg[draw(st.integers(0, n_rows - 1))] = draw(st.integers(huge // 2, huge))
    nnz = int(deg.sum())
    cols = (draw(hnp.arrays(np.int64, nnz, elements=st.integers(0, n_cols - 1)))
            if nnz else np.zeros(0, np.int64))
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(deg, out=indptr[1:])
    if sorted_unique:
        rows = np.repeat(np.arange(n_rows), deg)
        key = np.unique(rows * max(n_cols, 1) + cols)
        rows, cols = key // max(n_cols, 1), key % max(n_cols, 1)
        indptr[1:] = np.cumsum(np.bincount(rows, minlength=n_rows))
        nnz = len(cols)
    has_values = values == "always" or (values == "maybe" and draw(st.booleans()))
    vals = None
    if has_values:
        vals = int_floats(draw, draw(DTYPES), nnz, *value_range)
    return CSR(indptr, cols.astype(idt), vals, shape=(n_rows, n_cols)), layout


def dense_of(A: CSR, weights=None):
    """A as a dense float64 matrix, duplicates summed (weights default to values or 1)."""
    D = np.zeros(A.shape)
    w = (weights if weights is not None else
         A.values if A.values is not None else np.ones(A.nnz))
    np.add.at(D, (A.row_ids(), A.indices.astype(np.int64)), np.asarray(w, np.float64))
    return D


def rows_of(A: CSR):
    return [A.indices[A.indptr[i]:A.indptr[i + 1]].astype(np.int64) for i in range(A.n_rows)]


def assert_same(actual, expected, what, equal_nan=True):
    """Bit-for-bit equality (NaN == NaN, -0 == 0), dtype and shape included."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    np.testing.assert_array_equal(actual, expected, err_msg=what, strict=False)


# ---------------------------------------------------------------- spmm
def brute_spmm(A: CSR, X, E, message, reduce, F, dtype):
    """Per-row loops in float64 over the CSR order (the docs/spmm.md contract)."""
    Y = np.zeros((A.n_rows, F))
    arg = np.full((A.n_rows, F), -1, dtype=np.int64)
    for i in range(A.n_rows):
        lo, hi = int(A.indptr[i]), int(A.indptr[i + 1])
        msgs = []
        for e in range(lo, hi):
            w = None if E is None else np.broadcast_to(np.asarray(E[e], np.float64), (F,))
            if message == "edge":
                m = w.copy()
            else:
                x = X[int(A.indices[e])].astype(np.float64)
                m = x if message == "copy" or w is None else x * w if message == "mul" else x + w
            msgs.append(m.astype(dtype).astype(np.float64))  # messages in the input dtype
        if not msgs:
            continue
        M = np.array(msgs)  # [deg, F]
        if reduce in ("sum", "mean"):
            with np.errstate(invalid="ignore"):
                Y[i] = M.sum(axis=0) / (len(msgs) if reduce == "mean" else 1)
            continue
        for f in range(F):
            best = None
            for t in range(len(msgs)):
                v = M[t, f]
                if math.isnan(v):
                    continue  # NaN never wins
                if best is None or (v > M[best, f] if reduce == "max" else v < M[best, f]):
                    best = t  # strict: ties keep the first edge
            if best is not None:
                Y[i, f] = M[best, f]
                arg[i, f] = lo + best
    return Y.astype(dtype), arg


@st.composite
def spmm_cases(draw, specials=True):
    A, layout = draw(graphs())
    dtype = draw(DTYPES)
    message = draw(st.sampled_from(["copy", "mul", "add", "edge"]))
    ew = draw(st.sampled_from(["none", "values", "vec", "mat"]))
    if message == "copy" and ew in ("vec", "mat"):
        ew = "values"  # an explicit edge_weight with copy is a documented ValueError
    if message == "edge" and ew == "none":
        ew = "vec"
    if ew == "values" and A.values is None:
        A = CSR(A.indptr, A.indices, int_floats(draw, dtype, A.nnz, -2, 3), A.shape)
    if ew == "values" and message == "edge":
        dtype = A.values.dtype.type  # X is None: the edge features' dtype
    if ew == "none" and A.values is not None:
        A = CSR(A.indptr, A.indices, None, A.shape)
    F = 1 if message == "edge" and ew in ("vec", "values") else draw(WIDTHS)
    X = None if message == "edge" else int_floats(draw, dtype, (A.n_cols, F))
    edge_weight = None
    if ew == "vec":
        edge_weight = int_floats(draw, dtype, A.nnz, -2, 3)
    elif ew == "mat":
        edge_weight = int_floats(draw, dtype, (A.nnz, F), -2, 3)
    reduce = draw(st.sampled_from(["sum", "mean", "max", "min"]))
    if specials:  # max/min: NaN messages beside finite ones in most examples
        n0 = 1 if reduce in ("max", "min") else 0
        sp = (NAN, NAN, INF, -INF)
        if X is not None:
            X = inject(draw, X, sp, max_n=4, min_n=n0)
        if edge_weight is not None:
            edge_weight = inject(draw, edge_weight, sp, min_n=n0 if X is None else 0)
    return A, X, edge_weight, message, reduce, dtype, F


@budget(60)
@given(case=spmm_cases())
def test_spmm_matches_brute_force(case):
    A, X, edge_weight, message, reduce, dtype, F = case
    E = edge_weight if edge_weight is not None else A.values_as(dtype)
    eff = message if E is not None or message == "edge" else "copy"
    Y_ref, arg_ref = brute_spmm(A, X, E if eff != "copy" else None, eff, reduce, F, dtype)
    kw = dict(message=None if message == "edge" else message)
    for b in BACKENDS:
        what = f"spmm[{b}] reduce={reduce} message={message}"
        if reduce in ("max", "min"):
            Y, arg = hopkit.spmm(A, X, reduce, edge_weight, return_arg=True, backend=b, **kw)
            assert_same(arg, arg_ref, what + " arg")
            Y2 = hopkit.spmm(A, X, reduce, edge_weight, backend=b, **kw)
            assert_same(Y2, Y, what + " without return_arg")
        else:
            Y = hopkit.spmm(A, X, reduce, edge_weight, backend=b, **kw)
        if reduce == "mean":
            # sum / degree: one rounding in float64, then one to dtype (<= 1 ulp apart)
            assert Y.dtype == dtype and Y.shape == Y_ref.shape
            np.testing.assert_allclose(Y, Y_ref, rtol=2e-7 if dtype == np.float32 else 1e-15,
                                       atol=0, equal_nan=True, err_msg=what)
        else:
            assert_same(Y, Y_ref, what)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
def test_spmm_edge_features_of_width_0(backend, reduce):
    """X=None with [nnz, 0] edge features gives [n_rows, 0] on every backend
    (native raised an internal error, the NumPy reference a TypeError)."""
    A = CSR([0, 2, 3], np.array([0, 1, 1]), shape=(2, 2))
    Y = hopkit.spmm(A, None, reduce, np.zeros((3, 0), np.float32), backend=backend)
    assert Y.shape == (2, 0) and Y.dtype == np.float32


@budget(25)
@given(case=spmm_cases(specials=False))
def test_spmm_backward_kernels_match_reference(case):
    """The backward kernels (grad wrt X, wrt edge features) of every backend
    against the reference on the same validated arrays (integer-valued: exact)."""
    from hopkit.ops.spmm import (
        MESSAGES,
        REDUCES,
        spmm_edge_grad_np,
        spmm_forward_np,
        spmm_grad_x_np,
    )
    A, X, edge_weight, message, reduce, dtype, F = case
    if message == "edge" or X is None:
        return
    E = edge_weight if edge_weight is not None else A.values_as(dtype)
    e_width = 0 if E is None or message == "copy" else (1 if E.ndim == 1 else F)
    E = E if e_width else None
    msg = MESSAGES[message] if e_width else MESSAGES["copy"]
    red = REDUCES[reduce]
    dY = np.ascontiguousarray(
        np.arange(A.n_rows * F).reshape(A.n_rows, F) % 5 - 2, dtype=dtype)
    _, arg = spmm_forward_np(A, X, F, dtype, E, e_width, msg, red, BE["numpy"])
    dX_ref = spmm_grad_x_np(A, X, F, E, e_width, msg, red, arg, dY, BE["numpy"])
    dE_ref = (spmm_edge_grad_np(A, X, F, E, e_width, msg, red, arg, dY, BE["numpy"])
              if e_width else None)
    for b in BACKENDS[1:]:
        got = [("dX", spmm_grad_x_np(A, X, F, E, e_width, msg, red, arg, dY, BE[b]), dX_ref)]
        if e_width:
            got.append(("dE", spmm_edge_grad_np(A, X, F, E, e_width, msg, red, arg, dY, BE[b]),
                        dE_ref))
        for name, g, ref in got:
            what = f"spmm {name}[{b}] {reduce} {message}"
            if reduce == "mean":  # dY / degree is not integer-valued; the kernels sum in dtype
                assert g.dtype == ref.dtype and g.shape == ref.shape, what
                np.testing.assert_allclose(g, ref, rtol=1e-6 if dtype == np.float32 else 1e-14,
                                           atol=1e-6 if dtype == np.float32 else 1e-14,
                                           err_msg=what)
            else:
                assert_same(g, ref, what)


# ---------------------------------------------------------------- sddmm
@budget(25)
@given(g=graphs(), dtype=DTYPES, F=WIDTHS, scale=st.booleans(), data=st.data())
def test_sddmm_matches_brute_force(g, dtype, F, scale, data):
    A, _ = g
    if scale and A.values is None:
        A = CSR(A.indptr, A.indices, int_floats(data.draw, dtype, A.nnz), A.shape)
    U = inject(data.draw, int_floats(data.draw, dtype, (A.n_rows, F)))
    V = inject(data.draw, int_floats(data.draw, dtype, (A.n_cols, F)))
    rows, cols = A.row_ids(), A.indices.astype(np.int64)
    with np.errstate(invalid="ignore"):
        ref = (U[rows].astype(np.float64) * V[cols].astype(np.float64)).sum(axis=1)
        if scale:
            ref = ref * A.values.astype(np.float64)
    ref = ref.astype(dtype)
    for b in BACKENDS:
        assert_same(hopkit.sddmm(A, U, V, scale=scale, backend=b), ref, f"sddmm[{b}]")


# ---------------------------------------------------------------- propagate
@st.composite
def propagate_cases(draw):
    layers = draw(st.integers(0, 3))
    combine = draw(st.sampled_from(["sum", "last", "mean", "weights"]))
    if combine == "weights":
        combine = [float(w) for w in draw(st.lists(st.integers(-2, 2), min_size=layers + 1,
                                                   max_size=layers + 1))]
    rect = layers == 1 and (combine == "last" or (isinstance(combine, list) and combine[0] == 0))
    A, layout = draw(graphs(square=not rect, max_rows=6, max_cols=6, huge=12))
    dtype = draw(DTYPES)
    F = draw(WIDTHS)
    X = int_floats(draw, dtype, (A.n_cols, F), -2, 2)
    ew = draw(st.sampled_from(["default", "explicit"]))
    edge_weight = int_floats(draw, dtype, A.nnz, -2, 2) if ew == "explicit" else None
    return A, X, layers, combine, edge_weight, dtype


def brute_propagate(A, X, layers, combine, edge_weight):
    D = dense_of(A, edge_weight)
    L = layers
    alpha = (np.full(L + 1, 1.0 / (L + 1)) if combine == "mean" else np.ones(L + 1)
             if combine == "sum" else np.eye(L + 1)[L] if combine == "last"
             else np.asarray(combine))
    H = X.astype(np.float64)
    acc = alpha[0] * H if alpha[0] != 0 else np.zeros((A.n_rows, X.shape[1]))  # A may be wide
    for layer in range(1, L + 1):
        H = D @ H
        acc = acc + alpha[layer] * H
    return acc


@budget(40)
@given(case=propagate_cases())
def test_propagate_matches_brute_force(case):
    A, X, layers, combine, edge_weight, dtype = case
    ref = brute_propagate(A, X, layers, combine, edge_weight)
    for b in BACKENDS:
        Y = hopkit.propagate(A, X, layers, combine, edge_weight=edge_weight, backend=b)
        what = f"propagate[{b}] layers={layers} combine={combine}"
        if combine == "mean":
            assert Y.dtype == dtype and Y.shape == ref.shape, what
            np.testing.assert_allclose(Y, ref, rtol=1e-6 if dtype == np.float32 else 1e-13,
                                       atol=1e-6 if dtype == np.float32 else 1e-13, err_msg=what)
        else:  # integer weights and values: Horner's rule and the layer sum agree exactly
            assert_same(Y, ref.astype(dtype), what)


@budget(25)
@given(case=propagate_cases(), data=st.data())
def test_propagate_nonfinite_matches_reference(case, data):
    """NaN / inf in X: every backend gives the reference's NaN / inf pattern and
    values (the combine weights are drawn nonzero: 0 * NaN is where Horner's
    rule, which skips a zero weight, and the layer-by-layer sum may differ)."""
    A, X, layers, combine, edge_weight, dtype = case
    if combine == "last" or isinstance(combine, list):
        combine = [float(data.draw(st.sampled_from([-2, -1, 1, 2]))) for _ in range(layers + 1)]
        if A.n_rows != A.n_cols:
            return
    X = inject(data.draw, X)
    ref = hopkit.propagate(A, X, layers, combine, edge_weight=edge_weight, backend="numpy")
    for b in BACKENDS[1:]:
        Y = hopkit.propagate(A, X, layers, combine, edge_weight=edge_weight, backend=b)
        assert Y.dtype == ref.dtype
        np.testing.assert_array_equal(np.isnan(Y), np.isnan(ref), err_msg=f"propagate[{b}] NaN")
        np.testing.assert_allclose(Y, ref, rtol=1e-6, atol=1e-6, equal_nan=True,
                                   err_msg=f"propagate[{b}]")


# ---------------------------------------------------------------- attention
def brute_attention(A, Q, K, V, heads, score, scale, slope):
    """Per row and head: scores, a plain softmax (max-shifted), weighted sum."""
    n_rows = A.n_rows
    dk = Q.shape[1] // heads
    dv = V.shape[1] // heads
    out = np.zeros((n_rows, heads * dv))
    for i in range(n_rows):
        js = A.indices[A.indptr[i]:A.indptr[i + 1]].astype(np.int64)
        if len(js) == 0:
            continue
        for h in range(heads):
            if score == "dot":
                q = Q[i, h * dk:(h + 1) * dk].astype(np.float64)
                s = np.array([scale * (q @ K[j, h * dk:(h + 1) * dk].astype(np.float64))
                              for j in js])
            else:
                z = np.array([float(Q[i, h]) + float(K[j, h]) for j in js])
                s = np.where(z > 0, z, slope * z)
            with np.errstate(invalid="ignore", over="ignore"):
                p = np.exp(s - s.max())
                p = p / p.sum()
                out[i, h * dv:(h + 1) * dv] = (p[:, None] * V[js, h * dv:(h + 1) * dv]
                                               .astype(np.float64)).sum(axis=0)
    return out


@st.composite
def attention_cases(draw, specials=False):
    A, _ = draw(graphs(huge=20))
    dtype = draw(DTYPES)
    heads = draw(st.integers(1, 3))
    score = draw(st.sampled_from(["dot", "gat"]))
    dk = 1 if score == "gat" else draw(st.integers(1, 2))
    dv = draw(st.integers(0, 2))
    Q = int_floats(draw, dtype, (A.n_rows, heads * dk))
    K = int_floats(draw, dtype, (A.n_cols, heads * dk))
    V = int_floats(draw, dtype, (A.n_cols, heads * dv))
    if specials:
        Q, K, V = (inject(draw, M) for M in (Q, K, V))
    scale = draw(st.sampled_from([None, 1.0, 0.5, 3.0]))
    slope = draw(st.sampled_from([0.2, 0.0, 1.0]))
    return A, Q, K, V, heads, score, scale, slope, dtype


@budget(40)
@given(case=attention_cases())
def test_attention_matches_brute_force(case):
    A, Q, K, V, heads, score, scale, slope, dtype = case
    dk = Q.shape[1] // heads
    sc = 1.0 / math.sqrt(dk) if scale is None else scale
    ref = brute_attention(A, Q, K, V, heads, score, sc, slope)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for b in BACKENDS:
        out = hopkit.attention_aggregate(A, Q, K, V, heads, score, scale=scale,
                                         negative_slope=slope, backend=b)
        assert out.dtype == dtype and out.shape == ref.shape
        np.testing.assert_allclose(out, ref, err_msg=f"attention[{b}] {score}", **tol)


@budget(20)
@given(case=attention_cases())
def test_attention_backward_kernels_match_reference(case):
    """dQ, dK, dV of the native / Numba backward kernels against the reference
    (materialised per-edge tensors, float64) on the same forward outputs."""
    from hopkit.ops.attention import SCORES, attention_backward_np, attention_forward_np
    A, Q, K, V, heads, score, scale, slope, dtype = case
    dk, dv = Q.shape[1] // heads, V.shape[1] // heads
    sc = 1.0 / math.sqrt(dk) if scale is None else float(scale)
    args = (heads, dk, dv, SCORES[score], sc, slope)
    out, lse = attention_forward_np(A, Q, K, V, *args, BE["numpy"])
    dout = np.ascontiguousarray((np.arange(out.size).reshape(out.shape) % 5 - 2).astype(dtype))
    ref = attention_backward_np(A, Q, K, V, *args, out, dout, lse, BE["numpy"])
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    for b in BACKENDS[1:]:
        got = attention_backward_np(A, Q, K, V, *args, out, dout, lse, BE[b])
        for name, g, r in zip(("dQ", "dK", "dV"), got, ref, strict=False):
            assert g.dtype == r.dtype and g.shape == r.shape
            np.testing.assert_allclose(g, r, err_msg=f"attention {name}[{b}] {score}", **tol)


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba not installed")
@pytest.mark.parametrize("score", ["gat", "dot"])
def test_numba_attention_leading_neginf_score(score):
    """A row whose first edge scores -inf: Numba's online softmax rescaled by
    exp(-inf - -inf) = NaN; native and the reference give weight 0."""
    A = CSR([0, 2], np.array([0, 1]), shape=(1, 2))
    Q = np.ones((1, 1))
    K = np.array([[-np.inf], [0.0]])
    V = np.array([[1.0], [2.0]])
    ref = hopkit.attention_aggregate(A, Q, K, V, score=score, backend="numpy")
    assert ref[0, 0] == 2.0
    out = hopkit.attention_aggregate(A, Q, K, V, score=score, backend="numba")
    np.testing.assert_array_equal(out, ref)


@budget(30)
@given(case=attention_cases(specials=True))
def test_attention_nonfinite_matches_reference(case):
    """NaN / inf in Q, K, V: NaN propagates to exactly the reference's entries
    (docs/aggregation.md; issue 13 item 8: keep NaN propagation)."""
    A, Q, K, V, heads, score, scale, slope, dtype = case
    ref = hopkit.attention_aggregate(A, Q, K, V, heads, score, scale=scale,
                                     negative_slope=slope, backend="numpy")
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for b in BACKENDS[1:]:
        out = hopkit.attention_aggregate(A, Q, K, V, heads, score, scale=scale,
                                         negative_slope=slope, backend=b)
        what = f"attention[{b}] {score} nonfinite"
        np.testing.assert_array_equal(np.isnan(out), np.isnan(ref), err_msg=what + " NaN mask")
        np.testing.assert_allclose(out, ref, equal_nan=True, err_msg=what, **tol)


# ---------------------------------------------------------------- topk
def brute_topk(S, k, allowed):
    """S [B, N] float64 scores; allowed [B, N] bool (exclusion / candidates).
    Score descending, ties to the smaller item, NaN / -inf never, pad -1 / -inf."""
    B, N = S.shape
    scores = np.full((B, k), -np.inf)
    idx = np.full((B, k), -1, dtype=np.int64)
    for b in range(B):
        ok = [j for j in range(N) if allowed[b, j] and not math.isnan(S[b, j])
              and S[b, j] > -math.inf]
        ok.sort(key=lambda j: (-S[b, j], j))
        ok = ok[:k]
        scores[b, :len(ok)] = S[b, ok]
        idx[b, :len(ok)] = ok
    return scores, idx


@st.composite
def id_csr(draw, n_rows, N, max_deg=5):
    """A CSR of item ids < N with unsorted rows and repeats (exclusion / candidates)."""
    deg = draw(st.lists(st.integers(0, max_deg if N else 0), min_size=n_rows, max_size=n_rows))
    if N and n_rows and draw(st.booleans()):
        deg[draw(st.integers(0, n_rows - 1))] = N + 1  # a row listing every item (or more)
    nnz = sum(deg)
    ids = draw(hnp.arrays(np.int64, nnz, elements=st.integers(0, max(N - 1, 0))))
    if nnz and max(deg) == N + 1:
        r = int(np.argmax(deg))
        start = sum(deg[:r])
        ids[start:start + N] = np.arange(N)[::-1]  # the full row, reversed
    indptr = np.concatenate([[0], np.cumsum(deg)]).astype(np.int64)
    return CSR(indptr, ids.astype(draw(IDX)), shape=(n_rows, N))


@st.composite
def topk_cases(draw, given_scores=False):
    dtype = draw(DTYPES)
    B = draw(st.integers(0, 5))
    N = draw(st.one_of(st.integers(0, 9), st.integers(60, 200)))
    d = draw(st.integers(0 if not given_scores else 1, 3))
    kind = draw(st.sampled_from(["k<N", "k=N", "k>N", "k=0"]))
    k = {"k<N": draw(st.integers(1, max(N - 1, 1))), "k=N": N, "k>N": N + draw(
        st.integers(1, 3)), "k=0": 0}[kind]
    if given_scores:
        S = inject(draw, int_floats(draw, dtype, (B, N), -4, 4), max_n=6)
        Qry = Its = None
    else:
        Qry = inject(draw, int_floats(draw, dtype, (B, d), -2, 2))
        Its = inject(draw, int_floats(draw, dtype, (N, d), -2, 2))
        S = None
    ex_mode = draw(st.sampled_from(["none", "rows", "mapped"]))
    exclude = exclude_rows = None
    if ex_mode == "rows":
        exclude = draw(id_csr(B, N))
    elif ex_mode == "mapped":
        n_ex = draw(st.integers(1, 4))
        exclude = draw(id_csr(n_ex, N))
        exclude_rows = np.array(draw(st.lists(st.integers(0, n_ex - 1), min_size=B,
                                              max_size=B)), dtype=draw(IDX))
    candidates = None
    if not given_scores and draw(st.booleans()):
        candidates = draw(id_csr(B, N, max_deg=8))
    return dtype, Qry, Its, S, k, exclude, exclude_rows, candidates


def allowed_mask(B, N, exclude, exclude_rows, candidates):
    ok = np.ones((B, N), dtype=bool)
    if candidates is not None:
        ok[:] = False
        for b, r in enumerate(rows_of(candidates)):
            ok[b, r] = True
    if exclude is not None:
        ex = rows_of(exclude)
        for b in range(B):
            ok[b, ex[exclude_rows[b] if exclude_rows is not None else b]] = False
    return ok


def check_topk_result(scores, idx, ref_s, ref_i, dtype, what):
    assert_same(idx, ref_i, what + " idx")
    assert_same(scores, ref_s.astype(dtype), what + " scores")
    # the contract spelled out (implied by the equality, checked for clear messages)
    pad = idx < 0
    assert np.all(np.isneginf(scores[pad])), what + ": padding is not -inf"
    assert not np.any(np.isnan(scores)), what + ": NaN returned"
    assert np.all(np.isfinite(scores[~pad]) | (scores[~pad] == np.inf)), what
    assert np.all(np.diff(pad.astype(int), axis=1) >= 0), what + ": padding not at the tail"


@budget(80)
@given(case=topk_cases())
@example(case=(np.float32, np.ones((2, 1), np.float32), np.ones((5, 1), np.float32), None, 7,
               None, None, None))  # all tied, k > N
def test_topk_matches_brute_force(case):
    dtype, Qry, Its, _, k, exclude, exclude_rows, candidates = case
    B, N = Qry.shape[0], Its.shape[0]
    with np.errstate(invalid="ignore"):
        S = np.einsum("bd,nd->bn", Qry.astype(np.float64), Its.astype(np.float64)) \
            if Qry.shape[1] else np.zeros((B, N))
        # inf * 0 and inf - inf are NaN in any summation order; einsum may skip them
        P = Qry.astype(np.float64)[:, None, :] * Its.astype(np.float64)[None, :, :]
        S = P.sum(axis=2) if Qry.shape[1] else S
    ref_s, ref_i = brute_topk(S, k, allowed_mask(B, N, exclude, exclude_rows, candidates))
    index = hopkit.ItemIndex(Its)
    for b in BACKENDS:
        for items in (Its, index):  # an ItemIndex prepared once per backend, reused
            scores, idx = hopkit.topk(Qry, items, k, exclude=exclude, exclude_rows=exclude_rows,
                                      candidates=candidates, backend=b)
            check_topk_result(scores, idx, ref_s, ref_i, dtype,
                              f"topk[{b}] k={k} N={N} {type(items).__name__}")


@budget(4)
@given(data=st.data(), dtype=DTYPES, N=st.integers(1, 40), d=st.integers(1, 3))
def test_topk_large_batch_matches_brute_force(data, dtype, N, d):
    """Enough queries for the native large-batch path (B >= 4 x threads x 96)."""
    B = 4 * max(hopkit.get_num_threads(), 2) * 96 + data.draw(st.integers(0, 50))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    Qry = rng.integers(-2, 3, (B, d)).astype(dtype)
    Its = rng.integers(-2, 3, (N, d)).astype(dtype)
    Qry[rng.integers(0, B, 5), 0] = np.nan
    k = data.draw(st.integers(0, N + 2))
    exclude = CSR.from_coo(rng.integers(0, B, 3 * B), rng.integers(0, N, 3 * B), shape=(B, N))
    S = Qry.astype(np.float64) @ Its.astype(np.float64).T
    ok = ~np.isnan(S)
    ok[exclude.row_ids(), exclude.indices] = False
    ref_s = np.full((B, k), -np.inf)
    ref_i = np.full((B, k), -1, dtype=np.int64)
    for b in range(B):
        ids = np.flatnonzero(ok[b])
        order = ids[np.lexsort((ids, -S[b, ids]))][:k]
        ref_s[b, :len(order)], ref_i[b, :len(order)] = S[b, order], order
    for b in BACKENDS:
        scores, idx = hopkit.topk(Qry, Its, k, exclude=exclude, backend=b)
        check_topk_result(scores, idx, ref_s, ref_i, dtype, f"topk[{b}] B={B} k={k} N={N}")


@budget(60)
@given(case=topk_cases(given_scores=True))
def test_topk_scores_matches_brute_force(case):
    dtype, _, _, S, k, exclude, exclude_rows, _ = case
    B, N = S.shape
    ref_s, ref_i = brute_topk(S.astype(np.float64), k,
                              allowed_mask(B, N, exclude, exclude_rows, None))
    for b in BACKENDS:
        scores, idx = hopkit.topk_scores(S, k, exclude=exclude, exclude_rows=exclude_rows,
                                         backend=b)
        check_topk_result(scores, idx, ref_s, ref_i, dtype, f"topk_scores[{b}] k={k} N={N}")


# ---------------------------------------------------------------- bpr
@st.composite
def bpr_cases(draw, specials=False):
    dtype = draw(DTYPES)
    shared = draw(st.booleans())
    n_u = draw(st.integers(1, 6))
    n_i = n_u if shared else draw(st.integers(1, 6))
    F = draw(st.integers(0, 3))
    U = int_floats(draw, dtype, (n_u, F), -2, 2)
    V = U if shared else int_floats(draw, dtype, (n_i, F), -2, 2)
    if specials:
        U = inject(draw, U, max_n=2)
        V = U if shared else inject(draw, V, max_n=2)
    B = draw(st.integers(1, 12))
    users, pos, neg = (np.array(draw(st.lists(st.integers(0, n - 1), min_size=B, max_size=B)),
                                dtype=draw(IDX)) for n in (n_u, n_i, n_i))
    return U, V, users, pos, neg, dtype


@budget(40)
@given(case=bpr_cases(specials=True))
def test_bpr_loss_matches_brute_force(case):
    U, V, users, pos, neg, dtype = case
    with np.errstate(invalid="ignore"):
        x = np.array([U[u].astype(np.float64) @ (V[n].astype(np.float64)
                                                 - V[p].astype(np.float64))
                      for u, p, n in zip(users, pos, neg, strict=False)])
        ref = np.logaddexp(0.0, x).mean()
    for b in BACKENDS:
        loss = hopkit.bpr_loss(U, V, users, pos, neg, backend=b)
        assert isinstance(loss, np.generic) and loss.dtype == dtype, f"bpr[{b}] type"
        np.testing.assert_allclose(np.float64(loss), ref, rtol=1e-6 if dtype == np.float32
                                   else 1e-14, equal_nan=True, err_msg=f"bpr_loss[{b}]")


@budget(25)
@given(case=bpr_cases())
def test_bpr_backward_kernels_match_brute_force(case):
    from hopkit.ops.bpr import bpr_inputs, bpr_scores_np
    U, V, users, pos, neg, dtype = case
    Un, Vn, shared, u, p, n = bpr_inputs("bpr_loss", U, V, users, pos, neg)
    c = ((np.arange(len(u)) % 3) - 1).astype(dtype)  # integer-valued weights: exact sums
    gU = np.zeros(U.shape)
    gV = gU if shared else np.zeros(V.shape)
    for b_, (uu, pp, nn) in enumerate(zip(u, p, n, strict=False)):
        cu = float(c[b_]) * U[uu].astype(np.float64)
        gU[uu] += float(c[b_]) * (V[nn].astype(np.float64) - V[pp].astype(np.float64))
        gV[nn] += cu
        gV[pp] -= cu
    for b in BACKENDS:
        x = bpr_scores_np(Un, Vn, shared, u, p, n, BE[b])
        x_ref = np.array([U[uu].astype(np.float64) @ (V[nn].astype(np.float64)
                                                      - V[pp].astype(np.float64))
                          for uu, pp, nn in zip(u, p, n, strict=False)])
        assert_same(x, x_ref.astype(dtype), f"bpr_scores[{b}]")
        dU = np.zeros(Un.shape, dtype)
        dV = dU if shared else np.zeros(Vn.shape, dtype)
        BE[b].bpr_backward(Un, Vn, Un.shape[1], u, p, n, shared, c, dU, dV)
        assert_same(dU, gU.astype(dtype), f"bpr dU[{b}] shared={shared}")
        assert_same(dV, gV.astype(dtype), f"bpr dV[{b}] shared={shared}")


# ---------------------------------------------------------------- sample_negatives
@st.composite
def sampling_cases(draw):
    n_rows = draw(st.integers(0, 6))
    big = draw(st.booleans()) and draw(st.booleans())
    n_cols = (draw(st.sampled_from([2**31 - 1, 2**31, 2**32 - 1])) if big
              else draw(st.integers(0, 7)))
    rows = []
    for _ in range(n_rows):
        kind = draw(st.sampled_from(["random", "empty", "full", "all_but_one"]))
        if kind == "empty" or n_cols == 0:
            r = []
        elif kind == "full" and n_cols <= 8:
            r = list(range(n_cols))
        elif kind == "all_but_one" and n_cols <= 8:
            r = [j for j in range(n_cols) if j != draw(st.integers(0, n_cols - 1))]
        else:
            r = draw(st.lists(st.integers(0, n_cols - 1), max_size=8, unique=True))
        rows.append(sorted(r))
    deg = [len(r) for r in rows]
    indptr = np.concatenate([[0], np.cumsum(deg)]).astype(np.int64)
    indices = np.array([j for r in rows for j in r], dtype=np.int64)
    R = CSR(indptr, indices.astype(draw(IDX)) if n_cols < 2**31 else indices,
            shape=(n_rows, n_cols))
    B = draw(st.integers(0, 6)) if n_rows else 0
    udt = draw(IDX)
    users = np.array(draw(st.lists(st.integers(0, n_rows - 1), min_size=B, max_size=B))
                     if n_rows else [], dtype=udt)
    n_neg = draw(st.integers(0, 4))
    seed = draw(st.integers(0, 2**64 - 1))
    return R, rows, users, n_neg, seed


def check_negatives(R, rows, users, n_neg, seed, backends):
    outs = {}
    for b in backends:
        out = hopkit.sample_negatives(R, users, n_neg, seed=seed, backend=b)
        what = f"sample_negatives[{b}] n_cols={R.n_cols} users {users.dtype}"
        assert out.shape == (len(users), n_neg), what
        want = users.dtype if R.n_cols <= 2**31 else np.int64  # int64 when ids need it
        assert out.dtype == want, what + ": dtype is that of users, or int64 (docstring)"
        again = hopkit.sample_negatives(R, users, n_neg, seed=seed, backend=b)
        assert_same(again, out, what + " deterministic")
        for t, u in enumerate(users):
            full = len(rows[u]) == R.n_cols
            for v in out[t].tolist():
                if full:
                    assert v == -1, f"{what}: user {u} has every item, got {v}"
                else:
                    assert 0 <= v < R.n_cols, f"{what}: user {u} got item {v}"
                    assert v not in rows[u], f"{what}: user {u} got positive {v}"
        outs[b] = out
    for b in backends[1:]:  # same draws on every backend (counter-based)
        assert_same(outs[b], outs[backends[0]], f"sample_negatives[{b}] vs {backends[0]}")


@budget(60)
@given(case=sampling_cases())
def test_sample_negatives_valid(case):
    check_negatives(*case, BACKENDS)


@pytest.mark.parametrize("shape", [(1, 3), (4, 1)])
def test_sample_negatives_numpy_zero_nnz(shape):
    """issue 13 item 5 (was an IndexError on the NumPy backend)."""
    R = CSR(np.zeros(shape[0] + 1, np.int64), np.zeros(0, np.int64), shape=shape)
    users = np.arange(shape[0], dtype=np.int64)
    check_negatives(R, [[]] * shape[0], users, 2, 5, ["numpy"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_negatives_int32_users_huge_catalogue(backend):
    """issue 13 item 3 (ids >= 2**31 wrapped negative in an int32 output)."""
    R = CSR([0, 1], np.array([7], np.int64), shape=(1, 2**32 - 1))
    out = hopkit.sample_negatives(R, np.array([0], np.int32), 4, seed=0, backend=backend)
    assert np.all((out >= 0) & (out < R.n_cols) & (out != 7)), out


# ---------------------------------------------------------------- CSR construction
@st.composite
def coo_cases(draw):
    idt = draw(IDX)
    huge = draw(st.booleans())
    if huge:  # packed sort keys near 64 bits (issue 13 item 2); n_cols > 2**62 hangs (item 1)
        n_rows = draw(st.sampled_from([1, 3, 700, 4096, 5000]))
        n_cols = draw(st.sampled_from([2**31 + 1, 2**40, 2**52 + 3, 2**60, 2**61 + 1, 2**62]))
        idt = np.int64
    else:
        n_rows = draw(st.integers(0, 8))
        n_cols = draw(st.integers(0, 8))
    nnz = draw(st.integers(0, 30)) if n_rows and n_cols else 0
    if n_rows and n_cols and draw(st.booleans()):  # one huge row among tiny ones
        nnz = draw(st.integers(30, 80))
        hot = draw(st.integers(0, n_rows - 1))
        row = np.full(nnz, hot, dtype=np.int64)
        row[:3] = np.array(draw(st.lists(st.integers(0, n_rows - 1), min_size=3, max_size=3)))
    else:
        row = draw(hnp.arrays(np.int64, nnz, elements=st.integers(0, max(n_rows - 1, 0))))
    if huge:
        col = draw(hnp.arrays(np.int64, nnz, elements=st.sampled_from(
            [0, 1, n_cols // 3, n_cols - 2, n_cols - 1])))
    else:
        col = draw(hnp.arrays(np.int64, nnz, elements=st.integers(0, max(n_cols - 1, 0))))
    vals = None
    if draw(st.booleans()):
        vals = int_floats(draw, draw(DTYPES), nnz, -3, 3)
    return row.astype(idt), col.astype(idt), vals, (n_rows, n_cols), draw(st.booleans())


def brute_from_coo(row, col, vals, shape, sum_duplicates):
    order = sorted(range(len(row)), key=lambda e: (int(row[e]), int(col[e]), e))
    entries = [(int(row[e]), int(col[e]), None if vals is None else float(vals[e]))
               for e in order]
    if sum_duplicates:
        merged = []
        for r, c, v in entries:
            if merged and merged[-1][0] == r and merged[-1][1] == c:
                if v is not None:
                    merged[-1][2] += v
            else:
                merged.append([r, c, v])
        entries = merged
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    for r, _, _ in entries:
        indptr[r + 1] += 1
    return (np.cumsum(indptr), np.array([c for _, c, _ in entries], dtype=np.int64),
            None if vals is None else np.array([v for _, _, v in entries], dtype=vals.dtype))


def check_from_coo(case, backends):
    row, col, vals, shape, sum_dup = case
    indptr, indices, values = brute_from_coo(row, col, vals, shape, sum_dup)
    for b in backends:
        A = CSR.from_coo(row, col, vals, shape=shape, sum_duplicates=sum_dup, backend=b)
        what = f"from_coo[{b}] shape={shape} sum_duplicates={sum_dup}"
        assert A.shape == shape, what
        assert_same(A.indptr, indptr, what + " indptr")
        assert A.indices.dtype == row.dtype, what + " index dtype kept"
        np.testing.assert_array_equal(A.indices, indices, err_msg=what + " indices")
        if vals is None:
            assert A.values is None, what
        else:
            assert_same(A.values, values, what + " values")


def native_key_bits(n_rows, n_cols):
    """Bits of native from_coo's packed sort key: row-within-block bits (at most
    512 row blocks) + ceil(log2(n_cols)) (csrc/cpu/csr.cpp)."""
    shift = 0
    while (n_rows >> shift) > 512:
        shift += 1
    return shift + (int(n_cols) - 1).bit_length() if n_cols > 1 else shift


@budget(60)
@given(case=coo_cases())
@example(case=(np.array([4095]), np.array([0]), None, (4096, 2**60), True))  # 64 bits: fits
def test_from_coo_matches_brute_force(case):
    _, _, _, shape, _ = case
    check_from_coo(case, BACKENDS)


@pytest.mark.parametrize("shape", [(4096, 2**62), (5000, 2**61 + 1)])
def test_from_coo_64bit_keys(shape):
    """issue 13 item 2 (entries landed in the wrong row past 64 key bits)."""
    assert native_key_bits(*shape) > 64
    row = np.array([0, shape[0] - 1, shape[0] // 2], np.int64)
    col = np.array([shape[1] - 1, 0, 12345], np.int64)
    check_from_coo((row, col, np.array([1.0, 2.0, 3.0]), shape, True), ["native"])


@budget(40)
@given(g=graphs(huge=30))
def test_transpose_matches_brute_force(g):
    A, _ = g
    rows = A.row_ids()
    order = sorted(range(A.nnz), key=lambda e: (int(A.indices[e]), e))  # stable by column
    t_indptr = np.concatenate([[0], np.cumsum(np.bincount(A.indices.astype(np.int64),
                                                          minlength=A.n_cols))]).astype(np.int64)
    t_indices = rows[order].astype(A.indices.dtype)
    perm = np.array(order, dtype=np.int64)
    for b in BACKENDS:
        ti, tx, tp = BE[b].csr_transpose(A.indptr, A.indices, A.n_cols)
        what = f"csr_transpose[{b}] shape={A.shape}"
        np.testing.assert_array_equal(ti, t_indptr, err_msg=what + " indptr")
        assert_same(np.asarray(tx), t_indices, what + " indices")
        np.testing.assert_array_equal(tp, perm, err_msg=what + " perm")
    T = A.T  # the cached public transpose (auto backend)
    assert T.shape == (A.n_cols, A.n_rows) and T.T is A
    np.testing.assert_array_equal(dense_of(T), dense_of(A).T)
    if A.values is not None:
        assert_same(T.values, A.values[perm], "A.T.values")


def brute_normalize(A, kind):
    D = dense_of(A)  # weighted, duplicates summed
    w = A.values.astype(np.float64) if A.values is not None else np.ones(A.nnz)
    rdeg = np.zeros(A.n_rows)
    np.add.at(rdeg, A.row_ids(), w)
    cdeg = np.zeros(A.n_cols)
    np.add.at(cdeg, A.indices.astype(np.int64), w)
    p = 0.5 if kind == "sym" else 1.0
    rs = np.where(rdeg > 0, 1.0 / np.where(rdeg > 0, rdeg, 1.0) ** p, 0.0)
    cs = np.where(cdeg > 0, 1.0 / np.where(cdeg > 0, cdeg, 1.0) ** p, 0.0)
    if kind == "row":
        cs = np.ones(A.n_cols)
    if kind == "col":
        rs = np.ones(A.n_rows)
    return rs[:, None] * D * cs[None, :]


def check_normalize(A, kind, dtype):
    N = A.normalize(kind, dtype=dtype)
    want = np.dtype(dtype or (A.values.dtype if A.values is not None else np.float32))
    assert N.shape == A.shape and N.values.dtype == want
    np.testing.assert_array_equal(N.indptr, A.indptr)
    np.testing.assert_array_equal(N.indices, A.indices)
    np.testing.assert_allclose(dense_of(N), brute_normalize(A, kind),
                               rtol=1e-6 if want == np.float32 else 1e-13, atol=1e-7)


@budget(40)
@given(g=graphs(huge=20), kind=st.sampled_from(["sym", "row", "col"]),
       dtype=st.sampled_from([None, np.float32, np.float64]))
def test_normalize_matches_brute_force(g, kind, dtype):
    check_normalize(g[0], kind, dtype)


@budget(30)
@given(g=graphs(max_rows=5, max_cols=5, huge=12), kind=st.sampled_from([None, "sym", "row"]))
def test_bipartite_adjacency_matches_brute_force(g, kind):
    R, _ = g
    U, n_items = R.shape
    Araw = np.zeros((U + n_items, U + n_items))
    Araw[:U, U:] = dense_of(R)
    Araw[U:, :U] = dense_of(R).T
    A = hopkit.bipartite_adjacency(R, normalize=kind)
    assert A.shape == (U + n_items, U + n_items)
    if kind is None:
        np.testing.assert_array_equal(dense_of(A), Araw)
    else:
        assert A.values.dtype == np.float32
        np.testing.assert_allclose(dense_of(A), brute_normalize(
            hopkit.bipartite_adjacency(R, normalize=None), kind), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("what", ["sym", "row", "col", "sym-values", "bipartite"])
def test_normalize_zero_nnz(what):
    """issue 13 item 4 (a NumPy casting error on a graph with no nonzeros)."""
    vals = np.zeros(0, np.float64) if what.endswith("values") else None
    A = CSR(np.zeros(3, np.int64), np.zeros(0, np.int64), vals, shape=(2, 3))
    if what == "bipartite":
        B = hopkit.bipartite_adjacency(A)
        assert B.shape == (5, 5) and B.nnz == 0
    else:
        check_normalize(A, what.split("-")[0], None)


# ---------------------------------------------------------------- evaluate
def brute_metrics(S, train_rows, test_rows, users, ks):
    """Per-user loops over the definitions in docs/topk.md."""
    per = {f"{m}@{k}": [] for k in ks for m in ("recall", "ndcg", "precision", "hit_rate",
                                                 "map")}
    kept = []
    for u in users:
        T = set(test_rows[u].tolist())
        if not T:
            continue
        kept.append(u)
        s = S[u].copy()
        ok = [j for j in range(S.shape[1]) if j not in set(train_rows[u].tolist())
              and not math.isnan(s[j]) and s[j] > -math.inf]
        ranked = sorted(ok, key=lambda j: (-s[j], j))
        for k in ks:
            hit = [1.0 if j in T else 0.0 for j in ranked[:k]] + [0.0] * max(0, k - len(ranked))
            nh = sum(hit)
            ideal = min(k, len(T))
            dcg = sum(h / math.log2(i + 2) for i, h in enumerate(hit))
            idcg = sum(1 / math.log2(i + 2) for i in range(ideal))
            ap = sum(h * sum(hit[:i + 1]) / (i + 1) for i, h in enumerate(hit))
            per[f"recall@{k}"].append(nh / len(T))
            per[f"ndcg@{k}"].append(dcg / idcg)
            per[f"precision@{k}"].append(nh / k)
            per[f"hit_rate@{k}"].append(float(nh > 0))
            per[f"map@{k}"].append(ap / ideal)
    return np.array(kept, dtype=np.int64), {n: np.array(v) for n, v in per.items()}


@budget(30)
@given(data=st.data(), dtype=DTYPES, n_users=st.integers(0, 6), n_items=st.integers(1, 9),
       d=st.integers(1, 3), ks=st.lists(st.integers(1, 11), min_size=1, max_size=3, unique=True),
       use_score_fn=st.booleans(), batch_size=st.sampled_from([None, 1, 2]))
def test_evaluate_matches_brute_force(data, dtype, n_users, n_items, d, ks, use_score_fn,
                                      batch_size):
    Ue = int_floats(data.draw, dtype, (n_users, d), -2, 2)
    Ie = inject(data.draw, int_floats(data.draw, dtype, (n_items, d), -2, 2), specials=(NAN,))
    train = data.draw(id_csr(n_users, n_items))
    test = data.draw(id_csr(n_users, n_items, max_deg=4))
    users = None
    if n_users and data.draw(st.booleans()):
        users = np.array(data.draw(st.lists(st.integers(0, n_users - 1), max_size=5)),
                         dtype=np.int64)
    with np.errstate(invalid="ignore"):
        S = (Ue.astype(np.float64)[:, None, :] * Ie.astype(np.float64)[None, :, :]).sum(axis=2)
    u_all = np.arange(n_users) if users is None else users
    kept, per_ref = brute_metrics(S, rows_of(train), rows_of(test), u_all, ks)
    for b in BACKENDS:
        kw = dict(ks=tuple(ks), users=users, batch_size=batch_size, return_per_user=True,
                  backend=b)
        if use_score_fn:
            means, per = hopkit.evaluate(None, None, train, test,
                                         score_fn=lambda ub: S[ub].astype(dtype), **kw)
        else:
            means, per = hopkit.evaluate(Ue, Ie, train, test, **kw)
        what = f"evaluate[{b}] score_fn={use_score_fn}"
        np.testing.assert_array_equal(per["users"], kept, err_msg=what + " users")
        for name, v in per_ref.items():
            np.testing.assert_allclose(per[name], v, rtol=1e-12, atol=1e-12,
                                       err_msg=f"{what} {name}")
            if len(v):
                assert math.isclose(means[name], float(v.mean()), rel_tol=1e-12,
                                    abs_tol=1e-12), f"{what} mean {name}"
            else:
                assert math.isnan(means[name]), f"{what}: no user, mean {name} must be NaN"
