"""Votes (soft, hard, rank) and the diverse-mix member selection.

Why votes next to stacks: a vote has no learned weights (nothing to over-fit), so its OOF is
honest without nesting. What makes a vote good is the member set: strong *and* different models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .base import Problem, check_stack, normalise_rows

VoteMode = Literal["soft", "hard", "rank"]


@dataclass
class SoftVote:
    """Weighted mean of member predictions (uniform when ``weights`` is None)."""

    weights: np.ndarray | None = None

    def fit(self, P: np.ndarray, y: np.ndarray, w: np.ndarray | None = None,
            extra: np.ndarray | None = None) -> "SoftVote":
        return self

    def predict(self, P: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
        P = check_stack(P)
        wts = np.full(P.shape[0], 1.0 / P.shape[0]) if self.weights is None else np.asarray(self.weights)
        return np.tensordot(wts / wts.sum(), P, axes=1)


@dataclass
class HardVote:
    """Majority vote. Classification: each member votes for its predicted class (binary: p1 >= 0.5,
    the metrics module's default threshold; multiclass: argmax); the output matrix holds the vote
    shares, so its argmax is the majority (ties -> lowest class index) and it still ranks rows.
    Regression has no classes to vote for: the hard vote is the members' median."""

    problem: Problem

    def fit(self, P: np.ndarray, y: np.ndarray, w: np.ndarray | None = None,
            extra: np.ndarray | None = None) -> "HardVote":
        return self

    def predict(self, P: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
        P = check_stack(P)
        if self.problem == "regression":
            return np.median(P, axis=0)
        m, n, k = P.shape
        labels = (P[:, :, 1] >= 0.5).astype(np.int64) if k == 2 else np.argmax(P, axis=2)
        votes = np.zeros((n, k))
        for j in range(m):
            votes[np.arange(n), labels[j]] += 1.0
        return votes / m


@dataclass
class RankVote:
    """Mean of the members' ranks, which ignores their (often incomparable) calibration.

    A rank is the empirical CDF of the value within that member's OOF predictions for that column
    (stored at fit time), so new rows -- even a single one -- are ranked against the training
    distribution, never against each other. Binary: the mean rank of p1 is the positive-class
    score. Multiclass: mean rank per class column, rows renormalised. Regression: the mean rank is
    mapped back to the target scale through the empirical quantiles of the training target.
    """

    problem: Problem
    reference_: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)), init=False)
    y_sorted_: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False)

    def fit(self, P: np.ndarray, y: np.ndarray, w: np.ndarray | None = None,
            extra: np.ndarray | None = None) -> "RankVote":
        P = check_stack(P, y)
        self.reference_ = np.sort(P, axis=1)
        self.y_sorted_ = np.sort(np.asarray(y, dtype=np.float64)) if self.problem == "regression" else np.zeros(0)
        return self

    def _ranks(self, P: np.ndarray) -> np.ndarray:
        m, n, k = P.shape
        ref_n = self.reference_.shape[1]
        R = np.empty_like(P)
        for j in range(m):
            for c in range(k):
                ref = self.reference_[j, :, c]
                lo = np.searchsorted(ref, P[j, :, c], side="left")
                hi = np.searchsorted(ref, P[j, :, c], side="right")
                R[j, :, c] = (lo + hi) / (2.0 * ref_n)  # mid-rank: ties share their average rank
        return R.mean(axis=0)

    def predict(self, P: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
        P = check_stack(P)
        r = self._ranks(P)
        if self.problem == "regression":
            return np.quantile(self.y_sorted_, np.clip(r[:, 0], 0.0, 1.0))[:, None]
        if P.shape[2] == 2:
            return np.column_stack([1.0 - r[:, 1], r[:, 1]])
        return normalise_rows(r)


def make_vote(mode: VoteMode, problem: Problem) -> SoftVote | HardVote | RankVote:
    """The vote combiner for a `vote_mix` mode."""
    if mode == "soft":
        return SoftVote()
    if mode == "hard":
        return HardVote(problem)
    if mode == "rank":
        return RankVote(problem)
    raise ValueError(f"unknown vote mode {mode!r}; expected soft, hard or rank")


def informative_columns(P: np.ndarray) -> np.ndarray:
    """(M, n * K') view used for correlations: binary drops the redundant class-0 column."""
    P = check_stack(P)
    Q = P[:, :, 1:] if P.shape[2] == 2 else P
    return Q.reshape(P.shape[0], -1)


def select_diverse(P: np.ndarray, scores: np.ndarray, top_n: int, *, greater_is_better: bool) -> list[int]:
    """Greedy strong-and-different member selection for `vote_mix`.

    Start from the best model by OOF score; then repeatedly add the candidate maximising
    ``strength - max correlation with the chosen``, where strength is the OOF score min-max scaled
    to [0, 1] across the pool (1 = best) and correlation is Pearson's on the OOF predictions
    (binary: positive-class column). The *max* (not mean) correlation is used so that a near-copy of
    any chosen model is penalised. Candidates with a NaN score are never chosen. Ties -> pool order.
    """
    P = check_stack(P)
    s = np.asarray(scores, dtype=np.float64)
    s = s if greater_is_better else -s
    valid = np.flatnonzero(~np.isnan(s))
    if valid.size == 0:
        raise ValueError("no candidate has a finite OOF score")
    lo, hi = s[valid].min(), s[valid].max()
    strength = np.where(np.isnan(s), -np.inf, (s - lo) / (hi - lo) if hi > lo else 1.0)
    Q = informative_columns(P)
    with np.errstate(all="ignore"):
        C = np.corrcoef(Q)
    C = np.nan_to_num(np.atleast_2d(C), nan=1.0)  # constant predictions: treat as fully redundant
    chosen = [int(valid[np.argmax(strength[valid])])]
    while len(chosen) < min(top_n, valid.size):
        rest = [int(i) for i in valid if i not in chosen]
        crit = np.array([strength[i] - C[i, chosen].max() for i in rest])
        chosen.append(rest[int(np.argmax(crit))])
    return chosen
