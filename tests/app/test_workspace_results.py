"""The workspace Results page: the leaderboard read from Unity Catalog through a SQL warehouse
(Statement Execution API) and the champion from the UC registry, against the stand-ins in
sql_stand_in.py (the SDK's and mlflow's own classes; no workspace is reachable from here).

Platform rules, with their sources:
- databricks-sdk databricks/sdk/service/sql.py `StatementExecutionAPI.execute_statement(statement,
  warehouse_id, *, catalog, schema, wait_timeout, on_wait_timeout, ...)`; wait_timeout is 0s or
  5s..50s; a result with `next_chunk_index` continues with `get_statement_result_chunk_n`;
  JSON_ARRAY values are strings or null, typed by the manifest's `ColumnInfo.type_name`;
- the table is evaluate's: service_tasks/io/naming.py leaderboard_table, in the run's own
  `catalog`/`schema` job parameters (the compiled job's `{{job.parameters.*}}`);
- the champion is UC's `catalog.schema.<model>@champion` (service_tasks/stages/evaluate.py
  registered_name), `<model>` as deployed: evaluate's `--model`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from obsrv.app.results import (WAREHOUSE_ENV, configured_warehouse, run_outputs, workspace_champion,
                               workspace_leaderboard)
from obsrv.app.run_status import StatusError

from .sql_stand_in import ROWS, RegistryStandIn, StatementsStandIn, statement, training_run

if TYPE_CHECKING:
    from streamlit.testing.v1 import AppTest

TABLE_SQL = "SELECT * FROM `main`.`dev_alice_credit_risk`.`training_data_leaderboard_500`"
MODEL = "main.dev_alice_credit_risk.dev_alice_credit_risk_ensemble"


def test_the_run_names_its_table_and_model() -> None:
    outputs = run_outputs(training_run(500), "credit_risk_ensemble")
    assert (outputs.catalog, outputs.schema, outputs.model) == ("main", "dev_alice_credit_risk",
                                                                "dev_alice_credit_risk_ensemble")
    assert outputs.leaderboard_table("training_data").full == "main.dev_alice_credit_risk.training_data_leaderboard_500"
    assert outputs.registered_name == MODEL
    # the run's value wins over the deployed default
    assert run_outputs(training_run(501, catalog="sandbox"), "credit_risk_ensemble").catalog == "sandbox"


def test_a_run_without_the_output_parameters_is_refused() -> None:
    from databricks.sdk.service import jobs

    bare = jobs.Run.from_dict({"run_id": 9, "job_id": 7, "job_parameters": [{"name": "catalog", "default": "main"}]})
    with pytest.raises(StatusError, match="run 9 has no schema job parameter"):
        run_outputs(bare, "credit_risk_ensemble")


def test_the_leaderboard_is_one_statement_typed_by_its_manifest() -> None:
    from databricks.sdk.service.sql import ExecuteStatementRequestOnWaitTimeout

    stand_in = StatementsStandIn(statement(ROWS))
    board = workspace_leaderboard(stand_in, "wh-123", run_outputs(training_run(500), "x").leaderboard_table("training_data"))
    assert stand_in.calls == [("execute_statement", {
        "statement": TABLE_SQL, "warehouse_id": "wh-123", "catalog": "main", "schema": "dev_alice_credit_risk",
        "wait_timeout": "30s", "on_wait_timeout": ExecuteStatementRequestOnWaitTimeout.CANCEL})]
    assert list(board.columns) == ["task_id", "kind", "model", "auc", "f1", "oof_auc", "is_champion", "scored_on"]
    assert list(board["model"]) == ["stack_top_any", "xgboost", "knn"]
    assert list(board["auc"]) == [0.912, 0.897, 0.801] and str(board["auc"].dtype) == "float64"
    assert board["f1"].iloc[:2].tolist() == [0.71, 0.69] and math.isnan(board["f1"].iloc[2])
    assert list(board["is_champion"]) == [True, False, False]


def test_later_chunks_are_fetched() -> None:
    from databricks.sdk.service import sql

    more = sql.ResultData.from_dict({"chunk_index": 1, "row_offset": 2, "data_array": [ROWS[2]]})
    stand_in = StatementsStandIn(statement(ROWS[:2], next_chunk=1), chunks={1: more})
    board = workspace_leaderboard(stand_in, "wh-123", run_outputs(training_run(500), "x").leaderboard_table("training_data"))
    assert list(board["model"]) == ["stack_top_any", "xgboost", "knn"]
    assert stand_in.calls[1] == ("get_statement_result_chunk_n", {"statement_id": "01ef-stmt", "chunk_index": 1})


def test_a_missing_table_and_a_failed_statement_say_so() -> None:
    table = run_outputs(training_run(500), "x").leaderboard_table("training_data")
    missing = statement([], state="FAILED", error="[TABLE_OR_VIEW_NOT_FOUND] The table or view "
                        "`main`.`dev_alice_credit_risk`.`training_data_leaderboard_500` cannot be found.")
    with pytest.raises(StatusError, match=r"no leaderboard table main\.dev_alice_credit_risk\.training_data_leaderboard_500"):
        workspace_leaderboard(StatementsStandIn(missing), "wh-123", table)
    stopped = statement([], state="FAILED", error="[INSUFFICIENT_PERMISSIONS] User does not have USE SCHEMA.")
    with pytest.raises(StatusError, match="on warehouse wh-123: FAILED: .INSUFFICIENT_PERMISSIONS. User does not"):
        workspace_leaderboard(StatementsStandIn(stopped), "wh-123", table)


def test_the_warehouse_comes_from_the_app_resource_else_the_sidebar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WAREHOUSE_ENV, raising=False)
    with pytest.raises(StatusError, match="no SQL warehouse configured.*sql_warehouse resource.*in the sidebar"):
        configured_warehouse("  ")
    assert configured_warehouse("wh-typed") == "wh-typed"
    monkeypatch.setenv(WAREHOUSE_ENV, "wh-resource")
    assert configured_warehouse("wh-typed") == "wh-resource"


def test_the_champion_is_the_uc_alias_and_a_missing_one_is_a_message() -> None:
    board = workspace_leaderboard(StatementsStandIn(statement(ROWS)), "wh",
                                  run_outputs(training_run(500), "x").leaderboard_table("training_data"))
    registry = RegistryStandIn({(MODEL, "champion"): "3"})
    best = workspace_champion(board, run_outputs(training_run(500), "x"), registry)
    assert (best.model, best.registered_name, best.version, best.uri) == (
        "stack_top_any", MODEL, "3", f"models:/{MODEL}@champion")
    assert registry.calls == [(MODEL, "champion")]
    with pytest.raises(StatusError, match=f"the registered model {MODEL} has no @champion version"):
        workspace_champion(board, run_outputs(training_run(500), "x"), RegistryStandIn({}))
    with pytest.raises(StatusError, match="marks no champion"):
        workspace_champion(board.assign(is_champion=False), run_outputs(training_run(500), "x"), registry)


# ---------------------------------------------------------------------------------- the page

pytest.importorskip("streamlit")


def _page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **state: Any) -> AppTest:
    from .jobs_stand_in import JobsStandIn
    from .test_app_pages import EXAMPLE, _app, _edit

    monkeypatch.delenv(WAREHOUSE_ENV, raising=False)
    _edit(_app(tmp_path, "edit", monkeypatch), EXAMPLE)  # saves the credit_risk spec
    at = _app(tmp_path, "results", monkeypatch)
    at.session_state["mode"] = "workspace"
    at.session_state["jobs_api"] = JobsStandIn({500: training_run(500)}, deployed={"credit_risk_ensemble": 7})
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception
    return at


def test_the_workspace_results_page_shows_the_leaderboard_and_the_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements = StatementsStandIn(statement(ROWS))
    at = _page(tmp_path, monkeypatch, statements_api=statements, registry=RegistryStandIn({(MODEL, "champion"): "3"}),
               warehouse_id="wh-typed")
    assert statements.calls[0][1]["warehouse_id"] == "wh-typed" and statements.calls[0][1]["statement"] == TABLE_SQL
    table = at.table[0].value
    assert list(table.index) == ["★", "", ""] and list(table["model"]) == ["stack_top_any", "xgboost", "knn"]
    texts = [m.value for m in at.markdown]
    assert any(f"champion: **stack_top_any**, registered as {MODEL} version 3" in t for t in texts)
    assert f"models:/{MODEL}@champion" in [c.value for c in at.code]


def test_the_workspace_results_page_explains_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _page(tmp_path, monkeypatch, statements_api=StatementsStandIn(statement(ROWS)), registry=RegistryStandIn({}))
    assert "no SQL warehouse configured" in at.warning[0].value
    at.session_state["warehouse_id"] = "wh-typed"
    at.run()
    assert len(at.table) == 1
    assert f"the registered model {MODEL} has no @champion version" in at.warning[0].value


def test_long_columns_keep_integers_and_nulls_and_dates_stay_text() -> None:
    from databricks.sdk.service import sql

    from obsrv.app.results import frame_from_rows

    columns = [sql.ColumnInfo(name="Fold Count", type_name=sql.ColumnInfoTypeName.LONG, position=0),
               sql.ColumnInfo(name="day", type_name=sql.ColumnInfoTypeName.DATE, position=1)]
    frame = frame_from_rows(columns, [["5", "2026-12-02"], [None, None]])
    assert list(frame.columns) == ["Fold Count", "day"]  # the user's column names as they are
    assert str(frame["Fold Count"].dtype) == "Int64" and frame["Fold Count"].iloc[0] == 5
    assert frame["Fold Count"].isna().tolist() == [False, True]
    assert frame["day"].iloc[0] == "2026-12-02" and frame["day"].isna().tolist() == [False, True]
