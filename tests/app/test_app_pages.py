"""The Streamlit pages through streamlit.testing.v1.AppTest: diagnostics and a disabled Launch
for an invalid spec, the DAG for a valid one, the workspace Watch/Launch against the SDK
stand-in, and (slow) a real local launch that reaches succeeded and shows the leaderboard."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from .jobs_stand_in import JobsStandIn, run, task  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "app" / "ui" / "main.py"
EXAMPLE = (ROOT / "examples" / "credit_risk.yaml").read_text()


def _app(workdir: Path, page: str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setattr(sys, "argv", ["main.py", "--workdir", str(workdir)])
    at = AppTest.from_file(str(MAIN), default_timeout=120)
    at.query_params["page"] = page
    return at


def _edit(at: AppTest, text: str) -> AppTest:
    at.run()
    at.selectbox(key="example").set_value("credit_risk").run()
    at.text_area(key="spec_credit_risk").set_value(text).run()
    return at


def test_an_invalid_spec_shows_its_diagnostics_and_disables_launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = EXAMPLE.replace("top_n: 5", "top_n: -5").replace("fold_type: [stratified]", "fold_type: [stratifed]")
    at = _edit(_app(tmp_path, "edit", monkeypatch), bad)
    assert not at.exception
    codes = [c.value for c in at.code]
    # exactly `obsrv validate`'s rendering: location, code, snippet with caret, fix
    assert any("credit_risk.yaml:12:16: error[OBS104]" in c and "^" in c and "fix: use `stratified`" in c for c in codes)
    assert any("error[OBS105]: `top_n` must be at least 2, got -5" in c for c in codes)
    assert "2 error(s)" in at.error[0].value
    assert at.button(key="edit_launch").disabled
    at.query_params["page"] = "launch"
    at.run()
    assert at.button(key="launch_local").disabled


def test_a_valid_spec_shows_the_dag_and_the_job_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _edit(_app(tmp_path, "edit", monkeypatch), EXAMPLE)
    assert "ok: job credit_risk_ensemble, 14 tasks" in at.success[0].value
    assert not at.button(key="edit_launch").disabled
    at.query_params["page"] = "job"
    at.run()
    assert not at.exception
    dot = at.get("graphviz_chart")[0].proto.spec
    for node in ("prepare", "base_xgboost", "route_cluster", "stack_top_any", "vote_top_alg", "evaluate", "cleanup"):
        assert f'"{node}" [label=' in dot
    assert '"route_cluster" -> "stack_top_any";' in dot and "GPU" in dot and "CPU" in dot
    assert any("credit_risk_ensemble:" in c.value and "python_wheel_task" in c.value for c in at.code)


def test_workspace_watch_renders_each_state_and_launch_runs_the_deployed_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _edit(_app(tmp_path, "edit", monkeypatch), EXAMPLE)
    tasks = [task("prepare", "TERMINATED", "SUCCESS", run_id=11, duration_ms=3000),
             task("base_knn", "TERMINATED", "FAILED", deps=("prepare",), run_id=12, message="boom"),
             task("stack_top_any", "TERMINATED", "UPSTREAM_FAILED", deps=("base_knn",), run_id=13),
             task("vote_top_alg", "RUNNING", deps=("prepare",), run_id=14), task("evaluate", "PENDING")]
    from databricks.sdk.service import jobs

    stand_in = JobsStandIn({500: run(500, "TERMINATED", "FAILED", tasks)}, deployed={"credit_risk_ensemble": 7},
                           outputs={12: jobs.RunOutput.from_dict({"logs": "fitting\nKeyError: 'age'"})})
    at = _app(tmp_path, "watch", monkeypatch)
    at.session_state["mode"] = "workspace"
    at.session_state["jobs_api"] = stand_in
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["state"]) == ["✓ succeeded", "✗ failed", "– skipped", "» running", "· pending"]
    assert "run **500** of credit_risk_ensemble: **failed**" in at.markdown[0].value
    assert "#job/7/run/500" in at.markdown[1].value
    assert any("KeyError: 'age'" in c.value for c in at.code)
    at.query_params["page"] = "launch"
    at.run()
    at.text_input(key="param_catalog").set_value("dev_main")
    at.button(key="launch_run_now").click().run()
    assert ("run_now", {"job_id": 7, "job_parameters": {"catalog": "dev_main"}}) in stand_in.calls
    assert "started the deployed job 7 (jobs.run_now)" in at.success[0].value


@pytest.mark.slow
def test_a_local_launch_reaches_succeeded_and_shows_the_leaderboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new user's path: the example, Launch (the demo table loads itself), Watch, Results."""
    at = _edit(_app(tmp_path, "edit", monkeypatch), EXAMPLE)
    at.query_params["page"] = "launch"
    at.run()
    at.number_input(key="time_limit").set_value(20)
    at.button(key="launch_local").click().run()
    assert not at.exception
    assert "loaded the demo tables" in at.info[0].value
    run_id = at.session_state["run_id"]
    assert run_id
    from obsrv.app.run_status import local_status

    deadline = time.monotonic() + 240
    while local_status(tmp_path, run_id).state in ("pending", "running") and time.monotonic() < deadline:
        time.sleep(2)
    assert local_status(tmp_path, run_id).state == "succeeded"
    at.query_params["page"] = "watch"
    at.run()
    assert "**succeeded**" in at.markdown[0].value
    assert set(at.dataframe[0].value["state"]) == {"✓ succeeded"}
    at.query_params["page"] = "results"
    at.run()
    assert not at.exception
    board = at.table[0].value
    assert list(board.index).count("★") == 1 and board.index[0] == "★"
    assert board["auc"].between(0.6, 0.99).all()
    assert "models:/credit_risk_ensemble@champion" in [c.value for c in at.code]
    assert "version 1" in at.markdown[0].value
    assert at.get("image")  # the report's ROC plot
