"""Every compiled file is a valid bundle resource: (a) databricks-bundles' typed `Job.from_dict`,
(b) the official bundle JSON schema, (c) the cross-field rules no schema checks, and (d) the task
contract of ARCHITECTURE.md. databricks.yml is checked too."""

from __future__ import annotations

import graphlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from obsrv.compiler import spec as S
from obsrv.compiler.api import CompileResult, compile_file

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
CASES = [(p, runner) for p in EXAMPLES for runner in ("wheel", "notebook")]
IDS = [f"{p.stem}-{runner}" for p, runner in CASES]
ARGV_FLAGS = ("--stage", "--task-id", "--workflow-id", "--catalog", "--schema", "--plan", "--experiment", "--model")


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def compiled(request: pytest.FixtureRequest) -> CompileResult:
    path, runner = request.param
    return compile_file(path, gpu_runner=runner, root=REPO, output_dir=REPO / "bundle_out", verify=False)


def _job_file(result: CompileResult) -> str:
    return result.files[f"{result.job_key}.job.yml"]


def test_reads_back_to_the_emitted_mapping(compiled: CompileResult) -> None:
    document = yaml.safe_load(_job_file(compiled))
    assert document == {"resources": {"jobs": {compiled.job_key: compiled.job}}}


def test_databricks_bundles_typed_model_accepts_it(compiled: CompileResult) -> None:
    from databricks.bundles.jobs import Job

    job = Job.from_dict(compiled.job)  # type: ignore[arg-type]
    # from_dict coerces silently ("3" -> 3); a lossless round trip proves the types were right.
    assert job.as_dict() == compiled.job


def test_official_bundle_schema_accepts_it(compiled: CompileResult, bundle_schema: Any) -> None:
    assert bundle_schema(yaml.safe_load(_job_file(compiled))) == []
    assert bundle_schema(yaml.safe_load(compiled.files[f"{compiled.job_key}.resources.yml"])) == []


def test_databricks_bundles_typed_models_accept_the_resources(compiled: CompileResult) -> None:
    from databricks.bundles.experiments import MlflowExperiment
    from databricks.bundles.registered_models import RegisteredModel
    from databricks.bundles.schemas import Schema

    document = yaml.safe_load(compiled.files[f"{compiled.job_key}.resources.yml"])
    assert document == compiled.resources
    resources = document["resources"]
    for kind, model in (("schemas", Schema), ("registered_models", RegisteredModel), ("experiments", MlflowExperiment)):
        (value,) = resources[kind].values()
        assert model.from_dict(value).as_dict() == value  # lossless: the types were right


def test_cross_field_rules(compiled: CompileResult) -> None:
    job = compiled.job
    tasks = job["tasks"]
    keys = [t["task_key"] for t in tasks]
    assert len(keys) == len(set(keys)), "task keys must be unique"
    env_keys = [e["environment_key"] for e in job["environments"]]
    assert len(env_keys) == len(set(env_keys))
    used_envs = {t["environment_key"] for t in tasks}
    assert used_envs == set(env_keys), "every environment is used and every used one is defined"
    graph = {}
    for task in tasks:
        deps = [d["task_key"] for d in task.get("depends_on", [])]
        assert len(deps) == len(set(deps))
        assert set(deps) <= set(keys), f"{task['task_key']} depends on an unknown task"
        graph[task["task_key"]] = deps
        # Serverless: compute needs an environment, and wheel tasks must have one (CLI hard error).
        assert "environment_key" in task
        if "compute" in task:
            assert task["environment_key"] == "gpu"
    order = list(graphlib.TopologicalSorter(graph).static_order())  # raises on a cycle
    assert set(order) == set(keys)
    # Tasks are written in dependency order.
    assert all(keys.index(d) < keys.index(t) for t, deps in graph.items() for d in deps)
    from obsrv.compiler.environments import pinned_requirements

    for env in job["environments"]:
        assert env["spec"] == {"environment_version": "4", "dependencies": ["../dist/*.whl", *pinned_requirements()]}


def _argv(task: dict[str, Any]) -> list[str]:
    if "python_wheel_task" in task:
        wheel = task["python_wheel_task"]
        assert (wheel["package_name"], wheel["entry_point"]) == ("obsrv", "obsrv-task")
        return wheel["parameters"]
    parameters = task["notebook_task"]["base_parameters"]
    assert task["notebook_task"]["notebook_path"] == "./obsrv_task_notebook.py"
    names = ("stage", "task_id", "workflow_id", "catalog", "schema", "plan", "experiment", "model")
    return [arg for flag, name in zip(ARGV_FLAGS, names) for arg in (flag, parameters[name])]


def test_task_contract(compiled: CompileResult) -> None:
    """ARCHITECTURE.md, "Compiled job → task contract"."""
    job = compiled.job
    tasks = {t["task_key"]: t for t in job["tasks"]}
    base = [f"base_{f}" for f in S.MODEL_FAMILIES]
    keys = list(tasks)
    assert keys[0] == "prepare" and keys[-2:] == ["evaluate", "cleanup"]
    assert keys[1 : 1 + len(base)] == base
    users = keys[1 + len(base) : -2]
    assert job["parameters"][0]["name"] == "catalog" and job["parameters"][1]["name"] == "schema"
    for key, task in tasks.items():
        argv = _argv(task)
        assert argv[0::2] == list(ARGV_FLAGS)
        values = dict(zip(argv[0::2], argv[1::2]))
        assert values["--task-id"] == key
        assert values["--workflow-id"] == "{{job.run_id}}"
        assert values["--catalog"] == "{{job.parameters.catalog}}"
        assert values["--schema"] == "{{job.parameters.schema}}"
        assert values["--plan"] == "${workspace.file_path}/bundle_out/" + f"{compiled.job_key}.plan.json"
        assert values["--experiment"] == "${resources.experiments." + compiled.job_key + ".name}"
        assert values["--model"] == "${resources.registered_models." + compiled.job_key + ".name}"
        raw = compiled.files[f"{compiled.job_key}.plan.json"]
        plan = json.loads(raw)
        assert raw == json.dumps(plan, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
        payload = {"context": plan["context"], **plan["tasks"][key]}
        context = S.Context.model_validate(payload["context"])  # the runtime re-validates it
        assert payload["context"] == context.model_dump(mode="json", by_alias=True)
        deps = [d["task_key"] for d in task.get("depends_on", [])]
        if key == "prepare":
            assert values["--stage"] == "prepare" and payload["task"] == {} and payload["upstream"] == []
            assert deps == [] and task["environment_key"] == "cpu"
        elif key in base:
            family = key.removeprefix("base_")
            assert values["--stage"] == "base" and payload["task"] == {"family": family}
            assert payload["upstream"] == [] and deps == ["prepare"]
            gpu = context.compute.gpu and family in S.GPU_FAMILIES
            assert task["environment_key"] == ("gpu" if gpu else "cpu")
        elif key == "evaluate":
            assert values["--stage"] == "evaluate" and payload["task"] == {}
            assert payload["upstream"] == sorted(base + users) and sorted(deps) == sorted(base + users)
            assert task["environment_key"] == "cpu"
        elif key == "cleanup":
            # runs after evaluate whatever its outcome (run_if ALL_DONE), on CPU, with a short timeout
            assert values["--stage"] == "cleanup" and payload["task"] == {} and payload["upstream"] == []
            assert deps == ["evaluate"] and task["run_if"] == "ALL_DONE" and task["environment_key"] == "cpu"
            assert task["timeout_seconds"] <= 300
        else:
            user = payload["task"]
            assert user["id"] == key and values["--stage"] == user["task"]
            direct = [d["task"] for d in user["depends_on"]]
            assert deps == base + direct
            assert payload["upstream"] == sorted(set(base + direct))
            trains = user["task"] == "boost" or user["task"].startswith("route_")
            wanted = user["compute"] or ("GPU" if context.compute.gpu and trains else "CPU")
            assert task["environment_key"] == wanted.lower()
        if task["environment_key"] == "gpu":
            assert task["compute"] == {"hardware_accelerator": context.compute.accelerator}
        assert task["disable_auto_optimization"] is True
        assert task["max_retries"] >= 0 and task["timeout_seconds"] > 0


def test_no_absolute_paths_or_timestamps(compiled: CompileResult) -> None:
    for text in compiled.files.values():
        assert str(REPO) not in text and "/tmp/" not in text and "/root" not in text
        assert "2026-" not in text and "2025-" not in text


def test_header_names_source_and_regenerate_command(compiled: CompileResult) -> None:
    head = _job_file(compiled).splitlines()[:2]
    source = Path(compiled.source).resolve().relative_to(REPO).as_posix()
    assert head[0].startswith(f"# Generated by obsrv from {source}.")
    assert head[1].startswith(f"# Regenerate: obsrv compile {source}")


def test_notebook_shim_is_valid_python(compiled: CompileResult) -> None:
    shim = compiled.files.get("obsrv_task_notebook.py")
    gpu = any(t["environment_key"] == "gpu" for t in compiled.job["tasks"])
    notebook = any("notebook_task" in t for t in compiled.job["tasks"])
    assert (shim is not None) == notebook
    if shim is None:
        return
    assert gpu and shim.startswith("# Databricks notebook source\n")
    compile(shim, "obsrv_task_notebook.py", "exec")
    # GPU tasks run the shim, CPU tasks stay wheel tasks.
    for task in compiled.job["tasks"]:
        assert ("notebook_task" in task) == (task["environment_key"] == "gpu")


def test_runtime_parses_the_emitted_parameters(compiled: CompileResult, tmp_path: Path) -> None:
    """The runtime side's own parser reads what we emit (after deploy- and run-time substitution)."""
    request_module = pytest.importorskip("obsrv.service_tasks.task_parameters")
    plan_file = tmp_path / "bundle_out" / f"{compiled.job_key}.plan.json"
    plan_file.parent.mkdir()
    plan_file.write_text(compiled.files[plan_file.name])
    for task in compiled.job["tasks"]:
        argv = [
            a.replace("{{job.run_id}}", "42")
            .replace("{{job.parameters.catalog}}", "main")
            .replace("{{job.parameters.schema}}", "out")
            .replace("${workspace.file_path}", tmp_path.as_posix())
            .replace("${resources.experiments." + compiled.job_key + ".name}", "/Users/a/x")
            for a in _argv(task)
        ]
        request = request_module.parse_request(argv)
        assert request.task_id == task["task_key"] and request.experiment == "/Users/a/x"
        assert request.context.name == compiled.job_key
        assert request.upstream == tuple(compiled.plan["tasks"][task["task_key"]]["upstream"])


# ------------------------------------------------------------------------------------ databricks.yml


@pytest.fixture(scope="module")
def root_bundle() -> dict[str, Any]:
    return yaml.safe_load((REPO / "databricks.yml").read_text())


def test_databricks_yml_schema(root_bundle: dict[str, Any], bundle_schema: Any) -> None:
    assert bundle_schema(root_bundle) == []


def test_databricks_yml_contents(root_bundle: dict[str, Any]) -> None:
    assert root_bundle["bundle"]["name"] == "obsrv"
    assert root_bundle["include"] == ["bundle_out/*.yml"]
    artifact = root_bundle["artifacts"]["obsrv_wheel"]
    assert artifact["type"] == "whl" and artifact["dynamic_version"] is True and artifact["build"]
    assert artifact["path"] == "."
    assert set(root_bundle["variables"]) == {"service_principal", "readers", "app_warehouse_id"}
    assert root_bundle["targets"]["dev"]["mode"] == "development" and root_bundle["targets"]["dev"]["default"] is True
    assert root_bundle["targets"]["prod"]["mode"] == "production"
    assert root_bundle["experimental"] == {"skip_artifact_cleanup": True}
