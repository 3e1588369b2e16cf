"""`OBSRV_MAX_TRIALS` makes a `--budget` run independent of the clock (issue 20, defect 10): the
search runs exactly that many configs, however slow the machine. A fake clock that jumps 100 s per
reading stands for a slow machine, so the test does not depend on this machine's speed."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from obsrv.service_tasks import zoo


@pytest.fixture
def slow_clock(monkeypatch):
    ticks = itertools.count(step=100.0)
    monkeypatch.setattr(zoo.search.time, "perf_counter", lambda: float(next(ticks)))


def _data(n: int = 120):
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    y = (X["a"] + rng.normal(scale=0.5, size=n) > 0).astype(np.int64).to_numpy()
    return X, y, np.arange(n) % 3


def test_the_pinned_trial_count_wins_over_the_budget(monkeypatch, slow_clock) -> None:
    monkeypatch.setenv("OBSRV_MAX_TRIALS", "3")
    X, y, folds = _data()
    fit = zoo.fit_family(zoo.FitRequest("linear", X, y, folds, problem="classification", n_classes=2, budget_seconds=5.0,
                         seed=0, time_bound=True))
    assert len(fit.trials) == 3


def test_without_the_pin_the_budget_stops_the_search(monkeypatch, slow_clock) -> None:
    monkeypatch.delenv("OBSRV_MAX_TRIALS", raising=False)
    X, y, folds = _data()
    fit = zoo.fit_family(zoo.FitRequest("linear", X, y, folds, problem="classification", n_classes=2, budget_seconds=5.0,
                         seed=0, max_trials=3))
    assert len(fit.trials) == 1
