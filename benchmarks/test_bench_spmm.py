"""pytest-benchmark suite for spmm: python -m pytest benchmarks -m bench
(the side-by-side comparison with peers is `python -m hopkit.bench spmm`)."""

import hopkit
import numpy as np
import pytest


@pytest.mark.parametrize("F", [16, 64, 256])
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_spmm_forward(benchmark, gowalla, F, reduce):
    _, A = gowalla
    X = np.random.default_rng(0).standard_normal((A.n_cols, F)).astype(np.float32)
    Y = benchmark(hopkit.spmm, A, X, reduce)
    if reduce == "sum":
        np.testing.assert_allclose(Y, A.to_scipy() @ X, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("reduce", ["sum", "max"])
def test_spmm_forward_backward(benchmark, gowalla, reduce):
    torch = pytest.importorskip("torch")
    _, A = gowalla
    X = torch.randn(A.n_cols, 64)
    G = torch.randn(A.n_rows, 64)

    def step():
        x = X.detach().requires_grad_(True)
        hopkit.spmm(A, x, reduce).backward(G)
        return x.grad

    benchmark(step)


def test_coo_to_csr(benchmark, gowalla):
    _, A = gowalla
    p = np.random.default_rng(1).permutation(A.nnz)
    r, c, v = A.row_ids()[p], np.asarray(A.indices)[p], np.asarray(A.values)[p]
    B = benchmark(hopkit.CSR.from_coo, r, c, v, A.shape)
    np.testing.assert_array_equal(B.indices, A.indices)
