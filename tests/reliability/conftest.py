"""The reliability suite: what a hostile but realistic user does to obsrv (here: data).

Runs like the runtime tests, against a local OBSRV_HOME with no Databricks and no ambient MLflow."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "runtime"))  # runtime_helpers


@pytest.fixture(autouse=True)
def _local_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("OBSRV_TASK_BUDGET_SECONDS", raising=False)
    monkeypatch.delenv("OBSRV_MAX_TRIALS", raising=False)
    monkeypatch.setenv("OBSRV_COMPUTE", "cpu")
