"""The shared run-status function: the Jobs API's states (through the SDK stand-in) and the local
runner's files mapped to pending/running/succeeded/failed/skipped; the exact run_now and submit
calls; `obsrv status`'s text and JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from databricks.sdk.service import jobs

from obsrv.app.launch import check_text, run_deployed, spec_file, submit_compiled
from obsrv.app.run_status import local_status, sdk_state, workspace_history, workspace_status
from obsrv.app.status_query import workspace_query
from obsrv.compiler.cli import main

from .jobs_stand_in import HOST, JobsStandIn, WorkspaceStandIn, run, task

ROOT = Path(__file__).resolve().parents[2]


# Every RunLifeCycleState x RunResultState the Jobs API documents for a task, and what obsrv shows
# (databricks/sdk/service/jobs.py: RunLifeCycleState, RunResultState).
@pytest.mark.parametrize(("life", "result", "shown"), [
    ("PENDING", None, "pending"), ("QUEUED", None, "pending"), ("BLOCKED", None, "pending"),
    ("WAITING_FOR_RETRY", None, "pending"), ("RUNNING", None, "running"), ("TERMINATING", None, "running"),
    ("TERMINATED", "SUCCESS", "succeeded"), ("TERMINATED", "FAILED", "failed"), ("TERMINATED", "TIMEDOUT", "failed"),
    ("TERMINATED", "CANCELED", "failed"), ("TERMINATED", "UPSTREAM_FAILED", "skipped"),
    ("TERMINATED", "EXCLUDED", "skipped"), ("SKIPPED", None, "skipped"), ("INTERNAL_ERROR", "FAILED", "failed"),
])
def test_sdk_states_map_to_the_five(life: str, result: str | None, shown: str) -> None:
    state = jobs.RunState.from_dict({"life_cycle_state": life, **({"result_state": result} if result else {})})
    assert state.life_cycle_state is not None and state.life_cycle_state.value == life  # a real SDK enum
    assert sdk_state(state, None)[0] == shown


@pytest.mark.parametrize(("v2", "kind", "code", "shown"), [
    ("QUEUED", None, None, "pending"), ("RUNNING", None, None, "running"),
    ("TERMINATED", "SUCCESS", "SUCCESS", "succeeded"), ("TERMINATED", "CLIENT_ERROR", "RUN_EXECUTION_ERROR", "failed"),
    ("TERMINATED", "SUCCESS", "SKIPPED", "succeeded"), ("TERMINATED", "CLIENT_ERROR", "SKIPPED", "skipped"),
])
def test_the_newer_status_field_maps_too(v2: str, kind: str | None, code: str | None, shown: str) -> None:
    details = {k: v for k, v in (("type", kind), ("code", code)) if v}
    status = jobs.RunStatus.from_dict({"state": v2, **({"termination_details": details} if details else {})})
    assert sdk_state(None, status)[0] == shown


def _failed_run() -> tuple[JobsStandIn, int]:
    tasks = [
        task("prepare", "TERMINATED", "SUCCESS", run_id=11, duration_ms=42_000),
        task("base_xgboost", "TERMINATED", "FAILED", deps=("prepare",), run_id=12, message="Task failed"),
        task("base_linear", "RUNNING", deps=("prepare",), run_id=13),
        task("stack_top_any", "TERMINATED", "UPSTREAM_FAILED", deps=("base_xgboost", "base_linear"), run_id=14),
        task("evaluate", "PENDING", deps=("stack_top_any",)),
    ]
    logs = "\n".join(f"line {i}" for i in range(40)) + "\nValueError: bad column"
    stand_in = JobsStandIn({500: run(500, "RUNNING", None, tasks)}, deployed={"credit_risk_ensemble": 7},
                           outputs={12: jobs.RunOutput.from_dict({"logs": logs, "error": "ValueError: bad column"})})
    return stand_in, 500


def test_workspace_status_renders_every_state_and_the_failed_log() -> None:
    stand_in, run_id = _failed_run()
    status = workspace_status(stand_in, run_id)
    assert status.state == "running" and status.url == f"{HOST}/#job/7/run/500" and status.seconds == 95.0
    assert [(t.key, t.state) for t in status.tasks] == [
        ("prepare", "succeeded"), ("base_xgboost", "failed"), ("base_linear", "running"),
        ("stack_top_any", "skipped"), ("evaluate", "pending")]
    assert status.tasks[0].seconds == 42.0
    failed = status.tasks[1]
    assert failed.detail == "TERMINATED/FAILED: Task failed"
    assert failed.log_tail.splitlines()[-1] == "ValueError: bad column" and len(failed.log_tail.splitlines()) == 20
    assert status.tasks[3].detail.startswith("TERMINATED/UPSTREAM_FAILED")
    # the log is fetched for the failed task only
    assert [c for c in stand_in.calls if c[0] == "get_run_output"] == [("get_run_output", {"run_id": 12})]


def test_workspace_query_finds_the_job_and_its_latest_run() -> None:
    stand_in, _ = _failed_run()
    stand_in.runs[400] = run(400, "TERMINATED", "SUCCESS", [task("prepare", "TERMINATED", "SUCCESS", run_id=1)])
    status = workspace_query(stand_in, "credit_risk_ensemble", None)
    assert status.run_id == "500"
    assert ("list", {"name": "credit_risk_ensemble"}) in stand_in.calls
    assert ("list_runs", {"job_id": 7, "limit": 1}) in stand_in.calls
    history = workspace_history(stand_in, 7)
    assert [(r.run_id, r.state) for r in history] == [("500", "running"), ("400", "succeeded")]


def test_run_now_is_called_with_the_job_id_and_parameters() -> None:
    stand_in = JobsStandIn({}, deployed={"credit_risk_ensemble": 7})
    done = run_deployed(stand_in, 7, {"catalog": "dev_cat", "schema": "s1"})
    assert stand_in.calls == [("run_now", {"job_id": 7, "job_parameters": {"catalog": "dev_cat", "schema": "s1"}})]
    assert done.how == "run_now" and done.run_id == 9002 and "jobs.run_now" in done.describe()


def test_submit_sends_the_compiled_tasks(tmp_path: Path) -> None:
    checked = check_text((ROOT / "examples" / "credit_risk.yaml").read_text(), spec_file(tmp_path, "credit_risk"))
    assert checked.compiled is not None
    stand_in, workspace = JobsStandIn({}), WorkspaceStandIn()
    folder = "/Workspace/Shared/obsrv_app/credit_risk_ensemble"
    done = submit_compiled(stand_in, workspace, checked.compiled, folder=folder,
                           wheel="/Volumes/main/obsrv/wheels/obsrv-0.1.0-py3-none-any.whl", user="ana@example.com")
    assert done.how == "submit" and "jobs.submit" in done.describe()
    plan = f"{folder}/bundle_out/credit_risk_ensemble.plan.json"
    assert workspace.calls[0] == ("mkdirs", {"path": f"{folder}/bundle_out"})
    assert workspace.calls[1][1]["path"] == plan
    assert json.loads(workspace.calls[1][1]["content"]) == checked.compiled.plan
    (name, call), = stand_in.calls
    assert name == "submit"
    compiled_tasks = checked.compiled.job["tasks"]
    sent = [t.as_dict() for t in call["tasks"]]
    assert all(isinstance(t, jobs.SubmitTask) for t in call["tasks"])
    assert [t["task_key"] for t in sent] == [t["task_key"] for t in compiled_tasks]
    assert [t.get("depends_on", []) for t in sent] == [t.get("depends_on", []) for t in compiled_tasks]
    prepare = sent[0]["python_wheel_task"]["parameters"]
    assert prepare[prepare.index("--plan") + 1] == plan
    # no job parameters on a one-time run: their defaults are filled in; {{job.run_id}} stays dynamic
    assert prepare[prepare.index("--catalog") + 1] == "main"
    assert prepare[prepare.index("--workflow-id") + 1] == "{{job.run_id}}"
    assert prepare[prepare.index("--experiment") + 1] == "/Users/ana@example.com/obsrv_credit_risk_ensemble"
    envs = [e.as_dict() for e in call["environments"]]
    assert envs[0]["spec"]["dependencies"][0] == "/Volumes/main/obsrv/wheels/obsrv-0.1.0-py3-none-any.whl"
    assert call["timeout_seconds"] == checked.compiled.job["timeout_seconds"]


def _local_run(tmp_path: Path, states: dict[str, dict[str, object]], runner_pid: int) -> Path:
    run_dir = tmp_path / ".obsrv" / "runs" / "17"
    (run_dir / "logs").mkdir(parents=True)
    job = {"resources": {"jobs": {"j": {"tasks": [
        {"task_key": "prepare"}, {"task_key": "base_knn", "depends_on": [{"task_key": "prepare"}]},
        {"task_key": "stack", "depends_on": [{"task_key": "base_knn"}]},
        {"task_key": "evaluate", "depends_on": [{"task_key": "stack"}]}]}}}}
    import yaml

    (run_dir / "job.yml").write_text(yaml.safe_dump(job))
    (run_dir / "state.json").write_text(json.dumps({"workflow_id": "17", "job_name": "j", "job_digest": "x",
                                                    "runner_pid": runner_pid, "tasks": states}))
    (run_dir / "logs" / "base_knn.log").write_text("\n".join(f"l{i}" for i in range(30)) + "\nTaskError: boom\n")
    return run_dir


def test_local_status_reads_the_runner_files(tmp_path: Path) -> None:
    states = {"prepare": {"state": "succeeded", "seconds": 2.5, "attempts": 1},
              "base_knn": {"state": "failed", "seconds": 1.0, "attempts": 2, "message": "exit code 1"},
              "stack": {"state": "upstream_failed", "message": "upstream base_knn did not succeed"},
              "evaluate": {"state": "upstream_failed"}}
    _local_run(tmp_path, states, runner_pid=2**22 + 12345)  # no such process: the runner ended
    status = local_status(tmp_path, "17")
    assert status.state == "failed" and status.job == "j"
    assert [(t.key, t.state) for t in status.tasks] == [
        ("prepare", "succeeded"), ("base_knn", "failed"), ("stack", "skipped"), ("evaluate", "skipped")]
    assert status.tasks[1].log_tail.splitlines()[-1] == "TaskError: boom"
    assert status.tasks[1].attempts == 2 and status.tasks[1].detail == "failed: exit code 1"
    assert status.tasks[2].depends_on == ("base_knn",)


def test_a_live_runner_keeps_a_run_running_and_a_dead_one_fails_it(tmp_path: Path) -> None:
    states = {"prepare": {"state": "succeeded", "seconds": 2.5, "attempts": 1},
              "base_knn": {"state": "running", "attempts": 1, "started": 1000.0}, "stack": {}, "evaluate": {}}
    run_dir = _local_run(tmp_path, states, runner_pid=os.getpid())
    status = local_status(tmp_path, "17", now=1010.0)
    assert status.state == "running"
    assert [t.state for t in status.tasks] == ["succeeded", "running", "pending", "pending"]
    assert status.tasks[1].seconds == 10.0
    data = json.loads((run_dir / "state.json").read_text())
    data["runner_pid"] = 2**22 + 12345
    (run_dir / "state.json").write_text(json.dumps(data))
    assert local_status(tmp_path, "17").tasks[1].detail == "running, runner gone"
    assert local_status(tmp_path, "17").state == "failed"


def test_obsrv_status_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    states = {"prepare": {"state": "succeeded", "seconds": 2.5, "attempts": 1},
              "base_knn": {"state": "failed", "seconds": 1.0, "attempts": 1, "message": "exit code 1"},
              "stack": {"state": "upstream_failed"}, "evaluate": {"state": "upstream_failed"}}
    _local_run(tmp_path, states, runner_pid=2**22 + 12345)
    assert main(["status", "j", "--workdir", str(tmp_path), "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["run_id"] == "17" and data["state"] == "failed"
    assert [t["state"] for t in data["tasks"]] == ["succeeded", "failed", "skipped", "skipped"]
    assert main(["status", "--workdir", str(tmp_path), "--run", "17"]) == 1
    text = capsys.readouterr().out
    assert "j run 17 (local): failed" in text and "TaskError: boom" in text and "base_knn" in text
    assert main(["status", "other_job", "--workdir", str(tmp_path)]) == 2
    assert "no local run of job 'other_job'" in capsys.readouterr().err


def test_a_target_names_its_workspace_as_the_databricks_cli_does(tmp_path: Path) -> None:
    from obsrv.app.run_status import StatusError
    from obsrv.app.status_query import profile_for_target

    bundle = tmp_path / "databricks.yml"
    bundle.write_text("targets:\n  dev: {workspace: {profile: DEV}}\n  prod: {workspace: {host: https://h.example}}\n")
    assert profile_for_target("dev", bundle) == ("DEV", None)
    assert profile_for_target("prod", bundle) == (None, "https://h.example")
    with pytest.raises(StatusError, match="no such target; targets are dev, prod"):
        profile_for_target("qa", bundle)


def test_obsrv_app_without_the_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "streamlit" else real(name, *a))
    assert main(["app"]) == 2
    assert 'pip install -e ".[app]"' in capsys.readouterr().err
