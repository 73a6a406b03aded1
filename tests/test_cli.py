"""The hopkit command line on tiny data: train/evaluate/recommend round trip,
help text, and user errors (exit code 2, one line, no traceback)."""

import json
import os
import subprocess
import sys

import pytest
from conftest import write_lightgcn_split
from hopkit.cli import build_parser, main

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(write_lightgcn_split(tmp_path_factory.mktemp("data"), 60, 40))


@pytest.fixture(scope="module")
def gf_model(tmp_path_factory, data_dir):
    model = tmp_path_factory.mktemp("gf") / "model"
    assert main(["train", "--data", data_dir, "--model", "graph-filter", "--rank", "4", "--out",
                 str(model)]) == 0
    return model


def test_help_explains_every_option():
    p = build_parser()
    sub = p._subparsers._group_actions[0].choices
    assert set(sub) == {"info", "demo", "train", "evaluate", "recommend", "serve", "bench"}
    for name, sp in sub.items():
        for a in sp._actions:
            if a.dest != "help":
                assert a.help, f"{name} {a.option_strings or a.dest} has no help"


def test_train_evaluate_recommend(tmp_path, data_dir, capsys):
    out = str(tmp_path / "m")
    assert main(["train", "--data", data_dir, "--model", "lightgcn", "--out", out,
                 "--epochs", "2", "--dim", "8", "--no-progress", "--batch-size", "64",
                 "--sampling", "users", "--ema", "0.99"]) == 0
    assert os.path.isfile(os.path.join(out, "model.json"))
    config = json.load(open(os.path.join(out, "model.json")))["config"]
    assert config["sampling"] == "users" and config["ema"] == 0.99
    assert main(["evaluate", "--model", out, "--data", data_dir, "-k", "5", "20"]) == 0
    text = capsys.readouterr().out
    assert "recall@5" in text and "ndcg@20" in text
    assert main(["recommend", "--model", out, "--user", "3", "-k", "4"]) == 0
    text = capsys.readouterr().out
    assert "top-4 for user 3" in text and text.count("\n") >= 6
    gf = str(tmp_path / "g")
    assert main(["train", "--data", data_dir, "--model", "graph-filter", "--rank", "8",
                 "--out", gf]) == 0
    assert main(["recommend", "--model", gf, "--user", "999", "--cold-start"]) == 0
    assert "COLD START" in capsys.readouterr().out


def test_recommend_history(gf_model, capsys):
    from hopkit.models import load_model

    model = load_model(str(gf_model))
    items = model.train.indices[model.train.indptr[3]:model.train.indptr[4]].tolist()
    assert main(["recommend", "--model", str(gf_model), "--user", "3", "-k", "4"]) == 0
    by_user = capsys.readouterr().out.splitlines()[3:]
    assert main(["recommend", "--model", str(gf_model), "--history", *map(str, items), "x",
                 "-k", "4"]) == 0
    out = capsys.readouterr().out
    assert f"{len(items)} known history item(s) of {len(items) + 1}" in out
    assert out.splitlines()[3:] == by_user  # GF-CF folds a history in exactly
    assert main(["recommend", "--model", str(gf_model), "--history", "999", "-k", "2"]) == 0
    assert "COLD START" in capsys.readouterr().out


def test_plot(tmp_path, data_dir):
    pytest.importorskip("matplotlib")
    png = tmp_path / "c.png"
    assert main(["train", "--data", data_dir, "--out", str(tmp_path / "m"), "--epochs", "2",
                 "--eval-every", "1", "--dim", "8", "--no-progress", "--plot", str(png)]) == 0
    assert png.stat().st_size > 1000


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "/nonexistent/x", "--out", "OUT"], "data path not found"),
    (["recommend", "--model", "/nonexistent/m", "--user", "1"], "model directory not found"),
    (["recommend", "--model", "MODEL", "--user", "12345"], "unknown user '12345'"),
    (["recommend", "--model", "MODEL", "--user", "1", "-k", "1000"], "-k must lie in [1, 40]"),
    (["evaluate", "--model", "EMPTY", "--data", "DATA"], "model.json is missing"),
    (["train", "--data", "BAD", "--out", "OUT"], "bad.csv:2:"),
])
def test_user_errors_exit_2(tmp_path, data_dir, gf_model, argv, message, capsys):
    (tmp_path / "empty").mkdir()
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n1,2\n")
    repl = {"OUT": str(tmp_path / "o"), "MODEL": str(gf_model), "EMPTY": str(tmp_path / "empty"),
            "DATA": data_dir, "BAD": str(bad)}
    argv = [repl.get(a, a) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hopkit: error:") and message in err, err


def test_user_error_in_a_subprocess_has_no_traceback(gf_model):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-m", "hopkit.cli", "recommend", "--model",
                        str(gf_model), "--user", "nobody"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "unknown user 'nobody'" in r.stderr and "Traceback" not in r.stderr, r.stderr


def run_cli(argv, capsys):
    """(exit code, stderr) of main(argv), argparse's own exits included."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "DATA", "--model", "graph-filter", "--rank", "-5", "--out", "OUT"],
     "argument --rank: must be an integer >= 1, got '-5'"),
    (["train", "--data", "DATA", "--model", "graph-filter", "--rank", "abc", "--out", "OUT"],
     "argument --rank: must be an integer >= 1, got 'abc'"),
    (["train", "--data", "DATA", "--eval-every", "0", "--out", "OUT"],
     "argument --eval-every: must be an integer >= 1, got '0'"),
    (["train", "--data", "DATA", "--lr", "nan", "--out", "OUT"],
     "argument --lr: must be a number > 0, got 'nan'"),
    (["train", "--data", "DATA", "--ema", "1", "--out", "OUT"],
     "argument --ema: must be a number in [0, 1), got '1'"),
    (["train", "--data", "DATA", "--model", "graph-filter", "--out", "FILE"],
     "exists and is not a directory"),
    (["train", "--data", "DATA", "--model", "graph-filter", "--out", "FILE/sub"],
     "Not a directory"),
    (["train", "--data", "FIFO", "--out", "OUT"], "not a regular file"),
    (["train", "--data", "LATIN1", "--out", "OUT"], "--encoding latin-1"),
    (["evaluate", "--model", "MODEL", "--data", "DATA", "-k", "0"],
     "argument -k: must be an integer >= 1, got '0'"),
    (["recommend", "--model", "MODEL", "--user", "1_0"], "unknown user '1_0'"),
    (["recommend", "--model", "TRUNCATED", "--user", "1"], "model.npz: unreadable model arrays"),
    (["demo", "--users", "-3"], "argument --users: must be an integer >= 1, got '-3'"),
    (["nonsense"], "invalid choice: 'nonsense'"),
])
def test_more_user_errors_exit_2_with_one_line(tmp_path, data_dir, gf_model, argv, message,
                                                capsys):
    import shutil

    (tmp_path / "file").write_text("x")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "l.csv").write_bytes(b"user,item\nZo\xeb,1\nZo\xe4,1\n")
    shutil.copytree(gf_model, tmp_path / "trunc")
    (tmp_path / "trunc" / "model.npz").write_bytes(b"PK\x03\x04")
    repl = {"OUT": str(tmp_path / "o"), "MODEL": str(gf_model), "DATA": data_dir,
            "FILE": str(tmp_path / "file"), "FILE/sub": str(tmp_path / "file" / "sub"),
            "FIFO": str(tmp_path / "fifo"), "LATIN1": str(tmp_path / "l.csv"),
            "TRUNCATED": str(tmp_path / "trunc")}
    code, err = run_cli([repl.get(a, a) for a in argv], capsys)
    assert code == 2 and err.startswith("hopkit") and " error: " in err, err
    assert message in err and err.count("\n") == 1, err


def test_encoding_and_remap_options(tmp_path, capsys):
    p = tmp_path / "l.csv"
    p.write_bytes(b"user,item\nZo\xeb,1\nZo\xe4,1\nZo\xe4,2\n")
    assert main(["train", "--data", str(p), "--model", "graph-filter", "--rank", "1",
                 "--encoding", "latin-1", "--out", str(tmp_path / "m")]) == 0
    assert "2 users, 2 items" in capsys.readouterr().out
    d = tmp_path / "sparse"
    d.mkdir()
    (d / "train.txt").write_text("0 1 5000000000\n3 1\n")
    code, err = run_cli(["train", "--data", str(d), "--model", "graph-filter", "--out",
                         str(tmp_path / "m2")], capsys)
    assert code == 2 and "--remap-ids" in err, err
    assert main(["train", "--data", str(d), "--model", "graph-filter", "--rank", "1",
                 "--remap-ids", "--out", str(tmp_path / "m2")]) == 0
    assert "2 users, 2 items" in capsys.readouterr().out
