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

from support.runtime_helpers import context_for  # noqa: E402


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
    spec = json.dumps({"context": ctx, "task": {}, "upstream": [], "budget_seconds": 0}, sort_keys=True,
                      separators=(",", ":"))
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


# ------------------------------------------------------------------------------ Unity Catalog names
# Tag rules: https://docs.databricks.com/database-objects/tags.html ("Constraints": tag keys may not
# contain . , - = / : ; keys at most 255 characters, values at most 1000).
# Object names: https://docs.databricks.com/aws/en/data-governance/unity-catalog/requirements
# ("Securable object naming requirements": at most 255 characters, no period, space, '/', control
# characters or DELETE).
# Aliases: MLflow's own check (mlflow/utils/validation.py, `_validate_model_alias_name`).


@pytest.mark.parametrize("bad", [".", ",", "-", "=", "/", ":"])
def test_uc_tag_keys_reject_the_reserved_characters(bad: str) -> None:
    from obsrv.service_tasks import uc_rules

    with pytest.raises(uc_rules.UCNameError, match="tag key"):
        uc_rules.check_tags({f"obsrv{bad}threshold": "0.5"}, "a model version")
    assert uc_rules.check_tags({"obsrv_threshold": "0.5"}, "a model version") == {"obsrv_threshold": "0.5"}


def test_uc_tag_limits_and_all_problems_in_one_message() -> None:
    from obsrv.service_tasks import uc_rules

    with pytest.raises(uc_rules.UCNameError) as raised:
        uc_rules.check_tags({"a.b": "x", "k" * 256: "y", "ok": "v" * 1001}, "a model version")
    text = str(raised.value)
    assert "'a.b'" in text and "256 characters" in text and "1001 characters" in text
    assert not raised.value.retryable  # the same write fails again: a final error


def test_uc_object_names_and_aliases() -> None:
    from obsrv.service_tasks import uc_rules

    assert uc_rules.check_registered_model_name("main.lab.credit_risk", three_level=True)
    for bad in ("main.lab", "main.lab.credit risk", "main.lab.a/b", "main..x", "main.lab." + "m" * 256):
        with pytest.raises(uc_rules.UCNameError):
            uc_rules.check_registered_model_name(bad, three_level=True)
    with pytest.raises(uc_rules.UCNameError):
        uc_rules.check_registered_model_name("credit.risk", three_level=False)  # a local name has one part
    assert uc_rules.check_alias("champion") == "champion"
    for bad in ("latest", "v3", "champ ion", "a.b", ""):
        with pytest.raises(uc_rules.UCNameError):
            uc_rules.check_alias(bad)
    with pytest.raises(uc_rules.UCNameError, match="table"):
        uc_rules.check_table("main", "lab", "bad\x07name")


def test_every_model_version_tag_obsrv_sets_is_a_valid_uc_tag() -> None:
    """evaluate's threshold tags (binary, threshold primary metric, as in the seed example)."""
    from obsrv.service_tasks import uc_rules
    from obsrv.service_tasks.stages.evaluate import champion_threshold_tags

    for metric in ("accuracy", "f1", "precision", "recall"):
        tags = champion_threshold_tags(metric, {metric: 0.4})
        assert tags and uc_rules.check_tags(tags, "the champion's version") == tags


def test_table_writes_are_checked_locally(tmp_path: Path) -> None:
    """The local store refuses what UC would, before writing anything."""
    import pandas as pd

    from obsrv.service_tasks import uc_rules
    from obsrv.service_tasks.io import LocalDeltaStore, TableName

    name = TableName.__new__(TableName)  # bypass the stricter identifier check to reach the store's
    object.__setattr__(name, "catalog", "main")
    object.__setattr__(name, "schema", "lab")
    object.__setattr__(name, "table", "two words")
    with pytest.raises(uc_rules.UCNameError):
        LocalDeltaStore(tmp_path).write(name, pd.DataFrame({"a": [1]}))
    assert not (tmp_path / "warehouse").exists()


def test_register_champion_validates_first_and_sets_the_alias_before_any_tag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from obsrv.service_tasks import tracking, uc_rules

    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking.configure("/Users/t/obsrv_rules", tmp_path)

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            return pd.DataFrame({"prediction": [0] * len(model_input)})

    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="m", python_model=Constant(), input_example=pd.DataFrame({"x": [1.0]}))
    client = MlflowClient()
    # a dotted tag key: rejected before anything is registered
    with pytest.raises(uc_rules.UCNameError):
        tracking.register_champion(info.model_uri, "rules_model", tags={"obsrv.threshold.f1": "0.5"})
    assert client.search_registered_models() == []

    def failing_tag(*args: object, **kwargs: object) -> None:
        raise RuntimeError("tag write failed")

    monkeypatch.setattr(MlflowClient, "set_model_version_tag", failing_tag)
    with pytest.raises(RuntimeError, match="tag write failed"):
        tracking.register_champion(info.model_uri, "rules_model", tags={"obsrv_threshold_f1": "0.5"})
    # the alias came first, so the new version is not left without it
    assert str(client.get_model_version_by_alias("rules_model", "champion").version) == "1"
