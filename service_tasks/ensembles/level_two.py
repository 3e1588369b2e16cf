"""The ``lightgbm_full`` meta-learner: a second stack level of full capacity.

Why: the stack's other meta-learners are low-capacity on purpose (a non-negative GLM, a depth-2
LightGBM), so they can re-weight the members but cannot learn where in feature space which member
is right. AutoGluon's second stack level does that: its level-2 models are ordinary full models fit
on the original features plus the level-1 models' out-of-fold predictions, bagged on the same folds
(``StackerEnsembleModel`` in ``autogluon/core/models/ensemble/stacker_ensemble_model.py``,
AutoGluon 1.6: ``set_stack_columns`` gives one stack column per model for binary targets, the
positive-class probability, and for regression, and K per model for multiclass).

This learner is the first LightGBM config of AutoGluon's portfolio (``LightGBMXT``: extra trees,
``zoo.portfolio``), fit and early-stopped like a base fold model (``zoo.FamilyModel``), on the
members' OOF predictions in AutoGluon's layout and, with ``passthrough: true``, the raw feature
frame with its categoricals, preprocessed the way the zoo preprocesses base models, inside each fit.

Honesty: it is a ``Combiner`` like the others, so the stack task scores it on nested OOF over the
shared folds and keeps it only when it beats greedy selection (``stacking.dynamic_stack``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from obsrv.service_tasks.zoo.portfolio import portfolio

from .base import Problem, check_stack
from .learners import ZooLearner

FAMILY = "lightgbm"
MEMBER_PREFIX = "obsrv_member_"


def level_two_config(problem: Problem) -> dict[str, Any]:
    """The first LightGBM config of AutoGluon's portfolio, in the zoo's names: what AutoGluon's
    second level fits first (AutoGluon fits the same portfolio at every stack level unless told otherwise)."""
    return next(portfolio(FAMILY, problem))[1]


def member_columns(P: np.ndarray, problem: Problem) -> np.ndarray:
    """The members' predictions as level-2 features, one row per training row: regression -> the M
    predictions; binary -> the M positive-class probabilities (the other column is redundant);
    multiclass -> every member's K probabilities (M*K, member-major)."""
    if problem == "regression":
        return P[:, :, 0].T.copy()
    if P.shape[2] == 2:
        return P[:, :, 1].T.copy()
    return P.transpose(1, 0, 2).reshape(P.shape[1], -1)


def _unused_prefix(columns: list[str]) -> str:
    """``MEMBER_PREFIX``, with underscores in front until no user column starts with it: the
    member columns must never shadow or be shadowed by a feature (users' names are kept as they are)."""
    prefix = MEMBER_PREFIX
    while any(str(c).startswith(prefix) for c in columns):
        prefix = "_" + prefix
    return prefix


@dataclass
class FullStacker:
    """LightGBM (``level_two_config``, early-stopped like a fold model) over member predictions, plus
    the raw features when ``extra`` (the feature frame) is given. ``predict`` returns ``(n, K)``."""

    problem: Problem
    n_outputs: int
    seed: int = 42
    categorical_columns: list[str] = field(default_factory=list)
    learner_: ZooLearner | None = field(default=None, init=False)
    names_: list[str] = field(default_factory=list, init=False)

    def _frame(self, P: np.ndarray, extra: Any) -> pd.DataFrame:
        F = member_columns(P, self.problem)
        members = pd.DataFrame(F, columns=self.names_)
        if extra is None:
            return members
        X = pd.DataFrame(extra).reset_index(drop=True)
        # a served frame may carry columns the fit never saw; none of them may take a member's name
        X = X.drop(columns=[c for c in self.names_ if c in X.columns])
        return pd.concat([X, members], axis=1)

    def fit(self, P: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, extra: Any = None) -> "FullStacker":
        P = check_stack(P, y)
        width = member_columns(P[:, :1], self.problem).shape[1]
        prefix = _unused_prefix([] if extra is None else [str(c) for c in pd.DataFrame(extra).columns])
        self.names_ = [f"{prefix}{j}" for j in range(width)]
        self.learner_ = ZooLearner(FAMILY, self.problem, self.n_outputs, level_two_config(self.problem),
                                   self.seed, list(self.categorical_columns))
        self.learner_.fit(self._frame(P, extra), np.asarray(y), w)
        return self

    def predict(self, P: np.ndarray, extra: Any = None) -> np.ndarray:
        assert self.learner_ is not None, "fit the combiner first"
        P = check_stack(P)
        return np.asarray(self.learner_.predict_matrix(self._frame(P, extra)), dtype=np.float64)


@dataclass(frozen=True)
class FullStackFactory:
    """Fresh ``FullStacker`` instances (picklable, for ``nested_oof``)."""

    problem: Problem
    n_outputs: int
    seed: int = 42
    categorical_columns: tuple[str, ...] = ()

    def __call__(self) -> FullStacker:
        return FullStacker(self.problem, self.n_outputs, self.seed, list(self.categorical_columns))
