"""bpr_loss: hopkit's fused BPR loss vs the torch code GNN recommenders use.

Case: the LightGCN training step's loss on one [users; items] table of the
Gowalla-shaped graph (29,858 + 40,981 rows, F = 64, float32), forward +
backward (the dense gradient of the table), for batches of 2,048 / 8,192 /
65,536 triples: training pairs drawn in random order, one uniform negative
each. Peers, all computing the same loss and gradient (checked before timing):

* ``E[u], E[p], E[n]`` advanced indexing, ``(eu * ep).sum(1)``,
  ``F.softplus(neg - pos).mean()`` (LightGCN-PyTorch, RecBole, PyG's
  ``LightGCN.recommendation_loss`` after their gathers);
* one ``index_select`` of the concatenated ids, split in three (what
  ``hopkit.models.LightGCN`` ran before ``bpr_loss``: index_add backward);
* hopkit's Numba backend.

Timed round-robin (one call of each per round, 21 rounds, medians), so that
load from other processes falls on every implementation alike.

Byte model (``bw``, the fraction of measured copy bandwidth): the forward
reads 3 rows per triple, the backward 4 (2 for the user's row, 1 for each
item's) and writes the whole [N, F] gradient once: (7 B F + N F) x 4 bytes
plus the ids.
"""

from __future__ import annotations

import numpy as np

import hopkit

from ._common import copy_bandwidth, gowalla_graph, row, timeit_interleaved

GROUP = "bpr"
BATCHES = (2048, 8192, 65536)


def batch(R, B, rng):
    """(users, pos, neg) as rows of the [users; items] table."""
    e = rng.choice(R.nnz, size=B, replace=False)
    u = R.row_ids()[e].astype(np.int64)
    p = R.indices[e].astype(np.int64) + R.n_rows
    n = rng.integers(0, R.n_cols, size=B) + R.n_rows
    return u, p, n


def peers(torch, E, u, p, n):
    import torch.nn.functional as F

    ut, pt, nt = (torch.from_numpy(a) for a in (u, p, n))
    idx = torch.cat([ut, pt, nt])

    def gather_indexing(x):
        eu, ep, en = x[ut], x[pt], x[nt]
        return F.softplus((eu * en).sum(1) - (eu * ep).sum(1)).mean()

    def gather_index_select(x):
        eu, ep, en = x.index_select(0, idx).split(len(u))
        return F.softplus((eu * en).sum(1) - (eu * ep).sum(1)).mean()

    fns = {"hopkit": lambda x: hopkit.bpr_loss(x, x, u, p, n),
           "torch E[u], E[p], E[n] + softplus": gather_indexing,
           "torch index_select + softplus": gather_index_select}
    if hopkit.config()["backends"]["numba"]:
        fns["hopkit numba backend"] = lambda x: hopkit.bpr_loss(x, x, u, p, n, backend="numba")
    return fns


def step(f, E):
    def run():
        x = E.detach().requires_grad_(True)
        f(x).backward()
        return x.grad
    return run


def run_bpr(torch, repeats, F=64):
    R, _ = gowalla_graph()
    N = R.n_rows + R.n_cols
    bw = copy_bandwidth()
    rng = np.random.default_rng(0)
    E = torch.from_numpy(rng.standard_normal((N, F)).astype(np.float32) * 0.1)
    rows = []
    for B in BATCHES:
        u, p, n = batch(R, B, rng)
        fns = peers(torch, E, u, p, n)
        want = step(fns["torch index_select + softplus"], E)()
        for f in fns.values():
            torch.testing.assert_close(step(f, E)(), want, rtol=1e-4, atol=1e-7)
        nbytes = (7 * B * F + N * F) * 4 + 3 * B * 8
        case = f"BPR loss fwd+bwd B={B} F={F} (table {N} rows)"
        times = timeit_interleaved({k: step(f, E) for k, f in fns.items()}, repeats)
        for name, t in times.items():
            extra = {"bw": nbytes / t / bw} if name == "hopkit" else {}
            rows.append(row(GROUP, case, name, t, **extra))
    return rows


def run(quick=False):
    try:
        import torch
    except ImportError:
        print("[bpr] needs torch")
        return []
    print(f"[bpr] copy bandwidth {copy_bandwidth() / 1e9:.1f} GB/s, "
          f"threads {hopkit.get_num_threads()}")
    return run_bpr(torch, 5 if quick else 21)


if __name__ == "__main__":
    from ._common import report

    report(run())
