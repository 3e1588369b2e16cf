"""End to end through the stage functions: prepare -> base -> evaluate, with local MLflow."""

from __future__ import annotations

import json
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest

from obsrv.service_tasks import metrics as M
from obsrv.service_tasks.stages import evaluate as E
from obsrv.service_tasks import tracking
from obsrv.service_tasks.context import proba_columns
from obsrv.service_tasks.entry import task_completed
from obsrv.service_tasks.io import LocalDeltaStore, leaderboard_table, output_table

from support.runtime_helpers import Job, make_job, synthetic

pytestmark = pytest.mark.slow  # prepare, base tasks and evaluate with MLflow on real data

FAMILIES = ["linear", "lightgbm", "knn"]


def _run(tmp_path_factory, problem: str) -> Job:
    home = tmp_path_factory.mktemp(problem)
    job = make_job(home, problem)
    job.prepare()
    for family in FAMILIES:
        job.base(family)
    job.evaluate([f"base_{f}" for f in FAMILIES])
    return job


@pytest.fixture(scope="module")
def binary_job(tmp_path_factory):
    return _run(tmp_path_factory, "binary")


@pytest.fixture(scope="module")
def multiclass_job(tmp_path_factory):
    return _run(tmp_path_factory, "multiclass")


@pytest.fixture(scope="module")
def regression_job(tmp_path_factory):
    return _run(tmp_path_factory, "regression")


@pytest.fixture
def binary_scratch(binary_job: Job, tmp_path) -> Job:
    """A copy of binary_job's tables for a test that writes (publishes, re-evaluates): the module
    fixtures are read by every test and must stay as their run left them. MLflow off (the copy
    shares the original's artifact root)."""
    home = tmp_path / "home"
    shutil.copytree(binary_job.home, home)
    return Job(home, binary_job.context, binary_job.workflow_id, mlflow=False)


def _use(job: Job) -> None:
    """Point MLflow at this job's local store (module fixtures share the process)."""
    tracking.configure(tracking.default_experiment(job.context["name"]), job.home)


def _table(job: Job, kind: str, task_id: str) -> pd.DataFrame:
    return job.store.read(output_table("main", "lab", "training_data", kind, job.workflow_id, task_id))


def _board(job: Job) -> pd.DataFrame:
    return job.store.read(leaderboard_table("main", "lab", "training_data", job.workflow_id))


def test_same_fold_plan_in_every_oof_table(binary_job: Job) -> None:
    prepared = _table(binary_job, "prepared", "prepare").set_index("obsrv_row_id")["obsrv_fold"]
    for family in FAMILIES:
        oof = _table(binary_job, "oof", f"base_{family}")
        assert set(oof["model"]) == {f"base_{family}/{family}_0"} or oof["model"].nunique() <= 2
        for _, part in oof.groupby("model"):
            folds = part.set_index("row_id")["fold"].sort_index()
            expected = prepared.loc[prepared >= 0].sort_index()
            assert folds.index.equals(expected.index)
            np.testing.assert_array_equal(folds.to_numpy(), expected.to_numpy())
        hold = _table(binary_job, "holdout", f"base_{family}")
        assert (hold["fold"] == -1).all()
        assert set(hold["row_id"]) == set(prepared.index[prepared < 0])


def test_oof_and_models_table_columns(binary_job: Job) -> None:
    oof = _table(binary_job, "oof", "base_lightgbm")
    assert list(oof.columns) == ["model", "row_id", "fold", "proba_no", "proba_yes"]
    assert oof["row_id"].dtype == np.int64 and oof["fold"].dtype == np.int32
    models = _table(binary_job, "models", "base_linear")
    assert list(models.columns) == [
        "task_id", "model", "family", "kind", "is_final", "mlflow_run_id", "model_uri", "artifact_uri", "sha256",
        "oof_auc", "params", "search_trials",
    ]
    assert (models["kind"] == "base").all() and models["is_final"].all()
    assert models["model"].iloc[0] == "base_linear/linear_0"
    json.loads(models["params"].iloc[0])


def test_predictions_align_with_prepared_rows(binary_job: Job) -> None:
    ctx = binary_job.ctx(binary_job.request("vote_mix", "vote_mix", upstream=[f"base_{f}" for f in FAMILIES]))
    preds = ctx.predictions()
    prep = ctx.prepared
    assert preds.oof.shape[1:] == (len(prep.y_train), 2) and preds.holdout.shape[1:] == (len(prep.y_holdout), 2)
    assert preds.task_ids[0] == "base_knn"  # upstream is sorted
    oof = _table(binary_job, "oof", preds.task_ids[0])
    first = oof.loc[oof["model"] == preds.models[0]].set_index("row_id").loc[prep.row_ids_train]
    np.testing.assert_allclose(preds.oof[0], first[["proba_no", "proba_yes"]].to_numpy())
    for i, s in enumerate(preds.oof_score):
        assert s == pytest.approx(M.score("auc", prep.y_train, preds.oof[i], problem="classification"))
    # predictors load back from MLflow and reproduce the holdout predictions
    name = preds.models[1]
    predictor = ctx.predictors([name])[name]
    np.testing.assert_allclose(predictor.predict_matrix(prep.X_holdout), preds.holdout[1], rtol=1e-6)


def test_no_holdout_publishes_empty_holdouts_and_scores_oof(tmp_path) -> None:
    """`context.holdout: 0` through the real stages and stores: zero-row holdout tables written and
    read back, no holdout metrics logged, and a leaderboard of OOF scores."""
    job = make_job(tmp_path, "binary", holdout=0)
    job.prepare()
    for family in ("linear", "lightgbm"):
        job.base(family)
    job.evaluate(["base_linear", "base_lightgbm"])
    hold = _table(job, "holdout", "base_linear")
    assert hold.empty and list(hold.columns) == ["model", "row_id", "fold", "proba_no", "proba_yes"]
    ctx = job.ctx(job.request("vote_mix", "vote_mix", upstream=["base_linear", "base_lightgbm"]))
    preds = ctx.predictions()
    assert preds.oof.shape == (2, 400, 2) and preds.holdout.shape == (2, 0, 2)
    board = _board(job)
    assert (board["scored_on"] == "oof").all()
    np.testing.assert_allclose(board["auc"], board["oof_auc"])
    assert board["auc"].between(0.7, 0.99).all()
    _use(job)
    run = mlflow.get_run(_table(job, "models", "base_linear")["mlflow_run_id"].iloc[0])
    assert "oof_auc" in run.data.metrics and not any(k.startswith("holdout_") for k in run.data.metrics)
    report = (job.home / "runs" / job.workflow_id / "report.html").read_text()
    assert "No holdout (context.holdout: 0)" in report


def test_leaderboard_and_champion(binary_job: Job) -> None:
    _use(binary_job)
    board = _board(binary_job)
    assert list(board.columns) == ["task_id", "kind", "model", "auc", "accuracy", "f1", "logloss", "oof_auc",
                                   "is_champion", "scored_on"]
    assert (board["scored_on"] == "holdout").all()
    assert board["is_champion"].sum() == 1
    champ = board.loc[board["is_champion"]].iloc[0]
    # chosen on OOF, so the holdout columns stay an unbiased estimate
    assert champ["oof_auc"] == board["oof_auc"].max()
    assert set(board["kind"]) == {"base"}
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("lab_job", "champion")
    run = client.get_run(version.run_id) if version.run_id else None
    assert run is None or run.data.tags["obsrv_model"] == champ["model"]
    report = (binary_job.home / "runs" / binary_job.workflow_id / "report.html").read_text()
    assert "<img src='data:image/png;base64," in report and champ["model"] in report


def test_champion_pyfunc_binary_output(binary_job: Job) -> None:
    _use(binary_job)
    model = mlflow.pyfunc.load_model("models:/lab_job@champion")
    X = synthetic("binary").drop(columns=["label"]).head(7)
    out = model.predict(X)
    assert list(out.columns) == ["prediction", "probability_no", "probability_yes"]
    assert set(out["prediction"]) <= {"no", "yes"}
    np.testing.assert_allclose(out[["probability_no", "probability_yes"]].sum(axis=1), 1.0)
    assert model.metadata.signature is not None


def test_multiclass_pyfunc_and_leaderboard(multiclass_job: Job) -> None:
    _use(multiclass_job)
    board = _board(multiclass_job)
    assert board["is_champion"].sum() == 1 and len(board) >= len(FAMILIES)
    model = mlflow.pyfunc.load_model("models:/lab_job@champion")
    out = model.predict(synthetic("multiclass").drop(columns=["label"]).head(5))
    assert list(out.columns) == ["prediction", "probability_0", "probability_1", "probability_2"]
    assert out["prediction"].dtype == np.int64


def test_regression_pyfunc_and_leaderboard(regression_job: Job) -> None:
    _use(regression_job)
    board = _board(regression_job)
    assert list(board.columns) == ["task_id", "kind", "model", "rmse", "mae", "r2", "oof_rmse", "is_champion",
                                   "scored_on"]
    champ = board.loc[board["is_champion"]].iloc[0]
    assert champ["oof_rmse"] == board["oof_rmse"].min()
    model = mlflow.pyfunc.load_model("models:/lab_job@champion")
    out = model.predict(synthetic("regression").drop(columns=["label"]).head(5))
    assert list(out.columns) == ["prediction"]
    report = (regression_job.home / "runs" / regression_job.workflow_id / "report.html").read_text()
    assert "Residuals" in report


class _Killed(BaseException):
    """The task process dying (not an Exception: no handler in the task may turn it into a result)."""


def test_a_task_retried_after_dying_between_its_tables_publishes_what_a_clean_run_does(
        binary_job: Job, tmp_path, monkeypatch) -> None:
    """base_lightgbm's first attempt dies after writing its oof and holdout tables but before its
    models table (the completion marker): the task is not complete, and its retry replaces the
    partial outputs with exactly what a clean run (binary_job's) published. MLflow off: the tables
    are the task's outputs that downstream tasks read (and it halves the test's time)."""
    job = make_job(tmp_path, "binary", mlflow=False)
    job.prepare()
    models = output_table("main", "lab", "training_data", "models", job.workflow_id, "base_lightgbm")
    write = LocalDeltaStore.write

    def dies_before_the_models_table(self, name, df):  # noqa: ANN001
        if name == models:
            raise _Killed
        write(self, name, df)

    monkeypatch.setattr(LocalDeltaStore, "write", dies_before_the_models_table)
    with pytest.raises(_Killed):
        job.base("lightgbm")
    monkeypatch.setattr(LocalDeltaStore, "write", write)
    request = job.request("base", "base_lightgbm", task={"family": "lightgbm"})
    assert job.store.exists(output_table("main", "lab", "training_data", "oof", job.workflow_id, "base_lightgbm"))
    assert not task_completed(request, job.store)

    job.base("lightgbm")  # the retry: a new context, as a new attempt's process gets
    assert task_completed(request, job.store)
    for kind in ("oof", "holdout"):
        pd.testing.assert_frame_equal(_table(job, kind, "base_lightgbm"), _table(binary_job, kind, "base_lightgbm"))
    # empty here (MLflow is off): the run, the logged model, its artifact location and file hash
    mlflow_columns = ["mlflow_run_id", "model_uri", "artifact_uri", "sha256"]
    retried, clean = _table(job, "models", "base_lightgbm"), _table(binary_job, "models", "base_lightgbm")
    pd.testing.assert_frame_equal(retried.drop(columns=mlflow_columns), clean.drop(columns=mlflow_columns))


def test_thresholds_come_from_oof_only(binary_scratch: Job, monkeypatch) -> None:
    """Every tuned threshold is computed on training rows' OOF predictions; the holdout labels
    cannot move them."""
    calls = []
    original = M.tune_threshold

    def spy(metric, y, pred, weights=None):
        calls.append(len(y))
        return original(metric, y, pred, weights)

    monkeypatch.setattr(M, "tune_threshold", spy)
    ctx = binary_scratch.ctx(binary_scratch.request("evaluate", "evaluate",
                                                    upstream=[f"base_{f}" for f in FAMILIES]))
    board = E.run_evaluate(ctx)
    n_train = len(ctx.prepared.y_train)
    assert calls and set(calls) == {n_train}
    # and scoring with the OOF thresholds reproduces the leaderboard
    preds = ctx.predictions([f"base_{f}" for f in FAMILIES])
    i = preds.models.index(board["model"].iloc[0])
    th = E.thresholds_from_oof(["f1"], ctx.prepared.y_train, preds.oof[i], None)
    f1 = M.score("f1", ctx.prepared.y_holdout, preds.holdout[i], problem="classification", threshold=th["f1"])
    assert board["f1"].iloc[0] == pytest.approx(f1)


def test_evaluate_includes_final_ensemble_models_only(binary_scratch: Job) -> None:
    """Non-final models of user tasks stay off the leaderboard; base models are always on it."""
    from obsrv.service_tasks.contract import ModelOutput

    job = binary_scratch
    ctx = job.ctx(job.request("vote_mix", "vote_mix", upstream=[f"base_{f}" for f in FAMILIES]))
    preds = ctx.predictions()
    avg_oof, avg_hold = preds.oof.mean(axis=0), preds.holdout.mean(axis=0)

    class Mean:
        def predict_matrix(self, X):
            return np.full((len(X), 2), 0.5)

    ctx.publish([
        ModelOutput("mix", "vote_mix", Mean(), avg_oof, avg_hold, is_final=True),
        ModelOutput("helper", "vote_mix", Mean(), avg_oof, avg_hold, is_final=False),
    ])
    ev = job.ctx(job.request("evaluate", "evaluate", upstream=[f"base_{f}" for f in FAMILIES] + ["vote_mix"]))
    board = E.run_evaluate(ev)
    assert "vote_mix/mix" in set(board["model"]) and "vote_mix/helper" not in set(board["model"])
    assert board.loc[board["model"] == "vote_mix/mix", "kind"].iloc[0] == "ensemble"


def test_publish_rejects_bad_shapes(binary_scratch: Job) -> None:
    from obsrv.service_tasks.contract import ModelOutput

    ctx = binary_scratch.ctx(binary_scratch.request("vote_mix", "vote_bad", upstream=["base_linear"]))
    n, h = len(ctx.prepared.y_train), len(ctx.prepared.y_holdout)
    with pytest.raises(ValueError, match="bad.oof has shape"):
        ctx.publish([ModelOutput("bad", "x", None, np.zeros((n, 3)), np.zeros((h, 2)))])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        ctx.publish([ModelOutput("bad", "x", None, np.full((n, 2), np.nan), np.zeros((h, 2)))])  # type: ignore[arg-type]


def test_proba_columns_are_identifier_safe() -> None:
    assert proba_columns(["no", "yes"]) == ["proba_no", "proba_yes"]
    assert proba_columns(["a b", "a-b"]) == ["proba_0", "proba_1"]
