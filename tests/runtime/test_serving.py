"""Serving contracts end to end: source column names the boosting libraries reject, and the
champion's OOF-tuned threshold recorded on its registered version."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from obsrv.service_tasks import tracking
from obsrv.service_tasks.io import output_table

from support.runtime_helpers import Job, make_job, synthetic

pytestmark = pytest.mark.slow  # trains and registers models, then serves them through MLflow

FAMILIES = ["xgboost", "lightgbm"]
RENAMES = {"x0": "x[0]", "x1": "x<1>", "x2": "ratio: a/b", "color": '{"color"}'}


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Job:
    home = tmp_path_factory.mktemp("names")
    df = synthetic("binary").rename(columns=RENAMES)
    job = make_job(home, "binary", df=df, metric={"classification": ["accuracy", "auc"]})
    job.prepare()
    for family in FAMILIES:
        job.base(family)
    job.evaluate([f"base_{f}" for f in FAMILIES])
    return job


def test_models_train_and_serve_with_non_identifier_column_names(job: Job) -> None:
    tracking.configure(tracking.default_experiment("lab_job"), job.home)
    X = synthetic("binary").drop(columns=["label"]).rename(columns=RENAMES).head(9)
    for family in FAMILIES:
        models = job.store.read(output_table("main", "lab", "training_data", "models", job.workflow_id,
                                             f"base_{family}"))
        model = mlflow.pyfunc.load_model(models["model_uri"].iloc[0])
        assert set(model.metadata.signature.inputs.input_names()) == set(X.columns)
        out = model.predict(X)
        assert list(out.columns) == ["prediction", "probability_no", "probability_yes"]
        np.testing.assert_allclose(out[["probability_no", "probability_yes"]].sum(axis=1), 1.0)
    champion = mlflow.pyfunc.load_model("models:/lab_job@champion")
    assert len(champion.predict(X)) == 9


def test_champion_version_records_the_oof_threshold_of_the_primary_metric(job: Job) -> None:
    tracking.configure(tracking.default_experiment("lab_job"), job.home)
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("lab_job", "champion")
    thresholds = json.loads((job.home / "runs" / job.workflow_id / "leaderboard.json").read_text())
    board = pd.DataFrame(thresholds)
    champion = board.loc[board["is_champion"], "model"].iloc[0]
    evaluate_run = client.search_runs(
        [mlflow.get_experiment_by_name(tracking.default_experiment("lab_job")).experiment_id],
        filter_string=f"tags.obsrv_kind = 'evaluate' and tags.obsrv_workflow_id = '{job.workflow_id}'",
    )[0]
    tuned = json.loads(mlflow.artifacts.load_text(f"{evaluate_run.info.artifact_uri}/thresholds.json"))
    expected = tuned[champion]["accuracy"]
    assert float(version.tags["obsrv_threshold_accuracy"]) == pytest.approx(expected, rel=1e-5)
    assert "argmax" in version.tags["obsrv_threshold_note"]
    assert float(evaluate_run.data.params["champion_threshold_accuracy"]) == pytest.approx(expected, rel=1e-5)
