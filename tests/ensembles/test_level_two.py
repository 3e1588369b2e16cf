"""The ``lightgbm_full`` meta-learner (``ensembles/level_two.py``): AutoGluon's stack-feature layout,
users' column names kept, and a second level that learns where in feature space a member is right."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from obsrv.service_tasks.ensembles.base import MetricLoss
from obsrv.service_tasks.ensembles.level_two import (
    MEMBER_PREFIX,
    FullStackFactory,
    FullStacker,
    level_two_config,
    member_columns,
)
from obsrv.service_tasks.ensembles.stacking import MetaFactory, dynamic_stack
from obsrv.service_tasks.zoo.portfolio import portfolio


def test_member_columns_follow_autogluons_stack_layout():
    # AutoGluon's set_stack_columns: binary and regression one column per model, multiclass K per model
    P2 = np.array([[[0.8, 0.2], [0.3, 0.7]], [[0.6, 0.4], [0.1, 0.9]]])  # (M=2, n=2, K=2)
    np.testing.assert_allclose(member_columns(P2, "classification"), [[0.2, 0.4], [0.7, 0.9]])
    P3 = np.arange(2 * 2 * 3, dtype=float).reshape(2, 2, 3)
    np.testing.assert_allclose(member_columns(P3, "classification"), [[0, 1, 2, 6, 7, 8], [3, 4, 5, 9, 10, 11]])
    R = np.array([[[1.0], [2.0]], [[3.0], [4.0]]])
    np.testing.assert_allclose(member_columns(R, "regression"), [[1, 3], [2, 4]])


def test_the_config_is_the_first_lightgbm_config_of_autogluons_portfolio():
    name, config = next(portfolio("lightgbm", "classification"))
    assert name == "LightGBMXT" and config["extra_trees"] is True
    assert level_two_config("classification") == config


def _feature_dependent_members(n: int = 1500, seed: int = 0):
    """Two members, each right on one part of the feature space: which one to trust depends on the
    categorical ``seg.ment`` column, which a second level with the features can learn and a weighted
    vote cannot."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"Income (k)": rng.normal(size=n), "age.years": rng.normal(size=n),
                      "seg.ment": rng.choice(["North", "south"], n)})
    logit = 2.5 * X["Income (k)"] * np.where(X["seg.ment"] == "North", 1.0, -1.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).to_numpy().astype(np.int64)
    north = (X["seg.ment"] == "North").to_numpy()
    sig = 1 / (1 + np.exp(-logit.to_numpy()))
    good_north = np.where(north, sig, 0.5)
    good_south = np.where(north, 0.5, sig)
    P = np.stack([np.column_stack([1 - p, p]) for p in (good_north, good_south)])
    return P, y, rng.permutation(np.arange(n) % 5), X


def test_a_second_level_with_the_features_beats_greedy_selection_on_nested_oof():
    P, y, folds, X = _feature_dependent_members()
    loss = MetricLoss("logloss", "classification")
    res = dynamic_stack(FullStackFactory("classification", 2, 42, ("seg.ment",)), P, y, folds, loss, extra=X)
    assert res.used == "stack"
    # greedy can only average the two members (0.5 on each half): the second level picks per segment
    assert res.stack_loss < res.greedy_loss - 0.05, (res.stack_loss, res.greedy_loss)
    out = res.combiner.predict(P[:, :10], X.iloc[:10])
    assert out.shape == (10, 2)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    restored = pickle.loads(pickle.dumps(res.combiner))
    np.testing.assert_allclose(restored.predict(P[:, :10], X.iloc[:10]), out)


def test_member_columns_never_shadow_a_users_column():
    P, y, folds, X = _feature_dependent_members(n=400)
    X = X.assign(**{f"{MEMBER_PREFIX}0": np.zeros(len(X))})  # a user column with the prefix
    stacker = FullStacker("classification", 2, 42, ["seg.ment"]).fit(P, y, extra=X)
    assert all(name.startswith("_" + MEMBER_PREFIX) for name in stacker.names_)
    assert stacker.learner_ is not None
    assert set(stacker.learner_.columns_) >= {"Income (k)", "age.years", "seg.ment"}


@pytest.mark.parametrize("problem,k", [("classification", 3), ("regression", 1)])
def test_without_features_it_stacks_member_predictions_alone(problem, k):
    rng = np.random.default_rng(3)
    n = 600
    if problem == "regression":
        y = rng.normal(size=n) * 3
        P = (y[None, :] + rng.normal(size=(3, n)) * np.array([0.5, 1.0, 2.0])[:, None])[:, :, None]
    else:
        y = rng.integers(0, k, n)
        Z = rng.normal(size=(3, n, k))
        Z[:, np.arange(n), y] += 1.5
        P = np.exp(Z) / np.exp(Z).sum(axis=2, keepdims=True)
    out = MetaFactory("lightgbm_full", problem, k)().fit(P, y).predict(P)
    assert out.shape == (n, k) and np.isfinite(out).all()
    if problem == "regression":
        assert np.sqrt(np.mean((out[:, 0] - y) ** 2)) < 0.6  # about the best member's error or better
    else:
        np.testing.assert_allclose(out.sum(axis=1), 1.0)


def test_a_served_frame_with_a_column_named_like_a_member_column_is_still_served():
    P, y, folds, X = _feature_dependent_members(n=400)
    stacker = FullStacker("classification", 2, 42, ["seg.ment"]).fit(P, y, extra=X)
    want = stacker.predict(P[:, :20], X.iloc[:20])
    served = X.iloc[:20].assign(**{stacker.names_[0]: 123.0, "unrelated": 1})  # columns the fit never saw
    np.testing.assert_allclose(stacker.predict(P[:, :20], served), want)
