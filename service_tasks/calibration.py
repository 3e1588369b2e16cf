"""Temperature scaling of published class probabilities (docs/calibration.md).

The rule and the method follow AutoGluon (Apache-2.0), github:autogluon/autogluon at f34ebb4:
- ``tabular/src/autogluon/tabular/predictor/predictor.py`` (``_post_fit``, ``calibrate == "auto"``):
  calibrate classification only when the eval metric needs probabilities, and only with at least
  3000 validation rows for binary ("Tested on adult") or 500 for multiclass ("Tested on covertype");
- ``core/src/autogluon/core/calibrate/temperature_scaling.py``: logits = log(proba), one scalar T
  minimising the cross-entropy of softmax(logits / T) on the validation (bagged: OOF) rows, from
  T = 1, LBFGS with ``max_iter=200``; T is discarded (no scaling) when it is not finite.

obsrv differs in two ways, both for honesty or determinism: the OOF a calibrated model publishes is
nested (each shared fold's rows are scaled by a T fit on the other folds' OOF rows, docs/honest-oof.md
rule 4), and T is found by a bounded 1-D search on log T (scipy, deterministic, no torch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from .contract import ModelOutput, Predictor
from .errors import TaskError

# obsrv's only probability-scored primary metric (AutoGluon: ``eval_metric.needs_proba``); auc is a
# ranking metric and the threshold metrics are tuned on OOF (evaluate), so neither is calibrated.
PROBA_METRICS = frozenset({"logloss"})
MIN_ROWS_BINARY = 3000  # AutoGluon predictor.py: min_val_rows_for_calibration, BINARY
MIN_ROWS_MULTICLASS = 500  # AutoGluon predictor.py: min_val_rows_for_calibration, MULTICLASS
# log T searched in [-LOG_T_BOUND, LOG_T_BOUND]: T from 1/20 to 20, far wider than real miscalibration
LOG_T_BOUND = float(np.log(20.0))
_EPS = 1e-15  # probabilities are clipped before the log, as metrics.logloss clips


ENV_SWITCH = "OBSRV_CALIBRATE"  # "auto": AutoGluon's rule below; "off" (default): never


def enabled() -> bool:
    """Opt-in: benchmarks/results/code_ab_calibration.md did not show a gain, so it is not a default."""
    value = os.environ.get(ENV_SWITCH, "off").strip().lower()
    if value not in ("auto", "off"):
        raise TaskError(f"{ENV_SWITCH}={value!r} is not understood: set it to 'auto' (temperature-scale "
                        "probabilities for logloss workflows, docs/calibration.md) or 'off' (the default).")
    return value == "auto"


def should_calibrate(problem: str, metric: str, n_rows: int, n_classes: int) -> bool:
    """AutoGluon's ``calibrate="auto"`` rule on obsrv's OOF rows (the bagged-mode validation set)."""
    if problem != "classification" or metric not in PROBA_METRICS or n_classes < 2:
        return False
    return n_rows >= (MIN_ROWS_BINARY if n_classes == 2 else MIN_ROWS_MULTICLASS)


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(proba) / T) row-wise; ``T == 1`` returns ``proba`` itself (bit-identical)."""
    if temperature == 1.0:
        return proba
    logits = np.log(np.clip(proba, _EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def _nll(proba: np.ndarray, y: np.ndarray, weights: np.ndarray | None, temperature: float) -> float:
    p = apply_temperature(proba, temperature)[np.arange(len(y)), y]
    losses = -np.log(np.clip(p, _EPS, 1.0))
    return float(np.average(losses, weights=weights))


def fit_temperature(proba: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The T minimising the (weighted) log-loss of ``apply_temperature(proba, T)``; 1.0 when the
    search does not improve on T = 1 or gives a non-finite T (AutoGluon returns None then)."""
    y = np.asarray(y, dtype=np.int64)
    res = minimize_scalar(lambda log_t: _nll(proba, y, weights, float(np.exp(log_t))),
                          bounds=(-LOG_T_BOUND, LOG_T_BOUND), method="bounded", options={"xatol": 1e-5})
    t = float(np.exp(res.x))
    if not np.isfinite(t) or _nll(proba, y, weights, t) >= _nll(proba, y, weights, 1.0):
        return 1.0
    return t


def nested_temperatures(oof: np.ndarray, y: np.ndarray, folds: np.ndarray,
                        weights: np.ndarray | None = None) -> dict[int, float]:
    """For each shared fold, T fit on the other folds' OOF rows only."""
    out: dict[int, float] = {}
    for f in np.unique(folds):
        rest = folds != f
        out[int(f)] = fit_temperature(oof[rest], y[rest], None if weights is None else weights[rest])
    return out


def nested_scaled_oof(oof: np.ndarray, y: np.ndarray, folds: np.ndarray,
                      weights: np.ndarray | None = None) -> np.ndarray:
    """The honest OOF of a calibrated model: each fold's rows scaled by a T it did not help fit."""
    out = np.array(oof, dtype=float, copy=True)
    for f, t in nested_temperatures(oof, y, folds, weights).items():
        rows = folds == f
        out[rows] = apply_temperature(oof[rows], t)
    return out


@dataclass
class TemperatureScaledPredictor:
    """A published predictor with its probabilities temperature-scaled (served ``probability_<class>``
    and, through the argmax, ``prediction``, which T cannot change)."""

    inner: Predictor
    temperature: float

    def predict_matrix(self, X: pd.DataFrame) -> np.ndarray:
        return apply_temperature(self.inner.predict_matrix(X), self.temperature)


def unscaled(predictor: object) -> object:
    """The fitted model under a temperature wrapper (stack_blend reads a member's config and fold
    models from it to re-fit the member; the re-fit's blend is then calibrated on publish)."""
    # by attribute: a published predictor is pickled by value, so an unpickled wrapper is not an
    # instance of this module's class (as stack_tasks reads a FoldBag)
    is_wrapper = hasattr(predictor, "inner") and hasattr(predictor, "temperature")
    return getattr(predictor, "inner") if is_wrapper else predictor


def calibrate_output(o: ModelOutput, y: np.ndarray, folds: np.ndarray,
                     weights: np.ndarray | None = None) -> ModelOutput:
    """``o`` temperature-scaled: OOF nested, holdout and serving by the T fit on all OOF rows. A T of
    1 on all rows leaves ``o`` as it was (same predictor object, same predictions)."""
    t_all = fit_temperature(o.oof, y, weights)
    if t_all == 1.0:
        return o
    return replace(
        o, predictor=TemperatureScaledPredictor(o.predictor, t_all),
        oof=nested_scaled_oof(o.oof, y, folds, weights), holdout=apply_temperature(o.holdout, t_all),
        metrics={**o.metrics, "temperature": t_all},
        notes=[*o.notes, f"temperature-scaled (T = {t_all:.4f} on all OOF rows; OOF nested per fold)"])
