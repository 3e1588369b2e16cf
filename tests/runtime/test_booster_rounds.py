"""Booster round counts: AutoGluon's 10,000-round ceiling with early stopping choosing the count, and a
1,000-round cap where a fit has no rows to early-stop on (``zoo/fold_models.py``)."""

from __future__ import annotations

import numpy as np
import pytest
from obsrv.service_tasks.ensembles.learners import ZooLearner
from obsrv.service_tasks.zoo import portfolio, spaces
from obsrv.service_tasks.zoo.fold_models import ROUNDS_WITHOUT_EARLY_STOPPING

from support.runtime_helpers import synthetic


def _rounds(learner: ZooLearner) -> int:
    booster = learner.model_.estimator_
    if learner.family == "lightgbm":
        return int(booster.booster_.num_trees())
    if learner.family == "xgboost":
        return int(booster.get_booster().num_boosted_rounds())
    return int(booster.tree_count_)


@pytest.mark.parametrize("family", ["lightgbm", "xgboost", "catboost"])
def test_default_configs_have_autogluons_ceiling(family: str) -> None:
    params = spaces.default_params(family, "regression")
    assert params.get("n_estimators", params.get("iterations")) == portfolio.BOOSTER_ROUNDS == 10_000


@pytest.mark.parametrize("family", ["lightgbm", "xgboost", "catboost"])
def test_early_stopping_picks_the_count_below_the_ceiling(family: str) -> None:
    df = synthetic("regression", n=400, seed=1)
    y = df.pop("label").to_numpy(np.float64)
    learner = ZooLearner(family, "regression", 1, seed=0).fit(df, y)
    assert 0 < _rounds(learner) < portfolio.BOOSTER_ROUNDS


@pytest.mark.parametrize("family", ["lightgbm", "xgboost", "catboost"])
def test_without_rows_to_early_stop_on_a_fit_trains_at_most_1000_rounds(family: str) -> None:
    df = synthetic("regression", n=40, seed=2)  # under 50 rows: no early-stopping split
    y = df.pop("label").to_numpy(np.float64)
    params = {**spaces.default_params(family, "regression"), "learning_rate": 0.001}  # never converges
    if family == "lightgbm":
        params["min_child_samples"] = 2  # 40 rows leave no split at its default of 20: one tree
    learner = ZooLearner(family, "regression", 1, params, seed=0).fit(df, y)
    assert _rounds(learner) == ROUNDS_WITHOUT_EARLY_STOPPING == 1000
