import numpy as np
import pandas as pd
import pytest
from obsrv.service_tasks import metrics
from obsrv.service_tasks.ensembles.base import (
    FrameEncoder,
    MetricLoss,
    best_of_family,
    strength_order,
)


@pytest.mark.parametrize("metric", ["auc", "logloss"])
def test_fast_loss_paths_match_the_metrics_module(metric):
    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(5, 200))
        y = rng.integers(0, 2, n)
        p = np.round(rng.random(n), int(rng.integers(0, 4)))  # many ties and exact 0/1
        P = np.column_stack([1 - p, p])
        fast = MetricLoss(metric, "classification")(y, P)
        ref = metrics.loss(metric, y, P, problem="classification")
        assert fast == pytest.approx(ref, rel=1e-12, abs=1e-12)
    assert MetricLoss("auc", "classification")(np.ones(4, int), np.full((4, 2), 0.5)) == float("inf")
    assert MetricLoss("auc", "classification")(np.array([0, 1]), np.array([[np.nan, 1], [0, 1]])) == float("inf")


def test_combiners_optimise_what_the_base_search_optimises():
    """One rule, the runtime's (``service_tasks.base.search_metric``): no ensemble-side copy."""
    from obsrv.service_tasks.stages.base_models import search_metric
    from obsrv.service_tasks.ensembles import base as ensemble_base
    from obsrv.service_tasks.ensembles import job

    assert not hasattr(ensemble_base, "combiner_objective")
    assert job.search_metric is search_metric
    assert search_metric("accuracy", "classification") == "logloss"
    assert search_metric("f1", "classification") == "logloss"
    assert search_metric("auc", "classification") == "auc"
    assert search_metric("rmse", "regression") == "rmse"


def test_zoo_learner_splits_columns_with_the_zoo_rule():
    """Numeric/categorical split: the zoo's ``_split_columns``, no ensemble-side copy."""
    from obsrv.service_tasks.ensembles import learners

    assert not hasattr(learners, "split_columns")
    X = pd.DataFrame({"a": [0.1, 0.5, 0.2, 0.9] * 5, "b": list("xyxz") * 5, "c": [1, 2, 1, 3] * 5})
    y = np.array([0, 1] * 10)
    m = learners.ZooLearner("linear", "classification", 2).fit(X, y)
    assert (m.model_.numeric, m.model_.categorical) == (["a", "c"], ["b"])
    m = learners.ZooLearner("linear", "classification", 2, categorical_columns=["b", "c"]).fit(X, y)
    assert (m.model_.numeric, m.model_.categorical) == (["a"], ["b", "c"])


def test_ranking_helpers():
    order = strength_order(np.array([0.7, np.nan, 0.9, 0.8]), greater_is_better=True)
    assert order.tolist() == [2, 3, 0, 1]
    assert strength_order(np.array([0.3, 0.1, 0.2]), greater_is_better=False).tolist() == [1, 2, 0]
    fams = ["xgb", "xgb", "lin", "rf", "lin"]
    assert best_of_family(np.array([0, 1, 2, 3, 4]), fams, 2) == [0, 2]
    assert best_of_family(np.array([0, 1, 2, 3, 4]), fams, 10) == [0, 2, 3]


def test_frame_encoder_handles_unseen_levels_and_missing_values():
    X = pd.DataFrame({"a": [1.0, np.nan, 3.0, 5.0], "c": ["x", "y", "x", None]})
    enc = FrameEncoder(["c"]).fit(X)
    Z = enc.transform(pd.DataFrame({"a": [np.nan], "c": ["zzz"]}))
    assert Z.shape == (1, 3)
    assert Z[0, 1:].tolist() == [0.0, 0.0]  # unseen level -> all zeros
    assert np.isfinite(enc.transform(X)).all()


def _stable_sort_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """The fast AUC as it was with a stable sort: the reference its quicksort must equal bit for bit."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(s.size)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], s.size]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def test_fast_auc_is_exactly_the_stable_sort_auc_and_greedy_picks_the_same():
    """The unstable sort cannot change an AUC (tie runs get their mid-rank in any order), so greedy
    selection picks exactly as with the stable sort: equal losses, not approximately equal."""
    from obsrv.service_tasks.ensembles.greedy import GreedySelection

    rng = np.random.default_rng(3)
    loss = MetricLoss("auc", "classification")
    for decimals in (1, 2, 3, 8):  # from mostly ties to almost none
        y = rng.integers(0, 2, 5000)
        p = np.round(np.clip(0.35 * y[None, :] + rng.random((6, 5000)) * 0.65, 0, 1), decimals)
        P = np.stack([1 - p, p], axis=2)
        for j in range(6):
            assert loss(y, P[j]) == -_stable_sort_auc(y == 1, P[j][:, 1])
        ges = GreedySelection(loss, rounds=12).fit(P, y)

        def stable_loss(yy, pred, w=None):
            return -_stable_sort_auc(np.asarray(yy) == 1, pred[:, 1])

        ref = GreedySelection(stable_loss, rounds=12).fit(P, y)
        assert ges.picks_ == ref.picks_
        np.testing.assert_array_equal(ges.trajectory_, ref.trajectory_)
