"""AutoGluon's zero-shot portfolio, ported to the zoo's families and its builders' parameter names.

A search fits the family's default config first, then these configs in AutoGluon's order, and only
then seeded random ones (``spaces.config_sequence``). AutoGluon chose them offline, by zero-shot
selection over many datasets (TabRepo), so none of them is tuned on this project's benchmark sets.

Source, kept verbatim below in AutoGluon's own parameter names (name suffix and config, in list order):
``tabular/src/autogluon/tabular/configs/zeroshot/zeroshot_portfolio_2023.py`` of
github.com/autogluon/autogluon at commit f34ebb4f664c7d632a8ea7db1de74bdfc64c3625 (the file last
changed in 2d7e6056b8b64dc44114faf652d4c99ec3c3770f). It is the portfolio AutoGluon's
``best_quality`` preset trains (``presets_configs.py``: ``"hyperparameters": "zeroshot"``;
``hyperparameter_configs.py``: ``zeroshot=hyperparameter_portfolio_zeroshot_2023``). The newer
CPU portfolio (``zeroshot_portfolio_cpu_2025_12_18.py``) has no XGBoost, random forest or extra
trees configs, so it cannot serve five of the zoo's families. Copyright the AutoGluon authors,
Apache License 2.0 (https://www.apache.org/licenses/LICENSE-2.0); the translation to obsrv's
names is this module's.

AutoGluon's keys map to the zoo's families: GBM -> lightgbm, CAT -> catboost, XGB -> xgboost,
RF -> random_forest, XT -> extra_trees. The portfolio has no configs for linear models, kNN or
sklearn's HistGradientBoosting, so those families go from their default straight to random search.

How a config is translated (``_translate``):
- a config is AutoGluon's model defaults overlaid with the listed values, as in AutoGluon; its
  defaults (``models/<family>/hyperparameters/parameters.py``, ``models/rf/rf_model.py``) are
  ``_AG_DEFAULTS``;
- LightGBM's native names become the scikit-learn API's: ``feature_fraction`` ->
  ``colsample_bytree``, ``min_data_in_leaf`` -> ``min_child_samples``;
- boosters: AutoGluon's 10,000 rounds, and early stopping picks the count (``BOOSTER_ROUNDS``);
- XGBoost's ``enable_categorical`` is dropped: the zoo's xgboost builder always uses native
  categoricals (one-hot below 5 levels), where AutoGluon one-hot encodes for ``False``;
- forests: the zoo's tree count (``FOREST_TREES``) instead of AutoGluon's 300, so that the fold bags
  stay the size of the zoo's default ones; AutoGluon's ``max_leaf_nodes`` and ``bootstrap``
  defaults are kept; configs AutoGluon restricts to some problem types (the split criterion ones)
  are kept for those only.

``max_models_for_rows`` ports AutoGluon's cap on the number of models by the number of rows.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

from obsrv.service_tasks.zoo.families import FAMILIES, Problem

FOREST_TREES = 150
"""Trees per forest fold model in the portfolio's forest configs (the zoo's default config's count)."""
BOOSTER_ROUNDS = 10_000
"""Rounds of every booster config, AutoGluon's (``DEFAULT_NUM_BOOST_ROUND`` in
``models/lgb/hyperparameters/parameters.py`` and ``models/xgboost/...``, ``DEFAULT_ITERATIONS`` in
``models/catboost/...``): a ceiling for early stopping, which picks the count. A cap of 1,000 cut
slow learners short (extra-trees LightGBM at rate 0.05 early-stops near 2,000 rounds on some tables);
a fit with nothing to early-stop on trains ``fold_models.ROUNDS_WITHOUT_EARLY_STOPPING`` instead."""

AUTOGLUON_KEY = {"lightgbm": "GBM", "catboost": "CAT", "xgboost": "XGB", "random_forest": "RF", "extra_trees": "XT"}

_AG_DEFAULTS: dict[str, dict[str, Any]] = {
    "GBM": {"learning_rate": 0.05},  # lgb/hyperparameters/parameters.py
    "CAT": {"learning_rate": 0.05},  # catboost/hyperparameters/parameters.py
    "XGB": {"learning_rate": 0.1},  # xgboost/hyperparameters/parameters.py (get_base_params)
    "RF": {"max_leaf_nodes": 15000, "bootstrap": True},  # rf/rf_model.py (_set_default_params)
    "XT": {"max_leaf_nodes": 15000, "bootstrap": True},  # xt/xt_model.py inherits RFModel's defaults
}

# (name suffix, config[, the only problem type it is for]) in zeroshot_portfolio_2023.py's order.
# The suffix names the config in trial records as AutoGluon names its models (e.g. LightGBM_r131).
_AG_PORTFOLIO_2023: dict[str, tuple[tuple[Any, ...], ...]] = {
    "GBM": (
        ("XT", {"extra_trees": True}),
        ("", {}),
        ("Large", {"learning_rate": 0.03, "num_leaves": 128, "feature_fraction": 0.9, "min_data_in_leaf": 3}),
        ("_r131", {"extra_trees": False, "feature_fraction": 0.7023601671276614, "learning_rate": 0.012144796373999013, "min_data_in_leaf": 14, "num_leaves": 53}),
        ("_r96", {"extra_trees": True, "feature_fraction": 0.5636931414546802, "learning_rate": 0.01518660230385841, "min_data_in_leaf": 48, "num_leaves": 16}),
        ("_r188", {"extra_trees": True, "feature_fraction": 0.8282601210460099, "learning_rate": 0.033929021353492905, "min_data_in_leaf": 6, "num_leaves": 127}),
        ("_r130", {"extra_trees": False, "feature_fraction": 0.6245777099925497, "learning_rate": 0.04711573688184715, "min_data_in_leaf": 56, "num_leaves": 89}),
        ("_r161", {"extra_trees": False, "feature_fraction": 0.5898927512279213, "learning_rate": 0.010464516487486093, "min_data_in_leaf": 11, "num_leaves": 252}),
        ("_r196", {"extra_trees": True, "feature_fraction": 0.5143401489640409, "learning_rate": 0.00529479887023554, "min_data_in_leaf": 6, "num_leaves": 133}),
        ("_r15", {"extra_trees": False, "feature_fraction": 0.7421180622507277, "learning_rate": 0.018603888565740096, "min_data_in_leaf": 6, "num_leaves": 22}),
        ("_r143", {"extra_trees": False, "feature_fraction": 0.9408897917880529, "learning_rate": 0.01343464462043561, "min_data_in_leaf": 21, "num_leaves": 178}),
        ("_r94", {"extra_trees": True, "feature_fraction": 0.4341088458599442, "learning_rate": 0.04034449862560467, "min_data_in_leaf": 33, "num_leaves": 16}),
        ("_r30", {"extra_trees": True, "feature_fraction": 0.9773131270704629, "learning_rate": 0.010534290864227067, "min_data_in_leaf": 21, "num_leaves": 111}),
        ("_r135", {"extra_trees": False, "feature_fraction": 0.8254432681390782, "learning_rate": 0.031251656439648626, "min_data_in_leaf": 50, "num_leaves": 210}),
        ("_r121", {"extra_trees": False, "feature_fraction": 0.5730390983988963, "learning_rate": 0.010305352949119608, "min_data_in_leaf": 10, "num_leaves": 215}),
        ("_r42", {"extra_trees": True, "feature_fraction": 0.4601361323873807, "learning_rate": 0.07856777698860955, "min_data_in_leaf": 12, "num_leaves": 198}),
    ),
    "CAT": (
        ("", {}),
        ("_r177", {"depth": 6, "grow_policy": "SymmetricTree", "l2_leaf_reg": 2.1542798306067823, "learning_rate": 0.06864209415792857, "max_ctr_complexity": 4, "one_hot_max_size": 10}),
        ("_r9", {"depth": 8, "grow_policy": "Depthwise", "l2_leaf_reg": 2.7997999596449104, "learning_rate": 0.031375015734637225, "max_ctr_complexity": 2, "one_hot_max_size": 3}),
        ("_r137", {"depth": 4, "grow_policy": "SymmetricTree", "l2_leaf_reg": 4.559174625782161, "learning_rate": 0.04939557741379516, "max_ctr_complexity": 3, "one_hot_max_size": 3}),
        ("_r13", {"depth": 8, "grow_policy": "SymmetricTree", "l2_leaf_reg": 3.3274013177541373, "learning_rate": 0.017301189655111057, "max_ctr_complexity": 5, "one_hot_max_size": 10}),
        ("_r50", {"depth": 4, "grow_policy": "Depthwise", "l2_leaf_reg": 2.7018061518087038, "learning_rate": 0.07092851311746352, "max_ctr_complexity": 1, "one_hot_max_size": 2}),
        ("_r69", {"depth": 5, "grow_policy": "SymmetricTree", "l2_leaf_reg": 1.0457098345001241, "learning_rate": 0.050294288910022224, "max_ctr_complexity": 5, "one_hot_max_size": 2}),
        ("_r70", {"depth": 6, "grow_policy": "Depthwise", "l2_leaf_reg": 1.3584121369544215, "learning_rate": 0.03743901034980473, "max_ctr_complexity": 3, "one_hot_max_size": 2}),
        ("_r167", {"depth": 7, "grow_policy": "SymmetricTree", "l2_leaf_reg": 4.522712492188319, "learning_rate": 0.08481607830570326, "max_ctr_complexity": 3, "one_hot_max_size": 2}),
        ("_r86", {"depth": 8, "grow_policy": "SymmetricTree", "l2_leaf_reg": 1.6376578537958237, "learning_rate": 0.032899230324940465, "max_ctr_complexity": 3, "one_hot_max_size": 2}),
        ("_r49", {"depth": 4, "grow_policy": "SymmetricTree", "l2_leaf_reg": 3.353268454214423, "learning_rate": 0.06028218319511302, "max_ctr_complexity": 1, "one_hot_max_size": 10}),
        ("_r128", {"depth": 8, "grow_policy": "Depthwise", "l2_leaf_reg": 1.640921865280573, "learning_rate": 0.036232951900213306, "max_ctr_complexity": 3, "one_hot_max_size": 5}),
        ("_r5", {"depth": 4, "grow_policy": "SymmetricTree", "l2_leaf_reg": 2.894432181094842, "learning_rate": 0.055078095725390575, "max_ctr_complexity": 4, "one_hot_max_size": 10}),
        ("_r143", {"depth": 7, "grow_policy": "SymmetricTree", "l2_leaf_reg": 1.6761016245166451, "learning_rate": 0.06566144806528762, "max_ctr_complexity": 2, "one_hot_max_size": 10}),
        ("_r60", {"depth": 5, "grow_policy": "SymmetricTree", "l2_leaf_reg": 3.3217885487525205, "learning_rate": 0.05291587380674719, "max_ctr_complexity": 5, "one_hot_max_size": 3}),
        ("_r6", {"depth": 4, "grow_policy": "Depthwise", "l2_leaf_reg": 1.5734131496361856, "learning_rate": 0.08472519974533015, "max_ctr_complexity": 3, "one_hot_max_size": 2}),
        ("_r180", {"depth": 7, "grow_policy": "Depthwise", "l2_leaf_reg": 4.43335055453705, "learning_rate": 0.055406199833457785, "max_ctr_complexity": 5, "one_hot_max_size": 10}),
        ("_r12", {"depth": 7, "grow_policy": "SymmetricTree", "l2_leaf_reg": 4.835797074498082, "learning_rate": 0.03534026385152556, "max_ctr_complexity": 5, "one_hot_max_size": 10}),
        ("_r163", {"depth": 5, "grow_policy": "SymmetricTree", "l2_leaf_reg": 3.7454481983750014, "learning_rate": 0.09328642499990342, "max_ctr_complexity": 1, "one_hot_max_size": 2}),
        ("_r198", {"depth": 6, "grow_policy": "SymmetricTree", "l2_leaf_reg": 3.637071465711953, "learning_rate": 0.04387418552563314, "max_ctr_complexity": 4, "one_hot_max_size": 5}),
    ),
    "XGB": (
        ("", {}),
        ("_r33", {"colsample_bytree": 0.6917311125174739, "enable_categorical": False, "learning_rate": 0.018063876087523967, "max_depth": 10, "min_child_weight": 0.6028633586934382}),
        ("_r89", {"colsample_bytree": 0.6628423832084077, "enable_categorical": False, "learning_rate": 0.08775715546881824, "max_depth": 5, "min_child_weight": 0.6294123374222513}),
        ("_r194", {"colsample_bytree": 0.9090166528779192, "enable_categorical": True, "learning_rate": 0.09290221350439203, "max_depth": 7, "min_child_weight": 0.8041986915994078}),
        ("_r98", {"colsample_bytree": 0.516652313273348, "enable_categorical": True, "learning_rate": 0.007158072983547058, "max_depth": 9, "min_child_weight": 0.8567068904025429}),
        ("_r49", {"colsample_bytree": 0.7452294043087835, "enable_categorical": False, "learning_rate": 0.038404229910104046, "max_depth": 7, "min_child_weight": 0.5564183327139662}),
        ("_r31", {"colsample_bytree": 0.7506621909633511, "enable_categorical": False, "learning_rate": 0.009974712407899168, "max_depth": 4, "min_child_weight": 0.9238550485581797}),
        ("_r22", {"colsample_bytree": 0.6326947454697227, "enable_categorical": False, "learning_rate": 0.07792091886639502, "max_depth": 6, "min_child_weight": 1.0759464955561793}),
        ("_r95", {"colsample_bytree": 0.975937238416368, "enable_categorical": False, "learning_rate": 0.06634196266155237, "max_depth": 5, "min_child_weight": 1.4088437184127383}),
        ("_r34", {"colsample_bytree": 0.546186944730449, "enable_categorical": False, "learning_rate": 0.029357102578825213, "max_depth": 10, "min_child_weight": 1.1532008198571337}),
    ),
    "RF": (
        ("Gini", {"criterion": "gini"}, ("classification",)),
        ("Entr", {"criterion": "entropy"}, ("classification",)),
        ("MSE", {"criterion": "squared_error"}, ("regression",)),
        ("_r195", {"max_features": 0.75, "max_leaf_nodes": 37308, "min_samples_leaf": 1}),
        ("_r39", {"max_features": 0.75, "max_leaf_nodes": 28310, "min_samples_leaf": 2}),
        ("_r127", {"max_features": 1.0, "max_leaf_nodes": 38572, "min_samples_leaf": 5}),
        ("_r34", {"max_features": 0.75, "max_leaf_nodes": 18242, "min_samples_leaf": 40}),
        ("_r166", {"max_features": "log2", "max_leaf_nodes": 42644, "min_samples_leaf": 1}),
        ("_r15", {"max_features": 0.75, "max_leaf_nodes": 36230, "min_samples_leaf": 3}),
        ("_r16", {"max_features": 1.0, "max_leaf_nodes": 48136, "min_samples_leaf": 1}),
    ),
    "XT": (
        ("Gini", {"criterion": "gini"}, ("classification",)),
        ("Entr", {"criterion": "entropy"}, ("classification",)),
        ("MSE", {"criterion": "squared_error"}, ("regression",)),
        ("_r42", {"max_features": 0.75, "max_leaf_nodes": 18392, "min_samples_leaf": 1}),
        ("_r172", {"max_features": 1.0, "max_leaf_nodes": 12845, "min_samples_leaf": 4}),
        ("_r49", {"max_features": "sqrt", "max_leaf_nodes": 28532, "min_samples_leaf": 1}),
        ("_r4", {"max_features": 1.0, "max_leaf_nodes": 19935, "min_samples_leaf": 20}),
        ("_r178", {"max_features": 0.75, "max_leaf_nodes": 29813, "min_samples_leaf": 4}),
        ("_r197", {"max_features": 1.0, "max_leaf_nodes": 40459, "min_samples_leaf": 1}),
        ("_r126", {"max_features": "sqrt", "max_leaf_nodes": 29702, "min_samples_leaf": 2}),
    ),
}

_LIGHTGBM_NAMES = {"feature_fraction": "colsample_bytree", "min_data_in_leaf": "min_child_samples"}
_DROPPED = {"XGB": {"enable_categorical"}}

MODELS_BY_ROWS: tuple[tuple[int, int], ...] = ((100, 4), (500, 8), (2500, 15), (10_000, 40), (100_000, 100))
"""AutoGluon's curve of the most models to fit by training rows, above the last point no cap:
``best_quality_v150``'s ``EarlyStoppingCountCallback`` patience in ``configs/presets_configs.py``
(same commit as above)."""


def _translate(family: str, problem: Problem, config: dict[str, Any]) -> dict[str, Any]:
    """One AutoGluon config in the zoo builder's names for ``family`` (the module docstring says how)."""
    key = AUTOGLUON_KEY[family]
    merged = {**_AG_DEFAULTS[key], **config}
    params = {k: v for k, v in merged.items() if k not in _DROPPED.get(key, set())}
    if key == "GBM":
        params = {_LIGHTGBM_NAMES.get(k, k): v for k, v in params.items()}
        return {"n_estimators": BOOSTER_ROUNDS, **params}
    if key == "XGB":
        return {"n_estimators": BOOSTER_ROUNDS, **params}
    if key == "CAT":
        return {"iterations": BOOSTER_ROUNDS, **params}
    return {"n_estimators": FOREST_TREES, **params}


def portfolio(family: str, problem: Problem) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(name, params)`` of AutoGluon's portfolio configs for ``family`` and ``problem``, in
    AutoGluon's order; nothing for a family it has no configs for. ``name`` is AutoGluon's model
    name (e.g. ``LightGBM_r131``)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    key = AUTOGLUON_KEY.get(family)
    if key is None:
        return
    for suffix, config, *only in _AG_PORTFOLIO_2023[key]:
        if only and problem not in only[0]:
            continue
        yield f"{_AG_NAMES[key]}{suffix}", _translate(family, problem, config)


_AG_NAMES = {"GBM": "LightGBM", "CAT": "CatBoost", "XGB": "XGBoost", "RF": "RandomForest", "XT": "ExtraTrees"}


def max_models_for_rows(n_rows: int, points: tuple[tuple[int, int], ...] = MODELS_BY_ROWS) -> int | None:
    """The most models AutoGluon fits on ``n_rows`` training rows, None above the curve's last point.

    A port of ``max_models_from_num_samples_val`` (``core/src/autogluon/core/callbacks/_smooth_count.py``,
    same commit as above, Apache-2.0) with its ``floor`` rounding and a trailing ``None``: the count
    is interpolated linearly in log(rows) and log(models) between the points and clamped below the
    first one."""
    if n_rows <= points[0][0]:
        return points[0][1]
    if n_rows > points[-1][0]:
        return None
    for (n0, y0), (n1, y1) in zip(points, points[1:]):
        if n_rows <= n1:
            t = (math.log10(n_rows) - math.log10(n0)) / (math.log10(n1) - math.log10(n0))
            y = 10 ** (math.log10(y0) + t * (math.log10(y1) - math.log10(y0)))
            return max(y0, min(y1, math.floor(y)))
    return points[-1][1]  # unreachable: the loop returns for every n_rows up to the last point


def family_trials_for_rows(n_rows: int) -> int | None:
    """One family's share of ``max_models_for_rows``: AutoGluon's cap counts the models of every
    family in one fit, while each zoo family searches on its own (a base task each), so each gets
    the cap divided by the number of families, rounded up (at least its default config)."""
    total = max_models_for_rows(n_rows)
    return None if total is None else max(1, math.ceil(total / len(FAMILIES)))
