"""The hopkit command line on tiny data: train/evaluate/recommend round trip,
help text, and user errors (exit code 2, one line, no traceback)."""

import json
import os
import subprocess
import sys

import pytest
from hopkit.cli import build_parser, main

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    lines_tr, lines_te = [], []
    for u in range(60):
        items = [(u * 3 + j * 5) % 40 for j in range(6)]
        lines_tr.append(f"{u} " + " ".join(map(str, sorted(set(items[:5])))))
        lines_te.append(f"{u} {items[5]}")
    (d / "train.txt").write_text("\n".join(lines_tr) + "\n")
    (d / "test.txt").write_text("\n".join(lines_te) + "\n")
    return str(d)


@pytest.fixture(scope="module")
def gf_model(tmp_path_factory, data_dir):
    model = tmp_path_factory.mktemp("gf") / "model"
    assert main(["train", "--data", data_dir, "--model", "graph-filter", "--rank", "4", "--out",
                 str(model)]) == 0
    return model


def test_help_explains_every_option():
    p = build_parser()
    sub = p._subparsers._group_actions[0].choices
    assert set(sub) == {"info", "demo", "train", "evaluate", "recommend", "bench"}
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
