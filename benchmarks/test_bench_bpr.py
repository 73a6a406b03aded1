"""pytest-benchmark suite for bpr_loss: python -m pytest benchmarks -m bench
(the side-by-side comparison with torch is `python -m hopkit.bench bpr`)."""

import hopkit
import numpy as np
import pytest
from hopkit.bench.bpr import batch


@pytest.mark.parametrize("B", [8192, 65536])
def test_bpr_loss_forward_backward(benchmark, gowalla, B):
    torch = pytest.importorskip("torch")
    R, _ = gowalla
    E = torch.randn(R.n_rows + R.n_cols, 64) * 0.1
    u, p, n = batch(R, B, np.random.default_rng(0))

    def step():
        x = E.detach().requires_grad_(True)
        hopkit.bpr_loss(x, x, u, p, n).backward()
        return x.grad

    g = benchmark(step)
    x = E.detach().requires_grad_(True)
    eu, ep, en = x[u], x[p], x[n]
    torch.nn.functional.softplus((eu * en).sum(1) - (eu * ep).sum(1)).mean().backward()
    torch.testing.assert_close(g, x.grad, rtol=1e-4, atol=1e-7)
