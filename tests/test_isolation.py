"""The suite's own isolation: an MLflow URI one test configures in-process never reaches the next
test (or the local runs a later session fixture starts). The two tests run in file order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def test_a_test_that_configures_mlflow_in_process(tmp_path: Path) -> None:
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # MLflow exports the URIs for subprocesses, outside monkeypatch's bookkeeping
    assert os.environ.get("MLFLOW_TRACKING_URI") == uri
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    os.environ["MLFLOW_TRACKING_URI"] = uri  # as if it had been left behind


def test_the_next_test_sees_no_mlflow_uri_in_the_environment() -> None:
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert "MLFLOW_REGISTRY_URI" not in os.environ
