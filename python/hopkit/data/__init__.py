"""Interaction data: loaders (text formats -> users x items CSR with id maps),
splits, and the built-in synthetic generator."""

from .attributes import (
    Attributes,
    ColdSplit,
    evaluate_items,
    load_attribute_csv,
    load_kg,
    load_recbole_features,
    split_cold_items,
)
from .loaders import (
    FORMATS,
    DataError,
    Dataset,
    from_csr,
    load,
    split_leave_last,
    split_random,
)
from .synthetic import gowalla_like, synthetic

__all__ = [
    "Attributes",
    "ColdSplit",
    "DataError",
    "Dataset",
    "evaluate_items",
    "FORMATS",
    "from_csr",
    "gowalla_like",
    "load",
    "load_attribute_csv",
    "load_kg",
    "load_recbole_features",
    "split_cold_items",
    "split_leave_last",
    "split_random",
    "synthetic",
]
