"""The graph at the operator boundary: plain tensors, never a Python object.

A :class:`Graph` holds a CSR (``indptr``, ``indices``: rows are targets) and
its transpose (``t_indptr``, ``t_indices``), each with an optional edge-id map
(``eid``, ``t_eid``: the position in the caller's edge order of every stored
edge). Edge features always stay in the caller's order and the kernels read
them through the map, so a backward pass runs the same operator on
``graph.T`` (the two sides swapped) and double backward needs nothing more.

* From a ``hopkit.CSR``: its own order is the caller's (``eid`` is None); the
  transpose is ``A.T`` (computed once and cached on A) with its ``perm``.
  While torch.compile / torch.export trace, nothing is cached on A (a trace
  may run on fake tensors); a CSR whose transpose is not cached yet gets it
  in the graph, from ``hopkit::csr_transpose``. One eager call before
  compiling caches it, and the compiled graph then takes it as a constant.
* From a PyG ``edge_index``: ``hopkit::edge_index_csr`` groups the edges by
  target and by source (stable counting sorts, duplicates kept), so edge
  weights are read in ``edge_index`` column order, as PyG reads them. Built on
  every call: there is no cache to go stale.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode as _current_dispatch_mode

from .. import _backend


class Graph(NamedTuple):
    indptr: Tensor
    indices: Tensor
    eid: Tensor | None
    t_indptr: Tensor
    t_indices: Tensor
    t_eid: Tensor | None
    n_rows: int
    n_cols: int

    @property
    def T(self) -> Graph:
        return Graph(self.t_indptr, self.t_indices, self.t_eid, self.indptr, self.indices,
                     self.eid, self.n_cols, self.n_rows)

    @property
    def fwd(self):
        """The operator arguments of this side: (indptr, indices, eid)."""
        return self.indptr, self.indices, self.eid

    @property
    def args(self):
        """The six structure tensors and n_cols, as the operators take them."""
        return (self.indptr, self.indices, self.eid, self.t_indptr, self.t_indices, self.t_eid,
                self.n_cols)


def as_np(t):
    """A tensor reaching an operator's CPU kernel as a C-contiguous NumPy view."""
    return None if t is None else np.ascontiguousarray(t.detach().numpy())


def as_dev(t):
    """A tensor reaching the CUDA backend: itself (contiguous; the public ops
    refuse non-contiguous CUDA inputs, so this copies only internal ones)."""
    return None if t is None else t.detach().contiguous()


def kernel_backend(backend, op, like):
    """(be, arr) for an operator's kernel: the backend that serves tensors on
    ``like``'s device (``_backend.resolve``, one step for every device) and
    what its functions take of a tensor (a NumPy view for the CPU backends,
    the device tensor for the CUDA backend). Outputs are allocated as tensors
    on that device and passed through ``arr`` as out-parameters."""
    be = _backend.resolve(backend, op, like.device)
    return be, (as_dev if getattr(be, "TAKES_TENSORS", False) else as_np)


def call(op, *args, dispatch=None):
    """``op(*args)`` (or ``dispatch(*args)``: an operator with the same schema
    and kernel), or, where the dispatcher would add nothing, its kernel
    called directly: the same function on the same tensors, minus the
    dispatch (tens of microseconds, most of a small graph's call). Direct
    only in eager mode with no autograd to record (no tensor argument
    requires grad, or grad mode is off), on plain CPU tensors, with no
    functorch transform, forward-AD level, TorchDispatchMode or
    TorchFunctionMode active: everything that could observe or transform
    the call goes through ``torch.ops.hopkit.*`` as before (tests compare
    the two paths)."""
    if direct_ok(args):
        return op._init_fn(*args)
    return (dispatch or op)(*args)


def refuse_forward_ad(op, tensors):
    """hopkit's operators have no forward-mode AD formula (torch.library can
    register none for a custom op), and a custom op under forward AD drops
    the tangents without a word: the torch paths of the differentiable ops
    and the nn modules call this on their inputs, which refuses a dual
    tensor, and a torch.func.jvp transform, before any operator runs. While
    torch.compile traces, any forward-AD level is refused (the tangent of a
    traced tensor is not visible; dynamo refuses torch.func.jvp of a compiled
    function itself)."""
    level = torch.autograd.forward_ad._current_level >= 0
    if torch.compiler.is_compiling():  # dynamo guards the level
        dual = level
    else:
        interp = torch._C._functorch.peek_interpreter_stack()
        dual = (interp is not None and interp.key() == torch._C._functorch.TransformType.Jvp) \
            or (level and any(isinstance(t, Tensor) and
                              torch.autograd.forward_ad.unpack_dual(t).tangent is not None
                              for t in tensors))
    if dual:
        raise NotImplementedError(
            f"{op}: forward-mode AD (torch.func.jvp, torch.autograd.forward_ad) is not supported: "
            "hopkit's operators have reverse-mode formulas only (backward, torch.autograd.grad)")


def direct_ok(args) -> bool:
    """Whether a kernel may be called directly on ``args`` (see ``call``)."""
    if torch.compiler.is_compiling() or torch._C._is_torch_function_mode_enabled() or \
            _current_dispatch_mode() is not None or \
            torch.autograd.forward_ad._current_level >= 0 or \
            torch._C._functorch.peek_interpreter_stack() is not None:
        return False
    grad = torch.is_grad_enabled()
    for t in args:
        if isinstance(t, Tensor) and (type(t) is not Tensor or not t.is_cpu or
                                      (grad and t.requires_grad)):
            return False
    return True


def _on(device):
    return device is not None and device.type != "cpu"


def from_np(a) -> Tensor:
    """A read-only NumPy array (a CSR's) as a tensor view; never written."""
    if torch.compiler.is_compiling():  # dynamo lifts the array as a graph input
        return torch.from_numpy(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns on read-only arrays
        return torch.from_numpy(a)


def from_csr(A, device=None) -> Graph:
    """The Graph of a hopkit.CSR (cached on A once its transpose is known);
    with a CUDA ``device``, its tensors on that device (uploaded once, cached
    on A per device; while tracing, the upload is in the graph)."""
    if _on(device):
        key = ("torch_graph", str(device))
        g = A._cache.get(key)
        if g is None:
            h = from_csr(A)
            g = Graph(*(None if t is None else t.to(device) for t in h[:6]), h.n_rows, h.n_cols)
            if not torch.compiler.is_compiling() and "torch_graph" in A._cache:
                A._cache[key] = g
        return g
    if torch.compiler.is_compiling():  # tracing: the graph is a constant of the program
        return Graph(*_graph_constant(A))
    g = A._cache.get("torch_graph")
    return _build_graph(A) if g is None else g


def _build_graph(A) -> Graph:
    from ..ops.spmm import transpose_perm

    AT = A.T
    g = Graph(from_np(A.indptr), from_np(A.indices), None, from_np(AT.indptr),
              from_np(AT.indices), from_np(transpose_perm(A)), A.n_rows, A.n_cols)
    A._cache["torch_graph"] = g
    return g


@torch._dynamo.assume_constant_result
def _graph_constant(A) -> tuple:
    """from_csr(A) run eagerly while dynamo traces, its result a constant of
    the traced program: a hopkit.CSR is immutable (read-only arrays), so no
    transpose or array conversion is left in the graph, and dynamo guards
    the program on the CSR object (another CSR retraces; tested). Traced code
    reads these tensors' sizes with ``.size()``: torch 2.13's dynamo fails on
    ``.shape`` of a constant's tensor under ``dynamic=True``."""
    g = A._cache.get("torch_graph")
    if g is not None:
        return tuple(g)
    # nothing is stored on A while dynamo guards it: the transpose computed aside
    ti, tx, perm = _backend.resolve(None, "CSR.T").csr_transpose(A.indptr, A.indices, A.n_cols)
    return (from_np(A.indptr), from_np(A.indices), None, torch.from_numpy(ti),
            torch.from_numpy(tx), torch.from_numpy(perm), A.n_rows, A.n_cols)


def values_of(A, dtype, device=None) -> Tensor | None:
    """A.values as a tensor of ``dtype`` (on ``device``; cached on A), or None."""
    if not A.weighted:
        return None
    if _on(device):
        key = ("torch_values", dtype, str(device))
        v = A._cache.get(key)
        if v is None:
            v = values_of(A, dtype).to(device=device, dtype=dtype)
            if not torch.compiler.is_compiling():
                A._cache[key] = v
        return v
    if torch.compiler.is_compiling():  # tracing: a constant of the program, as the graph
        return _values_constant(A, dtype)[0]
    v = A._cache.get(("torch_values", dtype))
    return _build_values(A, dtype) if v is None else v


def values_pair(A, dtype, device=None):
    """(A.values, A.T.values) as tensors; the second only when the transpose
    is known (else None: the backward then reads A.values through the perm).
    While tracing on the CPU, both are constants of the program."""
    if not _on(device) and torch.compiler.is_compiling():
        return _values_constant(A, dtype)
    return values_of(A, dtype, device), (values_of(A.T, dtype, device) if "T" in A._cache
                                         else None)


def _cast_values(values, dtype) -> Tensor:
    v = from_np(values.astype(np.float64 if dtype == torch.float64 else np.float32, copy=False))
    return v if v.dtype == dtype else v.to(dtype)  # half types (CUDA)


def _build_values(A, dtype) -> Tensor:
    v = A._cache[("torch_values", dtype)] = _cast_values(A.values, dtype)
    return v


@torch._dynamo.assume_constant_result
def _values_constant(A, dtype) -> tuple:
    """(A.values, A.T.values) as ``dtype`` tensors, run eagerly while dynamo
    traces (see _graph_constant): the values enter the traced program as
    constants, with no per-call array conversion, and the transposed values
    (computed aside through the transpose's perm when A.T is not cached) let
    the backward read them without the perm."""
    if not A.weighted:
        return None, None
    v = A._cache.get(("torch_values", dtype))
    v = _cast_values(A.values, dtype) if v is None else v
    perm = _graph_constant(A)[5]
    return v, v[perm]


def csr_arrays(A, device=None):
    """(indptr, indices) of a hopkit.CSR as tensors on ``device`` (cached on A)."""
    if not _on(device):
        return from_np(A.indptr), from_np(A.indices)
    key = ("torch_arrays", str(device))
    t = A._cache.get(key)
    if t is None:
        t = (from_np(A.indptr).to(device), from_np(A.indices).to(device))
        if not torch.compiler.is_compiling():
            A._cache[key] = t
    return t


def from_edge_index(edge_index: Tensor, num_nodes: int, backend=None, self_loops=False) -> Graph:
    """``self_loops=True``: PyG's remove_self_loops + add_self_loops (one
    loop per node, after the other edges), as GATConv does. The graph then
    has num_nodes + 1 nodes: the extra node is a sink that holds the removed
    loops (its row and column touch nothing else), so that the edge count
    stays E + num_nodes whatever the data; pad the features with one row and
    drop the extra output row."""
    ip, ix, eid, ti, tx, teid = torch.ops.hopkit.edge_index_csr(edge_index, num_nodes,
                                                                self_loops, backend or "auto")
    n = num_nodes + 1 if self_loops else num_nodes
    return Graph(ip, ix, eid, ti, tx, teid, n, n)


# ---------------------------------------------------------------- operators
@torch.library.custom_op("hopkit::csr_transpose", mutates_args=())
def csr_transpose(indptr: Tensor, indices: Tensor, n_cols: int,
                  backend: str) -> tuple[Tensor, Tensor, Tensor]:
    """(t_indptr, t_indices, perm) of a validated CSR: edge t of the transpose
    is edge perm[t] of the CSR."""
    be, arr = kernel_backend(backend, "csr_transpose", indices)
    return tuple(torch.as_tensor(a) for a in be.csr_transpose(arr(indptr), arr(indices), n_cols))


@csr_transpose.register_fake
def _(indptr, indices, n_cols, backend):
    return (indptr.new_empty(n_cols + 1), indices.new_empty(indices.shape),
            indptr.new_empty(indices.shape))


@torch.library.custom_op("hopkit::edge_index_csr", mutates_args=())
def edge_index_csr(edge_index: Tensor, num_nodes: int, self_loops: bool,
                   backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """A PyG edge_index [2, E] grouped by target (CSR rows) and by source
    (the transpose), duplicates kept, each with its edge-id map. With
    ``self_loops`` the graph's own loops move to a sink node num_nodes and
    one loop per node is appended (see from_edge_index)."""
    ei = edge_index.detach()
    if ei.numel():
        bad = (ei < 0) | (ei >= num_nodes)
        if bool(bad.any()):
            r, c = (int(v[0]) for v in torch.nonzero(bad, as_tuple=True))
            raise ValueError(f"hopkit.nn: edge_index must lie in [0, {num_nodes}) (num_nodes); "
                             f"edge_index[{r}, {c}] = {int(ei[r, c])}")
    src, dst, n = ei[0], ei[1], num_nodes
    if self_loops:
        loop = src == dst
        ids = torch.arange(num_nodes, dtype=ei.dtype, device=ei.device)
        sink = torch.full_like(src, num_nodes)
        src = torch.cat([torch.where(loop, sink, src), ids])
        dst = torch.cat([torch.where(loop, sink, dst), ids])
        n = num_nodes + 1
    src, dst = src.contiguous(), dst.contiguous()
    be, arr = kernel_backend(backend, "edge_index_csr", ei)
    one = torch.arange(src.shape[0] + 1, dtype=torch.int64, device=ei.device)  # a row per edge
    ip_d, _, eid_d = (torch.as_tensor(a) for a in be.csr_transpose(arr(one), arr(dst), n))
    ip_s, _, eid_s = (torch.as_tensor(a) for a in be.csr_transpose(arr(one), arr(src), n))
    return ip_d, src[eid_d], eid_d, ip_s, dst[eid_s], eid_s


@edge_index_csr.register_fake
def _(edge_index, num_nodes, self_loops, backend):
    E = edge_index.shape[1] + (num_nodes if self_loops else 0)
    ip = edge_index.new_empty(num_nodes + 1 + int(self_loops), dtype=torch.int64)
    ix = edge_index.new_empty(E)
    eid = edge_index.new_empty(E, dtype=torch.int64)
    return ip, ix, eid, ip.clone(), ix.clone(), eid.clone()
