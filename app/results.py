"""A finished local run's results: its leaderboard table, the report's plots, the champion's
registered model version, and two runs side by side (the app's Results page)."""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from obsrv.app.run_status import StatusError, runs_dir

_PLOT = re.compile(r"<h2>([^<]*)</h2>\s*<img[^>]*src=[\"']data:image/png;base64,([A-Za-z0-9+/=]+)[\"']")
_NOT_METRICS = {"task_id", "kind", "model", "is_champion", "scored_on"}


def leaderboard(workdir: str | Path, run_id: str) -> Any:
    """The `{table}_leaderboard_{run_id}` Delta table evaluate wrote (ranked, champion first).
    Workflow ids are unique within one .obsrv home, so the table is found by that suffix."""
    from obsrv.service_tasks.io import LocalDeltaStore, TableName

    home = Path(workdir).resolve() / ".obsrv"
    found = sorted(p for p in (home / "warehouse").glob(f"*/*/*_leaderboard_{run_id}") if (p / "_delta_log").is_dir())
    if not found:
        raise StatusError(f"run {run_id} has no leaderboard yet (evaluate has not finished)")
    table = found[0]
    return LocalDeltaStore(home).read(TableName(table.parent.parent.name, table.parent.name, table.name))


def metric_columns(board: Any) -> list[str]:
    return [c for c in board.columns if c not in _NOT_METRICS]


def report_plots(workdir: str | Path, run_id: str) -> list[tuple[str, bytes]]:
    """(title, PNG bytes) of each plot in the run's report.html (evaluate embeds them)."""
    report = runs_dir(workdir) / run_id / "report.html"
    if not report.exists():
        return []
    return [(title, base64.b64decode(data)) for title, data in _PLOT.findall(report.read_text(errors="replace"))]


@dataclass(frozen=True)
class Champion:
    model: str  # the leaderboard's model name
    registered_name: str
    version: str | None
    uri: str  # models:/<name>@champion


def champion(workdir: str | Path, job: str, board: Any) -> Champion:
    """The champion row and its registered version in the local registry (the `champion` alias
    evaluate sets; the local model name is the job name: service_tasks/local/bundle_values.py)."""
    rows = board[board["is_champion"].astype(bool)]
    if rows.empty:
        raise StatusError("the leaderboard marks no champion")
    home = Path(workdir).resolve() / ".obsrv"
    version: str | None = None
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    try:
        version = str(MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias(job, "champion").version)
    except MlflowException:
        version = None  # evaluate registers after the leaderboard: not there (yet)
    return Champion(model=str(rows.iloc[0]["model"]), registered_name=job, version=version, uri=f"models:/{job}@champion")


def compare(first: Any, second: Any, first_id: str, second_id: str) -> Any:
    """The two leaderboards joined on model, each metric of both runs and the difference."""
    import pandas as pd

    metrics = [m for m in metric_columns(first) if m in set(metric_columns(second))]
    left = first.set_index("model")[metrics].add_suffix(f" ({first_id})")
    right = second.set_index("model")[metrics].add_suffix(f" ({second_id})")
    joined = left.join(right, how="outer")
    for metric in metrics:
        joined[f"{metric} Δ"] = joined[f"{metric} ({second_id})"] - joined[f"{metric} ({first_id})"]
    return pd.DataFrame(joined).reset_index()


# ------------------------------------------------------------------------------ on a workspace
#
# The leaderboard is a Unity Catalog table; the app reads it through a SQL warehouse with the
# Statement Execution API (databricks-sdk `WorkspaceClient().statement_execution`), and the champion
# from the UC registry. Names are not built here: the run's own job parameters give the catalog
# and schema (`{{job.parameters.catalog}}`/`schema`, the compiled job's defaults:
# compiler/resources.py), its evaluate task's `--model` the registered model (as deployed: a dev
# deploy prefixes it), and service_tasks.io.leaderboard_table the table name, as evaluate writes it.

# app.yaml sets it from the app's `sql_warehouse` resource (`valueFrom: sql_warehouse`, the
# resource's `name`); Databricks Apps injects the warehouse id (docs.databricks.com
# dev-tools/databricks-apps/environment-variables, "valueFrom reference": SQL warehouse -> id).
WAREHOUSE_ENV = "OBSRV_WAREHOUSE_ID"
STATEMENT_WAIT = "30s"  # execute_statement's wait_timeout: 0s or 5s..50s (databricks-sdk sql.py)
_TABLE_MISSING = ("TABLE_OR_VIEW_NOT_FOUND", "SCHEMA_NOT_FOUND", "CATALOG_NOT_FOUND")


def configured_warehouse(typed: str | None = None) -> str:
    """The SQL warehouse id: the app resource's (WAREHOUSE_ENV), else the one typed in the sidebar."""
    value = os.environ.get(WAREHOUSE_ENV, "").strip() or (typed or "").strip()
    if not value:
        raise StatusError(
            f"no SQL warehouse configured: the app reads the leaderboard through one. Deploy the app with its "
            f"sql_warehouse resource (databricks.yml, var.app_warehouse_id; app.yaml sets {WAREHOUSE_ENV}) or type "
            "a warehouse id in the sidebar")
    return value


@dataclass(frozen=True)
class RunOutputs:
    """Where one workspace run wrote: its output catalog and schema and its registered model."""

    run_id: str
    catalog: str
    schema: str
    model: str  # the registered model's own name (UC: catalog.schema.<model>)

    @property
    def registered_name(self) -> str:
        from obsrv.service_tasks import uc_rules

        return uc_rules.check_registered_model_name(f"{self.catalog}.{self.schema}.{self.model}", three_level=True)

    def leaderboard_table(self, source_table: str) -> Any:
        from obsrv.service_tasks.io import leaderboard_table

        return leaderboard_table(self.catalog, self.schema, source_table, self.run_id)


def run_outputs(run: Any, job: str) -> RunOutputs:
    """From a `jobs.Run`: `job_parameters` (jobs.JobParameter: name, value, default) `catalog` and
    `schema`, and the evaluate task's `--model` (its python_wheel_task parameters); `job` when
    the run carries no `--model`."""
    values = {p.name: (p.value if p.value not in (None, "") else p.default) for p in run.job_parameters or []}
    missing = [n for n in ("catalog", "schema") if not values.get(n)]
    if missing:
        raise StatusError(f"run {run.run_id} has no {' or '.join(missing)} job parameter: it is not an obsrv "
                          "training job run (compiled jobs take catalog and schema)")
    model = job
    for task in run.tasks or []:
        params = list(task.python_wheel_task.parameters or []) if task.python_wheel_task else []
        if "--model" in params[:-1] and "evaluate" in params:
            model = params[params.index("--model") + 1] or job
    return RunOutputs(str(run.run_id), str(values["catalog"]), str(values["schema"]), model)


def workspace_leaderboard(statements: Any, warehouse_id: str, table: Any) -> Any:
    """The leaderboard table through `statement_execution.execute_statement` (INLINE JSON_ARRAY,
    the defaults), its later chunks through `get_statement_result_chunk_n`, as a DataFrame."""
    response = statements.execute_statement(
        warehouse_id=warehouse_id, statement=f"SELECT * FROM {table.quoted}", catalog=table.catalog,
        schema=table.schema, wait_timeout=STATEMENT_WAIT, on_wait_timeout=_cancel())
    state = _value(response.status.state if response.status else None)
    if state != "SUCCEEDED":
        error = response.status.error if response.status else None
        message = str(getattr(error, "message", "") or "")
        if any(code in message for code in _TABLE_MISSING):
            raise StatusError(f"no leaderboard table {table.full}: evaluate has not finished for this run "
                              "(or the schema is not readable by the app: grant it var.readers)")
        raise StatusError(f"reading {table.full} on warehouse {warehouse_id}: {state or 'no state'}"
                          + (f": {message.splitlines()[0]}" if message else ""))
    rows = list(response.result.data_array or []) if response.result else []
    chunk = response.result.next_chunk_index if response.result else None
    while chunk is not None:
        more = statements.get_statement_result_chunk_n(response.statement_id, chunk)
        rows.extend(more.data_array or [])
        chunk = more.next_chunk_index
    columns = response.manifest.schema.columns if response.manifest and response.manifest.schema else []
    return frame_from_rows(columns, rows)


def _cancel() -> Any:
    from databricks.sdk.service.sql import ExecuteStatementRequestOnWaitTimeout

    return ExecuteStatementRequestOnWaitTimeout.CANCEL


def _value(enum_or_none: Any) -> str:
    return "" if enum_or_none is None else str(getattr(enum_or_none, "value", enum_or_none))


_INTEGER = {"BYTE", "SHORT", "INT", "LONG"}
_FLOAT = {"FLOAT", "DOUBLE", "DECIMAL"}


def frame_from_rows(columns: list[Any], rows: list[list[str | None]]) -> Any:
    """JSON_ARRAY rows (every value a string or null) typed by the manifest's `sql.ColumnInfo`
    `type_name`: numbers to float (a null to NaN), BOOLEAN to bool, the rest kept as text."""
    import pandas as pd

    names = [str(c.name) for c in sorted(columns, key=lambda c: c.position or 0)]
    kinds = [_value(c.type_name) for c in sorted(columns, key=lambda c: c.position or 0)]
    data: dict[str, Any] = {}
    for index, (name, kind) in enumerate(zip(names, kinds)):
        raw = [row[index] for row in rows]
        if kind in _INTEGER or kind in _FLOAT:
            data[name] = pd.to_numeric(pd.Series(raw, dtype="object"), errors="raise").astype(
                "Int64" if kind in _INTEGER else "float64")
        elif kind == "BOOLEAN":
            data[name] = [None if v is None else v.lower() == "true" for v in raw]
        else:
            data[name] = raw
    return pd.DataFrame(data, columns=names)


def workspace_champion(board: Any, outputs: RunOutputs, registry: Any = None) -> Champion:
    """The champion row and its version in the UC registry: `MlflowClient` with registry URI
    `databricks-uc`, `get_model_version_by_alias(<catalog.schema.model>, "champion")`. A missing
    model or alias is a StatusError saying so (`registry` is for tests)."""
    rows = board[board["is_champion"].astype(bool)]
    if rows.empty:
        raise StatusError("the leaderboard marks no champion")
    name = outputs.registered_name
    from mlflow.exceptions import MlflowException

    if registry is None:
        from mlflow.tracking import MlflowClient

        registry = MlflowClient(registry_uri="databricks-uc")
    try:
        version = registry.get_model_version_by_alias(name, "champion")
    except MlflowException as error:
        raise StatusError(f"the registered model {name} has no @champion version ({str(error).splitlines()[0]}): "
                          "evaluate registers it at the end of a successful run") from error
    return Champion(model=str(rows.iloc[0]["model"]), registered_name=name, version=str(version.version),
                    uri=f"models:/{name}@champion")
