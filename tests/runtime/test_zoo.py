"""The base-model zoo: every family on the shared folds, honest OOF predictions, bagged holdout."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from obsrv.compiler.spec import MODEL_FAMILIES
from obsrv.service_tasks import metrics as M
from obsrv.service_tasks import zoo
from obsrv.service_tasks.zoo import builders
from obsrv.service_tasks.zoo import devices as zoo_devices

from support.runtime_helpers import synthetic

pytestmark = pytest.mark.slow  # cross-fits every family on every problem

QUICK_PARAMS = {
    "linear": None,
    "knn": None,
    "random_forest": {"n_estimators": 30, "max_features": "sqrt", "min_samples_leaf": 2},
    "extra_trees": {"n_estimators": 30, "max_features": "sqrt", "min_samples_leaf": 1},
    "hist_gbm": {"max_iter": 40},
    "xgboost": {"n_estimators": 40, "learning_rate": 0.2, "max_depth": 4},
    "lightgbm": {"n_estimators": 40, "learning_rate": 0.2, "num_leaves": 15},
    "catboost": {"iterations": 40, "learning_rate": 0.2, "depth": 4},
}


def _data(problem: str, n: int = 300, seed: int = 0):
    df = synthetic(problem, n=n, seed=seed)
    y_raw = df.pop("label")
    if problem == "binary":
        y = (y_raw == "yes").to_numpy().astype(np.int64)
    elif problem == "multiclass":
        y = y_raw.to_numpy().astype(np.int64)
    else:
        y = y_raw.to_numpy(dtype=np.float64)
    folds = np.arange(n) % 3
    return df, y, folds


def _params(family: str, problem: str):
    p = QUICK_PARAMS[family]
    if p is None:
        return None
    if family in ("random_forest", "extra_trees") and problem == "regression":
        p = {**p, "max_features": 0.5}
    return p


@pytest.mark.parametrize("family", MODEL_FAMILIES)
@pytest.mark.parametrize("problem", ["binary", "multiclass", "regression"])
def test_every_family_every_problem(family: str, problem: str) -> None:
    X, y, folds = _data(problem)
    k = {"binary": 2, "multiclass": 3, "regression": 1}[problem]
    kind = "regression" if problem == "regression" else "classification"
    X_hold = X.iloc[:50].reset_index(drop=True)
    fit = zoo.fit_family(zoo.FitRequest(
        family, X, y, folds, problem=kind, n_classes=k, budget_seconds=0, seed=0,
        params=_params(family, problem), X_holdout=X_hold, n_jobs=1, device="cpu",
    ))
    assert fit.oof.shape == (len(X), k) and np.isfinite(fit.oof).all()
    assert fit.holdout is not None and fit.holdout.shape == (50, k)
    if kind == "classification":
        np.testing.assert_allclose(fit.oof.sum(axis=1), 1.0, atol=1e-6)
        assert M.score("auc", y, fit.oof, problem=kind) > 0.7
    else:
        assert M.score("r2", y, fit.oof, problem=kind) > 0.3
    # the predictor is the bag of fold models: it reproduces the holdout predictions after pickling
    restored = pickle.loads(pickle.dumps(fit.predictor))
    np.testing.assert_allclose(restored.predict_matrix(X_hold), fit.holdout, rtol=1e-6, atol=1e-9)
    assert len(fit.predictor.models_) == 3


def test_oof_rows_never_seen_by_their_model(monkeypatch) -> None:
    """Spy on every fold model: the rows it predicts for OOF are disjoint from its training rows."""
    seen: dict[int, set] = {}
    predicted: dict[int, set] = {}
    orig_fit, orig_predict = zoo.FamilyModel.fit, zoo.FamilyModel.predict_matrix

    def fit(self, X, y, w):
        seen[id(self)] = set(X.index)
        return orig_fit(self, X, y, w)

    def predict(self, X):
        predicted.setdefault(id(self), set()).update(X.index)
        return orig_predict(self, X)

    monkeypatch.setattr(zoo.FamilyModel, "fit", fit)
    monkeypatch.setattr(zoo.FamilyModel, "predict_matrix", predict)
    X, y, folds = _data("binary")
    zoo.fit_family(zoo.FitRequest("linear", X, y, folds, problem="classification", n_classes=2, budget_seconds=0, seed=0))
    assert len(seen) == 3
    for key, rows in predicted.items():
        assert not rows & seen[key]
    assert set().union(*predicted.values()) == set(X.index)


def test_memorising_model_gets_chance_oof() -> None:
    """Canary: 1-NN memorises its training rows perfectly; on OOF it must be at chance level."""
    rng = np.random.default_rng(3)
    n = 400
    X = pd.DataFrame({"key": rng.permutation(n).astype(float), "k2": rng.normal(size=n)})
    y = rng.integers(0, 2, n)
    folds = np.arange(n) % 4
    fit = zoo.fit_family(zoo.FitRequest("knn", X, y, folds, problem="classification", n_classes=2, budget_seconds=0, seed=0,
                         params={"n_neighbors": 1, "weights": "uniform"}))
    in_sample = fit.predictor.models_[0].predict_matrix(X.loc[folds != 0])
    assert M.score("accuracy", y[folds != 0], in_sample, problem="classification") == 1.0
    assert abs(M.score("accuracy", y, fit.oof, problem="classification") - 0.5) < 0.1


@pytest.mark.parametrize("family", ["lightgbm", "random_forest", "linear"])
def test_noise_target_oof_auc_near_half(family: str) -> None:
    rng = np.random.default_rng(11)
    n = 600
    X = pd.DataFrame(rng.normal(size=(n, 8)), columns=[f"f{i}" for i in range(8)])
    y = rng.integers(0, 2, n)
    fit = zoo.fit_family(zoo.FitRequest(family, X, y, np.arange(n) % 5, problem="classification", n_classes=2,
                         budget_seconds=0, seed=0, params=_params(family, "binary"), n_jobs=1))
    assert abs(M.score("auc", y, fit.oof, problem="classification") - 0.5) < 0.07


def test_fit_family_is_deterministic() -> None:
    X, y, folds = _data("binary")
    a = zoo.fit_family(zoo.FitRequest("lightgbm", X, y, folds, problem="classification", n_classes=2, budget_seconds=0, seed=5,
                       params=_params("lightgbm", "binary")))
    b = zoo.fit_family(zoo.FitRequest("lightgbm", X, y, folds, problem="classification", n_classes=2, budget_seconds=0, seed=5,
                       params=_params("lightgbm", "binary")))
    np.testing.assert_array_equal(a.oof, b.oof)


def test_search_respects_max_trials_and_keeps_default_first() -> None:
    X, y, folds = _data("binary")
    fits = zoo.search_family(zoo.FitRequest("linear", X, y, folds, problem="classification", n_classes=2,
                                            budget_seconds=60, seed=0, max_trials=4), keep=2)
    trials = fits[0].trials
    assert len(trials) == 4 and trials[0]["params"] == zoo.default_params("linear", "classification")
    assert len(fits) == 2
    losses = [M.loss("logloss", y, f.oof, problem="classification") for f in fits]
    assert losses[0] <= losses[1]
    assert min(t["oof_logloss"] for t in trials) == pytest.approx(losses[0])


def test_zero_budget_trains_only_the_default() -> None:
    X, y, folds = _data("binary")
    fits = zoo.search_family(zoo.FitRequest("knn", X, y, folds, problem="classification", n_classes=2, budget_seconds=0, seed=0))
    assert len(fits) == 1 and len(fits[0].trials) == 1


def test_subset_with_a_missing_class_and_single_class_fold() -> None:
    """Routes train on subsets: a fold may miss a class, a tiny one may see a single class."""
    X, y, folds = _data("multiclass", n=120)
    keep = (y != 2) | (np.arange(len(y)) < 3)  # class 2 only in three rows
    fit = zoo.fit_family(zoo.FitRequest("xgboost", X.loc[keep], y[keep], folds[keep], problem="classification", n_classes=3,
                         budget_seconds=0, seed=0, params=_params("xgboost", "multiclass")))
    assert fit.oof.shape == (keep.sum(), 3) and np.isfinite(fit.oof).all()
    y1 = np.zeros(30, dtype=int)
    y1[:2] = 1
    fit = zoo.fit_family(zoo.FitRequest("linear", X.iloc[:30], y1, np.array([0, 1] + [0] * 14 + [1] * 14), problem="classification",
                         n_classes=2, budget_seconds=0, seed=0))
    assert np.isfinite(fit.oof).all()


def test_hist_gbm_with_a_single_row_class_trains_without_early_stopping() -> None:
    """A route of 100+ rows where one class has a single row: sklearn's stratified early-stopping
    split refuses it, so hist_gbm must turn early stopping off, not fail the task (hpc_data,
    route_feature, in the quality benchmark)."""
    X, y, _ = _data("multiclass", n=150)
    y = np.where(y == 2, 0, y)
    y[7] = 2  # class 2: one row
    numeric, categorical = zoo._split_columns(X, None)

    def fit(labels: np.ndarray) -> zoo.FamilyModel:
        return zoo.FamilyModel("hist_gbm", {"max_iter": 30}, problem="classification", n_classes=3, numeric=numeric,
                               categorical=categorical, seed=0, n_jobs=1).fit(X, labels, None)

    model = fit(y)
    assert model.estimator_.get_params()["est__early_stopping"] is False
    proba = model.predict_matrix(X)
    assert proba.shape == (150, 3) and np.isfinite(proba).all()
    y[8] = 2  # with every class on two or more rows, early stopping stays on
    assert fit(y).estimator_.get_params()["est__early_stopping"] is True


@pytest.mark.parametrize(("counts", "ok"), [([50, 50], True), ([99, 1], False), ([2] * 6, False), ([20] * 6, True)])
def test_stratified_holdout_possible(counts: list[int], ok: bool) -> None:
    y = np.repeat(np.arange(len(counts)), counts)
    assert builders._stratified_holdout_possible(y, "classification", 0.1) is ok
    assert builders._stratified_holdout_possible(y.astype(float), "regression", 0.1) is True


def test_gpu_only_when_placed_on_gpu_and_cuda_is_present(monkeypatch) -> None:
    monkeypatch.setattr(zoo_devices, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(zoo_devices, "lightgbm_gpu_supported", lambda: True)
    monkeypatch.setenv("OBSRV_COMPUTE", "gpu")
    assert zoo.default_device("xgboost") == "cuda" and zoo.default_device("linear") == "cpu"
    monkeypatch.delenv("OBSRV_COMPUTE")
    assert zoo.default_device("catboost") == "cuda"  # Databricks GPU task: CUDA decides
    monkeypatch.setenv("OBSRV_COMPUTE", "cpu")
    assert zoo.default_device("xgboost") == "cpu"
    # asked for GPU on a machine without CUDA: falls back to the CPU instead of pretending
    monkeypatch.setattr(zoo_devices, "cuda_device_count", lambda: 0)
    monkeypatch.setenv("OBSRV_COMPUTE", "gpu")
    assert zoo.default_device("xgboost") == "cpu"


def test_lightgbm_goes_to_gpu_only_when_its_build_supports_it(monkeypatch) -> None:
    """One placement rule for base tasks and boost: CUDA alone is not enough for lightgbm."""
    monkeypatch.setattr(zoo_devices, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(zoo_devices, "lightgbm_gpu_supported", lambda: False)
    monkeypatch.setenv("OBSRV_COMPUTE", "gpu")
    assert zoo.default_device("lightgbm") == "cpu"
    devices, notes = zoo.resolve_devices(["hist_gbm", "xgboost", "lightgbm", "catboost"])
    assert devices == {"hist_gbm": "cpu", "xgboost": "cuda", "lightgbm": "cpu", "catboost": "cuda"}
    assert "lightgbm: this build has no GPU support; fell back to CPU" in notes
    devices, _ = zoo.resolve_devices(["lightgbm"], {}, cuda_count=lambda: 1, lightgbm_gpu=lambda: True)
    assert devices == {"lightgbm": "cuda"}


def test_resolve_devices_rules_and_notes() -> None:
    all4 = ["hist_gbm", "xgboost", "lightgbm", "catboost"]
    devices, notes = zoo.resolve_devices(all4, {"OBSRV_COMPUTE": "cpu"}, cuda_count=lambda: 1,
                                         lightgbm_gpu=lambda: True)
    assert set(devices.values()) == {"cpu"} and notes == ["running on CPU (placed on CPU compute)"]
    devices, notes = zoo.resolve_devices(all4, {"OBSRV_COMPUTE": "gpu"}, cuda_count=lambda: 0)
    assert set(devices.values()) == {"cpu"}
    assert notes == ["OBSRV_COMPUTE=gpu but no CUDA device found; fell back to CPU"]
    devices, notes = zoo.resolve_devices(all4, {}, cuda_count=lambda: 0)
    assert notes == ["no CUDA device found; running on CPU"]

    def never() -> int:
        raise AssertionError("families without a GPU mode must not probe for CUDA")

    devices, _ = zoo.resolve_devices(["linear", "knn"], {}, cuda_count=never)
    assert devices == {"linear": "cpu", "knn": "cpu"}


def test_lightgbm_gpu_probe_runs_once_and_needs_an_opencl_gpu(monkeypatch) -> None:
    import lightgbm

    calls = []
    real = lightgbm.LGBMRegressor

    class Spy(real):  # type: ignore[misc,valid-type]
        def fit(self, *a, **kw):
            calls.append((self.get_params().get("device_type"), self.get_params().get("gpu_platform_id")))
            return super().fit(*a, **kw)

    monkeypatch.setattr(lightgbm, "LGBMRegressor", Spy)
    zoo_devices._PROBED.clear()
    try:
        # only a CPU OpenCL driver (pocl): lightgbm's "gpu" would run on the CPU, 11x slower
        monkeypatch.setattr(zoo_devices, "opencl_gpu_platform", lambda: None)
        assert zoo.lightgbm_gpu_supported() is False and calls == []
        zoo_devices._PROBED.clear()
        monkeypatch.setattr(zoo_devices, "opencl_gpu_platform", lambda: 1)
        first = zoo.lightgbm_gpu_supported()
        assert zoo.lightgbm_gpu_supported() == first
        assert calls == [("gpu", 1)]  # probed once, on the GPU's platform
    finally:
        zoo_devices._PROBED.clear()


def test_unknown_family() -> None:
    X, y, folds = _data("binary")
    with pytest.raises(ValueError, match="unknown model family 'svm'"):
        zoo.fit_family(zoo.FitRequest("svm", X, y, folds, problem="classification", n_classes=2, budget_seconds=0, seed=0))


@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_nullable_and_bool_columns(family: str) -> None:
    """What a Delta round trip hands the zoo: nullable ints/bools, plain bools, str with NA."""
    n = 60
    X = pd.DataFrame({
        "a": pd.array([1, None, 3] * 20, dtype="Int64"),
        "b": pd.array([True, None, False] * 20, dtype="boolean"),
        "c": np.arange(n) % 2 == 0,
        "d": pd.Series(["x", None, "y"] * 20, dtype="str"),
    })
    y = (np.arange(n) // 3) % 2
    fit = zoo.fit_family(zoo.FitRequest(family, X, y, np.arange(n) % 3, problem="classification", n_classes=2,
                         budget_seconds=0, seed=0, params=_params(family, "binary")))
    assert np.isfinite(fit.oof).all()


def test_a_column_missing_in_every_training_row_does_not_break_any_family() -> None:
    # A route or fold can see a column with no values at all; hist_gbm's binning used to crash.
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"a": rng.normal(size=120), "empty": np.nan, "b": rng.normal(size=120)})
    y = (X["a"] + 0.3 * rng.normal(size=120) > 0).astype(int).to_numpy()
    folds = np.arange(120) % 3
    for family in zoo.FAMILIES:
        fit = zoo.fit_family(zoo.FitRequest(family, X, y, folds, problem="classification", n_classes=2, budget_seconds=0, seed=0))
        assert np.isfinite(fit.oof).all(), family
        with_values = X.assign(empty=1.0)  # serving rows that do carry the column still predict
        assert np.isfinite(fit.predictor.predict_matrix(with_values)).all(), family
