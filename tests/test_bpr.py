"""bpr_loss: every backend against the float64 reference and a plain torch
composite (values and gradients, two tables or one shared table), gradcheck,
thread-count independence, and every error message."""

import hopkit
import numpy as np
import pytest
from conftest import BACKENDS, tol
from hopkit.ops.bpr import sigmoid


def triples(rng, n_users, n_items, B, dtype=np.int64):
    # Zipf-like ids so that hot rows collect many contributions
    def ids(n):
        p = 1.0 / np.arange(1, n + 1) ** 0.9
        return rng.choice(n, size=B, p=p / p.sum()).astype(dtype)
    return ids(n_users), ids(n_items), ids(n_items)


def dense_loss_and_grads(U, V, u, p, n, shared):
    """The loss and its gradients written out densely in float64."""
    U64, V64 = U.astype(np.float64), V.astype(np.float64)
    x = np.einsum("bf,bf->b", U64[u], V64[n] - V64[p])
    c = sigmoid(x) / len(u)
    gU = np.zeros_like(U64)
    gV = gU if shared else np.zeros_like(V64)
    for b in range(len(u)):
        gU[u[b]] += c[b] * (V64[n[b]] - V64[p[b]])
        gV[n[b]] += c[b] * U64[u[b]]
        gV[p[b]] -= c[b] * U64[u[b]]
    return np.logaddexp(0, x).mean(), gU, gV


@pytest.mark.parametrize("backend", BACKENDS + ["numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("F", [1, 13, 64])
@pytest.mark.parametrize("shared", [False, True])
def test_loss_and_grads_match_dense(rng, backend, dtype, index_dtype, F, shared):
    torch = pytest.importorskip("torch")
    nu, ni, B = 40, 55, 300
    U = rng.standard_normal((nu + ni if shared else nu, F)).astype(dtype)
    V = U if shared else rng.standard_normal((ni, F)).astype(dtype)
    u, p, n = triples(rng, nu, ni, B, index_dtype)
    if shared:
        p, n = p + nu, n + nu
    want, gU, gV = dense_loss_and_grads(U, V, u, p, n, shared)
    got = hopkit.bpr_loss(U, V, u, p, n, backend=backend)
    assert isinstance(got, dtype) and np.isclose(got, want, **tol(dtype))
    Ut = torch.from_numpy(U.copy()).requires_grad_(True)
    Vt = Ut if shared else torch.from_numpy(V.copy()).requires_grad_(True)
    loss = hopkit.bpr_loss(Ut, Vt, torch.from_numpy(u), p, n, backend=backend)
    assert loss.dtype == Ut.dtype and loss.shape == ()
    (3.0 * loss).backward()
    np.testing.assert_allclose(Ut.grad.numpy(), 3.0 * gU, **tol(dtype))
    if not shared:
        np.testing.assert_allclose(Vt.grad.numpy(), 3.0 * gV, **tol(dtype))


def test_matches_torch_composite(rng):
    torch = pytest.importorskip("torch")
    U, V = torch.randn(30, 8, dtype=torch.float64), torch.randn(50, 8, dtype=torch.float64)
    u, p, n = (torch.from_numpy(a) for a in triples(rng, 30, 50, 200))
    a = [t.clone().requires_grad_(True) for t in (U, V)]
    b = [t.clone().requires_grad_(True) for t in (U, V)]
    la = hopkit.bpr_loss(a[0], a[1], u, p, n)
    eu, ep, en = b[0][u], b[1][p], b[1][n]
    lb = torch.nn.functional.softplus((eu * en).sum(1) - (eu * ep).sum(1)).mean()
    torch.testing.assert_close(la, lb)
    la.backward()
    lb.backward()
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x.grad, y.grad)


@pytest.mark.parametrize("shared", [False, True])
def test_gradcheck(rng, shared):
    torch = pytest.importorskip("torch")
    U = torch.randn(12, 5, dtype=torch.float64, requires_grad=True)
    V = U if shared else torch.randn(9, 5, dtype=torch.float64, requires_grad=True)
    u, p, n = triples(rng, 12 if shared else 12, 12 if shared else 9, 40)

    def f(U, V):
        return hopkit.bpr_loss(U, U if shared else V, u, p, n)
    assert torch.autograd.gradcheck(f, (U, V), eps=1e-6, atol=1e-8)


@pytest.mark.skipif("native" not in BACKENDS, reason="native extension not built")
def test_native_grads_independent_of_threads(rng):
    torch = pytest.importorskip("torch")
    U = torch.randn(3000, 64)
    V = torch.randn(4000, 64)
    u, p, n = triples(rng, 3000, 4000, 20000)
    grads = []
    old = hopkit.get_num_threads()
    try:
        for t in (1, 2, 3):
            hopkit.set_num_threads(t)
            a, b = U.clone().requires_grad_(True), V.clone().requires_grad_(True)
            hopkit.bpr_loss(a, b, u, p, n, backend="native").backward()
            grads.append((a.grad, b.grad))
    finally:
        hopkit.set_num_threads(old)
    for g in grads[1:]:
        assert torch.equal(g[0], grads[0][0]) and torch.equal(g[1], grads[0][1])
    untouched = np.setdiff1d(np.arange(4000), np.concatenate([p, n]))
    assert len(untouched) and not grads[0][1][untouched].any()
    # the kernel writes touched rows only (the op passes zeroed tables)
    nat = hopkit._backend.native_module()
    Un, Vn = U.numpy(), V.numpy()
    c = rng.standard_normal(len(u)).astype(np.float32)
    dU, dV = np.zeros_like(Un), np.zeros_like(Vn)
    nat.bpr_backward(Un, Vn, 64, u, p, n, False, c, dU, dV)
    dV2 = np.full_like(Vn, 7.0)
    nat.bpr_backward(Un, Vn, 64, u, p, n, False, c, np.zeros_like(Un), dV2)
    assert (dV2[untouched] == 7.0).all()
    touched = np.setdiff1d(np.arange(4000), untouched)
    np.testing.assert_array_equal(dV2[touched], dV[touched])


def test_numpy_in_numpy_out_and_inputs_untouched(rng):
    U = rng.standard_normal((20, 6))[:, ::2]  # non-contiguous
    V = rng.standard_normal((15, 3))
    u, p, n = triples(rng, 20, 15, 50, np.int16)
    keep = [a.copy() for a in (U, V, u, p, n)]
    got = hopkit.bpr_loss(U, V, u, p, n)
    want = dense_loss_and_grads(U, V, u, p, n, False)[0]
    assert isinstance(got, np.float64) and np.isclose(got, want, rtol=1e-12)
    for a, b in zip(keep, (U, V, u, p, n), strict=True):
        np.testing.assert_array_equal(a, b)


def test_errors(rng):
    U = rng.standard_normal((5, 4))
    V = rng.standard_normal((6, 4))
    u, p, n = np.array([0, 4]), np.array([1, 5]), np.array([2, 0])
    cases = [
        ((U, V.astype(np.float32), u, p, n), TypeError,
         "bpr_loss: item_emb must have the same dtype as the features"),
        ((U, V[:, :3], u, p, n), ValueError,
         "bpr_loss: item_emb must have the 4 columns of user_emb, got shape"),
        ((U.astype(np.int64), V, u, p, n), TypeError, "bpr_loss: user_emb must be float32 or"),
        ((U[0], V, u, p, n), ValueError, r"bpr_loss: user_emb must be 2-D, got shape \(4,\)"),
        ((U, V, u + 1, p, n), ValueError,
         r"bpr_loss: users must lie in \[0, 5\) \(rows of user_emb\); users\[1\] = 5"),
        ((U, V, u, p, n - 1), ValueError,
         r"bpr_loss: neg must lie in \[0, 6\) \(rows of item_emb\); neg\[1\] = -1"),
        ((U, V, u, p + 1, n), ValueError, r"bpr_loss: pos must lie in \[0, 6\)"),
        ((U, V, u, p[:1], n), ValueError,
         "bpr_loss: users, pos and neg must have one length, got 2, 1 and 2"),
        ((U, V, u[:0], p[:0], n[:0]), ValueError, "bpr_loss: need at least one triple, got 0"),
        ((U, V, u.astype(float), p, n), TypeError,
         "bpr_loss: users must have an integer dtype, got float64"),
        ((U, V, u[:, None], p, n), ValueError, r"bpr_loss: users must be 1-D, got shape \(2, 1\)"),
        (("x", V, u, p, n), TypeError, "bpr_loss: user_emb must be a NumPy array or torch"),
    ]
    for args, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            hopkit.bpr_loss(*args)
    with pytest.raises(ValueError, match="unknown backend|backend must be"):
        hopkit.bpr_loss(U, V, u, p, n, backend="fortran")
