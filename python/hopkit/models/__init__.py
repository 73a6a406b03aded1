"""Recommenders built on hopkit's kernels: LightGCN (torch, BPR), the
training-free GF-CF graph filter, and a popularity baseline. All share
``recommend``, ``evaluate``, ``save`` / ``load`` (see ``_base.Recommender``)."""

from ._base import ModelError, Recommender, load_model
from .graph_filter import GraphFilter, Popularity, randomized_svd
from .lightgcn import LightGCN

MODELS = {cls.name: cls for cls in (LightGCN, GraphFilter, Popularity)}

__all__ = ["MODELS", "GraphFilter", "LightGCN", "ModelError", "Popularity", "Recommender",
           "load_model", "randomized_svd"]
