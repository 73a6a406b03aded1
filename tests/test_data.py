"""hopkit.data loaders and splits on small files written to tmp_path."""

import pytest
from hopkit.data import DataError, load, split_leave_last, split_random, synthetic


def write(p, text):
    p.write_text(text)
    return str(p)


def dense(R):
    return R.to_scipy().toarray().astype(int)


def test_lightgcn_dir(tmp_path):
    write(tmp_path / "train.txt", "0 0 1 2\n1 2\n2\n3 0 4\n")
    write(tmp_path / "test.txt", "0 3\n1 0 1\n3 2\n")
    ds = load(str(tmp_path))
    assert ds.train.shape == (4, 5) and ds.train.nnz == 6
    assert ds.test.nnz == 4 and ds.test.shape == ds.train.shape
    assert dense(ds.test)[1].tolist() == [1, 1, 0, 0, 0]
    assert ds.user_ids.tolist() == [0, 1, 2, 3]  # identity maps, user 2 has no items


def test_lightgcn_non_integer(tmp_path):
    write(tmp_path / "train.txt", "0 0 1 2\n1 2 x\n2 1\n")
    with pytest.raises(DataError, match=r"train.txt:2: .*integer ids, got 'x'"):
        load(str(tmp_path), format="lightgcn")


def test_empty_file(tmp_path):
    p = write(tmp_path / "e.csv", "\n  \n")
    with pytest.raises(DataError, match="e.csv: the file is empty"):
        load(p)


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load(str(tmp_path / "nope"))


@pytest.mark.parametrize("sep", [",", "\t", " "])
def test_edge_list_header_and_string_ids(tmp_path, sep):
    rows = ["user,item,rating,timestamp", "alice,x,5,10", "bob,y,3,11", "alice,z,4,12",
            "bob,x,1,13", "alice,x,2,14"]
    p = write(tmp_path / "r.csv", "\n".join(r.replace(",", sep) for r in rows) + "\n")
    ds = load(p)
    assert ds.user_ids.tolist() == ["alice", "bob"] and ds.item_ids.tolist() == ["x", "y", "z"]
    # (alice, x) twice: merged, the last occurrence (rating 2, time 14) kept
    assert ds.train.nnz == 4
    assert ds.train_ratings.tolist() == [2.0, 4.0, 1.0, 3.0]
    ds2 = load(p, rating_threshold=3)
    assert dense(ds2.train).tolist() == [[0, 0, 1], [0, 1, 0]]
    ds3 = load(p, duplicates="first", rating_threshold=3)
    assert dense(ds3.train).tolist() == [[1, 0, 1], [0, 1, 0]]
    with pytest.raises(DataError, match=r"r.csv:6: duplicate .* line 2"):
        load(p, duplicates="error")
    assert ds.user_index(["bob"]).tolist() == [1]


def test_edge_list_no_header_and_errors(tmp_path):
    p = write(tmp_path / "e.tsv", "10\t7\t1.0\n12\t7\t0.5\n10\t9\t2\n")
    ds = load(p)
    assert ds.user_ids.tolist() == [10, 12] and ds.item_ids.tolist() == [7, 9]
    assert dense(ds.train).tolist() == [[1, 1], [1, 0]]
    p = write(tmp_path / "bad.tsv", "10\t7\t1.0\n12\n")
    with pytest.raises(DataError, match=r"bad.tsv:2: expected at least 3 fields"):
        load(p)
    p = write(tmp_path / "bad2.tsv", "10\t7\t1.0\n12\t3\tgood\n")
    with pytest.raises(DataError, match=r"bad2.tsv:2: rating must be a number, got 'good'"):
        load(p)
    with pytest.raises(DataError, match="needs a rating column"):
        load(write(tmp_path / "two.csv", "1,2\n3,4\n"), rating_threshold=1)


def test_movielens_formats(tmp_path):
    d = tmp_path / "ml1m"
    d.mkdir()
    write(d / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978300000\n")
    ds = load(str(d))
    assert ds.item_ids.tolist() == [661, 1193] and ds.train.nnz == 3
    p = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    assert load(p).train.nnz == 2 and load(p).item_ids.tolist() == [242, 302]
    with pytest.raises(DataError, match="no training interactions left after rating_threshold"):
        load(p, rating_threshold=4)
    bad = write(tmp_path / "ratings.dat", "1::1193::5::978300760\nx::661::3::978302109\n")
    with pytest.raises(DataError, match=r"ratings.dat:2: user id must be an integer, got 'x'"):
        load(bad)


def test_recbole(tmp_path):
    p = write(tmp_path / "ml.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
              "u1\ti1\t5\t1\nu2\ti1\t2\t2\nu1\ti2\t4\t3\n")
    ds = load(p, rating_threshold=4)
    assert ds.user_ids.tolist() == ["u1", "u2"] and ds.train.nnz == 2
    with pytest.raises(DataError, match="typed header"):
        load(write(tmp_path / "x.inter", "u1\ti1\n"))


def test_unseen_test_ids(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    write(d / "train.csv", "1,1\n1,2\n2,2\n")
    write(d / "test.csv", "1,3\n2,1\n9,1\n")
    ds = load(str(d))
    assert ds.test.nnz == 1 and ds.skipped == {"unseen user": 1, "unseen item": 1}
    with pytest.raises(DataError, match=r"test.csv:1: item 3 does not occur"):
        load(str(d), unseen="error")


def test_splits():
    R = synthetic(50, 40, 600, seed=1)
    a, b = split_random(R, 0.25, seed=3), split_random(R, 0.25, seed=3)
    assert (dense(a.train) == dense(b.train)).all() and (dense(a.test) == dense(b.test)).all()
    assert a.train.nnz + a.test.nnz == R.nnz
    assert not (dense(a.train) & dense(a.test)).any()
    assert (a.train.row_degree() >= 1).all()
    c = split_random(R, 0.25, seed=4)
    assert (dense(c.test) != dense(a.test)).any()


def test_leave_last(tmp_path):
    p = write(tmp_path / "r.csv", "u,i,r,t\n1,1,1,30\n1,2,1,10\n1,3,1,20\n2,1,1,5\n3,2,1,1\n"
              "3,3,1,2\n")
    ds = split_leave_last(load(p))
    assert dense(ds.test).tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 1]]
    assert dense(ds.train).tolist() == [[0, 1, 1], [1, 0, 0], [0, 1, 0]]
    with pytest.raises(ValueError, match="timestamps"):
        split_leave_last(load(write(tmp_path / "x.csv", "1,2\n")))
