"""hopkit: fast CSR message passing, fused neighbour aggregation and top-K
retrieval for GNN recommenders. See README.md and docs/."""

from ._config import __version__, config, get_num_threads, set_num_threads, show_config
from .csr import CSR, as_csr, bipartite_adjacency
from .ops import (
    ItemIndex,
    attention_aggregate,
    bpr_triples,
    evaluate,
    propagate,
    sample_negatives,
    sddmm,
    spmm,
    topk,
    topk_scores,
)

__all__ = [
    "CSR",
    "ItemIndex",
    "__version__",
    "as_csr",
    "attention_aggregate",
    "bipartite_adjacency",
    "bpr_triples",
    "config",
    "evaluate",
    "get_num_threads",
    "propagate",
    "sample_negatives",
    "sddmm",
    "set_num_threads",
    "show_config",
    "spmm",
    "topk",
    "topk_scores",
]
