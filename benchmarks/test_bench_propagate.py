"""pytest-benchmark suite for propagate and attention_aggregate:
python -m pytest benchmarks -m bench (the side-by-side comparison with peers
is `python -m hopkit.bench propagate`)."""

import hopkit
import numpy as np
import pytest


@pytest.mark.parametrize("layers", [1, 3])
def test_propagate_forward(benchmark, gowalla, layers):
    _, A = gowalla
    X = np.random.default_rng(0).standard_normal((A.n_cols, 64)).astype(np.float32)
    Y = benchmark(hopkit.propagate, A, X, layers)
    S = A.to_scipy()
    h, acc = X.astype(np.float64), X.astype(np.float64)
    for _ in range(layers):
        h = S @ h
        acc += h
    np.testing.assert_allclose(Y, acc / (layers + 1), rtol=1e-4, atol=1e-5)


def test_propagate_forward_backward(benchmark, gowalla):
    torch = pytest.importorskip("torch")
    _, A = gowalla
    X = torch.randn(A.n_cols, 64)
    G = torch.randn(A.n_rows, 64)

    def step():
        x = X.detach().requires_grad_(True)
        hopkit.propagate(A, x, 3).backward(G)
        return x.grad

    dX = benchmark(step)
    torch.testing.assert_close(dX, hopkit.propagate(A.T, G, 3))


@pytest.mark.parametrize("heads", [1, 4])
def test_attention_forward_backward(benchmark, gowalla, heads):
    torch = pytest.importorskip("torch")
    _, A = gowalla
    Q, K, V = (torch.randn(A.n_rows, 64) for _ in range(3))
    G = torch.randn(A.n_rows, 64)

    def step():
        q, k, v = (t.detach().requires_grad_(True) for t in (Q, K, V))
        hopkit.attention_aggregate(A, q, k, v, heads).backward(G)
        return q.grad

    dQ = benchmark(step)
    assert torch.isfinite(dQ).all()
