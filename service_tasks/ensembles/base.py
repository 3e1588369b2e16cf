"""Shared mechanics of the ensemble families: array conventions, losses, nested OOF, encoders.

Conventions (the task contract's): a candidate pool is a stack ``P`` of shape ``(M, n, K)`` -- M members,
n rows, K columns (class probabilities in class order, binary keeps both columns; K == 1 for
regression). ``y`` holds int class indices or floats; ``w`` optional sample weights. A *combiner*
is fit on out-of-fold (OOF) predictions only and maps a ``(M, n, K)`` stack to ``(n, K)``.

Everything here is pure numpy/pandas: no I/O, no MLflow. The task wrappers (``tasks.py``) own that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import pandas as pd
from obsrv.compiler.spec import Problem
from obsrv.service_tasks import metrics

LossFn = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], float]
"""``loss(y, pred (n, K), w) -> float``; lower is better; may return inf, never raises on NaN."""

EPS = 1e-7


class Combiner(Protocol):
    """A low-capacity model over member predictions, fit on OOF only."""

    def fit(
        self, P: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, extra: np.ndarray | None = None
    ) -> "Combiner": ...

    def predict(self, P: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray: ...


class Learner(Protocol):
    """A model over raw feature frames (routing, boost, blend re-fits)."""

    def fit(self, X: pd.DataFrame, y: np.ndarray, w: np.ndarray | None = None) -> "Learner": ...

    def predict_matrix(self, X: pd.DataFrame) -> np.ndarray: ...


@dataclass(frozen=True)
class MetricLoss:
    """The task's primary metric as a loss (picklable, unlike a lambda).

    Non-finite predictions score +inf instead of raising, so that a broken member can never win a
    greedy round or a guard comparison.
    """

    metric: str
    problem: Problem

    def __call__(self, y: np.ndarray, pred: np.ndarray, w: np.ndarray | None = None) -> float:
        if not np.all(np.isfinite(pred)):
            return float("inf")
        if w is None and self.problem == "classification" and pred.ndim == 2 and pred.shape[1] == 2:
            # GES and the guards call this thousands of times: exact numpy fast paths for the common
            # unweighted binary objectives (sklearn's input validation dominates otherwise)
            if self.metric == "auc":
                return -_fast_binary_auc(np.asarray(y) == 1, pred[:, 1])
            if self.metric == "logloss":
                p = np.clip(pred, 1e-15, 1.0)
                picked = np.where(np.asarray(y) == 1, p[:, 1], p[:, 0]) / p.sum(axis=1)
                return float(-np.mean(np.log(picked)))
        return metrics.loss(self.metric, y, pred, problem=self.problem, weights=w)


def _fast_binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula with mid-ranks for ties; NaN -> inf loss
    upstream when one class is absent (as ``metrics.loss``)."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("-inf")  # loss +inf, like metrics.loss on an undefined AUC
    # any sort order gives the same ranks: every tie run gets its mid-rank whatever the order
    # inside it, so the unstable quicksort (about 7x faster than mergesort on 80,000 floats; GES
    # calls this rounds x members times per fit) changes no AUC
    order = np.argsort(score, kind="quicksort")
    s = score[order]
    ranks = np.empty(s.size)
    # mid-ranks: every run of equal scores gets the mean of its 1-based positions
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], s.size]
    mid = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(mid, ends - starts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def check_stack(P: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """Validate a ``(M, n, K)`` member stack (and ``y`` alignment); returns it as float64."""
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 3:
        raise ValueError(f"member predictions must have shape (M, n, K), got {P.shape}")
    if P.shape[0] == 0:
        raise ValueError("the candidate pool is empty")
    if y is not None and np.asarray(y).shape[0] != P.shape[1]:
        raise ValueError(f"y has {np.asarray(y).shape[0]} rows, predictions {P.shape[1]}")
    return P


def clip_proba(p: np.ndarray) -> np.ndarray:
    """Probabilities clipped away from 0 and 1 so that logs and logits stay finite."""
    return np.clip(p, EPS, 1.0 - EPS)


def normalise_rows(p: np.ndarray) -> np.ndarray:
    """Rows rescaled to sum to 1; an all-zero row becomes uniform."""
    s = p.sum(axis=1, keepdims=True)
    k = p.shape[1]
    return np.where(s > 0, p / np.where(s > 0, s, 1.0), 1.0 / k)


def member_features(P: np.ndarray, problem: Problem) -> np.ndarray:
    """Per-row meta-features for non-linear meta-learners: binary -> one logit per member,
    multiclass -> every member's log-probabilities (M*K), regression -> the M predictions."""
    if problem == "regression":
        return P[:, :, 0].T.copy()
    if P.shape[2] == 2:
        p1 = clip_proba(P[:, :, 1])
        return np.log(p1 / (1 - p1)).T
    return np.log(clip_proba(P)).transpose(1, 0, 2).reshape(P.shape[1], -1)


def fold_ids(folds: np.ndarray) -> list[int]:
    """The fold ids in a fold plan (sorted)."""
    return sorted(int(f) for f in np.unique(folds) if f >= 0)


def subset_w(w: np.ndarray | None, mask: np.ndarray) -> np.ndarray | None:
    return None if w is None else w[mask]


def take_rows(extra: Any, mask: np.ndarray) -> Any:
    """Rows ``mask`` of passthrough input: an array or a raw feature frame (positional)."""
    if extra is None:
        return None
    if isinstance(extra, pd.DataFrame):
        return extra.iloc[np.flatnonzero(mask)]
    return extra[mask]


def nested_oof(
    make: Callable[[], Combiner],
    P: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    w: np.ndarray | None = None,
    extra: Any = None,
) -> np.ndarray:
    """OOF predictions of a *learned* combiner on the shared folds.

    For each fold f the combiner is fit on the member OOF predictions of the other folds and predicts
    fold f, so no combiner fit ever sees the held fold's rows or labels: this is what downstream
    layers and evaluate see. The member OOF it fits on is the usual cross-fitted kind: each row's
    value comes from fold models trained without that row's fold, and those did train on fold f.
    That is how AutoGluon and H2O stack too. Its optimism is small, and the pure-noise leak tests
    (``tests/ensembles/test_leakage.py``) bound it.
    ``extra`` (passthrough input, an array or a raw feature frame) is split the same way, so a
    combiner that learns statistics of it (``PassthroughCombiner``) never sees the held fold.
    """
    P = check_stack(P, y)
    out = np.full(P.shape[1:], np.nan)
    for f in fold_ids(folds):
        held = folds == f
        train = ~held
        comb = make().fit(P[:, train], y[train], subset_w(w, train), take_rows(extra, train))
        out[held] = comb.predict(P[:, held], take_rows(extra, held))
    return out


def strength_order(scores: np.ndarray, greater_is_better: bool) -> np.ndarray:
    """Indices from best to worst by OOF score; NaN last; ties keep pool order (stable)."""
    s = np.asarray(scores, dtype=np.float64)
    key = -s if greater_is_better else s
    key = np.where(np.isnan(key), np.inf, key)
    return np.argsort(key, kind="stable")


def best_of_family(order: np.ndarray, families: list[str], n_families: int) -> list[int]:
    """H2O's BestOfFamily: walking models best-first, keep the first model of each family until
    ``n_families`` families are represented (families ranked by their best model)."""
    chosen: list[int] = []
    seen: set[str] = set()
    for i in order:
        fam = families[int(i)]
        if fam not in seen:
            seen.add(fam)
            chosen.append(int(i))
        if len(chosen) >= n_families:
            break
    return chosen


@dataclass
class FrameEncoder:
    """Numeric encoding of a raw feature frame, fit on training rows only.

    Used for ``passthrough`` features of the meta-learner and for the clustering router: numeric
    columns are median-imputed (and standardised when ``scale``), categorical columns one-hot encode
    their ``max_levels`` most frequent levels (other and unseen levels -> all zeros), so a single new
    row can always be encoded.
    """

    categorical_columns: list[str] = field(default_factory=list)
    scale: bool = True
    max_levels: int = 10
    numeric_: list[str] = field(default_factory=list, init=False)
    categorical_: list[str] = field(default_factory=list, init=False)
    median_: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False)
    mean_: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False)
    std_: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False)
    levels_: dict[str, list[Any]] = field(default_factory=dict, init=False)

    def fit(self, X: pd.DataFrame) -> "FrameEncoder":
        cats = set(self.categorical_columns)
        self.numeric_, self.categorical_ = [], []
        for c in X.columns:
            s = X[c]
            if c in cats or not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
                self.categorical_.append(c)
            else:
                self.numeric_.append(c)
        num = self._numeric(X)
        with np.errstate(all="ignore"):
            med = np.nanmedian(num, axis=0) if num.shape[1] else np.zeros(0)
        self.median_ = np.where(np.isnan(med), 0.0, med)
        filled = np.where(np.isnan(num), self.median_, num)
        self.mean_ = filled.mean(axis=0) if num.shape[0] else np.zeros(num.shape[1])
        std = filled.std(axis=0) if num.shape[0] else np.ones(num.shape[1])
        self.std_ = np.where(std > 0, std, 1.0)
        self.levels_ = {}
        for c in self.categorical_:
            counts = X[c].astype("string").value_counts(dropna=True)
            self.levels_[c] = list(counts.index[: self.max_levels])
        return self

    def _numeric(self, X: pd.DataFrame) -> np.ndarray:
        if not self.numeric_:
            return np.zeros((len(X), 0))
        # column by column as the fold models convert them (``served.numeric_values``: the same
        # float64 values as ``apply(pd.to_numeric, errors="coerce")``, without a frame per call)
        from obsrv.service_tasks.zoo.served import numeric_values

        out = np.empty((len(X), len(self.numeric_)), dtype=np.float64)
        for j, c in enumerate(self.numeric_):
            out[:, j] = numeric_values(X[c])
        return out

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        num = self._numeric(X)
        num = np.where(np.isnan(num), self.median_, num)
        if self.scale:
            num = (num - self.mean_) / self.std_
        parts = [num]
        for c in self.categorical_:
            col = _string_objects(X[c]) if c in X else np.full(len(X), None)
            parts.append(np.column_stack([col == lv for lv in self.levels_[c]]).astype(np.float64)
                         if self.levels_[c] else np.zeros((len(X), 0)))
        return np.hstack(parts) if parts else np.zeros((len(X), 0))

    def fit_transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.fit(X).transform(X)


def _string_objects(s: pd.Series) -> np.ndarray:
    """A column's values as ``str`` objects, None where missing (``astype("string")`` semantics);
    a string column already holds them."""
    if isinstance(s.dtype, pd.StringDtype):
        return s.to_numpy(dtype=object, na_value=None)
    return s.astype("string").to_numpy(dtype=object, na_value=None)
