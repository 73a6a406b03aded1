"""Validation helpers shared by every op module (one message style:
``op: argument must ... , got ...``)."""

from __future__ import annotations

import numpy as np

from .._torch import is_tensor

FLOATS = (np.float32, np.float64)


def check_device(op, **tensors):
    """CPU tensors only until the CUDA kernels exist; all inputs on one device."""
    from .._backend import cuda_module

    devices = {name: t.device for name, t in tensors.items() if is_tensor(t)}
    if len(set(map(str, devices.values()))) > 1:
        desc = ", ".join(f"{n} on {d}" for n, d in devices.items())
        raise ValueError(f"{op}: all tensors must be on one device, got {desc}")
    for name, dev in devices.items():
        if dev.type != "cpu":
            if dev.type == "cuda" and cuda_module() is None:
                raise TypeError(f"{op}: {name} is a CUDA tensor ({dev}) but hopkit was built "
                                "without CUDA; move it to the CPU or rebuild with HOPKIT_CUDA=ON")
            raise TypeError(f"{op}: {name} is on {dev}; hopkit {op} runs on CPU tensors in this "
                            "build")


def to_numpy(x):
    if x is None:
        return None
    if is_tensor(x):
        return x.detach().contiguous().resolve_conj().numpy()
    return x


def check_ids(op, name, a, n, of):
    """a must be a 1-D integer array (or tensor) with values in [0, n), the
    rows of ``of``; returns it as a NumPy array (dtype unchanged)."""
    a = to_numpy(a)
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{op}: {name} must have an integer dtype, got {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{op}: {name} must be 1-D, got shape {a.shape}")
    if a.size and (a.min() < 0 or a.max() >= n):
        b = int(np.flatnonzero((a < 0) | (a >= n))[0])
        raise ValueError(f"{op}: {name} must lie in [0, {n}) (rows of {of}); {name}[{b}] = "
                         f"{a[b]}")
    return a


def check_dense(op, name, X, rows=None, dtype=None):
    """X must be a 2-D float32/float64 array (non-contiguous input is copied)."""
    a = to_numpy(X)
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{op}: {name} must be a NumPy array or torch tensor, got "
                        f"{type(X).__name__}")
    if a.dtype not in FLOATS:
        raise TypeError(f"{op}: {name} must be float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{op}: {name} must have the same dtype as the features ({dtype}), got "
                        f"{a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{op}: {name} must be 2-D, got shape {a.shape}")
    if rows is not None and a.shape[0] != rows:
        raise ValueError(f"{op}: {name} must have {rows} rows, got {a.shape[0]}")
    return np.ascontiguousarray(a)
