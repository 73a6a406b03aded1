"""A/B regression check: the same hopkit calls timed under two checkouts.

    python benchmarks/ab_regression.py OLD_PYTHON_DIR NEW_PYTHON_DIR [--rounds 3]

Each round runs one subprocess per checkout (PYTHONPATH set to its python/
folder), alternating old, new, old, new, ..., so that load from other jobs
falls on both alike; each subprocess reports the median of 7 calls per case
on the Gowalla-shaped graph (F = 64, float32, 2 threads). Printed: per case
the median over rounds of each checkout and new / old (< 1: faster now).
"""

from __future__ import annotations

import json
import subprocess
import sys

CASES = r"""
import json, sys, numpy as np, torch, hopkit
from hopkit.bench._common import gowalla_graph, timeit
torch.set_num_threads(2)
R, A = gowalla_graph()
rng = np.random.default_rng(0)
X = rng.standard_normal((A.n_rows, 64)).astype(np.float32)
Xt = torch.from_numpy(X).requires_grad_()
row, col = R.row_ids(), np.asarray(R.indices, dtype=np.int64)
perm = rng.permutation(R.nnz)
u = torch.from_numpy(row[:8192].astype(np.int64))
p = torch.from_numpy(col[:8192] + R.n_rows)
n = torch.from_numpy(rng.integers(0, R.n_cols, 8192) + R.n_rows)
Q = rng.standard_normal((2048, 64)).astype(np.float32)
V = rng.standard_normal((R.n_cols, 64)).astype(np.float32)
ex = hopkit.CSR(R.indptr[:2049], R.indices[:R.indptr[2048]], shape=(2048, R.n_cols))

def fwd_bwd(f):
    def go():
        Xt.grad = None
        f().sum().backward()
    return go

cases = {
    "spmm sum fwd (NumPy)": lambda: hopkit.spmm(A, X),
    "spmm sum fwd+bwd (torch)": fwd_bwd(lambda: hopkit.spmm(A, Xt)),
    "spmm max fwd+bwd (torch)": fwd_bwd(lambda: hopkit.spmm(A, Xt, "max")),
    "propagate 3 fwd (NumPy)": lambda: hopkit.propagate(A, X, 3),
    "propagate 3 fwd (torch)": lambda: hopkit.propagate(A, Xt.detach(), 3),
    "propagate 3 fwd+bwd (torch)": fwd_bwd(lambda: hopkit.propagate(A, Xt, 3)),
    "bpr_loss B=8192 fwd+bwd": fwd_bwd(lambda: hopkit.bpr_loss(Xt, Xt, u, p, n)),
    "topk 2048 users k=20 excl": lambda: hopkit.topk(Q, V, 20, exclude=ex),
    "COO->CSR 1M": lambda: hopkit.CSR.from_coo(row[perm], col[perm], shape=R.shape),
}
print(json.dumps({k: timeit(f, repeats=7, warmup=2)[0] for k, f in cases.items()}))
"""


def run(python_dir):
    out = subprocess.run([sys.executable, "-c", CASES], env={"PYTHONPATH": python_dir,
                         "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"},
                         capture_output=True, text=True, timeout=900, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    import argparse

    import numpy as np

    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    res = {"old": [], "new": []}
    for _ in range(a.rounds):
        for side in ("old", "new"):
            res[side].append(run(getattr(a, side)))
    print(f"{'case':<32} {'old ms':>9} {'new ms':>9} {'new/old':>8}")
    for case in res["old"][0]:
        o = float(np.median([r[case] for r in res["old"]])) * 1e3
        n = float(np.median([r[case] for r in res["new"]])) * 1e3
        print(f"{case:<32} {o:9.2f} {n:9.2f} {n / o:8.2f}")


if __name__ == "__main__":
    main()
