"""MLflow glue: local locations, the user's override, and self-contained pickled predictors."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd

from obsrv.service_tasks import tracking, zoo


def test_local_store_locations_follow_obsrv_home(tmp_path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    tracking.configure("w1", a)
    assert mlflow.get_tracking_uri() == f"sqlite:///{a / 'mlflow.db'}"
    assert mlflow.get_experiment_by_name("ensemble_w1").artifact_location == (a / "mlartifacts").as_uri()
    tracking.configure("w2", b)  # MLflow exported a's URI to the environment; b must still win
    assert mlflow.get_tracking_uri() == f"sqlite:///{b / 'mlflow.db'}"


def test_user_tracking_uri_wins(tmp_path, monkeypatch) -> None:
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracking.configure("w3", tmp_path / "home")
    assert mlflow.get_tracking_uri() == uri


def test_experiment_name_on_databricks(monkeypatch) -> None:
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    assert tracking.experiment_name("42") == "/Experiments/ensemble_42"
    assert tracking.tracking_uri() == "databricks"


def test_output_frame_shapes() -> None:
    p = np.array([[0.2, 0.8], [0.9, 0.1]])
    out = tracking.output_frame(p, "classification", [0, 1])
    assert list(out.columns) == ["prediction", "probability_0", "probability_1"]
    assert out["prediction"].tolist() == [1, 0]
    reg = tracking.output_frame(np.array([[1.5], [2.0]]), "regression", [])
    assert list(reg.columns) == ["prediction"]


def test_pickled_predictor_loads_without_obsrv(tmp_path) -> None:
    """Served models must not need the obsrv wheel: its task code is pickled by value."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=60), "c": rng.choice(["x", "y"], 60)})
    y = (X["a"] > 0).astype(int).to_numpy()
    fit = zoo.fit_family("lightgbm", X, y, np.arange(60) % 3, problem="classification", n_classes=2,
                         budget_seconds=0, seed=0, params={"n_estimators": 10})
    path = tmp_path / "predictor.pkl"
    tracking.dump_predictor(fit.predictor, path)
    X.to_parquet(tmp_path / "X.parquet")
    code = (
        "import sys; sys.modules['obsrv'] = None\n"
        "import cloudpickle, gzip, pandas as pd\n"
        f"p = cloudpickle.load(gzip.open({str(path)!r}, 'rb'))\n"
        f"print(p.predict_matrix(pd.read_parquet({str(tmp_path / 'X.parquet')!r})).shape)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(60, 2)"
