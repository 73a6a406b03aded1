"""The training-free filter family (Turbo-CF, BSPM, ChebyCF, ItemKNN, EASE^R):
scores against dense NumPy references of each formula, save/load, the CLI,
EASE's item limit, hyperparameter errors, and a smoke run on Yelp2018 when
../shared holds it."""

import os
import tracemalloc

import hopkit
import numpy as np
import pytest
from conftest import SHARED
from hopkit.cli import main
from hopkit.models import BSPM, EASE, MODELS, ChebyCF, ItemKNN, ModelError, TurboCF, load_model
from hopkit.models import filters as F
from numpy.polynomial import chebyshev


@pytest.fixture(scope="module")
def R():
    """A small power-law graph with an empty user row and an item nobody has."""
    Rs = hopkit.data.synthetic(70, 45, 700, seed=3).to_scipy().tolil()
    Rs[5, :] = 0
    Rs[:, 7] = 0
    return hopkit.CSR.from_scipy(Rs.tocsr())


def dense(R):
    return R.to_scipy().toarray().astype(np.float64) > 0


def normalised(Rd, a, b):
    """D_u^-a R D_i^-b, zero-degree rows/columns stay zero."""
    du, di = Rd.sum(1), Rd.sum(0)
    fu = np.where(du > 0, np.maximum(du, 1) ** -a, 0)
    fi = np.where(di > 0, np.maximum(di, 1) ** -b, 0)
    return fu[:, None] * Rd * fi[None, :]


def scores(model, R):
    return model.score_block(np.arange(R.shape[0]))


def close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


# ---------------------------------------------------------------- dense references
@pytest.mark.parametrize("alpha, filt", [(0.6, 2), (0.5, 1), (0.3, 3), (0.0, 2), (1.0, 1)])
def test_turbo_cf_matches_dense(R, alpha, filt):
    Rd = dense(R)
    Rn = normalised(Rd, alpha, 1 - alpha)
    P = Rn.T @ Rn
    f = {1: P, 2: 2 * P - P @ P, 3: P + 0.01 * (-P @ P @ P + 10 * P @ P - 29 * P)}[filt]
    close(scores(TurboCF(alpha=alpha, filter=filt, batch_size=16).fit(R), R), Rd @ f)


def taylor_step(A, h, solver):
    """One fixed step of dy/dt = y A from the step's polynomial in h A."""
    n = len(A)
    if solver == "euler":
        return np.eye(n) + h * A
    M, term = np.eye(n), np.eye(n)
    for k in range(1, 5):
        term = term @ (h * A) / k
        M = M + term
    return M


@pytest.mark.parametrize("cfg", [
    {},
    {"merge": "late"},
    {"point_combination": False, "sharpen_solver": "rk4", "sharpen_steps": 2},
    {"merge": "late", "blur_time": 1.5, "blur_steps": 3, "blur_solver": "rk4",
     "sharpen_time": 2.5, "point_combination": True},
    {"beta": 0.0, "sharpen_time": 0.7},
])
def test_bspm_matches_dense(R, cfg):
    m = BSPM(k=12, batch_size=32, **cfg).fit(R)
    c = m._config()
    Rd = dense(R)
    Rn = normalised(Rd, 0.5, 0.5)
    P = Rn.T @ Rn
    n = len(P)
    x = Rd.astype(np.float64)
    blur = taylor_step(P - np.eye(n), c["blur_time"] / c["blur_steps"], c["blur_solver"])
    sharp = taylor_step(-P, c["sharpen_time"] / c["sharpen_steps"], c["sharpen_solver"])
    states = []
    y = x
    for _ in range(c["blur_steps"]):
        y = y @ blur
        states.append(y)
    ideal = c["beta"] * x @ m.left.astype(np.float64) @ m.right.T.astype(np.float64) \
        if c["beta"] else 0 * x
    y = y + ideal if c["merge"] == "early" else y
    for _ in range(c["sharpen_steps"]):
        y = y @ sharp
        states.append(y)
    want = np.mean(states, axis=0) if c["point_combination"] else y
    if c["merge"] == "late":
        want = want + ideal
    close(scores(m, R), want)
    if c["beta"]:  # GF-CF's ideal factors: D^-1/2 V and D^1/2 V with orthonormal V
        d = Rd.sum(0)
        V = m.left / np.where(d > 0, d, 1)[:, None] ** -0.5
        np.testing.assert_allclose(V.T @ V, np.eye(V.shape[1]), atol=1e-4)
        np.testing.assert_allclose(m.right, V * np.sqrt(d)[:, None], rtol=1e-5, atol=1e-6)


def test_chebycf_coefficients_interpolate_the_plateau():
    for K, phi in ((8, 1.5), (3, 1.0), (5, 10.0)):
        c = F.chebycf_coefficients(K, phi)
        j = np.arange(K + 1)
        x = np.round(np.cos((K - j) / K * np.pi), 3)
        h = np.round(np.where(x < 0, 0.5 + 0.5 * np.abs(x) ** phi, 0.5 - 0.5 * np.abs(x) ** phi),
                     3)
        nodes = np.cos((K + 0.5 - j) / (K + 1) * np.pi)  # roots of T_{K+1}, ascending
        np.testing.assert_allclose(chebyshev.chebval(nodes, c), h, atol=1e-12)
        assert h[0] == 1.0 and h[-1] == 0.0  # pass at the lowest frequency, stop at the highest


@pytest.mark.parametrize("cfg", [{}, {"beta": 0.0, "order": 3}, {"alpha": 0.0, "flatness": 4.0},
                                 {"eta": 0, "order": 1}])
def test_chebycf_matches_dense(R, cfg):
    m = ChebyCF(**{"eta": 10, "batch_size": 20, **cfg}).fit(R)
    c = m._config()
    Rd = dense(R)
    Rn = normalised(Rd, 0.5, 0.5)
    L = np.eye(Rd.shape[1]) - 2 * Rn.T @ Rn
    lam, U = np.linalg.eigh(L)
    g = U @ np.diag(chebyshev.chebval(lam, F.chebycf_coefficients(c["order"], c["flatness"]))) \
        @ U.T
    d = Rd.sum(0)
    pre = np.where(d > 0, np.maximum(d, 1) ** -c["beta"], 0)
    post = np.where(d > 0, np.maximum(d, 1) ** c["beta"], 0)
    s = Rd * pre
    want = s @ g
    if m.ideal is not None:
        V = m.ideal.astype(np.float64)
        want = want + c["alpha"] * s @ V @ V.T
    close(scores(m, R), want * post)


@pytest.mark.parametrize("k, shrink", [(5, 0.0), (100, 0.0), (3, 2.5)])
def test_itemknn_matches_dense(R, k, shrink):
    m = ItemKNN(k=k, shrink=shrink, block_size=16, batch_size=25).fit(R)
    Rd = dense(R).astype(np.float32)
    n = Rd.shape[1]
    norm = np.sqrt(Rd.sum(0)).astype(np.float32)
    S = (Rd.T @ Rd) / (norm[:, None] * norm[None, :] + np.float32(shrink + 1e-6))
    np.fill_diagonal(S, 0)
    W = np.zeros((n, n))
    for j in range(n):  # column j: its k most similar items, ties to the smaller index
        top = np.argsort(-S[:, j], kind="stable")[:min(k, n)]
        top = top[S[top, j] != 0]
        W[top, j] = S[top, j]
    close(scores(m, R), Rd.astype(np.float64) @ W)


@pytest.mark.parametrize("reg", [250.0, 3.0])
def test_ease_matches_dense(R, reg):
    Rd = dense(R).astype(np.float64)
    Q = np.linalg.inv(Rd.T @ Rd + reg * np.eye(Rd.shape[1]))
    B = -Q / np.diag(Q)[None, :]
    np.fill_diagonal(B, 0)
    close(scores(EASE(reg=reg, batch_size=30).fit(R), R), Rd @ B)


# ---------------------------------------------------------------- serving and persistence
FAMILY = [lambda: TurboCF(), lambda: BSPM(k=8), lambda: BSPM(k=8, beta=0.0),
          lambda: ChebyCF(eta=8), lambda: ChebyCF(alpha=0.0), lambda: ItemKNN(k=10),
          lambda: EASE(reg=20.0)]


@pytest.mark.parametrize("make", FAMILY)
def test_save_load_round_trip(R, tmp_path, make):
    m = make().fit(R)
    users = np.arange(R.shape[0])
    items, sc = m.recommend(users, k=5)
    seen = dense(R)
    assert not seen[users[:, None], np.maximum(items, 0)][items >= 0].any()
    m.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert type(back) is type(m) and back._config() == m._config()
    np.testing.assert_array_equal(back.score_block(users), m.score_block(users))
    i2, s2 = back.recommend(users, k=5)
    np.testing.assert_array_equal(i2, items)
    ev = m.evaluate(R, ks=(5,))  # train as test: every remaining item is a miss
    assert ev["recall@5"] == 0.0


def test_family_without_torch(R, tmp_path):
    """The models work with torch absent (its in-place and transpose helpers
    and EASE's inverse fall back to NumPy) and give the same scores."""
    import subprocess
    import sys

    np.savez(tmp_path / "r.npz", indptr=R.indptr, indices=R.indices)
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, hopkit\n"
        "from hopkit.models import TurboCF, BSPM, ChebyCF, ItemKNN, EASE\n"
        f"z = np.load({str(tmp_path / 'r.npz')!r})\n"
        f"R = hopkit.CSR(z['indptr'], z['indices'], None, {R.shape})\n"
        "ms = [TurboCF(), BSPM(k=8), ChebyCF(eta=8), ItemKNN(k=10), EASE(reg=20.0)]\n"
        "users = np.arange(R.shape[0])\n"
        f"np.save({str(tmp_path / 's.npy')!r}, "
        "np.stack([m.fit(R).score_block(users) for m in ms]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    got = np.load(tmp_path / "s.npy")
    models = [TurboCF(), BSPM(k=8), ChebyCF(eta=8), ItemKNN(k=10), EASE(reg=20.0)]
    for g, m in zip(got, models, strict=True):
        close(g, m.fit(R).score_block(np.arange(R.shape[0])))


def test_load_rejects_bad_arrays(R, tmp_path):
    m = ItemKNN(k=4).fit(R)
    m.save(tmp_path / "m")
    z = dict(np.load(tmp_path / "m" / "model.npz"))
    z["neighbour_indices"] = z["neighbour_indices"] + 1000
    np.savez(tmp_path / "m" / "model.npz", **z)
    with pytest.raises(ModelError, match="neighbour matrix is invalid"):
        load_model(tmp_path / "m")
    EASE(reg=5.0).fit(R).save(tmp_path / "e")
    z = dict(np.load(tmp_path / "e" / "model.npz"))
    z["B"] = z["B"][:-1]
    np.savez(tmp_path / "e" / "model.npz", **z)
    with pytest.raises(ModelError, match="array 'B' has shape"):
        load_model(tmp_path / "e")


def test_ease_refuses_a_large_catalogue_before_allocating(monkeypatch):
    R = hopkit.data.synthetic(50, 30000, 400, seed=0)
    monkeypatch.setattr(F, "item_gram_block", lambda *a: pytest.fail("allocated the Gram"))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"30000 items exceed max_items=15000") as e:
            EASE().fit(R)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "GiB" in str(e.value) and "ItemKNN" in str(e.value)
    assert peak < 50e6  # the dense form would be 30000^2 x 8 bytes = 7.2 GB
    with pytest.raises(ValueError, match="max_items=10"):
        EASE(max_items=10).fit(hopkit.data.synthetic(20, 11, 50, seed=0))


@pytest.mark.parametrize("cls, kwargs, name", [
    (TurboCF, {"alpha": 1.5}, "alpha"), (TurboCF, {"alpha": float("nan")}, "alpha"),
    (TurboCF, {"filter": 4}, "filter"), (TurboCF, {"batch_size": 0}, "batch_size"),
    (BSPM, {"k": 0}, "k"), (BSPM, {"beta": -1}, "beta"), (BSPM, {"blur_time": 0}, "blur_time"),
    (BSPM, {"sharpen_steps": 1.5}, "sharpen_steps"), (BSPM, {"merge": "middle"}, "merge"),
    (BSPM, {"sharpen_solver": "dopri5"}, "sharpen_solver"),
    (BSPM, {"point_combination": "yes"}, "point_combination"),
    (ChebyCF, {"order": 0}, "order"), (ChebyCF, {"flatness": 0}, "flatness"),
    (ChebyCF, {"eta": -1}, "eta"), (ChebyCF, {"alpha": True}, "alpha"),
    (ItemKNN, {"k": 0}, "k"), (ItemKNN, {"shrink": -1.0}, "shrink"),
    (EASE, {"reg": 0}, "reg"), (EASE, {"max_items": 0}, "max_items"),
])
def test_bad_hyperparameters_name_them(cls, kwargs, name):
    with pytest.raises(ValueError, match=rf"{cls.__name__}: {name} must be"):
        cls(**kwargs)


# ---------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    R = hopkit.data.synthetic(80, 50, 900, seed=5)
    tr, te = [], []
    for u in range(80):
        items = list(R.indices[R.indptr[u]:R.indptr[u + 1]]) or [u % 50]
        tr.append(f"{u} " + " ".join(map(str, items[:-1] or items)))
        te.append(f"{u} {items[-1]}")
    (d / "train.txt").write_text("\n".join(tr) + "\n")
    (d / "test.txt").write_text("\n".join(te) + "\n")
    return str(d)


@pytest.mark.parametrize("name, sets", [("turbo-cf", ["filter=1"]),
                                        ("bspm", ["k=8", "merge=late"]),
                                        ("chebycf", ["eta=8", "order=4"]), ("itemknn", []),
                                        ("ease", ["reg=10.0"])])
def test_cli_train_evaluate_recommend(tmp_path, data_dir, capsys, name, sets):
    out = str(tmp_path / name)
    argv = ["train", "--data", data_dir, "--model", name, "--out", out]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "fitted in" in text and "recall@20=" in text
    m = load_model(out)
    assert isinstance(m, MODELS[name])
    for s in sets:
        k, v = s.split("=")
        assert str(m._config()[k]) == v
    assert main(["evaluate", "--model", out, "--data", data_dir]) == 0
    assert main(["recommend", "--model", out, "--user", "3", "-k", "4"]) == 0
    assert "top-4 for user 3" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--model", "bspm", "--set", "k=0"], "BSPM: k must be an integer >= 1, got 0"),
    (["--model", "bspm", "--set", "kk=3"], "bspm has no hyperparameter 'kk'"),
    (["--model", "turbo-cf", "--set", "alpha"], "argument --set: must be NAME=VALUE"),
    (["--model", "graph-filter", "--set", "k=3"], "--set applies to the models"),
])
def test_cli_bad_settings(tmp_path, data_dir, capsys, argv, message):
    code = main(["train", "--data", data_dir, "--out", str(tmp_path / "o"), *argv]) \
        if "NAME=VALUE" not in message else None
    if code is None:
        with pytest.raises(SystemExit) as e:
            main(["train", "--data", data_dir, "--out", str(tmp_path / "o"), *argv])
        code = e.value.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not os.path.exists(tmp_path / "o")


# ---------------------------------------------------------------- real data
YELP = os.path.join(SHARED, "data", "yelp2018")


@pytest.mark.skipif(not os.path.isfile(os.path.join(YELP, "train.txt")),
                    reason="../shared/data/yelp2018 is not present")
def test_turbo_cf_on_yelp2018_users():
    ds = hopkit.data.load(YELP)
    m = TurboCF(filter=1).fit(ds)
    users = np.arange(1500)
    res = hopkit.evaluate(None, None, ds.train, ds.test, ks=(20,), metrics=("recall",),
                          users=users, batch_size=512, score_fn=m.score_block)
    assert 0.04 < res["recall@20"] < 0.2, res
