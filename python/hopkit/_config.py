"""Build facts, backends and thread control."""

from __future__ import annotations

import os
import platform

from . import _backend

__version__ = "0.1.0"


def default_num_threads() -> int:
    """hopkit's thread count until ``set_num_threads``: ``HOPKIT_NUM_THREADS``,
    else the first level of ``OMP_NUM_THREADS``, else the CPUs this process may
    run on. Read once, when a backend loads; torch's own setting never enters."""
    raw = os.environ.get("HOPKIT_NUM_THREADS", "").strip()
    if raw:
        if not (raw.isascii() and raw.isdigit() and int(raw) >= 1):
            raise ValueError(f"hopkit: HOPKIT_NUM_THREADS must be an integer >= 1, got {raw!r}")
        return int(raw)
    omp = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if omp.isascii() and omp.isdigit() and int(omp) >= 1:
        return int(omp)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """Threads the native kernels use: hopkit's own count (``set_num_threads``,
    ``default_num_threads``), whatever torch or OpenMP were told."""
    nat = _backend.native_module()
    return nat.get_num_threads() if nat is not None else 1


def set_num_threads(n: int) -> None:
    """Set the number of threads of the native kernels (and Numba's, if loaded)."""
    if int(n) < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    nat = _backend.native_module()
    if nat is not None:
        nat.set_num_threads(int(n))
    if _backend._cache.get("numba") is not None:
        import numba

        numba.set_num_threads(min(int(n), numba.config.NUMBA_NUM_THREADS))


def config() -> dict:
    """Everything show_config prints, as a dict."""
    nat = _backend.native_module()
    cuda = _backend.cuda_module()
    info = {
        "version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "backends": _backend.available(),
        "default_backend": os.environ.get("HOPKIT_BACKEND", "auto"),
        "threads": get_num_threads(),
    }
    if nat is not None:
        info["native"] = {
            "openmp": bool(nat.openmp),
            "isa": nat.active_isa(),
            "compiled_isas": nat.compiled_isas(),
            "build_version": getattr(nat, "__version__", "?"),
        }
    if cuda is not None:
        info["cuda"] = {"architectures": getattr(cuda, "architectures", "?"),
                        "devices": cuda.device_count()}
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:
        info["numba"] = None
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


def show_config() -> None:
    """Print version, available backends, threads and build options."""
    c = config()
    print(f"hopkit {c['version']} (Python {c['python']}, {c['platform']})")
    b = c["backends"]
    print("backends: " + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in b.items()))
    print(f"default backend: {c['default_backend']}   threads: {c['threads']}")
    if "native" in c:
        n = c["native"]
        print(f"native CPU: OpenMP={n['openmp']} ISA={n['isa']} (compiled: {n['compiled_isas']})")
    if "cuda" in c:
        print(f"CUDA module: architectures={c['cuda']['architectures']} "
              f"devices={c['cuda']['devices']}")
    else:
        print("CUDA module: not built")
    print(f"numba: {c['numba'] or 'not installed'}   torch: {c['torch'] or 'not installed'}")
