"""Unit tests of obsrv.service_tasks.metrics against scikit-learn references."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from obsrv.service_tasks import metrics as M


@pytest.fixture()
def binary() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p1 = np.clip(0.3 * y + rng.uniform(0, 0.7, 300), 0, 1)
    return y, np.column_stack([1 - p1, p1])


@pytest.fixture()
def multi() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3)) + 1.5 * np.eye(3)[y]
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def test_binary_matches_sklearn(binary) -> None:
    y, p = binary
    w = np.random.default_rng(2).uniform(0.5, 2, y.shape[0])
    lab = (p[:, 1] >= 0.5).astype(int)
    assert M.score("accuracy", y, p, problem="classification") == pytest.approx(skm.accuracy_score(y, lab))
    assert M.score("f1", y, p, problem="classification") == pytest.approx(skm.f1_score(y, lab))
    assert M.score("precision", y, p, problem="classification") == pytest.approx(skm.precision_score(y, lab))
    assert M.score("recall", y, p, problem="classification") == pytest.approx(skm.recall_score(y, lab))
    assert M.score("auc", y, p, problem="classification", weights=w) == pytest.approx(
        skm.roc_auc_score(y, p[:, 1], sample_weight=w)
    )
    assert M.score("logloss", y, p, problem="classification") == pytest.approx(skm.log_loss(y, p))


def test_binary_threshold_changes_labels(binary) -> None:
    y, p = binary
    lab = (p[:, 1] >= 0.3).astype(int)
    assert M.score("f1", y, p, problem="classification", threshold=0.3) == pytest.approx(skm.f1_score(y, lab))


def test_multiclass_macro_and_ovr(multi) -> None:
    y, p = multi
    lab = p.argmax(1)
    assert M.score("f1", y, p, problem="classification") == pytest.approx(skm.f1_score(y, lab, average="macro"))
    assert M.score("recall", y, p, problem="classification") == pytest.approx(
        skm.recall_score(y, lab, average="macro")
    )
    assert M.score("auc", y, p, problem="classification") == pytest.approx(
        skm.roc_auc_score(y, p, multi_class="ovr", average="macro")
    )
    assert M.score("logloss", y, p, problem="classification") == pytest.approx(skm.log_loss(y, p))
    # the threshold is ignored for multiclass problems
    assert M.score("accuracy", y, p, problem="classification", threshold=0.9) == pytest.approx(
        skm.accuracy_score(y, lab)
    )


def test_regression() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(size=200)
    p = (y + rng.normal(scale=0.5, size=200))[:, None]
    w = rng.uniform(0.5, 2, 200)
    assert M.score("rmse", y, p, problem="regression") == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)))
    assert M.score("mae", y, p, problem="regression", weights=w) == pytest.approx(
        skm.mean_absolute_error(y, p, sample_weight=w)
    )
    assert M.score("r2", y, p, problem="regression", weights=w) == pytest.approx(skm.r2_score(y, p, sample_weight=w))


@pytest.mark.parametrize(
    ("metric", "greater"),
    [("auc", True), ("f1", True), ("accuracy", True), ("r2", True), ("logloss", False), ("rmse", False), ("mae", False)],
)
def test_direction_and_loss(metric: str, greater: bool, binary) -> None:
    assert M.greater_is_better(metric) is greater
    problem = "regression" if metric in M.REGRESSION else "classification"
    y, p = binary
    pred = p[:, 1:] if problem == "regression" else p
    s = M.score(metric, y, pred, problem=problem)
    assert M.loss(metric, y, pred, problem=problem) == pytest.approx(-s if greater else s)


@pytest.mark.parametrize(
    ("metric", "problem", "message"),
    [
        ("gini", "classification", "unknown metric 'gini'"),
        ("rmse", "classification", "regression metric"),
        ("auc", "regression", "classification metric"),
    ],
)
def test_errors(metric: str, problem: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        M.score(metric, np.zeros(3), np.zeros((3, 1)), problem=problem)  # type: ignore[arg-type]


def test_auc_single_class_is_nan_and_loss_inf() -> None:
    p = np.column_stack([np.full(4, 0.5), np.full(4, 0.5)])
    assert np.isnan(M.score("auc", np.ones(4, int), p, problem="classification"))
    assert M.loss("auc", np.ones(4, int), p, problem="classification") == float("inf")


@pytest.mark.parametrize("metric", ["accuracy", "f1"])
def test_tune_threshold_is_optimal_over_grid(metric: str, binary) -> None:
    y, p = binary
    t = M.tune_threshold(metric, y, p)
    tuned = M.score(metric, y, p, problem="classification", threshold=t)
    grid = max(M.score(metric, y, p, problem="classification", threshold=g) for g in np.linspace(0, 1, 501))
    assert tuned >= grid - 1e-12
    assert tuned >= M.score(metric, y, p, problem="classification")


def test_tune_threshold_weighted_and_imbalanced() -> None:
    rng = np.random.default_rng(5)
    y = (rng.uniform(size=500) < 0.1).astype(int)
    p1 = np.clip(0.25 * y + rng.uniform(0, 0.5, 500), 0, 1)
    p = np.column_stack([1 - p1, p1])
    w = rng.uniform(0.5, 3, 500)
    t = M.tune_threshold("f1", y, p, w)
    grid = max(
        M.score("f1", y, p, problem="classification", weights=w, threshold=g) for g in np.linspace(0, 1, 501)
    )
    assert M.score("f1", y, p, problem="classification", weights=w, threshold=t) >= grid - 1e-12
    assert M.score("f1", y, p, problem="classification", weights=w, threshold=t) >= M.score(
        "f1", y, p, problem="classification", weights=w
    )


def test_tune_threshold_non_threshold_metrics_and_multiclass(multi, binary) -> None:
    y, p = multi
    assert M.tune_threshold("f1", y, p) == 0.5
    yb, pb = binary
    assert M.tune_threshold("auc", yb, pb) == 0.5
    assert M.tune_threshold("precision", yb, pb) == M.tune_threshold("f1", yb, pb)


def test_one_dimensional_predictions_accepted(binary) -> None:
    y, p = binary
    assert M.score("auc", y, p[:, 1], problem="classification") == pytest.approx(
        M.score("auc", y, p, problem="classification")
    )
