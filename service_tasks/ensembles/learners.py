"""Frame learners used inside ensemble tasks (per-route models, blend re-fits): the runtime zoo's
single fold model (``zoo.FamilyModel``, with the family's own per-fit preprocessing) behind one
small, picklable shape: ``fit(X frame, y, w) -> self`` and ``predict_matrix(X) -> (n, K)`` with all
K class columns present even when a subset (a small route) lacked a class.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
from obsrv.service_tasks.zoo import time_limits
from obsrv.service_tasks import zoo
from obsrv.service_tasks.zoo import served

from .base import Problem


@dataclass
class ZooLearner:
    """One zoo family model fit on one row subset.

    Parameters
    ----------
    family : str
        A zoo family (``zoo.FAMILIES``).
    problem : {"classification", "regression"}
    n_outputs : int
        K, the number of class columns (1 for regression).
    params : dict or None
        The family config; None = ``zoo.default_params`` (the config every base task trains first).
    seed : int
    categorical_columns : list[str] or None
        Default: the non-numeric columns.
    device : {"cpu", "cuda"}
    """

    family: str
    problem: Problem
    n_outputs: int
    params: dict[str, Any] | None = None
    seed: int = 42
    categorical_columns: list[str] | None = None
    device: str = "cpu"
    time_limit_s: float | None = None
    """Training time limit of the next fit (``time_limits``: hist_gbm, boosters and forests stop
    early and keep what they have); None trains to the end."""
    pace_hint: time_limits.Pace | None = None
    """CatBoost under ``time_limit_s``: the measured pace of a like fit, to start at the rate it affords
    (``zoo.FamilyModel.pace_hint``)."""
    model_: Any = field(default=None, init=False)
    constant_: np.ndarray | None = field(default=None, init=False)
    columns_: list[str] = field(default_factory=list, init=False)

    def fit(self, X: pd.DataFrame, y: np.ndarray, w: np.ndarray | None = None) -> "ZooLearner":
        y = np.asarray(y)
        self.constant_ = None
        # a route (row subset) can leave a column entirely missing (e.g. routes by income band ->
        # the "unknown income" route has no income); such columns carry nothing and break
        # HistGradientBoosting's binning, so they are dropped for this model
        self.columns_ = [c for c in X.columns if X[c].notna().any()]
        X = X[self.columns_]
        if self.problem == "classification" and len(np.unique(y)) < 2:
            # a route holding one class: its (smoothed) frequencies, like the zoo's constant fold model
            row = np.bincount(y.astype(np.int64), minlength=self.n_outputs).astype(np.float64) + 1e-3
            self.constant_ = row / row.sum()
            return self
        numeric, categorical = zoo._split_columns(X, self.categorical_columns)  # the zoo's own rule
        params = zoo.default_params(self.family, self.problem) if self.params is None else dict(self.params)
        self.model_ = zoo.FamilyModel(
            self.family, params, problem=self.problem, n_classes=max(self.n_outputs, 1), numeric=numeric,
            categorical=categorical, seed=self.seed, n_jobs=zoo.available_cores(), device=self.device,
        )
        self.model_.time_limit_s = self.time_limit_s
        self.model_.pace_hint = self.pace_hint
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model_.fit(X, y, w)
        return self

    def predict_matrix(self, X: pd.DataFrame) -> np.ndarray:
        if self.constant_ is not None:
            return np.tile(self.constant_, (len(X), 1))
        return self.model_.predict_matrix(X[self.columns_])

    def predict_inputs(self, inputs: served.Inputs) -> np.ndarray:
        """From shared converted inputs: the fold model reads only its own columns (a subset of
        ``columns_``), so the frame needs no column selection."""
        if self.constant_ is not None:
            return np.tile(self.constant_, (inputs.n, 1))
        return np.asarray(self.model_.predict_inputs(inputs), dtype=np.float64)


LearnerFactory = Callable[[], ZooLearner]


@dataclass(frozen=True)
class FamilyFactory:
    """Picklable factory of fresh ZooLearners (``params`` None = the zoo default config)."""

    family: str
    problem: Problem
    n_outputs: int
    params: tuple[tuple[str, Any], ...] | None = None
    seed: int = 42
    categorical_columns: tuple[str, ...] | None = None

    def __call__(self) -> ZooLearner:
        return ZooLearner(self.family, self.problem, self.n_outputs,
                          None if self.params is None else dict(self.params), self.seed,
                          None if self.categorical_columns is None else list(self.categorical_columns))
