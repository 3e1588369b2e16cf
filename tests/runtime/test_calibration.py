"""Temperature scaling (service_tasks/calibration.py, docs/calibration.md): the fit, the rule, and the
runtime hook that scales every published model when the rule says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from obsrv.service_tasks import calibration as C
from obsrv.service_tasks.contract import ModelOutput

from support import runtime_helpers


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _calibrated_sample(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits z and labels drawn from softmax(z): softmax(z) is calibrated by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=2.0, size=(n, k))
    p = _softmax(z)
    y = (rng.uniform(size=(n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    return z, y.astype(np.int64)


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("true_t", [0.5, 2.5])
def test_fit_recovers_a_known_temperature(k: int, true_t: float) -> None:
    z, y = _calibrated_sample(20000, k, seed=k)
    distorted = _softmax(z / (1.0 / true_t))  # softmax(z * T): T times too sharp (or too flat)
    t = C.fit_temperature(distorted, y)
    assert t == pytest.approx(true_t, rel=0.05)
    assert C._nll(distorted, y, None, t) < C._nll(distorted, y, None, 1.0)


def test_calibrated_probabilities_keep_t_near_one() -> None:
    z, y = _calibrated_sample(20000, 3, seed=5)
    assert C.fit_temperature(_softmax(z), y) == pytest.approx(1.0, abs=0.05)


def test_t_of_one_is_the_identity_bit_for_bit() -> None:
    z, _ = _calibrated_sample(100, 3, seed=1)
    p = _softmax(z)
    assert C.apply_temperature(p, 1.0) is p


def test_scaling_keeps_the_argmax_and_sums_to_one() -> None:
    z, _ = _calibrated_sample(2000, 5, seed=2)
    p = _softmax(z)
    for t in (0.3, 1.7, 12.0):
        q = C.apply_temperature(p, t)
        np.testing.assert_array_equal(q.argmax(axis=1), p.argmax(axis=1))
        np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-12)


def test_the_rule_is_autogluons() -> None:
    # AutoGluon predictor.py calibrate="auto": proba metric, binary >= 3000, multiclass >= 500 rows
    assert C.should_calibrate("classification", "logloss", 3000, 2)
    assert not C.should_calibrate("classification", "logloss", 2999, 2)
    assert C.should_calibrate("classification", "logloss", 500, 4)
    assert not C.should_calibrate("classification", "logloss", 499, 4)
    for metric in ("auc", "accuracy", "f1", "precision", "recall"):
        assert not C.should_calibrate("classification", metric, 100000, 3)
    assert not C.should_calibrate("regression", "rmse", 100000, 1)


def test_a_perfect_model_is_left_alone() -> None:
    """Nothing to gain at T = 1 (one-hot right answers): the output object comes back unchanged."""
    y = np.tile(np.arange(3), 200)
    oof = np.eye(3)[y]
    o = ModelOutput("m", "linear", predictor=_Fixed(oof), oof=oof, holdout=oof[:10])
    assert C.calibrate_output(o, y, np.arange(len(y)) % 3) is o


class _Fixed:
    def __init__(self, out: np.ndarray) -> None:
        self.out = out

    def predict_matrix(self, X: pd.DataFrame) -> np.ndarray:
        return self.out[: len(X)]


def test_the_switch_is_off_by_default_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(C.ENV_SWITCH, raising=False)
    assert not C.enabled()
    monkeypatch.setenv(C.ENV_SWITCH, "auto")
    assert C.enabled()
    monkeypatch.setenv(C.ENV_SWITCH, "yes")
    with pytest.raises(Exception, match="OBSRV_CALIBRATE='yes' is not understood"):
        C.enabled()


def test_runtime_publish_hook_scales_only_under_the_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RuntimeContext._calibrated on a real prepared table: with logloss and >= 500 training rows the
    OOF is nested per shared fold, the holdout and the served predictor use the all-rows T; with auc
    the same outputs come back as the very same objects."""
    job = runtime_helpers.make_job(tmp_path, "multiclass", df=runtime_helpers.synthetic("multiclass", n=900),
                                   mlflow=False, metric={"classification": ["logloss", "accuracy"]}, holdout=0.2)
    job.prepare()
    ctx = job.ctx(job.request("base", "base_linear", task={"family": "linear"}))
    prep = ctx.prepared
    assert len(prep.y_train) >= C.MIN_ROWS_MULTICLASS
    rng = np.random.default_rng(0)
    onehot = np.eye(prep.n_outputs)
    # an overconfident model: 70 % right, always 0.97 sure
    right = rng.uniform(size=len(prep.y_train)) < 0.7
    guess = np.where(right, prep.y_train, (prep.y_train + 1) % prep.n_outputs)
    oof = 0.97 * onehot[guess] + 0.03 / prep.n_outputs
    hold = 0.97 * onehot[rng.integers(0, prep.n_outputs, len(prep.y_holdout))] + 0.03 / prep.n_outputs
    o = ModelOutput("m", "linear", predictor=_Fixed(hold), oof=oof, holdout=hold)
    monkeypatch.delenv(C.ENV_SWITCH, raising=False)
    assert ctx._calibrated([o])[0] is o  # off by default
    monkeypatch.setenv(C.ENV_SWITCH, "auto")
    (out,) = ctx._calibrated([o])
    y = np.asarray(prep.y_train, dtype=np.int64)
    t_all = C.fit_temperature(oof, y)
    assert t_all > 1.5 and out.metrics["temperature"] == t_all  # flattened, as overconfidence needs
    for f, t in C.nested_temperatures(oof, y, prep.folds).items():
        rows = prep.folds == f
        np.testing.assert_array_equal(out.oof[rows], C.apply_temperature(oof[rows], t))
    np.testing.assert_array_equal(out.holdout, C.apply_temperature(hold, t_all))
    np.testing.assert_array_equal(out.predictor.predict_matrix(prep.X_holdout), out.holdout)
    np.testing.assert_array_equal(out.oof.argmax(axis=1), oof.argmax(axis=1))

    auc_job = runtime_helpers.Job(tmp_path, {**job.context, "metric": {"classification": ["auc", "logloss"]}},
                                  mlflow=False)
    auc_ctx = auc_job.ctx(auc_job.request("base", "base_linear", task={"family": "linear"}))
    (same,) = auc_ctx._calibrated([o])
    assert same is o


def test_unscaled_reaches_the_fitted_model_for_stack_blend() -> None:
    inner = _Fixed(np.eye(2))
    wrapped = C.TemperatureScaledPredictor(inner, 2.0)
    assert C.unscaled(wrapped) is inner and C.unscaled(inner) is inner


@pytest.mark.slow
def test_a_calibrated_base_model_serves_its_scaled_probabilities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end through MLflow: a logloss workflow with the switch on publishes a scaled base model,
    and the logged model (what the pyfunc's probability_<class> columns come from) predicts the
    published, scaled holdout."""
    monkeypatch.setenv(C.ENV_SWITCH, "auto")
    monkeypatch.setenv("OBSRV_COMPUTE", "cpu")
    job = runtime_helpers.make_job(tmp_path, "multiclass", df=runtime_helpers.synthetic("multiclass", n=900),
                                   metric={"classification": ["logloss", "accuracy"]}, holdout=0.2)
    job.prepare()
    ctx = job.base("random_forest")
    name = "base_random_forest/random_forest_0"
    hold = ctx.predictions(["base_random_forest"]).holdout[0]
    served = ctx.predictors([name])[name].predict_matrix(ctx.prepared.X_holdout)
    np.testing.assert_allclose(served, hold, atol=1e-12)
    inner = C.unscaled(ctx.predictors([name])[name].load())  # the fitted bag under the temperature
    assert not np.allclose(inner.predict_matrix(ctx.prepared.X_holdout), hold)
