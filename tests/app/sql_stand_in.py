"""Stand-ins for databricks-sdk's `WorkspaceClient().statement_execution` and for the UC model
registry (`MlflowClient(registry_uri="databricks-uc")`). They record every call and replay
responses built with the libraries' own classes (`sql.StatementResponse.from_dict`,
`sql.ResultData`, `jobs.Run.from_dict`, mlflow's `ModelVersion` and `MlflowException`), so a
field name or enum value that the installed SDK does not have fails here. No workspace can be
reached from the tests; this is what the workspace Results page is verified against."""

from __future__ import annotations

from typing import Any

from databricks.sdk.service import jobs, sql

from .jobs_stand_in import HOST

# A leaderboard as evaluate writes it (service_tasks/stages/evaluate.py: task_id, kind, model,
# the metrics, oof_<primary>, is_champion, scored_on), in the manifest/data_array form the
# Statement Execution API returns with format JSON_ARRAY: every value a string or null.
COLUMNS = [("task_id", "STRING", "string"), ("kind", "STRING", "string"), ("model", "STRING", "string"),
           ("auc", "DOUBLE", "double"), ("f1", "DOUBLE", "double"), ("oof_auc", "DOUBLE", "double"),
           ("is_champion", "BOOLEAN", "boolean"), ("scored_on", "STRING", "string")]
ROWS = [["stack_top_any", "stack", "stack_top_any", "0.912", "0.71", "0.905", "true", "holdout"],
        ["base_xgboost", "base", "xgboost", "0.897", "0.69", "0.899", "false", "holdout"],
        ["base_knn", "base", "knn", "0.801", None, "0.793", "false", "holdout"]]


def statement(rows: list[list[str | None]], *, statement_id: str = "01ef-stmt", next_chunk: int | None = None,
              state: str = "SUCCEEDED", error: str = "") -> sql.StatementResponse:
    body: dict[str, Any] = {"statement_id": statement_id, "status": {"state": state}}
    if error:
        body["status"]["error"] = {"error_code": "BAD_REQUEST", "message": error}
    else:
        body["manifest"] = {
            "format": "JSON_ARRAY", "total_row_count": len(rows), "total_chunk_count": 1 + (next_chunk is not None),
            "schema": {"column_count": len(COLUMNS), "columns": [
                {"name": n, "type_name": t, "type_text": text, "position": i} for i, (n, t, text) in enumerate(COLUMNS)]},
        }
        body["result"] = {"chunk_index": 0, "row_offset": 0, "row_count": len(rows), "data_array": rows,
                          **({"next_chunk_index": next_chunk} if next_chunk is not None else {})}
    return sql.StatementResponse.from_dict(body)


class StatementsStandIn:
    def __init__(self, response: sql.StatementResponse, chunks: dict[int, sql.ResultData] | None = None) -> None:
        self.response = response
        self.chunks = chunks or {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def execute_statement(self, statement: str, warehouse_id: str, **kwargs: Any) -> sql.StatementResponse:
        self.calls.append(("execute_statement", {"statement": statement, "warehouse_id": warehouse_id, **kwargs}))
        return self.response

    def get_statement_result_chunk_n(self, statement_id: str, chunk_index: int) -> sql.ResultData:
        self.calls.append(("get_statement_result_chunk_n", {"statement_id": statement_id, "chunk_index": chunk_index}))
        return self.chunks[chunk_index]


class RegistryStandIn:
    """`get_model_version_by_alias` as MlflowClient answers it: a ModelVersion, or an
    MlflowException RESOURCE_DOES_NOT_EXIST when the model or alias is not there."""

    def __init__(self, versions: dict[tuple[str, str], str]) -> None:
        self.versions = versions
        self.calls: list[tuple[str, str]] = []

    def get_model_version_by_alias(self, name: str, alias: str) -> Any:
        from mlflow.entities.model_registry import ModelVersion
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

        self.calls.append((name, alias))
        if (name, alias) not in self.versions:
            raise MlflowException(f"Registered model alias {alias} not found.", error_code=RESOURCE_DOES_NOT_EXIST)
        return ModelVersion(name=name, version=self.versions[(name, alias)], creation_timestamp=1_700_000_000_000,
                            aliases=[alias])


def training_run(run_id: int, *, catalog: str = "main", schema: str = "dev_alice_credit_risk",
                 model: str = "dev_alice_credit_risk_ensemble", job_id: int = 7) -> jobs.Run:
    """A finished run of a compiled job: its `catalog`/`schema` job parameters (value as run,
    default as deployed) and evaluate's wheel-task parameters (`--model` resolved at deploy)."""
    evaluate = ["--stage", "evaluate", "--task-id", "evaluate", "--workflow-id", "{{job.run_id}}",
                "--catalog", "{{job.parameters.catalog}}", "--schema", "{{job.parameters.schema}}",
                "--model", model]
    return jobs.Run.from_dict({
        "run_id": run_id, "job_id": job_id, "run_name": "credit_risk_ensemble",
        "state": {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"},
        "job_parameters": [{"name": "catalog", "default": "main", "value": catalog},
                           {"name": "schema", "default": "dev_alice_credit_risk", "value": schema}],
        "tasks": [{"task_key": "evaluate", "run_id": run_id + 1,
                   "state": {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"},
                   "python_wheel_task": {"package_name": "obsrv", "entry_point": "obsrv-task", "parameters": evaluate}}],
        "start_time": 1_700_000_000_000, "run_duration": 95_000, "run_page_url": f"{HOST}/#job/{job_id}/run/{run_id}",
    })
