"""Boosters early-stop on a tenth of their own training rows, then re-fit on all of them for the
rounds early stopping chose (``FamilyModel._refit_booster``), unless a time limit shaped the fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from obsrv.service_tasks import zoo
from obsrv.service_tasks.zoo.builders import _BUILD
from obsrv.service_tasks.zoo.fold_models import FamilyModel

BOOSTERS = ("lightgbm", "xgboost", "catboost")


def _data(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a b": rng.normal(size=n), "c.d": rng.normal(size=n), "E": rng.normal(size=n)})
    y = 3 * X["a b"].to_numpy() - 2 * X["c.d"].to_numpy() ** 2 + rng.normal(scale=0.5, size=n)
    return X, y


def _model(family: str, **params: object) -> FamilyModel:
    base = zoo.default_params(family, "regression")
    rounds = {"catboost": "iterations"}.get(family, "n_estimators")
    base = {**base, rounds: 2000, "learning_rate": 0.3}  # early stopping, not the round cap, ends the fit
    return FamilyModel(family, {**base, **params}, problem="regression", n_classes=0, numeric=list(_data()[0].columns),
                       categorical=[], seed=0, n_jobs=1)


def _rounds(model: FamilyModel) -> int:
    est = model.estimator_
    if model.family == "xgboost":
        return int(est.get_booster().num_boosted_rounds())
    if model.family == "lightgbm":
        return int(est.booster_.current_iteration())
    return int(est.tree_count_)


@pytest.mark.parametrize("family", BOOSTERS)
def test_an_early_stopped_booster_is_refit_on_all_rows_for_the_chosen_rounds(
    family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = _data()
    m = _model(family).fit(X, y, None)
    assert m.refit_rounds_ is not None and 10 <= m.refit_rounds_ < 2000
    assert _rounds(m) == m.refit_rounds_
    # it is the config fit on every row for those rounds, without early stopping
    rounds = {"catboost": "iterations"}.get(family, "n_estimators")
    ref = _model(family, **{rounds: m.refit_rounds_})
    frame = ref._frame(X, fit=True)
    est = _BUILD[family](ref, frame)
    if family == "xgboost":
        est.set_params(early_stopping_rounds=None)
    est.fit(frame, y)
    np.testing.assert_allclose(m.predict_matrix(X)[:, 0], est.predict(frame), rtol=1e-6)
    # and not the early-stopped model, which never saw a tenth of the rows
    monkeypatch.setattr(FamilyModel, "_refit_booster", lambda *a: None)
    kept = _model(family).fit(X, y, None)
    assert kept.refit_rounds_ is None
    assert not np.allclose(kept.predict_matrix(X), m.predict_matrix(X))


@pytest.mark.parametrize("family", BOOSTERS)
def test_the_refit_is_deterministic(family: str) -> None:
    X, y = _data()
    a, b = _model(family).fit(X, y, None), _model(family).fit(X, y, None)
    np.testing.assert_array_equal(a.predict_matrix(X), b.predict_matrix(X))


def test_a_fit_too_small_to_validate_is_not_refit() -> None:
    X, y = _data(n=40)
    m = _model("lightgbm").fit(X, y, None)
    assert m.refit_rounds_ is None


def test_a_fit_above_the_row_cap_keeps_its_early_stopped_model(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _data()
    monkeypatch.setattr("obsrv.service_tasks.zoo.fold_models.REFIT_MAX_ROWS", len(X) - 1)
    assert _model("xgboost").fit(X, y, None).refit_rounds_ is None
    monkeypatch.setattr("obsrv.service_tasks.zoo.fold_models.REFIT_MAX_ROWS", len(X))
    assert _model("xgboost").fit(X, y, None).refit_rounds_ is not None


@pytest.mark.parametrize("family", BOOSTERS)
def test_a_fit_a_time_limit_stopped_keeps_its_rounds(family: str) -> None:
    X, y = _data(n=3000)
    m = _model(family, learning_rate=0.001)
    m.time_limit_s = 0.05
    m.fit(X, y, None)
    assert m.stopped_at_ is not None or m.paced_lr_ is not None
    assert m.refit_rounds_ is None


def test_a_refit_that_would_overrun_the_limit_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The estimate is the fit's own pace: a fit that took 59 of its 60 s leaves no room for a
    re-fit; one that took 0.01 s does."""
    X, y = _data()
    original = FamilyModel._refit_booster
    for elapsed, refit in ((59.0, False), (0.01, True)):
        monkeypatch.setattr(FamilyModel, "_refit_booster",
                            lambda self, f, yy, w, _, e=elapsed: original(self, f, yy, w, e))
        m = _model("lightgbm")
        m.time_limit_s = 60.0
        m.fit(X, y, None)
        assert m.stopped_at_ is None and m.paced_lr_ is None
        assert (m.refit_rounds_ is not None) == refit
