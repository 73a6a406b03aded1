"""Device routing of the public ops: where an op's array arguments live.

``route`` decides CPU vs CUDA from the arguments, refuses mixed devices, a
CUDA device other than the current one and tensors with no CUDA build, and
turns CuPy arrays into zero-copy torch views (and results back). The op
modules then validate every argument whatever its device
(``ops/_common.check_dense``) and call the torch operators
(``hopkit/torch_ops``), whose kernels take the backend that
``_backend.resolve`` picks for the tensors' device (``hopkit.cuda_backend``
for CUDA). No torch import at module level: NumPy users never pay for it.
"""

from __future__ import annotations

import numpy as np

from .. import _backend
from .._torch import is_tensor


def _torch():
    import torch

    return torch


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
    # (the same rule as _backend.resolve, checked here so that it comes before validation)

    def back(r):
        if not cupy_in:
            return r
        import cupy

        if isinstance(r, tuple):
            return tuple(None if v is None else cupy.from_dlpack(v.detach()) for v in r)
        return cupy.from_dlpack(r.detach())

    return dev, out, back
