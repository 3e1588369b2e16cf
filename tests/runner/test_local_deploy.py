"""The local runner resolves deploy-time `${...}` references the way the bundle does, and reads the
plan file its tasks are compiled with (service_tasks/local/bundle_values.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from obsrv.compiler.api import compile_file
from obsrv.service_tasks.local.bundle_values import deploy_job
from obsrv.service_tasks.local.scheduler import LocalTask, job_references, resolve_references
from obsrv.service_tasks.task_parameters import parse_request

REPO = Path(__file__).resolve().parents[2]


def test_local_run_resolves_the_bundles_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSRV_USER", "dana@example.com")
    compiled = compile_file(REPO / "examples" / "credit_voting_scheduled.yaml", root=REPO, verify=False)
    job = deploy_job(compiled.bundle, compiled.job_key, compiled.files, tmp_path)
    # The job's output parameters are the spec's output (the schema resource's undecorated name).
    assert {p["name"]: p["default"] for p in job["parameters"]} == {"catalog": "main", "schema": "credit_risk_models"}
    plan = tmp_path / "files" / "bundle_out" / f"{compiled.job_key}.plan.json"
    # The plan is the freshly compiled one, byte for byte what `obsrv compile` writes to bundle_out/.
    assert plan.read_text() == compiled.files[plan.name] == (REPO / "bundle_out" / plan.name).read_text()
    references = job_references(job, "777")
    for task in job["tasks"]:
        argv = [resolve_references(a, references) for a in LocalTask.from_compiled(task).argv]
        assert "${" not in " ".join(argv) and "{{" not in " ".join(argv)
        request = parse_request(argv)
        # The experiment the bundle deploys for a target without development mode, for this user.
        assert request.experiment == f"/Users/dana@example.com/obsrv_{compiled.job_key}"
        assert request.model == compiled.job_key
        assert (request.catalog, request.schema, request.workflow_id) == ("main", "credit_risk_models", "777")
        assert request.upstream == tuple(compiled.plan["tasks"][task["task_key"]]["upstream"])


def test_a_plan_file_outside_the_local_files_is_refused(tmp_path: Path) -> None:
    compiled = compile_file(REPO / "examples" / "credit_risk.yaml", root=REPO, verify=False)
    job = compiled.job
    task = job["tasks"][0]["python_wheel_task"]["parameters"]
    task[task.index("--plan") + 1] = "/etc/elsewhere.plan.json"
    with pytest.raises(ValueError, match="not a compiled plan file"):
        deploy_job(compiled.bundle, compiled.job_key, compiled.files, tmp_path)
