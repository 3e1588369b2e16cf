import pickle

import numpy as np
import pandas as pd
import pytest
from obsrv.service_tasks.ensembles.base import MetricLoss
from obsrv.service_tasks.ensembles.learners import FamilyFactory
from obsrv.service_tasks.ensembles.routing import (
    GLOBAL_ROUTE,
    ClusterRouter,
    ExternalRouter,
    FeatureRouter,
    RoutedPredictor,
    Router,
    best_blend_weight,
    nested_blend,
    routed_cv,
)
from obsrv.service_tasks.errors import TaskError
from sklearn.metrics import roc_auc_score

pytestmark = pytest.mark.slow  # per-route fits on every shared fold

AUC = MetricLoss("auc", "classification")


def cluster_data(n: int, heterogeneous: bool, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Three well-separated clusters in (l0, l1); in heterogeneous data the label depends on a
    different feature (and sign) in each cluster, in homogeneous data on the same features everywhere."""
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 3, n)
    loc = np.array([[0, 0], [6, 0], [0, 6]])[c] + rng.normal(size=(n, 2))
    F = rng.normal(size=(n, 4))
    if heterogeneous:
        coef = np.array([[2.5, 0, 0, -1], [0, 2.5, 0, 1], [0, 0, 2.5, -1]])
        z = (F * coef[c]).sum(axis=1)
    else:
        z = 1.5 * F[:, 0] - F[:, 1]
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int64)
    X = pd.DataFrame(np.column_stack([loc, F]), columns=["l0", "l1", "f0", "f1", "f2", "f3"])
    return X, y, c


def _run(X, y, family, router=lambda: ClusterRouter("kmeans", 3), min_size=50):
    folds = np.arange(len(y)) % 5
    params = None if family == "linear" else (("max_iter", 80),)
    res = routed_cv(X, y, folds, router, FamilyFactory(family, "classification", 2, params), min_size)
    alpha, blend, per_fold = nested_blend(res.oof_routed, res.oof_global, y, folds, AUC)
    return res, alpha, blend, per_fold


def test_route_cluster_beats_the_global_model_on_heterogeneous_data():
    X, y, _ = cluster_data(1500, True)
    res, alpha, blend, _ = _run(X, y, "linear")
    routed, glob = roc_auc_score(y, res.oof_routed[:, 1]), roc_auc_score(y, res.oof_global[:, 1])
    print(f"heterogeneous: routed {routed:.4f} global {glob:.4f} blend {roc_auc_score(y, blend[:, 1]):.4f}")
    assert routed > glob + 0.05
    assert alpha >= 0.8
    assert roc_auc_score(y, blend[:, 1]) > glob + 0.05


def test_route_cluster_does_not_lose_on_homogeneous_data():
    X, y, _ = cluster_data(1500, False)
    res, alpha, blend, per_fold = _run(X, y, "linear")
    glob, b = roc_auc_score(y, res.oof_global[:, 1]), roc_auc_score(y, blend[:, 1])
    print(f"homogeneous: routed {roc_auc_score(y, res.oof_routed[:, 1]):.4f} global {glob:.4f} blend {b:.4f} "
          f"weights {per_fold}")
    assert b >= glob - 0.005


def test_small_routes_fall_back_to_the_global_model():
    X, y, _ = cluster_data(300, True)
    res, *_ = _run(X, y, "linear", min_size=10_000)
    assert res.n_routed_per_fold == [0] * 5
    np.testing.assert_allclose(res.oof_routed, res.oof_global)


class _SpyRouter(Router):
    fitted_on: list[set] = []

    def fit(self, X):
        _SpyRouter.fitted_on.append(set(X["rid"].astype(int)))
        return self

    def predict(self, X):
        return (X["rid"].to_numpy() % 2).astype(np.int64)


def test_router_and_route_models_are_fit_on_training_folds_only(monkeypatch):
    """Per fold: one router fit, then the global model and one model per route (rid % 2), each on
    the other folds' rows only (the route models on their route's rows among them)."""
    from obsrv.service_tasks.ensembles.learners import ZooLearner

    X, y, _ = cluster_data(400, True)
    X = X.assign(rid=np.arange(len(X)))
    folds = np.arange(len(y)) % 4
    _SpyRouter.fitted_on = []
    models_fit_on: list[set] = []
    fit = ZooLearner.fit

    def spy(self, X, y, w=None):
        models_fit_on.append(set(X.index))  # routed_cv keeps row positions as the index
        return fit(self, X, y, w)

    monkeypatch.setattr(ZooLearner, "fit", spy)
    routed_cv(X, y, folds, _SpyRouter, FamilyFactory("linear", "classification", 2), 10,
              learner_columns=["f0", "f1", "f2", "f3"])
    assert len(_SpyRouter.fitted_on) == 4  # one router per fold: the loop below ran
    assert len(models_fit_on) == 4 * 3  # per fold: the global model, then routes 0 and 1
    rows = np.arange(len(y))
    for f, seen in enumerate(_SpyRouter.fitted_on):
        train = rows[folds != f]
        assert seen == set(train)
        glob, route0, route1 = models_fit_on[3 * f: 3 * f + 3]
        assert glob == set(train)
        assert route0 == set(train[train % 2 == 0]) and route1 == set(train[train % 2 == 1])


def test_feature_router_sends_unseen_and_missing_values_to_global():
    X = pd.DataFrame({"seg": ["a", "b", "a", None]})
    r = FeatureRouter("seg").fit(X)
    out = r.predict(pd.DataFrame({"seg": ["b", "zzz", None, "a"]}))
    assert out.tolist() == [1, GLOBAL_ROUTE, GLOBAL_ROUTE, 0]
    assert r.predict(pd.DataFrame({"other": [1]})).tolist() == [GLOBAL_ROUTE]


def test_external_router_missing_keys_go_to_global():
    table = pd.DataFrame({"cust": [1, 2, 3, 3], "region": ["n", "s", "n", "s"]})
    r = ExternalRouter.from_table(table, "cust", "region")
    X = pd.DataFrame({"cust": [1, 2, 3, 4]})
    r.fit(X)
    assert r.predict(X).tolist() == [0, 1, 0, GLOBAL_ROUTE]  # duplicate key 3 keeps its first row
    # keys agree across dtypes (an int key column that met a NaN is float); NaN -> global
    assert r.predict(pd.DataFrame({"cust": [1.0, np.nan, 2.0]})).tolist() == [0, GLOBAL_ROUTE, 1]
    assert r.predict(pd.DataFrame({"cust": ["3"]})).tolist() == [0]
    with pytest.raises(TaskError, match=r"routes_tbl has no column 'zone' \(route.external.column\).*Set route"):
        ExternalRouter.from_table(table, "cust", "zone", table_name="routes_tbl")


@pytest.mark.parametrize("method", ["kmeans", "agglomerative", "gmm"])
def test_cluster_routers_assign_new_rows(method):
    X, _, c = cluster_data(600, True)
    X = X.assign(kind=np.where(X.l0 > 3, "x", "y"))
    r = ClusterRouter(method, 3, ["kind"], seed=1, max_fit_rows=300).fit(X)
    labels = r.predict(X)
    assert labels.shape == (600,) and set(labels) <= {0, 1, 2}
    # the well-separated clusters are recovered (up to label permutation)
    agree = max(np.mean(labels[c == k] == np.bincount(labels[c == k]).argmax()) for k in range(3))
    assert agree > 0.9
    again = ClusterRouter(method, 3, ["kind"], seed=1, max_fit_rows=300).fit(X).predict(X)
    np.testing.assert_array_equal(again, labels)
    assert r.predict(X.iloc[:1]).shape == (1,)


def test_blend_weight_and_predictor():
    X, y, _ = cluster_data(600, True, seed=3)
    folds = np.arange(len(y)) % 3
    res = routed_cv(X, y, folds, lambda: ClusterRouter("kmeans", 3), FamilyFactory("linear", "classification", 2),
                    30, X_holdout=X.iloc[:40])
    assert res.holdout_routed.shape == (40, 2)
    assert best_blend_weight(res.oof_global, res.oof_global, y, AUC) == 0.0  # ties -> the global model
    pred = pickle.loads(pickle.dumps(RoutedPredictor(res.bundles, 1.0)))
    np.testing.assert_allclose(pred.predict_matrix(X.iloc[:40]), res.holdout_routed)
    np.testing.assert_allclose(RoutedPredictor(res.bundles, 0.0).predict_matrix(X.iloc[:40]), res.holdout_global)


def test_a_route_with_an_all_missing_column_still_trains():
    """Routing by income band leaves the "unknown income" route without any income value."""
    from obsrv.service_tasks.ensembles.learners import ZooLearner

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=60), "income": np.full(60, np.nan), "k": ["u", "v"] * 30})
    y = (X.a > 0).astype(int).to_numpy()
    for family in ("hist_gbm", "linear"):
        m = ZooLearner(family, "classification", 2).fit(X, y)
        full = X.assign(income=rng.normal(size=60))  # serving rows may have the column filled
        assert m.predict_matrix(full).shape == (60, 2)
    one_class = ZooLearner("hist_gbm", "classification", 3).fit(X, np.full(60, 2))
    assert one_class.predict_matrix(X).argmax(axis=1).tolist() == [2] * 60


def test_a_deadline_bounds_every_per_route_fit_and_the_models_still_learn():
    """routed_cv with a deadline: the folds, then each fold's global and route models, share the time
    left; hist_gbm stops adding iterations at its share (at least MIN_ROUNDS) and still learns."""
    import time

    from obsrv.service_tasks.zoo import time_limits

    X, y, _ = cluster_data(1500, True)
    folds = np.arange(len(y)) % 5
    slow = FamilyFactory("hist_gbm", "classification", 2, (("max_iter", 5000), ("learning_rate", 0.01)))
    t0 = time.perf_counter()
    res = routed_cv(X, y, folds, lambda: ClusterRouter("kmeans", 3), slow, 50,
                    deadline=time_limits.Deadline(t0 + 1.5))
    models = [m for b in res.bundles for m in [b.global_model, *b.route_models.values()]]
    assert len(models) == 5 * 4  # a global and three route models per fold
    stopped = [m.model_.stopped_at_ for m in models]
    # every fit was cut short (no timing assertion: a loaded machine only changes where it stops)
    assert all(s is not None and time_limits.MIN_ROUNDS <= s < 5000 for s in stopped)
    assert roc_auc_score(y, res.oof_routed[:, 1]) > 0.7 and roc_auc_score(y, res.oof_global[:, 1]) > 0.6
    # without a deadline the same fits are not bounded by time
    quick = FamilyFactory("hist_gbm", "classification", 2, (("max_iter", 15),))
    free = routed_cv(X, y, folds, lambda: ClusterRouter("kmeans", 3), quick, 50)
    assert all(m.model_.stopped_at_ is None and m.time_limit_s is None
               for b in free.bundles for m in [b.global_model, *b.route_models.values()])
