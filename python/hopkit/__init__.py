"""hopkit: fast CSR message passing, fused neighbour aggregation and top-K
retrieval for GNN recommenders. See README.md and docs/."""

from ._config import __version__, config, get_num_threads, set_num_threads, show_config
from .csr import CSR, as_csr, bipartite_adjacency
from .ops import (  # noqa: I001
    attention_aggregate,
    bpr_triples,
    propagate,
    sample_negatives,
    sddmm,
    spmm,
)

__all__ = [
    "CSR",
    "attention_aggregate",
    "propagate",
    "__version__",
    "as_csr",
    "bipartite_adjacency",
    "bpr_triples",
    "config",
    "get_num_threads",
    "sample_negatives",
    "sddmm",
    "set_num_threads",
    "show_config",
    "spmm",
]
