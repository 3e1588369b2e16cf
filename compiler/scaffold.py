"""`obsrv init [DIR]`: a team project with dev and prod targets and a CI workflow.

The project's own databricks.yml and .github/workflows/obsrv.yml are rendered from the same
templates (templates/*.tmpl) with the project's values; a test checks that the committed files
are exactly those renderings, so a scaffolded project and obsrv itself deploy the same way.
Templates use `@@NAME@@` tokens: `${...}` (bundle references) and `${{ ... }}` (GitHub
expressions) must pass through untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

_TOKEN = re.compile(r"@@([A-Z_]+)@@")


@dataclass(frozen=True)
class ProjectValues:
    bundle_name: str
    title: str
    see: str
    wheel_build: str
    install: str
    specs: str
    # A template of the bundle's `resources.apps` block (the obsrv app, docs/app.md), or "" for
    # none: only obsrv's own repository has the app's source folder.
    app_template: str = ""
    # Its variables (the app's SQL warehouse), inside the root `variables:`; "" with no app.
    app_variables_template: str = ""


# obsrv's own repository: builds the wheel from its source tree.
OBSRV_PROJECT = ProjectValues(
    bundle_name="obsrv",
    title="The obsrv bundle",
    see="See docs/deploying.md.",
    wheel_build="python -m pip wheel --no-deps --wheel-dir dist .",
    install="python -m pip install -e '.[cli]'",
    specs="examples/*.yaml",
    app_template="obsrv_app.yml.tmpl",
    app_variables_template="obsrv_app_variables.yml.tmpl",
)


def team_project(bundle_name: str) -> ProjectValues:
    """A scaffolded project: obsrv comes from the package index (the same version CI installs)."""
    return ProjectValues(
        bundle_name=bundle_name,
        title=f"The {bundle_name} bundle (obsrv workflows)",
        see="See README.md.",
        wheel_build="python -m pip wheel --no-deps --wheel-dir dist obsrv",
        install="python -m pip install 'obsrv[cli]'",
        specs="specs/*.yaml",
    )


def render(template: str, values: ProjectValues) -> str:
    text = files("obsrv.templates").joinpath(template).read_text(encoding="utf-8")
    mapping = {k.upper(): v for k, v in vars(values).items()}
    for token, name in (("APP", values.app_template), ("APP_VARIABLES", values.app_variables_template)):
        mapping[token] = files("obsrv.templates").joinpath(name).read_text(encoding="utf-8") if name else ""

    def one(match: re.Match[str]) -> str:
        return mapping[match.group(1)]  # KeyError: a template token without a value (a bug)

    return _TOKEN.sub(one, text)


def databricks_yml(values: ProjectValues) -> str:
    return render("databricks.yml.tmpl", values)


def workflow_yml(values: ProjectValues) -> str:
    return render("obsrv_workflow.yml.tmpl", values)


EXAMPLE_SPEC = """\
# An obsrv workflow: `obsrv validate specs/*.yaml`, `obsrv compile specs/*.yaml`, then deploy.
# Every key: `obsrv schema`. Outputs go to a schema named after the job (dev: dev_<you>_<job>).
obsrv:
  context:
    name: @@BUNDLE_NAME@@_example
    timeout: 1 hour
    metric:
      classification: [auc, f1]
    source:
      catalog: main
      schema: default
      table: training_data
      target: label
  job:
    - task: stack_top_any
      stack:
        top_n: 5
    - task: vote_top_alg
      vote:
        top_alg: 3
"""

README = """\
# @@BUNDLE_NAME@@

obsrv ensemble-AutoML workflows, deployed as a Databricks bundle.

    pip install 'obsrv[cli]'
    obsrv validate specs/*.yaml
    obsrv compile specs/*.yaml          # writes bundle_out/; commit it
    databricks bundle deploy -t dev     # your own copy: [dev <you>] jobs, dev_<you>_* schemas
    obsrv run specs/example.yaml        # or run it locally

Merges to `main` deploy the `prod` target from CI (.github/workflows/obsrv.yml) as the service
principal in the repository variable DATABRICKS_CLIENT_ID; see the comments in that file.
"""


class InitError(Exception):
    """The target folder already holds a file init would write."""


def scaffold(directory: Path, bundle_name: str) -> list[Path]:
    """Write the project; refuse (writing nothing) if any file exists. Returns the files written."""
    values = team_project(bundle_name)
    tokens = {"BUNDLE_NAME": bundle_name}
    planned = {
        directory / "databricks.yml": databricks_yml(values),
        directory / ".github" / "workflows" / "obsrv.yml": workflow_yml(values),
        directory / "specs" / "example.yaml": _TOKEN.sub(lambda m: tokens[m.group(1)], EXAMPLE_SPEC),
        directory / "README.md": _TOKEN.sub(lambda m: tokens[m.group(1)], README),
        directory / "bundle_out" / ".gitkeep": "",
    }
    existing = [p for p in planned if p.exists()]
    if existing:
        raise InitError(f"{', '.join(str(p) for p in existing)} already exist(s); init writes into a new or empty folder")
    for path, text in planned.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(planned)


def bundle_name_for(directory: Path) -> str:
    """A bundle/job-name-safe name from the folder name (letters, digits, single underscores)."""
    name = re.sub(r"[^A-Za-z0-9]+", "_", directory.resolve().name).strip("_").lower()
    if not name or not name[0].isalpha():
        name = f"obsrv_{name}".rstrip("_")
    return name
