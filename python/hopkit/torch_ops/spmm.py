"""hopkit::spmm, hopkit::sddmm and the spmm gradient operators.

Arguments: the Graph's six structure tensors and n_cols (see graph.py), X
[n_cols, F] or None (edge features alone), E (edge features in the caller's
edge order: [nnz], [nnz, F] or None), the message and reduce codes of
``hopkit.ops.spmm`` and the backend name. Sum and mean are linear in X and
their backward is this operator again, on the transposed side, so they have
double backward; max/min backward scatters through the arg kept from the
forward (first order only).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from torch import Tensor

from .. import _backend
from ..codes import MESSAGES, REDUCES
from .graph import (
    Graph,
    as_np,
    call,
    direct_ok,
    from_csr,
    kernel_backend,
    refuse_forward_ad,
    values_of,
    values_pair,
)

MUL, COPY, EDGE = MESSAGES["mul"], MESSAGES["copy"], MESSAGES["edge"]
SUM, MEAN = REDUCES["sum"], REDUCES["mean"]
_NP = {torch.float32: np.float32, torch.float64: np.float64}


def _width(X, E):
    if X is not None:
        return X.shape[1]
    return 1 if E.dim() == 1 else E.shape[1]


def _e_width(E, F):
    return 0 if E is None else (1 if E.dim() == 1 else F)


@torch.library.custom_op("hopkit::spmm", mutates_args=())
def spmm(indptr: Tensor, indices: Tensor, eid: Tensor | None, t_indptr: Tensor | None,
         t_indices: Tensor | None, t_eid: Tensor | None, n_cols: int, X: Tensor | None,
         E: Tensor | None, ET: Tensor | None, message: int, reduce: int, want_arg: bool,
         backend: str) -> tuple[Tensor, Tensor]:
    """(Y [n_rows, F], arg [n_rows, F] for max/min when want_arg, else [0]).
    ET: optionally E already in the transposed side's stored order (a CSR's
    cached transposed values), so that the backward reads it directly
    instead of through t_eid; only for constant E (see transposed()). The
    transposed side (t_*, ET) is read only by the backward: None where
    nothing requires grad and no program is being exported (spmm_graph), so
    an inference call does not pass it through every dispatch layer."""
    ref = X if X is not None else E
    be, arr = kernel_backend(backend, "spmm", ref)
    n_rows = indptr.shape[0] - 1
    F = _width(X, E)
    Y = ref.new_empty((n_rows, F))
    arg = ref.new_empty((n_rows, F) if reduce >= 2 and want_arg else (0,), dtype=torch.int64)
    be.spmm_forward(arr(indptr), arr(indices), n_rows, n_cols, arr(X), F, arr(E),
                    _e_width(E, F), arr(eid), message, reduce, arr(Y),
                    arr(arg) if reduce >= 2 and want_arg else None)
    return Y, arg


@spmm.register_fake
def _spmm_fake(indptr, indices, eid, t_indptr, t_indices, t_eid, n_cols, X, E, ET, message,
               reduce, want_arg, backend):
    ref = X if X is not None else E
    n_rows = indptr.shape[0] - 1
    F = _width(X, E)
    Y = ref.new_empty((n_rows, F))
    arg = ref.new_empty((n_rows, F) if reduce >= 2 and want_arg else (0,), dtype=torch.int64)
    return Y, arg


def _check_arg(arg, dY):
    """The max/min backward reads the arg the forward kept: refuse a missing
    one (a direct call with want_arg False) instead of reading past it."""
    if tuple(arg.shape) != tuple(dY.shape):
        raise RuntimeError("hopkit::spmm: the max/min backward needs the arg kept by the forward "
                           f"(want_arg=True), of dY's shape {tuple(dY.shape)}; got "
                           f"{tuple(arg.shape)}")


def _mean_scaled(indptr, dY, reduce):
    if reduce != MEAN:
        return dY
    deg = (indptr[1:] - indptr[:-1]).to(dY.dtype)
    return dY * torch.where(deg > 0, 1.0 / deg.clamp(min=1), torch.zeros_like(deg))[:, None]


def transposed(g: Graph, E, ET):
    """(graph, E, ET) of the transposed side: with ET (E in the transpose's
    stored order) that side reads it with no edge-id map, and its own
    transpose reads E the same way (so this needs g.eid None: E in g's stored
    order, as for a hopkit.CSR's values)."""
    if ET is None:
        return g.T, E, None
    return Graph(g.t_indptr, g.t_indices, None, g.indptr, g.indices, None, g.n_cols,
                 g.n_rows), ET, E


def _spmm_setup(ctx, inputs, output):
    (indptr, indices, eid, t_indptr, t_indices, t_eid, n_cols, X, E, ET, message, reduce, _,
     backend) = inputs
    ctx.graph = Graph(indptr, indices, eid, t_indptr, t_indices, t_eid,
                      indptr.shape[0] - 1, n_cols)
    ctx.cfg = (message, reduce, backend)
    ctx.save_for_backward(X, E, ET, output[1])
    ctx.mark_non_differentiable(output[1])  # the arg: autograd allocates no zeros for it
    ctx.set_materialize_grads(False)


def _spmm_backward(ctx, dY, _darg):
    g, (message, reduce, backend) = ctx.graph, ctx.cfg
    X, E, ET, arg = ctx.saved_tensors
    need_x, need_e = ctx.needs_input_grad[7], ctx.needs_input_grad[8]
    dX = dE = None
    if dY is None:  # Y took no part in the loss
        return (None,) * 14
    dY = dY.contiguous()
    if need_x and message != EDGE:
        if reduce >= 2:
            dX = torch.ops.hopkit.spmm_arg_grad_x(*g.fwd, n_cols=g.n_cols, X=X, E=E,
                                                  message=message, reduce=reduce, dY=dY,
                                                  arg=arg, backend=backend)
        else:
            if g.t_indptr is None:
                raise RuntimeError("hopkit::spmm: the backward of sum/mean needs the transposed "
                                   "side (t_indptr, t_indices), passed as None")
            gt, Et, ETt = transposed(g, E, ET) if message == MUL else (g.T, None, None)
            dX = spmm(*gt.args, _mean_scaled(g.indptr, dY, reduce), Et, ETt,
                      MUL if Et is not None else COPY, SUM, False, backend)[0]
    if need_e:
        Z = _mean_scaled(g.indptr, dY, reduce) if reduce < 2 else dY
        if reduce < 2 and message == MUL and E.dim() == 1:
            dE = sddmm(*g.args, Z, X, backend)
        else:
            dE = torch.ops.hopkit.spmm_edge_grad(*g.fwd, n_cols=g.n_cols, X=X, E=E,
                                                 message=message, reduce=reduce, dY=Z,
                                                 arg=arg, backend=backend)
    return None, None, None, None, None, None, None, dX, dE, None, None, None, None, None


spmm.register_autograd(_spmm_backward, setup_context=_spmm_setup)


# hopkit::spmm_nograd: hopkit::spmm with no autograd formula (the same schema, kernels and
# fake), which a compiled program calls where nothing can need a gradient (spmm_graph).
# An operator made by custom_op always has a Python kernel at the Autograd key (its check
# and redispatch cost ~8 us per compiled call even when nothing is recorded); this one,
# defined with the lower-level Library API, gets torch's C++ autograd fallback instead.
_lib = torch.library.Library("hopkit", "FRAGMENT")
_lib.define(str(torch.ops.hopkit.spmm.default._schema).replace("hopkit::spmm(", "spmm_nograd(", 1))
_lib.impl("spmm_nograd", spmm._init_fn, "CompositeExplicitAutograd")
torch.library.register_fake("hopkit::spmm_nograd", _spmm_fake, lib=_lib)
spmm_nograd = torch.ops.hopkit.spmm_nograd.default


def _py_kernel(backend, *args):
    """The C++ kernel's route to the CPU backends other than native (NumPy
    views of its tensors, hopkit.ops.spmm's contract)."""
    _backend.resolve(backend, "spmm").spmm_forward(*args)


def cpp_kernel(on: bool = True) -> bool:
    """Give hopkit::spmm and hopkit::spmm_nograd the native module's C++ CPU
    kernel (``on``), or take it away; returns whether it is registered.
    Registered on import: through torch's stable C library API (torch >=
    2.13; docs/compile.md), so the dispatcher calls the native kernel for
    CPU tensors with no Python in between, which is most of a small graph's
    compiled call. Where the native module or that API is missing it stays
    off and the Python kernel above serves CPU tensors, as it does while off
    (tests and benchmarks compare the two)."""
    nat = _backend.native_module()
    if nat is None or not hasattr(nat, "register_torch_kernels"):
        return False
    if not on:
        nat.unregister_torch_kernels()
        return False
    lib = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    return bool(nat.register_torch_kernels(lib, _py_kernel))


try:
    cpp_kernel()
except RuntimeError as e:  # torch refused it (e.g. another hopkit registered one first)
    warnings.warn(f"hopkit: hopkit::spmm keeps its Python CPU kernel ({e})", RuntimeWarning,
                  stacklevel=2)


@torch.library.custom_op("hopkit::spmm_arg_grad_x", mutates_args=())
def spmm_arg_grad_x(indptr: Tensor, indices: Tensor, eid: Tensor | None, n_cols: int,
                    X: Tensor | None, E: Tensor | None, message: int, reduce: int, dY: Tensor,
                    arg: Tensor, backend: str) -> Tensor:
    """d loss / d X of max/min: dY scattered to the winning edges' sources."""
    _check_arg(arg, dY)
    be, arr = kernel_backend(backend, "spmm", dY)
    F = dY.shape[1]
    dX = dY.new_empty((n_cols, F))
    be.spmm_arg_grad_x(arr(indptr), arr(indices), indptr.shape[0] - 1, n_cols, arr(X), F,
                       arr(E), _e_width(E, F), arr(eid), message, reduce, arr(dY), arr(arg),
                       arr(dX))
    return dX


@spmm_arg_grad_x.register_fake
def _(indptr, indices, eid, n_cols, X, E, message, reduce, dY, arg, backend):
    return dY.new_empty((n_cols, dY.shape[1]))


@torch.library.custom_op("hopkit::spmm_edge_grad", mutates_args=())
def spmm_edge_grad(indptr: Tensor, indices: Tensor, eid: Tensor | None, n_cols: int,
                   X: Tensor | None, E: Tensor, message: int, reduce: int, dY: Tensor,
                   arg: Tensor, backend: str) -> Tensor:
    """d loss / d E (E's shape, the caller's edge order); dY already divided
    by the row length for mean."""
    if reduce >= 2:
        _check_arg(arg, dY)
    be, arr = kernel_backend(backend, "spmm", dY)
    F = dY.shape[1]
    dE = dY.new_empty(tuple(E.shape))
    be.spmm_edge_grad(arr(indptr), arr(indices), indptr.shape[0] - 1, n_cols, arr(X), F, arr(E),
                      _e_width(E, F), arr(eid), message, reduce, arr(dY),
                      arr(arg) if reduce >= 2 else None, arr(dE))
    return dE


@spmm_edge_grad.register_fake
def _(indptr, indices, eid, n_cols, X, E, message, reduce, dY, arg, backend):
    return E.new_empty(E.shape)


@torch.library.custom_op("hopkit::sddmm", mutates_args=())
def sddmm(indptr: Tensor, indices: Tensor, eid: Tensor | None, t_indptr: Tensor,
          t_indices: Tensor, t_eid: Tensor | None, n_cols: int, U: Tensor, V: Tensor,
          backend: str) -> Tensor:
    """out[e] = <U[i], V[j]> per stored edge (i, j), in the caller's edge order."""
    be, arr = kernel_backend(backend, "sddmm", U)
    F = U.shape[1]
    out = U.new_empty(indices.shape[0])
    be.spmm_edge_grad(arr(indptr), arr(indices), indptr.shape[0] - 1, n_cols, arr(V), F, None, 1,
                      arr(eid), MUL, SUM, arr(U), None, arr(out))
    return out


@sddmm.register_fake
def _(indptr, indices, eid, t_indptr, t_indices, t_eid, n_cols, U, V, backend):
    return U.new_empty(indices.shape[0])


def _sddmm_setup(ctx, inputs, output):
    indptr, indices, eid, t_indptr, t_indices, t_eid, n_cols, U, V, backend = inputs
    ctx.graph = Graph(indptr, indices, eid, t_indptr, t_indices, t_eid,
                      indptr.shape[0] - 1, n_cols)
    ctx.backend = backend
    ctx.save_for_backward(U, V)


def _sddmm_backward(ctx, g):
    G, be = ctx.graph, ctx.backend
    U, V = ctx.saved_tensors
    g = g.contiguous()
    dU = dV = None
    if ctx.needs_input_grad[7]:  # dU = A_g V
        dU = spmm(*G.args, V, g, None, MUL, SUM, False, be)[0]
    if ctx.needs_input_grad[8]:  # dV = A_g^T U
        dV = spmm(*G.T.args, U, g, None, MUL, SUM, False, be)[0]
    return None, None, None, None, None, None, None, dU, dV, None


sddmm.register_autograd(_sddmm_backward, setup_context=_sddmm_setup)


# ---------------------------------------------------------------- entry points
def as_tensor(x):
    return x if x is None or isinstance(x, Tensor) else torch.from_numpy(x)


def spmm_graph(g: Graph, X, E, message, reduce, want_arg, backend, ET=None):
    """(Y, arg or None) on validated inputs. The max/min arg is computed only
    when asked for or needed by a backward pass. With ET given, E is a CSR's
    values (constant: never requires grad).

    Where nothing requires grad, the transposed side is not passed (see
    spmm's docstring) and a compiled program calls hopkit::spmm_nograd:
    dynamo guards the inputs' requires_grad and the grad mode, so the program
    is traced again, with hopkit::spmm, when either changes. An exported
    program has no guards (it may be called later on inputs that require
    grad): it always takes hopkit::spmm with everything a backward needs."""
    refuse_forward_ad("spmm", (X, E))
    grad = torch.compiler.is_exporting() or (torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (X, E if ET is None else None)))
    keep = reduce >= 2 and (want_arg or grad)
    be = backend or "auto"
    if grad:
        Y, arg = call(spmm, *g.args, X, E, ET, message, reduce, keep, be)
    else:
        Y, arg = call(spmm, *g.fwd, None, None, None, g.n_cols, X, E, None, message, reduce, keep,
                      be, dispatch=spmm_nograd if torch.compiler.is_compiling() else None)
    return Y, (arg if want_arg else None)


def spmm_csr(A, X, E, e_width, message, reduce, want_arg, backend):
    """hopkit.spmm's torch path (every device): E None with e_width 1 means A.values."""
    X, E, ET = as_tensor(X), as_tensor(E), None
    ref = X if X is not None else E
    be = None if ref.dtype not in _NP or not direct_ok((X, E)) else \
        _backend.resolve(backend, "spmm", ref.device)
    if be is not None and not getattr(be, "TAKES_TENSORS", False):
        # eager, nothing to record, a CPU backend: its kernel on NumPy views
        F = _width(X, E)
        dt = _NP[ref.dtype]
        En = A.values_as(dt) if E is None and e_width else as_np(E)
        Y = np.empty((A.n_rows, F), dt)
        arg = np.empty((A.n_rows, F), np.int64) if reduce >= 2 and want_arg else None
        be.spmm_forward(
            A.indptr, A.indices, A.n_rows, A.n_cols, as_np(X), F, En, e_width, None, message,
            reduce, Y, arg)
        return torch.from_numpy(Y), (None if arg is None else torch.from_numpy(arg))
    g = from_csr(A, ref.device)
    if E is None and e_width:
        E, ET = values_pair(A, ref.dtype, ref.device)
    return spmm_graph(g, X, E, message, reduce, want_arg, backend, ET)


def sddmm_csr(A, U, V, scale, backend):
    U, V = as_tensor(U), as_tensor(V)
    refuse_forward_ad("sddmm", (U, V))
    out = call(sddmm, *from_csr(A, U.device).args, U, V, backend or "auto")
    return out * values_of(A, U.dtype, U.device) if scale else out
