"""Runtime tests run against a local OBSRV_HOME: no Databricks, no ambient MLflow server."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _local_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("OBSRV_TASK_BUDGET_SECONDS", raising=False)
    monkeypatch.delenv("OBSRV_MAX_TRIALS", raising=False)
    monkeypatch.setenv("OBSRV_COMPUTE", "cpu")


