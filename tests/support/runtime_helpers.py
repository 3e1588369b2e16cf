"""Helpers for the runtime tests: small synthetic tables and an in-process job runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from obsrv.service_tasks.context import RuntimeContext
from obsrv.service_tasks.entry import run_stage
from obsrv.service_tasks.io import LocalDeltaStore, TableName
from obsrv.service_tasks.task_parameters import build_request

SOURCE = TableName("main", "lab", "training_data")


def synthetic(problem: str, n: int = 400, seed: int = 0, n_classes: int = 3) -> pd.DataFrame:
    """Numeric + categorical features with missing values; `label` is the target."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    color = np.where(x[:, 2] > 0.5, "red", np.where(x[:, 2] < -0.5, "blue", "green")).astype(object)
    color[rng.uniform(size=n) < 0.05] = None
    df = pd.DataFrame(
        {
            "x0": x[:, 0],
            "x1": np.where(rng.uniform(size=n) < 0.1, np.nan, x[:, 1]),
            "x2": x[:, 2],
            "count": rng.integers(0, 10, n).astype("int64"),
            "color": pd.Series(color, dtype="str"),
            "flag": x[:, 3] > 0,
        }
    )
    signal = 1.5 * x[:, 0] - 1.0 * x[:, 2] + 0.5 * (color == "red")
    if problem == "binary":
        p = 1 / (1 + np.exp(-signal))
        df["label"] = np.where(rng.uniform(size=n) < p, "yes", "no")
    elif problem == "multiclass":
        cuts = np.quantile(signal + rng.normal(scale=0.5, size=n), np.linspace(0, 1, n_classes + 1)[1:-1])
        df["label"] = np.digitize(signal + rng.normal(scale=0.5, size=n), cuts).astype("int64")
    else:
        df["label"] = signal * 10 + rng.normal(scale=2.0, size=n) + 50.0
    return df


def context_for(problem: str, **overrides: Any) -> dict[str, Any]:
    metric = (
        {"regression": ["rmse", "mae", "r2"]}
        if problem == "regression"
        else {"classification": ["auc", "accuracy", "f1", "logloss"]}
    )
    ctx: dict[str, Any] = {
        "name": "lab_job",
        "metric": metric,
        "folds": 3,
        "holdout": 0.25,
        "fold_type": "kfold" if problem == "regression" else "stratified",
        "source": {"catalog": SOURCE.catalog, "schema": SOURCE.schema, "table": SOURCE.table, "target": "label"},
    }
    for key, value in overrides.items():
        if key == "source":
            ctx["source"] = {**ctx["source"], **value}
        else:
            ctx[key] = value
    return ctx


class Job:
    """Runs stages the way `obsrv-task` would, in this process, against one OBSRV_HOME."""

    def __init__(self, home: Path, context: dict[str, Any], workflow_id: str = "wf1", mlflow: bool = True) -> None:
        self.home = Path(home)
        self.store = LocalDeltaStore(self.home)
        self.context = context
        self.workflow_id = workflow_id
        self.mlflow = mlflow

    def request(self, stage: str, task_id: str, task: dict[str, Any] | None = None,
                upstream: list[str] | None = None, budget: float = 0.0):
        return build_request(
            stage=stage, task_id=task_id, workflow_id=self.workflow_id, context=self.context,
            task=task or {}, upstream=upstream or [], budget_seconds=budget,
        )

    def ctx(self, request) -> RuntimeContext:
        return RuntimeContext(request, store=self.store, home=self.home, mlflow=self.mlflow)

    def run(self, stage: str, task_id: str, **kwargs: Any) -> RuntimeContext:
        req = self.request(stage, task_id, **kwargs)
        ctx = self.ctx(req)
        run_stage(req, ctx)
        return ctx

    def prepare(self) -> RuntimeContext:
        return self.run("prepare", "prepare")

    def base(self, family: str, budget: float = 0.0) -> RuntimeContext:
        return self.run("base", f"base_{family}", task={"family": family}, budget=budget)

    def evaluate(self, upstream: list[str]) -> RuntimeContext:
        return self.run("evaluate", "evaluate", upstream=upstream)


def make_job(home: Path, problem: str, df: pd.DataFrame | None = None, mlflow: bool = True, **overrides: Any) -> Job:
    store = LocalDeltaStore(home)
    store.write(SOURCE, synthetic(problem) if df is None else df)
    return Job(home, context_for(problem, **overrides), mlflow=mlflow)
