"""Test helpers for the ensemble tasks: synthetic data, a shared-fold model pool and an in-memory
TaskContext that satisfies ``contract.TaskContext`` (until/besides the runtime's real one)."""

from __future__ import annotations

import os

# One OpenMP thread for native code loaded from here on (read when libgomp loads); see the fixture.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
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

    @property
    def prepared(self) -> PreparedData:
        return self.data

    def predictions(self, task_ids: list[str] | None = None) -> PredictionSet:
        return self.pool

    def predictors(self, model_names: list[str]) -> dict[str, Any]:
        return {n: self.predictor_map[n] for n in model_names}

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


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True)
def _single_threaded_native_code():
    """One OpenMP/BLAS thread: on a shared 2-core machine, OpenMP spin-waiting under
    oversubscription made HistGradientBoosting 50x slower (25 s vs 0.5 s for one 4-fold fit).
    Per test, because threadpoolctl only limits the libraries loaded when it is entered."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield

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


@pytest.fixture(scope="session")
def binary_setup() -> tuple[PreparedData, PredictionSet, dict[str, Any]]:
    X, y = binary_frame()
    data = make_prepared(X, y, problem="classification")
    pool, preds = make_pool(data, FAMILIES, "auc")
    return data, pool, preds


@pytest.fixture(scope="session")
def binary_no_holdout_setup() -> tuple[PreparedData, PredictionSet, dict[str, Any]]:
    """As binary_setup with ``context.holdout: 0``: every row trains, the holdout is empty."""
    X, y = binary_frame()
    data = make_prepared(X, y, problem="classification", holdout=0.0)
    pool, preds = make_pool(data, FAMILIES, "auc")
    return data, pool, preds


@pytest.fixture(scope="session")
def multiclass_setup() -> tuple[PreparedData, PredictionSet, dict[str, Any]]:
    rng = np.random.default_rng(1)
    n = 600
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=[f"x{i}" for i in range(4)])
    X["seg"] = rng.choice(["u", "v"], size=n)
    scores = np.column_stack([X.x0, X.x1, 0.5 * (X.x2 + X.x3)]) + rng.normal(scale=0.8, size=(n, 3))
    y = np.argmax(scores, axis=1).astype(np.int64)
    data = make_prepared(X, y, problem="classification", classes=["p", "q", "r"])
    pool, preds = make_pool(data, FAMILIES[:4], "logloss")
    return data, pool, preds


@pytest.fixture(scope="session")
def regression_setup() -> tuple[PreparedData, PredictionSet, dict[str, Any]]:
    rng = np.random.default_rng(2)
    n = 500
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=[f"x{i}" for i in range(4)])
    X["seg"] = rng.choice(["u", "v"], size=n)
    y = (2 * X.x0 + np.sin(2 * X.x1) + X.x2 * (X.seg == "u") + rng.normal(scale=0.5, size=n)).to_numpy()
    data = make_prepared(X, y, problem="regression")
    pool, preds = make_pool(data, FAMILIES[:4], "rmse")
    return data, pool, preds


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_route_families: run route tasks with every per-route family")
