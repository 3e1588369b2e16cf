"""Large-table caps: forests lower n_estimators to fit memory, kNN fits on a bounded sample."""

from __future__ import annotations

import numpy as np
import pytest

from obsrv.service_tasks.zoo import resource_caps
from obsrv.service_tasks import metrics as M
from obsrv.service_tasks import zoo

from support.runtime_helpers import synthetic

pytestmark = pytest.mark.slow  # fits forests and kNN on capped tables


def _binary(n: int = 600):
    df = synthetic("binary", n=n, seed=3)
    y = (df.pop("label") == "yes").to_numpy().astype(np.int64)
    return df, y, np.arange(n) % 3


def _tree_bytes(tree) -> int:
    t = tree.tree_
    return t.node_count * (64 + 8 * t.value.shape[1] * t.value.shape[2])


@pytest.mark.parametrize("family", ["random_forest", "extra_trees"])
@pytest.mark.parametrize("min_leaf", [1, 3])
def test_tree_size_estimate_bounds_the_real_tree_and_is_not_loose(family: str, min_leaf: int) -> None:
    X, y, folds = _binary()
    params = {"n_estimators": 10, "min_samples_leaf": min_leaf, "max_features": "sqrt"}
    fit = zoo.fit_family(zoo.FitRequest(family, X, y, folds, problem="classification", n_classes=2, budget_seconds=0, seed=0,
                         params=params))
    est = fit.predictor.models_[0].estimator_[-1]
    n_train = int((folds != 0).sum())
    bound = resource_caps.forest_tree_bytes(params, n_train, 2, bootstrap_default=family == "random_forest")
    sizes = [_tree_bytes(t) for t in est.estimators_]
    assert max(sizes) <= bound
    assert np.mean(sizes) >= bound / 4  # a bound that is useful, not just safe


def test_max_depth_bounds_the_estimate() -> None:
    deep = resource_caps.forest_tree_bytes({"min_samples_leaf": 1}, 1_000_000, 2, bootstrap_default=False)
    shallow = resource_caps.forest_tree_bytes({"min_samples_leaf": 1, "max_depth": 8}, 1_000_000, 2,
                                              bootstrap_default=False)
    assert shallow == (2 * 2**8 - 1) * (64 + 16) and deep > 1000 * shallow


def test_cap_lowers_n_estimators_only_when_the_bag_would_not_fit() -> None:
    params = {"n_estimators": 150, "min_samples_leaf": 2}
    same, note = resource_caps.cap_forest_trees("extra_trees", params, n_train=64_000, n_values=2, n_folds=5,
                                                limit_bytes=24 * 2**30)
    assert same is params and note is None  # 100k-row tables keep the default forest
    capped, note = resource_caps.cap_forest_trees("extra_trees", params, n_train=640_000, n_values=2, n_folds=5,
                                                  limit_bytes=24 * 2**30)
    per_tree = resource_caps.forest_tree_bytes(params, 640_000, 2, bootstrap_default=False)
    assert capped["n_estimators"] == int(0.2 * 24 * 2**30 // (5 * per_tree)) < 150
    assert 5 * capped["n_estimators"] * per_tree <= 0.2 * 24 * 2**30
    assert params["n_estimators"] == 150  # the caller's dict is not changed
    assert note is not None and "n_estimators 150 -> " in note and "24.0 GiB" in note
    tiny, _ = resource_caps.cap_forest_trees("random_forest", params, n_train=640_000, n_values=2, n_folds=5,
                                             limit_bytes=2**20)
    assert tiny["n_estimators"] == resource_caps.MIN_FOREST_TREES
    other, note = resource_caps.cap_forest_trees("lightgbm", {"n_estimators": 1000}, n_train=10**7, n_values=2,
                                                 n_folds=5, limit_bytes=1)
    assert other == {"n_estimators": 1000} and note is None


def test_memory_limit_is_positive_and_at_most_physical() -> None:
    import os

    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < resource_caps.memory_limit_bytes() <= physical


def test_search_logs_the_cap_and_trains_and_publishes_the_capped_forest(monkeypatch) -> None:
    X, y, folds = _binary()
    monkeypatch.setattr(resource_caps, "FOREST_MEMORY_SHARE", 1e-6)  # nothing fits: the minimum
    lines: list[str] = []
    fit = zoo.search_family(zoo.FitRequest("random_forest", X, y, folds, problem="classification", n_classes=2,
                                             budget_seconds=0, seed=0), log=lines.append)[0]
    assert fit.params["n_estimators"] == resource_caps.MIN_FOREST_TREES
    assert fit.trials[0]["params"]["n_estimators"] == resource_caps.MIN_FOREST_TREES
    assert all(len(m.estimator_[-1].estimators_) == resource_caps.MIN_FOREST_TREES for m in fit.predictor.models_)
    assert any("random_forest: n_estimators 150 -> 8" in line for line in lines)


def _cap_knn(monkeypatch, rows: int) -> None:
    # patch the globals FamilyModel.fit actually reads: an in-process by-value unpickle of a logged
    # model (other tests) rebinds the class's methods to a copy of the module's globals
    monkeypatch.setitem(zoo.FamilyModel.fit.__globals__, "KNN_MAX_FIT_ROWS", rows)


def test_knn_fits_on_a_bounded_seeded_sample(monkeypatch) -> None:
    X, y, folds = _binary(900)
    _cap_knn(monkeypatch, 200)
    a = zoo.fit_family(zoo.FitRequest("knn", X, y, folds, problem="classification", n_classes=2, budget_seconds=0, seed=0))
    b = zoo.fit_family(zoo.FitRequest("knn", X, y, folds, problem="classification", n_classes=2, budget_seconds=0, seed=0))
    assert [m.fit_rows_ for m in a.predictor.models_] == [200, 200, 200]
    assert all(m.estimator_[-1].n_samples_fit_ == 200 for m in a.predictor.models_)
    np.testing.assert_array_equal(a.oof, b.oof)  # seeded
    auc = M.score("auc", y, a.oof, problem="classification")
    assert auc > 0.7  # still a real model on the sample


def test_knn_sample_missing_a_class_still_predicts_every_class(monkeypatch) -> None:
    X, y, folds = _binary(900)
    y = y.copy()
    y[:] = 0
    y[:2] = 1  # a class so rare the sample will likely miss it
    _cap_knn(monkeypatch, 50)
    fit = zoo.fit_family(zoo.FitRequest("knn", X, y, folds, problem="classification", n_classes=2, budget_seconds=0, seed=0))
    assert fit.oof.shape == (900, 2) and np.isfinite(fit.oof).all()
    np.testing.assert_allclose(fit.oof.sum(axis=1), 1.0)
