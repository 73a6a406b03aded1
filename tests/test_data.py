"""hopkit.data loaders and splits on small files written to tmp_path."""

import os

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
    with pytest.raises(DataError, match=r"train.txt:2: lightgcn id must be an integer, got 'x'"):
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


# ---------------------------------------------------------------------------- hostile files
def test_undecodable_bytes_name_file_line_and_encoding_option(tmp_path):
    p = tmp_path / "r.csv"
    p.write_bytes(b"user,item\nZo\xeb,1\nZo\xe4,1\n")
    with pytest.raises(DataError, match=r"r.csv:2: .*not valid utf-8.*encoding="):
        load(str(p))
    ds = load(str(p), encoding="latin-1")  # two distinct users, not one merged
    assert ds.user_ids.tolist() == ["Zoä", "Zoë"]
    with pytest.raises(ValueError, match="load: unknown encoding 'nope'"):
        load(str(p), encoding="nope")


@pytest.mark.parametrize("ch", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028",
                                "\u2029"])
def test_lines_split_on_newline_only(tmp_path, ch):
    p = tmp_path / "r.csv"
    p.write_text(f"u{ch}1,a\r\nu2,b\nu3\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"r.csv:3: expected at least 2 fields"):
        load(str(p))
    p.write_text(f"u{ch}1,a\r\nu2,b\r\n", encoding="utf-8")
    assert load(str(p)).user_ids.tolist() == sorted([f"u{ch}1", "u2"])  # the id is kept whole


def test_lone_carriage_return_is_an_error(tmp_path):
    p = write(tmp_path / "r.csv", "1,2\n3,4\r5,6\r\n")
    with pytest.raises(DataError, match=r"r.csv:2: a carriage return"):
        load(p)


@pytest.mark.parametrize("big", [2**63, 2**64, 10**30])
def test_ids_beyond_int64_are_data_errors(tmp_path, big):
    write(tmp_path / "train.txt", f"0 1\n1 {big}\n")
    with pytest.raises(DataError, match=rf"train.txt:2: .*{big}.*64-bit"):
        load(str(tmp_path / "train.txt"), format="lightgcn")
    p = write(tmp_path / "ratings.dat", f"1::2::5::9\n{big}::2::5::9\n")
    with pytest.raises(DataError, match=rf"ratings.dat:2: user id .*{big}.*64-bit"):
        load(p)
    # csv ids may be any token: ones beyond int64 keep every id of the column a string
    ds = load(write(tmp_path / "e.csv", f"1,2\n{big},2\n"))
    assert ds.user_ids.tolist() == sorted(["1", str(big)])


def test_lightgcn_ids_far_beyond_the_file_are_refused(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    write(d / "train.txt", "0 1 2\n1 1000000000\n")
    write(d / "test.txt", "0 3\n")
    with pytest.raises(DataError, match=r"train.txt:2: item id 1000000000 .*remap_ids=True"):
        load(str(d))
    write(d / "train.txt", "0 1 2\n1000000000 1\n")
    with pytest.raises(DataError, match=r"train.txt:2: user id 1000000000 "):
        load(str(d))
    write(d / "train.txt", "0 1 2\n7 1000000000\n")
    ds = load(str(d), remap_ids=True)
    assert ds.user_ids.tolist() == [0, 7] and ds.item_ids.tolist() == [1, 2, 1000000000]
    assert ds.skipped == {"unseen item": 1} and ds.test.nnz == 0
    # dense ids well past the number of lines are still fine (a sample of a big catalogue)
    write(d / "train.txt", "0 1 2\n1 500000\n")
    assert load(str(d)).n_items == 500001


@pytest.mark.parametrize("tok", ["1_000", "\u0661\u0662", "\uff11", "+5"])
def test_integer_ids_are_ascii_digits(tmp_path, tok):
    write(tmp_path / "train.txt", f"0 1 2\n1 {tok}\n")
    with pytest.raises(DataError, match=r"train.txt:2: "):
        load(str(tmp_path / "train.txt"), format="lightgcn")
    p = write(tmp_path / "u.data", f"1\t2\t5\t9\n3\t{tok}\t5\t9\n")
    with pytest.raises(DataError, match=r"u.data:2: item id must be an integer"):
        load(p)


def test_recbole_leading_blank_line(tmp_path):
    p = write(tmp_path / "x.inter", "\n\nuser_id:token\titem_id:token\nu1\ti1\nu2\ti1\n")
    ds = load(p)
    assert ds.user_ids.tolist() == ["u1", "u2"] and ds.train.nnz == 2


def test_only_regular_files_are_read(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/null"):
        with pytest.raises(DataError, match=rf"{path}: not a regular file"):
            load(path)
    write(tmp_path / "train.txt", "0 1\n")
    with pytest.raises(DataError, match="/dev/zero: not a regular file"):
        load(str(tmp_path / "train.txt"), test="/dev/zero")
