"""pytest-benchmark suite for topk: python -m pytest benchmarks -m bench
(the side-by-side comparison with peers is `python -m hopkit.bench topk`)."""

import hopkit
import numpy as np
import pytest
from hopkit.bench.topk import split


@pytest.fixture(scope="module")
def eval_data(gowalla):
    R, _ = gowalla
    train, test = split(R)
    rng = np.random.default_rng(0)
    U = (rng.standard_normal((R.shape[0], 64)) / 8).astype(np.float32)
    V = rng.standard_normal((R.shape[1], 64)).astype(np.float32)
    return U, V, train, test


@pytest.mark.parametrize("exclude", [True, False])
def test_topk_all_users(benchmark, eval_data, exclude):
    U, V, train, _ = eval_data
    s, i = benchmark.pedantic(hopkit.topk, (U, V, 20), {"exclude": train if exclude else None},
                              rounds=3, iterations=1)
    ref_s, ref_i = hopkit.topk(U[:32], V, 20, backend="numpy", exclude=hopkit.CSR(
        train.indptr[:33], train.indices[:train.indptr[32]], None, (32, V.shape[0]))
        if exclude else None)
    np.testing.assert_allclose(s[:32], ref_s, rtol=1e-4, atol=1e-4)


def test_evaluate_all_users(benchmark, eval_data):
    U, V, train, test = eval_data
    out = benchmark.pedantic(hopkit.evaluate, (U, V, train, test), {"ks": (20,)}, rounds=3,
                             iterations=1)
    assert 0 <= out["recall@20"] <= 1


@pytest.mark.parametrize("B", [1, 16, 256])
def test_serving_1m_items(benchmark, B):
    rng = np.random.default_rng(0)
    V = rng.standard_normal((1_000_000, 64)).astype(np.float32)
    index = hopkit.ItemIndex(V)
    Q = rng.standard_normal((B, 64)).astype(np.float32)
    s, i = benchmark(hopkit.topk, Q, index, 10)
    np.testing.assert_allclose(s[0], np.sort(V @ Q[0])[::-1][:10], rtol=1e-4)
