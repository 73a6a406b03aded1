"""torch modules built on hopkit's kernels (drop-in for PyG-style layers)."""

from __future__ import annotations

import torch

from .csr import CSR, as_csr, bipartite_adjacency  # noqa: F401
from .ops import attention_aggregate, propagate, spmm  # noqa: F401


def _graph(adj, num_nodes, normalize, cache):
    """A hopkit.CSR from a CSR/scipy/torch sparse matrix or a PyG edge_index."""
    if isinstance(adj, torch.Tensor) and adj.layout == torch.strided:
        key = (adj.data_ptr(), tuple(adj.shape), num_nodes, normalize)
        if cache is not None and cache.get("key") == key:
            return cache["A"]
        A = CSR.from_edge_index(adj, num_nodes=num_nodes)
        if normalize:
            A = A.normalize("sym")
        if cache is not None:
            cache.update(key=key, A=A)
        return A
    A = as_csr(adj, "hopkit.nn")
    return A.normalize("sym") if normalize else A


class SpMM(torch.nn.Module):
    """``Y = reduce_j w_ij X[j]`` as a module; ``forward(X, adj, edge_weight=None)``
    takes a hopkit.CSR (rows are targets) or a PyG edge_index [2, E]."""

    def __init__(self, reduce="sum"):
        super().__init__()
        self.reduce = reduce
        self._cache = {}

    def forward(self, x, adj, edge_weight=None, num_nodes=None):
        A = _graph(adj, num_nodes if num_nodes is not None else x.shape[0], False, self._cache)
        return spmm(A, x, self.reduce, edge_weight)


class LGConv(torch.nn.Module):
    """LightGCN convolution, a drop-in for ``torch_geometric.nn.LGConv``:
    ``out = D^-1/2 A D^-1/2 x`` (with ``normalize=True``, the default).

    ``adj`` is a PyG ``edge_index`` (normalised once and cached while the same
    tensor is passed) or a hopkit.CSR (used as given when ``normalize`` is
    False, e.g. one built with ``bipartite_adjacency``)."""

    def __init__(self, normalize=True):
        super().__init__()
        self.normalize = normalize
        self._cache = {}

    def forward(self, x, adj, edge_weight=None):
        is_index = isinstance(adj, torch.Tensor) and adj.layout == torch.strided
        A = _graph(adj, x.shape[0], self.normalize and is_index, self._cache)
        if not is_index and self.normalize and A.values is None:
            A = A.normalize("sym")
        return spmm(A, x, "sum", edge_weight)


class LightGCNPropagation(torch.nn.Module):
    """LightGCN's whole propagation, ``sum_l alpha_l A^l x`` over ``layers``
    hops (``combine="mean"``: alpha_l = 1 / (layers + 1)), in one fused call
    (``hopkit.propagate``) instead of a stack of ``LGConv`` layers.

    ``adj`` is a PyG ``edge_index`` (symmetrically normalised once and cached
    while the same tensor is passed, like ``LGConv``) or a hopkit.CSR (used as
    given when ``normalize`` is False, e.g. one built with
    ``bipartite_adjacency``; normalised when it has no values)."""

    def __init__(self, layers=3, combine="mean", normalize=True):
        super().__init__()
        self.layers, self.combine, self.normalize = layers, combine, normalize
        self._cache = {}

    def forward(self, x, adj, edge_weight=None):
        is_index = isinstance(adj, torch.Tensor) and adj.layout == torch.strided
        A = _graph(adj, x.shape[0], self.normalize and is_index, self._cache)
        if not is_index and self.normalize and A.values is None:
            A = A.normalize("sym")
        return propagate(A, x, self.layers, self.combine, edge_weight)
