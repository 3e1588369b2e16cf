"""One fitted fold model (`FamilyModel`: per-fold preprocessing plus the estimator) and the fold bag
that serves their average (`FoldBag`)."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pandas as pd

from obsrv.service_tasks.zoo import served, time_limits
from obsrv.service_tasks.zoo.builders import _BUILD, _PREP, HIST_GBM_VALIDATION, _stratified_holdout_possible
from obsrv.service_tasks.zoo.families import Problem
from obsrv.service_tasks.zoo.resource_caps import KNN_MAX_FIT_ROWS

MISSING = "__missing__"
MAX_LEVELS = 100  # categorical levels kept per column (the rest become "unknown")
ROUNDS_WITHOUT_EARLY_STOPPING = 1000
"""The most rounds a booster trains when it has no rows to early-stop on (under 50 training rows, or
a fold whose 10 % split would take a class's last rows): ``portfolio.BOOSTER_ROUNDS`` is a ceiling
for early stopping, and without it every one of those rounds would be trained."""


class FoldBag:
    """The K fold models of one config; predicts their average (the served model)."""

    def __init__(self, models: list[Any], family: str, params: dict[str, Any]) -> None:
        self.models_ = models
        self.family = family
        self.params = params

    def predict_matrix(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_inputs(served.Inputs(X))

    def predict_inputs(self, inputs: served.Inputs) -> np.ndarray:
        # one conversion of each raw column for all K fold models (``served.Inputs``), and for the
        # other members of an ensemble that hands its own inputs down
        return np.mean([served.predict_shared(m, inputs) for m in self.models_], axis=0)


def _cap_rounds(estimator: Any, most: int) -> None:
    """At most ``most`` boosting rounds for ``estimator`` (xgboost, lightgbm: ``n_estimators``;
    catboost: ``iterations`` or an alias of it)."""
    params = estimator.get_params()
    for key in ("n_estimators", "iterations", "num_boost_round", "num_trees"):
        if params.get(key) and int(params[key]) > most:
            estimator.set_params(**{key: most})


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
    _served_lightgbm: served.LightGBMDirect | None = None
    """LightGBM's booster path of the served form (``served.LightGBMDirect``), built with it."""
    _served_hist_gbm: served.HistGBMDirect | None = None
    """hist_gbm's path past its internal ColumnTransformer (``served.HistGBMDirect``), built with it."""

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
        self._served_form: served.ServedForm | None = None

    def __getstate__(self) -> dict[str, Any]:
        # the served form is rebuilt from the fitted state on the first prediction, never stored
        state = dict(self.__dict__)
        for key in ("_served_form", "_served_checked", "_served_lightgbm", "_served_hist_gbm"):
            state.pop(key, None)
        return state

    # --- preprocessing shared by fit and predict
    def _numeric(self, X: pd.DataFrame, fit: bool = False) -> pd.DataFrame:
        out = pd.DataFrame(index=X.index)
        for c in self.numeric:
            out[c] = served.numeric_values(X[c])
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
            out[c] = served.string_values(X[c], MISSING)
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
            s = pd.Series(served.native_values(X[c]), index=X.index, dtype=object)
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
        self._served_form, self._served_checked = None, False
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
        if not len(val):
            _cap_rounds(est, ROUNDS_WITHOUT_EARLY_STOPPING)
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
            callbacks: list[Any] = []
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
                if self.pace_hint is not None and rate is not None and limit is not None:  # None: CatBoost's own rate
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
        return self.predict_inputs(served.Inputs(X))

    def predict_inputs(self, inputs: served.Inputs) -> np.ndarray:
        """``predict_matrix`` from converted inputs, through the served form (``served``): the same
        numbers as ``predict_pipeline``, without its per-call pandas and sklearn overhead."""
        form = self._form()
        if form is None:
            return self.predict_pipeline(inputs.X)
        classify = self.problem == "classification"
        n = inputs.n
        if form.kind in ("dense", "ordinal"):
            A = form.matrix(inputs, MISSING)
            est = self.estimator_.steps[-1][1]
            if self.family in ("random_forest", "extra_trees") and served.is_plain_forest(est, classify):
                raw = served.forest_output(est, A, classify)
            elif self._served_hist_gbm is not None:
                with self._predict_threads(n):
                    raw = self._served_hist_gbm.predict(A)
            else:
                with self._predict_threads(n):
                    raw = est.predict_proba(A) if classify else est.predict(A)
        elif self._served_lightgbm is not None:
            raw = self._served_lightgbm.predict(form.coded_matrix(inputs))
        else:
            frame = form.frame(inputs, MISSING)
            kwargs = served.booster_kwargs(self.family, n)
            raw = self.estimator_.predict_proba(frame, **kwargs) if classify else self.estimator_.predict(frame, **kwargs)
        return self._as_matrix(raw, n)

    def predict_pipeline(self, X: pd.DataFrame) -> np.ndarray:
        """The reference path: the fold's frame through the fitted pipeline (what ``fit`` trained)."""
        frame = self._frame(X, fit=False)
        with self._threads():
            raw = self.estimator_.predict_proba(frame) if self.problem == "classification" else self.estimator_.predict(frame)
        return self._as_matrix(raw, len(frame))

    def _as_matrix(self, raw: Any, n: int) -> np.ndarray:
        if self.problem == "regression":
            return np.asarray(raw, dtype=np.float64).reshape(-1, 1)
        proba = np.asarray(raw, dtype=np.float64)
        out = np.zeros((n, self.n_classes))
        out[:, self.classes_] = proba
        return out

    def _form(self) -> served.ServedForm | None:
        if not getattr(self, "_served_checked", False):
            self._served_form = served.served_form(self, _PREP[self.family])
            self._served_lightgbm, self._served_hist_gbm = None, None
            if self._served_form is not None and self.family == "lightgbm":
                self._served_lightgbm = served.LightGBMDirect.of(self.estimator_, self._served_form)
            if self._served_form is not None and self.family == "hist_gbm":
                est = self.estimator_.steps[-1][1]
                self._served_hist_gbm = served.HistGBMDirect.of(est, self.problem == "classification")
            self._served_checked = True
        return self._served_form

    def _predict_threads(self, n_rows: int) -> Any:
        """hist_gbm's OpenMP cap for this batch (``served.batch_threads``: one thread for small
        batches); a row's prediction does not depend on the thread count."""
        if self.family != "hist_gbm":
            return contextlib.nullcontext()
        return served.openmp_threads(served.batch_threads(n_rows, self.n_jobs))
