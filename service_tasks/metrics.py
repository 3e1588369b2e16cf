"""The spec's metrics over prediction matrices.

Every prediction matrix follows the task contract's convention: ``(n, K)`` class probabilities in
``PreparedData.classes`` order for classification (binary keeps both columns; column 1 is the
positive class) and ``(n, 1)`` for regression. ``y`` holds int class indices or floats.

Threshold metrics (accuracy, f1, precision, recall) on a binary problem compare the positive-class
probability with ``threshold`` (default 0.5); on a multiclass problem they use the argmax, and f1,
precision and recall are macro averages. Multiclass AUC is the one-vs-rest macro average over the
classes present in ``y``.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

# the spec's lists, bound as plain values (this module is pickled by value with served models)
from obsrv.compiler.spec import CLASSIFICATION_METRICS as CLASSIFICATION
from obsrv.compiler.spec import REGRESSION_METRICS as REGRESSION
from obsrv.compiler.spec import Problem

THRESHOLD_METRICS = frozenset({"accuracy", "f1", "precision", "recall"})
_GREATER = frozenset({"accuracy", "f1", "auc", "precision", "recall", "r2"})
_EPS = 1e-15


def greater_is_better(metric: str) -> bool:
    """True when a larger value of ``metric`` is better (auc, f1, ...), False for losses."""
    _check_name(metric)
    return metric in _GREATER


def _check_name(metric: str) -> None:
    if metric not in CLASSIFICATION and metric not in REGRESSION:
        allowed = ", ".join(CLASSIFICATION + REGRESSION)
        raise ValueError(f"unknown metric {metric!r}; expected one of {allowed}")


def _as_matrix(pred: np.ndarray, problem: Problem) -> np.ndarray:
    pred = np.asarray(pred, dtype=np.float64)
    if pred.ndim == 1:
        # a bare vector is a regression prediction or a binary positive-class probability
        pred = pred[:, None] if problem == "regression" else np.column_stack([1.0 - pred, pred])
    if pred.ndim != 2:
        raise ValueError(f"predictions must be a (n, K) matrix, got shape {pred.shape}")
    return pred


def _weights(weights: np.ndarray | None, n: int) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != n:
        raise ValueError(f"weights have {w.shape[0]} rows, predictions {n}")
    return w


def hard_labels(pred: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Class indices from a probability matrix: threshold on column 1 (binary) or argmax."""
    pred = _as_matrix(pred, "classification")
    if pred.shape[1] == 2:
        return (pred[:, 1] >= (0.5 if threshold is None else threshold)).astype(np.int64)
    return np.argmax(pred, axis=1).astype(np.int64)


def score(
    metric: str,
    y: np.ndarray,
    pred: np.ndarray,
    *,
    problem: Problem,
    weights: np.ndarray | None = None,
    threshold: float | None = None,
) -> float:
    """``metric`` of predictions ``pred`` against ``y``, in the metric's natural direction.

    Parameters
    ----------
    metric : str
        One of accuracy, f1, auc, logloss, precision, recall (classification) or rmse, mae, r2.
    y : ndarray of shape (n,)
        Int class indices (classification) or float targets (regression).
    pred : ndarray of shape (n, K)
        Class probabilities in class order, or ``(n, 1)`` regression predictions.
    problem : {"classification", "regression"}
    weights : ndarray of shape (n,), default None
        Sample weights.
    threshold : float, default None
        Binary threshold metrics only: predict the positive class when its probability is
        ``>= threshold``; None means 0.5. Ignored for multiclass (argmax) and ranking metrics.

    Returns
    -------
    float
        NaN when the metric is undefined (e.g. AUC with a single class in ``y``).
    """
    _check_name(metric)
    pred = _as_matrix(pred, problem)
    y = np.asarray(y).reshape(-1)
    if y.shape[0] != pred.shape[0]:
        raise ValueError(f"y has {y.shape[0]} rows, predictions {pred.shape[0]}")
    w = _weights(weights, y.shape[0])
    if problem == "regression":
        if metric not in REGRESSION:
            raise ValueError(f"{metric!r} is a classification metric; regression uses {', '.join(REGRESSION)}")
        return _regression(metric, y.astype(np.float64), pred[:, 0], w)
    if metric not in CLASSIFICATION:
        raise ValueError(
            f"{metric!r} is a regression metric; classification uses {', '.join(CLASSIFICATION)}"
        )
    return _classification(metric, y.astype(np.int64), pred, w, threshold)


def _regression(metric: str, y: np.ndarray, p: np.ndarray, w: np.ndarray | None) -> float:
    err = p - y
    if metric == "rmse":
        return float(np.sqrt(np.average(err**2, weights=w)))
    if metric == "mae":
        return float(np.average(np.abs(err), weights=w))
    mean = np.average(y, weights=w)
    ss_tot = float(np.sum((w if w is not None else 1.0) * (y - mean) ** 2))
    ss_res = float(np.sum((w if w is not None else 1.0) * err**2))
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - ss_res / ss_tot


def _classification(
    metric: str, y: np.ndarray, pred: np.ndarray, w: np.ndarray | None, threshold: float | None
) -> float:
    k = pred.shape[1]
    if metric == "logloss":
        p = np.clip(pred, _EPS, 1.0)
        p = p / p.sum(axis=1, keepdims=True)
        return float(np.average(-np.log(p[np.arange(y.shape[0]), y]), weights=w))
    if metric == "auc":
        if k == 2:
            return _binary_auc(y == 1, pred[:, 1], w)
        aucs = [_binary_auc(y == c, pred[:, c], w) for c in range(k)]
        aucs = [a for a in aucs if not np.isnan(a)]
        return float(np.mean(aucs)) if aucs else float("nan")
    labels = hard_labels(pred, threshold)
    if metric == "accuracy":
        return float(np.average(labels == y, weights=w))
    kind = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}[metric]
    if k == 2:
        return float(kind(y, labels, sample_weight=w, average="binary", pos_label=1, zero_division=0))
    return float(kind(y, labels, labels=list(range(k)), sample_weight=w, average="macro", zero_division=0))


def _binary_auc(positive: np.ndarray, p: np.ndarray, w: np.ndarray | None) -> float:
    if positive.all() or not positive.any():
        return float("nan")
    return float(skm.roc_auc_score(positive, p, sample_weight=w))


def loss(
    metric: str,
    y: np.ndarray,
    pred: np.ndarray,
    *,
    problem: Problem,
    weights: np.ndarray | None = None,
    threshold: float | None = None,
) -> float:
    """``metric`` turned into a loss (lower is better): the score negated for greater-is-better
    metrics. NaN scores become +inf so that minimisers never pick them."""
    value = score(metric, y, pred, problem=problem, weights=weights, threshold=threshold)
    if np.isnan(value):
        return float("inf")
    return -value if greater_is_better(metric) else value


def score_all(
    metrics: list[str],
    y: np.ndarray,
    pred: np.ndarray,
    *,
    problem: Problem,
    weights: np.ndarray | None = None,
    thresholds: dict[str, float] | None = None,
) -> dict[str, float]:
    """Every metric in ``metrics``; ``thresholds`` maps a threshold metric to its tuned threshold."""
    thresholds = thresholds or {}
    return {
        m: score(m, y, pred, problem=problem, weights=weights, threshold=thresholds.get(m))
        for m in metrics
    }


def tune_threshold(
    metric: str, y: np.ndarray, pred: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """The positive-class threshold that maximises ``metric`` on (OOF) predictions; binary only.

    Call it on out-of-fold predictions, never on the holdout. Candidates are the midpoints
    between consecutive distinct scores, all evaluated in one sorted pass. Ties go to the
    threshold closest to 0.5.

    accuracy and f1 are maximised directly. Maximising precision or recall alone is degenerate
    (recall is 1 at threshold 0), so for those the F1-optimal threshold is returned: the
    operating point that balances both. Ranking metrics (auc, logloss) and multiclass problems
    return 0.5, which the scorer ignores for them anyway.
    """
    _check_name(metric)
    pred = _as_matrix(pred, "classification")
    if metric not in THRESHOLD_METRICS or pred.shape[1] != 2:
        return 0.5
    target = "f1" if metric in ("precision", "recall") else metric
    y = np.asarray(y).reshape(-1).astype(np.int64)
    w = _weights(weights, y.shape[0])
    w = np.ones(y.shape[0]) if w is None else w
    p = pred[:, 1]
    order = np.argsort(-p, kind="mergesort")
    ps, pos, neg = p[order], (y[order] == 1) * w[order], (y[order] != 1) * w[order]
    tp, fp = np.cumsum(pos), np.cumsum(neg)
    total_pos, total = pos.sum(), w.sum()
    # a cut after index i predicts rows 0..i positive; only cut between distinct scores
    ends = np.flatnonzero(np.append(ps[1:] != ps[:-1], True))
    nxt = np.append(ps[1:], ps[-1] - 1.0)
    cut = (ps[ends] + nxt[ends]) / 2.0
    tp_c, fp_c = tp[ends], fp[ends]
    # plus the "nothing positive" cut above the top score
    cut = np.append(ps[0] + 1e-12 if ps[0] < 1.0 else 1.0 + 1e-12, cut)
    tp_c, fp_c = np.append(0.0, tp_c), np.append(0.0, fp_c)
    if target == "accuracy":
        tn_c = (total - total_pos) - fp_c
        values = (tp_c + tn_c) / total
    else:
        fn_c = total_pos - tp_c
        denom = 2 * tp_c + fp_c + fn_c
        values = np.divide(2 * tp_c, denom, out=np.zeros_like(denom), where=denom > 0)
    best = values.max()
    candidates = np.flatnonzero(np.isclose(values, best, rtol=0, atol=1e-12))
    choice = candidates[np.argmin(np.abs(cut[candidates] - 0.5))]
    return float(np.clip(cut[choice], 0.0, 1.0 + 1e-12))
