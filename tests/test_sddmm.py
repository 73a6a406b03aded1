import hopkit
import numpy as np
import pytest
from conftest import BACKENDS, power_law_graph, tol


def dense_sddmm(A, U, V, scale=False):
    out = np.einsum("ef,ef->e", U[A.row_ids()].astype(np.float64),
                    V[A.indices].astype(np.float64))
    return out * A.values if scale else out


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("F", [1, 7, 64])
@pytest.mark.parametrize("scale", [False, True])
def test_sddmm_matches_dense(rng, backend, dtype, index_dtype, F, scale):
    A = power_law_graph(50, 40, 400, rng, index_dtype, values=dtype, empty=(0, 25, 49))
    U = rng.standard_normal((50, F)).astype(dtype)
    V = rng.standard_normal((40, F)).astype(dtype)
    out = hopkit.sddmm(A, U, V, scale=scale, backend=backend)
    assert out.dtype == dtype and out.shape == (A.nnz,)
    np.testing.assert_allclose(out, dense_sddmm(A, U, V, scale), **tol(dtype))


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
def test_sddmm_gradcheck_and_is_spmm_edge_grad(rng, backend):
    torch = pytest.importorskip("torch")
    A = power_law_graph(12, 10, 45, rng, values=np.float64, empty=(0, 5, 11))
    U = torch.tensor(rng.standard_normal((12, 3)), requires_grad=True)
    V = torch.tensor(rng.standard_normal((10, 3)), requires_grad=True)
    for scale in (False, True):
        fn = lambda U, V, s=scale: hopkit.sddmm(A, U, V, scale=s, backend=backend)  # noqa
        assert torch.autograd.gradcheck(fn, (U, V))
    # spmm's edge-weight gradient is the SDDMM of dY and X
    X = V.detach().clone()
    w = torch.tensor(np.array(A.values), requires_grad=True)
    G = U.detach()
    hopkit.spmm(A, X, "sum", w, backend=backend).backward(G)
    torch.testing.assert_close(w.grad, hopkit.sddmm(A, G, X, backend=backend))


def test_sddmm_edge_cases_and_errors(rng):
    A0 = hopkit.CSR([0, 0, 0], [], shape=(2, 3))
    assert hopkit.sddmm(A0, np.ones((2, 4)), np.ones((3, 4))).shape == (0,)
    A = power_law_graph(10, 8, 30, rng)
    U, V = np.ones((10, 4)), np.ones((8, 4))
    with pytest.raises(ValueError, match=r"sddmm: U and V must have the same width, got 4 and 3"):
        hopkit.sddmm(A, U, V[:, :3])
    with pytest.raises(ValueError, match=r"sddmm: V must have 8 rows, got 10"):
        hopkit.sddmm(A, U, np.ones((10, 4)))
    with pytest.raises(ValueError, match="sddmm: scale=True needs A.values"):
        hopkit.sddmm(A, U, V, scale=True)
    with pytest.raises(TypeError, match="sddmm: V must have the same dtype"):
        hopkit.sddmm(A, U, V.astype(np.float32))
