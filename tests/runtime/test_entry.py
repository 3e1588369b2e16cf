"""`obsrv-task`: the compiled argv contract, exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from obsrv.service_tasks import entry
from obsrv.service_tasks.io import LocalDeltaStore, output_table
from obsrv.service_tasks.task_parameters import parse_request

from support.runtime_helpers import SOURCE, context_for, synthetic

pytestmark = pytest.mark.slow  # runs stages through the console script in real processes


def _argv(stage: str, task_id: str, task: dict | None = None, upstream: list[str] | None = None,
          context: dict | None = None, budget: float = 0) -> list[str]:
    from obsrv.compiler.spec import Context

    ctx = Context.model_validate(context or context_for("binary")).model_dump(mode="json", by_alias=True)
    spec = json.dumps({"context": ctx, "task": task or {}, "upstream": upstream or [], "budget_seconds": budget},
                      sort_keys=True, separators=(",", ":"))
    return ["--stage", stage, "--task-id", task_id, "--workflow-id", "123", "--catalog", "main",
            "--schema", "lab", "--spec", spec]


def test_parse_request_follows_the_contract(monkeypatch) -> None:
    monkeypatch.setenv("OBSRV_TASK_BUDGET_SECONDS", "7")
    req = parse_request(_argv("base", "base_xgboost", {"family": "xgboost"}, budget=1080) + ["--future-flag", "x"])
    assert (req.stage, req.task_id, req.workflow_id, req.catalog, req.schema) == (
        "base", "base_xgboost", "123", "main", "lab")
    assert req.task == {"family": "xgboost"} and req.upstream == ()
    assert req.context.source.target == "label"
    assert req.budget_seconds == 7.0
    monkeypatch.delenv("OBSRV_TASK_BUDGET_SECONDS")
    # the compiled budget (planned from the critical path, compiler/timing.py) is used as it is
    assert parse_request(_argv("base", "base_xgboost", budget=1080)).budget_seconds == 1080.0


def test_a_payload_without_a_budget_is_refused(capsys) -> None:
    argv = _argv("base", "base_xgboost")
    spec = json.loads(argv[-1])
    del spec["budget_seconds"]
    assert entry.exit_code(argv[:-1] + [json.dumps(spec)]) == 2
    assert "no budget_seconds" in capsys.readouterr().err


def test_main_runs_prepare(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("OBSRV_HOME", str(tmp_path))
    LocalDeltaStore(tmp_path).write(SOURCE, synthetic("binary"))
    assert entry.exit_code(_argv("prepare", "prepare")) == 0
    out = capsys.readouterr().out
    assert "[prepare] stage prepare, workflow 123" in out and "done in" in out
    assert LocalDeltaStore(tmp_path).exists(output_table("main", "lab", "training_data", "prepared", "123", "prepare"))


def test_user_error_is_one_paragraph_without_traceback(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("OBSRV_HOME", str(tmp_path))
    assert entry.exit_code(_argv("prepare", "prepare")) == 1
    err = capsys.readouterr().err
    assert "[prepare] error: The source table main.lab.training_data does not exist" in err
    assert "Traceback" not in err


def test_unexpected_error_prints_traceback(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("OBSRV_HOME", str(tmp_path))
    LocalDeltaStore(tmp_path).write(SOURCE, synthetic("binary"))

    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr("obsrv.service_tasks.stages.prepare.run_prepare", boom)
    assert entry.exit_code(_argv("prepare", "prepare")) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: kaboom" in err


def test_unknown_stage_and_bad_arguments(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("OBSRV_HOME", str(tmp_path))
    assert entry.exit_code(_argv("fold_magic", "x")) == entry.EXIT_FINAL  # no retry can fix a bad stage
    assert "Unknown stage 'fold_magic'" in capsys.readouterr().err
    assert entry.exit_code(["--stage", "prepare"]) == 2
    assert entry.exit_code(_argv("prepare", "prepare")[:-1] + ["{not json"]) == 2


def test_user_task_types_dispatch_to_ensembles(tmp_path, monkeypatch) -> None:
    seen = []
    import types

    fake = types.ModuleType("obsrv.service_tasks.ensembles")
    fake.run_task = lambda ctx: seen.append(ctx.request.stage)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "obsrv.service_tasks.ensembles", fake)
    monkeypatch.setenv("OBSRV_HOME", str(tmp_path))
    assert entry.exit_code(_argv("vote_mix", "vote_mix", upstream=["base_linear"])) == 0
    assert seen == ["vote_mix"]


def test_console_script_subprocess(tmp_path) -> None:
    """The installed `obsrv-task` entry point, in its own process, as Databricks runs it."""
    LocalDeltaStore(tmp_path).write(SOURCE, synthetic("binary"))
    env = {**os.environ, "OBSRV_HOME": str(tmp_path), "OBSRV_COMPUTE": "cpu"}
    env.pop("DATABRICKS_RUNTIME_VERSION", None)
    cmd = [sys.executable, "-c", "import sys; from obsrv.service_tasks.entry import main; sys.exit(main())"]
    proc = subprocess.run(cmd + _argv("prepare", "prepare"), env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "done in" in proc.stdout


def test_task_completed_markers(tmp_path, monkeypatch) -> None:
    from support.runtime_helpers import make_job

    job = make_job(tmp_path, "binary", mlflow=False)
    prep_req = job.request("prepare", "prepare")
    base_req = job.request("base", "base_knn", task={"family": "knn"})
    eval_req = job.request("evaluate", "evaluate", upstream=["base_knn"])
    assert not entry.task_completed(prep_req, job.store)
    job.prepare()
    assert entry.task_completed(prep_req, job.store) and not entry.task_completed(base_req, job.store)
    job.base("knn")
    assert entry.task_completed(base_req, job.store) and not entry.task_completed(eval_req, job.store)
    job.evaluate(["base_knn"])
    assert entry.task_completed(eval_req, job.store)
