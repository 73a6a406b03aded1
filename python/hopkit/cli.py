"""The ``hopkit`` command line: demo, train, evaluate, recommend, serve, bench, info.

User errors (a missing data path or model directory, a malformed file, an
unknown user, k larger than the catalogue, bad option values) print one line
``hopkit: error: ...`` on stderr and exit with code 2, without a traceback
(set ``HOPKIT_DEBUG=1`` to see it).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time


class UserError(Exception):
    """An error caused by the command line's input, reported without traceback."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (exit code 2, as every user error)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_at_least(lo):
    def parse(text):
        v = _parse_int(text)
        if v is None or v < lo:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {text!r}")
        return v
    return parse


def _number(lo=None, hi=None, lo_open=False, what=None):
    """A finite float in [lo, hi) (or (lo, ...) with ``lo_open``)."""
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        ok = math.isfinite(v) and (lo is None or (v > lo if lo_open else v >= lo)) and (
            hi is None or v < hi)
        if not ok:
            raise argparse.ArgumentTypeError(f"must be a number {what}, got {text!r}")
        return v
    return parse


def _parse_int(text):
    from .data.loaders import _parse_int

    return _parse_int(text.strip())


_COUNT = _int_at_least(1)
_COUNT_0 = _int_at_least(0)
_POSITIVE = _number(0, lo_open=True, what="> 0")
_NON_NEGATIVE = _number(0, what=">= 0")
_FRACTION = _number(0, 1, what="in [0, 1)")


# ---------------------------------------------------------------------------- helpers
def _threads(args):
    n = getattr(args, "threads", None)
    if n is None:
        return
    if n < 1:
        raise UserError(f"--threads must be >= 1, got {n}")
    import hopkit

    hopkit.set_num_threads(n)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


def _require_torch(what):
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserError(f"{what} needs PyTorch: pip install torch==2.13.0 (or the [demo] "
                        "extra)") from None


def _table(headers, rows, aligns=None):
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    aligns = aligns or ["<"] + [">"] * (len(headers) - 1)
    lines = []
    for j, r in enumerate(cells):
        lines.append("  ".join(f"{c:{a}{w}}" for c, a, w in zip(r, aligns, widths, strict=True)))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _load_data(args, need_test=False):
    from .data import load

    if not os.path.exists(args.data):
        raise UserError(f"data path not found: {args.data}")
    if getattr(args, "test", None) and not os.path.exists(args.test):
        raise UserError(f"test file not found: {args.test}")
    ds = load(args.data, test=getattr(args, "test", None), format=args.format,
              rating_threshold=getattr(args, "rating_threshold", None),
              duplicates=getattr(args, "duplicates", "last"), encoding=args.encoding,
              remap_ids=args.remap_ids)
    if need_test and ds.test is None:
        raise UserError(f"{args.data}: no test file found (a directory with train.txt + test.txt, "
                        "or pass --test FILE)")
    return ds


def _fmt_ids(x):
    return "-" if x is None else str(x)


# ---------------------------------------------------------------------------- info / bench
def _cmd_info(args) -> int:
    from . import show_config

    show_config()
    return 0


def _cmd_bench(args) -> int:
    from .bench.__main__ import main as bench_main

    argv = [args.what] + (["--quick"] if args.quick else [])
    argv += (["--json", args.json] if args.json else []) + (["--plot", args.plot] if args.plot
                                                            else [])
    return bench_main(argv)


# ---------------------------------------------------------------------------- demo
def _cmd_demo(args) -> int:
    _require_torch("hopkit demo")
    import numpy as np

    import hopkit

    from .data import split_random, synthetic
    from .models import GraphFilter, LightGCN, Popularity

    t_all = time.perf_counter()
    _threads(args)
    cfg = hopkit.config() if callable(getattr(hopkit, "config", None)) else {}
    print(f"hopkit {hopkit.__version__}  |  threads {hopkit.get_num_threads()}"
          + (f"  |  ISA {cfg.get('isa')}" if isinstance(cfg, dict) and cfg.get("isa") else ""))
    t0 = time.perf_counter()
    R = synthetic(args.users, args.items, args.interactions, seed=args.seed)
    ds = split_random(R, 0.2, seed=args.seed)
    ds.name = "synthetic"
    print(f"\nData: synthetic power-law graph with communities ({time.perf_counter() - t0:.1f} s)"
          f"\n  {ds.summary()} (per-user random 80/20 split)\n")

    results = []
    ks = (20,)
    pop = Popularity().fit(ds)
    t = time.perf_counter()
    results.append(("Popularity", pop.evaluate(ds.test, ks), pop.fit_time,
                    time.perf_counter() - t))
    gf = GraphFilter(k=args.rank, seed=args.seed).fit(ds)
    t = time.perf_counter()
    results.append(("GraphFilter (GF-CF)", gf.evaluate(ds.test, ks), gf.fit_time,
                    time.perf_counter() - t))
    print(f"LightGCN: d={args.dim}, 3 layers, batch {args.batch_size}, lr {args.lr}, "
          f"{args.epochs} epochs")
    lg = LightGCN(dim=args.dim, layers=3, lr=args.lr, reg=1e-4, batch_size=args.batch_size,
                  seed=args.seed)
    lg.fit(ds, epochs=args.epochs, eval_every=max(1, args.epochs // 2), progress=not
           args.no_progress, test=ds.test)
    t = time.perf_counter()
    m = lg.evaluate(ds.test, ks)
    lg.timer.add("top-K evaluation", time.perf_counter() - t)
    results.insert(1, ("LightGCN", m, lg.fit_time, time.perf_counter() - t))

    print("\nTest metrics (all users with test items; training items excluded)")
    print(_table(["model", "Recall@20", "NDCG@20", "fit s", "eval s"],
                 [(n, f"{r['recall@20']:.4f}", f"{r['ndcg@20']:.4f}", f"{f:.2f}", f"{e:.2f}")
                  for n, r, f, e in results]))

    print("\nTop-10 recommendations (LightGCN; item ids, training items excluded)")
    users = np.array([0, 1])
    items, scores = lg.recommend(users, k=10)
    test = ds.test
    for u, row, sc in zip(users, items, scores, strict=True):
        held = set(test.indices[test.indptr[u]:test.indptr[u + 1]].tolist())
        marked = [f"{i}{'*' if i in held else ''}" for i in row.tolist()]
        print(f"  user {u} ({ds.train.indptr[u + 1] - ds.train.indptr[u]} training items): "
              + " ".join(marked))
        print(f"    scores: {' '.join(f'{s:.2f}' for s in sc.tolist())}")
    print("  (* = a held-out test item of that user)")

    print("\nWhere LightGCN's time goes (training + evaluation)")
    rows = lg.timer.rows()
    total = sum(r[1] for r in rows)
    order = ["sampling", "propagation forward", "loss", "backward", "optimizer step",
             "top-K evaluation"]
    rows.sort(key=lambda r: order.index(r[0]) if r[0] in order else 99)
    print(_table(["phase", "total s", "calls", "ms/call", "share"],
                 [(n, f"{s:.2f}", c, f"{1e3 * s / max(c, 1):.1f}", f"{100 * s / total:.0f}%")
                  for n, s, c in rows]))
    print("  (backward = the BPR loss gradient through the fused propagation backward)")
    print(f"\nDemo finished in {time.perf_counter() - t_all:.1f} s")
    return 0


# ---------------------------------------------------------------------------- train
def _cmd_train(args) -> int:
    import hopkit  # noqa: F401

    from .models import GraphFilter, LightGCN
    from .models._base import check_save_dir

    check_save_dir(args.out)  # before hours of training, not after
    _check_attribute_args(args)
    fixed = _filter_model(args)  # hyperparameters checked before the data is read
    if args.model in ("lightgcn", "lightgcn-side"):
        _require_torch("training LightGCN")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UserError("--plot needs matplotlib: pip install matplotlib") from None
    _threads(args)
    ds = _load_data(args)
    print(ds.summary())
    attrs = _load_attribute_args(args, ds)
    if fixed is not None:
        model = fixed.fit(ds, **attrs)
        print(f"{type(model).__name__} fitted in {model.fit_time:.2f} s")
    elif args.model == "lightgcn-side":
        from .models import SideInfoLightGCN

        model = SideInfoLightGCN(
            weight=1.0 if args.attribute_weight is None else args.attribute_weight,
            dim=args.dim, layers=args.layers, lr=args.lr, reg=args.reg,
            batch_size=args.batch_size, sampling=args.sampling, ema=args.ema, seed=args.seed)
        model.fit(ds, epochs=args.epochs, eval_every=0, progress=not args.no_progress, **attrs)
        print(f"SideInfoLightGCN trained {model.epoch} epochs in {model.fit_time:.1f} s")
    elif args.model == "graph-filter":
        model = GraphFilter(alpha=args.alpha, k=args.rank, seed=args.seed).fit(ds)
        print(f"GraphFilter fitted in {model.fit_time:.2f} s")
    else:
        model = LightGCN(dim=args.dim, layers=args.layers, lr=args.lr, reg=args.reg,
                         batch_size=args.batch_size, sampling=args.sampling, ema=args.ema,
                         seed=args.seed)
        valid = args.valid_fraction if args.valid_fraction else None
        model.fit(ds, epochs=args.epochs, valid=valid, eval_every=args.eval_every,
                  patience=args.patience, progress=not args.no_progress, test=ds.test,
                  checkpoint=args.out)
        print(f"LightGCN trained {model.epoch} epochs in {model.fit_time:.1f} s")
    if ds.test is not None:
        m = model.evaluate(ds.test, (args.k,), ("recall", "ndcg", "precision", "hit_rate"))
        print("test: " + "  ".join(f"{k}={v:.4f}" for k, v in m.items()))
    model.save(args.out)
    print(f"model saved to {args.out}")
    if args.plot:
        _plot(model, args.plot)
        print(f"curves written to {args.plot}")
    return 0


FILTER_MODELS = ("turbo-cf", "bspm", "chebycf", "itemknn", "ease", "turbo-cf-side")
SIDE_MODELS = ("turbo-cf-side", "lightgcn-side")


def _check_attribute_args(args):
    """Attribute files only for the side-information models (which need one),
    each an existing file, checked before the data is read."""
    paths = (args.item_attributes or []) + (args.user_attributes or [])
    if args.model not in SIDE_MODELS:
        if paths or args.attribute_weight is not None:
            raise UserError(f"--item-attributes / --user-attributes / --attribute-weight apply "
                            f"to the models {', '.join(SIDE_MODELS)}, not {args.model}")
        return
    if not paths:
        raise UserError(f"--model {args.model} needs side information: pass "
                        "--item-attributes PATH and/or --user-attributes PATH")
    if args.model == "lightgcn-side" and args.valid_fraction:
        raise UserError("--valid-fraction is not supported for lightgcn-side (its graph holds "
                        "the attribute rows); train without validation")
    if args.attribute_weight is not None and any(n == "weight" for n, _ in args.set or ()):
        raise UserError("give the attribute weight once: --attribute-weight or --set weight=...")
    for p in paths:
        if not os.path.isfile(p):
            raise UserError(f"attribute file not found: {p}")
        if p.endswith(".kg") and not os.path.isfile(p[:-3] + ".link"):
            raise UserError(f"{p}: a knowledge graph needs its item links beside it "
                            f"({p[:-3] + '.link'} is missing)")


def load_attribute_file(path, ids, kind, encoding="utf-8"):
    """One attribute file as an ``Attributes`` aligned with ``ids``, by its
    name: RecBole ``.item`` / ``.user`` features, a ``.kg`` knowledge graph
    (with the ``.link`` file of the same stem), else ``id, attribute`` lines."""
    from .data.attributes import load_attribute_csv, load_kg, load_recbole_features

    if path.endswith((".item", ".user")):
        return load_recbole_features(path, ids, kind=kind, encoding=encoding)
    if path.endswith(".kg"):
        if kind != "item":
            raise UserError(f"{path}: a knowledge graph gives item attributes; pass it with "
                            "--item-attributes")
        return load_kg(path, path[:-3] + ".link", ids, encoding=encoding)
    return load_attribute_csv(path, ids, kind=kind, encoding=encoding)


def _load_attribute_args(args, ds):
    """``fit``'s item_attributes / user_attributes from the attribute files
    (several files of one kind side by side), each summarised on stdout."""
    out = {}
    for kind, paths, ids in (("item", args.item_attributes, ds.item_ids),
                             ("user", args.user_attributes, ds.user_ids)):
        if not paths:
            continue
        att = None
        for p in paths:
            a = load_attribute_file(p, ids, kind, args.encoding)
            print(f"{kind} attributes from {p}: {a.n_attributes} attributes, {a.matrix.nnz} "
                  f"edges" + (f", skipped {a.skipped}" if a.skipped else ""))
            att = a if att is None else att.concat(a)
        out[f"{kind}_attributes"] = att
    return out


def _filter_model(args):
    """The training-free model of ``--model`` built from ``--set`` (None for
    lightgcn / graph-filter); UserError naming a bad or unknown setting."""
    import inspect

    from .models import MODELS

    if args.model not in FILTER_MODELS:
        if args.set:
            raise UserError(f"--set applies to the models {', '.join(FILTER_MODELS)}, not "
                            f"{args.model} (use its own options)")
        return None
    cls = MODELS[args.model]
    known = [n for n in inspect.signature(cls.__init__).parameters if n != "self"]
    params = dict(args.set or ())
    for name in params:
        if name not in known:
            raise UserError(f"--set {name}=...: {args.model} has no hyperparameter {name!r} "
                            f"(it has {', '.join(known)})")
    if args.model in SIDE_MODELS and args.attribute_weight is not None:
        params["weight"] = args.attribute_weight
    return cls(**params)  # ValueError naming the hyperparameter


def _setting(text):
    """--set NAME=VALUE: the value as a Python literal (1, 0.5, True, 'x') or
    else as the bare string."""
    import ast

    name, eq, value = text.partition("=")
    if not eq or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"must be NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def _plot(model, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = getattr(model, "history", [])
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    if hist:
        a.plot([h["epoch"] for h in hist], [h["loss"] for h in hist], marker=".")
        for key, label in (("valid_recall@20", "validation"), ("test_recall@20", "test")):
            pts = [(h["epoch"], h[key]) for h in hist if key in h]
            if pts:
                b.plot(*zip(*pts, strict=True), marker="o", label=label)
        b.legend()
    a.set(title="BPR loss", xlabel="epoch")
    b.set(title="Recall@20", xlabel="epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------- evaluate
def _cmd_evaluate(args) -> int:
    import numpy as np

    from .csr import CSR
    from .models import load_model

    model = load_model(args.model)
    ds = _load_data(args, need_test=True)
    # map the data's ids onto the model's
    t = ds.test
    rows = np.asarray(ds.user_ids)[t.row_ids()]
    cols = np.asarray(ds.item_ids)[np.asarray(t.indices)]
    ru = _map(model.user_ids, rows)
    ci = _map(model.item_ids, cols)
    ok = (ru >= 0) & (ci >= 0)
    if not ok.any():
        raise UserError(f"{args.data}: no test interaction names a user and an item known to "
                        f"the model in {args.model}")
    test = CSR.from_coo(ru[ok], ci[ok], shape=model.train.shape)
    from .ops.evaluate import popularity_groups

    n_groups = args.popularity_groups
    groups = popularity_groups(model.train, n_groups) if n_groups else None
    m = model.evaluate(test, tuple(args.k), ("recall", "ndcg", "precision", "hit_rate", "map",
                                             "coverage", "avg_popularity", "gini", "novelty"),
                       groups=groups)
    print(f"{model.name} model from {args.model} on {t.nnz} test interactions"
          + (f" ({int((~ok).sum())} skipped: user or item unknown to the model)"
             if (~ok).any() else ""))
    rows = []
    for k, v in m.items():
        if np.ndim(v):  # exposure share per popularity group
            rows += [(f"{k}[pop group {g}]", f"{x:.4f}") for g, x in enumerate(v)]
        else:
            rows.append((k, f"{v:.4f}"))
    print(_table(["metric", "value"], rows))
    if n_groups:
        print(f"exposure: share of recommended slots per training-popularity group (items in "
              f"{n_groups} equal groups, 0 = least popular)")
    return 0


def _map(ids, query):
    import numpy as np

    ids = np.asarray(ids)
    q = np.asarray(query)
    if ids.dtype.kind != q.dtype.kind:
        ids, q = ids.astype(str), q.astype(str)
    order = np.argsort(ids, kind="stable")
    p = np.searchsorted(ids[order], q)
    p = np.minimum(p, max(len(ids) - 1, 0))
    hit = ids[order][p] == q if len(ids) else np.zeros(q.shape, bool)
    return np.where(hit, order[p], -1).astype(np.int64)


# ---------------------------------------------------------------------------- recommend
def _cmd_recommend(args) -> int:
    import numpy as np

    from .models import load_model

    model = load_model(args.model)
    if args.k < 1 or args.k > model.n_items:
        raise UserError(f"-k must lie in [1, {model.n_items}] (the model's catalogue has "
                        f"{model.n_items} items), got {args.k}")
    if args.history is not None:
        return _recommend_history(model, args)
    ids = model.user_ids
    uid = args.user
    if ids.dtype.kind in "iu":
        uid = _parse_int(uid)
        if uid is None:
            raise UserError(f"unknown user {args.user!r}: user ids of this model are "
                            "integers") from None
    row = _map(ids, np.array([uid]))[0]
    cold = row < 0
    if cold and not args.cold_start:
        raise UserError(f"unknown user {args.user!r}: not in the training data of "
                        f"{args.model} ({model.n_users} users); pass --cold-start for the most "
                        "popular items instead")
    if cold:
        pop = np.bincount(model.train.indices, minlength=model.n_items)
        top = np.lexsort((np.arange(model.n_items), -pop))[: args.k]
        items, scores = top, pop[top].astype(float)
        print(f"COLD START: user {args.user!r} is unknown to the model; showing the "
              f"{args.k} most popular items (score = training interactions)")
    else:
        items, scores = model.recommend([row], k=args.k, exclude_seen=not args.include_seen)
        items, scores = items[0], scores[0]
        print(f"top-{args.k} for user {args.user} ({model.name}"
              f"{'' if args.include_seen else ', training items excluded'})")
    out = [(r + 1, _fmt_ids(model.item_ids[i] if i >= 0 else None), f"{s:.4f}")
           for r, (i, s) in enumerate(zip(items.tolist(), scores.tolist(), strict=True))]
    print(_table(["rank", "item", "score"], out))
    return 0


def _recommend_history(model, args):
    import numpy as np

    hist = args.history
    if np.asarray(model.item_ids).dtype.kind in "iu":
        parsed = [_parse_int(h) for h in hist]
        hist = [h for h in parsed if h is not None]  # a non-integer is an unknown item
    try:
        items, scores, cold = model.recommend_history([hist], k=args.k,
                                                      exclude_seen=not args.include_seen,
                                                      original_ids=True)
    except NotImplementedError as e:  # the model has no fold-in: a user error, not a crash
        raise UserError(f"{e}; --history needs a model with fold-in (lightgcn, graph-filter, "
                        "popularity); use --user for a trained user") from None
    known = len(model.history_rows([hist], original_ids=True).indices)
    if cold[0]:
        print(f"COLD START: no item of the history is known to the model; showing the "
              f"{args.k} most popular items (score = training interactions)")
    else:
        print(f"top-{args.k} for a new user with {known} known history item(s) of "
              f"{len(args.history)} ({model.name}, folded in"
              f"{'' if args.include_seen else ', history excluded'})")
    out = [(r + 1, _fmt_ids(i), f"{s:.4f}") for r, (i, s) in
           enumerate(zip(items[0].tolist(), scores[0].tolist(), strict=True))]
    print(_table(["rank", "item", "score"], out))
    return 0


# ---------------------------------------------------------------------------- serve
def _cmd_serve(args) -> int:
    try:
        import uvicorn

        from .serving import create_app
    except ImportError as e:
        raise UserError(f"serve needs the serve extra: pip install 'hopkit[serve]' ({e})") \
            from None
    token = None
    if args.admin_token_file:
        with open(args.admin_token_file) as f:
            token = f.read().strip()
        if not token:
            raise UserError(f"--admin-token-file {args.admin_token_file}: the file is empty")
    app = create_app(args.model, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                     admin_token=token)
    info = app.state.service.rec.info()
    print(f"hopkit serve: {info['model']} model from {args.model} ({info['n_users']} users, "
          f"{info['n_items']} items) on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = _Parser(
        prog="hopkit",
        description="hopkit: fast GNN kernels for recommender systems, and recommenders built "
                    "on them (LightGCN, GF-CF graph filter). Exit code 2 means a user error "
                    "(bad path, bad option, unknown user).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def threads(s):
        s.add_argument("--threads", type=_COUNT, default=None, metavar="N",
                       help="number of threads for hopkit and torch (default: all cores or "
                            "OMP_NUM_THREADS)")

    def reading(s):
        s.add_argument("--encoding", default="utf-8",
                       help="text encoding of the data files (e.g. latin-1); undecodable bytes "
                            "are an error naming file and line")
        s.add_argument("--remap-ids", action="store_true",
                       help="lightgcn format: number the ids that occur densely instead of "
                            "using them as row/column numbers (needed for sparse ids far beyond "
                            "the number of ids in the files)")

    s = sub.add_parser("info", help="print version, backends, threads and build options",
                       description="Print hopkit's version, backends, threads and build options.")
    s.set_defaults(fn=_cmd_info)

    s = sub.add_parser("demo", formatter_class=fmt,
                       help="end-to-end demo on built-in synthetic data (~1-2 min on 2 cores)",
                       description="Generate a synthetic power-law interaction graph with "
                                   "latent communities, train LightGCN for a few epochs, fit "
                                   "the GF-CF graph filter and a popularity baseline, print "
                                   "Recall/NDCG@20, top-10 recommendations for two users and "
                                   "where the training time goes.")
    s.add_argument("--users", type=_COUNT, default=6000, help="synthetic users")
    s.add_argument("--items", type=_COUNT, default=4000, help="synthetic items")
    s.add_argument("--interactions", type=_COUNT, default=150_000, help="synthetic interactions")
    s.add_argument("--epochs", type=_COUNT, default=10, help="LightGCN training epochs")
    s.add_argument("--dim", type=_COUNT, default=64, help="LightGCN embedding size")
    s.add_argument("--batch-size", type=_COUNT, default=4096, help="BPR triples per batch")
    s.add_argument("--lr", type=_POSITIVE, default=5e-3, help="Adam learning rate")
    s.add_argument("--rank", type=_COUNT, default=128,
                   help="singular vectors in GF-CF's ideal low-pass filter")
    s.add_argument("--seed", type=_COUNT_0, default=0,
                   help="random seed (data, init, sampling)")
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    threads(s)
    s.set_defaults(fn=_cmd_demo)

    s = sub.add_parser("train", formatter_class=fmt, help="train a model on a dataset and save it",
                       description="Load interactions, train LightGCN or fit a "
                                   "training-free model (GF-CF, Turbo-CF, BSPM, ChebyCF, "
                                   "ItemKNN, EASE^R), report test metrics when a test file "
                                   "exists, and save the model to --out (model.npz + "
                                   "model.json).")
    s.add_argument("--data", required=True, metavar="PATH",
                   help="a data file or a directory (train.txt + test.txt, data1.txt + "
                        "test1.txt, ratings.dat, u.data or one *.inter file)")
    s.add_argument("--test", metavar="FILE", help="an explicit test file (same format)")
    s.add_argument("--format", default="auto", choices=["auto", "lightgcn", "csv", "movielens",
                                                         "recbole"],
                   help="input format; auto detects it from the file name and content")
    s.add_argument("--rating-threshold", type=_number(what="(finite)"), default=None, metavar="T",
                   help="keep only interactions with rating >= T (implicit feedback)")
    s.add_argument("--duplicates", default="last", choices=["first", "last", "error"],
                   help="repeated (user, item) pairs: keep the first/last occurrence or fail")
    s.add_argument("--model", default="lightgcn",
                   choices=["lightgcn", "graph-filter", *FILTER_MODELS, "lightgcn-side"],
                   help="which recommender to train (see docs/recommender.md; the "
                        "training-free filters take --set; turbo-cf-side and lightgcn-side "
                        "use side information from --item-attributes / --user-attributes)")
    s.add_argument("--item-attributes", action="append", metavar="PATH",
                   help="turbo-cf-side, lightgcn-side: item attributes, by file name: a "
                        "RecBole .item file (token / token_seq fields, floats in quantile "
                        "buckets), a .kg knowledge graph (with the .link file beside it) or "
                        "'item_id,attribute' lines (CSV / TSV); repeatable (side by side)")
    s.add_argument("--user-attributes", action="append", metavar="PATH",
                   help="turbo-cf-side, lightgcn-side: user attributes: a RecBole .user file "
                        "or 'user_id,attribute' lines; repeatable")
    s.add_argument("--attribute-weight", type=_NON_NEGATIVE, default=None, metavar="W",
                   help="turbo-cf-side, lightgcn-side: weight of the attribute edges (default: "
                        "the model's, 0.1 for turbo-cf-side, 1.0 for lightgcn-side)")
    s.add_argument("--out", required=True, metavar="DIR", help="directory to save the model to")
    s.add_argument("--epochs", type=_COUNT, default=50, help="LightGCN: maximum training epochs")
    s.add_argument("--dim", type=_COUNT, default=64, help="LightGCN: embedding size")
    s.add_argument("--layers", type=_COUNT_0, default=3,
                   help="LightGCN: propagation layers")
    s.add_argument("--lr", type=_POSITIVE, default=1e-3, help="LightGCN: Adam learning rate")
    s.add_argument("--reg", type=_NON_NEGATIVE, default=1e-4,
                   help="LightGCN: L2 weight on the batch's layer-0 embeddings")
    s.add_argument("--batch-size", type=_COUNT, default=2048,
                   help="LightGCN: BPR triples per batch")
    s.add_argument("--sampling", default="pairs", choices=["pairs", "users"],
                   help="LightGCN: an epoch's BPR triples: every training pair once (pairs) or "
                        "users drawn uniformly, one of their items each (users, as the LightGCN "
                        "paper's code)")
    s.add_argument("--ema", type=_FRACTION, default=0.0, metavar="DECAY",
                   help="LightGCN: evaluate, recommend with and save a moving average of the "
                        "weights with this decay, e.g. 0.998 (0 = off)")
    s.add_argument("--eval-every", type=_COUNT, default=5,
                   help="LightGCN: evaluate every N epochs (validation and test)")
    s.add_argument("--valid-fraction", type=_FRACTION, default=0.0, metavar="F",
                   help="LightGCN: hold out this fraction of each user's training items for "
                        "validation and early stopping (0 = none)")
    s.add_argument("--patience", type=_COUNT, default=None, metavar="N",
                   help="LightGCN: stop after N evaluations without a better validation "
                        "Recall@20 (needs --valid-fraction)")
    s.add_argument("--alpha", type=_NON_NEGATIVE, default=0.3,
                   help="graph-filter: weight of the ideal low-pass filter")
    s.add_argument("--rank", type=_COUNT, default=256,
                   help="graph-filter: singular vectors in the ideal low-pass filter")
    s.add_argument("--set", type=_setting, action="append", metavar="NAME=VALUE",
                   help="turbo-cf, bspm, chebycf, itemknn, ease, turbo-cf-side: a constructor "
                        "hyperparameter of the model (repeatable), e.g. --set k=256 --set "
                        "merge=late for bspm")
    s.add_argument("-k", type=_COUNT, default=20, help="cutoff of the reported test metrics")
    s.add_argument("--seed", type=_COUNT_0, default=0, help="random seed")
    s.add_argument("--plot", metavar="FILE.png",
                   help="write loss and Recall@20 curves to FILE.png (needs matplotlib)")
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    reading(s)
    threads(s)
    s.set_defaults(fn=_cmd_train)

    s = sub.add_parser("evaluate", formatter_class=fmt, help="evaluate a saved model on test data",
                       description="Recall, NDCG, precision, hit rate and MAP at k of a saved "
                                   "model on the test interactions of --data, and item "
                                   "coverage, average popularity, Gini index, novelty and "
                                   "exposure per popularity group (ids are matched "
                                   "to the model's; unknown users/items are skipped and "
                                   "counted). Training items are excluded from the ranking.")
    s.add_argument("--model", required=True, metavar="DIR", help="a directory written by train")
    s.add_argument("--data", required=True, metavar="PATH",
                   help="dataset directory or file holding the test interactions")
    s.add_argument("--test", metavar="FILE", help="an explicit test file")
    s.add_argument("--format", default="auto",
                   choices=["auto", "lightgcn", "csv", "movielens", "recbole"],
                   help="input format")
    s.add_argument("-k", type=_COUNT, nargs="+", default=[20], help="metric cutoffs")
    s.add_argument("--popularity-groups", type=_COUNT_0, default=10, metavar="N",
                   help="report the share of exposure per training-popularity group, items "
                        "cut into N equal groups (0: not reported)")
    reading(s)
    threads(s)
    s.set_defaults(fn=_cmd_evaluate)

    s = sub.add_parser("recommend", formatter_class=fmt, help="top-k items for one user",
                       description="Print the top-k items of a saved model for one user "
                                   "(original ids). An unknown user is an error unless "
                                   "--cold-start is given, which answers with the most popular "
                                   "items and says so.")
    s.add_argument("--model", required=True, metavar="DIR", help="a directory written by train")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="ID", help="the user's original id")
    who.add_argument("--history", nargs="+", metavar="ID",
                   help="a new user's items (original ids), folded into the model instead "
                        "of --user; no known item gives the most popular items")
    s.add_argument("-k", type=_COUNT, default=10, help="number of items")
    s.add_argument("--include-seen", action="store_true",
                   help="do not exclude the user's training items")
    s.add_argument("--cold-start", action="store_true",
                   help="for an unknown user, answer with the most popular items (flagged)")
    threads(s)
    s.set_defaults(fn=_cmd_recommend)

    s = sub.add_parser("serve", formatter_class=fmt, help="the HTTP recommendation service",
                       description="Serve a saved model over HTTP (POST /recommend, "
                                   "/recommend/batch, GET /healthz, /metrics, POST "
                                   "/admin/reload); see docs/serving.md. Needs the serve extra.")
    s.add_argument("--model", required=True, metavar="DIR", help="a directory written by train")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on")
    s.add_argument("--port", type=_int_at_least(0), default=8000, help="port (0: any free one)")
    s.add_argument("--max-batch", type=_COUNT, default=128,
                   help="most requests in one native top-K call")
    s.add_argument("--max-wait-ms", type=_NON_NEGATIVE, default=2.0,
                   help="how long the first request of a batch waits for more")
    s.add_argument("--admin-token-file", metavar="F",
                   help="file holding the bearer token of POST /admin/reload (else disabled)")
    threads(s)
    s.set_defaults(fn=_cmd_serve)

    s = sub.add_parser("bench", formatter_class=fmt,
                       help="the comparison runner: hopkit vs its peers, one process",
                       description="Time hopkit's kernels against scipy/torch/PyG/FAISS peers "
                                   "in one process and print ratios.")
    s.add_argument("what", nargs="?", default="spmm", choices=["spmm", "propagate", "topk", "all"],
                   help="which benchmark group to run")
    s.add_argument("--quick", action="store_true", help="fewer feature sizes and repeats")
    s.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    s.add_argument("--plot", metavar="FILE.png", help="bar chart of the ratios (matplotlib)")
    threads(s)
    s.set_defaults(fn=_cmd_bench)
    return p


def main(argv=None) -> int:
    # hopkit's native module and torch each bring their own OpenMP runtime; with
    # the default spin-wait policy the idle threads of one burn the cores the
    # other needs (LightGCN training was 5-10x slower on 2 cores). Only takes
    # effect when set before either runtime is loaded, i.e. at process start.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    from .data import DataError
    from .models._base import ModelError

    try:
        _threads(args)
        return args.fn(args)
    except (UserError, DataError, ModelError, OSError, KeyError, ValueError) as e:
        # OSError: paths (missing, not a directory, permissions) and unwritable output
        if os.environ.get("HOPKIT_DEBUG"):
            raise
        msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        print(f"hopkit: error: {' '.join(msg.split(chr(10)))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hopkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
