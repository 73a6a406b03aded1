"""torch modules built on hopkit's operators, drop-ins for PyG layers.

Every adjacency a PyG layer takes is accepted, with PyG's meaning (rows of a
sparse matrix are targets, like PyG's ``adj_t``; messages in an
``edge_index`` flow from ``edge_index[0]`` to ``edge_index[1]``):

* a PyG ``edge_index`` [2, E]: duplicate edges, self-loops, directed edges and
  isolated nodes kept as they are; ``edge_weight`` [E] in edge_index column
  order;
* a torch sparse COO / CSR / CSC tensor, a ``torch_sparse.SparseTensor`` (when
  torch_sparse is installed) or a ``hopkit.CSR``: its values are the weights.

Nothing is cached between calls unless a module is built with
``cached=True`` (as PyG's ``GCNConv``): then the first call's normalised graph
is reused until ``reset_parameters()`` (the caller promises the graph does not
change). The graph is built by hopkit's operators on every call otherwise, so
a module can never answer for a graph other than the one passed.

CPU and CUDA tensors alike run on hopkit's torch operators (what
torch.compile traces): an ``edge_index`` is grouped on its device by
``hopkit::edge_index_csr``; a sparse matrix or ``hopkit.CSR`` becomes a CSR on
the host whose tensors are uploaded to x's device once (cached on the CSR).
"""

from __future__ import annotations

import torch

from .codes import MESSAGES, REDUCES
from .csr import CSR, as_csr, bipartite_adjacency  # noqa: F401
from .ops import attention_aggregate, propagate, spmm  # noqa: F401
from .torch_ops import graph as _g
from .torch_ops.propagate import propagate as _propagate_op
from .torch_ops.spmm import spmm_graph

_SPARSE = (torch.sparse_coo, torch.sparse_csr, torch.sparse_csc)


def _is_sparse_tensor(adj) -> bool:
    return type(adj).__name__ == "SparseTensor" and type(adj).__module__.startswith(
        "torch_sparse")


def _is_edge_index(adj) -> bool:
    return isinstance(adj, torch.Tensor) and adj.layout == torch.strided


def _check_edge_index(op, adj, edge_weight, dtype):
    if adj.dim() != 2 or adj.shape[0] != 2:
        raise ValueError(f"{op}: edge_index must have shape (2, num_edges), got "
                         f"{tuple(adj.shape)}")
    if adj.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{op}: edge_index must be int32 or int64, got {adj.dtype}")
    if edge_weight is not None:
        if tuple(edge_weight.shape) != (adj.shape[1],):
            raise ValueError(f"{op}: edge_weight must have shape ({adj.shape[1]},) (one "
                             f"per edge_index column), got {tuple(edge_weight.shape)}")
        if edge_weight.dtype != dtype:
            raise TypeError(f"{op}: edge_weight must have the dtype of x ({dtype}), got "
                            f"{edge_weight.dtype}")


def _host(t):
    return t if t.device.type == "cpu" else t.cpu()


def adjacency(op, adj, num_nodes, edge_weight, dtype, device):
    """(Graph, weights or None) for any adjacency a PyG layer takes; weights in
    the graph's edge order (edge_index column order for an edge_index). The
    Graph's tensors are on ``device`` (x's)."""
    if _is_edge_index(adj):
        _check_edge_index(op, adj, edge_weight, dtype)
        return _g.from_edge_index(adj.to(device), num_nodes), edge_weight
    if edge_weight is not None:
        raise ValueError(f"{op}: edge_weight is for an edge_index; a sparse adjacency carries "
                         "its weights as its values")
    if _is_sparse_tensor(adj):
        rowptr, col, value = adj.csr()
        A = CSR(rowptr, col, None if value is None else value.detach().to(dtype),
                tuple(adj.sizes()))
    elif isinstance(adj, torch.Tensor) and adj.layout in _SPARSE:
        if adj.dim() != 2:
            raise ValueError(f"{op}: a sparse adjacency must be 2-D, got {adj.dim()}-D")
        t = _host(adj.to_sparse_csr() if adj.layout != torch.sparse_csr else adj)
        A = CSR(t.crow_indices(), t.col_indices(), t.values().detach().to(dtype), tuple(t.shape))
    else:
        A = as_csr(adj, op)
    if A.n_rows != num_nodes or A.n_cols != num_nodes:
        raise ValueError(f"{op}: the adjacency must be {num_nodes} x {num_nodes} (x has "
                         f"{num_nodes} rows), got {A.shape}")
    return _g.from_csr(A, device), _g.values_of(A, dtype, device)


def gcn_norm(g, w, n, dtype):
    """PyG's ``gcn_norm`` without self-loops, in torch ops (so the gradient
    wrt edge_weight flows through the degrees): deg_i = sum of the weights
    into target i, w_ij / sqrt(deg_i deg_j), 0 where a degree is 0."""
    rows = _row_ids(g)
    cols = g.indices.to(torch.int64)
    if g.eid is not None:  # weights in edge_index order: targets/sources per edge
        rows, cols = rows.new_empty(rows.shape).index_copy_(0, g.eid, rows), \
            cols.new_empty(cols.shape).index_copy_(0, g.eid, cols)
    if w is None:
        w = torch.ones(rows.shape[0], dtype=dtype, device=g.indptr.device)
    rows, cols = rows.to(w.device), cols.to(w.device)
    deg = torch.zeros(n, dtype=dtype, device=w.device).index_add(0, rows, w)
    dinv = deg.pow(-0.5).masked_fill(deg == 0, 0.0)
    return dinv[cols] * w * dinv[rows]


def _row_ids(g):
    deg = g.indptr[1:] - g.indptr[:-1]
    return torch.repeat_interleave(torch.arange(g.n_rows, device=deg.device), deg,
                                   output_size=g.indices.size(0))  # .size: _graph_constant


class _GraphModule(torch.nn.Module):
    """Shared adjacency handling (and the opt-in cache) of the conv modules."""

    def __init__(self, normalize, cached=False):
        super().__init__()
        self.normalize, self.cached = normalize, cached
        self._cached_graph = None

    def reset_parameters(self):
        self._cached_graph = None

    def _graph(self, x, adj, edge_weight):
        _g.refuse_forward_ad(type(self).__name__, (x, edge_weight))
        if self._cached_graph is not None:
            return self._cached_graph
        g, w = adjacency(type(self).__name__, adj, x.shape[0], edge_weight, x.dtype, x.device)
        if self.normalize:
            w = gcn_norm(g, w, x.shape[0], x.dtype)
        if self.cached:
            self._cached_graph = (g, w)
        return g, w


class LGConv(_GraphModule):
    """LightGCN convolution, PyG's ``torch_geometric.nn.LGConv``:
    ``x'_i = sum_{j -> i} e_ji / sqrt(deg_i deg_j) x_j`` with ``normalize=True``
    (the default; deg = weighted in-degree), ``sum_{j -> i} e_ji x_j`` without.

    ``forward(x, adj, edge_weight=None)``: any adjacency of the module
    docstring. ``cached=True`` reuses the first call's normalised graph."""

    def __init__(self, normalize: bool = True, cached: bool = False):
        super().__init__(normalize, cached)
        self.aggr, self.flow, self.node_dim = "add", "source_to_target", -2

    def forward(self, x, adj, edge_weight=None):
        g, w = self._graph(x, adj, edge_weight)
        msg = MESSAGES["mul"] if w is not None else MESSAGES["copy"]
        return spmm_graph(g, x, w, msg, REDUCES["sum"], False, None)[0]

    def __repr__(self):
        return f"{type(self).__name__}()"


class SpMM(_GraphModule):
    """``Y_i = reduce_{j -> i} w_ji X_j`` as a module; ``forward(X, adj,
    edge_weight=None)`` takes any adjacency of the module docstring."""

    def __init__(self, reduce="sum"):
        if reduce not in REDUCES:
            raise ValueError(f"SpMM: reduce must be one of {tuple(REDUCES)}, got {reduce!r}")
        super().__init__(normalize=False)
        self.reduce = reduce

    def forward(self, x, adj, edge_weight=None):
        g, w = self._graph(x, adj, edge_weight)
        msg = MESSAGES["mul"] if w is not None else MESSAGES["copy"]
        return spmm_graph(g, x, w, msg, REDUCES[self.reduce], False, None)[0]


class LightGCNPropagation(_GraphModule):
    """LightGCN's whole propagation, ``sum_l alpha_l A^l x`` over ``layers``
    hops (``combine="mean"``: alpha_l = 1 / (layers + 1)), in one fused call
    (``hopkit::propagate``); equal to a stack of PyG ``LGConv`` layers with
    the same combination, for any adjacency of the module docstring."""

    def __init__(self, layers=3, combine="mean", normalize=True, cached=False):
        from .ops.propagate import layer_weights

        super().__init__(normalize, cached)
        self.layers, self.combine = layers, combine
        self.register_buffer("alpha", torch.from_numpy(
            layer_weights("LightGCNPropagation", layers, combine)), persistent=False)

    def forward(self, x, adj, edge_weight=None):
        g, w = self._graph(x, adj, edge_weight)
        return _propagate_op(*g.args, x, w, None, self.alpha, "auto")


def _glorot(t):
    bound = (6.0 / (t.shape[-2] + t.shape[-1])) ** 0.5
    with torch.no_grad():
        t.uniform_(-bound, bound)


class GATConv(torch.nn.Module):
    """PyG's ``GATConv`` on ``hopkit::attention_aggregate`` (one fused pass,
    online softmax, no per-edge tensor):

    ``x'_i = sum_{j -> i} softmax_j(LeakyReLU(a_dst . W x_i + a_src . W x_j)) W x_j``
    per head, heads concatenated (``concat=True``) or averaged, plus bias,
    with PyG's parameters (``lin``, ``att_src``, ``att_dst``, ``bias``,
    ``res``), so a PyG ``GATConv`` state_dict loads as it is. Self-loops as
    PyG adds them (the graph's own removed, one per node appended) when
    ``add_self_loops``. ``forward(x, edge_index)`` takes any adjacency of the
    module docstring (rows of a sparse matrix are targets).

    Not supported (a clear error, not a silent difference): attention dropout
    (``dropout > 0``), edge features (``edge_dim``), bipartite
    ``in_channels`` tuples and ``return_attention_weights``.
    """

    def __init__(self, in_channels, out_channels, heads=1, concat=True, negative_slope=0.2,
                 dropout=0.0, add_self_loops=True, edge_dim=None, fill_value="mean", bias=True,
                 residual=False):
        super().__init__()
        op = "GATConv"
        if not isinstance(in_channels, int):
            raise ValueError(f"{op}: in_channels must be an int (bipartite (src, dst) channel "
                             f"pairs are not supported), got {in_channels!r}")
        if dropout:
            raise ValueError(f"{op}: attention dropout is not supported (the softmax is fused, "
                             f"no per-edge coefficients exist); pass dropout=0, got {dropout}")
        if edge_dim is not None:
            raise ValueError(f"{op}: edge features are not supported; pass edge_dim=None, got "
                             f"{edge_dim}")
        self.in_channels, self.out_channels, self.heads = in_channels, out_channels, heads
        self.concat, self.negative_slope, self.dropout = concat, negative_slope, dropout
        self.add_self_loops, self.edge_dim, self.fill_value = add_self_loops, None, fill_value
        self.residual = residual
        total = out_channels * (heads if concat else 1)
        self.lin = torch.nn.Linear(in_channels, heads * out_channels, bias=False)
        self.att_src = torch.nn.Parameter(torch.empty(1, heads, out_channels))
        self.att_dst = torch.nn.Parameter(torch.empty(1, heads, out_channels))
        self.res = torch.nn.Linear(in_channels, total, bias=False) if residual else None
        self.bias = torch.nn.Parameter(torch.empty(total)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        for lin in (self.lin, self.res):
            if lin is not None:
                _glorot(lin.weight)
        _glorot(self.att_src)
        _glorot(self.att_dst)
        if self.bias is not None:
            torch.nn.init.zeros_(self.bias)

    def forward(self, x, edge_index, edge_attr=None, size=None, return_attention_weights=None):
        op = "GATConv"
        if edge_attr is not None or return_attention_weights is not None:
            raise ValueError(f"{op}: edge_attr and return_attention_weights are not supported")
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            raise ValueError(f"{op}: x must be a 2-D tensor [num_nodes, in_channels]")
        _g.refuse_forward_ad(op, (x,))
        H, C, n = self.heads, self.out_channels, x.shape[0]
        g = self._graph(op, edge_index, n, x.device)
        h = self.lin(x)
        hh = h.view(-1, H, C)
        a_src, a_dst = (hh * self.att_src).sum(-1), (hh * self.att_dst).sum(-1)
        if g.n_rows > n:  # the self-loop graph's sink node (torch_ops.graph.from_edge_index)
            h, a_src, a_dst = (torch.nn.functional.pad(t, (0, 0, 0, 1)) for t in (h, a_src, a_dst))
        out = torch.ops.hopkit.attention_aggregate(
            g.indptr, g.indices, g.t_indptr, g.t_indices, g.n_cols, a_dst.contiguous(),
            a_src.contiguous(), h.contiguous(), H, 1, None, float(self.negative_slope),
            "auto")[0][:n]
        if not self.concat:
            out = out.view(-1, H, C).mean(dim=1)
        if self.res is not None:
            out = out + self.res(x)
        if self.bias is not None:
            out = out + self.bias
        return out

    def _graph(self, op, adj, n, device):
        if _is_edge_index(adj):
            _check_edge_index(op, adj, None, None)
        else:
            g, _ = adjacency(op, adj, n, None, torch.float64, device)
            if not self.add_self_loops:
                return g
            adj = torch.stack([g.indices.to(torch.int64), _row_ids(g)])  # as an edge_index
        return _g.from_edge_index(adj.to(device), n, self_loops=self.add_self_loops)

    def __repr__(self):
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"heads={self.heads})")


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
        g = _g.from_csr(A, x.device)
        rows, cols = _row_ids(g), g.indices.to(torch.int64)
        e_new = self.edge_mlp(torch.cat([e, x[cols], x[rows], u.expand(A.nnz, -1)], dim=1))
        if self.message == "edge":
            agg = spmm(A, None, self.reduce, e_new)
        else:
            agg = spmm(A, self.node_lin(x), self.reduce, e_new, message=self.message)
        x_new = self.node_mlp(torch.cat([x, agg, u.expand(A.n_rows, -1)], dim=1))
        pool = lambda t: t.mean(0, keepdim=True) if t.shape[0] else t.new_zeros(1, t.shape[1])  # noqa: E731
        u_new = self.global_mlp(torch.cat([u, pool(x_new), pool(e_new)], dim=1))
        return x_new, e_new, u_new
