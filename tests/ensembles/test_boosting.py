import pickle

import numpy as np
import pandas as pd
import pytest
from obsrv.service_tasks.ensembles import boosting
from obsrv.service_tasks.ensembles.base import MetricLoss
from obsrv.service_tasks.ensembles.boosting import boost, resolve_device

ALL = ["gbm", "xgboost", "lightgbm", "catboost"]


def test_cpu_placement_wins_even_with_cuda():
    plan = resolve_device(ALL, {"OBSRV_COMPUTE": "cpu"}, cuda_count=lambda: 1, lightgbm_gpu=lambda: True)
    assert not plan.gpu and set(plan.devices.values()) == {"cpu"}
    assert "CPU" in plan.notes[0]


def test_unset_placement_follows_cuda_as_on_databricks():
    plan = resolve_device(ALL, {}, cuda_count=lambda: 1, lightgbm_gpu=lambda: False)
    assert plan.gpu and plan.devices["xgboost"] == "cuda"
    plan = resolve_device(ALL, {}, cuda_count=lambda: 0, lightgbm_gpu=lambda: False)
    assert not plan.gpu and plan.notes == ["boost: no CUDA device found; running on CPU"]


def test_gpu_requested_without_cuda_falls_back_to_cpu_and_says_so():
    plan = resolve_device(ALL, {"OBSRV_COMPUTE": "gpu"}, cuda_count=lambda: 0, lightgbm_gpu=lambda: True)
    assert not plan.gpu and set(plan.devices.values()) == {"cpu"}
    assert plan.notes == ["boost: OBSRV_COMPUTE=gpu but no CUDA device found; fell back to CPU"]


@pytest.mark.parametrize("lgb_cuda", [True, False])
def test_gpu_params_per_library(lgb_cuda):
    plan = resolve_device(ALL, {"OBSRV_COMPUTE": "GPU"}, cuda_count=lambda: 1, lightgbm_gpu=lambda: lgb_cuda)
    assert plan.gpu
    assert plan.devices == {"gbm": "cpu", "xgboost": "cuda", "catboost": "cuda",
                            "lightgbm": "cuda" if lgb_cuda else "cpu"}
    assert any("hist_gbm: no GPU mode" in n for n in plan.notes)
    if not lgb_cuda:
        assert "lightgbm: this build has no GPU support; fell back to CPU" in plan.notes


def test_default_probes_on_this_machine(monkeypatch):
    monkeypatch.setenv("OBSRV_COMPUTE", "gpu")
    monkeypatch.setattr(boosting.zoo.devices, "cuda_device_count", lambda: 0)
    plan = resolve_device(["xgboost"])
    assert not plan.gpu
    assert plan.notes == ["boost: OBSRV_COMPUTE=gpu but no CUDA device found; fell back to CPU"]


def test_boost_places_libraries_with_the_zoo_rule(monkeypatch):
    """One placement rule for base tasks and boost: ``zoo.resolve_devices`` (no boost-side copy)."""
    calls = []

    def fake(families, env=None, **probes):
        calls.append(list(families))
        return {f: ("cuda" if f == "catboost" else "cpu") for f in families}, ["rule says so", "catboost: GPU"]

    monkeypatch.setattr(boosting.zoo, "resolve_devices", fake)
    plan = resolve_device(["gbm", "catboost"], {})
    assert calls == [["hist_gbm", "catboost"]]
    assert plan.devices == {"gbm": "cpu", "catboost": "cuda"} and plan.gpu
    assert plan.notes == ["boost: rule says so", "catboost: GPU"]
    assert not hasattr(boosting, "cuda_device_count") and not hasattr(boosting, "_lightgbm_gpu_ok")


def test_device_plan_reaches_the_zoo(monkeypatch):
    """The plan's device per library is what the zoo is asked to train on."""
    seen = {}

    def fake_fit_family(request):
        seen[request.family] = request.device
        y = request.y
        oof = np.column_stack([1 - y * 0.6 - 0.2, y * 0.6 + 0.2])  # no training: only the device matters
        return boosting.zoo.FamilyFit(None, oof, {}, 0.0, None, trials=[{"seconds": 0.0}], device=request.device)

    monkeypatch.setattr(boosting.zoo, "fit_family", fake_fit_family)
    X, y, folds = _data(120)
    plan = resolve_device(["gbm", "xgboost"], {"OBSRV_COMPUTE": "gpu"}, cuda_count=lambda: 1)
    boost(X, y, folds, problem="classification", n_outputs=2, loss=MetricLoss("auc", "classification"),
          objective="auc", algorithms=["gbm", "xgboost"], trials=1, budget_s=0, device=plan)
    assert seen == {"hist_gbm": "cpu", "xgboost": "cuda"}


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=list("abcd"))
    X["s"] = rng.choice(["u", "v"], size=n)
    y = ((X.a + X.b * (X.s == "u") + rng.normal(scale=0.7, size=n)) > 0).astype(int).to_numpy()
    return X, y, np.arange(n) % 4


def test_boost_combines_tuned_boosters_with_honest_oof():
    X, y, folds = _data()
    logs = []
    res = boost(X, y, folds, problem="classification", n_outputs=2, loss=MetricLoss("auc", "classification"),
                objective="auc", algorithms=["gbm", "lightgbm"], trials=1, budget_s=600, seed=1,
                X_holdout=X.iloc[:30], log=logs.append)
    assert res.oof.shape == (400, 2) and res.holdout.shape == (30, 2)
    assert np.isfinite(res.oof).all()
    assert sum(res.weights.values()) == pytest.approx(1.0)
    assert [b.algorithm for b in res.boosters] == ["gbm", "lightgbm"]
    assert any(line.startswith("lightgbm: 1 trial(s)") for line in logs)
    # the nested GES OOF differs from the GES fit on all rows applied in-sample (it is honest)
    P = np.stack([b.fit.oof for b in res.boosters])
    if (res.selection.weights_ > 0).sum() > 1:
        assert not np.allclose(res.oof, res.selection.predict(P))
    pred = pickle.loads(pickle.dumps(res.boosters[1].fit.predictor))
    np.testing.assert_allclose(pred.predict_matrix(X.iloc[:30]), res.boosters[1].fit.holdout)


@pytest.mark.slow
def test_boost_is_deterministic_with_a_fixed_seed():
    X, y, folds = _data(300)
    kw = dict(problem="classification", n_outputs=2, loss=MetricLoss("auc", "classification"), objective="auc",
              algorithms=["gbm", "lightgbm"], trials=2, budget_s=600, seed=1)
    a, b = boost(X, y, folds, **kw), boost(X, y, folds, **kw)
    np.testing.assert_allclose(a.oof, b.oof)
    assert a.weights == b.weights


def test_zero_budget_runs_the_default_config_only():
    X, y, folds = _data(150)
    yr = X.a.to_numpy() + 0.1
    res = boost(X, yr, folds, problem="regression", n_outputs=1, loss=MetricLoss("rmse", "regression"),
                objective="rmse", algorithms=["gbm"], trials=10, budget_s=0.0)
    assert len(res.boosters[0].fit.trials) == 1
    assert res.oof.shape == (150, 1) and res.weights == {"gbm": 1.0}
