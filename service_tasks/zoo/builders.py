"""Estimator builders: each family's estimator and its preprocessing pipeline, for one fold model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from obsrv.service_tasks.zoo.devices import lightgbm_gpu_platform

if TYPE_CHECKING:
    from obsrv.service_tasks.zoo.fold_models import FamilyModel


# ------------------------------------------------------------------------------ preprocessing


_PREP = {
    "linear": "dense",
    "knn": "dense",
    "random_forest": "ordinal",
    "extra_trees": "ordinal",
    "hist_gbm": "ordinal",
    "xgboost": "native",
    "lightgbm": "native",
    "catboost": "catboost",
}


def _dense_pipeline(model: FamilyModel, est: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    transformers = []
    if model.numeric:
        transformers.append(
            (
                "num",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                model.numeric,
            )
        )
    if model.categorical:
        transformers.append(
            (
                "cat",
                OneHotEncoder(
                    handle_unknown="infrequent_if_exist", min_frequency=5, max_categories=30, sparse_output=False
                ),
                model.categorical,
            )
        )
    pre = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("pre", pre), ("est", est)])


def _ordinal_pipeline(model: FamilyModel, est: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    transformers: list[Any] = []
    if model.numeric:
        transformers.append(("num", "passthrough", model.numeric))
    if model.categorical:
        transformers.append(
            (
                "cat",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value",
                    unknown_value=np.nan,
                    encoded_missing_value=np.nan,
                    max_categories=250,
                    dtype=np.float64,
                ),
                model.categorical,
            )
        )
    pre = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("pre", pre), ("est", est)])


# ------------------------------------------------------------------------------------ families


def _cls(model: FamilyModel) -> bool:
    return model.problem == "classification"


def _build_linear(model: FamilyModel, frame: pd.DataFrame) -> Any:
    from sklearn.linear_model import LogisticRegression, Ridge

    p = model.params
    est = (
        LogisticRegression(C=p.get("C", 1.0), max_iter=2000, random_state=model.seed)
        if _cls(model)
        else Ridge(alpha=p.get("alpha", 1.0), random_state=model.seed)
    )
    return _dense_pipeline(model, est)


def _build_knn(model: FamilyModel, frame: pd.DataFrame) -> Any:
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    p = dict(model.params)
    p["n_neighbors"] = int(min(p.get("n_neighbors", 15), max(1, len(frame) - 1)))
    cls = KNeighborsClassifier if _cls(model) else KNeighborsRegressor
    return _dense_pipeline(model, cls(n_jobs=model.n_jobs, **p))


def _build_forest(kind: str) -> Callable[[FamilyModel, pd.DataFrame], Any]:
    def build(model: FamilyModel, frame: pd.DataFrame) -> Any:
        from sklearn import ensemble

        name = ("RandomForest" if kind == "random_forest" else "ExtraTrees") + (
            "Classifier" if _cls(model) else "Regressor"
        )
        est = getattr(ensemble, name)(random_state=model.seed, n_jobs=model.n_jobs, **model.params)
        return _ordinal_pipeline(model, est)

    return build


HIST_GBM_VALIDATION = 0.1  # share of a hist_gbm fit's rows held out for its early stopping


def _stratified_holdout_possible(y: np.ndarray, problem: str, fraction: float) -> bool:
    """Whether sklearn can hold out a stratified ``fraction`` of these rows, as HistGradientBoosting's
    early stopping does for classification. It refuses when a class has a single row, or when either
    part is too small to hold one row of every class: a route (or a fold of a rare class) can
    have such a class, and hist_gbm then trains without early stopping instead of failing."""
    if problem != "classification":
        return True
    counts = np.bincount(np.asarray(y, dtype=np.int64))
    counts = counts[counts > 0]
    n, n_val = len(y), int(np.ceil(fraction * len(y)))
    return bool(counts.min() >= 2 and n_val >= len(counts) and n - n_val >= len(counts))


def _build_hist_gbm(model: FamilyModel, frame: pd.DataFrame) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cat_mask = [False] * len(model.numeric) + [True] * len(model.categorical)
    cls = HistGradientBoostingClassifier if _cls(model) else HistGradientBoostingRegressor
    est = cls(
        categorical_features=cat_mask if any(cat_mask) else None,
        early_stopping=len(frame) >= 100,
        validation_fraction=HIST_GBM_VALIDATION,
        n_iter_no_change=20,
        random_state=model.seed,
        **model.params,
    )
    return _ordinal_pipeline(model, est)


def _build_xgboost(model: FamilyModel, frame: pd.DataFrame) -> Any:
    import xgboost as xgb

    common = dict(
        tree_method="hist",
        enable_categorical=True,
        max_cat_to_onehot=4,
        device=model.device,
        n_jobs=model.n_jobs,
        random_state=model.seed,
        early_stopping_rounds=50,
        verbosity=0,
    )
    if _cls(model):
        obj = {"objective": "binary:logistic"} if model.n_fit_classes == 2 else {"objective": "multi:softprob"}
        return xgb.XGBClassifier(**common, **obj, **model.params)
    return xgb.XGBRegressor(**common, **model.params)


def _build_lightgbm(model: FamilyModel, frame: pd.DataFrame) -> Any:
    import lightgbm as lgb

    common: dict[str, Any] = dict(
        n_jobs=model.n_jobs,
        random_state=model.seed,
        verbose=-1,
        deterministic=True,
        force_col_wise=True,
        subsample_freq=1,
    )
    if model.device == "cuda":
        common["device_type"] = "gpu"
        platform = lightgbm_gpu_platform()
        if platform is not None:  # the GPU's OpenCL platform, not a CPU one listed before it
            common["gpu_platform_id"] = platform
    cls = lgb.LGBMClassifier if _cls(model) else lgb.LGBMRegressor
    return cls(**common, **model.params)


def _build_catboost(model: FamilyModel, frame: pd.DataFrame) -> Any:
    import catboost as cb

    common: dict[str, Any] = dict(
        random_seed=model.seed,
        thread_count=model.n_jobs,
        verbose=0,
        allow_writing_files=False,
        cat_features=list(range(len(model.numeric), len(model.numeric) + len(model.categorical))) or None,
    )
    if model.device == "cuda":
        common["task_type"] = "GPU"
    if _cls(model):
        loss = "Logloss" if model.n_fit_classes == 2 else "MultiClass"
        return cb.CatBoostClassifier(loss_function=loss, **common, **model.params)
    return cb.CatBoostRegressor(loss_function="RMSE", **common, **model.params)


_BUILD: dict[str, Callable[[FamilyModel, pd.DataFrame], Any]] = {
    "linear": _build_linear,
    "knn": _build_knn,
    "random_forest": _build_forest("random_forest"),
    "extra_trees": _build_forest("extra_trees"),
    "hist_gbm": _build_hist_gbm,
    "xgboost": _build_xgboost,
    "lightgbm": _build_lightgbm,
    "catboost": _build_catboost,
}
