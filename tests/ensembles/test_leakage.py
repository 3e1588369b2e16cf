"""Two promises of every ensemble task, checked for every task configuration through the task
wrappers (what ``obsrv-task`` runs), on one shared pool of pure noise:

- the published OOF is honest: labels independent of the features, so any OOF AUC far from 0.5 can
  only come from a combiner (or a per-route, boosted or re-fit model) that scored rows it was fit on;
- no combiner reads the holdout labels: the same run with the holdout labels shuffled publishes
  identical outputs (OOF, holdout, params, metrics, notes, tables, and the fitted predictor's output).

The pool's members can memorise their training rows (1-NN-like knn, deep forests), so a leak is
large, not a shade above chance. ``test_stacking.py`` tests the stacking helpers alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pytest
from obsrv.service_tasks.ensembles import route_tasks, run_task
from sklearn.metrics import roc_auc_score

from support.ensemble_pool import FakeContext, fake_context, make_pool, make_prepared
from .test_tasks import ROUTES_TABLE, TASK_CONFIGS

pytestmark = pytest.mark.slow  # runs every task configuration twice on a noise pool

NOISE_POOL = [("linear", {}), ("knn", {"n_neighbors": 2}), ("hist_gbm", {"max_iter": 30}),
              ("random_forest", {"n_estimators": 30, "min_samples_leaf": 1}),
              ("extra_trees", {"n_estimators": 30, "min_samples_leaf": 1})]
HONEST_AUC = (0.42, 0.58)  # ~3.4 standard deviations of a chance AUC on 400 rows either side of 0.5


@pytest.fixture(autouse=True)
def _cheap_and_clock_free(monkeypatch):
    """Per-route linear models only, one trial per search, and nothing that depends on the clock."""
    monkeypatch.setattr(route_tasks, "ROUTE_FAMILIES", ("linear",))
    monkeypatch.setenv("OBSRV_MAX_TRIALS", "1")


@pytest.fixture(scope="module")
def noise():
    """Pure noise: 500 rows, five numeric features and the routing column ``seg``, labels drawn
    independently of them; the pool is cross-fit on the shared folds as the base tasks do."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(11)
    n = 500
    X = pd.DataFrame(rng.normal(size=(n, 5)), columns=[f"x{i}" for i in range(5)])
    X["seg"] = rng.choice(["a", "b", "c"], size=n)
    y = rng.integers(0, 2, n).astype(np.int64)
    data = make_prepared(X, y, problem="classification", seed=11)
    with threadpool_limits(limits=1):
        pool, predictors = make_pool(data, NOISE_POOL, "auc")
    return data, pool, predictors


@pytest.fixture(scope="module")
def noise_runs(noise):
    """Each configuration's run on the noise pool, run once for the module (read, never changed)."""
    done: dict[str, FakeContext] = {}

    def run(name: str) -> FakeContext:
        if name not in done:
            done[name] = _run(noise[0], noise, name)
        return done[name]

    return run


def _run(data, noise, name: str) -> FakeContext:
    _, pool, predictors = noise
    ctx = fake_context(data, pool, predictors, TASK_CONFIGS[name], metric="auc", tables=ROUTES_TABLE)
    run_task(ctx)
    return ctx


def test_the_noise_pool_is_honest(noise):
    data, pool, _ = noise
    for name, oof in zip(pool.models, pool.oof):
        assert HONEST_AUC[0] < roc_auc_score(data.y_train, oof[:, 1]) < HONEST_AUC[1], name


@pytest.mark.parametrize("name", list(TASK_CONFIGS))
def test_published_oof_is_honest_on_pure_noise(noise_runs, noise, name):
    data = noise[0]
    ctx = noise_runs(name)
    assert ctx.published
    for o in ctx.published:  # every output: routed and blend, boosters and their selection
        auc = roc_auc_score(data.y_train, o.oof[:, 1])
        assert HONEST_AUC[0] < auc < HONEST_AUC[1], f"{name}/{o.name}: OOF AUC {auc:.3f} on pure noise"


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN == NaN (a metric or param may be NaN on noise); timings (``*seconds``) are the
    clock's, not the labels', and only need to be there in both."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a if not str(k).endswith("seconds"))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (np.isnan(a) and np.isnan(b))
    return bool(a == b)


# every task type and combiner; the soft and hard votes learn nothing, and agglomerative routing
# differs from kmeans routing only in its label-free clusterer
HOLDOUT_BLIND = [n for n in TASK_CONFIGS if n not in ("vote_mix_soft", "vote_mix_hard", "route_cluster_agglomerative")]


@pytest.mark.parametrize("name", HOLDOUT_BLIND)
def test_holdout_labels_never_reach_a_combiner(noise_runs, noise, name):
    data = noise[0]
    shuffled_y = np.random.default_rng(3).permutation(data.y_holdout)
    assert (shuffled_y != data.y_holdout).mean() > 0.3
    shuffled = _run(dataclasses.replace(data, y_holdout=shuffled_y), noise, name)
    original = noise_runs(name)
    assert [o.name for o in shuffled.published] == [o.name for o in original.published]
    for a, b in zip(original.published, shuffled.published):
        np.testing.assert_array_equal(a.oof, b.oof, err_msg=f"{name}/{a.name} oof")
        np.testing.assert_array_equal(a.holdout, b.holdout, err_msg=f"{name}/{a.name} holdout")
        assert a.is_final == b.is_final
        assert _same(a.params, b.params), f"{name}/{a.name} params"
        assert _same(a.metrics, b.metrics), f"{name}/{a.name} metrics"
        assert a.notes == b.notes, f"{name}/{a.name} notes"
        # the fitted combiner itself: the same output on new rows
        np.testing.assert_array_equal(a.predictor.predict_matrix(data.X_holdout),
                                      b.predictor.predict_matrix(data.X_holdout), err_msg=f"{name}/{a.name}")
    assert original.tables.keys() == shuffled.tables.keys()
    for table, df in original.tables.items():
        pd.testing.assert_frame_equal(df, shuffled.tables[table])
