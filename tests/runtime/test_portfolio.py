"""The search's draw order: the default config, AutoGluon's zero-shot portfolio in AutoGluon's order,
then seeded random configs; the portfolio's translation to the builders' names; the row cap."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest

from obsrv.compiler.spec import MODEL_FAMILIES
from obsrv.service_tasks import zoo
from obsrv.service_tasks.zoo import portfolio as P
from obsrv.service_tasks.zoo import spaces

from support.runtime_helpers import synthetic

PROBLEMS = ("classification", "regression")


def _sequence(family: str, problem: str, seed: int, n: int) -> list[tuple[str, dict]]:
    return list(itertools.islice(spaces.config_sequence(family, problem, np.random.default_rng(seed)), n))


@pytest.mark.parametrize("family", MODEL_FAMILIES)
@pytest.mark.parametrize("problem", PROBLEMS)
def test_the_order_starts_with_the_default_then_the_portfolio_then_random(family: str, problem: str) -> None:
    configs = list(P.portfolio(family, problem))
    seq = _sequence(family, problem, seed=3, n=1 + len(configs) + 5)
    assert seq[0] == (spaces.DEFAULT, spaces.default_params(family, problem))
    assert seq[1 : 1 + len(configs)] == configs
    assert [origin for origin, _ in seq[1 + len(configs) :]] == [spaces.RANDOM] * 5
    # the random tail is the same draws as before the portfolio existed: sample_params on the same rng
    rng = np.random.default_rng(3)
    assert [cfg for _, cfg in seq[1 + len(configs) :]] == [spaces.sample_params(family, problem, rng) for _ in range(5)]


@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_the_order_is_deterministic(family: str) -> None:
    assert _sequence(family, "classification", 7, 40) == _sequence(family, "classification", 7, 40)
    # only the random tail depends on the seed
    n_fixed = 1 + len(list(P.portfolio(family, "classification")))
    assert _sequence(family, "classification", 7, n_fixed) == _sequence(family, "classification", 8, n_fixed)
    assert _sequence(family, "classification", 7, n_fixed + 3) != _sequence(family, "classification", 8, n_fixed + 3)


def test_the_portfolio_keeps_autogluons_order_and_counts() -> None:
    """zeroshot_portfolio_2023.py lists 16 GBM, 20 CAT, 10 XGB, 10 RF and 10 XT configs; of each
    forest's three criterion configs two are for classification and one for regression."""
    names = {f: [n for n, _ in P.portfolio(f, "classification")] for f in P.AUTOGLUON_KEY}
    assert {f: len(v) for f, v in names.items()} == {
        "lightgbm": 16, "catboost": 20, "xgboost": 10, "random_forest": 9, "extra_trees": 9}
    assert names["lightgbm"][:4] == ["LightGBMXT", "LightGBM", "LightGBMLarge", "LightGBM_r131"]
    assert names["lightgbm"][-1] == "LightGBM_r42"
    assert names["catboost"][:3] == ["CatBoost", "CatBoost_r177", "CatBoost_r9"]
    assert names["xgboost"][:3] == ["XGBoost", "XGBoost_r33", "XGBoost_r89"]
    assert names["random_forest"][:3] == ["RandomForestGini", "RandomForestEntr", "RandomForest_r195"]
    assert [n for n, _ in P.portfolio("extra_trees", "regression")][:2] == ["ExtraTreesMSE", "ExtraTrees_r42"]
    for family in ("linear", "knn", "hist_gbm"):
        assert list(P.portfolio(family, "classification")) == []
    with pytest.raises(ValueError, match="unknown model family 'svm'"):
        list(P.portfolio("svm", "classification"))


def test_configs_are_translated_to_the_builders_names() -> None:
    gbm = dict(P.portfolio("lightgbm", "classification"))
    assert gbm["LightGBM_r131"] == {"n_estimators": 10_000, "learning_rate": 0.012144796373999013, "extra_trees": False,
                                    "colsample_bytree": 0.7023601671276614, "min_child_samples": 14, "num_leaves": 53}
    assert gbm["LightGBM"] == {"n_estimators": 10_000, "learning_rate": 0.05}  # AutoGluon's LightGBM defaults
    # every booster config gets AutoGluon's 10,000 rounds (DEFAULT_NUM_BOOST_ROUND), early stopping picks
    assert {cfg["n_estimators"] for cfg in gbm.values()} == {P.BOOSTER_ROUNDS} == {10_000}
    xgb = dict(P.portfolio("xgboost", "regression"))
    assert all("enable_categorical" not in cfg for cfg in xgb.values())
    assert xgb["XGBoost"] == {"n_estimators": 10_000, "learning_rate": 0.1}
    cat = dict(P.portfolio("catboost", "classification"))
    assert cat["CatBoost_r9"]["grow_policy"] == "Depthwise" and cat["CatBoost_r9"]["iterations"] == 10_000
    rf = dict(P.portfolio("random_forest", "regression"))
    assert rf["RandomForestMSE"] == {"n_estimators": P.FOREST_TREES, "max_leaf_nodes": 15000, "bootstrap": True,
                                     "criterion": "squared_error"}
    assert "RandomForestGini" not in rf and "RandomForestGini" in dict(P.portfolio("random_forest", "classification"))


def test_the_row_cap_follows_autogluons_curve() -> None:
    assert P.max_models_for_rows(10) == 4 and P.max_models_for_rows(100) == 4
    assert P.max_models_for_rows(10_000) == 40 and P.max_models_for_rows(100_000) == 100
    assert P.max_models_for_rows(100_001) is None  # no cap above the last point
    # log-log interpolation, floored: between (2500, 15) and (10000, 40)
    assert P.max_models_for_rows(5000) == math.floor(15 * (40 / 15) ** (math.log(2) / math.log(4))) == 24
    caps = [P.max_models_for_rows(n) for n in range(100, 100_001, 997)]
    assert caps == sorted(caps)
    assert P.family_trials_for_rows(5000) == math.ceil(24 / len(MODEL_FAMILIES)) == 3
    assert P.family_trials_for_rows(50) == 1 and P.family_trials_for_rows(200_000) is None


def _table(problem: str, n: int = 200):
    df = synthetic("binary" if problem == "classification" else "regression", n=n, seed=0)
    y_raw = df.pop("label")
    y = (y_raw == "yes").to_numpy().astype(np.int64) if problem == "classification" else y_raw.to_numpy(np.float64)
    return df, y


def test_the_row_cap_bounds_an_unpinned_search_and_an_explicit_cap_wins() -> None:
    X, y = _table("classification", n=1000)
    folds = np.arange(len(y)) % 2
    request = zoo.FitRequest("linear", X, y, folds, problem="classification", n_classes=2, budget_seconds=60, seed=0)
    assert len(zoo.fit_family(request).trials) == P.family_trials_for_rows(1000) == 2
    assert len(zoo.fit_family(zoo.FitRequest("linear", X, y, folds, problem="classification", n_classes=2,
                                             budget_seconds=60, seed=0, max_trials=4)).trials) == 4


def test_a_search_records_where_each_config_came_from() -> None:
    X, y = _table("classification", n=120)
    fit = zoo.fit_family(zoo.FitRequest("xgboost", X, y, np.arange(len(y)) % 2, problem="classification", n_classes=2,
                                        budget_seconds=60, seed=0, max_trials=3))
    assert [t["origin"] for t in fit.trials] == [spaces.DEFAULT, "XGBoost", "XGBoost_r33"]
    assert fit.trials[2]["params"] == dict(P.portfolio("xgboost", "classification"))["XGBoost_r33"]


@pytest.mark.parametrize("family", sorted(P.AUTOGLUON_KEY))
@pytest.mark.parametrize("problem", PROBLEMS)
def test_every_portfolio_config_builds_and_fits(family: str, problem: str) -> None:
    """Each config as the builder receives it, on a tiny table; rounds and trees are cut to keep it
    cheap, every other parameter is the portfolio's."""
    X, y = _table(problem, n=120)
    numeric, categorical = zoo._split_columns(X, None)
    assert categorical  # the table has a categorical column, so the categorical parameters are exercised
    k = 2 if problem == "classification" else 1
    for name, cfg in P.portfolio(family, problem):
        small = {**cfg, **({"iterations": 20} if family == "catboost" else {"n_estimators": 20})}
        model = zoo.FamilyModel(family, small, problem=problem, n_classes=2 if k == 2 else 1, numeric=numeric,
                                categorical=categorical, seed=0, n_jobs=1, device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y, None)
        pred = model.predict_matrix(X)
        assert pred.shape == (len(X), k) and np.isfinite(pred).all(), name
        if k == 2:
            np.testing.assert_allclose(pred.sum(axis=1), 1.0, err_msg=name)
