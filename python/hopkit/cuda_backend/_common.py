"""What every op module of the CUDA backend shares: the ``hopkit._cuda``
handle, pointers, streams, dtype codes, and the per-tensor caches of the
device CSR descriptor (int64 indptr, int32 indices, row-segment plan) and of
the device transpose."""

from __future__ import annotations

import weakref

import numpy as np
import torch
from torch.utils.weak import WeakTensorKeyDictionary

from .. import _backend
from ..codes import DTYPES

SEG_LEN = 128  # max edges per warp work item; longer rows are split (see csrc/cuda/spmm.cu)
INT32_MAX = 2**31 - 1
_CODES = {getattr(torch, name): code for name, code in DTYPES.items()}


def mod():
    return _backend.cuda_module()


def ptr(t) -> int:
    return 0 if t is None else t.data_ptr()


def stream(device) -> int:
    return torch.cuda.current_stream(device).cuda_stream


def dtype_code(op, name, dtype):
    if dtype not in _CODES:
        raise TypeError(f"{op}: {name} must be float32, float64, float16 or bfloat16 on CUDA, "
                        f"got {dtype}")
    return _CODES[dtype]


def acc_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


_CACHE = WeakTensorKeyDictionary()


def cached(t, tag, make, *deps):
    """make() cached on tensor t under ``tag``, valid while t (and every
    tensor in deps: same objects) keeps its version."""
    per = _CACHE.get(t)
    if per is None:
        per = _CACHE[t] = {}
    key = (tag, tuple(id(d) for d in deps))
    hit = per.get(key)
    versions = (t._version, *(d._version for d in deps))
    if hit is not None and hit[0] == versions and all(r() is d for r, d in zip(hit[1], deps,
                                                                              strict=True)):
        return hit[2]
    value = make()
    per[key] = (versions, tuple(weakref.ref(d) for d in deps), value)
    return value


def ids64(t, device):
    """An index tensor as int64 on ``device`` (cached per source tensor), or None."""
    if t is None:
        return None
    if t.dtype == torch.int64 and t.device == device:
        return t.contiguous()
    return cached(t, ("ids64", str(device)),
                  lambda: t.detach().to(device=device, dtype=torch.int64).contiguous())


class DeviceGraph:
    """The device CSR descriptor of (indptr, indices) and its spmm row plan."""

    def __init__(self, indptr, indices, n_rows, n_cols, device):
        if n_cols > INT32_MAX:
            raise ValueError(f"CUDA kernels need n_cols < 2**31 (int32 column indices on the "
                             f"device), got {n_cols}")
        self.device = device
        self.indptr = indptr.detach().to(device=device, dtype=torch.int64).contiguous()
        self.indices = indices.detach().to(device=device, dtype=torch.int32).contiguous()
        self.n_rows, self.n_cols, self.nnz = n_rows, n_cols, int(indices.shape[0])
        self.desc = (self.indptr.data_ptr(), self.indices.data_ptr(), n_rows, n_cols, self.nnz)
        # The plan is built on the host (one device-to-host copy of indptr for a graph
        # that lives on the device; cached with the graph).
        plan = segment_plan(indptr.detach().cpu().numpy(), SEG_LEN)
        self._plan = {k: torch.from_numpy(v).to(device) for k, v in plan.items()
                      if isinstance(v, np.ndarray)}
        p = self._plan
        self.n_slots = plan["n_slots"]
        self.plan = (p["seg_start"].data_ptr(), p["seg_row"].data_ptr(), p["seg_slot"].data_ptr(),
                     plan["n_segs"], SEG_LEN, p["split_row"].data_ptr(),
                     p["split_ptr"].data_ptr(), plan["n_split"], plan["n_slots"])
        self._t = None

    def transpose(self):
        """(t_indptr, t_indices int32, perm) on the device, computed once."""
        if self._t is None:
            from .csr import transpose_arrays

            self._t = transpose_arrays(self.indptr, self.indices, self.n_cols)
        return self._t


def device_graph(indptr, indices, n_rows, n_cols, device) -> DeviceGraph:
    return cached(indices, ("graph", str(device)),
                  lambda: DeviceGraph(indptr, indices, n_rows, n_cols, device), indptr)


def segment_plan(indptr, seg_len):
    """Rows cut into segments of at most seg_len edges (an empty row keeps one
    empty segment). Segments of rows with several of them get consecutive
    workspace slots, folded in order by the combine kernel."""
    indptr = np.asarray(indptr, dtype=np.int64)
    n_rows = indptr.shape[0] - 1
    deg = np.diff(indptr)
    nseg = np.maximum(1, -(-deg // seg_len))
    seg_ptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(nseg, out=seg_ptr[1:])
    n_segs = int(seg_ptr[-1])
    seg_row = np.repeat(np.arange(n_rows, dtype=np.int64), nseg)
    k_in_row = np.arange(n_segs, dtype=np.int64) - seg_ptr[:-1][seg_row]
    seg_start = indptr[:-1][seg_row] + k_in_row * seg_len
    split = nseg > 1
    in_split = split[seg_row]
    seg_slot = np.where(in_split, np.cumsum(in_split) - 1, -1).astype(np.int64)
    split_row = np.flatnonzero(split).astype(np.int64)
    split_ptr = np.zeros(split_row.shape[0] + 1, dtype=np.int64)
    np.cumsum(nseg[split_row], out=split_ptr[1:])
    return {"seg_start": seg_start, "seg_row": seg_row, "seg_slot": seg_slot, "n_segs": n_segs,
            "split_row": split_row, "split_ptr": split_ptr, "n_split": int(split_row.shape[0]),
            "n_slots": int(split_ptr[-1])}


def sort_scratch(n, device):
    """Buffers of the device radix sort (csrc/cuda/csr.cu) for n keys: (keep, pointers)."""
    tb = int(mod().sort_temp_bytes(n))
    bufs = [torch.empty(max(n, 1), dtype=torch.int64, device=device) for _ in range(4)]
    temp = torch.empty(tb, dtype=torch.uint8, device=device)
    return bufs + [temp], [b.data_ptr() for b in bufs] + [temp.data_ptr(), tb]
