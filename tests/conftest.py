"""Suite-wide test setup.

Shared helpers live in `tests/support/` (importable as `support.*`: pyproject's
`pythonpath = ["tests"]`). Markers are declared in pyproject.toml; `pytest -m "not slow"` is the
fast loop, the whole suite is what `.ci/run` runs.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_ambient_workspace(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's shell may point at a workspace or an MLflow server; no test may reach one."""
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
