"""Search spaces: the order in which a search draws a family's configs.

``config_sequence``: the family's default config first (so even a zero budget yields a model), then
AutoGluon's zero-shot portfolio for the family in AutoGluon's order (``portfolio``), then seeded
random configs from the family's space, without end. Each family's default and space is one entry
of ``_DEFAULTS`` and ``_SPACES``, looked up in one place that names an unknown family.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

from obsrv.service_tasks.zoo.families import FAMILIES, Problem
from obsrv.service_tasks.zoo.portfolio import BOOSTER_ROUNDS, portfolio

DEFAULT = "default"
RANDOM = "random"
"""Origins of a drawn config besides a portfolio config's AutoGluon name (trial records say which)."""


def _forest_default(leaf: int) -> Callable[[Problem], dict[str, Any]]:
    def default(problem: Problem) -> dict[str, Any]:
        # min_samples_leaf >= 2 keeps the K x n_estimators fold trees (the served model) compact
        return {"n_estimators": 150, "max_features": "sqrt" if problem == "classification" else 0.5,
                "min_samples_leaf": leaf}

    return default


_DEFAULTS: dict[str, Callable[[Problem], dict[str, Any]]] = {
    "linear": lambda problem: {"C": 1.0} if problem == "classification" else {"alpha": 1.0},
    "knn": lambda problem: {"n_neighbors": 15, "weights": "distance"},
    "random_forest": _forest_default(3),
    "extra_trees": _forest_default(2),
    "hist_gbm": lambda problem: {"learning_rate": 0.1, "max_leaf_nodes": 31, "min_samples_leaf": 20, "max_iter": 300},
    "xgboost": lambda problem: {"n_estimators": BOOSTER_ROUNDS, "learning_rate": 0.05, "max_depth": 6, "subsample": 0.8,
                                "colsample_bytree": 0.8, "min_child_weight": 1.0},
    "lightgbm": lambda problem: {"n_estimators": BOOSTER_ROUNDS, "learning_rate": 0.05, "num_leaves": 31,
                                 "min_child_samples": 20, "subsample": 0.8, "colsample_bytree": 0.8},
    "catboost": lambda problem: {"iterations": BOOSTER_ROUNDS, "learning_rate": 0.08, "depth": 6},
}


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _choice(rng: np.random.Generator, values: list[Any]) -> Any:
    return values[int(rng.integers(len(values)))]


def _linear(problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
    if problem == "classification":
        return {"C": _loguniform(rng, 1e-3, 1e2)}
    return {"alpha": _loguniform(rng, 1e-3, 1e3)}


def _knn(problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
    return {"n_neighbors": int(_choice(rng, [5, 10, 25, 50, 100])), "weights": _choice(rng, ["uniform", "distance"]),
            "p": int(_choice(rng, [1, 2]))}


def _forest(problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
    return {
        "n_estimators": int(_choice(rng, [100, 150, 200])),
        "max_features": _choice(rng, ["sqrt", 0.3, 0.5, 0.8]),
        "min_samples_leaf": int(_choice(rng, [2, 4, 8, 16])),
        "max_depth": _choice(rng, [None, 8, 16]),
    }


def _hist_gbm(problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
    return {
        "learning_rate": _loguniform(rng, 0.02, 0.3),
        "max_leaf_nodes": int(_choice(rng, [7, 15, 31, 63])),
        "min_samples_leaf": int(_choice(rng, [5, 10, 20, 50])),
        "l2_regularization": _loguniform(rng, 1e-3, 10.0),
        "max_iter": 500,
    }


def _xgboost(problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
    return {
        "n_estimators": BOOSTER_ROUNDS,
        "learning_rate": _loguniform(rng, 0.01, 0.3),
        "max_depth": int(rng.integers(3, 11)),
        "subsample": float(rng.uniform(0.5, 1.0)),
        "colsample_bytree": float(rng.uniform(0.4, 1.0)),
        "min_child_weight": _loguniform(rng, 0.5, 20.0),
        "reg_lambda": _loguniform(rng, 1e-2, 10.0),
    }


def _lightgbm(problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
    return {
        "n_estimators": BOOSTER_ROUNDS,
        "learning_rate": _loguniform(rng, 0.01, 0.3),
        "num_leaves": int(_choice(rng, [7, 15, 31, 63, 127])),
        "min_child_samples": int(_choice(rng, [5, 10, 20, 50])),
        "subsample": float(rng.uniform(0.5, 1.0)),
        "colsample_bytree": float(rng.uniform(0.4, 1.0)),
        "reg_lambda": _loguniform(rng, 1e-3, 10.0),
    }


def _catboost(problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
    return {
        "iterations": BOOSTER_ROUNDS,
        "learning_rate": _loguniform(rng, 0.02, 0.2),
        "depth": int(rng.integers(4, 9)),
        "l2_leaf_reg": _loguniform(rng, 1.0, 10.0),
    }


_SPACES: dict[str, Callable[[Problem, np.random.Generator], dict[str, Any]]] = {
    "linear": _linear,
    "knn": _knn,
    "random_forest": _forest,
    "extra_trees": _forest,
    "hist_gbm": _hist_gbm,
    "xgboost": _xgboost,
    "lightgbm": _lightgbm,
    "catboost": _catboost,
}


def _known(family: str) -> str:
    if family not in FAMILIES or family not in _DEFAULTS:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    return family


def default_params(family: str, problem: Problem) -> dict[str, Any]:
    """The family's default config: trained first, so even a zero budget yields a model."""
    return _DEFAULTS[_known(family)](problem)


def sample_params(family: str, problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
    """One random config from the family's search space."""
    return _SPACES[_known(family)](problem, rng)


def config_sequence(family: str, problem: Problem, rng: np.random.Generator) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(origin, params)`` in the order a search tries them: the default config (origin
    ``DEFAULT``), AutoGluon's portfolio for the family in its order (origin: the AutoGluon model
    name), then random configs drawn from ``rng`` (origin ``RANDOM``), without end. The same
    ``rng`` seed gives the same sequence."""
    yield DEFAULT, default_params(family, problem)
    yield from portfolio(family, problem)
    while True:
        yield RANDOM, sample_params(family, problem, rng)
