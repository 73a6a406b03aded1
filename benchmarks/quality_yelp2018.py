"""Quality and speed on Yelp2018 (not a unit test; minutes to hours on 2 cores).

    python benchmarks/quality_yelp2018.py gf                  # GF-CF: fit + full evaluation
    python benchmarks/quality_yelp2018.py filters             # Turbo-CF, BSPM, ChebyCF, ItemKNN
    python benchmarks/quality_yelp2018.py bspm --set merge=late   # one model, hyperparameters
    python benchmarks/quality_yelp2018.py speed --batches 20  # LightGCN epoch speed vs PyG LGConv
    python benchmarks/quality_yelp2018.py lightgcn --batch-size 32768 --lr 5e-3 \\
        --decay-at 160,600,1200 --decay 0.3 --ema 0.998 --epochs 5000 \\
        --eval-every 40 --budget-min 80                      # LightGCN test curve

Data: ../shared/data/yelp2018/{train,test}.txt (the LightGCN files) relative
to the repository root, or --data. Prints Recall@20 / NDCG@20 on all test
users (training items excluded) and wall times; figures are recorded in
docs/benchmarks.md ("## recommender").

* ``gf``: GraphFilter (GF-CF: linear filter + 0.3 x ideal low-pass, 256
  singular vectors from a randomized SVD on hopkit.spmm); wall time of fit
  and of the full evaluation.
* ``turbo-cf``, ``bspm``, ``chebycf``, ``itemknn``, ``ease``: that model of
  ``hopkit.models`` at its defaults, changed by ``--set NAME=VALUE``
  (repeatable; values parsed as Python literals); fit and full-evaluation
  wall time. ``filters`` runs Turbo-CF, BSPM (early and late merge), ChebyCF
  and ItemKNN one after the other (EASE^R is refused on Yelp2018's 38,048
  items at its default ``max_items``).
* ``speed``: the same LightGCN (d=64, 3 layers, mean over layers, BPR + L2 on
  the batch's layer-0 embeddings, Adam) written several ways, trained on the same
  BPR triples with the same batch size for a fixed number of batches, timed
  in one process, interleaved: hopkit (``hopkit.propagate`` on the
  normalised bipartite CSR and ``hopkit.bpr_loss``, as the model trains; and
  once with PyG's torch gathers instead of ``bpr_loss``) vs PyG (``LGConv``
  on ``edge_index``) in two variants: as PyG's ``models.LightGCN`` ships it
  (``LGConv()`` normalising the graph every call) and with the normalised
  weights precomputed (``LGConv(normalize=False)`` + ``edge_weight``, PyG's
  fastest form). The epoch time is the median batch time x batches per epoch
  plus sampling.
* ``partial``: incremental updates (docs/recommender.md): 1% of the
  training pairs (seeded) held back, each model (``--models``, default
  graph-filter,turbo-cf; also itemknn, bspm, chebycf, lightgcn) fitted on
  the rest, the held-back pairs added by ``partial_fit``, against a full
  refit on all of them: update and refit wall times (medians of
  ``--repeats``, interleaved), Recall@20 / NDCG@20 of both, and the
  relative difference of their scores on 1,024 sampled users.
  ``lightgcn``: trained ``--lgcn-epochs`` (5) epochs at ``--lr`` /
  ``--batch-size`` on the 99%, updated by ``--lgcn-steps`` (100) steps on
  the touched rows, against a retrain from scratch with the same epochs
  (timed once; Recall / NDCG before the update, after it and after the
  retrain), e.g. ``partial --models lightgcn --lr 5e-3 --batch-size 8192``.
* ``lightgcn``: trains hopkit's LightGCN and prints the test curve every
  ``--eval-every`` epochs until ``--epochs`` or ``--budget-min``; ``--lr``
  with step decays (``--decay-at``, ``--decay``), ``--reg``, ``--batch-size``,
  ``--sampling``, ``--ema`` (weight average) and ``--init-std`` set the
  recipe (docs/benchmarks.md records the runs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # hopkit + torch OpenMP runtimes
# NumPy's OpenBLAS pool spin-waits against the OpenMP threads on a busy 2-core
# machine (10-20x slower tall GEMMs); hopkit and torch keep their threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import hopkit  # noqa: E402
import numpy as np  # noqa: E402
from hopkit.data import load  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "data", "yelp2018")


def run_gf(ds, args):
    from hopkit.models import GraphFilter

    t0 = time.perf_counter()
    m = GraphFilter(alpha=0.3, k=args.rank, n_iter=args.n_iter).fit(ds)
    t1 = time.perf_counter()
    res = m.evaluate(ds.test, (20,), ("recall", "ndcg"))
    t2 = time.perf_counter()
    out = {"model": "GraphFilter (GF-CF)", "rank": args.rank, "n_iter": args.n_iter,
           "recall@20": res["recall@20"], "ndcg@20": res["ndcg@20"], "fit_s": t1 - t0,
           "eval_s": t2 - t1, "total_s": t2 - t0}
    print(f"GraphFilter: Recall@20 {out['recall@20']:.4f}  NDCG@20 {out['ndcg@20']:.4f}  "
          f"fit {out['fit_s']:.1f} s  evaluation {out['eval_s']:.1f} s  "
          f"total {out['total_s']:.1f} s", flush=True)
    return out


FILTERS = {"turbo-cf": "TurboCF", "bspm": "BSPM", "chebycf": "ChebyCF", "itemknn": "ItemKNN",
           "ease": "EASE"}


def parse_sets(items):
    import ast

    out = {}
    for it in items or ():
        name, _, value = it.partition("=")
        try:
            out[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[name] = value  # a bare string such as merge=late
    return out


def run_filter(ds, part, params):
    import hopkit.models as hm

    cls = getattr(hm, FILTERS[part])
    t0 = time.perf_counter()
    m = cls(**params)
    try:
        m.fit(ds)
    except ValueError as e:  # EASE above max_items
        print(f"{cls.__name__} {params}: refused: {e}", flush=True)
        return {"model": cls.__name__, "config": m._config(), "refused": str(e)}
    t1 = time.perf_counter()
    res = m.evaluate(ds.test, (20,), ("recall", "ndcg"))
    t2 = time.perf_counter()
    out = {"model": cls.__name__, "config": m._config(), "recall@20": res["recall@20"],
           "ndcg@20": res["ndcg@20"], "fit_s": t1 - t0, "eval_s": t2 - t1, "total_s": t2 - t0}
    print(f"{cls.__name__} {params}: Recall@20 {out['recall@20']:.4f}  NDCG@20 "
          f"{out['ndcg@20']:.4f}  fit {out['fit_s']:.1f} s  evaluation {out['eval_s']:.1f} s  "
          f"total {out['total_s']:.1f} s", flush=True)
    return out


def _held_back(ds, fraction):
    """(R0, pairs, sample): the training CSR without a seeded ``fraction`` of
    its pairs, those pairs in original ids, 1,024 sampled users."""
    from hopkit.csr import CSR

    R = ds.train
    rng = np.random.default_rng(0)
    hold = rng.random(R.nnz) < fraction
    u, i = R.row_ids(), np.asarray(R.indices)
    R0 = CSR.from_coo(u[~hold], i[~hold], None, shape=R.shape)
    pairs = (np.asarray(ds.user_ids)[u[hold]], np.asarray(ds.item_ids)[i[hold]])
    sample = np.sort(rng.choice(R.shape[0], 1024, replace=False))
    print(f"held back {int(hold.sum())} of {R.nnz} training pairs", flush=True)
    return R0, pairs, sample


def run_partial(ds, args):
    import hopkit.models as hm

    R = ds.train
    R0, pairs, sample = _held_back(ds, args.hold)
    classes = {"graph-filter": hm.GraphFilter, "turbo-cf": hm.TurboCF, "itemknn": hm.ItemKNN,
               "bspm": hm.BSPM, "chebycf": hm.ChebyCF}
    out = []
    for name in args.models.split(","):
        if name == "lightgcn":
            out.append(run_partial_lightgcn(ds, R0, pairs, args))
            continue
        cls = classes[name]
        opts = {} if args.partial_iter is None or name in ("turbo-cf", "itemknn") else \
            {"n_iter": args.partial_iter}
        t_upd, t_fit = [], []
        for _ in range(args.repeats):  # interleaved: a busy machine hurts both alike
            base = cls().fit(R0)
            t0 = time.perf_counter()
            base.partial_fit(pairs, **opts)
            t_upd.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            full = cls().fit(R)
            t_fit.append(time.perf_counter() - t0)
        t_upd, t_fit = float(np.median(t_upd)), float(np.median(t_fit))
        Sa, Sb = base.score_block(sample), full.score_block(sample)
        rel = float(np.linalg.norm(Sa - Sb) / np.linalg.norm(Sb))
        qa = base.evaluate(ds.test, (20,), ("recall", "ndcg"))
        qb = full.evaluate(ds.test, (20,), ("recall", "ndcg"))
        rec = {"model": name, "options": opts, "update_s": t_upd, "refit_s": t_fit,
               "repeats": args.repeats, "score_rel_diff": rel, "partial": qa, "refit": qb,
               "last_update": base.last_update}
        print(f"{name} {opts}: partial_fit {t_upd:.2f} s (R@20 {qa['recall@20']:.4f} N@20 "
              f"{qa['ndcg@20']:.4f}) vs refit {t_fit:.2f} s (R@20 {qb['recall@20']:.4f} "
              f"N@20 {qb['ndcg@20']:.4f}), medians of {args.repeats}, refit / update "
              f"{t_fit / t_upd:.1f}x; score rel. diff {rel:.2e}", flush=True)
        out.append(rec)
    return out


def run_partial_lightgcn(ds, R0, pairs, args):
    """LightGCN trained ``--lgcn-epochs`` epochs on the 99%, the held-back
    pairs added by partial_fit (``--lgcn-steps`` steps on the touched rows),
    against a retrain from scratch on all pairs with the same epochs."""
    from hopkit.models import LightGCN

    def make():
        return LightGCN(dim=64, layers=3, lr=args.lr, batch_size=args.batch_size, seed=0)

    E = args.lgcn_epochs
    t0 = time.perf_counter()
    base = make().fit(R0, epochs=E, eval_every=0, progress=False)
    t_base = time.perf_counter() - t0
    q0 = base.evaluate(ds.test, (20,), ("recall", "ndcg"))
    t0 = time.perf_counter()
    base.partial_fit(pairs, steps=args.lgcn_steps)
    t_upd = time.perf_counter() - t0
    qa = base.evaluate(ds.test, (20,), ("recall", "ndcg"))
    t0 = time.perf_counter()
    full = make().fit(ds.train, epochs=E, eval_every=0, progress=False)
    t_fit = time.perf_counter() - t0
    qb = full.evaluate(ds.test, (20,), ("recall", "ndcg"))
    losses = base.update_losses
    rec = {"model": "lightgcn", "epochs": E, "steps": args.lgcn_steps, "lr": args.lr,
           "batch_size": args.batch_size, "base_fit_s": t_base, "update_s": t_upd,
           "refit_s": t_fit, "before": q0, "partial": qa, "refit": qb,
           "touched_rows": int(len(base.touched_rows)), "loss_first": losses[0] if losses
           else None, "loss_last": losses[-1] if losses else None,
           "last_update": base.last_update}
    print(f"lightgcn ({E} epochs, batch {args.batch_size}, lr {args.lr}): on 99% "
          f"R@20 {q0['recall@20']:.4f} N@20 {q0['ndcg@20']:.4f} ({t_base:.1f} s); "
          f"partial_fit {args.lgcn_steps} steps on {len(base.touched_rows)} touched rows "
          f"{t_upd:.1f} s (R@20 {qa['recall@20']:.4f} N@20 {qa['ndcg@20']:.4f}, loss "
          f"{rec['loss_first']:.4f} -> {rec['loss_last']:.4f}) vs retrain {t_fit:.1f} s "
          f"(R@20 {qb['recall@20']:.4f} N@20 {qb['ndcg@20']:.4f}); retrain / update "
          f"{t_fit / t_upd:.1f}x", flush=True)
    return rec


def run_lightgcn(ds, args):
    from hopkit.models import LightGCN

    m = LightGCN(dim=64, layers=3, lr=args.lr, reg=args.reg, batch_size=args.batch_size,
                 sampling=args.sampling, init_std=args.init_std, ema=args.ema, seed=0)
    t0 = time.perf_counter()
    curve = []
    deadline = t0 + 60 * args.budget_min
    decay_at = sorted(int(e) for e in args.decay_at.split(",") if e) if args.decay_at else []
    done = 0
    while done < args.epochs and time.perf_counter() < deadline:
        n = min(args.eval_every - done % args.eval_every, args.epochs - done,
                *[e - done for e in decay_at if e > done])
        m.fit(ds, epochs=n, eval_every=0, progress=False)
        done += n
        if done in decay_at:  # step decay: the next fit call runs Adam (state kept) at m.lr
            m.lr *= args.decay
            print(f"epoch {done}: lr -> {m.lr:.2e}", flush=True)
            if done % args.eval_every:
                continue
        res = m.evaluate(ds.test, (20,), ("recall", "ndcg"))
        rec = {"epoch": m.epoch, "wall_s": time.perf_counter() - t0,
               "loss": m.history[-1]["loss"], **res}
        curve.append(rec)
        print(f"epoch {rec['epoch']:4d}  {rec['wall_s']:8.0f} s  loss {rec['loss']:.4f}  "
              f"Recall@20 {res['recall@20']:.4f}  NDCG@20 {res['ndcg@20']:.4f}", flush=True)
    return {"model": "LightGCN", "batch_size": args.batch_size, "lr": args.lr, "reg": args.reg,
            "sampling": args.sampling, "init_std": args.init_std, "ema": args.ema,
            "decay_at": decay_at,
            "decay": args.decay, "curve": curve}


def run_speed(ds, args):
    import torch
    import torch.nn.functional as F
    from hopkit.models import LightGCN
    from hopkit.models.lightgcn import batch_l2
    from torch_geometric.nn import LGConv

    R = ds.train
    U, n_items = R.shape
    N = U + n_items
    bs, n_batches = args.batch_size, args.batches
    t = time.perf_counter()
    users, pos, neg = hopkit.bpr_triples(R, seed=0)
    t_sample = time.perf_counter() - t
    per_epoch = -(-R.nnz // bs)
    A = hopkit.bipartite_adjacency(R)  # rows = targets, D^-1/2 A D^-1/2
    edge_index = torch.from_numpy(A.to_edge_index())
    edge_weight = torch.from_numpy(np.array(A.values))

    g = torch.Generator().manual_seed(0)
    E0 = torch.randn(N, 64, generator=g) * 0.1

    def gathered_loss(E, emb, u, p, n):  # PyG / LightGCN-PyTorch style
        u, p, n = (torch.from_numpy(a) for a in (u, p, n))
        eu, ep, en = E[u], E[p], E[n]
        loss = F.softplus((eu * en).sum(1) - (eu * ep).sum(1)).mean()
        return loss + 1e-4 * 0.5 * (emb[u].pow(2).sum() + emb[p].pow(2).sum()
                                    + emb[n].pow(2).sum()) / len(u)

    def fused_loss(E, emb, u, p, n):  # as hopkit.models.LightGCN.train_step
        return hopkit.bpr_loss(E, E, u, p, n) + 1e-4 * batch_l2(emb, u, p, n) / len(u)

    def make_step(propagate, bpr):
        emb = torch.nn.Parameter(E0.clone())
        opt = torch.optim.Adam([emb], lr=1e-3)

        def step(b):
            sl = slice(b * bs, (b + 1) * bs)
            u, p, n = users[sl].astype(np.int64), pos[sl] + U, neg[sl] + U
            loss = bpr(propagate(emb), emb, u, p, n)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return float(loss.detach())

        return step

    def hop(emb):
        return hopkit.propagate(A, emb, layers=3, combine="mean")

    conv_norm, conv_pre = LGConv(normalize=True), LGConv(normalize=False)

    def pyg_shipped(emb):  # as torch_geometric.nn.models.LightGCN: normalises every call
        out, h = emb, emb
        for _ in range(3):
            h = conv_norm(h, edge_index)
            out = out + h
        return out / 4

    def pyg_pre(emb):
        out, h = emb, emb
        for _ in range(3):
            h = conv_pre(h, edge_index, edge_weight)
            out = out + h
        return out / 4

    # same forward on all three (checks the PyG graph orientation and weights)
    with torch.no_grad():
        a, b, c = hop(E0), pyg_shipped(E0), pyg_pre(E0)
    assert torch.allclose(a, b, atol=1e-4) and torch.allclose(a, c, atol=1e-4), \
        "hopkit and PyG propagation disagree"
    steps = {"hopkit": make_step(hop, fused_loss),
             "hopkit propagate + torch gathers": make_step(hop, gathered_loss),
             "PyG LGConv (normalize=True, as shipped)": make_step(pyg_shipped, gathered_loss),
             "PyG LGConv (precomputed weights)": make_step(pyg_pre, gathered_loss)}
    times = {k: [] for k in steps}
    losses = {k: [] for k in steps}
    for st in steps.values():  # warm-up
        st(0)
    for b in range(1, n_batches + 1):  # interleaved: a busy machine hurts all alike
        for name, st in steps.items():
            t = time.perf_counter()
            losses[name].append(st(b))
            times[name].append(time.perf_counter() - t)
    # the hopkit model class's own epoch on the same batches (its timer phases)
    m = LightGCN(dim=64, layers=3, batch_size=bs)
    m.fit(R, epochs=1, max_batches=n_batches, progress=False)
    out = {"batch_size": bs, "batches_timed": n_batches, "batches_per_epoch": per_epoch,
           "sampling_s": t_sample, "threads": hopkit.get_num_threads(), "rows": []}
    base = float(np.median(times["hopkit"]))
    print(f"LightGCN d=64 L=3 batch {bs}: {n_batches} batches each, interleaved, "
          f"{hopkit.get_num_threads()} threads; sampling an epoch of triples {t_sample:.2f} s")
    for name, ts in times.items():
        med = float(np.median(ts))
        ep = med * per_epoch + t_sample
        row = {"impl": name, "median_batch_s": med, "epoch_s_est": ep, "ratio_vs_hopkit":
               med / base, "first_loss": losses[name][0], "last_loss": losses[name][-1]}
        out["rows"].append(row)
        print(f"  {name:42s} {1e3 * med:8.1f} ms/batch  epoch ~{ep:7.1f} s  "
              f"x{med / base:5.2f} vs hopkit  (loss {losses[name][0]:.4f} -> "
              f"{losses[name][-1]:.4f})", flush=True)
    print("  hopkit LightGCN.fit phases (ms per call; sampling is once per epoch): " + ", ".join(
        f"{k} {1e3 * s / max(c, 1):.1f}" for k, s, c in m.timer.rows()))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("part", choices=["gf", "speed", "lightgcn", "all", "filters", "partial",
                                     *FILTERS],
                   nargs="?", default="gf")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="a filter model's hyperparameter (repeatable)")
    p.add_argument("--data", default=DEFAULT_DATA, help="directory with train.txt and test.txt")
    p.add_argument("--rank", type=int, default=256, help="GF-CF singular vectors")
    p.add_argument("--n-iter", type=int, default=4, help="randomized SVD power iterations")
    p.add_argument("--batch-size", type=int, default=2048, help="BPR triples per batch")
    p.add_argument("--batches", type=int, default=20, help="speed: timed batches per impl")
    p.add_argument("--epochs", type=int, default=1000, help="lightgcn: maximum epochs")
    p.add_argument("--budget-min", type=float, default=120.0, help="lightgcn: wall-time budget")
    p.add_argument("--eval-every", type=int, default=10, help="lightgcn: epochs between evals")
    p.add_argument("--lr", type=float, default=1e-3, help="lightgcn: Adam learning rate")
    p.add_argument("--reg", type=float, default=1e-4,
                   help="lightgcn: L2 weight on the batch's layer-0 embeddings")
    p.add_argument("--ema", type=float, default=0.0,
                   help="lightgcn: moving-average decay of the weights evaluated (0: off)")
    p.add_argument("--init-std", type=float, default=0.1,
                   help="lightgcn: std of the normal initial embeddings")
    p.add_argument("--sampling", default="pairs", choices=["users", "pairs"],
                   help="lightgcn: BPR triples per epoch (hopkit.bpr_triples)")
    p.add_argument("--decay-at", default="", help="lightgcn: epochs (comma separated) after "
                   "which the learning rate is multiplied by --decay")
    p.add_argument("--decay", type=float, default=0.2, help="lightgcn: learning-rate factor")
    p.add_argument("--models", default="graph-filter,turbo-cf",
                   help="partial: comma-separated models")
    p.add_argument("--hold", type=float, default=0.01, help="partial: fraction held back")
    p.add_argument("--repeats", type=int, default=3,
                   help="partial: update and refit timed this many times (medians)")
    p.add_argument("--partial-iter", type=int, default=None,
                   help="partial: n_iter of the SVD models' update (default: the model's)")
    p.add_argument("--lgcn-epochs", type=int, default=5,
                   help="partial, model lightgcn: training epochs of the base and the retrain")
    p.add_argument("--lgcn-steps", type=int, default=100,
                   help="partial, model lightgcn: partial_fit steps on the touched rows")
    p.add_argument("--json", help="append the results as one JSON line to this file")
    args = p.parse_args(argv)
    if not os.path.isdir(args.data):
        print(f"data not found: {args.data}", file=sys.stderr)
        return 2
    t = time.perf_counter()
    ds = load(args.data)
    print(f"{ds.summary()} (loaded in {time.perf_counter() - t:.1f} s; hopkit "
          f"{hopkit.__version__}, {hopkit.get_num_threads()} threads)", flush=True)
    results = {}
    if args.part in ("gf", "all"):
        results["gf"] = run_gf(ds, args)
    if args.part in FILTERS:
        results[args.part] = run_filter(ds, args.part, parse_sets(args.set))
    if args.part == "filters":
        results["filters"] = [run_filter(ds, part, params) for part, params in (
            ("turbo-cf", {}), ("bspm", {}), ("bspm", {"merge": "late"}), ("chebycf", {}),
            ("itemknn", {}))]
    if args.part == "partial":
        results["partial"] = run_partial(ds, args)
    if args.part in ("speed", "all"):
        results["speed"] = run_speed(ds, args)
    if args.part in ("lightgcn", "all"):
        results["lightgcn"] = run_lightgcn(ds, args)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
