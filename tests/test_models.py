"""Recommenders: LightGCN beats popularity after a few epochs on a small
synthetic graph, GraphFilter too (and on LastFM when the data is there),
recommend / save / load round trips and their errors."""

import os

import hopkit
import numpy as np
import pytest
from conftest import SHARED
from hopkit.data import load, split_random, synthetic
from hopkit.models import GraphFilter, LightGCN, ModelError, Popularity, load_model

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def small():
    return split_random(synthetic(1500, 800, 30000, seed=2), 0.2, seed=0)


@pytest.fixture(scope="module")
def trained(small):
    m = LightGCN(dim=32, layers=3, lr=1e-2, batch_size=2048, seed=0)
    return m.fit(small, epochs=6, eval_every=3, progress=False, test=small.test)


def test_lightgcn_beats_popularity(small, trained):
    pop = Popularity().fit(small).evaluate(small.test)["recall@20"]
    lg = trained.evaluate(small.test)
    assert lg["recall@20"] > 1.5 * pop, (lg, pop)
    assert [h["epoch"] for h in trained.history] == list(range(1, 7))
    assert trained.history[-1]["loss"] < trained.history[0]["loss"]
    assert "test_recall@20" in trained.history[2]
    for phase in ("sampling", "propagation forward", "backward", "top-K evaluation"):
        assert trained.timer.count[phase] > 0


def test_lightgcn_reproducible(small):
    a = LightGCN(dim=8, batch_size=4096, seed=3).fit(small, epochs=1, progress=False)
    b = LightGCN(dim=8, batch_size=4096, seed=3).fit(small, epochs=1, progress=False)
    # equal up to the rounding of torch's threaded gradient accumulation for gathered rows
    np.testing.assert_allclose(a.embeddings()[0], b.embeddings()[0], rtol=0, atol=1e-6)
    c = LightGCN(dim=8, batch_size=4096, seed=4).fit(small, epochs=1, progress=False)
    assert np.abs(a.embeddings()[0] - c.embeddings()[0]).max() > 1e-3


def test_lightgcn_user_sampling(small, tmp_path):
    pop = Popularity().fit(small).evaluate(small.test)["recall@20"]
    m = LightGCN(dim=32, lr=1e-2, batch_size=2048, sampling="users", seed=0)
    m.fit(small, epochs=6, progress=False)
    assert m.evaluate(small.test)["recall@20"] > 1.5 * pop
    m.lr = 1e-3  # a schedule: the next fit call runs the same Adam state at the new rate
    state = m._opt.state_dict()["state"][0]["step"].item()
    m.fit(small, epochs=1, progress=False)
    assert m._opt.param_groups[0]["lr"] == 1e-3
    assert m._opt.state_dict()["state"][0]["step"].item() > state
    m.save(tmp_path / "m")
    assert load_model(tmp_path / "m").sampling == "users"
    with pytest.raises(ValueError, match="LightGCN: sampling must be one of"):
        LightGCN(sampling="items")


def test_lightgcn_ema(small, tmp_path):
    pop = Popularity().fit(small).evaluate(small.test)["recall@20"]
    m = LightGCN(dim=32, lr=1e-2, batch_size=2048, ema=0.9, seed=0).fit(small, epochs=3,
                                                                         progress=False)
    steps = m._avg_steps
    assert steps == 3 * -(-small.train.nnz // 2048)
    raw = hopkit.propagate(m._graph(), m._E0.detach(), 3).numpy()[: m.n_users]
    U, _ = m.embeddings()  # from the average: close to the raw weights, not equal
    assert 0 < np.abs(U - raw).max() < np.abs(raw).max()
    assert m.evaluate(small.test)["recall@20"] > 1.5 * pop
    m.save(tmp_path / "m")
    m2 = load_model(tmp_path / "m")
    assert m2.ema == 0.9 and m2._avg_steps == steps
    np.testing.assert_array_equal(m2._E0_avg.numpy(), m._E0_avg.numpy())
    m2.fit(small, epochs=1, progress=False)  # resumes the average
    assert m2._avg_steps > steps
    for bad in (1.0, -0.5):
        with pytest.raises(ValueError, match="LightGCN: ema must be 0 \\(off\\) or a decay"):
            LightGCN(ema=bad)


def test_batch_l2_counts_repeated_rows():
    from hopkit.models.lightgcn import batch_l2

    E0 = torch.randn(30, 4, dtype=torch.float32, requires_grad=True)
    ids = [np.array([3, 3, 7]), np.array([7, 0, 29]), np.array([3, 11, 11])]
    want = 0.5 * E0[np.concatenate(ids)].pow(2).sum()
    got = batch_l2(E0, *ids)
    torch.testing.assert_close(got, want)
    (g,) = torch.autograd.grad(got, E0)
    (h,) = torch.autograd.grad(want, E0)
    torch.testing.assert_close(g, h)


def test_lightgcn_init_std(small, tmp_path):
    m = LightGCN(dim=16, batch_size=4096, init_std=0.01, seed=0).fit(small, epochs=0,
                                                                      progress=False)
    assert 0.009 < float(m._E0.detach().std()) < 0.011
    m.save(tmp_path / "m")
    assert load_model(tmp_path / "m").init_std == 0.01
    for bad in (0.0, -0.1):
        with pytest.raises(ValueError, match="LightGCN: need lr > 0, reg >= 0 and init_std > 0"):
            LightGCN(init_std=bad)


def test_graph_filter_beats_popularity(small):
    pop = Popularity().fit(small).evaluate(small.test)["recall@20"]
    gf = GraphFilter(k=64).fit(small)
    r = gf.evaluate(small.test)["recall@20"]
    assert r > 1.5 * pop
    lin = GraphFilter(alpha=0.0).fit(small).evaluate(small.test)["recall@20"]
    assert lin > 1.5 * pop
    ideal = GraphFilter(k=64, linear=False).fit(small)
    assert ideal.embeddings() is not None and ideal.evaluate(small.test)["recall@20"] > pop


def test_graph_filter_scores_match_dense_formula():
    tiny = split_random(synthetic(300, 200, 4000, seed=5), 0.2, seed=0)
    gf = GraphFilter(k=16, alpha=0.3).fit(tiny)
    R = tiny.train.to_scipy().toarray().astype(np.float64)
    du, di = R.sum(1), R.sum(0)
    iu = np.where(du > 0, du, 1) ** -0.5 * (du > 0)
    ii = np.where(di > 0, di, 1) ** -0.5 * (di > 0)
    Rn = iu[:, None] * R * ii[None, :]
    users = np.array([0, 5, 17])
    lin = R[users] @ Rn.T @ Rn
    ideal = R[users] @ (gf.left.astype(np.float64) @ gf.right.T.astype(np.float64))
    np.testing.assert_allclose(gf.score_block(users), lin + 0.3 * ideal, rtol=1e-3, atol=1e-4)
    # the SVD's subspace is the top of R~'s spectrum: V^T V = I, R~ V captures the top values
    V = gf.left / np.where(ii > 0, ii, 1)[:, None]
    s_true = np.linalg.svd(Rn, compute_uv=False)[:16]
    s_got = np.linalg.norm(Rn @ V, axis=0)
    np.testing.assert_allclose(np.sort(s_got)[::-1], s_true, rtol=2e-2)


def test_graph_filter_small_batches_gather_the_touched_users():
    """A serving-sized batch sums R~ X over the users of its items only (a
    gathered, transposed slice); a large batch passes over all of R~: both
    give the dense formula, and each user's row is the same either way."""
    ds = split_random(synthetic(2000, 3000, 20000, seed=3), 0.2, seed=0)
    gf = GraphFilter(k=8, alpha=0.3).fit(ds)
    R = ds.train.to_scipy().toarray().astype(np.float64)
    du, di = R.sum(1), R.sum(0)
    Rn = (np.where(du > 0, du, 1) ** -0.5 * (du > 0))[:, None] * R * \
        (np.where(di > 0, di, 1) ** -0.5 * (di > 0))[None, :]
    ref = R @ Rn.T @ Rn + 0.3 * R @ (gf.left.astype(np.float64) @ gf.right.T.astype(np.float64))
    rows = ds.train
    everyone = gf.score_rows(rows)  # the pass over all of R~
    assert 4 * gf._RnT.select_rows(np.unique(rows.indices)).nnz >= gf._Rn.nnz
    rng = np.random.default_rng(0)
    for users in ([7], [3, 1500], list(rng.choice(2000, 5, replace=False))):
        sub = rows.select_rows(users)
        assert 4 * gf._RnT.select_rows(np.unique(sub.indices)).nnz < gf._Rn.nnz  # gathered
        got = gf.score_rows(sub)
        np.testing.assert_allclose(got, everyone[users], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(got, ref[users], rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "data", "lastfm")),
                    reason="LastFM data not present")
def test_graph_filter_lastfm():
    ds = load(os.path.join(SHARED, "data", "lastfm"))
    pop = Popularity().fit(ds).evaluate(ds.test)
    gf = GraphFilter().fit(ds).evaluate(ds.test)
    assert gf["recall@20"] > 1.5 * pop["recall@20"] and gf["ndcg@20"] > pop["ndcg@20"]


def test_recommend_and_save_load(tmp_path, small, trained):
    items, scores = trained.recommend([0, 3], k=10)
    assert items.shape == (2, 10) and (np.diff(scores, axis=1) <= 0).all()
    seen = set(small.train.indices[small.train.indptr[0]:small.train.indptr[1]].tolist())
    assert not seen & set(items[0].tolist())
    items_all, _ = trained.recommend([0], k=10, exclude_seen=False)
    assert items_all.shape == (1, 10)
    trained.save(tmp_path / "m")
    m2 = load_model(tmp_path / "m")
    assert isinstance(m2, LightGCN) and m2.epoch == 6
    np.testing.assert_array_equal(m2.recommend([0, 3], k=10)[0], items)
    gf = GraphFilter(k=16).fit(small)
    gf.save(tmp_path / "g")
    g2 = load_model(tmp_path / "g")
    np.testing.assert_array_equal(g2.recommend([1], k=5)[0], gf.recommend([1], k=5)[0])
    with pytest.raises(ValueError, match=r"recommend: k must be an integer in \[1, 800\]"):
        trained.recommend([0], k=801)
    with pytest.raises(KeyError, match="unknown user"):
        trained.recommend([1500], k=5)


def test_original_ids(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("user,item\n" + "\n".join(f"u{u},i{(u * 7 + j) % 13}" for u in range(20)
                                             for j in range(4)) + "\n")
    ds = load(str(p))
    m = Popularity().fit(ds)
    items, _ = m.recommend(["u3"], k=3, original_ids=True)
    assert all(str(x).startswith("i") for x in items[0])
    with pytest.raises(KeyError, match="unknown user"):
        m.recommend(["nobody"], k=3, original_ids=True)


def test_model_dir_errors(tmp_path, small):
    with pytest.raises(ModelError, match="model directory not found"):
        load_model(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="model.json is missing"):
        load_model(tmp_path / "empty")
    Popularity().fit(small).save(tmp_path / "p")
    cfg = tmp_path / "p" / "model.json"
    cfg.write_text(cfg.read_text().replace('"format_version": 1', '"format_version": 99'))
    with pytest.raises(ModelError, match="format version 99 is not supported"):
        load_model(tmp_path / "p")
    (tmp_path / "p" / "model.npz").unlink()
    with pytest.raises(ModelError, match="model.npz is missing"):
        load_model(tmp_path / "p")


def test_early_stopping_and_checkpoint(tmp_path, small):
    m = LightGCN(dim=8, lr=1e-2, batch_size=4096, seed=0)
    m.fit(small, epochs=4, valid=0.1, eval_every=1, patience=1, progress=False,
          checkpoint=str(tmp_path / "ck"))
    assert any("valid_recall@20" in h for h in m.history)
    ck = load_model(tmp_path / "ck")
    assert isinstance(ck, LightGCN) and ck.epoch >= 1


# ---------------------------------------------------------------------------- tampered dirs
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One small saved model directory per kind."""
    ds = split_random(synthetic(60, 30, 500, seed=5), 0.2, seed=0)
    root = tmp_path_factory.mktemp("saved")
    models = {"gf": GraphFilter(k=4), "pop": Popularity(),
              "lgcn": LightGCN(dim=4, batch_size=256, ema=0.9)}
    for name, m in models.items():
        (m.fit(ds, epochs=1, progress=False) if name == "lgcn" else m.fit(ds)).save(root / name)
    return root


def tampered(saved, tmp_path, kind, arrays=None, meta=None):
    import json
    import shutil

    d = tmp_path / kind
    shutil.copytree(saved / kind, d)
    if arrays is not None:
        z = dict(np.load(d / "model.npz"))
        arrays(z)
        np.savez(d / "model.npz", **z)
    if meta is not None:
        m = json.loads((d / "model.json").read_text())
        meta(m)
        (d / "model.json").write_text(json.dumps(m))
    return d


def _set(key, value):
    def f(d):
        d[key] = value(d) if callable(value) else value
    return f


def _config(key, value):
    def f(m):
        m["config"][key] = value
    return f


def _pop(key):
    return lambda d: d.pop(key)


def _unsorted_row(z):
    ip, ix = z["train_indptr"], z["train_indices"].copy()
    r = int(np.flatnonzero(np.diff(ip) >= 2)[0])
    ix[ip[r]], ix[ip[r] + 1] = ix[ip[r] + 1], ix[ip[r]]
    z["train_indices"] = ix


@pytest.mark.parametrize("kind, arrays, match", [
    ("gf", _pop("left"), r"model.npz: lacks array 'left'"),
    ("gf", _pop("right"), r"model.npz: lacks array 'right'"),
    ("gf", _set("left", lambda z: z["left"][:-1]), r"model.npz: array 'left' has shape \(29, "),
    ("gf", _set("right", lambda z: z["right"][:, :2]), r"array 'right' has shape \(30, 2\), "
                                                        r"expected \(30, 4\)"),
    ("gf", _set("left", lambda z: z["left"].astype(np.float64)), r"'left' has dtype float64"),
    ("gf", _set("extra", np.zeros(3)), r"model.npz: unexpected array 'extra'"),
    ("pop", _set("item_score", lambda z: z["item_score"][:-2]), r"'item_score' has shape \(28,"),
    ("pop", _pop("item_score"), r"lacks array 'item_score'"),
    ("pop", _set("item_score", lambda z: z["item_score"][:, None]), r"'item_score' has shape"),
    ("lgcn", _set("item_emb", lambda z: np.vstack([z["item_emb"]] * 2)), r"'item_emb' has shape"),
    ("lgcn", _set("user_emb", lambda z: z["user_emb"][:, :3]), r"'user_emb' has shape \(60, 3\)"),
    ("lgcn", _pop("embedding0"), r"lacks array 'embedding0'"),
    ("lgcn", _set("embedding0_avg", lambda z: z["embedding0"][:5]), r"'embedding0_avg' has shape"),
    ("lgcn", _set("item_emb", lambda z: z["item_emb"].astype(np.int32)), r"has dtype int32"),
    ("pop", _set("train_indptr", lambda z: z["train_indptr"][:-1]), r"'train_indptr' has shape"),
    ("pop", _set("train_indptr", lambda z: z["train_indptr"].astype(float)), r"dtype float64"),
    ("pop", _set("train_indices", lambda z: z["train_indices"] + 30), r"model.npz: the training "
                                                                       r"matrix .*\[0, 30\)"),
    ("pop", _unsorted_row, r"model.npz: the training matrix .* increasing"),
])
def test_tampered_arrays_are_model_errors(saved, tmp_path, kind, arrays, match):
    with pytest.raises(ModelError, match=match):
        load_model(tampered(saved, tmp_path, kind, arrays=arrays))


@pytest.mark.parametrize("kind, meta, match", [
    ("pop", lambda m: m.update(n_items=31, item_ids={"range": 31}),
     r"model.npz: array 'item_score' has shape \(30,\), expected \(31,\)"),
    ("pop", _set("user_ids", {"int": list(range(59))}), r"model.json: user_ids has 59 ids, "
                                                        r"expected 60 \(n_users\)"),
    ("pop", _set("item_ids", {"range": 29}), r"item_ids has 29 ids, expected 30"),
    ("pop", _set("item_ids", {"str": ["a"] * 30}), r"item_ids has a repeated id 'a'"),
    ("pop", _set("item_ids", {"int": [0.5] * 30}), r"item_ids: .*'int' must be a list of "
                                                   r"integers"),
    ("pop", _set("user_ids", {"range": 10**15}), r"user_ids has 1000000000000000 ids"),
    ("pop", _set("user_ids", [1, 2]), r"model.json: user_ids must be"),
    ("pop", _set("model", ["popularity"]), r"model.json: 'model' must be a string"),
    ("pop", _set("n_users", "60"), r"model.json: 'n_users' must be an integer >= 0, got '60'"),
    ("pop", _set("n_users", True), r"'n_users' must be an integer"),
    ("pop", _set("config", []), r"model.json: 'config' must be an object"),
    ("pop", _set("format_version", True), r"format version True is not supported"),
    ("pop", _config("nope", 1), r"model.json: invalid popularity config .*nope"),
    ("gf", _config("alpha", "x"), r"model.json: invalid graph-filter config"),
    ("gf", _config("k", -5), r"model.json: invalid graph-filter config .*k must be an integer"),
    ("lgcn", _config("history", 5), r"model.json: invalid lightgcn config .*history"),
    ("lgcn", _config("epoch", "x"), r"invalid lightgcn config .*epoch"),
    ("lgcn", _config("dim", 5), r"model.npz: array 'embedding0' has shape \(90, 4\), expected "
                                r"\(90, 5\)"),
    ("lgcn", _config("ema", 0.0), r"model.npz: unexpected array 'embedding0_avg'"),
])
def test_tampered_config_is_a_model_error(saved, tmp_path, kind, meta, match):
    with pytest.raises(ModelError, match=match):
        load_model(tampered(saved, tmp_path, kind, meta=meta))


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04", "half"])
def test_truncated_npz_is_a_model_error(saved, tmp_path, content):
    d = tampered(saved, tmp_path, "gf")
    npz = d / "model.npz"
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2] if content == "half" else content)
    with pytest.raises(ModelError, match=r"model.npz: unreadable model arrays"):
        load_model(d)


@pytest.mark.parametrize("content, match", [
    (b'{"format": "hopkit-model", "model": "Zo\xeb"}', r"model.json: unreadable model config"),
    (b"[" * 100000 + b"]" * 100000, r"model.json: unreadable model config .*nested"),
], ids=["bad-utf8", "deep-nesting"])
def test_broken_model_json_is_a_model_error(saved, tmp_path, content, match):
    d = tampered(saved, tmp_path, "pop")
    (d / "model.json").write_bytes(content)
    with pytest.raises(ModelError, match=match):
        load_model(d)


def test_untampered_dirs_load(saved):
    for kind in ("gf", "pop", "lgcn"):
        m = load_model(saved / kind)
        assert m.recommend([0], k=3)[0].shape == (1, 3)
