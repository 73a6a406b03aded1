"""Recommenders built on hopkit's kernels: LightGCN (torch, BPR), the
training-free graph filters (GF-CF, Turbo-CF, BSPM, ChebyCF), the EASE^R and
ItemKNN baselines, and a popularity baseline. All share
``recommend``, ``evaluate``, ``save`` / ``load`` (see ``_base.Recommender``)."""

from ._base import ModelError, Recommender, load_model
from .filters import BSPM, EASE, ChebyCF, ItemKNN, TurboCF
from .graph_filter import GraphFilter, Popularity, randomized_svd, warm_svd
from .lightgcn import LightGCN
from .side_info import (
    AttributeKNN,
    AttributePopularity,
    RandomScores,
    SideInfoLightGCN,
    SideInfoTurboCF,
    augmented_matrix,
)

MODELS = {cls.name: cls for cls in (LightGCN, GraphFilter, Popularity, TurboCF, BSPM, ChebyCF,
                                     EASE, ItemKNN, SideInfoTurboCF, SideInfoLightGCN)}

__all__ = [
    "AttributeKNN",
    "AttributePopularity",
    "augmented_matrix",
    "BSPM",
    "ChebyCF",
    "EASE",
    "GraphFilter",
    "ItemKNN",
    "LightGCN",
    "load_model",
    "ModelError",
    "MODELS",
    "Popularity",
    "randomized_svd",
    "RandomScores",
    "Recommender",
    "SideInfoLightGCN",
    "SideInfoTurboCF",
    "TurboCF",
    "warm_svd",
]
