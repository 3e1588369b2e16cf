"""The 11 task wrappers through an in-memory TaskContext (conftest.FakeContext)."""

import pickle

import numpy as np
import pandas as pd
import pydantic
import pytest
from obsrv.compiler import spec
from obsrv.service_tasks.ensembles import TASKS, run_task, tasks

from .conftest import fake_context

TASK_CONFIGS = {
    "stack_top_any": {"task": "stack_top_any", "stack": {"top_n": 4}},
    "stack_top_any_passthrough_lgbm": {"task": "stack_top_any",
                                       "stack": {"top_n": 3, "meta_learner": "lightgbm", "passthrough": True}},
    "stack_top_alg": {"task": "stack_top_alg", "stack": {"top_alg": 3}},
    "stack_blend": {"task": "stack_blend", "stack": {"top_n": 3, "blend_fraction": 0.3}},
    "stack_classwise": {"task": "stack_classwise", "stack": {"top_n": 3}},
    "boost": {"task": "boost", "boost": {"algorithms": ["gbm"], "trials": 1}},
    "vote_top_alg": {"task": "vote_top_alg", "vote": {"top_alg": 3}},
    "vote_mix_soft": {"task": "vote_mix", "vote": {"top_n": 3}},
    "vote_mix_hard": {"task": "vote_mix", "vote": {"top_n": 3, "mode": "hard"}},
    "vote_mix_rank": {"task": "vote_mix", "vote": {"top_n": 3, "mode": "rank"}},
    "vote_weight": {"task": "vote_weight", "vote": {"top_n": 5, "rounds": 25}},
    "route_cluster": {"task": "route_cluster", "route": {"cluster": {"kmeans": {"n_clusters": 3}}, "min_size": 40}},
    "route_cluster_agglomerative": {"task": "route_cluster",
                                    "route": {"cluster": {"agglomerative": {"n_clusters": 2}}, "min_size": 40}},
    "route_feature": {"task": "route_feature", "route": {"feature": {"column": "seg", "min_size": 40}}},
    "route_external": {"task": "route_external",
                       "route": {"external": {"table": "routes", "key": "seg", "column": "region", "min_size": 40}}},
}
ROUTES_TABLE = {"routes": pd.DataFrame({"seg": ["a", "b"], "region": ["north", "south"]})}  # "c" is missing


@pytest.fixture(autouse=True)
def _fast_routes(request, monkeypatch):
    """Per-route linear models only (fast); tests marked `both_route_families` keep the default."""
    if "both_route_families" not in request.keywords:
        monkeypatch.setattr(tasks, "ROUTE_FAMILIES", ("linear",))


def _run(setup, cfg, metric):
    data, pool, preds = setup
    ctx = fake_context(data, pool, preds, cfg, metric=metric, tables=ROUTES_TABLE)
    run_task(ctx)
    return ctx


def _check_outputs(ctx, data, atol=1e-6):
    assert ctx.published, "nothing published"
    k = data.n_outputs
    finals = [o for o in ctx.published if o.is_final]
    assert len(finals) >= 1
    for o in ctx.published:
        assert o.oof.shape == (len(data.y_train), k)
        assert o.holdout.shape == (len(data.y_holdout), k)
        assert np.isfinite(o.oof).all() and np.isfinite(o.holdout).all()
        if data.problem == "classification":
            np.testing.assert_allclose(o.oof.sum(axis=1), 1.0, atol=1e-6)
            np.testing.assert_allclose(o.holdout.sum(axis=1), 1.0, atol=1e-6)
        # the servable predictor is picklable and reproduces the published holdout from raw frames
        restored = pickle.loads(pickle.dumps(o.predictor))
        np.testing.assert_allclose(restored.predict_matrix(data.X_holdout), o.holdout, atol=atol)


def test_every_task_type_is_dispatched():
    assert set(TASKS) == set(spec.TASK_TYPES)


@pytest.mark.parametrize("name", list(TASK_CONFIGS))
def test_binary_task_outputs(binary_setup, name):
    cfg = TASK_CONFIGS[name]
    ctx = _run(binary_setup, cfg, "auc")
    data = binary_setup[0]
    # a rank is a step function: float noise of 1e-16 between the pool's holdout matrix and the
    # members' predictors re-run can move a value across one training reference point (1/n)
    _check_outputs(ctx, data, atol=3.0 / len(data.y_train) if cfg.get("vote", {}).get("mode") == "rank" else 1e-6)
    names = [o.name for o in ctx.published]
    if cfg["task"].startswith("route"):
        assert names == ["routed", "blend"]
        assert [o.is_final for o in ctx.published] == [False, True]
        assert "blend_weight" in ctx.published[1].params
        assert ctx.published[1].params["blend_global"]  # the best pool model or the family global
    if cfg["task"].startswith("stack"):
        assert names == ["stack"]
        assert any("stacking" in line for line in ctx.logs)


@pytest.mark.both_route_families
def test_route_cluster_writes_the_clustered_table(binary_setup):
    ctx = _run(binary_setup, TASK_CONFIGS["route_cluster"], "auc")
    data = binary_setup[0]
    (name, table), = [(k, v) for k, v in ctx.tables.items() if k not in ROUTES_TABLE]
    assert name == "main.s.training_data_clustered_wf1_route_cluster"
    assert list(table.columns) == ["obsrv_row_id", "cluster"]
    assert sorted(table.obsrv_row_id) == sorted(np.concatenate([data.row_ids_train, data.row_ids_holdout]))
    assert set(table.cluster) <= {0, 1, 2}
    # both families were tried; the published family is the better nested blend
    assert ctx.published[1].params["families_tried"] == ["hist_gbm", "linear"]
    assert any(k.startswith("oof_auc/blend/hist_gbm") for k in ctx.published[1].metrics)


def test_route_external_missing_keys_use_the_global_model(binary_setup):
    ctx = _run(binary_setup, TASK_CONFIGS["route_external"], "auc")
    data = binary_setup[0]
    routed = ctx.published[0]
    bundle = routed.predictor.bundles[0]
    rows_c = (data.X_holdout.seg == "c").to_numpy()
    routes = bundle.routes(data.X_holdout)
    assert (routes[rows_c] == -1).all() and (routes[~rows_c] >= 0).all()
    r, g = bundle.predict_both(data.X_holdout)
    np.testing.assert_allclose(r[rows_c], g[rows_c])


def test_vote_weight_logs_its_weights(binary_setup):
    ctx = _run(binary_setup, TASK_CONFIGS["vote_weight"], "auc")
    o = ctx.published[0]
    weights = o.params["weights"]
    assert sum(weights.values()) == pytest.approx(1.0)
    assert {k.removeprefix("weight/") for k in o.metrics if k.startswith("weight/")} == set(weights)


@pytest.mark.parametrize("name", ["stack_top_any", "vote_weight", "route_cluster"])
def test_determinism(binary_setup, name):
    a = _run(binary_setup, TASK_CONFIGS[name], "auc").published
    b = _run(binary_setup, TASK_CONFIGS[name], "auc").published
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.oof, y.oof)
        np.testing.assert_array_equal(x.holdout, y.holdout)


@pytest.mark.parametrize("name", ["stack_top_any", "stack_classwise", "stack_top_alg", "vote_mix_rank",
                                  "vote_mix_hard", "vote_weight", "route_cluster"])
def test_multiclass_tasks(multiclass_setup, name):
    ctx = _run(multiclass_setup, TASK_CONFIGS[name], "logloss")
    _check_outputs(ctx, multiclass_setup[0], atol=0.02 if "rank" in name else 1e-6)


@pytest.mark.parametrize("name", ["stack_top_any", "stack_blend", "stack_classwise", "vote_mix_rank", "vote_weight",
                                  "boost", "route_feature"])
def test_regression_tasks(regression_setup, name):
    ctx = _run(regression_setup, TASK_CONFIGS[name], "rmse")
    _check_outputs(ctx, regression_setup[0], atol=0.1 if "rank" in name else 1e-6)


def test_threshold_primary_metric_makes_combiners_optimise_logloss(binary_setup):
    ctx = _run(binary_setup, TASK_CONFIGS["stack_top_any"], "accuracy")
    o = ctx.published[0]
    assert any(k.startswith("nested_oof_logloss/") for k in o.metrics)


def test_invalid_config_is_rejected_by_the_spec_models(binary_setup):
    with pytest.raises(pydantic.ValidationError):
        _run(binary_setup, {"task": "vote_weight", "vote": {"rounds": 0}}, "auc")
    with pytest.raises(pydantic.ValidationError):
        _run(binary_setup, {"task": "stack_top_any", "stack": {"bogus": 1}}, "auc")


def test_unknown_stage(binary_setup):
    data, pool, preds = binary_setup
    ctx = fake_context(data, pool, preds, TASK_CONFIGS["vote_weight"], metric="auc")
    object.__setattr__(ctx.request, "stage", "nope")
    with pytest.raises(ValueError, match="unknown ensemble task type 'nope'"):
        run_task(ctx)


def test_route_feature_rejects_a_non_feature_column(binary_setup):
    with pytest.raises(ValueError, match="not a feature column"):
        _run(binary_setup, {"task": "route_feature", "route": {"feature": {"column": "zzz"}}}, "auc")
