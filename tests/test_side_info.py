"""Side information and cold-start items: attribute loaders, the augmented
graph, cold items scored through their attributes, the cold-item split."""

import os

import numpy as np
import pytest
from conftest import SHARED
from hopkit.csr import CSR
from hopkit.data import DataError, from_csr, load
from hopkit.data.attributes import (
    evaluate_items,
    load_attribute_csv,
    load_kg,
    load_recbole_features,
    split_cold_items,
)
from hopkit.models import ModelError, TurboCF, load_model
from hopkit.models.side_info import (
    AttributeKNN,
    AttributePopularity,
    RandomScores,
    SideInfoLightGCN,
    SideInfoTurboCF,
    augmented_matrix,
)

ML100K = os.path.join(SHARED, "data", "ml-100k")


def _write(p, text):
    p.write_text(text)
    return str(p)


def _R():
    # 4 users x 5 items; item 4 has no interactions (cold)
    rows = np.array([0, 0, 1, 1, 2, 2, 3])
    cols = np.array([0, 1, 1, 2, 0, 3, 2])
    return CSR.from_coo(rows, cols, None, shape=(4, 5))


def _item_attrs():
    # attrs: a on items 0 and 4, b on items 1, 2
    return CSR.from_coo(np.array([0, 4, 1, 2]), np.array([0, 0, 1, 1]), None, shape=(5, 2))


# ---------------------------------------------------------------- loaders
def test_recbole_item_file_tokens_seq_and_unknown(tmp_path):
    f = _write(tmp_path / "x.item", "item_id:token\tmovie_title:token_seq\tyear:token\t"
               "class:token_seq\n10\tToy Story\t1995\tAnimation Comedy\n20\tHeat\t1995\tAction\n"
               "99\tNobody\t2000\tDrama\n")
    a = load_recbole_features(f, np.array([10, 20, 30]))
    assert a.skipped == {"unknown item": 1}
    assert set(a.names) == {"year=1995", "class=Animation", "class=Comedy", "class=Action"}
    M = a.matrix.to_scipy().toarray()
    names = list(a.names)
    assert M.shape == (3, 4)
    assert M[0, names.index("class=Comedy")] == 1 and M[1, names.index("class=Action")] == 1
    assert M[2].sum() == 0  # item 30 has no attributes
    with pytest.raises(DataError, match=r"x\.item:4: item 99"):
        load_recbole_features(f, np.array([10, 20, 30]), unseen="error")


def test_recbole_user_file_buckets_and_floats(tmp_path):
    f = _write(tmp_path / "x.user", "user_id:token\tage:token\tgender:token\tscore:float\t"
               "zip_code:token\n1\t17\tM\t0.5\t111\n2\t40\tF\t2.5\t222\n3\t60\tF\t9\t333\n")
    a = load_recbole_features(f, np.array([1, 2, 3]), kind="user", buckets={"age": [18, 45]},
                              float_buckets=3)
    names = set(a.names)
    assert {"age=b0", "age=b1", "age=b2", "gender=M", "gender=F"} <= names
    assert not any(n.startswith("zip_code") for n in names)
    assert sum(n.startswith("score=q") for n in names) == 3
    assert a.matrix.row_degree().tolist() == [3, 3, 3]


def test_kg_and_link(tmp_path):
    link = _write(tmp_path / "x.link", "item_id:token\tentity_id:token\n1\tm.a\n2\tm.b\n7\tm.z\n")
    kg = _write(tmp_path / "x.kg", "head_id:token\trelation_id:token\ttail_id:token\n"
                "m.a\tdirector\tm.d\nm.b\tdirector\tm.d\nm.x\tactor\tm.b\n")
    a = load_kg(kg, link, np.array([1, 2, 3]))
    assert a.skipped == {"unknown item": 1}
    assert set(a.names) == {"director=m.d", "~actor=m.x"}
    M = a.matrix.to_scipy().toarray()
    d = list(a.names).index("director=m.d")
    assert M[:, d].tolist() == [1, 1, 0]
    with pytest.raises(DataError, match=r"x\.link:4"):
        load_kg(kg, link, np.array([1, 2, 3]), unseen="error")


def test_attribute_csv(tmp_path):
    f = _write(tmp_path / "a.csv", "id,attribute\nu1,tag1\nu1,tag2\nu2,tag1\nu9,tag3\nu1,tag1\n")
    a = load_attribute_csv(f, np.array(["u1", "u2"]), kind="user")
    assert a.skipped == {"unknown user": 1}
    assert list(a.names) == ["tag1", "tag2"]
    assert a.matrix.row_degree().tolist() == [2, 1]  # the duplicate merged
    with pytest.raises(DataError, match=r"a\.csv:5: user 'u9'"):
        load_attribute_csv(f, np.array(["u1", "u2"]), kind="user", unseen="error")
    with pytest.raises(ValueError, match="unseen"):
        load_attribute_csv(f, np.array(["u1"]), unseen="drop")


# ---------------------------------------------------------------- augmented graph
def test_augmented_matrix_shape_and_weights():
    R = _R()
    UA = CSR.from_coo(np.array([0, 3]), np.array([0, 0]), None, shape=(4, 1))
    M = augmented_matrix(R, _item_attrs(), UA, weight=0.25).to_scipy().toarray()
    assert M.shape == (4 + 2, 5 + 1)
    np.testing.assert_array_equal(M[:4, :5], R.to_scipy().toarray())
    np.testing.assert_array_equal(M[4:, :5], 0.25 * _item_attrs().to_scipy().toarray().T)
    np.testing.assert_array_equal(M[:4, 5], [0.25, 0, 0, 0.25])
    assert (M[4:, 5:] == 0).all()
    with pytest.raises(ValueError, match="rows"):
        augmented_matrix(R, UA)


def test_cold_item_scored_through_attributes():
    R, A = _R(), _item_attrs()
    plain = TurboCF(alpha=0.5, filter=1).fit(R).score_block(np.arange(4))
    assert (plain[:, 4] == 0).all()
    side = SideInfoTurboCF(alpha=0.5, filter=1, weight=0.5).fit(R, item_attributes=A)
    s = side.score_block(np.arange(4))
    assert s.shape == (4, 5)
    assert s[0, 4] > 0 and s[2, 4] > 0  # users 0 and 2 hold item 0, which shares attr a
    # weight 0 is plain Turbo-CF
    z = SideInfoTurboCF(alpha=0.5, filter=1, weight=0.0).fit(R, item_attributes=A)
    np.testing.assert_allclose(z.score_block(np.arange(4)), plain, rtol=1e-5, atol=1e-7)
    knn = AttributeKNN(k=3).fit(R, A).score_block(np.arange(4))
    assert knn[0, 4] > 0
    pop = AttributePopularity().fit(R, A).score_block([0, 1])
    assert pop[0, 4] == pop[1, 4] > 0
    r = RandomScores(3).fit(R, A)
    np.testing.assert_array_equal(r.score_block([1]), r.score_block([0, 1])[1:])


def test_lightgcn_side_info_cold_item():
    pytest.importorskip("torch")
    R, A = _R(), _item_attrs()
    m = SideInfoLightGCN(weight=1.0, dim=8, layers=2, lr=0.05, seed=0)
    m.fit(R, item_attributes=A, epochs=3, progress=False)
    U, V = m.embeddings()
    assert U.shape == (4, 8) and V.shape == (5, 8)
    assert np.abs(m.score_block([0])[0, 4]) > 0
    assert m.evaluate(R, ks=(2,))["recall@2"] >= 0
    items, _ = m.recommend([0], k=2)
    assert items.shape == (1, 2)


# ---------------------------------------------------------------- protocol
def test_cold_split_seeded_disjoint():
    rng = np.random.default_rng(0)
    R = CSR.from_coo(rng.integers(0, 30, 400), rng.integers(0, 50, 400), None, shape=(30, 50),
                     sum_duplicates=True)
    R = CSR(R.indptr, R.indices, None, R.shape)
    a, b = split_cold_items(R, 0.2, seed=1), split_cold_items(R, 0.2, seed=1)
    np.testing.assert_array_equal(a.cold_items, b.cold_items)
    assert not np.array_equal(a.cold_items, split_cold_items(R, 0.2, seed=2).cold_items)
    assert len(a.cold_items) == 10
    assert np.intersect1d(a.cold_items, a.warm_items).size == 0
    assert len(a.cold_items) + len(a.warm_items) == 50
    for M in (a.data.train, a.data.test):
        assert not np.isin(np.asarray(M.indices), a.cold_items).any()
    assert np.isin(np.asarray(a.cold_test.indices), a.cold_items).all()
    full = R.to_scipy().toarray()
    parts = (a.data.train.to_scipy() + a.data.test.to_scipy() + a.cold_test.to_scipy()).toarray()
    np.testing.assert_array_equal(parts, full)  # a partition of R
    res = evaluate_items(lambda u: np.tile(np.arange(50, 0, -1, dtype=np.float32), (len(u), 1)),
                         a.data.train, a.cold_test, a.cold_items, ks=(5,))
    assert 0 <= res["recall@5"] <= 1


def test_ml100k_cold_start_smoke():
    if not os.path.isdir(ML100K):
        pytest.skip("../shared/data/ml-100k is absent")
    ds = load(ML100K)
    it = load_recbole_features(os.path.join(ML100K, "ml-100k.item"), ds.item_ids)
    assert it.skipped == {} and it.matrix.shape[0] == ds.n_items
    sp = split_cold_items(ds, 0.2, seed=0)
    m = SideInfoTurboCF(alpha=0.5, filter=1, weight=1.0).fit(sp.data.train, item_attributes=it)
    cold = evaluate_items(m.score_block, sp.data.train, sp.cold_test, sp.cold_items)
    rnd = evaluate_items(RandomScores(0).fit(sp.data.train, it).score_block, sp.data.train,
                         sp.cold_test, sp.cold_items)
    assert cold["recall@20"] > rnd["recall@20"]
    assert isinstance(from_csr(sp.data.train).n_items, int)


# ---------------------------------------------------------------- save / load, partial_fit
def _user_attrs():
    return CSR.from_coo(np.array([0, 3]), np.array([0, 0]), None, shape=(4, 1))


def test_side_info_turbo_cf_save_load_round_trip(tmp_path):
    R, A = _R(), _item_attrs()
    m = SideInfoTurboCF(alpha=0.5, filter=1, weight=0.5).fit(R, item_attributes=A,
                                                            user_attributes=_user_attrs())
    m.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert type(back) is SideInfoTurboCF and back._config() == m._config()
    assert back._config()["n_item_attributes"] == 2 and back._config()["n_user_attributes"] == 1
    users = np.arange(4)
    np.testing.assert_array_equal(back.score_block(users), m.score_block(users))
    np.testing.assert_array_equal(back.recommend(users, k=3)[0], m.recommend(users, k=3)[0])
    assert back.score_block([0])[0, 4] > 0  # the cold item still reached through attributes
    # item attributes only: no user-attribute arrays saved
    SideInfoTurboCF(weight=0.3).fit(R, item_attributes=A).save(tmp_path / "i")
    assert "user_attr_indptr" not in np.load(tmp_path / "i" / "model.npz").files
    np.testing.assert_array_equal(load_model(tmp_path / "i").score_block(users),
                                  SideInfoTurboCF(weight=0.3).fit(R, item_attributes=A)
                                  .score_block(users))


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_side_info_lightgcn_save_load_round_trip(tmp_path, ema):
    pytest.importorskip("torch")
    R, A = _R(), _item_attrs()
    m = SideInfoLightGCN(weight=0.5, dim=8, layers=2, lr=0.05, seed=0, ema=ema)
    m.fit(R, item_attributes=A, user_attributes=_user_attrs(), epochs=3, progress=False)
    m.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert type(back) is SideInfoLightGCN and back.weight == 0.5 and back.epoch == 3
    users = np.arange(4)
    np.testing.assert_array_equal(back.recommend(users, k=3)[0], m.recommend(users, k=3)[0])
    np.testing.assert_array_equal(back.score_block(users), m.score_block(users))
    back._user_emb = None  # propagated again from the saved layer-0 table and attributes
    np.testing.assert_allclose(back.score_block(users), m.score_block(users), atol=1e-6)
    with pytest.raises(RuntimeError, match="fit once"):
        back.fit(R, item_attributes=A, epochs=1, progress=False)


def test_side_info_load_rejects_bad_attribute_arrays(tmp_path):
    R, A = _R(), _item_attrs()
    SideInfoTurboCF().fit(R, item_attributes=A).save(tmp_path / "m")
    z = dict(np.load(tmp_path / "m" / "model.npz"))
    z["item_attr_indices"] = z["item_attr_indices"] + 5
    np.savez(tmp_path / "m" / "model.npz", **z)
    with pytest.raises(ModelError, match="item attribute matrix is invalid"):
        load_model(tmp_path / "m")
    del z["item_attr_indptr"]
    np.savez(tmp_path / "m" / "model.npz", **z)
    with pytest.raises(ModelError, match="lacks array 'item_attr_indptr'"):
        load_model(tmp_path / "m")


def test_side_info_fit_checks_attribute_rows_first():
    R = _R()
    m = SideInfoTurboCF()
    with pytest.raises(ValueError, match="item_attributes has 4 rows, expected 5"):
        m.fit(R, item_attributes=_user_attrs())
    assert m.train is None  # nothing changed


def test_side_info_partial_fit(tmp_path):
    R, A = _R(), _item_attrs()
    m = SideInfoTurboCF(alpha=0.5, filter=1, weight=0.5).fit(R, item_attributes=A)
    m.partial_fit(([0, 7], [6, 1]))  # a new item (id 6, column 5) and a new user (row 4)
    assert m.n_items == 6 and m.n_users == 5 and m.item_attributes.shape == (6, 2)
    assert m.score_block([4]).shape == (1, 6)
    m.save(tmp_path / "m")  # the grown model saves and loads like a fitted one
    np.testing.assert_array_equal(load_model(tmp_path / "m").score_block([4]),
                                  m.score_block([4]))
    pytest.importorskip("torch")
    g = SideInfoLightGCN(dim=4, layers=1, seed=0).fit(R, item_attributes=A, epochs=1,
                                                      progress=False)
    with pytest.raises(NotImplementedError, match="SideInfoLightGCN.partial_fit"):
        g.partial_fit(([0], [3]))
    assert g.n_items == 5


# ---------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def side_data(tmp_path_factory):
    from conftest import write_lightgcn_split

    d = tmp_path_factory.mktemp("side")
    data = write_lightgcn_split(d / "data", 60, 40)
    (d / "tags.csv").write_text("item_id,attribute\n" + "".join(
        f"{i},g{i % 4}\n" for i in range(40)) + "999,g1\n")
    (d / "x.item").write_text("item_id:token\tclass:token_seq\n" + "".join(
        f"{i}\tc{i % 3} c{i % 5}\n" for i in range(40)))
    (d / "u.csv").write_text("".join(f"{u},a{u % 2}\n" for u in range(60)))
    return str(data), d


@pytest.mark.parametrize("model, extra", [
    ("turbo-cf-side", ["--attribute-weight", "0.3", "--set", "filter=1"]),
    ("lightgcn-side", ["--epochs", "2", "--dim", "8", "--batch-size", "64", "--no-progress"]),
])
def test_cli_side_info_models(tmp_path, side_data, capsys, model, extra):
    pytest.importorskip("torch")
    from hopkit.cli import main

    data, d = side_data
    out = str(tmp_path / model)
    argv = ["train", "--data", data, "--model", model, "--out", out,
            "--item-attributes", str(d / "tags.csv"), "--item-attributes", str(d / "x.item"),
            "--user-attributes", str(d / "u.csv"), *extra]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "item attributes from" in text and "skipped {'unknown item': 1}" in text
    assert "recall@20=" in text
    m = load_model(out)
    assert m.name == model and m.item_attributes.shape == (40, 4 + 5)
    assert m.user_attributes.shape == (60, 2)
    if model == "turbo-cf-side":
        assert m.weight == 0.3 and m.filter == 1
    assert main(["evaluate", "--model", out, "--data", data]) == 0
    assert main(["recommend", "--model", out, "--user", "3", "-k", "4"]) == 0
    assert "top-4 for user 3" in capsys.readouterr().out
    assert main(["recommend", "--model", out, "--history", "1", "2"]) == 2  # no fold-in
    err = capsys.readouterr().err
    assert "has no fold-in" in err and "--history needs a model with fold-in" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["--model", "turbo-cf-side"], "needs side information"),
    (["--model", "turbo-cf", "--item-attributes", "A"], "apply to the models turbo-cf-side"),
    (["--model", "turbo-cf-side", "--item-attributes", "nope.csv"],
     "attribute file not found: nope.csv"),
    (["--model", "lightgcn-side", "--item-attributes", "A", "--valid-fraction", "0.1"],
     "--valid-fraction is not supported"),
    (["--model", "turbo-cf-side", "--item-attributes", "A", "--attribute-weight", "1",
      "--set", "weight=2"], "give the attribute weight once"),
])
def test_cli_side_info_errors(tmp_path, side_data, capsys, argv, message):
    from hopkit.cli import main

    data, d = side_data
    argv = [str(d / "tags.csv") if a == "A" else a for a in argv]
    assert main(["train", "--data", data, "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not os.path.exists(tmp_path / "o")
