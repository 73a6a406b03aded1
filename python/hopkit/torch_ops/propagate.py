"""hopkit::propagate: ``sum_l alpha_l A^l X`` in one call. Linear in X: the
backward is the same operator on the transposed side (``sum_l alpha_l
(A^T)^l dY``), so double backward comes for free."""

from __future__ import annotations

import torch
from torch import Tensor

from .graph import Graph, kernel_backend, refuse_forward_ad, values_pair
from .spmm import transposed


@torch.library.custom_op("hopkit::propagate", mutates_args=())
def propagate(indptr: Tensor, indices: Tensor, eid: Tensor | None, t_indptr: Tensor,
              t_indices: Tensor, t_eid: Tensor | None, n_cols: int, X: Tensor,
              E: Tensor | None, ET: Tensor | None, alpha: Tensor, backend: str) -> Tensor:
    """alpha: the L + 1 layer weights, float64 [L + 1] (a tensor, so that
    dynamic shapes never turn them into symbolic floats). ET: as in
    hopkit::spmm (E in the transpose's order, read by the backward)."""
    be, arr = kernel_backend(backend, "propagate", X)
    n_rows, F = indptr.shape[0] - 1, X.shape[1]
    out = X.new_empty((n_rows, F))
    work = X.new_empty((n_rows, F)) if alpha.shape[0] > 2 else None
    be.propagate(arr(indptr), arr(indices), n_rows, n_cols, arr(X), F, arr(E), arr(eid),
                 arr(alpha.to(torch.float64)), arr(out), arr(work))
    return out


@propagate.register_fake
def _(indptr, indices, eid, t_indptr, t_indices, t_eid, n_cols, X, E, ET, alpha, backend):
    return X.new_empty((indptr.shape[0] - 1, X.shape[1]))


def _setup(ctx, inputs, output):
    indptr, indices, eid, t_indptr, t_indices, t_eid, n_cols, _, E, ET, alpha, backend = inputs
    ctx.graph = Graph(indptr, indices, eid, t_indptr, t_indices, t_eid,
                      indptr.shape[0] - 1, n_cols)
    ctx.backend = backend
    ctx.save_for_backward(E, ET, alpha)


def _backward(ctx, dY):
    dX = None
    if ctx.needs_input_grad[7]:
        E, ET, alpha = ctx.saved_tensors
        gt, Et, ETt = transposed(ctx.graph, E, ET)
        dX = propagate(*gt.args, dY.contiguous(), Et, ETt, alpha, ctx.backend)
    return None, None, None, None, None, None, None, dX, None, None, None, None


propagate.register_autograd(_backward, setup_context=_setup)


def propagate_csr(A, X, E, alpha, backend):
    """hopkit.propagate's torch path: E None means A.values (or none)."""
    from .graph import from_csr
    from .spmm import as_tensor

    X, E, ET = as_tensor(X), as_tensor(E), None
    refuse_forward_ad("propagate", (X, E))
    g = from_csr(A, X.device)
    if E is None:
        E, ET = values_pair(A, X.dtype, X.device)
    return propagate(*g.args, X, E, ET, alpha_tensor(alpha), backend or "auto")


def alpha_tensor(alpha):
    return torch.as_tensor(alpha, dtype=torch.float64)
