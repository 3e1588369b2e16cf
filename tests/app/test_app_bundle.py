"""The app as a bundle resource: `resources.apps.obsrv_app` in databricks.yml and its app.yaml.

Platform rules, with their sources:
- the official bundle schema (../shared/reference/databricks_bundle_schema.json) accepts the
  entry, and rejects a job permission it does not list (apps.AppResourceJobJobPermission:
  CAN_MANAGE, IS_OWNER, CAN_MANAGE_RUN, CAN_VIEW), so the check is not vacuous;
- databricks/cli bundle/apps/validate.go: source_code_path or git_source, not both;
- databricks/cli 913e10a bundle/apps/validate.go rejected an app.yml/app.yaml in
  source_code_path when `config` is set; later versions warned that `config` was deprecated
  (removed in ec8c903), today's send it as the deployment's command (bundle/appdeploy/app.go):
  the app keeps its command in app.yaml only, which every version accepts.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT.parent / "shared" / "reference" / "validate_bundle_schema.py"


@pytest.fixture(scope="module")
def bundle() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "databricks.yml").read_text())


@pytest.fixture(scope="module")
def problems() -> Any:
    if not VALIDATOR.is_file():
        pytest.skip(f"official bundle schema not available: {VALIDATOR} is absent (no ../shared checkout)")
    spec = importlib.util.spec_from_file_location("validate_bundle_schema", VALIDATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    validator = module.load_validator()
    return lambda doc: module.problems(validator, doc)


def test_the_app_passes_the_official_schema_and_a_bad_permission_does_not(bundle: dict[str, Any], problems: Any) -> None:
    assert problems(bundle) == []
    broken = copy.deepcopy(bundle)
    broken["resources"]["apps"]["obsrv_app"]["resources"][0]["job"]["permission"] = "CAN_RUN"
    assert problems(broken)


def test_the_app_can_run_every_compiled_job(bundle: dict[str, Any]) -> None:
    app = bundle["resources"]["apps"]["obsrv_app"]
    granted = {r["job"]["id"]: r["job"]["permission"] for r in app["resources"] if "job" in r}
    compiled = sorted(p.name.removesuffix(".job.yml") for p in (ROOT / "bundle_out").glob("*.job.yml"))
    assert granted == {f"${{resources.jobs.{key}.id}}": "CAN_MANAGE_RUN" for key in compiled}


def test_the_source_folder_and_app_yaml(bundle: dict[str, Any]) -> None:
    app = bundle["resources"]["apps"]["obsrv_app"]
    assert "git_source" not in app
    source = (ROOT / app["source_code_path"]).resolve()
    assert (source / "app.yaml").is_file() and "config" not in app  # one place for the command
    command = " ".join(yaml.safe_load((source / "app.yaml").read_text())["command"])
    entry = command.split("streamlit run ", 1)[1].split()[0]
    assert (source / entry).is_file() and '".[app]"' in command and "$DATABRICKS_APP_PORT" in command
    # no secret in the files: the service principal's credentials come from the platform
    text = (source / "app.yaml").read_text() + (ROOT / "databricks.yml").read_text()
    assert "DATABRICKS_TOKEN" not in text and "client_secret" not in text.lower()


def test_the_app_has_its_sql_warehouse_and_app_yaml_maps_it(bundle: dict[str, Any], problems: Any) -> None:
    """apps.AppResourceSqlWarehouse (the bundle schema): `id` and `permission` (CAN_MANAGE,
    CAN_USE, IS_OWNER), both required. app.yaml's `valueFrom` names the entry's `name`; Databricks
    Apps then sets the variable to the warehouse id (docs.databricks.com dev-tools/databricks-apps/
    environment-variables). The variable app/results.py reads is the one app.yaml sets."""
    from obsrv.app.results import WAREHOUSE_ENV

    app = bundle["resources"]["apps"]["obsrv_app"]
    warehouses = [r for r in app["resources"] if "sql_warehouse" in r]
    assert warehouses == [{"name": "sql_warehouse", "description": "read the jobs' leaderboard tables",
                           "sql_warehouse": {"id": "${var.app_warehouse_id}", "permission": "CAN_USE"}}]
    assert "lookup" in bundle["variables"]["app_warehouse_id"]  # a value at deploy without --var
    env = yaml.safe_load((ROOT / app["source_code_path"] / "app.yaml").read_text())["env"]
    assert {"name": WAREHOUSE_ENV, "valueFrom": "sql_warehouse"} in env
    assert {e["valueFrom"] for e in env if "valueFrom" in e} <= {r["name"] for r in app["resources"]}
    for field, bad in (("permission", "CAN_VIEW"), ("id", None)):
        broken = copy.deepcopy(bundle)
        entry = next(r for r in broken["resources"]["apps"]["obsrv_app"]["resources"] if "sql_warehouse" in r)
        if bad is None:
            del entry["sql_warehouse"][field]
        else:
            entry["sql_warehouse"][field] = bad
        assert problems(broken), field
