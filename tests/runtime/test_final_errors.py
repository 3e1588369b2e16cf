"""Errors that retrying cannot fix: exit code 65 locally, a marker that stops Databricks retries."""

from __future__ import annotations

import json

import pytest

from obsrv.service_tasks import entry, final_failure
from obsrv.service_tasks.errors import EXIT_FAILED, EXIT_FINAL
from obsrv.service_tasks.io import LocalDeltaStore

from support.runtime_helpers import SOURCE, context_for, synthetic

pytestmark = pytest.mark.slow  # runs stages with MLflow to show what is and is not retried


def _argv() -> list[str]:
    from obsrv.compiler.spec import Context

    ctx = Context.model_validate(context_for("binary")).model_dump(mode="json", by_alias=True)
    spec = json.dumps({"context": ctx, "task": {}, "upstream": [], "budget_seconds": 0}, sort_keys=True,
                      separators=(",", ":"))
    return ["--stage", "prepare", "--task-id", "prepare", "--workflow-id", "9", "--catalog", "main",
            "--schema", "lab", "--spec", spec]


@pytest.fixture
def one_class_source(tmp_path, monkeypatch):
    monkeypatch.setenv("OBSRV_HOME", str(tmp_path))
    df = synthetic("binary", n=60)
    df["label"] = "yes"  # a single class: the same rows fail the same way on every attempt
    LocalDeltaStore(tmp_path).write(SOURCE, df)
    return tmp_path


def test_data_error_is_final_locally(one_class_source, capsys) -> None:
    assert entry.exit_code(_argv()) == EXIT_FINAL
    assert "final, not retryable" in capsys.readouterr().err
    # locally no marker: a `--resume` after fixing the data must run prepare again
    store = LocalDeltaStore(one_class_source)
    assert not any("_failed_" in t for t in store.list_tables("main", "lab"))


def test_a_missing_source_stays_retryable(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OBSRV_HOME", str(tmp_path))
    assert entry.exit_code(_argv()) == EXIT_FAILED  # it may appear before the retry


def test_databricks_retry_of_a_final_failure_stops_at_once(one_class_source, monkeypatch, capsys) -> None:
    """Databricks has no per-attempt "do not retry": the first attempt leaves a marker, and a retry of
    the same task in the same run fails without repeating the work."""
    monkeypatch.setattr(final_failure, "markers_enabled", lambda: True)
    assert entry.exit_code(_argv()) == EXIT_FINAL
    first = capsys.readouterr().err
    assert "only one class" in first
    calls = []
    monkeypatch.setattr("obsrv.service_tasks.stages.prepare.run_prepare", lambda *a, **k: calls.append(a))
    with pytest.raises(SystemExit) as raised:  # the platform's view: the attempt raises
        entry.main(_argv())
    assert raised.value.code == EXIT_FINAL
    again = capsys.readouterr().err
    assert calls == []  # the work was not repeated
    assert "Not retrying" in again and "only one class" in again and "training_data_failed_9_prepare" in again
