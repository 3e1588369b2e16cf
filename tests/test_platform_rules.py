"""Every Databricks bundle platform rule the compiled bundle relies on, checked on every example.

No workspace and no Databricks CLI binary are reachable here, so `databricks bundle validate -t
dev|prod` cannot run. Each rule below is an executable check on the compiled output (the files
`obsrv compile examples/*.yaml` writes, plus databricks.yml), with its source cited. Sources are
the Databricks CLI at commit 7bbe2852 (v1.13.0 + 4; `fetch github:databricks/cli`) and the notes
in ../shared/reference/databricks-bundles.md. The task-side rules (how the platform calls the
entry point, UC tag keys) live with the task code's tests.

Deploy-time `${...}` references are resolved with compiler/bundle_refs.py, which reproduces the
CLI's mutators for the subset obsrv emits; the tests below pin its results to literal values
derived by hand from the CLI source, so a resolver bug cannot hide a collision.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from obsrv.compiler.api import CompileResult, compile_files
from obsrv.compiler.bundle_refs import REFERENCE, User, merge, normalize_prefix, resolve
from obsrv.compiler.emit import SHIM_FILE, SHIM_PARAMETERS
from obsrv.compiler.plan import ARGV_FLAGS
from obsrv.compiler.spec import MAX_JOB_TAGS

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
RUNNERS = ("notebook", "wheel")

# Two developers and the production service principal (CI passes its application id with
# BUNDLE_VAR_service_principal; a service principal's userName is its application id).
ALICE = User("alice@example.com", "alice")
BOB = User("bob@example.com", "bob")
SP_ID = "6e1a7c39-0d3b-4a55-9d2f-8f9f3d0c1b2a"
PROD = User(SP_ID, SP_ID)


@pytest.fixture(scope="module", params=RUNNERS)
def results(request: pytest.FixtureRequest) -> list[CompileResult]:
    return compile_files(EXAMPLES, gpu_runner=request.param, root=REPO, output_dir=REPO / "bundle_out", verify=False)


@pytest.fixture(scope="module")
def config(results: list[CompileResult]) -> dict[str, Any]:
    """databricks.yml plus every emitted YAML file, merged as the CLI merges included files
    (bundle/config/loader/process_include.go: `b.Config.Merge(this)` of the whole file)."""
    root = yaml.safe_load((REPO / "databricks.yml").read_text())
    included = [yaml.safe_load(text) for r in results for name, text in r.files.items() if name.endswith(".yml")]
    return merge(root, *included)


def _resolved(config: dict[str, Any], target: str, user: User) -> dict[str, Any]:
    overrides = {"service_principal": SP_ID} if target == "prod" else None
    return resolve(config, target, user, overrides=overrides)


def _argv(task: dict[str, Any]) -> dict[str, str]:
    if "python_wheel_task" in task:
        argv = task["python_wheel_task"]["parameters"]
        return dict(zip(argv[0::2], argv[1::2]))
    params = task["notebook_task"]["base_parameters"]
    return {flag: params[name] for name, flag in zip(SHIM_PARAMETERS, ARGV_FLAGS)}


def _footprint(resolved: dict[str, Any]) -> dict[str, set[str]]:
    """Everything a deployed target writes to or owns, as fully qualified names."""
    res = resolved["resources"]
    out: dict[str, set[str]] = {"locations": set(), "schemas": set(), "models": set(), "experiments": set()}
    for key, job in res["jobs"].items():
        params = {p["name"]: p["default"] for p in job["parameters"]}
        # Tables are `<catalog>.<schema>.<table>_<kind>_<run id>...`: the location is catalog.schema.
        out["locations"].add(f"{params['catalog']}.{params['schema']}")
        for task in job["tasks"]:
            values = _argv(task)
            out["experiments"].add(values["--experiment"])
            out["models"].add(f"{params['catalog']}.{params['schema']}.{values['--model']}")
    for schema in res["schemas"].values():
        out["schemas"].add(f"{schema['catalog_name']}.{schema['name']}")
    for model in res["registered_models"].values():
        out["models"].add(f"{model['catalog_name']}.{model['schema_name']}.{model['name']}")
    out["experiments"] |= {e["name"] for e in res["experiments"].values()}
    return out


# ------------------------------------------------------------------- variable resolution per target


def test_every_reference_is_well_formed_and_resolves_for_both_targets(config: dict[str, Any]) -> None:
    """An unknown or malformed `${...}` fails `bundle validate`: references must match the CLI's
    pattern (libs/dyn/dynvar/ref.go) and name something that exists
    (bundle/config/mutator/resolve_variable_references.go)."""
    text = yaml.safe_dump(config)
    assert text.count("${") == len(REFERENCE.findall(text)), "a `${` that is not a well-formed reference"
    for target, user in (("dev", ALICE), ("prod", PROD)):
        resolved = _resolved(config, target, user)
        for key in ("resources", "workspace", "run_as", "permissions"):
            # a deployed resource's id is the deploy's to fill in (bundle/deploy/terraform/interpolate.go);
            # the resolver has checked that the resource it names exists
            left = re.sub(r"\$\{resources\.\w+\.\w+\.id\}", "", yaml.safe_dump(resolved.get(key)))
            assert "${" not in left, f"{target}: unresolved reference in {key}"


def test_every_variable_has_a_value_in_every_target(config: dict[str, Any]) -> None:
    """bundle/config/mutator/set_variables.go: a variable without default, target value or
    `--var`/BUNDLE_VAR_ fails every command; a `lookup` variable gets its value at deploy
    (bundle/config/mutator/resolve_resource_references.go). `service_principal` is the one CI
    must pass for prod."""
    for target in ("dev", "prod"):
        targets = config["targets"][target].get("variables", {})
        missing = [n for n, v in config["variables"].items()
                   if "default" not in (v or {}) and "lookup" not in (v or {}) and n not in targets]
        assert missing == ([] if target == "dev" else ["service_principal"])


def test_dev_and_prod_share_no_table_location_schema_model_or_experiment(config: dict[str, Any]) -> None:
    """The acceptance check of issue 15: a developer's deploy cannot touch production's outputs."""
    dev, dev2, prod = (_footprint(_resolved(config, t, u)) for t, u in (("dev", ALICE), ("dev", BOB), ("prod", PROD)))
    for kind in dev:
        assert dev[kind] and prod[kind]
        assert not dev[kind] & prod[kind], f"dev and prod share {kind}: {sorted(dev[kind] & prod[kind])}"
        assert not dev[kind] & dev2[kind], f"two developers share {kind}: {sorted(dev[kind] & dev2[kind])}"


def test_jobs_write_where_the_bundle_creates_the_schema_and_register_its_model(config: dict[str, Any]) -> None:
    """The job's output parameters, `--model` and `--experiment` are the job's own resources as
    deployed, in both targets (so evaluate moves the alias of the bundle-managed model)."""
    for target, user in (("dev", ALICE), ("prod", PROD)):
        res = _resolved(config, target, user)["resources"]
        for name, job in res["jobs"].items():
            # a scoring job `<job>_score` uses its training job's schema, model and experiment
            key = name if name in res["schemas"] else name.removesuffix("_score")
            params = {p["name"]: p["default"] for p in job["parameters"]}
            schema, model = res["schemas"][key], res["registered_models"][key]
            assert (params["catalog"], params["schema"]) == (schema["catalog_name"], schema["name"])
            assert (model["catalog_name"], model["schema_name"]) == (schema["catalog_name"], schema["name"])
            for task in job["tasks"]:
                values = _argv(task)
                assert values["--model"] == model["name"]
                assert values["--experiment"] == res["experiments"][key]["name"]


def test_resolved_names_follow_the_cli_by_hand(config: dict[str, Any]) -> None:
    """Literal values worked out from the CLI source, so the resolver cannot drift unnoticed:
    prefix `[dev alice] ` (apply_target_mode.go), normalized to `dev_alice_` for UC names
    (apply_presets.go normalizePrefix), inserted before the last segment of experiment paths."""
    assert normalize_prefix("[dev alice] ") == "dev_alice_"
    assert normalize_prefix("[dev Alice.Smith] ") == "dev_alice_smith_"
    dev = _resolved(config, "dev", ALICE)
    prod = _resolved(config, "prod", PROD)
    assert dev["resources"]["jobs"]["credit_risk_ensemble"]["name"] == "[dev alice] credit_risk_ensemble"
    assert dev["resources"]["schemas"]["credit_risk_ensemble"]["name"] == "dev_alice_credit_risk_ensemble"
    assert dev["resources"]["registered_models"]["credit_risk_ensemble"]["name"] == "dev_alice_credit_risk_ensemble"
    assert (
        dev["resources"]["experiments"]["credit_risk_ensemble"]["name"]
        == "/Users/alice@example.com/[dev alice] obsrv_credit_risk_ensemble"
    )
    assert prod["resources"]["schemas"]["credit_nightly_vote"]["name"] == "credit_risk_models"  # the spec's output
    assert prod["resources"]["registered_models"]["credit_risk_ensemble"]["name"] == "credit_risk_ensemble"
    assert prod["resources"]["experiments"]["credit_risk_ensemble"]["name"] == f"/Users/{SP_ID}/obsrv_credit_risk_ensemble"
    # `${workspace.file_path}` = root_path + /files (default_workspace_paths.go); dev's root is
    # ~/.bundle/<bundle>/<target> (default_workspace_root.go) in the user's home (expand_workspace_root.go).
    assert dev["workspace"]["file_path"] == "/Workspace/Users/alice@example.com/.bundle/obsrv/dev/files"
    assert prod["workspace"]["file_path"] == f"/Workspace/Users/{SP_ID}/.bundle/obsrv/prod/files"


# ----------------------------------------------------------------------------- target modes


def test_production_target_sets_root_path_run_as_and_permissions(config: dict[str, Any]) -> None:
    """`mode: production` without `workspace.root_path` is an error unless every job has run_as or
    a service principal deploys (resourcemutator/validate_target_mode.go validateProductionMode);
    root_path, run_as and permissions as the default-python template writes them."""
    prod = config["targets"]["prod"]
    assert prod["mode"] == "production"
    assert prod["workspace"]["root_path"].startswith("/Workspace/Users/${var.service_principal}/")
    assert prod["run_as"] == {"service_principal_name": "${var.service_principal}"}
    managers = [p for p in prod["permissions"] if p["level"] == "CAN_MANAGE"]
    assert managers == [{"service_principal_name": "${var.service_principal}", "level": "CAN_MANAGE"}]


def test_development_paths_contain_the_user(config: dict[str, Any]) -> None:
    """Development mode rejects root/file/artifact paths without the user's name
    (validate_target_mode.go findNonUserPath); the default root has it."""
    workspace = _resolved(config, "dev", ALICE)["workspace"]
    for key in ("root_path", "file_path", "artifact_path"):
        assert ALICE.user_name in workspace[key]
    assert config["targets"]["dev"]["mode"] == "development" and config["targets"]["dev"]["default"] is True


def test_schedules_pause_only_when_the_spec_says_so(results: list[CompileResult], config: dict[str, Any]) -> None:
    """apply_presets.go pauses a development schedule only when its pause_status is empty; an
    explicit UNPAUSED would keep every developer's copy of a nightly job running."""
    scheduled = [r for r in results if "schedule" in r.job]
    assert scheduled, "an example must have a schedule"
    for result in scheduled:
        paused = result.plan["context"]["schedule"]["paused"]
        assert result.job["schedule"].get("pause_status") == ("PAUSED" if paused else None)
        dev = _resolved(config, "dev", ALICE)["resources"]["jobs"][result.job_key]
        prod = _resolved(config, "prod", PROD)["resources"]["jobs"][result.job_key]
        assert dev["schedule"]["pause_status"] == "PAUSED"
        assert prod["schedule"].get("pause_status") == ("PAUSED" if paused else None)  # the API's default: UNPAUSED


def test_tags_fit_in_development_mode(config: dict[str, Any]) -> None:
    """Jobs allow 25 tags (../shared/reference/databricks-bundles.md §4, "tags (map, at most 25)");
    development mode adds `dev` (apply_target_mode.go). compiler/spec.py leaves room for it."""
    for job in _resolved(config, "dev", ALICE)["resources"]["jobs"].values():
        assert job["tags"]["dev"] == "alice" and len(job["tags"]) <= MAX_JOB_TAGS


def test_a_spec_at_the_tag_limit_fits_in_development_mode(tmp_path: Path) -> None:
    spec = (REPO / "examples" / "credit_risk.yaml").read_text().replace(
        "    timeout: 15 minutes", "    timeout: 15 minutes\n    tags: {" + ", ".join(f"t{i}: v" for i in range(23)) + "}"
    )
    (tmp_path / "s.yaml").write_text(spec)
    (result,) = compile_files([tmp_path / "s.yaml"], root=tmp_path, verify=False)
    root = yaml.safe_load((REPO / "databricks.yml").read_text())
    # The app (resources.apps) names every job of bundle_out/; this bundle holds only the one job.
    root.get("resources", {}).pop("apps", None)
    dev = resolve(merge(root, result.bundle), "dev", ALICE)
    assert len(dev["resources"]["jobs"][result.job_key]["tags"]) == MAX_JOB_TAGS


# ---------------------------------------------------------------------------- task shapes


def test_entry_point_shape(results: list[CompileResult]) -> None:
    """A python_wheel_task names the distribution and a console_scripts entry point of it
    (../shared/reference/databricks-bundles.md §3.1: `package_name` is the distribution name,
    `entry_point` a console_scripts name); serverless tasks need an environment_key
    (bundle/config/validate/job_task_cluster_spec.go). GPU tasks are notebook tasks by default:
    serverless GPU is documented for notebooks (§2.1)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for result in results:
        envs = {e["environment_key"] for e in result.job["environments"]}
        for task in result.job["tasks"]:
            assert task["environment_key"] in envs
            if "python_wheel_task" in task:
                wheel = task["python_wheel_task"]
                assert wheel["package_name"] == project["name"]
                assert wheel["entry_point"] in project["scripts"]
                assert all(isinstance(a, str) for a in wheel["parameters"])
            else:
                notebook = task["notebook_task"]
                assert task["environment_key"] == "gpu" and notebook["notebook_path"] == f"./{SHIM_FILE}"
                # A synced .py file is a notebook when its first line is this header
                # (databricks/cli libs/notebook/detect.go).
                assert result.files[SHIM_FILE].startswith("# Databricks notebook source\n")
                assert set(notebook["base_parameters"]) == {*SHIM_PARAMETERS, "wheel"}
            assert list(_argv(task)) == list(ARGV_FLAGS)


def test_task_parameters_are_short(results: list[CompileResult]) -> None:
    """A person reading a run in the Jobs UI sees a handful of short parameters (issue 15, defect
    10): the plan is a synced file, not inline JSON."""
    for result in results:
        for task in result.job["tasks"]:
            values = _argv(task)
            assert len(values) == len(ARGV_FLAGS) and max(len(v) for v in values.values()) < 90


def test_plan_file_is_synced_and_read_from_the_workspace_file_path(results: list[CompileResult]) -> None:
    """The CLI syncs the bundle root's files (not ignored by git) to `${workspace.file_path}`
    (bundle/config/mutator/default_workspace_paths.go; sync defaults to the bundle root), so a
    committed bundle_out/<job>.plan.json is at `${workspace.file_path}/bundle_out/<job>.plan.json`."""
    ignored = (REPO / ".gitignore").read_text().splitlines() if (REPO / ".gitignore").exists() else []
    assert not any(line.strip().rstrip("/") in ("bundle_out", "*.json", "bundle_out/*.json") for line in ignored)
    for result in results:
        name = f"{result.job_key}.plan.json"
        assert name in result.files
        for task in result.job["tasks"]:
            assert _argv(task)["--plan"] == "${workspace.file_path}/bundle_out/" + name


def test_environments_resolve_the_same_pickle_libraries(results: list[CompileResult]) -> None:
    """GPU-trained models are unpickled on CPU: both environments pin the same versions."""
    from obsrv.compiler.environments import PINNED_LIBRARIES

    assert set(PINNED_LIBRARIES) >= {"numpy", "scikit-learn", "xgboost", "lightgbm", "catboost", "cloudpickle", "pandas"}
    for result in results:
        deps = {e["environment_key"]: e["spec"]["dependencies"] for e in result.job["environments"]}
        pins = {env: sorted(d for d in dependencies if "==" in d) for env, dependencies in deps.items()}
        assert all(p == sorted(f"{n}=={v}" for n, v in PINNED_LIBRARIES.items()) for p in pins.values()), pins


def test_deploy_keeps_the_wheels_of_runs_in_flight() -> None:
    """bundle/artifacts/upload.go deletes ${workspace.artifact_path}/.internal on every deploy
    unless `experimental.skip_artifact_cleanup` (bundle/config/experimental.go) is set."""
    root = yaml.safe_load((REPO / "databricks.yml").read_text())
    assert root["experimental"]["skip_artifact_cleanup"] is True


# ----------------------------------------------------------------------------- name rules


_SEGMENT = re.compile(r"[A-Za-z]+(?:[-_]*[A-Za-z0-9]+)*")


def test_resource_keys_can_be_referenced(config: dict[str, Any]) -> None:
    """`${resources.<type>.<key>.<field>}` needs every segment to match BaseVarDef
    (libs/dyn/dynvar/ref.go); the compiled job references its own schema, model and experiment."""
    for kind, entries in config["resources"].items():
        for key in entries:
            assert _SEGMENT.fullmatch(key), f"resources.{kind}.{key}"
    for name in config["variables"]:
        assert _SEGMENT.fullmatch(name), f"variable {name}"


def test_unity_catalog_names_after_prefixing(config: dict[str, Any]) -> None:
    """Schema and model names stay plain UC identifiers after the dev prefix (at most 255
    characters; obsrv's own rule, compiler/spec.py IDENTIFIER_PATTERN, keeps them unquoted)."""
    for target, user in (("dev", ALICE), ("prod", PROD)):
        res = _resolved(config, target, user)["resources"]
        names = [s["name"] for s in res["schemas"].values()] + [m["name"] for m in res["registered_models"].values()]
        for name in names:
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and len(name) <= 255, name


def test_experiments_live_in_a_folder_that_exists(config: dict[str, Any]) -> None:
    """An MLflow experiment's parent folder must exist (RESOURCE_DOES_NOT_EXIST otherwise;
    ../shared/reference/databricks-bundles.md §7): obsrv puts it in the deployer's home folder."""
    for target, user in (("dev", ALICE), ("prod", PROD)):
        for experiment in _resolved(config, target, user)["resources"]["experiments"].values():
            parent = experiment["name"].rsplit("/", 1)[0]
            assert parent == f"/Users/{user.user_name}"


def test_notebook_shim_rebuilds_the_wheel_argv(results: list[CompileResult], monkeypatch: pytest.MonkeyPatch) -> None:
    """The shim passes a GPU notebook task exactly the argv its wheel twin would get, calls the
    entry point the way a wheel task does (`load()()`), and fails the task on a non-zero exit."""
    import importlib.metadata
    import sys
    import types

    result = next((r for r in results if SHIM_FILE in r.files), None)
    if result is None:
        pytest.skip("`--gpu-runner wheel` emits no notebook shim")
    task = next(t for t in result.job["tasks"] if "notebook_task" in t)
    params = task["notebook_task"]["base_parameters"]
    seen: list[list[str]] = []

    def fake_main(status: int | None) -> Any:
        def main() -> int | None:
            seen.append(list(sys.argv))
            return status
        return main

    for status in (None, 3):
        script = types.SimpleNamespace(load=lambda s=status: fake_main(s))
        monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_: [script])
        dbutils = types.SimpleNamespace(widgets=types.SimpleNamespace(get=params.__getitem__))
        code = compile(result.files[SHIM_FILE], SHIM_FILE, "exec")
        monkeypatch.setattr(sys, "argv", ["notebook"])
        if status is None:
            exec(code, {"dbutils": dbutils})
        else:
            with pytest.raises(RuntimeError, match="exited with status 3"):
                exec(code, {"dbutils": dbutils})
    wheel_argv = [arg for flag, value in _argv(task).items() for arg in (flag, value)]
    assert seen == [["obsrv-task", *wheel_argv]] * 2


def test_a_lookup_variable_resolves_offline_to_what_it_looks_up_and_a_value_given_wins(config: dict[str, Any]) -> None:
    """resolve_resource_references.go: a variable with a value ignores its `lookup`; otherwise the
    CLI asks the workspace at deploy. Offline the resolver names what would be looked up."""
    assert _resolved(config, "dev", ALICE)["variables"]["app_warehouse_id"] == "<lookup warehouse: Serverless Starter Warehouse>"
    given = resolve(config, "dev", ALICE, overrides={"app_warehouse_id": "abc123"})
    assert given["variables"]["app_warehouse_id"] == "abc123"
    app = given["resources"]["apps"]["obsrv_app"]
    assert {"id": "abc123", "permission": "CAN_USE"} in [r["sql_warehouse"] for r in app["resources"] if "sql_warehouse" in r]
