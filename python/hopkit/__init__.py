"""hopkit: fast CSR message passing, fused neighbour aggregation and top-K
retrieval for GNN recommenders. See README.md and docs/."""

from ._config import __version__, config, get_num_threads, set_num_threads, show_config
from .csr import CSR, as_csr, bipartite_adjacency
from .ops import sddmm, spmm
from .ops import ItemIndex, topk

__all__ = [
    "CSR",
    "ItemIndex",
    "__version__",
    "as_csr",
    "bipartite_adjacency",
    "config",
    "get_num_threads",
    "sddmm",
    "set_num_threads",
    "show_config",
    "spmm",
    "topk",
]
