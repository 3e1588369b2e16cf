"""Platform rules the task side relies on, each as an executable check with its source.

No Databricks workspace is reachable from the test machine, so each rule is written down here as
the platform states it (a Databricks docs page or the Databricks CLI's source) and checked against
what obsrv's tasks do.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "runtime"))  # runtime_helpers

from runtime_helpers import context_for  # noqa: E402


def _platform_call(argv: list[str]) -> object:
    """Call `obsrv-task` exactly as a `python_wheel_task` does.

    Source: the Databricks CLI's wheel wrapper, which mimics the platform
    (github.com/databricks/cli, bundle/trampoline/python_wheel.go, commit 7bbe285):
        sys.argv = [...]
        entry = [ep for ep in metadata.distribution("<package_name>").entry_points
                 if ep.name == "<entry_point>"]
        entry[0].load()()
    The return value is discarded; only an exception fails the task.
    """
    entry = [ep for ep in metadata.distribution("obsrv").entry_points if ep.name == "obsrv-task"]
    assert entry, "the obsrv distribution declares no obsrv-task entry point"
    saved = sys.argv
    sys.argv = ["obsrv-task", *argv]
    try:
        return entry[0].load()()
    finally:
        sys.argv = saved


def _argv(stage: str, task_id: str) -> list[str]:
    from obsrv.compiler.spec import Context

    ctx = Context.model_validate(context_for("binary")).model_dump(mode="json", by_alias=True)
    spec = json.dumps({"context": ctx, "task": {}, "upstream": []}, sort_keys=True, separators=(",", ":"))
    return ["--stage", stage, "--task-id", task_id, "--workflow-id", "123", "--catalog", "main",
            "--schema", "lab", "--spec", spec]


@pytest.fixture
def local_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("OBSRV_HOME", str(tmp_path))
    monkeypatch.setenv("OBSRV_COMPUTE", "cpu")
    return tmp_path


@pytest.fixture
def stand_in_stage(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A user task type whose body is a stand-in (cheap): `vote_mix` passes, `stack_blend` fails."""
    import types

    from obsrv.service_tasks.errors import TaskError

    seen: list[str] = []

    def run_task(ctx: object) -> None:
        stage = ctx.request.stage  # type: ignore[attr-defined]
        seen.append(stage)
        if stage == "stack_blend":
            raise TaskError("the stand-in stage failed")

    fake = types.ModuleType("obsrv.service_tasks.ensembles")
    fake.run_task = run_task  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "obsrv.service_tasks.ensembles", fake)
    return seen


def test_entry_point_call_a_failing_stage_raises(local_home: Path, stand_in_stage: list[str]) -> None:
    """A failed stage must fail the task: with the platform's call, only an exception can."""
    with pytest.raises(SystemExit) as raised:
        _platform_call(_argv("stack_blend", "stack_blend"))
    assert raised.value.code not in (0, None)
    assert stand_in_stage == ["stack_blend"]


def test_entry_point_call_a_passing_stage_returns_normally(local_home: Path, stand_in_stage: list[str]) -> None:
    assert _platform_call(_argv("vote_mix", "vote_mix")) is None
    assert stand_in_stage == ["vote_mix"]


def test_entry_point_call_a_failing_prepare_raises(local_home: Path) -> None:
    """The real prepare stage, failing (no source table): the task fails."""
    with pytest.raises(SystemExit) as raised:
        _platform_call(_argv("prepare", "prepare"))
    assert raised.value.code not in (0, None)


def test_entry_point_bad_arguments_raise_usage_code(local_home: Path) -> None:
    with pytest.raises(SystemExit) as raised:
        _platform_call(["--stage", "prepare"])
    assert raised.value.code == 2
