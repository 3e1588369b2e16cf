"""Search spaces: each family's default config (trained first) and its seeded random configs."""

from __future__ import annotations

from typing import Any

import numpy as np

from obsrv.service_tasks.zoo.families import FAMILIES, Problem


def default_params(family: str, problem: Problem) -> dict[str, Any]:
    """The family's default config: trained first, so even a zero budget yields a model."""
    if family == "linear":
        return {"C": 1.0} if problem == "classification" else {"alpha": 1.0}
    if family == "knn":
        return {"n_neighbors": 15, "weights": "distance"}
    if family in ("random_forest", "extra_trees"):
        # min_samples_leaf >= 2 keeps the K x n_estimators fold trees (the served model) compact
        return {
            "n_estimators": 150,
            "max_features": "sqrt" if problem == "classification" else 0.5,
            "min_samples_leaf": 3 if family == "random_forest" else 2,
        }
    if family == "hist_gbm":
        return {"learning_rate": 0.1, "max_leaf_nodes": 31, "min_samples_leaf": 20, "max_iter": 300}
    if family == "xgboost":
        return {
            "n_estimators": 1000,
            "learning_rate": 0.05,
            "max_depth": 6,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
            "min_child_weight": 1.0,
        }
    if family == "lightgbm":
        return {
            "n_estimators": 1000,
            "learning_rate": 0.05,
            "num_leaves": 31,
            "min_child_samples": 20,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
        }
    if family == "catboost":
        return {"iterations": 1000, "learning_rate": 0.08, "depth": 6}
    raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def sample_params(family: str, problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
    """One random config from the family's search space."""
    c = lambda values: values[int(rng.integers(len(values)))]  # noqa: E731
    if family == "linear":
        return {"C": _loguniform(rng, 1e-3, 1e2)} if problem == "classification" else {"alpha": _loguniform(rng, 1e-3, 1e3)}
    if family == "knn":
        return {"n_neighbors": int(c([5, 10, 25, 50, 100])), "weights": c(["uniform", "distance"]), "p": int(c([1, 2]))}
    if family in ("random_forest", "extra_trees"):
        return {
            "n_estimators": int(c([100, 150, 200])),
            "max_features": c(["sqrt", 0.3, 0.5, 0.8]),
            "min_samples_leaf": int(c([2, 4, 8, 16])),
            "max_depth": c([None, 8, 16]),
        }
    if family == "hist_gbm":
        return {
            "learning_rate": _loguniform(rng, 0.02, 0.3),
            "max_leaf_nodes": int(c([7, 15, 31, 63])),
            "min_samples_leaf": int(c([5, 10, 20, 50])),
            "l2_regularization": _loguniform(rng, 1e-3, 10.0),
            "max_iter": 500,
        }
    if family == "xgboost":
        return {
            "n_estimators": 1000,
            "learning_rate": _loguniform(rng, 0.01, 0.3),
            "max_depth": int(rng.integers(3, 11)),
            "subsample": float(rng.uniform(0.5, 1.0)),
            "colsample_bytree": float(rng.uniform(0.4, 1.0)),
            "min_child_weight": _loguniform(rng, 0.5, 20.0),
            "reg_lambda": _loguniform(rng, 1e-2, 10.0),
        }
    if family == "lightgbm":
        return {
            "n_estimators": 1000,
            "learning_rate": _loguniform(rng, 0.01, 0.3),
            "num_leaves": int(c([7, 15, 31, 63, 127])),
            "min_child_samples": int(c([5, 10, 20, 50])),
            "subsample": float(rng.uniform(0.5, 1.0)),
            "colsample_bytree": float(rng.uniform(0.4, 1.0)),
            "reg_lambda": _loguniform(rng, 1e-3, 10.0),
        }
    if family == "catboost":
        return {
            "iterations": 1000,
            "learning_rate": _loguniform(rng, 0.02, 0.2),
            "depth": int(rng.integers(4, 9)),
            "l2_leaf_reg": _loguniform(rng, 1.0, 10.0),
        }
    raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
