"""hopkit: fast CSR message passing, fused neighbour aggregation and top-K
retrieval for GNN recommenders. See README.md and docs/."""

import os as _os

# libgomp spins ~300k iterations (about a millisecond) before a waiting worker
# sleeps. On a shared machine a worker that loses its core then stalls every
# parallel region by a scheduler tick (COO->CSR measured 33 ms instead of
# 17 ms, small spmm calls 3x slower). A short spin keeps back-to-back regions
# fast on a dedicated machine and stops the stalls on a busy one. Set before
# hopkit._native (and its libgomp) loads; a user's own OMP_WAIT_POLICY or
# GOMP_SPINCOUNT wins. See docs/architecture.md.
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "10000"

from ._config import __version__, config, get_num_threads, set_num_threads, show_config
from .csr import CSR, as_csr, bipartite_adjacency
from .ops import (
    ItemIndex,
    attention_aggregate,
    bpr_loss,
    bpr_triples,
    evaluate,
    propagate,
    sample_negatives,
    sddmm,
    spmm,
    topk,
    topk_scores,
)
from .ops.evaluate import Comparison, PairedTest, compare, popularity_groups

__all__ = [
    "CSR",
    "Comparison",
    "ItemIndex",
    "PairedTest",
    "__version__",
    "as_csr",
    "attention_aggregate",
    "bipartite_adjacency",
    "bpr_loss",
    "bpr_triples",
    "compare",
    "config",
    "evaluate",
    "get_num_threads",
    "popularity_groups",
    "propagate",
    "sample_negatives",
    "sddmm",
    "set_num_threads",
    "show_config",
    "spmm",
    "topk",
    "topk_scores",
]
