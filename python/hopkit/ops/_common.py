"""Validation helpers shared by every op module (one message style:
``op: argument must ... , got ...``)."""

from __future__ import annotations

import numpy as np

from .._torch import is_tensor

FLOATS = (np.float32, np.float64)


def check_device(op, **tensors):
    """The device check of CPU data (CUDA inputs go through ops/_cuda.route);
    all inputs on one device."""
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


def check_ids_meta(op, name, a):
    """a must be a 1-D integer array or tensor (metadata only)."""
    if not dtype_name(a).startswith(("int", "uint")):
        raise TypeError(f"{op}: {name} must have an integer dtype, got {dtype_name(a)}")
    if a.ndim != 1:
        raise ValueError(f"{op}: {name} must be 1-D, got shape {tuple(a.shape)}")


def check_ids(op, name, a, n, of):
    """a must be a 1-D integer array (or tensor) with values in [0, n), the
    rows of ``of``; returns it as a NumPy array (dtype unchanged), or a
    tensor as it is (checked where it lives: one flag read back from a
    device)."""
    if is_tensor(a):
        check_ids_meta(op, name, a)
        bad = (a < 0) | (a >= n)
        if a.numel() and bool(bad.any()):
            b = int(bad.nonzero()[0, 0])
            raise ValueError(f"{op}: {name} must lie in [0, {n}) (rows of {of}); {name}[{b}] = "
                             f"{int(a[b])}")
        return a
    a = to_numpy(a)
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    check_ids_meta(op, name, a)
    if a.size and (a.min() < 0 or a.max() >= n):
        b = int(np.flatnonzero((a < 0) | (a >= n))[0])
        raise ValueError(f"{op}: {name} must lie in [0, {n}) (rows of {of}); {name}[{b}] = "
                         f"{a[b]}")
    return a


def dtype_name(d) -> str:
    """'float32', 'int64', ... of a NumPy or torch dtype (or of an array's)."""
    d = getattr(d, "dtype", d)
    if isinstance(d, str):
        return d
    if isinstance(d, (np.dtype, type)):
        return np.dtype(d).name
    return str(d).removeprefix("torch.")


def float_names(cuda=False):
    """The value dtypes an op takes: float32/float64, plus the half types on CUDA."""
    return ("float32", "float64") + (("float16", "bfloat16") if cuda else ())


def _listed(names):
    return " or ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " or " + names[-1]


def check_dense(op, name, X, rows=None, dtype=None, same_as="the same dtype as the features",
                cuda=False):
    """X must be a 2-D float array or tensor (float32/float64; with ``cuda``
    also float16/bfloat16, and C-contiguous: device memory is never copied
    behind the caller's back). A NumPy array comes back C-contiguous (copied
    if needed); a tensor comes back as it is, checked from its metadata alone
    (so the check also runs on fake tensors under torch.compile); the torch
    operators make CPU tensors contiguous. The one validation of dense
    arguments for NumPy, torch CPU and torch CUDA (CuPy arrays arrive as
    torch views) inputs."""
    tensor = is_tensor(X)
    if not tensor and not isinstance(X, np.ndarray):
        raise TypeError(f"{op}: {name} must be a NumPy array or torch tensor, got "
                        f"{type(X).__name__}")
    got = dtype_name(X)
    if got not in float_names(cuda):
        raise TypeError(f"{op}: {name} must be {_listed(float_names(cuda))}, got {got}")
    if dtype is not None and got != dtype_name(dtype):
        raise TypeError(f"{op}: {name} must have {same_as} ({dtype_name(dtype)}), got {got}")
    if X.ndim != 2:
        raise ValueError(f"{op}: {name} must be 2-D, got shape {tuple(X.shape)}")
    if rows is not None and X.shape[0] != rows:
        raise ValueError(f"{op}: {name} must have {rows} rows, got {X.shape[0]}")
    if cuda:
        check_contiguous(op, name, X)
    return X if tensor else np.ascontiguousarray(X)


def check_edge_weight(op, E, dtype, shapes, meaning, cuda=False):
    """edge_weight: a float array or tensor of X's dtype whose shape is one of
    ``shapes`` (``meaning`` says what they are, for the message). A NumPy
    array comes back C-contiguous, a tensor as it is."""
    if not (is_tensor(E) or isinstance(E, np.ndarray)) or dtype_name(E) not in float_names(cuda):
        raise TypeError(f"{op}: edge_weight must be a float array ({', '.join(float_names(cuda))})"
                        f", got {dtype_name(E) if hasattr(E, 'dtype') else type(E).__name__}")
    if dtype_name(E) != dtype_name(dtype):
        raise TypeError(f"{op}: edge_weight must have the dtype of X ({dtype_name(dtype)}), got "
                        f"{dtype_name(E)}")
    if tuple(E.shape) not in shapes:
        raise ValueError(f"{op}: edge_weight must have shape {' or '.join(map(str, shapes))} "
                         f"({meaning}), got {tuple(E.shape)}")
    if cuda:
        check_contiguous(op, "edge_weight", E)
    return E if is_tensor(E) else np.ascontiguousarray(E)


def check_contiguous(op, name, X):
    if not X.is_contiguous():
        raise ValueError(f"{op}: {name} is a non-contiguous CUDA tensor (strides "
                         f"{tuple(X.stride())}); pass {name}.contiguous()")
