"""The 11 task wrappers through an in-memory TaskContext (conftest.FakeContext)."""

import dataclasses
import pickle

import numpy as np
import pandas as pd
import pydantic
import pytest
from obsrv.compiler import spec
from obsrv.service_tasks.ensembles import TASKS, job, route_tasks, run_task, stack_tasks
from obsrv.service_tasks.ensembles.base import FrameEncoder
from obsrv.service_tasks.ensembles.learners import ZooLearner
from obsrv.service_tasks.errors import TaskError
from sklearn.metrics import roc_auc_score

from support.ensemble_pool import fake_context, make_pool, make_prepared

pytestmark = pytest.mark.slow  # builds model pools and runs every task type

TASK_CONFIGS = {
    "stack_top_any": {"task": "stack_top_any", "stack": {"top_n": 4}},
    "stack_top_any_passthrough_lgbm": {"task": "stack_top_any",
                                       "stack": {"top_n": 3, "meta_learner": "lightgbm", "passthrough": True}},
    "stack_top_any_level2": {"task": "stack_top_any",
                             "stack": {"top_n": 3, "meta_learner": "lightgbm_full", "passthrough": True}},
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
        monkeypatch.setattr(route_tasks, "ROUTE_FAMILIES", ("linear",))  # what _route reads


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


@pytest.mark.parametrize("name", list(TASK_CONFIGS))
def test_every_task_runs_without_a_holdout(binary_no_holdout_setup, name):
    """``context.holdout: 0``: each task trains on every row, publishes an empty holdout matrix and a
    predictor that still serves (here: on training rows)."""
    data = binary_no_holdout_setup[0]
    assert len(data.y_holdout) == 0 and len(data.X_holdout) == 0
    ctx = _run(binary_no_holdout_setup, TASK_CONFIGS[name], "auc")
    assert ctx.published
    for o in ctx.published:
        assert o.oof.shape == (len(data.y_train), 2) and o.holdout.shape == (0, 2)
        assert np.isfinite(o.oof).all()
        assert roc_auc_score(data.y_train, o.oof[:, 1]) > 0.7, o.name
        served = pickle.loads(pickle.dumps(o.predictor)).predict_matrix(data.X_train.head(20))
        assert served.shape == (20, 2)
        np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.both_route_families
def test_route_cluster_writes_the_clustered_table(binary_setup):
    ctx = _run(binary_setup, TASK_CONFIGS["route_cluster"], "auc")
    data = binary_setup[0]
    (name, table), = [(k, v) for k, v in ctx.tables.items() if k not in ROUTES_TABLE]
    assert name == "main.s.training_data_clustered_wf1_route_cluster"
    assert list(table.columns) == ["obsrv_row_id", "cluster"]
    assert sorted(table.obsrv_row_id) == sorted(np.concatenate([data.row_ids_train, data.row_ids_holdout]))
    assert set(table.cluster) <= {0, 1, 2}
    # both families were tried (the default budget leaves time for both); the published family is
    # the better nested blend
    assert ctx.published[1].params["families_tried"] == ["hist_gbm", "linear"]
    assert ctx.published[1].params["families_skipped"] == []
    assert any(k.startswith("oof_auc/blend/hist_gbm") for k in ctx.published[1].metrics)


@pytest.mark.both_route_families
def test_a_spent_budget_skips_the_time_bound_route_family(binary_setup, monkeypatch):
    """The linear family (no time hook) fits first; when it has spent the task's whole budget,
    hist_gbm is skipped instead of fitting 10 iterations per fit over budget, and the skip is
    visible in the log, the params and the notes (with the default budget nothing is skipped:
    test_route_cluster_writes_the_clustered_table)."""
    monkeypatch.delenv("OBSRV_MAX_TRIALS", raising=False)  # a budget only binds without it
    data, pool, preds = binary_setup
    ctx = fake_context(data, pool, preds, TASK_CONFIGS["route_cluster"], metric="auc", budget=1e-3)
    run_task(ctx)
    blend = ctx.published[1]
    assert blend.params["families_tried"] == ["linear"] and blend.params["families_skipped"] == ["hist_gbm"]
    assert blend.params["model_family"] == "linear"
    assert not any("hist_gbm" in k for k in blend.metrics)
    assert "not tried for lack of time: hist_gbm" in blend.notes
    assert any("[hist_gbm]: skipped" in line for line in ctx.logs)
    _check_outputs(ctx, data)


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
    with pytest.raises(TaskError, match="not a feature column"):
        _run(binary_setup, {"task": "route_feature", "route": {"feature": {"column": "zzz"}}}, "auc")


# ------------------------------------------------------------------ review fixes (each failed before)

SOURCE = "main.s.training_data"  # conftest.context_dict's source table


def _with_ids(data, ids_train, ids_holdout):
    """PreparedData carrying the original id_column values (``ids_train``/``ids_holdout``: a runtime
    field; set as attributes while the runtime's PreparedData lacks it)."""
    names = {f.name for f in dataclasses.fields(data)}
    if {"ids_train", "ids_holdout"} <= names:
        return dataclasses.replace(data, ids_train=np.asarray(ids_train), ids_holdout=np.asarray(ids_holdout))
    out = dataclasses.replace(data)
    object.__setattr__(out, "ids_train", np.asarray(ids_train))
    object.__setattr__(out, "ids_holdout", np.asarray(ids_holdout))
    return out


def _route_on_id(setup, ids_train, ids_holdout, keys, *, tables=None, with_ids=True):
    """route_external joined on the source's id column ``cust``; the routing table maps the given
    ``keys`` of the rows of segments a and b to a region (segment c rows are missing)."""
    data, pool, preds = setup
    if with_ids:
        data = _with_ids(data, ids_train, ids_holdout)
    seg = pd.concat([data.X_train.seg, data.X_holdout.seg], ignore_index=True).to_numpy()
    keys = np.asarray(keys, dtype=object)
    routes = pd.DataFrame({"cust": keys[seg != "c"], "region": np.where(seg[seg != "c"] == "a", "north", "south")})
    cfg = {"task": "route_external",
           "route": {"external": {"table": "routes", "key": "cust", "column": "region", "min_size": 40}}}
    ctx = fake_context(data, pool, preds, cfg, metric="auc", id_column="cust",
                       tables={"routes": routes, **(tables or {})})
    run_task(ctx)
    return ctx, data


def test_route_external_joins_a_string_id_column_on_its_values_and_serves_the_key(binary_setup):
    data = binary_setup[0]
    ids_tr = np.array([f"C-{r:05d}" for r in data.row_ids_train], dtype=object)
    ids_ho = np.array([f"C-{r:05d}" for r in data.row_ids_holdout], dtype=object)
    ctx, data = _route_on_id(binary_setup, ids_tr, ids_ho, np.concatenate([ids_tr, ids_ho]))
    n_ab = int((data.X_train.seg != "c").sum())
    assert f"route_external: {n_ab} of {len(data.y_train)} training rows found a route in routes" in ctx.logs
    H = data.X_holdout.assign(cust=ids_ho)
    rows_ab = (data.X_holdout.seg != "c").to_numpy()
    for o in ctx.published:
        assert o.predictor.extra_input_columns == ["cust"]  # the served model takes the key
        restored = pickle.loads(pickle.dumps(o.predictor))
        np.testing.assert_allclose(restored.predict_matrix(H), o.holdout, atol=1e-6)
    routes = ctx.published[0].predictor.bundles[0].routes(H)
    assert (routes[rows_ab] >= 0).all() and (routes[~rows_ab] == -1).all()
    # served: the pyfunc passes the declared key through to the predictor (and requires it)
    from obsrv.service_tasks import tracking

    final = ctx.published[1]
    served = tracking.ObsrvPyfunc(data.problem, data.classes, data.feature_columns,
                                  extra_input_columns=final.predictor.extra_input_columns)
    served.predictor = pickle.loads(pickle.dumps(final.predictor))
    out = served.predict(None, H[["cust", *data.feature_columns]])
    np.testing.assert_allclose(out[[c for c in out.columns if c.startswith("probability_")]].to_numpy(),
                               final.holdout, atol=1e-6)
    with pytest.raises(ValueError, match="missing input columns: cust"):
        served.predict(None, data.X_holdout)


def test_route_feature_finds_a_column_prepare_renamed(binary_setup):
    data = binary_setup[0]
    renamed = dataclasses.replace(
        data, X_train=data.X_train.rename(columns={"seg": "seg_1"}),
        X_holdout=data.X_holdout.rename(columns={"seg": "seg_1"}),
        feature_columns=[c.replace("seg", "seg_1") for c in data.feature_columns],
        categorical_columns=["seg_1"], original_names={"seg_1": "seg"})
    ctx = fake_context(renamed, job._empty_pool(renamed), {}, TASK_CONFIGS["route_feature"], metric="auc")
    run_task(ctx)
    assert ctx.published[0].predictor.bundles[0].router.column == "seg_1"
    assert any(n > 0 for n in ctx.published[0].params["routes_with_model_per_fold"])


def test_route_external_on_a_non_integer_id_without_id_values_is_a_task_error(binary_setup):
    data = binary_setup[0]
    n = len(data.y_train) + len(data.y_holdout)
    source = pd.DataFrame({"cust": [f"C-{i:05d}" for i in range(n)]})
    with pytest.raises(TaskError, match=r"id_column 'cust'.*surrogate row numbers.*route.external.key"):
        _route_on_id(binary_setup, None, None, source.cust, tables={SOURCE: source}, with_ids=False)


def test_route_external_on_an_integer_id_without_id_values_joins_the_row_ids(binary_setup):
    data = binary_setup[0]
    n = len(data.y_train) + len(data.y_holdout)
    source = pd.DataFrame({"cust": np.arange(n, dtype=np.int64)})  # prepare kept them as the row ids
    keys = np.concatenate([data.row_ids_train, data.row_ids_holdout])
    ctx, data = _route_on_id(binary_setup, None, None, keys, tables={SOURCE: source}, with_ids=False)
    n_ab = int((data.X_train.seg != "c").sum())
    assert f"route_external: {n_ab} of {len(data.y_train)} training rows found a route in routes" in ctx.logs
    assert all(o.predictor.extra_input_columns == ["cust"] for o in ctx.published)


def test_route_external_on_a_feature_needs_no_extra_input(binary_setup):
    ctx = _run(binary_setup, TASK_CONFIGS["route_external"], "auc")
    assert all(o.predictor.extra_input_columns == [] for o in ctx.published)


@pytest.mark.parametrize("cfg, match", [
    ({"task": "route_feature", "route": {"feature": {"column": "zzz"}}},
     r"route.feature.column 'zzz' is not a feature column.*Set route.feature.column to one of: x0, "),
    ({"task": "route_feature", "route": {"feature": {"column": "cust"}}},
     r"'cust' is not a feature column: it is the source's id_column"),
    ({"task": "route_external", "route": {"external": {"table": "routes", "key": "zzz", "column": "region"}}},
     r"route.external.key 'zzz' is not a feature column.*declare it as the source's id_column"),
    ({"task": "route_external", "route": {"external": {"table": "routes", "key": "seg", "column": "zone"}}},
     r"routing table routes has no column 'zone' \(route.external.column\)"),
])
def test_user_errors_are_task_errors_that_say_what_to_change(binary_setup, cfg, match):
    data, pool, preds = binary_setup
    ctx = fake_context(data, pool, preds, cfg, metric="auc", id_column="cust", tables=ROUTES_TABLE)
    with pytest.raises(TaskError, match=match):
        run_task(ctx)


def test_an_empty_pool_is_a_task_error(binary_setup):
    data, pool, preds = binary_setup
    empty = job._empty_pool(data)
    ctx = fake_context(data, empty, {}, TASK_CONFIGS["stack_top_any"], metric="auc")
    with pytest.raises(TaskError, match=r"empty candidate pool: none of its upstream tasks published.*depends_on"):
        run_task(ctx)
    nan_pool = dataclasses.replace(pool, oof=np.full_like(pool.oof, np.nan))
    ctx = fake_context(data, nan_pool, preds, TASK_CONFIGS["vote_weight"], metric="auc")
    with pytest.raises(TaskError, match=r"all 5 published models had non-finite predictions"):
        run_task(ctx)


def test_stack_blend_without_base_models_is_a_task_error(binary_setup):
    data, pool, preds = binary_setup
    only_ensembles = dataclasses.replace(pool, families=["stack_top_any"] * len(pool.models))
    ctx = fake_context(data, only_ensembles, preds, TASK_CONFIGS["stack_blend"], metric="auc")
    with pytest.raises(TaskError, match=r"stack_blend re-fits base models.*stack_top_any or stack_top_alg"):
        run_task(ctx)


def test_stack_blend_refits_members_under_their_fold_models_time_limit(binary_setup, tmp_path):
    """Fold models trained under a time limit (`obsrv run --time-limit`): each re-fit member gets the
    longest of its fold models' limits, so it trains like them and takes no longer than one of them,
    instead of running its config to the end. Members whose fold models ran to the end re-fit as before.
    The members reach the task as published bags do in a task process: not zoo.FoldBag instances
    (obsrv's code is pickled by value with them), so the task must read their attributes."""
    import copy

    from obsrv.service_tasks import zoo

    data, pool, preds = binary_setup
    cfg = {"task": "stack_blend", "stack": {"top_n": 5, "blend_fraction": 0.3}}
    limited = copy.deepcopy(preds)  # the fixture is session-wide: never touch its bags
    timed = [n for n in pool.models if pool.families[pool.models.index(n)] in ("hist_gbm", "random_forest")]
    for n in timed:
        for f, m in enumerate(limited[n].models_):
            m.time_limit_s = 0.001 * f  # fold 0 had none left; the longest share is the re-fit's
    assert zoo.fit_time_limit(limited[timed[0]].models_) == pytest.approx(0.001 * (data.n_folds - 1))

    class PublishedBag:
        """A FoldBag unpickled in another process: the same attributes, another class."""

        def __init__(self, bag):
            self.models_, self.family, self.params = bag.models_, bag.family, bag.params

        def predict_matrix(self, X):
            return np.mean([m.predict_matrix(X) for m in self.models_], axis=0)

    packed = {n: PublishedBag(b) for n, b in limited.items()}
    ctx = fake_context(data, pool, packed, cfg, metric="auc")
    run_task(ctx)
    out = ctx.published[0]
    assert out.params["refit_time_limits"] == {n: round(0.001 * (data.n_folds - 1), 3) for n in timed}
    refit_logs = [line for line in ctx.logs if "under its fold models' time limit" in line]
    assert len(refit_logs) == len(timed) and all("time limit reached in 1 of 1 fits" in line for line in refit_logs)
    members = dict(zip(out.params["members"], out.predictor.members))
    for name, member in members.items():
        if name in timed:  # the limit stopped the re-fit early: fewer trees / iterations than configured
            assert member.time_limit_s == pytest.approx(0.001 * (data.n_folds - 1))
            assert member.model_.stopped_at_ is not None
            assert member.model_.stopped_at_ < 60
        else:
            assert member.time_limit_s is None and member.model_.stopped_at_ is None
    _check_outputs(ctx, data)

    # fold models that ran to the end: re-fit to the end, as before
    ctx = fake_context(data, pool, preds, cfg, metric="auc")
    run_task(ctx)
    assert ctx.published[0].params["refit_time_limits"] == {}
    assert all(m.time_limit_s is None and m.model_.stopped_at_ is None for m in ctx.published[0].predictor.members)


def test_a_refit_catboost_member_starts_at_the_rate_its_fold_models_pace_affords():
    """The pace a CatBoost member's fold models measured reaches its re-fit (``ZooLearner.pace_hint``):
    200 wanted rounds at 0.1 s each do not fit a 5 s limit, so the fit starts at 10 / 50 rounds = 0.2."""
    from obsrv.service_tasks.zoo import time_limits

    X, y = _small_binary()
    m = ZooLearner("catboost", "classification", 2, {"iterations": 200, "learning_rate": 0.03, "depth": 4},
                   time_limit_s=5.0, pace_hint=time_limits.Pace(0.0, 0.1)).fit(X, y)
    assert m.model_.paced_lr_ == pytest.approx(0.2)
    assert m.model_.estimator_.get_params()["learning_rate"] == pytest.approx(0.2)
    unpaced = ZooLearner("catboost", "classification", 2, {"iterations": 200, "learning_rate": 0.03, "depth": 4},
                         time_limit_s=5.0).fit(X, y)
    assert unpaced.model_.paced_lr_ is None


def _small_binary() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    return X, (X.a + 0.5 * rng.normal(size=300) > 0).astype(np.int64).to_numpy()


def test_blend_split_is_whole_folds_latest_last():
    folds = np.repeat(np.arange(5), 10)  # time folds: fold 4 is the latest block
    mask, ids = stack_tasks._blend_split(folds, 0.25, "time")
    assert ids == [3, 4] and mask.tolist() == (folds >= 3).tolist()
    assert stack_tasks._blend_split(folds, 0.06, "group")[1] == [3, 4]  # at least 2 folds: the guard nests over them
    assert stack_tasks._blend_split(folds, 0.79, "kfold")[1] == [1, 2, 3, 4]  # at most K - 1: blend-train remains
    with pytest.raises(TaskError, match=r"context.folds.* to 3 or more"):
        stack_tasks._blend_split(np.repeat(np.arange(2), 10), 0.25, "kfold")


@pytest.fixture(scope="module")
def group_noise_setup():
    """Labels that depend on the group only (a random rate per group), features that identify the
    group: a model that saw a group's rows predicts its other rows well, a model that did not is at
    chance. Folds are group folds (GroupKFold-like), so the pool's OOF AUC is ~0.5."""
    rng = np.random.default_rng(5)
    n_groups, size = 60, 10
    g = np.repeat(np.arange(n_groups), size)
    centre = rng.normal(size=(n_groups, 3))
    X = pd.DataFrame(centre[g] + 0.05 * rng.normal(size=(len(g), 3)), columns=["z0", "z1", "z2"])
    rate = rng.choice([0.1, 0.9], size=n_groups)
    y = (rng.random(len(g)) < rate[g]).astype(np.int64)
    data = make_prepared(X, y, problem="classification", n_folds=4, seed=5)
    group_fold = rng.permutation(np.arange(n_groups) % 4)
    data = dataclasses.replace(data, folds=group_fold[g[data.row_ids_train]].astype(np.int64))
    pool, preds = make_pool(data, [("knn", {"n_neighbors": 5}), ("extra_trees", {"n_estimators": 40})], "auc")
    return data, pool, preds, g[data.row_ids_train]


def test_stack_blend_keeps_groups_out_of_the_refit_members(group_noise_setup, monkeypatch):
    """Group folds: no group may be on both sides of the blend split, or the re-fit members have
    seen the blend rows' groups and the published OOF of the blend rows is optimistic."""
    data, pool, preds, groups = group_noise_setup
    assert 0.4 < roc_auc_score(data.y_train, pool.oof[0, :, 1]) < 0.6  # honest group-fold OOF
    fitted_on: list[set[int]] = []
    fit = ZooLearner.fit

    def spy(self, X, y, w=None):
        fitted_on.append(set(X.index))
        return fit(self, X, y, w)

    monkeypatch.setattr(ZooLearner, "fit", spy)
    ctx = fake_context(data, pool, preds, {"task": "stack_blend", "stack": {"top_n": 2, "blend_fraction": 0.3}},
                       metric="auc")
    run_task(ctx)
    blend_train = fitted_on[0]
    assert all(s == blend_train for s in fitted_on)
    train_groups = set(groups[sorted(blend_train)])
    blend_rows = np.setdiff1d(np.arange(len(groups)), sorted(blend_train))
    assert not train_groups & set(groups[blend_rows])
    o = ctx.published[0]
    assert sorted(o.params["blend_folds"]) == sorted(set(data.folds[blend_rows].tolist()))
    auc = roc_auc_score(data.y_train[blend_rows], o.oof[blend_rows, 1])
    assert auc < 0.62, f"blend-row OOF AUC {auc:.3f}: the re-fit members saw the blend rows' groups"


def test_passthrough_encoder_is_fit_inside_the_nested_folds(binary_setup, monkeypatch):
    """The passthrough encoding (medians, scales, top levels) of each nested fit comes from the
    other folds only; the final combiner's encoder from all training rows."""
    data = binary_setup[0]
    fitted_on: list[frozenset[int]] = []
    fit = FrameEncoder.fit

    def spy(self, X):
        fitted_on.append(frozenset(X.index))
        return fit(self, X)

    monkeypatch.setattr(FrameEncoder, "fit", spy)
    ctx = _run(binary_setup, {"task": "stack_top_any", "stack": {"top_n": 3, "passthrough": True}}, "auc")
    n = len(data.y_train)
    others = [frozenset(np.flatnonzero(data.folds != f).tolist()) for f in range(data.n_folds)]
    assert fitted_on[: data.n_folds] == others
    assert set(fitted_on[data.n_folds:]) <= {frozenset(range(n))}
    o = ctx.published[0]
    if o.params["combiner"] == "stack":
        from obsrv.service_tasks.ensembles.stacking import PassthroughCombiner

        assert isinstance(o.predictor.combiner, PassthroughCombiner) and o.predictor.passthrough
        np.testing.assert_allclose(o.predictor.predict_matrix(data.X_holdout), o.holdout, atol=1e-6)


# ------------------------------------------- spec names match columns ignoring case (issue 20, defect 0)


def test_route_feature_finds_its_column_ignoring_case(binary_setup):
    ctx = _run(binary_setup, {"task": "route_feature", "route": {"feature": {"column": "SEG"}}}, "auc")
    assert ctx.published[0].predictor.bundles[0].router.column == "seg"


def test_route_external_matches_the_id_column_and_the_routing_table_ignoring_case(binary_setup):
    """Spec `key: CUST`, `column: REGION`; the source's id column is `Cust` (PreparedData.id_column)
    and the routing table's columns are `Cust` and `Region`: the served key is the source's `Cust`."""
    data, pool, preds = binary_setup
    ids_tr = np.array([f"C-{r:05d}" for r in data.row_ids_train], dtype=object)
    ids_ho = np.array([f"C-{r:05d}" for r in data.row_ids_holdout], dtype=object)
    data = dataclasses.replace(_with_ids(data, ids_tr, ids_ho), id_column="Cust")
    seg = pd.concat([data.X_train.seg, data.X_holdout.seg], ignore_index=True).to_numpy()
    keys = np.concatenate([ids_tr, ids_ho])
    routes = pd.DataFrame({"Cust": keys[seg != "c"], "Region": np.where(seg[seg != "c"] == "a", "north", "south")})
    cfg = {"task": "route_external",
           "route": {"external": {"table": "routes", "key": "CUST", "column": "REGION", "min_size": 40}}}
    ctx = fake_context(data, pool, preds, cfg, metric="auc", id_column="cust", tables={"routes": routes})
    run_task(ctx)
    n_ab = int((data.X_train.seg != "c").sum())
    assert f"route_external: {n_ab} of {len(data.y_train)} training rows found a route in routes" in ctx.logs
    assert all(o.predictor.extra_input_columns == ["Cust"] for o in ctx.published)


def test_stack_blend_refits_temperature_scaled_members(binary_setup):
    """Members published temperature-scaled (docs/calibration.md) still re-fit from their config and
    fold models: the task reads them under the wrapper, which also arrives as another class."""
    import copy

    from obsrv.service_tasks import zoo

    data, pool, preds = binary_setup
    cfg = {"task": "stack_blend", "stack": {"top_n": 5, "blend_fraction": 0.3}}
    limited = copy.deepcopy(preds)
    timed = [n for n in pool.models if pool.families[pool.models.index(n)] in ("hist_gbm", "random_forest")]
    for n in timed:
        for f, m in enumerate(limited[n].models_):
            m.time_limit_s = 0.001 * f

    class PublishedScaled:
        """calibration.TemperatureScaledPredictor unpickled in another process."""

        def __init__(self, inner, temperature):
            self.inner, self.temperature = inner, temperature

        def predict_matrix(self, X):
            return self.inner.predict_matrix(X)

    ctx = fake_context(data, pool, {n: PublishedScaled(b, 1.5) for n, b in limited.items()}, cfg, metric="auc")
    run_task(ctx)
    expected = round(0.001 * (data.n_folds - 1), 3)
    assert ctx.published[0].params["refit_time_limits"] == {n: expected for n in timed}
    assert zoo.fit_time_limit(limited[timed[0]].models_) == pytest.approx(expected)
