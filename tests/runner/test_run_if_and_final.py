"""The local runner honours `run_if: ALL_DONE` and does not retry a final error (exit 65)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from obsrv.service_tasks.errors import EXIT_FINAL
from obsrv.service_tasks.local.launchers import ColdLauncher
from obsrv.service_tasks.local.scheduler import FAILED, SUCCEEDED, UPSTREAM_FAILED, LocalRunner, RunState

STAND_IN = Path(__file__).with_name("stand_in_task.py")


def _run(tmp_path: Path, tasks: list[dict[str, Any]]) -> tuple[LocalRunner, list[dict[str, Any]]]:
    journal = tmp_path / "journal.jsonl"
    compiled = []
    for spec in tasks:
        argv = ["--task-id", spec["key"], "--journal", str(journal), "--sleep", "0.05",
                "--behaviour", spec.get("behaviour", "ok")]
        task: dict[str, Any] = {
            "task_key": spec["key"],
            "python_wheel_task": {"package_name": "obsrv", "entry_point": "obsrv-task", "parameters": argv},
            "max_retries": spec.get("retries", 0),
            "min_retry_interval_millis": 0,
        }
        if spec.get("deps"):
            task["depends_on"] = [{"task_key": d} for d in spec["deps"]]
        if spec.get("run_if"):
            task["run_if"] = spec["run_if"]
        compiled.append(task)
    runner = LocalRunner({"name": "wf", "tasks": compiled}, home=tmp_path / ".obsrv", workflow_id="1",
                         state=RunState(workflow_id="1", job_name="wf", job_digest="x"), budget_seconds=None,
                         jobs=2, launcher=ColdLauncher([sys.executable, str(STAND_IN)]))
    runner.run()
    events = [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []
    return runner, events


def test_all_done_runs_after_a_failed_dependency_and_all_success_does_not(tmp_path: Path) -> None:
    runner, events = _run(tmp_path, [
        {"key": "evaluate", "behaviour": "fail"},
        {"key": "cleanup", "deps": ["evaluate"], "run_if": "ALL_DONE"},
        {"key": "report", "deps": ["evaluate"]},
    ])
    states = {k: s.state for k, s in runner.state.tasks.items()}
    assert states == {"evaluate": FAILED, "cleanup": SUCCEEDED, "report": UPSTREAM_FAILED}
    starts = {e["task"]: e["t"] for e in events if e["event"] == "start"}
    ends = {e["task"]: e["t"] for e in events if e["event"] == "end"}
    assert starts["cleanup"] >= ends["evaluate"]  # only after its dependency ended


def test_a_final_error_is_not_retried_but_an_ordinary_failure_is(tmp_path: Path) -> None:
    runner, events = _run(tmp_path, [
        {"key": "final", "behaviour": "final", "retries": 2},
        {"key": "flaky", "behaviour": "fail_once", "retries": 2},
    ])
    assert EXIT_FINAL == 65
    final = runner.state.tasks["final"]
    assert final.state == FAILED and final.attempts == 1 and "not retried" in final.message
    assert runner.state.tasks["flaky"].state == SUCCEEDED and runner.state.tasks["flaky"].attempts == 2
