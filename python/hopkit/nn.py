"""torch modules built on hopkit's kernels (drop-in for PyG-style layers)."""

from __future__ import annotations

import numpy as np
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


def _mlp(n_in, n_hidden, n_out):
    return torch.nn.Sequential(torch.nn.Linear(n_in, n_hidden), torch.nn.ReLU(),
                               torch.nn.Linear(n_hidden, n_out))


class GraphNetworkBlock(torch.nn.Module):
    """The graph-network block of Distill's "A Gentle Introduction to Graph
    Neural Networks": edge, node and global updates with small MLPs.

    ``forward(A, x, e, u)`` with A a hopkit.CSR (rows are targets; scipy /
    torch sparse accepted), node features x [N, node_dim], edge features e
    [nnz, edge_dim] in A's CSR order, global features u [global_dim] or
    [1, global_dim]; returns (x', e', u') on the same nodes and edges (A is
    unchanged):

    * edge update  ``e'_ij = MLP_e([e_ij, x_j, x_i, u])`` (source j, target i);
    * node update  ``x'_i = MLP_v([x_i, agg_i, u])`` where ``agg_i`` is
      ``hopkit.spmm`` over the incoming edges with a message op:
      ``"add"`` (``reduce_j (W x_j + e'_ij)``), ``"mul"`` (``reduce_j W x_j * e'_ij``)
      or ``"edge"`` (``reduce_j e'_ij``, the edges alone), reduce
      ``"sum"|"mean"|"max"|"min"``;
    * global update ``u' = MLP_u([u, mean_i x'_i, mean_ij e'_ij])``.
    """

    MESSAGES = ("add", "mul", "edge")

    def __init__(self, node_dim, edge_dim, global_dim, node_out=None, edge_out=None,
                 global_out=None, hidden=64, reduce="sum", message="add"):
        super().__init__()
        if message not in self.MESSAGES:
            raise ValueError(f"GraphNetworkBlock: message must be one of {self.MESSAGES}, got "
                             f"{message!r}")
        if reduce not in ("sum", "mean", "max", "min"):
            raise ValueError("GraphNetworkBlock: reduce must be one of ('sum', 'mean', 'max', "
                             f"'min'), got {reduce!r}")
        node_out, edge_out = node_out or node_dim, edge_out or edge_dim
        global_out = global_out or global_dim
        self.reduce, self.message = reduce, message
        self.dims = (node_dim, edge_dim, global_dim)
        self.edge_mlp = _mlp(edge_dim + 2 * node_dim + global_dim, hidden, edge_out)
        self.node_lin = (torch.nn.Linear(node_dim, edge_out, bias=False)
                         if message != "edge" else None)
        self.node_mlp = _mlp(node_dim + edge_out + global_dim, hidden, node_out)
        self.global_mlp = _mlp(global_dim + node_out + edge_out, hidden, global_out)

    def forward(self, A, x, e, u):
        op = "GraphNetworkBlock"
        A = as_csr(A, op)
        u = u.reshape(1, -1)
        want = {"x": (A.n_rows, self.dims[0]), "e": (A.nnz, self.dims[1]),
                "u": (1, self.dims[2])}
        for name, t in (("x", x), ("e", e), ("u", u)):
            if tuple(t.shape) != want[name]:
                raise ValueError(f"{op}: {name} must have shape {want[name]}, got "
                                 f"{tuple(t.shape)}")
        if A.n_rows != A.n_cols:
            raise ValueError(f"{op}: A must be square (one node set), got shape {A.shape}")
        rows = torch.from_numpy(A.row_ids().astype(np.int64))
        cols = torch.from_numpy(A.indices.astype(np.int64))
        e_new = self.edge_mlp(torch.cat([e, x[cols], x[rows], u.expand(A.nnz, -1)], dim=1))
        if self.message == "edge":
            agg = spmm(A, None, self.reduce, e_new)
        else:
            agg = spmm(A, self.node_lin(x), self.reduce, e_new, message=self.message)
        x_new = self.node_mlp(torch.cat([x, agg, u.expand(A.n_rows, -1)], dim=1))
        pool = lambda t: t.mean(0, keepdim=True) if t.shape[0] else t.new_zeros(1, t.shape[1])  # noqa: E731
        u_new = self.global_mlp(torch.cat([u, pool(x_new), pool(e_new)], dim=1))
        return x_new, e_new, u_new
