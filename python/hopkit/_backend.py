"""Backend selection: one place decides native | numba | numpy for each call.

Every backend module implements the same out-parameter contract on validated,
C-contiguous NumPy arrays (see ``hopkit/reference.py`` for the contract and the
oracle). ``backend=None`` or ``"auto"`` takes ``HOPKIT_BACKEND`` if set, else the
native extension, else Numba, else the NumPy reference; falling back past the
native extension warns once.
"""

from __future__ import annotations

import importlib
import os
import warnings

BACKENDS = ("auto", "native", "numba", "numpy")
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


def resolve(backend: str | None, op: str = "hopkit"):
    """Return the backend module for ``backend`` (None/"auto" -> env or best)."""
    global _warned
    name = backend if backend is not None else os.environ.get("HOPKIT_BACKEND", "auto")
    name = str(name).lower()
    if name not in BACKENDS:
        raise ValueError(f"{op}: backend must be one of {BACKENDS}, got {name!r}")
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
    if mod is native_module():
        return "native"
    if mod is reference_module():
        return "numpy"
    return "numba"
