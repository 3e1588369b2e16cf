import pickle

import numpy as np
import pandas as pd
import pytest
from obsrv.compiler.spec import META_LEARNERS
from obsrv.service_tasks.ensembles.base import MetricLoss, nested_oof
from obsrv.service_tasks.ensembles.learners import ZooLearner
from obsrv.service_tasks.ensembles.stacking import (
    ClasswiseStacker,
    LightGBMStacker,
    LinearStacker,
    MetaFactory,
    dynamic_stack,
)
from sklearn.metrics import roc_auc_score


def _binary(n=500, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    z = (2 * y - 1)[None, :] * np.array([1.2, 0.9, 0.5, 0.0])[:, None] + rng.normal(size=(4, n))
    p = 1 / (1 + np.exp(-z))
    return np.stack([1 - p, p], axis=2), y, rng.integers(0, 5, n)


def _multiclass(n=500, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    Z = rng.normal(size=(4, n, k))
    Z[:, np.arange(n), y] += np.array([1.5, 1.0, 0.5, 0.0])[:, None]
    return np.exp(Z) / np.exp(Z).sum(axis=2, keepdims=True), y, rng.integers(0, 5, n)


def _regression(n=500, seed=0):
    rng = np.random.default_rng(seed)
    y = 10 + 3 * rng.normal(size=n)
    P = (y[None, :] + rng.normal(size=(4, n)) * np.array([1, 2, 3, 6])[:, None])[:, :, None]
    return P, y, rng.integers(0, 5, n)


CASES = {
    "binary": (_binary, "classification", 2),
    "multiclass": (_multiclass, "classification", 3),
    "regression": (_regression, "regression", 1),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("meta", META_LEARNERS)
@pytest.mark.parametrize("classwise", [False, True], ids=["plain", "classwise"])
def test_meta_learner_output_format_and_determinism(case, meta, classwise):
    make, problem, k = CASES[case]
    P, y, _ = make()
    factory = MetaFactory(meta, problem, k, seed=7, classwise=classwise)
    a = factory().fit(P, y)
    out = a.predict(P)
    assert out.shape == (P.shape[1], k)
    assert np.isfinite(out).all()
    if problem == "classification":
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-9)
        assert (out >= 0).all()
    np.testing.assert_allclose(factory().fit(P, y).predict(P), out)  # same seed, same model
    restored = pickle.loads(pickle.dumps(a))
    np.testing.assert_allclose(restored.predict(P[:, :7]), out[:7])


def test_linear_stacker_weights_are_non_negative_and_favour_the_strong_member():
    P, y, _ = _binary()
    s = LinearStacker("classification").fit(P, y)
    assert (s.coef_ >= 0).all()
    assert s.coef_[0] > s.coef_[3]
    # an anti-correlated member gets weight 0 instead of a negative weight
    P2 = np.concatenate([P, P[[0], :, ::-1]])
    s2 = LinearStacker("classification").fit(P2, y)
    assert s2.coef_[4] == pytest.approx(0.0, abs=1e-6)
    Pr, yr, _ = _regression()
    r = LinearStacker("regression").fit(Pr, yr)
    assert (r.coef_ >= 0).all() and r.coef_[0] == r.coef_.max()



@pytest.mark.parametrize("case", ["binary", "multiclass", "regression"])
def test_linear_stacker_above_max_rows_fits_on_the_seeded_stratified_subsample(case):
    """Above ``max_rows`` the fit is exactly the fit on ``selection_rows``' subsample (passthrough
    rows and weights taken alike), the subsample keeps each class's share, and at or below the cap
    every row is used."""
    from obsrv.service_tasks.ensembles.greedy import selection_rows

    make, problem, _ = CASES[case]
    P, y, _ = make(n=3000)
    extra = np.random.default_rng(3).normal(size=(len(y), 2))
    w = np.random.default_rng(4).uniform(0.5, 2.0, len(y))
    capped = LinearStacker(problem, max_rows=600, seed=5).fit(P, y, w, extra)
    rows = selection_rows(y, 600, 5)
    assert len(rows) == pytest.approx(600, abs=3) and len(np.unique(rows)) == len(rows)
    if problem == "classification":
        np.testing.assert_allclose(np.bincount(y[rows]) / len(rows), np.bincount(y) / len(y), atol=2e-3)
    direct = LinearStacker(problem, max_rows=None).fit(P[:, rows], y[rows], w[rows], extra[rows])
    np.testing.assert_allclose(capped.coef_, direct.coef_, atol=1e-8)
    np.testing.assert_allclose(capped.predict(P, extra), direct.predict(P, extra), atol=1e-8)
    full = LinearStacker(problem, max_rows=None).fit(P, y, w, extra)
    assert not np.allclose(capped.coef_, full.coef_, atol=1e-6)  # the cap did change the rows seen
    at_cap = LinearStacker(problem, max_rows=3000).fit(P, y, w, extra)
    np.testing.assert_allclose(at_cap.coef_, full.coef_, atol=1e-10)

def test_passthrough_features_enter_the_linear_stacker():
    P, y, _ = _binary()
    rng = np.random.default_rng(1)
    extra = np.column_stack([(2 * y - 1) + rng.normal(size=len(y)), rng.normal(size=len(y))])
    s = LinearStacker("classification").fit(P, y, extra=extra)
    assert s.extra_coef_.shape == (2, 2)
    with_extra = MetricLoss("logloss", "classification")(y, s.predict(P, extra))
    without = MetricLoss("logloss", "classification")(y, LinearStacker("classification").fit(P, y).predict(P))
    assert with_extra < without
    r = LinearStacker("regression").fit(*_regression()[:2], extra=extra[:, :1])
    assert r.extra_coef_.shape == (1, 1)


def test_classwise_binary_reduces_to_a_single_class_stack():
    P, y, _ = _binary()
    c = ClasswiseStacker("classification", MetaFactory("linear", "classification", 2)).fit(P, y)
    assert len(c.learners_) == 1
    np.testing.assert_allclose(c.predict(P), LinearStacker("classification").fit(P, y).predict(P), atol=1e-6)
    Pm, ym, _ = _multiclass()
    multi = ClasswiseStacker("classification", MetaFactory("linear", "classification", 2)).fit(Pm, ym)
    assert len(multi.learners_) == 3


class _Spy:
    """Records which labels the combiner was fit on."""

    seen: list[np.ndarray] = []

    def fit(self, P, y, w=None, extra=None):
        _Spy.seen.append(P[0, :, 1].copy())
        return self

    def predict(self, P, extra=None):
        return P[0]


def test_nested_oof_never_fits_on_the_held_fold():
    P, y, folds = _binary()
    P = P.copy()
    P[0, :, 1] = np.arange(len(y))  # tag each row
    _Spy.seen = []
    nested_oof(_Spy, P, y, folds)
    for f, seen in zip(sorted(np.unique(folds)), _Spy.seen):
        assert not set(seen.astype(int)) & set(np.flatnonzero(folds == f))
        assert set(seen.astype(int)) == set(np.flatnonzero(folds != f))


def test_leak_pure_noise_honest_stack_stays_near_half_auc():
    """Pure-noise labels, members that memorise their training rows (deep forests, 1-NN).

    Honest pipeline (member OOF on shared folds + nested meta OOF): AUC ~ 0.5. The leaky pipeline
    (meta fit and scored on the members' in-sample predictions) scores far above 0.5: that is the
    leak this test would catch if OOF and in-sample were ever mixed up.
    """
    rng = np.random.default_rng(0)
    n = 800
    X = pd.DataFrame(rng.normal(size=(n, 6)), columns=list("abcdef"))
    y = rng.integers(0, 2, n)
    folds = rng.permutation(np.arange(n) % 5)
    members = [("random_forest", {"min_samples_leaf": 1, "n_estimators": 60}),
               ("knn", {"n_neighbors": 1, "weights": "uniform"}),
               ("extra_trees", {"min_samples_leaf": 1, "n_estimators": 60})]
    oof = np.zeros((len(members), n, 2))
    insample = np.zeros((len(members), n, 2))
    for j, (fam, params) in enumerate(members):
        for f in range(5):
            held = folds == f
            m = ZooLearner(fam, "classification", 2, params, seed=j).fit(X[~held], y[~held])
            oof[j, held] = m.predict_matrix(X[held])
        insample[j] = ZooLearner(fam, "classification", 2, params, seed=j).fit(X, y).predict_matrix(X)
    for meta in META_LEARNERS:
        factory = MetaFactory(meta, "classification", 2)
        honest = nested_oof(factory, oof, y, folds)
        auc = roc_auc_score(y, honest[:, 1])
        assert 0.42 < auc < 0.58, (meta, auc)
        leaky = factory().fit(insample, y).predict(insample)
        assert roc_auc_score(y, leaky[:, 1]) > 0.8
    guard = dynamic_stack(MetaFactory("linear", "classification", 2), oof, y, folds,
                          MetricLoss("auc", "classification"), metric_name="auc", greater_is_better=True)
    assert 0.42 < roc_auc_score(y, guard.oof[:, 1]) < 0.58


def test_guard_falls_back_to_greedy_with_a_note():
    # a lightgbm meta-learner on a tiny set loses to GES; the note says so with both figures
    P, y, folds = _binary(n=120, seed=4)
    res = dynamic_stack(MetaFactory("lightgbm", "classification", 2), P, y, folds,
                        MetricLoss("auc", "classification"), metric_name="auc", greater_is_better=True)
    assert res.used == "greedy"
    assert res.note is not None and res.note.startswith("stacking lost to greedy selection on nested OOF (auc ")
    assert res.note.endswith("; using greedy selection")
    assert f"{-res.stack_loss:.5f} vs {-res.greedy_loss:.5f}" in res.note
    assert res.oof.shape == (120, 2) and np.isfinite(res.oof).all()


def test_guard_keeps_a_winning_stack():
    # members are miscalibrated (over-confident by x4): the logit GLM re-scales them, GES cannot
    P, y, folds = _binary(n=1500, seed=2)
    z = np.log(P[:, :, 1] / P[:, :, 0]) * 4
    p = 1 / (1 + np.exp(-z))
    Pm = np.stack([1 - p, p], axis=2)
    res = dynamic_stack(MetaFactory("linear", "classification", 2), Pm, y, folds,
                        MetricLoss("logloss", "classification"))
    assert res.used == "stack" and res.note is None
    assert res.stack_loss < res.greedy_loss
    assert isinstance(res.combiner, LinearStacker)


def test_lightgbm_stacker_handles_a_missing_class_in_training():
    P, y, _ = _multiclass()
    keep = y != 2
    s = LightGBMStacker("classification", n_classes=3).fit(P[:, keep], y[keep])
    out = s.predict(P)
    assert out.shape == (len(y), 3)
    assert (out[:, 2] < 0.01).all()
