"""Suite-wide test setup.

Shared helpers live in `tests/support/` (importable as `support.*`: pyproject's
`pythonpath = ["tests"]`). Markers are declared in pyproject.toml; `pytest -m "not slow"` is the
fast loop, the whole suite is what `.ci/run` runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


# MLflow exports every URI given to mlflow.set_tracking_uri/set_registry_uri into os.environ (for
# subprocesses), outside monkeypatch's bookkeeping: a test that configures MLflow in-process would
# leave its store in the environment, and the next local run started by a session fixture (set up
# before any function-scoped fixture) would hand it to its tasks, which then log to or look models
# up in that other test's store.
_MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(scope="session", autouse=True)
def _no_ambient_mlflow_store() -> Iterator[None]:
    """Before any session fixture runs: no MLflow URI from the developer's shell."""
    saved = {name: os.environ.pop(name) for name in _MLFLOW_URI_VARIABLES if name in os.environ}
    yield
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _no_ambient_workspace(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A developer's shell may point at a workspace or an MLflow server; no test may reach one.
    Whatever MLflow URI a test leaves in the environment is removed after it."""
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    # not through monkeypatch: it would restore, after the test, a URI a module fixture left
    for name in _MLFLOW_URI_VARIABLES:
        os.environ.pop(name, None)
    yield
    for name in _MLFLOW_URI_VARIABLES:
        os.environ.pop(name, None)
