"""CSR transpose on the device (csrc/cuda/csr.cu): the backend contract's
``csr_transpose``, equal to the CPU result (stable: perm in edge order)."""

from __future__ import annotations

import numpy as np
import torch

from .. import _backend
from ._common import dtype_code, mod, ptr, sort_scratch, stream


def transpose_arrays(indptr, indices, n_cols):
    """(t_indptr int64, t_indices of indices' dtype, perm int64) of a CSR
    whose indptr is int64 and indices int32 or int64, all on one device."""
    device = indices.device
    n_rows, nnz = indptr.shape[0] - 1, indices.shape[0]
    t_indptr = torch.empty(n_cols + 1, dtype=torch.int64, device=device)
    t_indices = torch.empty(nnz, dtype=indices.dtype, device=device)
    perm = torch.empty(nnz, dtype=torch.int64, device=device)
    keep, scratch = sort_scratch(nnz, device)
    mod().csr_transpose(n_rows, n_cols, nnz, indices.dtype == torch.int64, ptr(indptr),
                        ptr(indices), ptr(t_indptr), ptr(t_indices), ptr(perm), scratch,
                        stream(device))
    del keep  # freed to torch's stream-ordered cache: safe for later work on this stream
    return t_indptr, t_indices, perm


def csr_transpose(indptr, indices, n_cols):
    ix = indices if indices.dtype in (torch.int32, torch.int64) else indices.to(torch.int64)
    return transpose_arrays(indptr.to(torch.int64).contiguous(), ix.contiguous(), n_cols)


def _index_tensor(op, name, x, length=None):
    if x.dim() != 1:
        raise ValueError(f"{op}: {name} must be 1-D, got shape {tuple(x.shape)}")
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise TypeError(f"{op}: {name} must have an integer dtype, got {x.dtype}")
    if x.dtype not in (torch.int32, torch.int64):
        x = x.to(torch.int64)
    if length is not None and x.shape[0] != length:
        raise ValueError(f"{op}: {name} must have length {length}, got {x.shape[0]}")
    return x.contiguous()


def csr_from_coo(cls, row, col, values, shape, sum_duplicates):
    """CSR.from_coo for CUDA tensors: the sort runs on the device (csrc/cuda/
    csr.cu); the validated result is brought to the host, where a CSR lives."""
    from ..csr import _shape
    from ..ops._cuda import route

    op = "CSR.from_coo"
    dev, ins, _ = route(op, None, row=row, col=col, values=values)
    row = _index_tensor(op, "row", ins["row"])
    col = _index_tensor(op, "col", ins["col"], length=row.shape[0])
    if col.dtype != row.dtype:
        row, col = row.to(torch.int64), col.to(torch.int64)
    nnz = row.shape[0]
    values = ins["values"]
    if values is not None:
        if values.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{op}: values must be float32 or float64, got {values.dtype}")
        if values.dim() != 1 or values.shape[0] != nnz:
            raise ValueError(f"{op}: values must have shape ({nnz},), got {tuple(values.shape)}")
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            b = int(torch.nonzero(~finite)[0, 0])
            raise ValueError(f"{op}: values must be finite; values[{b}] is {values[b].item()}")
        values = values.contiguous()
    if shape is None:
        shape = (int(row.max()) + 1 if nnz else 0, int(col.max()) + 1 if nnz else 0)
    n_rows, n_cols = _shape(shape, op)
    indptr = torch.empty(n_rows + 1, dtype=torch.int64, device=dev)
    cols_out = torch.empty(nnz, dtype=col.dtype, device=dev)
    vals_out = None if values is None else torch.empty(nnz, dtype=values.dtype, device=dev)
    bad = torch.empty(1, dtype=torch.int64, device=dev)
    keep, scratch = sort_scratch(nnz, dev)
    vcode = 0 if values is None else dtype_code(op, "values", values.dtype)
    mod().coo_to_csr(n_rows, n_cols, nnz, col.dtype == torch.int64, ptr(row), ptr(col), vcode,
                      ptr(values), ptr(indptr), ptr(cols_out), ptr(vals_out), ptr(bad),
                      scratch, stream(dev))
    b = int(bad.item())  # UINT64_MAX reads as -1: no bad entry
    if b != -1:
        pos, is_row = b // 2, b % 2 == 0
        name, arr, lim = ("row", row, n_rows) if is_row else ("col", col, n_cols)
        raise ValueError(f"{op}: {name} must lie in [0, {lim}); {name}[{pos}] = "
                         f"{int(arr[pos])}")
    del keep
    indptr_h = indptr.cpu().numpy()
    cols_h = cols_out.cpu().numpy()
    vals_h = None if vals_out is None else vals_out.cpu().numpy()
    if sum_duplicates and nnz:
        rows_h = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(indptr_h))
        new = np.ones(nnz, dtype=bool)
        new[1:] = (cols_h[1:] != cols_h[:-1]) | (rows_h[1:] != rows_h[:-1])
        if not new.all():
            uniq = np.bincount(rows_h[new], minlength=n_rows).astype(np.int64)
            be = _backend.resolve(None, op)
            indptr_h, cols_h, vals_h = be.csr_sum_duplicates(indptr_h, cols_h, vals_h, uniq)
    return cls(indptr_h, cols_h, vals_h, (n_rows, n_cols), validate=False)
