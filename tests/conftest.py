import os

# hopkit's and torch's OpenMP runtimes spin-wait against each other otherwise (see cli.main)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hopkit
import numpy as np
import pytest
from hopkit import _backend

BACKENDS = [b for b, ok in (("native", _backend.native_module() is not None),
                            ("numba", _backend.numba_module() is not None)) if ok]
SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")


def power_law_graph(n_rows, n_cols, nnz, rng, index_dtype=np.int64, values=None, empty=()):
    """A random CSR with Zipf-like row and column degrees; rows in `empty` are
    left empty. Row 0 is made huge relative to the others when n_rows > 3."""
    pr = 1.0 / np.arange(1, n_rows + 1) ** 0.8
    pr[list(empty)] = 0
    pr /= pr.sum()
    pc = 1.0 / np.arange(1, n_cols + 1) ** 0.8
    pc /= pc.sum()
    rows = rng.choice(n_rows, size=nnz, p=pr)
    cols = rng.choice(n_cols, size=nnz, p=pc)
    vals = None
    if values is not None:
        vals = rng.uniform(0.1, 2.0, size=nnz).astype(values)
    A = hopkit.CSR.from_coo(rows.astype(index_dtype), cols.astype(index_dtype), vals,
                            shape=(n_rows, n_cols), sum_duplicates=False)
    return A


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def tol(dtype):
    return dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)


def write_lightgcn_split(d, n_users, n_items):
    """A small LightGCN-format split in folder d: user u has 5 training items
    and 1 test item, (u * 3 + j * 5) % n_items for j = 0..5."""
    d.mkdir(exist_ok=True)
    tr, te = [], []
    for u in range(n_users):
        items = [(u * 3 + j * 5) % n_items for j in range(6)]
        tr.append(f"{u} " + " ".join(map(str, sorted(set(items[:5])))))
        te.append(f"{u} {items[5]}")
    (d / "train.txt").write_text("\n".join(tr) + "\n")
    (d / "test.txt").write_text("\n".join(te) + "\n")
    return d
