"""The fast predict path of a fold model: the same numbers as its sklearn pipeline, without the
per-call cost of pandas and sklearn's generic machinery.

Why: a served single row went through, for every one of a member's K fold models, a column-by-column
pandas frame, a ``ColumnTransformer`` with its validation, and (forests) joblib's per-tree dispatch,
about 1 s per call for a three-member champion on 2 cores. The work itself is microseconds.

How it stays exact (tests/runtime/test_served_exact.py checks every family to the last bit):

* ``Inputs`` converts each raw column once per call and shares it between the fold models of a bag
  (their preprocessing differs only in what each fold *fitted*: medians, levels, encoders).
* The fitted encoders are read, never re-fitted: an ``OrdinalEncoder`` or ``OneHotEncoder`` becomes
  a lookup table made by the encoder itself from its own categories (plus one unseen value), so
  infrequent and unknown levels map exactly as the encoder maps them. Median imputation, missing
  indicators and standardisation are the same element-wise float64 operations sklearn runs.
* Every estimator then predicts from the very array (or frame) its pipeline would have handed it,
  through its own ``predict_proba``/``predict``; only forests are summed here, tree by tree in
  ``estimators_`` order onto float64 zeros and divided by the tree count, as sklearn's forest does
  (its joblib dispatch costs ~0.1 ms a tree; each tree's own Cython ``predict`` costs microseconds).

A pipeline this module does not recognise (a shape the builders do not make) predicts through the
pipeline itself (``served_form`` returns None); nothing is approximated.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

UNSEEN = "\x00obsrv-unseen-level\x00"  # a level no encoder was fit on: how it encodes an unseen value
SMALL_BATCH = 64
"""Rows up to which boosters and hist_gbm predict on one thread: waking a pool costs more than the
work (on a loaded machine an OpenMP barrier per tree costs milliseconds: a sleeping worker must be
scheduled), and their per-row sums do not depend on the thread count (threads split rows, never a
row's sum over trees)."""

class _OpenMP:
    """The OpenMP runtimes threadpoolctl finds, scanned once per process. It pickles unscanned: this
    module is pickled by value with every served model (``tracking.dump_predictor``), its globals
    with it, and a scan holds ctypes handles."""

    def __init__(self) -> None:
        self.controller: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"controller": None}

    def limit(self, n_threads: int) -> Any:
        if self.controller is None:
            from threadpoolctl import ThreadpoolController

            self.controller = ThreadpoolController().select(user_api="openmp")
        return self.controller.limit(limits=n_threads)


_OPENMP = _OpenMP()


def openmp_threads(n_threads: int) -> Any:
    """A context capping the OpenMP pools at ``n_threads``, from one scan of the loaded libraries:
    ``threadpoolctl.threadpool_limits`` rescans every shared library on each call (~4 ms)."""
    return _OPENMP.limit(n_threads)


def batch_threads(n_rows: int, n_jobs: int) -> int:
    """Threads for a batch of ``n_rows``: one for small batches, else the model's own count."""
    return 1 if n_rows <= SMALL_BATCH else max(1, int(n_jobs))


class Inputs:
    """One call's raw feature frame, each column converted once and shared by the fold models that
    read it (a bag's K fold models see the same raw columns)."""

    def __init__(self, X: pd.DataFrame) -> None:
        self.X = X
        self.n = len(X)
        self._numeric: dict[str, np.ndarray] = {}
        self._strings: dict[str, np.ndarray] = {}
        self._native: dict[str, np.ndarray] = {}

    def numeric(self, col: str) -> np.ndarray:
        """``FamilyModel._numeric``'s float64 values of one column (before all-missing zeroing)."""
        out = self._numeric.get(col)
        if out is None:
            out = self._numeric[col] = numeric_values(self.X[col])
        return out

    def strings(self, col: str, missing: str) -> np.ndarray:
        """``FamilyModel._strings``' object array of one column."""
        out = self._strings.get(col)
        if out is None:
            out = self._strings[col] = string_values(self.X[col], missing)
        return out

    def native(self, col: str) -> np.ndarray:
        """The native-categorical path's values of one column (``FamilyModel._frame``)."""
        out = self._native.get(col)
        if out is None:
            out = self._native[col] = native_values(self.X[col])
        return out


def predict_shared(model: Any, inputs: Inputs) -> np.ndarray:
    """A predictor's ``(n, K)`` matrix from one call's shared ``Inputs``: through its
    ``predict_inputs`` when it has one (fold models, fold bags, ensembles), else from the raw frame."""
    predict_inputs = getattr(model, "predict_inputs", None)
    out = predict_inputs(inputs) if predict_inputs is not None else model.predict_matrix(inputs.X)
    return np.asarray(out, dtype=np.float64)


# One conversion per raw column, shared by the fit path (``FamilyModel``) and the served path, so
# the two cannot drift apart.
def numeric_values(s: pd.Series) -> np.ndarray:
    """A column's float64 values: numbers kept, anything else (and pd.NA) NaN."""
    if s.dtype == np.float64:
        return s.to_numpy(dtype=np.float64, copy=False)
    if s.dtype.kind in "iu" and not pd.api.types.is_extension_array_dtype(s.dtype):
        return s.to_numpy().astype(np.float64)
    values = pd.to_numeric(s, errors="coerce")
    if pd.api.types.is_extension_array_dtype(values.dtype) or values.dtype == bool:
        # nullable ints/bools: pd.NA -> NaN
        values = values.astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
    return np.asarray(values, dtype=np.float64)


def string_values(s: pd.Series, missing: str) -> np.ndarray:
    """A column as an object array of ``str`` values, ``missing`` for a missing one."""
    if isinstance(s.dtype, pd.StringDtype):
        # already ``str`` values: the same array without pandas' per-element astype round trip
        return s.to_numpy(dtype=object, na_value=missing)
    o = s.astype(object)
    return o.where(o.notna(), missing).astype(str).to_numpy(dtype=object)


def native_values(s: pd.Series) -> np.ndarray:
    """A column as an object array of ``str`` values with missing values kept missing."""
    o = s.astype(object)
    return o.where(o.isna(), o.astype(str)).to_numpy(dtype=object)


def _positions(categories: np.ndarray | pd.Index, values: np.ndarray) -> np.ndarray:
    """Index of each value in ``categories`` (exact equality), -1 where absent. A small batch looks
    its values up in a dict (building two pandas indexes costs more than the rows); levels are
    distinct strings, never missing, so both ways find the same positions (a missing value: -1)."""
    index = pd.Index(categories, dtype=object)
    if len(values) <= SMALL_BATCH and index.is_unique and not index.hasnans:
        lookup = {level: i for i, level in enumerate(index)}
        return np.fromiter((lookup.get(v, -1) if isinstance(v, str) else -1 for v in values), dtype=np.intp,
                           count=len(values))
    return np.asarray(index.get_indexer(pd.Index(values, dtype=object)))


@dataclass
class LookupEncoder:
    """A fitted ``OrdinalEncoder``/``OneHotEncoder`` over string columns as per-column tables: row i
    of ``tables[j]`` is what the encoder outputs for ``categories[j][i]``, its last row what it
    outputs for a level it never saw."""

    columns: list[str]
    categories: list[pd.Index]
    tables: list[np.ndarray]

    @classmethod
    def of(cls, encoder: Any, columns: list[str], widths: list[int]) -> "LookupEncoder":
        cats = [list(c) for c in encoder.categories_]
        rows = max(len(c) for c in cats) + 1
        probe = pd.DataFrame(
            {col: pd.Series([*c, UNSEEN] + [c[0]] * (rows - len(c) - 1), dtype=object) for col, c in zip(columns, cats)}
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "unknown categories ... encoded as": the UNSEEN row
            encoded = np.asarray(encoder.transform(probe), dtype=np.float64)
        bounds = np.cumsum([0, *widths])
        tables = [encoded[: len(c) + 1, bounds[j] : bounds[j + 1]].copy() for j, c in enumerate(cats)]
        return cls(list(columns), [pd.Index(c, dtype=object) for c in cats], tables)

    def encode(self, inputs: Inputs, missing: str) -> list[np.ndarray]:
        out = []
        for col, cats, table in zip(self.columns, self.categories, self.tables):
            pos = _positions(cats, inputs.strings(col, missing))
            out.append(table[np.where(pos < 0, len(cats), pos)])
        return out


@dataclass
class DenseNumeric:
    """``SimpleImputer(median, add_indicator=True, keep_empty_features=True)`` then
    ``StandardScaler``, fitted."""

    fill: np.ndarray
    indicator: np.ndarray  # the columns that get a missing indicator (those missing in fit)
    mean: np.ndarray | None
    scale: np.ndarray | None

    def transform(self, A: np.ndarray) -> np.ndarray:
        mask = np.isnan(A)
        A = np.where(mask, self.fill, A)
        if len(self.indicator):
            A = np.hstack((A, mask[:, self.indicator]))
        if self.mean is not None:
            A = A - self.mean
        if self.scale is not None:
            A = A / self.scale
        return A


@dataclass
class ServedForm:
    """What a fold model needs to predict fast (see the module doc); built once, never pickled."""

    kind: str  # "dense", "ordinal", "native", "catboost"
    numeric: list[str]
    categorical: list[str]
    zeroed: list[int]  # numeric positions of all-missing-in-fit columns (predicted as 0.0)
    dense: DenseNumeric | None = None
    encoder: LookupEncoder | None = None
    native_dtypes: list[pd.CategoricalDtype] | None = None

    def numeric_block(self, inputs: Inputs) -> np.ndarray:
        A = np.empty((inputs.n, len(self.numeric)), dtype=np.float64)
        for j, c in enumerate(self.numeric):
            A[:, j] = inputs.numeric(c)
        if self.zeroed:
            A[:, self.zeroed] = 0.0
        return A

    def matrix(self, inputs: Inputs, missing: str) -> np.ndarray:
        """The array the pipeline's ColumnTransformer outputs (dense and ordinal kinds)."""
        parts: list[np.ndarray] = []
        if self.numeric:
            A = self.numeric_block(inputs)
            parts.append(self.dense.transform(A) if self.dense is not None else A)
        if self.categorical:
            assert self.encoder is not None
            parts.extend(self.encoder.encode(inputs, missing))
        if not parts:
            return np.zeros((inputs.n, 0))
        return np.hstack(parts) if len(parts) > 1 else np.ascontiguousarray(parts[0], dtype=np.float64)

    def coded_matrix(self, inputs: Inputs) -> np.ndarray:
        """The float64 array LightGBM builds from the native frame (``lightgbm.basic._data_from_pandas``):
        numeric columns, then each categorical column's code in its fitted levels, NaN where the
        level is missing or was not among them."""
        assert self.native_dtypes is not None
        A = np.empty((inputs.n, len(self.numeric) + len(self.categorical)), dtype=np.float64)
        A[:, : len(self.numeric)] = self.numeric_block(inputs)
        for j, (c, dtype) in enumerate(zip(self.categorical, self.native_dtypes)):
            codes = _positions(dtype.categories, inputs.native(c)).astype(np.float64)
            codes[codes < 0] = np.nan
            A[:, len(self.numeric) + j] = codes
        return A

    def frame(self, inputs: Inputs, missing: str) -> pd.DataFrame:
        """The frame the estimator sees (native and catboost kinds), as ``FamilyModel._frame``."""
        cols: dict[str, Any] = {}
        A = self.numeric_block(inputs)
        for j, c in enumerate(self.numeric):
            cols[c] = A[:, j]
        if self.kind == "catboost":
            for c in self.categorical:
                cols[c] = inputs.strings(c, missing)
        else:
            assert self.native_dtypes is not None
            for c, dtype in zip(self.categorical, self.native_dtypes):
                codes = _positions(dtype.categories, inputs.native(c))
                cols[c] = pd.Categorical.from_codes(codes, dtype=dtype)
        return pd.DataFrame(cols, index=inputs.X.index)


def served_form(model: Any, prep_kind: str) -> ServedForm | None:
    """The served form of a fitted ``FamilyModel`` (None: its pipeline is not one the builders make)."""
    zeroed = [model.numeric.index(c) for c in getattr(model, "all_missing_", [])]
    form = ServedForm(prep_kind, list(model.numeric), list(model.categorical), zeroed)
    if prep_kind == "native":
        form.native_dtypes = [pd.CategoricalDtype(categories=model.levels_[c]) for c in model.categorical]
        return form
    if prep_kind == "catboost":
        return form
    pre = getattr(model.estimator_, "named_steps", {}).get("pre")
    if pre is None or getattr(pre, "remainder", None) != "drop":
        return None
    fitted = dict((name, (t, cols)) for name, t, cols in pre.transformers_ if name in ("num", "cat"))
    if model.numeric:
        num, cols = fitted.get("num", (None, None))
        if cols != list(model.numeric):
            return None
        if prep_kind == "dense":
            form.dense = _dense_numeric(num)
            if form.dense is None:
                return None
        elif dict((name, t) for name, t, _ in pre.transformers).get("num") != "passthrough":
            return None  # fitted, a passthrough is an identity FunctionTransformer; the spec says which
    if model.categorical:
        enc, cols = fitted.get("cat", (None, None))
        if cols != list(model.categorical) or not hasattr(enc, "categories_"):
            return None
        widths = _encoded_widths(enc)
        if widths is None:
            return None
        form.encoder = LookupEncoder.of(enc, list(model.categorical), widths)
    return form


def _dense_numeric(pipeline: Any) -> DenseNumeric | None:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    steps = getattr(pipeline, "named_steps", {})
    imp, scale = steps.get("impute"), steps.get("scale")
    if not (isinstance(imp, SimpleImputer) and isinstance(scale, StandardScaler) and len(steps) == 2):
        return None
    if not (imp.keep_empty_features and imp.strategy == "median" and _is_nan(imp.missing_values)):
        return None
    indicator = getattr(imp, "indicator_", None)
    if imp.add_indicator and (indicator is None or indicator.features != "missing-only"):
        return None
    features = np.asarray(indicator.features_ if indicator is not None else [], dtype=np.int64)
    return DenseNumeric(
        fill=np.asarray(imp.statistics_, dtype=np.float64),
        indicator=features,
        mean=None if scale.mean_ is None or not scale.with_mean else np.asarray(scale.mean_, dtype=np.float64),
        scale=None if scale.scale_ is None or not scale.with_std else np.asarray(scale.scale_, dtype=np.float64),
    )


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)


def _encoded_widths(encoder: Any) -> list[int] | None:
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    if isinstance(encoder, OrdinalEncoder):
        return [1] * len(encoder.categories_)
    if isinstance(encoder, OneHotEncoder) and not encoder.sparse_output:
        widths = getattr(encoder, "_n_features_outs", None)  # sklearn's own per-column output widths
        return None if widths is None else [int(w) for w in widths]
    return None


# ------------------------------------------------------------------------------ estimators


def forest_output(forest: Any, A: np.ndarray, classify: bool) -> np.ndarray:
    """A fitted sklearn forest's ``predict_proba`` (classify) or ``predict`` on ``A``: each tree's
    Cython prediction summed in ``estimators_`` order onto float64 zeros, then divided by the tree
    count, as ``ForestClassifier.predict_proba`` / ``ForestRegressor.predict`` do with n_jobs=1."""
    X = np.ascontiguousarray(A, dtype=np.float32)  # the forest's own input dtype (sklearn's DTYPE)
    trees = forest.estimators_
    out: np.ndarray
    if classify:
        k = int(forest.n_classes_)
        out = np.zeros((len(X), k), dtype=np.float64)
        for tree in trees:
            out += tree.tree_.predict(X)[:, :k]
    else:
        out = np.zeros(len(X), dtype=np.float64)
        for tree in trees:
            out += tree.tree_.predict(X)[:, 0]
    out /= len(trees)
    return out


def is_plain_forest(est: Any, classify: bool) -> bool:
    """A single-output sklearn RandomForest/ExtraTrees (what the builders make)."""
    from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor, RandomForestClassifier, RandomForestRegressor

    kinds = (RandomForestClassifier, ExtraTreesClassifier) if classify else (RandomForestRegressor, ExtraTreesRegressor)
    return isinstance(est, kinds) and int(getattr(est, "n_outputs_", 1)) == 1


@dataclass
class LightGBMDirect:
    """A fitted ``LGBMClassifier``/``LGBMRegressor`` predicted through its booster on the coded
    array, with the parameters its sklearn ``predict`` would pass (read once): the wrapper's
    per-call frame conversion, validation and parameter processing cost ~1 ms a fold model."""

    booster: Any
    params: dict[str, Any]
    n_jobs: int
    binary: bool  # predict_proba stacks (1 - p, p); multiclass and regression return the output

    @classmethod
    def of(cls, est: Any, form: ServedForm) -> "LightGBMDirect | None":
        from lightgbm.sklearn import LGBMClassifier, LGBMModel, _choose_param_value, _ConfigAliases

        if not isinstance(est, LGBMModel) or callable(getattr(est, "_objective", None)):
            return None
        booster = est.booster_
        fitted = [list(c) for c in (getattr(booster, "pandas_categorical", None) or [])]
        levels = [list(d.categories) for d in (form.native_dtypes or [])]
        if fitted != levels or list(booster.feature_name()) != [str(c) for c in form.numeric + form.categorical]:
            return None  # codes would not be the booster's own: predict through the frame
        params = est._process_params(stage="predict")
        for alias in _ConfigAliases.get_by_alias("data", "X", "raw_score", "start_iteration", "num_iteration",
                                                 "pred_leaf", "pred_contrib"):
            params.pop(alias, None)
        params = _choose_param_value("num_threads", params, est.n_jobs)
        n_jobs = int(est._process_n_jobs(params.pop("num_threads")))
        binary = isinstance(est, LGBMClassifier) and int(est.n_classes_) <= 2
        return cls(booster, params, n_jobs, binary)

    def predict(self, A: np.ndarray) -> np.ndarray:
        out = self.booster.predict(A, raw_score=False, start_iteration=0, num_iteration=None, pred_leaf=False,
                                   pred_contrib=False, validate_features=False,
                                   num_threads=batch_threads(len(A), self.n_jobs), **self.params)
        return np.vstack((1.0 - out, out)).transpose() if self.binary else out


@dataclass
class HistGBMDirect:
    """A fitted ``HistGradientBoosting*`` predicted from the pipeline's array without its internal
    ``ColumnTransformer`` (validation and an ``OrdinalEncoder`` on every call, ~1 ms a fold model):
    the same re-coding as lookups (categorical columns first, each value's index in the encoder's
    fitted float categories, NaN for a missing or unknown one), then the estimator's own tree sum
    and link, as its ``_raw_predict`` runs them."""

    est: Any
    categorical: np.ndarray  # the categorical columns of the input array (bool mask)
    categories: list[np.ndarray]  # per categorical column: its fitted non-NaN categories, sorted
    classify: bool

    @classmethod
    def of(cls, est: Any, classify: bool) -> "HistGBMDirect | None":
        from sklearn.compose import ColumnTransformer
        from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

        pre = getattr(est, "_preprocessor", None)
        if pre is None:
            return None
        steps = {name: (t, cols) for name, t, cols in getattr(pre, "transformers_", [])}
        enc, mask = steps.get("encoder", (None, None))
        num, rest = steps.get("numerical", (None, None))
        if not (isinstance(pre, ColumnTransformer) and set(steps) <= {"encoder", "numerical", "remainder"}
                and isinstance(enc, OrdinalEncoder) and isinstance(num, FunctionTransformer)
                and isinstance(mask, np.ndarray) and mask.dtype == bool and np.array_equal(~mask, rest)
                and _is_nan(enc.unknown_value) and _is_nan(enc.encoded_missing_value)
                and enc.handle_unknown == "use_encoded_value"):
            return None
        categories = []
        for c in enc.categories_:
            values = np.asarray(c, dtype=np.float64)
            values = values[~np.isnan(values)]
            if np.any(np.diff(values) <= 0):
                return None  # not np.unique's sorted levels
            categories.append(values)
        return cls(est, mask, categories, classify)

    def predict(self, A: np.ndarray) -> np.ndarray:
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

        parts = []
        for values, col in zip(self.categories, A[:, self.categorical].T):
            pos = np.minimum(np.searchsorted(values, col), max(len(values) - 1, 0))
            hit = (values[pos] == col) if len(values) else np.zeros(len(col), dtype=bool)
            parts.append(np.where(hit, pos, np.nan).astype(np.float64))
        B = np.column_stack([*parts, A[:, ~self.categorical]]).astype(np.float64, copy=False)
        B = np.ascontiguousarray(B)
        est = self.est
        raw = np.zeros((len(B), est.n_trees_per_iteration_), dtype=est._baseline_prediction.dtype, order="F")
        raw += est._baseline_prediction
        est._predict_iterations(B, est._predictors, raw, False, _openmp_effective_n_threads(None))
        return est._loss.predict_proba(raw) if self.classify else est._loss.link.inverse(raw.ravel())


def booster_kwargs(family: str, n_rows: int) -> dict[str, Any]:
    """Per-call thread settings for small batches (boosters' predictions do not depend on them)."""
    if n_rows > SMALL_BATCH:
        return {}
    if family == "lightgbm":
        return {"num_threads": 1}
    if family == "catboost":
        return {"thread_count": 1}
    return {}
