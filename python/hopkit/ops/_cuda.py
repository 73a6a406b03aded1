"""CUDA dispatch: torch CUDA tensors (and CuPy arrays, through DLPack) go to
``hopkit._cuda``.

Device pointers and the current CUDA stream pass to the module as integers;
outputs are allocated here with ``torch.empty`` on the input's device and
written by the kernels, which launch on the current stream and never
synchronise. A CSR's arrays, its row-segment plan, its values per dtype and
(for a transpose) its ``perm`` are uploaded once per device and cached on the
CSR (``A._cache``). The op modules validate every argument, whatever its
device (``ops/_common.check_dense``), before anything reaches this module.
"""

from __future__ import annotations

import numpy as np

from .. import _backend
from .._torch import is_tensor
from ..csr import _shape

SEG_LEN = 128  # max edges per warp work item; longer rows are split (see csrc/cuda/spmm.cu)
_INT32_MAX = 2**31 - 1


class CudaBackend:
    """The ``be`` passed through the autograd Functions for device tensors."""

    name = "cuda"

    def __repr__(self):
        return "<hopkit CUDA backend>"


CUDA = CudaBackend()


def is_cuda_backend(be) -> bool:
    return be is CUDA


def _torch():
    import torch

    return torch


def dtype_code(op, name, dtype):
    torch = _torch()
    from ..codes import DTYPES

    codes = {getattr(torch, name): code for name, code in DTYPES.items()}
    if dtype not in codes:
        raise TypeError(f"{op}: {name} must be float32, float64, float16 or bfloat16 on CUDA, "
                        f"got {dtype}")
    return codes[dtype]


def _acc_dtype(dtype):
    torch = _torch()
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------- device routing
def _is_cupy(x) -> bool:
    if x is None or is_tensor(x) or isinstance(x, np.ndarray):
        return False  # the common cases, decided without string work (torch.compile traces this)
    return type(x).__module__.split(".")[0] == "cupy" and hasattr(x, "__cuda_array_interface__")


def _where(x) -> str:
    if is_tensor(x):
        return str(x.device)
    return "cpu (NumPy)" if isinstance(x, np.ndarray) else "cpu"


def route(op, backend, **arrays):
    """Decides where an op runs from its array arguments.

    Returns ``(device, arrays, back)``: device is None for CPU inputs (NumPy
    or CPU tensors; ``arrays`` unchanged) or the torch CUDA device; CuPy
    arrays are replaced by zero-copy torch views and ``back`` turns torch
    results into CuPy arrays again (identity otherwise). Raises for mixed
    devices, a CUDA device other than the current one, a CUDA tensor without
    the CUDA build, a non-CPU non-CUDA device, or a CPU-only backend asked
    for device tensors. Contiguity is checked by the op's validation.
    """
    out = dict(arrays)
    cupy_in = False
    for name, x in arrays.items():
        if _is_cupy(x):
            torch = _torch()
            out[name] = torch.from_dlpack(x)
            cupy_in = True
    present = {n: x for n, x in out.items() if x is not None}
    devs = {n: _where(x) for n, x in present.items()}
    if len({d.split(" ")[0] for d in devs.values()}) > 1:
        desc = ", ".join(f"{n} on {d}" for n, d in devs.items())
        raise ValueError(f"{op}: all tensors must be on one device, got {desc}")
    tensors = [x for x in present.values() if is_tensor(x)]
    if not tensors or tensors[0].device.type == "cpu":
        return None, out, (lambda r: r)
    name, t = next((n, x) for n, x in present.items() if is_tensor(x))
    dev = t.device
    if dev.type != "cuda":
        raise TypeError(f"{op}: {name} is on {dev}; hopkit runs on CPU and CUDA tensors")
    if _backend.cuda_module() is None:
        raise TypeError(f"{op}: {name} is a CUDA tensor ({dev}) but hopkit was built without "
                        "CUDA; move it to the CPU or rebuild with HOPKIT_CUDA=ON")
    torch = _torch()
    cur = torch.cuda.current_device()
    if dev.index != cur:
        raise TypeError(f"{op}: {name} is on {dev} but the current CUDA device is cuda:{cur}; "
                        f"call torch.cuda.set_device({dev.index}) or run inside "
                        f"`with torch.cuda.device({dev.index}):`")
    if backend is not None and str(backend).lower() not in ("auto", "native", "cuda"):
        raise TypeError(f"{op}: backend={backend!r} runs on CPU arrays; got CUDA tensor {name} "
                        f"on {dev} (use backend='auto' or move the inputs to the CPU)")

    def back(r):
        if not cupy_in:
            return r
        import cupy

        if isinstance(r, tuple):
            return tuple(None if v is None else cupy.from_dlpack(v.detach()) for v in r)
        return cupy.from_dlpack(r.detach())

    return dev, out, back


# ---------------------------------------------------------------- device CSR
class DeviceCSR:
    """A CSR's arrays on one CUDA device, with the spmm row-segment plan."""

    def __init__(self, A, device):
        torch = _torch()
        if A.n_cols > _INT32_MAX:
            raise ValueError(f"CUDA kernels need n_cols < 2**31 (int32 column indices on the "
                             f"device), got {A.n_cols}")
        self.A, self.device = A, device

        def up(a, dtype=None):
            t = torch.from_numpy(np.array(a, dtype=dtype, copy=True))
            return t.to(device)

        self.indptr = up(A.indptr, np.int64)
        self.indices = up(A.indices, np.int32)
        self.n_rows, self.n_cols, self.nnz = A.n_rows, A.n_cols, A.nnz
        self.desc = (self.indptr.data_ptr(), self.indices.data_ptr(), A.n_rows, A.n_cols, A.nnz)
        plan = segment_plan(np.asarray(A.indptr), SEG_LEN)
        self._plan = {k: up(v) for k, v in plan.items() if isinstance(v, np.ndarray)}
        self.n_slots = plan["n_slots"]
        p = self._plan
        self.plan = (p["seg_start"].data_ptr(), p["seg_row"].data_ptr(), p["seg_slot"].data_ptr(),
                     plan["n_segs"], SEG_LEN, p["split_row"].data_ptr(),
                     p["split_ptr"].data_ptr(), plan["n_split"], plan["n_slots"])
        self._values, self._inv_degree = {}, {}
        self._up = up
        self._tperm = None

    def tperm(self):
        """perm of A.T on the device (see ops.spmm.transpose_perm), cached."""
        if self._tperm is None:
            from .spmm import transpose_perm

            self._tperm = self._up(transpose_perm(self.A), np.int64)
        return self._tperm

    def values(self, dtype):
        """A.values in ``dtype`` on the device (cached), or None."""
        if self.A.values is None:
            return None
        if dtype not in self._values:
            t = _torch().from_numpy(np.array(self.A.values, copy=True))
            self._values[dtype] = t.to(self.device).to(dtype).contiguous()
        return self._values[dtype]

    def inv_degree(self, dtype):
        if dtype not in self._inv_degree:
            t = _torch().from_numpy(np.array(self.A.inv_degree(np.float64), copy=True))
            self._inv_degree[dtype] = t.to(self.device).to(dtype)
        return self._inv_degree[dtype]


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


def device_csr(A, device) -> DeviceCSR:
    key = ("cuda", device.index)
    D = A._cache.get(key)
    if D is None:
        D = A._cache[key] = DeviceCSR(A, device)
    return D


def _ptr(t) -> int:
    return 0 if t is None else t.data_ptr()


def _stream(device) -> int:
    return _torch().cuda.current_stream(device).cuda_stream


def _mod():
    return _backend.cuda_module()


# ---------------------------------------------------------------- spmm kernels
def spmm_forward(A, X, F, dtype, E, e_width, msg, red, want_arg, device, eperm=None, mask=None):
    """Y [n_rows, F] (and arg for max/min when wanted) on the device."""
    torch = _torch()
    D = device_csr(A, device)
    Y = torch.empty((A.n_rows, F), dtype=dtype, device=device)
    arg = (torch.empty((A.n_rows, F), dtype=torch.int64, device=device)
           if red >= 2 and want_arg else None)
    n_ws = D.n_slots * F
    ws_val = torch.empty(n_ws, dtype=_acc_dtype(dtype), device=device) if n_ws else None
    ws_arg = torch.empty(n_ws, dtype=torch.int32, device=device) if n_ws and red >= 2 else None
    _mod().spmm_forward(D.desc, D.plan, dtype_code("spmm", "X", dtype), _ptr(X), F, _ptr(E),
                        e_width, _ptr(eperm), msg, red, _ptr(mask), _ptr(Y), _ptr(arg),
                        _ptr(ws_val), _ptr(ws_arg), _stream(device))
    return Y, arg


def _scaled(A, dY, red, device):
    from .spmm import REDUCES

    if red != REDUCES["mean"]:
        return dY
    return (dY * device_csr(A, device).inv_degree(dY.dtype)[:, None]).contiguous()


def spmm_grad_x(A, X, F, E, e_width, msg, red, arg, dY, device):
    """d loss / d X on the device: the forward kernel on the cached transpose
    (sum/mean), masked by the kept arg for max/min (no atomics either way)."""
    from .spmm import MESSAGES, REDUCES

    AT = A.T
    D, DT = device_csr(A, device), device_csr(AT, device)
    dtype = dY.dtype
    tmsg = MESSAGES["mul"] if msg == MESSAGES["mul"] else MESSAGES["copy"]
    eperm, mask = None, None
    if red >= 2:
        # Edge t of A^T (edge perm[t] of A) passes dY[i, f] to dX[j, f] only
        # where it won: arg[i, f] == perm[t]. E is read in A's order.
        eperm, mask = D.tperm(), arg
        if tmsg == MESSAGES["copy"]:
            E, e_width = None, 0
        Z = dY
    else:
        if tmsg == MESSAGES["copy"]:
            E, e_width = None, 0
        elif E is D.values(E.dtype):
            E = DT.values(E.dtype)  # already in the transpose's order
        else:
            eperm = D.tperm()  # edge features read through the perm, never gathered
        Z = _scaled(A, dY, red, device)
    dX, _ = spmm_forward(AT, Z, F, dtype, E, e_width, tmsg, REDUCES["sum"], False, device,
                         eperm=eperm, mask=mask)
    return dX


def spmm_edge_grad(A, X, F, E, e_width, msg, red, arg, dY, device):
    """d loss / d edge features (E's shape) on the device; also SDDMM."""
    torch = _torch()
    D = device_csr(A, device)
    dtype = dY.dtype
    dE = torch.empty((A.nnz,) if e_width == 1 else (A.nnz, F), dtype=dtype, device=device)
    Z = _scaled(A, dY, red, device)
    _mod().spmm_edge_grad(D.desc, dtype_code("spmm", "dY", dtype), _ptr(X), F, _ptr(E), e_width,
                          0, msg, red, _ptr(Z), _ptr(arg), _ptr(dE), _stream(device))
    return dE


def sddmm(A, U, V, scale, device):
    from .spmm import MESSAGES, REDUCES

    out = spmm_edge_grad(A, V, U.shape[1], None, 1, MESSAGES["mul"], REDUCES["sum"], None, U,
                         device)
    if scale:
        out = out * device_csr(A, device).values(out.dtype)
    return out


def edge_values(A, device, dtype):
    return device_csr(A, device).values(dtype)


# ---------------------------------------------------------------- CSR construction
def _sort_scratch(n, device):
    torch = _torch()
    tb = int(_mod().sort_temp_bytes(n))
    bufs = [torch.empty(max(n, 1), dtype=torch.int64, device=device) for _ in range(4)]
    temp = torch.empty(tb, dtype=torch.uint8, device=device)
    return bufs + [temp], [b.data_ptr() for b in bufs] + [temp.data_ptr(), tb]


def _index_tensor(op, name, x, length=None):
    torch = _torch()
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
    torch = _torch()
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
    keep, scratch = _sort_scratch(nnz, dev)
    vcode = 0 if values is None else dtype_code(op, "values", values.dtype)
    _mod().coo_to_csr(n_rows, n_cols, nnz, col.dtype == torch.int64, _ptr(row), _ptr(col), vcode,
                      _ptr(values), _ptr(indptr), _ptr(cols_out), _ptr(vals_out), _ptr(bad),
                      scratch, _stream(dev))
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


def transpose(A, device):
    """A.T's (indptr, indices, perm) computed on the device from A's device
    copy (int32 indices); equal to the host ``A.T`` arrays."""
    torch = _torch()
    D = device_csr(A, device)
    t_indptr = torch.empty(A.n_cols + 1, dtype=torch.int64, device=device)
    t_indices = torch.empty(A.nnz, dtype=torch.int32, device=device)
    perm = torch.empty(A.nnz, dtype=torch.int64, device=device)
    keep, scratch = _sort_scratch(A.nnz, device)
    _mod().csr_transpose(A.n_rows, A.n_cols, A.nnz, False, _ptr(D.indptr), _ptr(D.indices),
                         _ptr(t_indptr), _ptr(t_indices), _ptr(perm), scratch, _stream(device))
    del keep  # freed to torch's stream-ordered cache: safe for later work on this stream
    return t_indptr, t_indices, perm


# ---------------------------------------------------------------- propagate
def propagate(A, X, alpha, E, eperm, device):
    """out = sum_l alpha[l] A^l X on the device: L hops queued on the current
    stream (csrc/cuda/propagate.cu), no host synchronisation between them."""
    torch = _torch()
    D = device_csr(A, device)
    F, dtype = X.shape[1], X.dtype
    out = torch.empty((A.n_rows, F), dtype=dtype, device=device)
    work = torch.empty((A.n_rows, F), dtype=dtype, device=device) if len(alpha) > 2 else None
    n_ws = D.n_slots * F
    ws = torch.empty(n_ws, dtype=_acc_dtype(dtype), device=device) if n_ws else None
    _mod().propagate(D.desc, D.plan, dtype_code("propagate", "X", dtype), _ptr(X), F, _ptr(E),
                     _ptr(eperm), [float(a) for a in alpha], _ptr(out), _ptr(work), _ptr(ws),
                     _stream(device))
    return out


def propagate_transpose(A, E, from_values, device):
    """(AT, E_T, eperm) on the device for the backward pass: the transpose's
    own values when the weights are A.values, else E read through the perm."""
    AT = A.T
    if E is None:
        return AT, None, None
    if from_values:
        return AT, device_csr(AT, device).values(E.dtype), None
    return AT, E, device_csr(A, device).tperm()


# ---------------------------------------------------------------- attention
def attention_forward(A, Q, K, V, heads, dk, dv, score, scale, slope, device):
    """(out [n_rows, heads * dv], lse [n_rows, heads]) on the device."""
    torch = _torch()
    D = device_csr(A, device)
    out = torch.empty((A.n_rows, heads * dv), dtype=Q.dtype, device=device)
    lse = torch.empty((A.n_rows, heads), dtype=Q.dtype, device=device)
    n_ws = D.n_slots * heads * (dv + 2)  # split rows' (acc, m, l) partials
    ws = torch.empty(n_ws, dtype=Q.dtype, device=device) if n_ws else None
    _mod().attention_forward(D.desc, D.plan, dtype_code("attention_aggregate", "Q", Q.dtype),
                             _ptr(Q), _ptr(K), _ptr(V), heads, dk, dv, score, scale, slope,
                             _ptr(out), _ptr(lse), _ptr(ws), _stream(device))
    return out, lse


def attention_backward(A, Q, K, V, heads, dk, dv, score, scale, slope, out, dout, lse, device):
    """(dQ, dK, dV) on the device: pass 1 over A's rows, pass 2 over A.T's."""
    torch = _torch()
    D, DT = device_csr(A, device), device_csr(A.T, device)
    delta = torch.empty((A.n_rows, heads), dtype=Q.dtype, device=device)
    dQ, dK, dV = torch.empty_like(Q), torch.empty_like(K), torch.empty_like(V)
    _mod().attention_backward(D.desc, DT.desc, dtype_code("attention_aggregate", "Q", Q.dtype),
                              _ptr(Q), _ptr(K), _ptr(V), heads, dk, dv, score, scale, slope,
                              _ptr(out), _ptr(dout), _ptr(lse), _ptr(delta), _ptr(dQ), _ptr(dK),
                              _ptr(dV), _stream(device))
    return dQ, dK, dV


# ---------------------------------------------------------------- top-k
_UPLOADS: dict = {}  # (id(host array), device) -> (host array, device tensor); small LRU


def _upload_ids(a, device):
    """An int64 device copy of a host id array, kept for repeated calls (the
    exclusion CSR of a training matrix is reused by every evaluation batch)."""
    if a is None:
        return None
    key = (id(a), str(device))
    hit = _UPLOADS.get(key)
    if hit is not None and hit[0] is a:
        return hit[1]
    t = _torch().from_numpy(np.array(a, dtype=np.int64, copy=True)).to(device)
    if len(_UPLOADS) >= 8:
        _UPLOADS.pop(next(iter(_UPLOADS)))
    _UPLOADS[key] = (a, t)
    return t


def _score_tile(Qb, X, sdt, buf=None):
    """Qb @ X.T in sdt (float32 for float32/half inputs, float64 for float64),
    exact float32 products (TF32 off), half inputs with float32 output.
    Written into buf (a tile buffer at least Qb's rows long) when given."""
    torch = _torch()
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        if Qb.dtype in (torch.float16, torch.bfloat16):
            try:
                return torch.mm(Qb, X.T, out_dtype=torch.float32)
            except (TypeError, RuntimeError):
                return torch.mm(Qb.float(), X.float().T)
        if buf is None:
            return torch.mm(Qb, X.T)
        return torch.mm(Qb, X.T, out=buf[:Qb.shape[0]])
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev


def topk(Q, X, k, ex_indptr, ex_indices, ex_rows, c_indptr, c_indices, device):
    """(scores [B, k] in Q's dtype, idx [B, k] int64) on the device.

    Dense: queries in tiles of at most 2**26 scores; each tile is scored by
    torch.mm (cuBLAS) and reduced by the select kernel (csrc/cuda/topk.cu:
    exclusion, NaN/-inf dropped, ties to the smaller index). Candidates: one
    SDDMM over the candidate CSR, then the same kernel over its rows. k > 256:
    masked tiles and a stable descending sort (same order and padding).
    """
    torch = _torch()
    B, N = Q.shape[0], X.shape[0]
    scores = torch.full((B, k), float("-inf"), dtype=Q.dtype, device=device)
    idx = torch.full((B, k), -1, dtype=torch.int64, device=device)
    if not (k and B):
        return scores, idx
    sdt = torch.float64 if Q.dtype == torch.float64 else torch.float32
    out_s = scores if sdt == Q.dtype else torch.full((B, k), float("-inf"), dtype=sdt,
                                                     device=device)
    ex = (_upload_ids(ex_indptr, device), _upload_ids(ex_indices, device),
          _upload_ids(ex_rows, device))
    cand = None
    if c_indptr is not None:
        from ..csr import CSR
        from .spmm import MESSAGES, REDUCES

        C = CSR(c_indptr, c_indices, shape=(B, N), validate=False)
        Sc = spmm_edge_grad(C, X, Q.shape[1], None, 1, MESSAGES["mul"], REDUCES["sum"], None,
                            Q, device).to(sdt)
        cand = (_upload_ids(c_indptr, device), _upload_ids(c_indices, device), Sc)
    if k > _mod().TOPK_MAX_K:
        _topk_by_sort(Q, X, k, ex_indptr, ex_indices, ex_rows, c_indptr, c_indices, cand,
                      sdt, out_s, idx, device)
    elif cand is not None:
        _select(cand[2], B, N, k, 0, ex, cand, out_s, idx, device)
    else:
        _dense_tiles(Q, X, k, sdt, ex, out_s, idx, device)
    if out_s is not scores:
        scores.copy_(out_s)
    return scores, idx


TOPK_TILE_SCORES = 1 << 26  # scores per query tile (two tiles are alive at once)
_SIDE_STREAMS: dict = {}


class _Pipeline:
    """Stream order of the tile loop: the current stream scores tiles, a side
    stream (one per device) selects them."""

    def __init__(self, device):
        torch = _torch()
        self.main = torch.cuda.current_stream(device)
        self.side = _SIDE_STREAMS.get(device.index)
        if self.side is None:
            self.side = _SIDE_STREAMS[device.index] = torch.cuda.Stream(device)
        self.side.wait_stream(self.main)  # inputs and outputs were written on main

    def hand_over(self, S):
        """S, just written on main, is read next on side."""
        S.record_stream(self.side)  # the allocator must not reuse it before side is done
        self.side.wait_stream(self.main)

    def on_side(self):
        return _torch().cuda.stream(self.side)

    def mark(self):
        return self.side.record_event()

    def wait(self, event):
        self.main.wait_event(event)

    def join(self):
        self.main.wait_stream(self.side)


def _dense_tiles(Q, X, k, sdt, ex, out_s, idx, device):
    """Scores query tiles on the current stream and selects each on a side
    stream, so that selecting tile i can overlap scoring tile i + 1. (On an
    H200 the overlap is small: the selection is bound by instructions, as the
    float32 GEMM is; docs/benchmarks.md.) Two score buffers alternate; events
    order every reuse, and the current stream waits for the side stream
    before returning."""
    B, N = Q.shape[0], X.shape[0]
    bq = max(1, min(B, TOPK_TILE_SCORES // max(N, 1)))
    pipe = _Pipeline(device)
    bufs, freed = [None, None], [None, None]
    for i, b0 in enumerate(range(0, B, bq)):
        b1, slot = min(B, b0 + bq), i % 2
        if freed[slot] is not None:
            pipe.wait(freed[slot])  # the side stream is done with this buffer
        S = _score_tile(Q[b0:b1], X, sdt, bufs[slot])
        if bufs[slot] is None:
            bufs[slot] = S
        pipe.hand_over(S)
        with pipe.on_side():
            _select(S, b1 - b0, N, k, b0, ex, None, out_s[b0:b1], idx[b0:b1], device)
        freed[slot] = pipe.mark()
    pipe.join()


def _select(S, nq, N, k, q0, ex, cand, out_s, out_i, device):
    torch = _torch()
    args = (0 if S.dtype == torch.float32 else 1, _ptr(S), nq, N, k, q0, _ptr(ex[0]),
            _ptr(ex[1]), _ptr(ex[2]), _ptr(None if cand is None else cand[0]),
            _ptr(None if cand is None else cand[1]), _ptr(out_s), _ptr(out_i))
    n_ws = _mod().topk_select(*args, -1, 0)  # bytes of the per-chunk lists, if several chunks
    ws = torch.empty(n_ws, dtype=torch.uint8, device=device) if n_ws else None
    _mod().topk_select(*args, _ptr(ws), _stream(device))


def _topk_by_sort(Q, X, k, ex_indptr, ex_indices, ex_rows, c_indptr, c_indices, cand, sdt,
                  out_s, idx, device):
    """Fallback for k > TOPK_MAX_K: masked score tiles, NaN -> -inf, stable
    descending sort (equal scores keep the smaller index first), -inf -> -1."""
    torch = _torch()
    B, N = Q.shape[0], X.shape[0]
    ninf = float("-inf")
    bq = max(1, min(B, TOPK_TILE_SCORES // max(N, 1)))
    for b0 in range(0, B, bq):
        b1 = min(B, b0 + bq)
        if cand is None:
            S = _score_tile(Q[b0:b1], X, sdt)
        else:
            S = torch.full((b1 - b0, N), ninf, dtype=sdt, device=device)
            lo, hi = int(c_indptr[b0]), int(c_indptr[b1])
            r = np.repeat(np.arange(b1 - b0), np.diff(c_indptr[b0:b1 + 1]))
            S[torch.from_numpy(r).to(device), cand[1][lo:hi]] = cand[2][lo:hi]
        S = torch.where(torch.isnan(S), ninf, S)  # (nan_to_num would also clip -inf)
        if ex_indptr is not None:
            rows = np.arange(b0, b1) if ex_rows is None else np.asarray(ex_rows[b0:b1])
            starts, ends = ex_indptr[rows], ex_indptr[rows + 1]
            r = np.repeat(np.arange(b1 - b0), ends - starts)
            cols = (np.concatenate([ex_indices[s:e] for s, e in zip(starts, ends, strict=True)])
                    if len(r) else np.zeros(0, dtype=np.int64))
            S[torch.from_numpy(r).to(device), torch.from_numpy(cols.astype(np.int64)).to(device)] \
                = ninf
        vals, order = torch.sort(S, dim=1, descending=True, stable=True)
        m = min(k, N)
        vals, order = vals[:, :m], order[:, :m]
        order = torch.where(vals == ninf, torch.full_like(order, -1), order)
        out_s[b0:b1, :m] = vals
        idx[b0:b1, :m] = order
