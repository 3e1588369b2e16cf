"""`boost` starts from what the base tasks fitted: it never fits a config of the family's sequence
twice, keeps a base model when none of its new configs beats it, and publishes only what is new."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from obsrv.service_tasks import zoo
from obsrv.service_tasks.ensembles import boosting
from obsrv.service_tasks.ensembles.base import MetricLoss
from obsrv.service_tasks.ensembles.boost_task import boost_task
from obsrv.service_tasks.ensembles.boosting import BaseFit, WarmStart, boost
from obsrv.service_tasks.zoo import search

from support.ensemble_pool import binary_frame, fake_context, make_pool, make_prepared


def _data(n: int = 240) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    y = ((X.a + 0.5 * X.b + rng.normal(scale=0.8, size=n)) > 0).astype(int).to_numpy()
    return X, y, np.arange(n) % 3


def _request(X: pd.DataFrame, y: np.ndarray, folds: np.ndarray, **kw: Any) -> zoo.FitRequest:
    return zoo.FitRequest("hist_gbm", X, y, folds, problem="classification", n_classes=2, seed=5,
                          budget_seconds=600, metric="logloss", **kw)


def _recording_cross_fit(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    fitted: list[dict[str, Any]] = []
    real = search.cross_fit

    def spy(request: zoo.FitRequest, cfg: dict[str, Any], **kw: Any) -> Any:
        fitted.append(dict(cfg))
        return real(request, cfg, **kw)

    monkeypatch.setattr(search, "cross_fit", spy)
    return fitted


def test_a_search_after_another_starts_with_the_next_config_of_the_same_sequence(
        monkeypatch: pytest.MonkeyPatch) -> None:
    X, y, folds = _data()
    fitted = _recording_cross_fit(monkeypatch)
    whole = zoo.search_family(_request(X, y, folds, max_trials=4), keep=1)[0]
    first = zoo.search_family(_request(X, y, folds, max_trials=2), keep=1)[0]
    assert first.configs_drawn == 2
    fitted.clear()
    after = zoo.search_family(_request(X, y, folds, max_trials=2, skip_configs=first.configs_drawn), keep=1)[0]
    sequence = [t["params"] for t in whole.trials]
    assert fitted == sequence[2:4]  # never the default config or the first portfolio one again
    assert [t["params"] for t in first.trials] + [t["params"] for t in after.trials] == sequence
    assert after.configs_drawn == 4


def test_boost_keeps_the_base_model_when_no_new_config_beats_it_and_says_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    X, y, folds = _data()
    base = zoo.search_family(zoo.FitRequest("lightgbm", X, y, folds, problem="classification", n_classes=2,
                                            seed=5, budget_seconds=600, metric="logloss", max_trials=1), keep=1)[0]
    perfect = np.column_stack([1.0 - y, y]).astype(float) * 0.98 + 0.01  # nothing new can beat it
    warm = {"lightgbm": WarmStart([BaseFit("base_lightgbm/lightgbm_0", "base predictor", perfect,
                                           np.zeros((0, 2)), {"num_leaves": 31})], base.configs_drawn)}
    fitted = _recording_cross_fit(monkeypatch)
    logs: list[str] = []
    res = boost(X, y, folds, problem="classification", n_outputs=2, loss=MetricLoss("logloss", "classification"),
                objective="logloss", algorithms=["lightgbm"], trials=1, budget_s=600, seed=5, warm=warm,
                log=logs.append)
    assert base.params not in fitted and len(fitted) == 1  # one new config, never the base task's
    (booster,) = res.boosters
    assert booster.reused == "base_lightgbm/lightgbm_0" and booster.fit.predictor == "base predictor"
    np.testing.assert_array_equal(res.oof, perfect)  # one booster: its OOF is the ensemble's
    assert logs == [logs[0]] and logs[0].startswith("lightgbm: 1 new trial(s) after the base task's 1 config(s)")
    assert "kept base_lightgbm/lightgbm_0" in logs[0]


def test_a_better_new_config_wins_over_the_base_model() -> None:
    X, y, folds = _data()
    useless = np.full((len(y), 2), 0.5)
    warm = {"gbm": WarmStart([BaseFit("base_hist_gbm/hist_gbm_0", "base", useless, np.zeros((0, 2)), {})], 1)}
    res = boost(X, y, folds, problem="classification", n_outputs=2, loss=MetricLoss("logloss", "classification"),
                objective="logloss", algorithms=["gbm"], trials=1, budget_s=600, seed=5, warm=warm)
    (booster,) = res.boosters
    assert booster.reused is None and len(booster.fit.trials) == 1
    assert booster.fit.trials[0]["origin"] != "default"  # the default config was the base task's


@pytest.mark.parametrize("new_wins", [False, True])
def test_the_task_publishes_only_new_boosters_and_serves_the_base_model_it_kept(
        monkeypatch: pytest.MonkeyPatch, new_wins: bool) -> None:
    X, y = binary_frame()
    data = make_prepared(X, y, problem="classification")
    pool, predictors = make_pool(data, [("lightgbm", {"n_estimators": 30})], "auc")
    (name,) = pool.models
    seen: dict[str, Any] = {}

    def fake_search(request: zoo.FitRequest, keep: int = 2, log: Any = None) -> list[zoo.FamilyFit]:
        seen["skip"] = request.skip_configs
        y_ = np.asarray(request.y)
        oof = (np.column_stack([1.0 - y_, y_]) * 0.98 + 0.01) if new_wins else np.full((len(y_), 2), 0.5)
        hold = np.full((len(request.X_holdout), 2), 0.5)
        return [zoo.FamilyFit("new bag", oof, {"new": 1}, 0.0, hold, trials=[{"seconds": 0.1, "params": {}}])]

    monkeypatch.setattr(boosting.zoo, "search_family", fake_search)
    ctx = fake_context(data, pool, predictors, {"task": "boost", "boost": {"algorithms": ["lightgbm"], "trials": 1}},
                       metric="auc")
    ctx.search_trials = {name: 7}
    boost_task(ctx)
    assert seen["skip"] == 7  # the base task's search went through 7 configs
    published = {o.name: o for o in ctx.published}
    assert sorted(published) == (["boost", "lightgbm"] if new_wins else ["boost"])
    members = published["boost"].predictor.members
    assert members == (["new bag"] if new_wins else [predictors[name]])
    assert published["boost"].params["reused"] == ({} if new_wins else {"lightgbm": name})
