"""Backend selection: one place decides native | numba | numpy | cuda for each call.

Every backend module implements the same out-parameter contract (see
``hopkit/reference.py`` for the contract and the oracle): the CPU backends on
validated, C-contiguous NumPy arrays, the CUDA backend (``hopkit.cuda_backend``)
on torch CUDA tensors. For CPU data, ``backend=None`` or ``"auto"`` takes
``HOPKIT_BACKEND`` if set, else the native extension, else Numba, else the
NumPy reference; falling back past the native extension warns once. For
CUDA tensors (``device``), "auto", "native" and "cuda" resolve to the CUDA
backend; a CPU-only choice, or no CUDA build, is a TypeError.
"""

from __future__ import annotations

import importlib
import os
import warnings

BACKENDS = ("auto", "native", "numba", "numpy", "cuda")
DEVICE_TYPES = ("cuda",)  # device types the CUDA backend serves (a test hook widens it)
_cache: dict[str, object] = {}
_warned = False


def native_module():
    """The compiled CPU module, or None when the extension is not built."""
    if "native" not in _cache:
        try:
            mod = importlib.import_module("hopkit._native")
        except ImportError:
            mod = None
        if mod is not None:
            from ._config import default_num_threads

            mod.set_num_threads(default_num_threads())
        _cache["native"] = mod
    return _cache["native"]


def cuda_module():
    """The compiled CUDA module, or None (not built, or no usable CUDA runtime)."""
    if "cuda" not in _cache:
        try:
            _cache["cuda"] = importlib.import_module("hopkit._cuda")
        except ImportError:
            _cache["cuda"] = None
    return _cache["cuda"]


def numba_module():
    """hopkit's Numba kernels, or None when Numba is not installed."""
    if "numba" not in _cache:
        try:
            import numba
        except ImportError:
            _cache["numba"] = None
        else:
            from ._config import default_num_threads

            mod = importlib.import_module("hopkit._numba_kernels")
            nat = native_module()  # Numba starts with hopkit's count too
            n = nat.get_num_threads() if nat is not None else default_num_threads()
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
            _cache["numba"] = mod
    return _cache["numba"]


def reference_module():
    return importlib.import_module("hopkit.reference")


def available() -> dict[str, bool]:
    return {
        "native": native_module() is not None,
        "numba": numba_module() is not None,
        "numpy": True,
        "cuda": cuda_module() is not None,
    }


def cuda_backend():
    """The CUDA backend (hopkit.cuda_backend: the contract on device tensors)."""
    return importlib.import_module("hopkit.cuda_backend")


def resolve(backend: str | None, op: str = "hopkit", device=None):
    """Return the backend module for ``backend`` (None/"auto" -> env or best)
    and, for tensors, their ``device`` (a torch.device or None for CPU data)."""
    global _warned
    if device is not None and device.type in DEVICE_TYPES:
        name = "auto" if backend is None else str(backend).lower()
        if name not in ("auto", "native", "cuda"):
            raise TypeError(f"{op}: backend={backend!r} runs on CPU arrays; got tensors on "
                            f"{device} (use backend='auto' or move the inputs to the CPU)")
        if cuda_module() is None:
            raise TypeError(f"{op}: got CUDA tensors ({device}) but hopkit was built without "
                            "CUDA; move them to the CPU or rebuild with HOPKIT_CUDA=ON")
        return cuda_backend()
    if device is not None and device.type != "cpu":
        raise TypeError(f"{op}: tensors are on {device}; hopkit runs on CPU and CUDA tensors")
    name = "auto" if backend is None else str(backend).lower()
    if name == "auto":  # as the docstring says (and hopkit::spmm's C++ kernel reads it)
        name = os.environ.get("HOPKIT_BACKEND", "auto").lower()
    if name not in BACKENDS:
        raise ValueError(f"{op}: backend must be one of {BACKENDS}, got {name!r}")
    if name == "cuda":
        raise TypeError(f"{op}: backend='cuda' needs CUDA tensors, got CPU data")
    if name == "native":
        mod = native_module()
        if mod is None:
            raise ValueError(f"{op}: backend='native' requested but hopkit._native is not built")
        return mod
    if name == "numba":
        mod = numba_module()
        if mod is None:
            raise ValueError(f"{op}: backend='numba' requested but numba is not installed")
        return mod
    if name == "numpy":
        return reference_module()
    mod = native_module()
    if mod is not None:
        return mod
    if not _warned:
        _warned = True
        warnings.warn(
            "hopkit: native extension not available; falling back to "
            + ("Numba" if numba_module() is not None else "the NumPy reference"),
            RuntimeWarning,
            stacklevel=3,
        )
    return numba_module() or reference_module()


def name_of(mod) -> str:
    if getattr(mod, "TAKES_TENSORS", False):
        return "cuda"
    if mod is native_module():
        return "native"
    if mod is reference_module():
        return "numpy"
    return "numba"
