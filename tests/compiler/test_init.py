"""`obsrv init`: the scaffolded project deploys like obsrv's own, and its CI workflow is valid."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from obsrv.compiler import cli
from obsrv.compiler.api import compile_files
from obsrv.compiler.scaffold import OBSRV_PROJECT, bundle_name_for, databricks_yml, workflow_yml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = Path(".github") / "workflows" / "obsrv.yml"


def test_the_projects_own_files_are_the_scaffold_templates() -> None:
    """One source for both: a change to the targets or the CI reaches scaffolded projects too."""
    assert (REPO / "databricks.yml").read_text() == databricks_yml(OBSRV_PROJECT)
    assert (REPO / WORKFLOW).read_text() == workflow_yml(OBSRV_PROJECT)


@pytest.fixture()
def project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    target = tmp_path / "Credit-Team"
    assert cli.main(["init", str(target)]) == 0
    assert "written" in capsys.readouterr().out
    return target


def test_init_writes_a_project_that_compiles_and_passes_the_bundle_schema(project: Path, bundle_schema: Any) -> None:
    assert sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()) == [
        ".github/workflows/obsrv.yml", "README.md", "bundle_out/.gitkeep", "databricks.yml", "specs/example.yaml",
    ]
    root = yaml.safe_load((project / "databricks.yml").read_text())
    assert root["bundle"]["name"] == bundle_name_for(project) == "credit_team"
    assert bundle_schema(root) == []
    assert set(root["targets"]) == {"dev", "prod"} and root["targets"]["prod"]["workspace"]["root_path"]
    (result,) = compile_files([project / "specs" / "example.yaml"], root=project, verify=True)
    for name, text in result.files.items():
        if name.endswith(".yml"):
            assert bundle_schema(yaml.safe_load(text)) == [], name


def test_init_refuses_to_overwrite(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (project / "databricks.yml").read_text()
    assert cli.main(["init", str(project)]) == 2
    assert "already exist" in capsys.readouterr().err
    assert (project / "databricks.yml").read_text() == before


def _load_workflow(text: str) -> dict[str, Any]:
    """YAML 1.2 as GitHub reads it: PyYAML (YAML 1.1) turns the key `on` into True."""
    document = yaml.safe_load(text)
    if True in document:
        document["on"] = document.pop(True)
    return document


def _workflow_schema() -> dict[str, Any]:
    """SchemaStore's GitHub workflow schema, vendored (tests/fixtures/github_workflow_schema/SOURCE.txt)."""
    path = REPO / "tests" / "fixtures" / "github_workflow_schema" / "github-workflow.json"
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("which", ["scaffold", "project"])
def test_workflow_passes_the_github_workflow_schema(which: str, tmp_path: Path) -> None:
    """SchemaStore's github-workflow schema is what editors and `check-jsonschema --builtin-schema
    vendor.github-workflows` check workflows against."""
    import jsonschema

    text = workflow_yml(OBSRV_PROJECT) if which == "project" else (
        cli.main(["init", str(tmp_path / "p")]) or (tmp_path / "p" / WORKFLOW).read_text()
    )
    document = _load_workflow(text)
    errors = list(jsonschema.Draft7Validator(_workflow_schema()).iter_errors(document))
    assert errors == [], [e.message for e in errors]


def test_workflow_checks_pull_requests_and_deploys_main_as_a_service_principal() -> None:
    document = _load_workflow(workflow_yml(OBSRV_PROJECT))
    assert set(document["on"]) == {"pull_request", "push"} and document["on"]["push"]["branches"] == ["main"]
    jobs = document["jobs"]
    check = [step.get("run", "") for step in jobs["check"]["steps"]]
    deploy = [step.get("run", "") for step in jobs["deploy"]["steps"]]
    assert "pull_request" in jobs["check"]["if"] and "refs/heads/main" in jobs["deploy"]["if"]
    assert "obsrv validate examples/*.yaml" in check and "obsrv compile --check examples/*.yaml" in check
    assert "databricks bundle validate -t prod" in check
    assert deploy[-1] == "databricks bundle deploy -t prod"
    assert "databricks bundle deploy" not in " ".join(check)
    assert document["permissions"]["id-token"] == "write"  # OIDC workload identity federation
    env = document["env"]
    assert env["BUNDLE_VAR_service_principal"] == env["DATABRICKS_CLIENT_ID"]  # deploys and runs as the SP


def test_workflow_takes_credentials_from_the_ci_only() -> None:
    """Credentials from the CI's variables and secrets, never literal values or files."""
    text = workflow_yml(OBSRV_PROJECT)
    env = _load_workflow(text)["env"]
    for key, value in env.items():
        if key.startswith("DATABRICKS_") and key != "DATABRICKS_AUTH_TYPE":
            assert re.fullmatch(r"\$\{\{ (vars|secrets)\.[A-Z_]+ \}\}", value), key
    assert not re.search(r"dapi[0-9a-f]{8,}|\.databrickscfg|DATABRICKS_CONFIG_FILE", text)
