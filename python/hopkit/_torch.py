"""torch is optional: everything here works (and returns False/None) without it."""

from __future__ import annotations

import sys


def torch_or_none():
    """The torch module if it is importable, else None (imported on first use)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def is_tensor(x) -> bool:
    # Only look if torch is already imported: a NumPy user never pays for it.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def require_torch(op: str):
    torch = torch_or_none()
    if torch is None:
        raise ImportError(f"{op} needs torch: pip install torch==2.13.0")
    return torch
