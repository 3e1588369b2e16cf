"""Helpers for the ensemble tests: synthetic data, a shared-fold model pool and an in-memory
TaskContext that satisfies ``contract.TaskContext``."""

from __future__ import annotations

import os

# One OpenMP thread for native code loaded from here on (read when libgomp loads); see the fixture.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from obsrv.service_tasks import metrics, zoo
from obsrv.service_tasks.contract import ModelOutput, PredictionSet, PreparedData, TaskRequest


def make_prepared(X: pd.DataFrame, y: np.ndarray, *, problem: str, n_folds: int = 4, holdout: float = 0.2,
                  seed: int = 0, classes: list[Any] | None = None, w: np.ndarray | None = None) -> PreparedData:
    """A PreparedData with a random holdout and a (stratified for classes) fold plan."""
    rng = np.random.default_rng(seed)
    n = len(X)
    is_hold = rng.random(n) < holdout
    tr, ho = np.flatnonzero(~is_hold), np.flatnonzero(is_hold)
    folds = np.empty(len(tr), dtype=np.int64)
    if problem == "classification":
        for c in np.unique(y[tr]):
            rows = np.flatnonzero(y[tr] == c)
            folds[rows] = rng.permutation(np.arange(len(rows)) % n_folds)
    else:
        folds[:] = rng.permutation(np.arange(len(tr)) % n_folds)
    cats = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    k = int(y.max()) + 1 if problem == "classification" else 0
    return PreparedData(
        problem=problem,  # type: ignore[arg-type]
        classes=classes if classes is not None else list(range(k)),
        feature_columns=list(X.columns), categorical_columns=cats,
        X_train=X.iloc[tr].reset_index(drop=True), y_train=y[tr], w_train=None if w is None else w[tr],
        folds=folds, row_ids_train=tr.astype(np.int64),
        X_holdout=X.iloc[ho].reset_index(drop=True), y_holdout=y[ho], w_holdout=None if w is None else w[ho],
        row_ids_holdout=ho.astype(np.int64),
    )


def make_pool(data: PreparedData, families: list[tuple[str, dict[str, Any]]], metric: str,
              task_id_prefix: str = "base_") -> tuple[PredictionSet, dict[str, Any]]:
    """Shared-fold OOF + fold-averaged holdout for each (family, params), through the runtime zoo
    (``zoo.cross_fit``, what the base tasks run); predictors are the zoo's FoldBags."""
    names, fams, tids, oofs, holds = [], [], [], [], []
    predictors: dict[str, Any] = {}
    for j, (fam, params) in enumerate(families):
        cfg = {**zoo.default_params(fam, data.problem), **params}
        request = zoo.FitRequest(fam, data.X_train, data.y_train, data.folds, data.w_train, problem=data.problem,
                                 n_classes=max(data.n_outputs, 1), seed=j, X_holdout=data.X_holdout,
                                 categorical_columns=data.categorical_columns)
        bag, oof, hold = zoo.cross_fit(request, cfg)
        name = f"{task_id_prefix}{fam}/{fam}_{j}"
        names.append(name)
        fams.append(fam)
        tids.append(f"{task_id_prefix}{fam}")
        oofs.append(oof)
        holds.append(hold)
        predictors[name] = bag
    scores = np.array([metrics.score(metric, data.y_train, o, problem=data.problem) for o in oofs])
    return PredictionSet(names, fams, tids, np.stack(oofs), np.stack(holds), scores), predictors


def context_dict(problem: str, metric: str, *, folds: int = 4, id_column: str | None = None) -> dict[str, Any]:
    return {
        "name": "t", "metric": {problem: [metric]}, "folds": folds,
        "fold_type": "stratified" if problem == "classification" else "kfold",
        "source": {"catalog": "main", "schema": "s", "table": "training_data", "target": "y",
                   "id_column": id_column},
    }


@dataclass
class FakeContext:
    """In-memory ``contract.TaskContext``: publish/write_table/log are recorded for assertions."""

    request: TaskRequest
    data: PreparedData
    pool: PredictionSet
    predictor_map: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    published: list[ModelOutput] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    search_trials: dict[str, int] = field(default_factory=dict)  # models table column, by model

    @property
    def prepared(self) -> PreparedData:
        return self.data

    def predictions(self, task_ids: list[str] | None = None) -> PredictionSet:
        return self.pool

    def predictors(self, model_names: list[str]) -> dict[str, Any]:
        return {n: self.predictor_map[n] for n in model_names}

    def model_rows(self, task_ids: list[str] | None = None) -> pd.DataFrame:
        """The pool's models as models-table rows; `search_trials` from ``self.search_trials``."""
        rows = [{"task_id": t, "model": m, "family": f, "params": "{}",
                 "search_trials": self.search_trials.get(m, 0)}
                for m, f, t in zip(self.pool.models, self.pool.families, self.pool.task_ids)
                if task_ids is None or t in task_ids]
        return pd.DataFrame(rows, columns=["task_id", "model", "family", "params", "search_trials"])

    def read_table(self, name: str) -> pd.DataFrame:
        return self.tables[name]

    def write_table(self, kind: str, df: pd.DataFrame) -> str:
        name = f"main.s.training_data_{kind}_{self.request.workflow_id}_{self.request.task_id}"
        self.tables[name] = df
        return name

    def publish(self, outputs: list[ModelOutput]) -> None:
        self.published.extend(outputs)

    def log(self, message: str) -> None:
        self.logs.append(message)


def fake_context(data: PreparedData, pool: PredictionSet, predictors: dict[str, Any], task: dict[str, Any],
                 *, metric: str, budget: float = 20.0, id_column: str | None = None,
                 tables: dict[str, pd.DataFrame] | None = None) -> FakeContext:
    from obsrv.service_tasks.task_parameters import build_request

    task = {"id": task["task"], **task}
    req = build_request(stage=task["task"], task_id=task["id"], workflow_id="wf1",
                        context=context_dict(data.problem, metric, folds=data.n_folds, id_column=id_column),
                        task=task, upstream=sorted(set(pool.task_ids)), budget_seconds=budget)
    return FakeContext(req, data, pool, predictors, dict(tables or {}))


FAMILIES = [("linear", {}), ("hist_gbm", {"max_iter": 60}), ("random_forest", {"n_estimators": 60}),
            ("knn", {}), ("extra_trees", {"n_estimators": 60})]
"""A small, fast, diverse pool (zoo defaults with fewer trees)."""


def binary_frame(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 5)), columns=[f"x{i}" for i in range(5)])
    X["seg"] = rng.choice(["a", "b", "c"], size=n)
    logit = 1.2 * X.x0 - 0.8 * X.x1 + 0.6 * X.x2 * X.x3 + (X.seg == "a") * 0.8
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    X.loc[rng.random(n) < 0.05, "x4"] = np.nan
    return X, y
