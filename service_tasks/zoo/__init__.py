"""The base-model zoo: eight families, each with its own preprocessing, a seeded random search under
a time budget, and K-fold training on the ONE shared fold plan.

Out-of-fold (OOF) predictions: every training row is predicted by the fold model that did not see
it. Holdout predictions: the average of the K fold models (k-fold bagging, as AutoGluon); there is
no refit on all rows, so the OOF and holdout predictions come from the same models that serve.

Preprocessing is part of each fold model and fitted on that fold's training rows only:

=============  ======================================================================
family         preprocessing
=============  ======================================================================
linear, knn    median impute (+ missing indicators), standardise; one-hot categoricals
random_forest  NaN kept (native support), ordinal-encoded categoricals
extra_trees    same as random_forest
hist_gbm       NaN kept, native categorical support on ordinal codes
xgboost        NaN kept, native categoricals (pandas category, levels fixed per fold)
lightgbm       same as xgboost
catboost       NaN kept, native categoricals (strings, `__missing__`)
=============  ======================================================================

The gradient-boosting families (hist_gbm internally; xgboost, lightgbm and catboost on a seeded
10% inner split of each fold's training rows) use early stopping, so the number of trees is
learned, never taken from the OOF fold.

Budgets (``time_limits``): the base tasks and ``boost`` search with ``time_bound``, so every config,
the default one included, trains within the task's budget: each fold model gets an even share of
the time left, and boosters, hist_gbm and forests stop adding rounds, iterations or trees when it
is spent (never fewer than 10); xgboost, lightgbm and hist_gbm fits the limit would cut short also
raise their learning rate after their first 10 rounds (``time_limits.paced_learning_rate``), and a
CatBoost fold model starts at the rate that the last measured pace of a like fit affords (every
fold model but a search's first; ``time_limits.Pace``). kNN and
linear fits (and CatBoost on a GPU) have no such hook and run to the end. With ``OBSRV_MAX_TRIALS``
set (reproducible runs) nothing depends on the clock: no time bound.

Large tables (``resource_caps``): a forest config's ``n_estimators`` is lowered when the estimated
fold bag would exceed its memory share, and kNN fold models fit on a seeded sample of at most
50,000 rows; both are logged, and the forest cap shows in the published config.

`fit_family` is the public entry point the ensemble tasks reuse (per-route models, boost).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import time
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd

from obsrv.service_tasks import metrics as M
from obsrv.service_tasks.zoo import time_limits
from obsrv.service_tasks.zoo.resource_caps import KNN_MAX_FIT_ROWS, cap_forest_trees

Problem = Literal["classification", "regression"]
FAMILIES = ("linear", "random_forest", "extra_trees", "hist_gbm", "xgboost", "lightgbm", "catboost", "knn")
GPU_CAPABLE = ("xgboost", "lightgbm", "catboost")
MISSING = "__missing__"
MAX_LEVELS = 100  # categorical levels kept per column (the rest become "unknown")
FIT_SHARE_PREDICT = 0.15  # of a fold's time share, kept for its OOF and holdout predictions



def available_cores() -> int:
    """Threads one task may use: `OBSRV_THREADS` when the local runner shares the machine between
    parallel tasks (each task using every core oversubscribes it badly: a 4-fold hist_gbm fit
    measured 25 s instead of 0.5 s), else every core this process may run on."""
    shared = os.environ.get("OBSRV_THREADS", "").strip()
    if shared.isdigit() and int(shared) > 0:
        return int(shared)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


SMALL_DATA_ROWS = 10_000


def threads_for(family: str, n_rows: int, n_jobs: int | None) -> int:
    """Threads for one model. LightGBM, XGBoost and HistGradientBoosting run faster on ONE thread
    below ~10k rows (thread start-up and OpenMP sync dominate; LightGBM measured 5x faster on 300
    rows, 2 cores; HistGradientBoosting degrades badly when cores are shared), so they get one."""
    if n_jobs is not None:
        return max(1, n_jobs)
    if family in ("lightgbm", "xgboost", "hist_gbm") and n_rows < SMALL_DATA_ROWS:
        return 1
    return available_cores()


def cuda_device_count() -> int:
    """CUDA devices visible through the driver API (`libcuda`); 0 when there is no driver. Cheap
    and torch-free; `nvidia-smi -L` is the fallback when the driver library cannot be loaded by
    name (unusual driver installs)."""
    import ctypes

    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return _nvidia_smi_count()
    try:
        if lib.cuInit(0) != 0:
            return 0
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return int(count.value)
    except (OSError, AttributeError):  # pragma: no cover - a broken driver library
        return 0


def _nvidia_smi_count() -> int:
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    if out.returncode != 0:
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def cuda_present() -> bool:
    """A CUDA device is visible."""
    return cuda_device_count() > 0


def opencl_gpu_platform() -> int | None:
    """Index of the first OpenCL platform with a GPU device, or None. lightgbm's `device_type="gpu"`
    is OpenCL: with only a CPU OpenCL driver installed (e.g. pocl, found on CUDA machines) it "works"
    but runs on the CPU, measured 11x slower than its plain CPU mode on an H100 machine."""
    import ctypes

    try:
        cl = ctypes.CDLL("libOpenCL.so.1")  # what lib_lightgbm dlopens
        n = ctypes.c_uint(0)
        cl.clGetPlatformIDs.argtypes = [ctypes.c_uint, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint)]
        if cl.clGetPlatformIDs(0, None, ctypes.byref(n)) != 0 or n.value == 0:
            return None
        platforms = (ctypes.c_void_p * n.value)()
        if cl.clGetPlatformIDs(n.value, platforms, None) != 0:
            return None
        cl.clGetDeviceIDs.argtypes = [
            ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint)
        ]
        for i in range(n.value):
            count = ctypes.c_uint(0)
            # CL_DEVICE_TYPE_GPU = 1 << 2
            if cl.clGetDeviceIDs(platforms[i], 1 << 2, 0, None, ctypes.byref(count)) == 0 and count.value > 0:
                return i
    except (OSError, AttributeError):
        return None
    return None


_PROBED: dict[str, Any] = {}  # a plain dict, not functools.cache: fitted models pickle zoo code by value


def lightgbm_gpu_platform() -> int | None:
    """The OpenCL platform lightgbm should train on, or None when this machine/build cannot train
    lightgbm on a GPU: needs an OpenCL GPU device (`opencl_gpu_platform`) and a lightgbm build with
    GPU support (pip wheels may lack it; a tiny fit tells). Probed once per process."""
    if "lightgbm_gpu_platform" in _PROBED:
        return _PROBED["lightgbm_gpu_platform"]
    platform = opencl_gpu_platform()
    if platform is not None:
        try:
            import lightgbm as lgb

            X = np.random.default_rng(0).normal(size=(64, 3))
            lgb.LGBMRegressor(n_estimators=2, device_type="gpu", gpu_platform_id=platform, verbose=-1).fit(
                X, X[:, 0]
            )
        except Exception:  # noqa: BLE001 - any failure means "no usable GPU build"
            platform = None
    _PROBED["lightgbm_gpu_platform"] = platform
    return platform


def lightgbm_gpu_supported() -> bool:
    """Can lightgbm train on a GPU here (see `lightgbm_gpu_platform`)?"""
    return lightgbm_gpu_platform() is not None


def resolve_devices(
    families: list[str] | tuple[str, ...],
    env: Any = None,
    *,
    cuda_count: Callable[[], int] | None = None,
    lightgbm_gpu: Callable[[], bool] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """THE placement rule: the zoo device (`"cuda"`/`"cpu"`) per family, plus one log line per
    decision. Used by the base tasks (`default_device`) and by `boost`.

    * `OBSRV_COMPUTE=cpu` (the local runner placed the task on CPU compute): CPU, even with CUDA.
    * otherwise a visible CUDA device decides (on Databricks the variable is unset, and a device is
      how a task finds out it landed on serverless GPU); `gpu` without a device falls back to CPU.
    * with a device: xgboost `device="cuda"`, catboost `task_type="GPU"`, lightgbm its GPU device
      only when an OpenCL GPU device exists and this build supports it (`lightgbm_gpu_supported`,
      probed once); other families
      have no GPU mode.

    `env` (default `os.environ`) and the two probes are injectable for tests. Nothing is probed when
    no family in `families` can use a GPU.
    """
    env = os.environ if env is None else env
    devices = {f: "cpu" for f in families}
    capable = [f for f in families if f in GPU_CAPABLE]
    if not capable:
        return devices, [f"{f}: no GPU mode; CPU" for f in families]
    placement = str(env.get("OBSRV_COMPUTE", "")).strip().lower()
    if placement == "cpu":
        return devices, ["running on CPU (placed on CPU compute)"]
    n = (cuda_count or cuda_device_count)()
    if n == 0:
        if placement == "gpu":
            return devices, ["OBSRV_COMPUTE=gpu but no CUDA device found; fell back to CPU"]
        return devices, ["no CUDA device found; running on CPU"]
    notes = [f"{n} CUDA device(s) found"]
    for f in families:
        if f == "xgboost":
            devices[f] = "cuda"
            notes.append("xgboost: device=cuda")
        elif f == "catboost":
            devices[f] = "cuda"
            notes.append("catboost: task_type=GPU")
        elif f == "lightgbm":
            if (lightgbm_gpu or lightgbm_gpu_supported)():
                devices[f] = "cuda"
                notes.append("lightgbm: device_type=gpu")
            else:
                notes.append("lightgbm: this build has no GPU support; fell back to CPU")
        else:
            notes.append(f"{f}: no GPU mode; CPU")
    return devices, notes


def default_device(family: str) -> str:
    """The device `resolve_devices` picks for one family."""
    return resolve_devices([family])[0][family]


# ---------------------------------------------------------------------------------- predictors


class FoldBag:
    """The K fold models of one config; predicts their average (the served model)."""

    def __init__(self, models: list[Any], family: str, params: dict[str, Any]) -> None:
        self.models_ = models
        self.family = family
        self.params = params

    def predict_matrix(self, X: pd.DataFrame) -> np.ndarray:
        return np.mean([m.predict_matrix(X) for m in self.models_], axis=0)


# Read from fold models by attribute, never by class: a published bag is pickled with obsrv's code
# by value (``tracking.dump_predictor``), so an unpickled one is not an instance of FoldBag here.
def fit_time_limit(models: list[Any]) -> float | None:
    """The longest training time limit of these fold models (None: every one ran to the end)."""
    limits = [m.time_limit_s for m in models if getattr(m, "time_limit_s", None) is not None]
    return max(limits) if limits else None


def last_pace(models: list[Any]) -> time_limits.Pace | None:
    """The last measured pace among these fold models (CatBoost under a time limit), else None."""
    return next((m.pace_ for m in reversed(models) if getattr(m, "pace_", None) is not None), None)


class _ConstantModel:
    """What a fold gets when its training rows hold a single class (tiny routes): the class
    frequencies (or the mean target)."""

    def __init__(self, row: np.ndarray) -> None:
        self.row_ = row

    def predict_matrix(self, X: pd.DataFrame) -> np.ndarray:
        return np.tile(self.row_, (len(X), 1))


class FamilyModel:
    """One fitted fold model: its preprocessing plus the estimator."""

    time_limit_s: float | None = None
    """Training time limit (``time_limits``: boosters and forests stop early and keep what they have)."""
    stopped_at_: int | None = None
    """Rounds or trees trained when the time limit stopped the fit (None: it ran to the end)."""
    paced_lr_: float | None = None
    """The learning rate the time limit's pacing raised the fit to (None: unchanged). For CatBoost, the
    rate the whole fit ran at, from ``pace_hint``; it stays in the estimator's params, because
    CatBoost's leaf values carry it (the other families give their configured rate back)."""
    pace_hint: time_limits.Pace | None = None
    """CatBoost with a time limit: the last measured pace of a like fit, to pick this fit's rate."""
    pace_: time_limits.Pace | None = None
    """CatBoost with a time limit: this fit's measured pace, the next fit's ``pace_hint``."""

    def __init__(
        self,
        family: str,
        params: dict[str, Any],
        *,
        problem: Problem,
        n_classes: int,
        numeric: list[str],
        categorical: list[str],
        seed: int,
        n_jobs: int,
        device: str = "cpu",
    ) -> None:
        self.family = family
        self.params = dict(params)
        self.problem = problem
        self.n_classes = n_classes
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.seed = seed
        self.n_jobs = n_jobs
        self.device = device

    # --- preprocessing shared by fit and predict
    def _numeric(self, X: pd.DataFrame, fit: bool = False) -> pd.DataFrame:
        out = pd.DataFrame(index=X.index)
        for c in self.numeric:
            values = pd.to_numeric(X[c], errors="coerce")
            if pd.api.types.is_extension_array_dtype(values.dtype) or values.dtype == bool:
                # nullable ints/bools: pd.NA -> NaN
                values = values.astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
            out[c] = np.asarray(values, dtype=np.float64)
        if fit:
            # A column with no value in these training rows (a fold or a route can have one)
            # carries no information, and some estimators (hist_gbm's binning) crash on it.
            self.all_missing_ = [c for c in self.numeric if len(out) and out[c].isna().all()]
        for c in getattr(self, "all_missing_", []):
            out[c] = 0.0
        return out

    def _strings(self, X: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(index=X.index)
        for c in self.categorical:
            s = X[c].astype(object)
            out[c] = s.where(s.notna(), MISSING).astype(str).astype(object)
        return out

    def _frame(self, X: pd.DataFrame, fit: bool) -> pd.DataFrame:
        kind = _PREP[self.family]
        if kind in ("dense", "ordinal", "catboost"):
            parts = [self._numeric(X, fit), self._strings(X)]
            return pd.concat(parts, axis=1)[self.numeric + self.categorical]
        # native pandas categoricals with levels fixed on the fold's training rows
        num = self._numeric(X, fit)
        if fit:
            self.levels_ = {}
            for c in self.categorical:
                counts = X[c].astype(object).dropna().astype(str).value_counts()
                self.levels_[c] = sorted(counts.index[:MAX_LEVELS].tolist())
        for c in self.categorical:
            s = X[c].astype(object)
            s = s.where(s.isna(), s.astype(str))
            levels = self.levels_[c]
            s = s.where(s.isin(levels))  # levels unseen in this fold's training rows -> missing
            num[c] = pd.Categorical(s, categories=levels)
        return num[self.numeric + self.categorical]

    # --- fit / predict
    def fit(self, X: pd.DataFrame, y: np.ndarray, w: np.ndarray | None) -> "FamilyModel":
        if self.family == "knn" and len(X) > KNN_MAX_FIT_ROWS:
            # a seeded sample, drawn before the classes are read so that re-expansion covers a
            # class the sample happens to miss
            keep = np.sort(np.random.default_rng(self.seed + 104729).choice(len(X), KNN_MAX_FIT_ROWS, replace=False))
            X, y = X.iloc[keep], np.asarray(y)[keep]
            w = None if w is None else np.asarray(w)[keep]
        self.fit_rows_ = len(X)
        frame = self._frame(X, fit=True)
        if self.problem == "classification":
            # a fold (or a route) may miss some classes: fit on the present ones, re-expand later
            self.classes_ = np.unique(np.asarray(y, dtype=np.int64))
            y = np.searchsorted(self.classes_, np.asarray(y, dtype=np.int64))
        self.estimator_ = _BUILD[self.family](self, frame)
        if self.family == "hist_gbm" and not _stratified_holdout_possible(y, self.problem, HIST_GBM_VALIDATION):
            self.estimator_.set_params(est__early_stopping=False)
        fit_kwargs: dict[str, Any] = {}
        if w is not None and self.family != "knn":
            key = "est__sample_weight" if _PREP[self.family] in ("dense", "ordinal") else "sample_weight"
            fit_kwargs[key] = w
        with self._threads():
            if self.family in ("xgboost", "lightgbm", "catboost"):
                self._fit_booster(frame, y, w)
            elif self.family in ("random_forest", "extra_trees") and self.time_limit_s is not None:
                self._timed(time_limits.grow_forest(self.estimator_, frame, y, fit_kwargs, self.time_limit_s))
            elif self.family == "hist_gbm" and self.time_limit_s is not None:
                self._timed(time_limits.grow_hist_gbm(self.estimator_, frame, y, fit_kwargs, self.time_limit_s))
            else:
                self.estimator_.fit(frame, y, **fit_kwargs)
        return self

    def _timed(self, clock: time_limits.FitClock | None) -> None:
        """Keep what the time limit did to this fit (None: no limit)."""
        self.stopped_at_ = None if clock is None else clock.stopped_at
        self.paced_lr_ = None if clock is None else clock.paced_lr

    def _threads(self) -> Any:
        """HistGradientBoosting has no n_jobs: cap its OpenMP pool instead."""
        if self.family != "hist_gbm":
            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=self.n_jobs, user_api="openmp")

    @property
    def n_fit_classes(self) -> int:
        return len(self.classes_) if self.problem == "classification" else 1

    def _fit_booster(self, frame: pd.DataFrame, y: np.ndarray, w: np.ndarray | None) -> None:
        n = len(frame)
        rng = np.random.default_rng(self.seed + 7919)
        perm = rng.permutation(n)
        n_val = max(1, int(0.1 * n)) if n >= 50 else 0
        val, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        if self.problem == "classification" and n_val:
            # the inner training part must see every class the fold has
            if len(np.unique(y[tr])) < len(np.unique(y)):
                val, tr = np.array([], dtype=int), np.arange(n)
        X_tr, y_tr = frame.iloc[tr], y[tr]
        w_tr = None if w is None else w[tr]
        est = self.estimator_
        limit = self.time_limit_s
        if self.family == "xgboost":
            kwargs: dict[str, Any] = {"sample_weight": w_tr, "verbose": False}
            if len(val):
                kwargs["eval_set"] = [(frame.iloc[val], y[val])]
                kwargs["sample_weight_eval_set"] = None if w is None else [w[val]]
            else:
                est.set_params(early_stopping_rounds=None)
            rate = est.get_params()["learning_rate"]
            rate = 0.3 if rate is None else float(rate)  # None: xgboost's own default eta
            rounds = int(est.get_params()["n_estimators"] or 100)  # None: xgboost's own default
            stop = time_limits.xgboost_callback(limit, rate, rounds) if limit is not None else None
            est.set_params(callbacks=[stop] if stop else None)
            est.fit(X_tr, y_tr, **kwargs)
            est.set_params(device="cpu", callbacks=None)  # serve anywhere; the callback is spent
            self._timed(stop.clock if stop else None)
        elif self.family == "lightgbm":
            import lightgbm as lgb

            kwargs = {"sample_weight": w_tr}
            callbacks = []
            early = None
            if len(val):
                kwargs["eval_set"] = [(frame.iloc[val], y[val])]
                kwargs["eval_sample_weight"] = None if w is None else [w[val]]
                early = lgb.early_stopping(50, verbose=False)
                callbacks.append(early)
            if limit is not None:
                rate, rounds = float(est.get_params()["learning_rate"]), int(est.get_params()["n_estimators"])
                callbacks.append(time_limits.lightgbm_callback(limit, early, rate, rounds))
            if callbacks:
                kwargs["callbacks"] = callbacks
            est.fit(X_tr, y_tr, **kwargs)
            self._timed(callbacks[-1].clock if limit is not None else None)
        else:  # catboost
            kwargs = {"sample_weight": w_tr}
            if len(val):
                kwargs["eval_set"] = (frame.iloc[val], y[val])
                kwargs["early_stopping_rounds"] = 50
            # CatBoost runs user callbacks on the CPU only; on a GPU the fit runs to the end
            cb_stop = time_limits.CatBoostStopAtLimit(limit) if limit is not None and self.device == "cpu" else None
            if cb_stop:
                kwargs["callbacks"] = [cb_stop]
                params = est.get_params()
                rate = params.get("learning_rate")
                if self.pace_hint is not None and rate is not None:  # None: CatBoost picks its own rate
                    # CatBoost cannot change its rate during a fit: start it at the one the last pace affords
                    wanted = next((int(params[k]) for k in ("iterations", "n_estimators", "num_boost_round",
                                                            "num_trees") if params.get(k)), 1000)  # 1000: its default
                    cb_stop.clock.paced_lr = self.pace_hint.learning_rate(float(rate), limit, wanted)
                    if cb_stop.clock.paced_lr is not None:
                        est.set_params(learning_rate=cb_stop.clock.paced_lr)
            est.fit(X_tr, y_tr, **kwargs)
            self._timed(cb_stop.clock if cb_stop else None)
            self.pace_ = cb_stop.clock.measured_pace() if cb_stop else None

    def predict_matrix(self, X: pd.DataFrame) -> np.ndarray:
        frame = self._frame(X, fit=False)
        if self.problem == "regression":
            with self._threads():
                return np.asarray(self.estimator_.predict(frame), dtype=np.float64).reshape(-1, 1)
        with self._threads():
            proba = np.asarray(self.estimator_.predict_proba(frame), dtype=np.float64)
        out = np.zeros((len(frame), self.n_classes))
        out[:, self.classes_] = proba
        return out


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

    common = dict(
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

    common = dict(
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


# ------------------------------------------------------------------------------ search spaces


def default_params(family: str, problem: Problem) -> dict[str, Any]:
    """The family's default config: trained first, so even a zero budget yields a model."""
    if family == "linear":
        return {"C": 1.0} if problem == "classification" else {"alpha": 1.0}
    if family == "knn":
        return {"n_neighbors": 15, "weights": "distance"}
    if family in ("random_forest", "extra_trees"):
        # min_samples_leaf >= 2 keeps the K x n_estimators fold trees (the served model) compact
        return {
            "n_estimators": 150,
            "max_features": "sqrt" if problem == "classification" else 0.5,
            "min_samples_leaf": 3 if family == "random_forest" else 2,
        }
    if family == "hist_gbm":
        return {"learning_rate": 0.1, "max_leaf_nodes": 31, "min_samples_leaf": 20, "max_iter": 300}
    if family == "xgboost":
        return {
            "n_estimators": 1000,
            "learning_rate": 0.05,
            "max_depth": 6,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
            "min_child_weight": 1.0,
        }
    if family == "lightgbm":
        return {
            "n_estimators": 1000,
            "learning_rate": 0.05,
            "num_leaves": 31,
            "min_child_samples": 20,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
        }
    if family == "catboost":
        return {"iterations": 1000, "learning_rate": 0.08, "depth": 6}
    raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def sample_params(family: str, problem: Problem, rng: np.random.Generator) -> dict[str, Any]:
    """One random config from the family's search space."""
    c = lambda values: values[int(rng.integers(len(values)))]  # noqa: E731
    if family == "linear":
        return {"C": _loguniform(rng, 1e-3, 1e2)} if problem == "classification" else {"alpha": _loguniform(rng, 1e-3, 1e3)}
    if family == "knn":
        return {"n_neighbors": int(c([5, 10, 25, 50, 100])), "weights": c(["uniform", "distance"]), "p": int(c([1, 2]))}
    if family in ("random_forest", "extra_trees"):
        return {
            "n_estimators": int(c([100, 150, 200])),
            "max_features": c(["sqrt", 0.3, 0.5, 0.8]),
            "min_samples_leaf": int(c([2, 4, 8, 16])),
            "max_depth": c([None, 8, 16]),
        }
    if family == "hist_gbm":
        return {
            "learning_rate": _loguniform(rng, 0.02, 0.3),
            "max_leaf_nodes": int(c([7, 15, 31, 63])),
            "min_samples_leaf": int(c([5, 10, 20, 50])),
            "l2_regularization": _loguniform(rng, 1e-3, 10.0),
            "max_iter": 500,
        }
    if family == "xgboost":
        return {
            "n_estimators": 1000,
            "learning_rate": _loguniform(rng, 0.01, 0.3),
            "max_depth": int(rng.integers(3, 11)),
            "subsample": float(rng.uniform(0.5, 1.0)),
            "colsample_bytree": float(rng.uniform(0.4, 1.0)),
            "min_child_weight": _loguniform(rng, 0.5, 20.0),
            "reg_lambda": _loguniform(rng, 1e-2, 10.0),
        }
    if family == "lightgbm":
        return {
            "n_estimators": 1000,
            "learning_rate": _loguniform(rng, 0.01, 0.3),
            "num_leaves": int(c([7, 15, 31, 63, 127])),
            "min_child_samples": int(c([5, 10, 20, 50])),
            "subsample": float(rng.uniform(0.5, 1.0)),
            "colsample_bytree": float(rng.uniform(0.4, 1.0)),
            "reg_lambda": _loguniform(rng, 1e-3, 10.0),
        }
    if family == "catboost":
        return {
            "iterations": 1000,
            "learning_rate": _loguniform(rng, 0.02, 0.2),
            "depth": int(rng.integers(4, 9)),
            "l2_leaf_reg": _loguniform(rng, 1.0, 10.0),
        }
    raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")


# -------------------------------------------------------------------------------- CV training


@dataclass
class FamilyFit:
    """One trained config: the servable fold bag and its honest predictions."""

    predictor: FoldBag
    oof: np.ndarray  # (n, K): each row predicted by the fold model that did not see it
    params: dict[str, Any]
    score: float  # `metric` on the OOF predictions, natural direction
    holdout: np.ndarray | None = None  # (n_holdout, K): the average of the fold models
    metric: str = ""
    seconds: float = 0.0
    device: str = "cpu"
    trials: list[dict[str, Any]] = field(default_factory=list)  # the whole search (best fit only)


def _split_columns(X: pd.DataFrame, categorical: list[str] | None) -> tuple[list[str], list[str]]:
    if categorical is None:
        categorical = [
            c
            for c in X.columns
            if not (pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c]))
        ]
    cats = [c for c in X.columns if c in set(categorical)]
    return [c for c in X.columns if c not in set(cats)], cats


def cross_fit(
    family: str,
    params: dict[str, Any],
    X: pd.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
    w: np.ndarray | None = None,
    *,
    problem: Problem,
    n_classes: int,
    seed: int,
    X_holdout: pd.DataFrame | None = None,
    categorical_columns: list[str] | None = None,
    n_jobs: int | None = None,
    device: str = "cpu",
    deadline: float | None = None,
    pace: time_limits.Pace | None = None,
) -> tuple[FoldBag, np.ndarray, np.ndarray | None]:
    """Fit one config on every fold: (fold bag, OOF matrix, averaged holdout matrix or None).

    ``deadline`` (a ``time.perf_counter()`` value): the time left is shared evenly by the folds
    still to fit, and each fold model trains within its share (``time_limits``). A CatBoost fold
    model starts at the rate that the last measured pace affords in its share: ``pace`` (an earlier
    config's, from ``search_family``) for the first fold, the previous fold's after that
    (``time_limits.Pace``). The bag's ``models_`` keep their ``pace_``.
    """
    numeric, categorical = _split_columns(X, categorical_columns)
    k_out = n_classes if problem == "classification" else 1
    folds = np.asarray(folds)
    fold_ids = np.unique(folds[folds >= 0])
    if len(fold_ids) < 2:
        raise ValueError("cross-fitting needs at least two folds")
    oof = np.full((len(X), k_out), np.nan)  # rows of fold -1 stay NaN (train-only rows)
    models: list[Any] = []
    hold_sum = None if X_holdout is None else np.zeros((len(X_holdout), k_out))
    y = np.asarray(y)
    for done, f in enumerate(fold_ids):
        test = folds == f
        train = ~test
        y_tr = y[train]
        w_tr = None if w is None else np.asarray(w)[train]
        if problem == "classification" and len(np.unique(y_tr)) < 2:
            row = np.bincount(y_tr.astype(int), minlength=n_classes).astype(float)
            model: Any = _ConstantModel(row / row.sum())
        else:
            model = FamilyModel(
                family,
                params,
                problem=problem,
                n_classes=n_classes,
                numeric=numeric,
                categorical=categorical,
                seed=seed,
                n_jobs=threads_for(family, int(train.sum()), n_jobs),
                device=device,
            )
            if deadline is not None:
                # training only: the share leaves FIT_SHARE_PREDICT of it for predicting the fold
                share = (deadline - time.perf_counter()) / (len(fold_ids) - done)
                model.time_limit_s = max(0.0, share * (1.0 - FIT_SHARE_PREDICT))
                model.pace_hint = pace
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(X.loc[train], y_tr, w_tr)
            pace = getattr(model, "pace_", None) or pace  # a family that cannot pace itself during a fit (CatBoost)
        oof[test] = model.predict_matrix(X.loc[test])
        if hold_sum is not None and X_holdout is not None and len(X_holdout):  # empty: holdout 0
            hold_sum += model.predict_matrix(X_holdout)
        models.append(model)
    holdout = None if hold_sum is None else hold_sum / len(models)
    return FoldBag(models, family, dict(params)), oof, holdout


def search_family(
    family: str,
    X: pd.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
    w: np.ndarray | None = None,
    *,
    problem: Problem,
    n_classes: int,
    budget_seconds: float,
    seed: int,
    metric: str | None = None,
    X_holdout: pd.DataFrame | None = None,
    categorical_columns: list[str] | None = None,
    n_jobs: int | None = None,
    device: str | None = None,
    max_trials: int | None = None,
    keep: int = 2,
    params: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    time_bound: bool = False,
) -> list[FamilyFit]:
    """Seeded random search under a time budget; the best `keep` fits, best first.

    The default config runs first. With `time_bound` (and a budget above 0) every trial, the default
    one included, trains within the budget: boosters and forests stop early at their fold's share of
    the time left (`cross_fit`'s deadline); without it the default config runs to the end whatever
    the budget. A further trial starts only when the time used plus the slowest trial so far stays
    within `budget_seconds`. The config sequence is fixed by
    `seed`; how many configs run depends on the machine, unless `max_trials` (or env
    `OBSRV_MAX_TRIALS`) caps it; the env variable also turns `time_bound` off and makes the search
    run exactly that many configs whatever the budget, so that a run with it does not depend on the
    clock at all. The best fit carries the whole trial list in `.trials`.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    metric = metric or ("logloss" if problem == "classification" else "rmse")
    device = device or default_device(family)
    if max_trials is None and os.environ.get("OBSRV_MAX_TRIALS"):
        max_trials = int(os.environ["OBSRV_MAX_TRIALS"])
    rng = np.random.default_rng([seed, zlib.crc32(family.encode())])
    y = np.asarray(y)
    w = None if w is None else np.asarray(w, dtype=np.float64)
    scored = np.asarray(folds) >= 0
    ids = np.unique(np.asarray(folds)[scored])
    n_folds = len(ids)
    n_fit_rows = max((int((np.asarray(folds) != f).sum()) for f in ids), default=len(y))  # a fold model's rows
    k_out = n_classes if problem == "classification" else 1
    configs_left = 1 if params is not None else (max_trials or 10_000)
    start = time.perf_counter()
    deadline = time_limits.task_deadline(start, budget_seconds) if time_bound else None
    slowest = 0.0
    pace: time_limits.Pace | None = None
    trials: list[dict[str, Any]] = []
    kept: list[tuple[float, int, FamilyFit]] = []
    seen: set[str] = set()
    i = 0
    # with OBSRV_MAX_TRIALS the trial count is the pin, never the clock (README: reproducible runs)
    clock_stops = not time_limits.trials_pinned()
    while configs_left > 0:
        if clock_stops and i > 0 and time.perf_counter() - start + slowest > budget_seconds:
            break
        cfg = dict(params) if params is not None else (
            default_params(family, problem) if i == 0 else sample_params(family, problem, rng)
        )
        cfg, capped = cap_forest_trees(family, cfg, n_train=n_fit_rows, n_values=k_out, n_folds=max(n_folds, 1))
        key = repr(sorted(cfg.items()))
        i += 1
        if key in seen:
            if i > 50 * (len(seen) + 1):
                break  # a tiny space is exhausted
            continue
        seen.add(key)
        configs_left -= 1
        if capped and log:
            log(capped)
        if family == "knn" and n_fit_rows > KNN_MAX_FIT_ROWS and i == 1 and log:
            log(f"knn: fold models fit on a seeded sample of {KNN_MAX_FIT_ROWS:,} of their {n_fit_rows:,} rows")
        t0 = time.perf_counter()
        fit_config = functools.partial(
            cross_fit, family, cfg, X, y, folds, w, problem=problem, n_classes=n_classes, seed=seed,
            X_holdout=X_holdout, categorical_columns=categorical_columns, n_jobs=n_jobs,
        )
        try:
            bag, oof, hold = fit_config(device=device, deadline=deadline, pace=pace)
        except Exception as exc:  # noqa: BLE001
            if device != "cpu":
                if log:
                    log(f"{family}: {device} training failed ({type(exc).__name__}: {exc}); using the CPU")
                device = "cpu"
                # the failed attempt may have spent the trial's time: the retry gets it afresh
                retry_deadline = None if deadline is None else time.perf_counter() + max(deadline - t0, 1.0)
                bag, oof, hold = fit_config(device=device, deadline=retry_deadline, pace=pace)
            elif len(trials) == 0:
                raise
            else:
                if log:
                    log(f"{family} trial {len(trials)} failed: {type(exc).__name__}: {exc}")
                continue
        seconds = time.perf_counter() - t0
        slowest = max(slowest, seconds)
        # the next config's first fold starts from this config's last pace (CatBoost; time_limits.Pace)
        pace = last_pace(bag.models_) or pace
        value = M.score(metric, y[scored], oof[scored], problem=problem, weights=None if w is None else w[scored])
        stopped = [m.stopped_at_ for m in bag.models_ if getattr(m, "stopped_at_", None) is not None]
        paced = [round(m.paced_lr_, 4) for m in bag.models_ if getattr(m, "paced_lr_", None) is not None]
        trials.append({"trial": len(trials), "params": cfg, "oof_" + metric: value, "seconds": round(seconds, 3)}
                      | ({"stopped_at_time_limit": stopped} if stopped else {})
                      | ({"paced_learning_rate": paced} if paced else {}))
        if log:
            log(f"{family} trial {len(trials) - 1}: oof {metric}={value:.5f} in {seconds:.1f}s {cfg}"
                + time_limits.limit_summary(bag.models_, "folds"))
        fit = FamilyFit(bag, oof, cfg, value, hold, metric, seconds, device)
        loss = M.loss(metric, y[scored], oof[scored], problem=problem, weights=None if w is None else w[scored])
        kept.append((loss, len(trials), fit))
        kept.sort(key=lambda item: item[:2])  # ties go to the earlier trial
        del kept[keep:]
    best = [fit for _, _, fit in kept]
    best[0].trials = trials
    return best


def fit_family(
    family: str,
    X: pd.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
    w: np.ndarray | None = None,
    *,
    problem: Problem,
    n_classes: int,
    budget_seconds: float,
    seed: int,
    params: dict[str, Any] | None = None,
    metric: str | None = None,
    X_holdout: pd.DataFrame | None = None,
    categorical_columns: list[str] | None = None,
    n_jobs: int | None = None,
    device: str | None = None,
    max_trials: int | None = None,
    time_bound: bool = False,
) -> FamilyFit:
    """Train one zoo family on any (X, y, folds) subset; the best config found.

    Parameters
    ----------
    family : str
        One of ``FAMILIES`` (``spec.MODEL_FAMILIES``).
    X : DataFrame
        Raw features (the family does its own preprocessing, per fold).
    y : ndarray
        Int class indices ``0..n_classes-1`` (classification) or floats.
    folds : ndarray of int
        Fold id per row (the shared plan, or any subset of it). Rows with fold ``-1`` are used for
        training only. At least two distinct folds are needed.
    w : ndarray, default None
        Sample weights (kNN ignores them).
    problem : {"classification", "regression"}
    n_classes : int
        K; the prediction matrices have K columns (1 for regression). Folds whose training rows
        hold a single class get a constant (class-frequency) model.
    budget_seconds : float
        Search time; 0 trains only the default config (or ``params``).
    seed : int
        Seeds the search and every estimator.
    params : dict, default None
        Train exactly this config instead of searching.
    metric : str, default None
        Search objective (a ``metrics`` name); default logloss / rmse.
    X_holdout : DataFrame, default None
        When given, ``FamilyFit.holdout`` is the average of the fold models' predictions on it.
    categorical_columns : list of str, default None
        Default: the non-numeric columns of ``X``.
    n_jobs : int, default None
        Threads per model; default all available cores.
    device : {"cpu", "cuda"}, default None
        Default: CUDA for xgboost/lightgbm/catboost when a GPU is visible, else CPU; GPU failures
        fall back to the CPU.
    max_trials : int, default None
        Cap on the configs tried. Env ``OBSRV_MAX_TRIALS`` caps them too and also turns the time
        bound off, so that nothing depends on the clock (reproducible runs).
    time_bound : bool, default False
        Train every config, the default one included, within ``budget_seconds`` (boosters and
        forests stop early); otherwise the default config runs to the end.

    Returns
    -------
    FamilyFit
        ``predictor`` (a picklable FoldBag: ``predict_matrix(X) -> (n, K)``), ``oof`` (n, K),
        ``params``, ``score`` (OOF ``metric``), ``holdout``, ``trials``.
    """
    return search_family(
        family, X, y, folds, w, problem=problem, n_classes=n_classes, budget_seconds=budget_seconds,
        seed=seed, metric=metric, X_holdout=X_holdout, categorical_columns=categorical_columns,
        n_jobs=n_jobs, device=device, max_trials=max_trials, keep=1, params=params, time_bound=time_bound,
    )[0]
