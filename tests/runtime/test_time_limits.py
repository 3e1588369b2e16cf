"""Time-bound fits: boosters, hist_gbm and forests stop at their share of the budget and keep what they have."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest

from obsrv.service_tasks.zoo import time_limits
from obsrv.service_tasks import metrics as M
from obsrv.service_tasks import zoo
from obsrv.service_tasks.zoo import search

from support.runtime_helpers import synthetic

pytestmark = pytest.mark.slow  # real fits of every bounded family under time limits

SLOW = {  # enough rounds/trees to take far longer than the limits below, were they not stopped
    "xgboost": {"n_estimators": 5000, "learning_rate": 0.001, "max_depth": 6},
    "lightgbm": {"n_estimators": 5000, "learning_rate": 0.001, "num_leaves": 63},
    "catboost": {"iterations": 5000, "learning_rate": 0.001, "depth": 6},
    "random_forest": {"n_estimators": 3000, "min_samples_leaf": 1},
    "extra_trees": {"n_estimators": 3000, "min_samples_leaf": 1},
    "hist_gbm": {"max_iter": 5000, "learning_rate": 0.001, "max_leaf_nodes": 63},
}


def _wanted(family: str) -> int:
    params = SLOW[family]
    return int(params.get("n_estimators", params.get("iterations", params.get("max_iter"))))


def _multiclass(n: int = 1500):
    df = synthetic("multiclass", n=n, seed=2)
    y = df.pop("label").to_numpy().astype(np.int64)
    return df, y, np.arange(n) % 3


def _model(family: str, limit: float | None) -> zoo.FamilyModel:
    X, y, _ = _multiclass()
    numeric, categorical = zoo._split_columns(X, None)
    m = zoo.FamilyModel(family, SLOW[family], problem="classification", n_classes=3, numeric=numeric,
                        categorical=categorical, seed=0, n_jobs=2)
    m.time_limit_s = limit
    return m.fit(X, y, None)


def _patch(monkeypatch, name: str, value) -> None:  # noqa: ANN001
    """``monkeypatch.setattr(time_limits, name, value)`` that also reaches the code zoo calls.

    Why not setattr alone: obsrv's models are cloudpickled *by value*, and loading one in this
    process (earlier tests do, through MLflow) can leave ``time_limits``' functions and classes
    bound to another globals dict than the module's; a setattr on the module then misses them."""
    spaces = {id(vars(time_limits)): vars(time_limits)}
    for f in (time_limits.xgboost_callback, time_limits.lightgbm_callback, time_limits.grow_hist_gbm,
              time_limits.FitClock.pace_after, time_limits.Pace.learning_rate):
        spaces.setdefault(id(f.__globals__), f.__globals__)
    for space in spaces.values():
        monkeypatch.setitem(space, name, value)


@pytest.mark.parametrize("family", list(SLOW))
def test_a_fit_stops_at_its_limit_and_keeps_a_working_model(family: str, monkeypatch) -> None:
    # pacing off: at a raised rate early stopping may end the fit before the clock does (tested below)
    _patch(monkeypatch, "PACE_LR_ROUNDS", 0.0)
    m = _model(family, 0.5)
    wanted = _wanted(family)
    # stopped by the clock (no timing assertion: a loaded CI machine only changes where it stops)
    assert m.stopped_at_ is not None and time_limits.MIN_ROUNDS <= m.stopped_at_ < wanted
    if family in ("random_forest", "extra_trees"):
        assert len(m.estimator_[-1].estimators_) == m.stopped_at_
    if family == "hist_gbm":
        est = m.estimator_[-1]
        assert est.n_iter_ == m.stopped_at_ and not est.warm_start  # served as a plain, finished model
    X, y, _ = _multiclass()
    p = m.predict_matrix(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    prior = np.tile(np.bincount(y, minlength=3) / len(y), (len(y), 1))
    assert M.score("logloss", y, p, problem="classification") < M.score(
        "logloss", y, prior, problem="classification")  # the rounds it kept learned something
    restored = pickle.loads(pickle.dumps(m))  # the spent callback is not part of the served model
    np.testing.assert_allclose(restored.predict_matrix(X), p)


def test_without_a_limit_nothing_stops_early() -> None:
    X, y, _ = _multiclass(300)
    numeric, categorical = zoo._split_columns(X, None)
    m = zoo.FamilyModel("lightgbm", {"n_estimators": 30}, problem="classification", n_classes=3,
                        numeric=numeric, categorical=categorical, seed=0, n_jobs=2)
    m.fit(X, y, None)
    assert m.stopped_at_ is None


@pytest.mark.parametrize("family", ["random_forest", "extra_trees"])
def test_a_forest_grown_in_chunks_equals_the_one_shot_forest(family: str) -> None:
    X, y, _ = _multiclass(400)
    numeric, categorical = zoo._split_columns(X, None)

    def fit(limit: float | None) -> zoo.FamilyModel:
        m = zoo.FamilyModel(family, {"n_estimators": 57}, problem="classification", n_classes=3, numeric=numeric,
                            categorical=categorical, seed=3, n_jobs=2)
        m.time_limit_s = limit
        return m.fit(X, y, None)

    grown, one_shot = fit(3600.0), fit(None)
    assert grown.stopped_at_ is None and len(grown.estimator_[-1].estimators_) == 57
    np.testing.assert_allclose(grown.predict_matrix(X), one_shot.predict_matrix(X))


@pytest.mark.parametrize("early_stopping", [True, False])
def test_a_hist_gbm_grown_in_chunks_equals_the_one_shot_fit(early_stopping: bool) -> None:
    """Chunks continue one model (same validation split, same early-stopping history), so a fit
    that the time limit never stops is the one-shot fit, whether early stopping or max_iter ends it."""
    X, y, _ = _multiclass(800)
    numeric, categorical = zoo._split_columns(X, None)
    wanted = 137 if early_stopping else 23  # 23: chunks of 10, 10 and 3 iterations
    params = {"max_iter": wanted, "learning_rate": 0.3 if early_stopping else 0.05}

    def fit(limit: float | None) -> zoo.FamilyModel:
        m = zoo.FamilyModel("hist_gbm", params, problem="classification", n_classes=3, numeric=numeric,
                            categorical=categorical, seed=3, n_jobs=2)
        m.time_limit_s = limit
        m.fit(X, y, None)
        if not early_stopping:
            assert m.estimator_[-1].do_early_stopping_  # 800 rows: the zoo turns it on
        return m

    grown, one_shot = fit(3600.0), fit(None)
    n = one_shot.estimator_[-1].n_iter_
    assert (n < wanted) == early_stopping  # the case under test happened
    assert grown.stopped_at_ is None and grown.estimator_[-1].n_iter_ == n
    np.testing.assert_allclose(grown.predict_matrix(X), one_shot.predict_matrix(X), rtol=1e-9, atol=1e-12)


def test_time_bound_search_keeps_the_default_config_within_the_budget(monkeypatch) -> None:
    # pacing off: at a raised rate early stopping may end a later fold before the clock does
    _patch(monkeypatch, "PACE_LR_ROUNDS", 0.0)
    X, y, folds = _multiclass(3000)
    slow = {"iterations": 5000, "learning_rate": 0.001, "depth": 6}
    fit = zoo.fit_family(zoo.FitRequest("catboost", X, y, folds, problem="classification", n_classes=3, budget_seconds=3.0,
                         seed=0, params=slow, time_bound=True))
    stopped = fit.trials[0]["stopped_at_time_limit"]
    assert len(stopped) == 3 and min(stopped) >= time_limits.MIN_ROUNDS and max(stopped) < 5000
    assert all(m.estimator_.tree_count_ <= s + 1 for m, s in zip(fit.predictor.models_, stopped))
    assert np.isfinite(fit.oof).all() and fit.holdout is None
    # the same search without time_bound runs the default config to the end
    unbounded = zoo.fit_family(zoo.FitRequest("catboost", X, y, folds, problem="classification", n_classes=3,
                               budget_seconds=3.0, seed=0, params={**slow, "iterations": 60}))
    assert "stopped_at_time_limit" not in unbounded.trials[0]


class _FakeClock:
    """Stands in for the ``time`` module in zoo's globals: ``perf_counter`` moves only when a test
    says so (``sleep`` or ``advance``), so shares and deadlines are exact whatever the machine's load."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    advance = sleep


def _fake_clock(monkeypatch) -> _FakeClock:  # noqa: ANN001
    clock = _FakeClock()
    # the modules whose functions read the clock: search (cross_fit, search_family), fold_models
    for f in (zoo.cross_fit, zoo.search_family, zoo.FamilyModel.fit):
        monkeypatch.setitem(f.__globals__, "time", clock)
    return clock


def test_fold_shares_split_the_time_left_evenly(monkeypatch) -> None:
    X, y, folds = _multiclass(300)
    clock = _fake_clock(monkeypatch)
    limits: list[float] = []
    real_fit = zoo.FamilyModel.fit
    took = iter([2.0, 9.0, 0.5])  # fold 0 is faster than its share, fold 1 slower

    def spy(self, X, y, w):  # noqa: ANN001
        limits.append(self.time_limit_s)
        clock.advance(next(took))
        return real_fit(self, X, y, w)

    monkeypatch.setattr(zoo.FamilyModel, "fit", spy)
    deadline = clock.perf_counter() + 30.0
    zoo.cross_fit(zoo.FitRequest("lightgbm", X, y, folds, problem="classification", n_classes=3, seed=0),
                  {"n_estimators": 20}, deadline=deadline)
    fit_part = 1 - zoo.FIT_SHARE_PREDICT  # the rest of each share is kept for predicting
    # the time left, shared evenly by the folds still to fit: a fast fold leaves more for the later ones
    assert limits == pytest.approx([30.0 / 3 * fit_part, 28.0 / 2 * fit_part, 19.0 / 1 * fit_part], rel=1e-12)


def test_lightgbm_stopped_for_time_keeps_the_best_iteration_early_stopping_saw() -> None:
    import lightgbm as lgb

    class Early:  # what lgb.early_stopping exposes: the best iteration so far, per metric
        best_iter = [7]
        best_score_list = [[("valid_0", "multi_logloss", 0.5, False)]]

    class Env:
        iteration = 30
        evaluation_result_list = [("valid_0", "multi_logloss", 0.6, False)]

    stop = time_limits.lightgbm_callback(0.0, Early())
    with pytest.raises(lgb.callback.EarlyStopException) as caught:
        stop(Env())
    assert caught.value.best_iteration == 7 and tuple(caught.value.best_score[0])[:4] == Early.best_score_list[0][0]
    without = time_limits.lightgbm_callback(0.0)  # no validation split: the current iteration
    with pytest.raises(lgb.callback.EarlyStopException) as caught:
        without(Env())
    assert caught.value.best_iteration == 30


def test_obsrv_max_trials_turns_the_time_bound_off(monkeypatch) -> None:
    X, y, folds = _multiclass(600)
    monkeypatch.setenv("OBSRV_MAX_TRIALS", "1")
    fit = zoo.fit_family(zoo.FitRequest("lightgbm", X, y, folds, problem="classification", n_classes=3, budget_seconds=0.01,
                         seed=0, params={"n_estimators": 40}, time_bound=True))
    assert "stopped_at_time_limit" not in fit.trials[0]
    assert all(m.estimator_.n_estimators == 40 and m.stopped_at_ is None for m in fit.predictor.models_)


def test_a_cpu_retry_after_a_failed_gpu_fit_gets_the_trials_time_afresh(monkeypatch) -> None:
    X, y, folds = _multiclass(300)
    clock = _fake_clock(monkeypatch)
    seen: list[tuple[str, float]] = []
    real = zoo.cross_fit

    def flaky(*args, device: str = "cpu", deadline: float | None = None, **kwargs):  # noqa: ANN002, ANN003
        seen.append((device, deadline - clock.perf_counter()))
        if device != "cpu":
            clock.sleep(1.2)  # a slow failure spends the whole 1 s budget
            raise RuntimeError("no CUDA here")
        return real(*args, device=device, deadline=deadline, **kwargs)

    monkeypatch.setattr(search, "cross_fit", flaky)  # what search_family calls
    zoo.fit_family(zoo.FitRequest("xgboost", X, y, folds, problem="classification", n_classes=3, budget_seconds=1.0,
                                  seed=0, device="cuda", params={"n_estimators": 20}, time_bound=True))
    # the CPU retry gets the trial's whole second, not the -0.2 s the failed attempt left
    assert seen == [("cuda", pytest.approx(1.0, abs=1e-12)), ("cpu", pytest.approx(1.0, abs=1e-12))]


def test_paced_learning_rate_aims_at_the_rounds_the_time_affords() -> None:
    # 50 of 1000 rounds affordable: 10 / 50 = 0.2
    assert time_limits.paced_learning_rate(0.05, 50, 1000) == pytest.approx(0.2)
    assert time_limits.paced_learning_rate(0.05, 20, 1000) == time_limits.MAX_PACED_LR  # capped
    assert time_limits.paced_learning_rate(0.05, 500, 1000) is None  # enough rounds for 0.05
    assert time_limits.paced_learning_rate(0.3, 50, 1000) is None  # never lowered
    assert time_limits.paced_learning_rate(0.05, 150, 100) is None  # the limit will not cut it short


def test_a_fit_the_limit_stops_at_its_tenth_round_is_not_paced() -> None:
    clock = time_limits.FitClock(0.0, 0.05, 1000)  # the limit has already passed
    assert clock.pace_after(time_limits.MIN_ROUNDS, 0.01) is None and clock.paced_lr is None
    clock = time_limits.FitClock(3600.0, 0.05, 1000)
    assert clock.pace_after(time_limits.MIN_ROUNDS, 100.0) == pytest.approx(10 / (10 + 36.0), rel=1e-3)


PACED = ("xgboost", "lightgbm", "hist_gbm")


@pytest.mark.parametrize("family", list(SLOW))
def test_a_fit_the_limit_cuts_short_is_paced(family: str) -> None:
    """lr 0.001 and 5000 rounds in 1 s: at any machine's pace far fewer rounds than 0.001 needs, so
    the rate is raised after MIN_ROUNDS rounds (boosters that can change it mid-fit only)."""
    m = _model(family, 1.0)
    if family not in PACED:
        assert m.paced_lr_ is None  # forests have no rate; CatBoost can't change it mid-fit, and a lone fit has no pace to go by
        return
    if m.stopped_at_ == time_limits.MIN_ROUNDS:  # a machine so loaded that 10 rounds took the whole second
        assert m.paced_lr_ is None  # no round was left to use a new rate: none is reported
        return
    assert m.paced_lr_ is not None and 0.001 < m.paced_lr_ <= time_limits.MAX_PACED_LR
    if family == "hist_gbm":
        assert m.estimator_[-1].learning_rate == 0.001  # the config is given back (each tree keeps its rate)
    if family == "lightgbm":
        assert m.estimator_.booster_.params["learning_rate"] == pytest.approx(m.paced_lr_)


def _first_rounds(m: zoo.FamilyModel, X) -> np.ndarray:  # noqa: ANN001
    """The model's probabilities from its first MIN_ROUNDS rounds only."""
    n, frame = time_limits.MIN_ROUNDS, m._frame(X, fit=False)
    if m.family == "xgboost":
        return m.estimator_.predict_proba(frame, iteration_range=(0, n))
    if m.family == "lightgbm":
        return m.estimator_.predict_proba(frame, num_iteration=n)
    est = m.estimator_[-1]  # hist_gbm: the trees' leaf values carry the rate they were fit with
    return np.concatenate([tree.nodes["value"] for trees in est._predictors[:n] for tree in trees])


@pytest.mark.parametrize("family", PACED)
def test_pacing_changes_the_rate_of_the_rounds_after_the_first(family: str, monkeypatch) -> None:
    """Pacing forced to 0.3 without any time pressure (so nothing depends on the clock): the same
    30 rounds at 0.01 then 0.3 fit the training rows far better than 30 rounds at 0.01, and the first
    MIN_ROUNDS rounds are the unpaced fit's."""
    X, y, _ = _multiclass(600)
    numeric, categorical = zoo._split_columns(X, None)
    size = "max_iter" if family == "hist_gbm" else "n_estimators"

    def fit(rate: float | None, rounds: int = 30) -> zoo.FamilyModel:
        _patch(monkeypatch, "paced_learning_rate", lambda *a: rate)
        m = zoo.FamilyModel(family, {size: rounds, "learning_rate": 0.01}, problem="classification", n_classes=3,
                            numeric=numeric, categorical=categorical, seed=0, n_jobs=2)
        m.time_limit_s = 3600.0
        return m.fit(X, y, None)

    paced, plain = fit(0.3), fit(None)
    assert paced.paced_lr_ == 0.3 and plain.paced_lr_ is None
    assert paced.stopped_at_ is None and plain.stopped_at_ is None
    loss = {k: M.score("logloss", y, m.predict_matrix(X), problem="classification")
            for k, m in (("paced", paced), ("plain", plain))}
    assert loss["paced"] < 0.8 * loss["plain"], loss
    np.testing.assert_allclose(_first_rounds(paced, X), _first_rounds(plain, X), rtol=1e-6, atol=1e-9)
    if family == "hist_gbm":
        est = paced.estimator_[-1]
        assert est.n_iter_ == 30 and est.learning_rate == 0.01 and not est.warm_start


def test_a_pace_affords_a_rate_for_a_like_fit() -> None:
    pace = time_limits.Pace(setup_s=1.0, seconds_per_round=0.1)
    assert pace.learning_rate(0.05, 6.0, 1000) == pytest.approx(0.2)  # (6 - 1) / 0.1 = 50 rounds
    assert pace.learning_rate(0.05, 1.5, 1000) == time_limits.MAX_PACED_LR  # never counts on < MIN_ROUNDS
    assert pace.learning_rate(0.05, 300.0, 1000) is None  # 2,990 rounds affordable: not cut short
    assert pace.learning_rate(0.25, 6.0, 1000) is None  # never lowered


def test_a_clock_measures_the_pace_from_the_end_of_round_one(monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    clock = time_limits.FitClock(60.0)
    now[0] = 102.0
    clock.tick(1)  # 1.9 s building the data, then round 1
    assert clock.measured_pace() is None  # one round says nothing about the pace
    now[0] = 103.0
    clock.tick(11)
    pace = clock.measured_pace()
    assert pace is not None
    assert pace.seconds_per_round == pytest.approx(0.1) and pace.setup_s == pytest.approx(1.9)


def test_catboost_folds_after_the_first_start_at_the_rate_the_last_pace_affords() -> None:
    """CatBoost cannot change its rate mid-fit: lr 0.001 and 5000 rounds in a 3 s cross-fit, so the
    first fold trains unpaced and measures its pace, and every later fold starts at a raised rate."""
    X, y, folds = _multiclass(1500)
    bag, oof, _ = zoo.cross_fit(zoo.FitRequest("catboost", X, y, folds, problem="classification", n_classes=3, seed=0),
                                SLOW["catboost"], deadline=time.perf_counter() + 3.0)
    first, *rest = bag.models_
    assert first.paced_lr_ is None and first.estimator_.get_params()["learning_rate"] == 0.001
    assert first.pace_ is not None and first.pace_.seconds_per_round > 0
    assert len(rest) == 2
    for m in rest:
        assert m.paced_lr_ is not None and 0.001 < m.paced_lr_ <= time_limits.MAX_PACED_LR
        assert m.estimator_.get_params()["learning_rate"] == m.paced_lr_  # the rate its trees were fit with
    assert np.isfinite(oof).all()
    # a pace handed in (an earlier config's, in a search) paces the first fold too
    again, _, _ = zoo.cross_fit(zoo.FitRequest("catboost", X, y, folds, problem="classification", n_classes=3, seed=0),
                                SLOW["catboost"], deadline=time.perf_counter() + 3.0, pace=rest[-1].pace_)
    assert all(m.paced_lr_ is not None for m in again.models_)


def test_a_time_bound_catboost_search_records_where_it_paced() -> None:
    X, y, folds = _multiclass(1500)
    fit = zoo.fit_family(zoo.FitRequest("catboost", X, y, folds, problem="classification", n_classes=3, budget_seconds=3.0,
                         seed=0, params=SLOW["catboost"], time_bound=True))
    trial = fit.trials[0]
    assert len(trial["paced_learning_rate"]) == 2  # every fold but the search's first
    assert all(0.001 < lr <= time_limits.MAX_PACED_LR for lr in trial["paced_learning_rate"])
    assert 1 <= len(trial["stopped_at_time_limit"]) <= 3 and np.isfinite(fit.oof).all()


def test_a_catboost_fit_started_at_the_paced_rate_fits_better(monkeypatch) -> None:
    """No time pressure (nothing depends on the clock): a pace hint that affords 30 of 60 rounds
    starts the fit at 10 / 30 -> 0.3, and it fits the training rows far better than 60 rounds at 0.01."""
    X, y, _ = _multiclass(600)
    numeric, categorical = zoo._split_columns(X, None)

    def fit(hint: time_limits.Pace | None) -> zoo.FamilyModel:
        m = zoo.FamilyModel("catboost", {"iterations": 60, "learning_rate": 0.01}, problem="classification",
                            n_classes=3, numeric=numeric, categorical=categorical, seed=0, n_jobs=2)
        m.time_limit_s, m.pace_hint = 3600.0, hint
        return m.fit(X, y, None)

    paced, plain = fit(time_limits.Pace(0.0, 3600.0 / 30)), fit(None)
    assert paced.paced_lr_ == time_limits.MAX_PACED_LR and plain.paced_lr_ is None
    assert paced.estimator_.get_params()["learning_rate"] == time_limits.MAX_PACED_LR
    assert paced.stopped_at_ is None and plain.stopped_at_ is None
    loss = {k: M.score("logloss", y, m.predict_matrix(X), problem="classification")
            for k, m in (("paced", paced), ("plain", plain))}
    assert loss["paced"] < 0.8 * loss["plain"], loss


def test_limit_summary_says_what_the_limit_did_to_the_fits() -> None:
    class Fit:
        def __init__(self, stopped_at: int | None, paced_lr: float | None) -> None:
            self.stopped_at_, self.paced_lr_ = stopped_at, paced_lr

    assert time_limits.limit_summary([Fit(None, None), Fit(None, None)], "folds") == ""
    # a constant fold model (no attributes) counts in the total only
    assert time_limits.limit_summary([Fit(10, 0.3), Fit(42, None), Fit(None, 0.12), object()], "folds") == (
        "; time limit reached in 2 of 4 folds (after 10-42 rounds/trees); learning rate paced to 0.12-0.3 in 2 folds")
