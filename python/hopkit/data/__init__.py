"""Interaction data: the built-in synthetic generator (and, later, loaders)."""

from .synthetic import gowalla_like, synthetic

__all__ = ["gowalla_like", "synthetic"]
