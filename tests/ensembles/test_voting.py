import pickle

import numpy as np
import pytest
from obsrv.service_tasks.ensembles.voting import HardVote, RankVote, SoftVote, make_vote, select_diverse


def _binary(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    z = (2 * y - 1)[None, :] * np.array([1.0, 0.8, 0.6])[:, None] + rng.normal(size=(3, n))
    p = 1 / (1 + np.exp(-z))
    return np.stack([1 - p, p], axis=2), y


@pytest.mark.parametrize("mode", ["soft", "hard", "rank"])
@pytest.mark.parametrize("k", [1, 2, 3], ids=["regression", "binary", "multiclass"])
def test_vote_output_format(mode, k):
    rng = np.random.default_rng(0)
    n = 200
    if k == 1:
        y = rng.normal(size=n)
        P = (y[None, :] + rng.normal(size=(3, n)))[:, :, None]
        problem = "regression"
    else:
        y = rng.integers(0, k, n)
        P = rng.dirichlet(np.ones(k), size=(3, n))
        problem = "classification"
    v = make_vote(mode, problem).fit(P, y)
    out = v.predict(P)
    assert out.shape == (n, k) and np.isfinite(out).all()
    if k > 1:
        np.testing.assert_allclose(out.sum(axis=1), 1.0)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(v)).predict(P), out)


def test_soft_vote_is_the_mean_and_hard_vote_the_majority():
    P, _ = _binary()
    np.testing.assert_allclose(SoftVote().predict(P), P.mean(axis=0))
    hv = HardVote("classification").predict(P)
    majority = ((P[:, :, 1] >= 0.5).sum(axis=0) >= 2).astype(int)
    np.testing.assert_array_equal((hv[:, 1] > 0.5).astype(int), majority)
    assert set(np.round(hv[:, 1] * 3).astype(int)) <= {0, 1, 2, 3}


def test_rank_vote_ranks_new_rows_against_the_training_distribution():
    P, y = _binary()
    v = RankVote("classification").fit(P, y)
    batch = v.predict(P[:, :50])
    single = np.vstack([v.predict(P[:, i : i + 1]) for i in range(50)])
    np.testing.assert_allclose(batch, single)  # a row's score does not depend on its batch
    # a monotone re-calibration of one member leaves the rank vote unchanged
    P2 = P.copy()
    P2[0, :, 1] = P[0, :, 1] ** 3
    P2[0, :, 0] = 1 - P2[0, :, 1]
    np.testing.assert_allclose(RankVote("classification").fit(P2, y).predict(P2), v.predict(P), atol=1e-12)


def test_select_diverse_prefers_a_different_model_over_a_near_copy():
    P, y = _binary(n=500)
    rng = np.random.default_rng(5)
    copy = P[0].copy()
    copy[:, 1] = np.clip(copy[:, 1] + rng.normal(scale=0.01, size=500), 0, 1)
    copy[:, 0] = 1 - copy[:, 1]
    weak = np.full_like(P[2], 0.5)
    weak[:, 1] = np.clip(0.5 + 0.1 * (P[2][:, 1] - 0.5) + rng.normal(scale=0.2, size=500), 0, 1)
    weak[:, 0] = 1 - weak[:, 1]
    # strength is min-max scaled over the pool, so a realistic pool has a weak model at the bottom
    pool = np.stack([P[0], copy, P[1], weak])
    scores = np.array([0.80, 0.799, 0.78, 0.60])
    chosen = select_diverse(pool, scores, 2, greater_is_better=True)
    assert chosen == [0, 2]
    # NaN scores are never chosen; top_n larger than the pool is fine
    assert select_diverse(pool[:3], np.array([0.8, np.nan, 0.7]), 5, greater_is_better=True) == [0, 2]
    # losses (lower is better) start from the smallest
    assert select_diverse(pool[:3], np.array([0.5, 0.4, 0.6]), 1, greater_is_better=False) == [1]
