import numpy as np
import pytest
from obsrv.service_tasks.ensembles.base import MetricLoss
from obsrv.service_tasks.ensembles.greedy import GreedySelection, select_best


def _binary_pool(n: int = 400, strengths=(1.0, 0.8, 0.5, 0.1), seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    z = (2 * y - 1)[None, :] * np.array(strengths)[:, None] + rng.normal(size=(len(strengths), n))
    p = 1 / (1 + np.exp(-z))
    return np.stack([1 - p, p], axis=2), y


def _sq_loss(y, pred, w=None):
    return float(np.mean((pred[:, 0] - y) ** 2))


def test_weights_sum_to_one_and_best_prefix():
    P, y = _binary_pool()
    g = GreedySelection(MetricLoss("logloss", "classification"), rounds=25).fit(P, y)
    assert g.weights_.shape == (4,)
    assert g.weights_.sum() == pytest.approx(1.0)
    assert (g.weights_ >= 0).all()
    assert len(g.picks_) == 25 and g.trajectory_.shape == (25,)
    # the kept prefix is the first minimum of the trajectory, and weights come from that prefix only
    assert g.best_round_ == int(np.argmin(g.trajectory_))
    counts = np.bincount(g.picks_[: g.best_round_ + 1], minlength=4)
    np.testing.assert_allclose(g.weights_, counts / counts.sum())
    # the first pick is the single best model
    single = [MetricLoss("logloss", "classification")(y, P[j]) for j in range(4)]
    assert g.picks_[0] == int(np.argmin(single))


def test_best_prefix_drops_harmful_later_rounds():
    # regression, y = 0; model 0 is perfect, model 1 is off by 1: any later pick of model 1 hurts,
    # and re-picking model 0 ties, so the prefix must be exactly one round of model 0
    y = np.zeros(10)
    P = np.stack([np.zeros((10, 1)), np.ones((10, 1))])
    g = GreedySelection(_sq_loss, rounds=5).fit(P, y)
    assert g.best_round_ == 0
    np.testing.assert_array_equal(g.weights_, [1.0, 0.0])


def test_running_mean_finds_the_blend():
    # two unbiased models with independent errors: the 50/50 blend beats either alone
    rng = np.random.default_rng(0)
    y = rng.normal(size=2000)
    P = np.stack([y + rng.normal(size=2000), y + rng.normal(size=2000)])[:, :, None]
    g = GreedySelection(_sq_loss, rounds=20).fit(P, y)
    assert abs(g.weights_[0] - 0.5) <= 0.15
    np.testing.assert_allclose(g.predict(P), np.tensordot(g.weights_, P, axes=1))


def test_ties_go_to_models_already_chosen():
    # members 1 and 2 are identical copies; after member 1 is chosen, ties must re-pick 1, never 2
    rng = np.random.default_rng(3)
    y = rng.normal(size=200)
    a = y + rng.normal(size=200)
    b = y + rng.normal(size=200)
    P = np.stack([a, b, b])[:, :, None]
    g = GreedySelection(_sq_loss, rounds=15).fit(P, y)
    assert 2 not in g.picks_
    assert select_best(np.array([1.0, 0.5, 0.5]), np.array([0, 0, 3])) == 2
    assert select_best(np.array([1.0, 0.5, 0.5]), np.array([0, 0, 0])) == 1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_select_best_ignores_non_finite(bad):
    assert select_best(np.array([bad, 2.0, 1.0]), np.zeros(3, dtype=int)) == 2
    # nothing finite: repeat the most chosen model (or 0)
    assert select_best(np.array([bad, bad]), np.array([0, 2])) == 1
    assert select_best(np.array([bad, bad]), np.array([0, 0])) == 0


def test_member_with_nan_predictions_is_never_picked():
    P, y = _binary_pool()
    P = P.copy()
    P[0, 5, :] = np.nan  # the strongest model is broken on one row
    g = GreedySelection(MetricLoss("auc", "classification")).fit(P, y)
    assert g.weights_[0] == 0.0
    assert np.isfinite(g.predict(P)).all()


def test_deterministic_and_multiclass_regression_shapes():
    rng = np.random.default_rng(0)
    n, k = 300, 3
    y = rng.integers(0, k, n)
    Z = rng.normal(size=(4, n, k))
    Z[:, np.arange(n), y] += np.array([1.5, 1.0, 0.5, 0.0])[:, None]
    P = np.exp(Z) / np.exp(Z).sum(axis=2, keepdims=True)
    loss = MetricLoss("logloss", "classification")
    a = GreedySelection(loss).fit(P, y)
    b = GreedySelection(loss).fit(P, y)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    out = a.predict(P)
    assert out.shape == (n, k)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    yr = rng.normal(size=n)
    Pr = (yr[None, :] + rng.normal(size=(3, n)))[:, :, None]
    assert GreedySelection(MetricLoss("rmse", "regression")).fit(Pr, yr).predict(Pr).shape == (n, 1)


def test_rounds_must_be_positive():
    P, y = _binary_pool()
    with pytest.raises(ValueError, match="rounds"):
        GreedySelection(MetricLoss("auc", "classification"), rounds=0).fit(P, y)


def test_subsample_rows_are_seeded_stratified_and_sorted():
    from obsrv.service_tasks.ensembles.greedy import selection_rows

    y = np.r_[np.zeros(9000, int), np.ones(1000, int), np.full(7, 2)]
    rows = selection_rows(y, 2000, seed=5)
    assert np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(rows, selection_rows(y, 2000, seed=5))
    assert not np.array_equal(rows, selection_rows(y, 2000, seed=6))
    counts = np.bincount(y[rows], minlength=3)
    assert counts[0] == round(2000 * 9000 / 10007) and counts[1] == round(2000 * 1000 / 10007)
    assert counts[2] == 1  # a rare class keeps one row
    reg = selection_rows(np.linspace(0, 1, 500), 100, seed=0)  # floats: plain random subsample
    assert len(reg) == 100 and len(np.unique(reg)) == 100


def test_selection_on_more_rows_than_the_cap_uses_exactly_the_subsample():
    from obsrv.service_tasks.ensembles.greedy import selection_rows

    P, y = _binary_pool(n=3000)
    loss = MetricLoss("auc", "classification")
    capped = GreedySelection(loss, 10, max_rows=800, seed=3).fit(P, y)
    rows = selection_rows(y, 800, 3)
    by_hand = GreedySelection(loss, 10, max_rows=None).fit(P[:, rows], y[rows])
    assert capped.picks_ == by_hand.picks_
    np.testing.assert_array_equal(capped.trajectory_, by_hand.trajectory_)
    # at or under the cap nothing changes: every row, as without a cap
    full = GreedySelection(loss, 10, max_rows=None).fit(P, y)
    same = GreedySelection(loss, 10, max_rows=3000).fit(P, y)
    assert same.picks_ == full.picks_ and capped.trajectory_.shape == full.trajectory_.shape
    w = np.linspace(0.5, 2.0, 3000)
    weighted = GreedySelection(loss, 10, max_rows=800, seed=3).fit(P, y, w)
    assert weighted.weights_.sum() == pytest.approx(1.0)
