"""hopkit: fast CSR message passing, fused neighbour aggregation and top-K
retrieval for GNN recommenders. See README.md and docs/."""

from ._config import __version__, config, get_num_threads, set_num_threads, show_config
from .csr import CSR, as_csr, bipartite_adjacency
from .ops import ItemIndex, attention_aggregate, evaluate, propagate, sddmm, spmm, topk  # noqa: I001

__all__ = [
    "CSR",
    "ItemIndex",
    "attention_aggregate",
    "propagate",
    "__version__",
    "as_csr",
    "bipartite_adjacency",
    "config",
    "evaluate",
    "get_num_threads",
    "sddmm",
    "set_num_threads",
    "show_config",
    "spmm",
    "topk",
]
