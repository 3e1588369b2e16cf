"""Caruana greedy ensemble selection (GES) with replacement, on OOF predictions.

Why this combiner: it optimises the task metric directly, its weights are convex (it can only
average, never extrapolate), and with replacement plus a best-prefix rule it is hard to overfit.
AutoGluon, auto-sklearn and mljar all end with it; ~25 rounds is where gains stop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import LossFn, check_stack

TIE_ATOL = 1e-12

SELECTION_ROWS = 100_000
"""Above this many rows GES selects on a seeded, stratified subsample of this many. Chosen from
``benchmarks/greedy_subsample.py`` (synthetic data outside the quality benchmark's sets; results in
``benchmarks/results/greedy_subsample.md``): selecting on 100,000 of 150,000 rows, the selected
blend's test score stayed within 0.00003 AUC (0.00000 log-loss) of the selection on all rows for
every seed, while 50,000 rows lost up to 0.00017 AUC. Selection time grows with the rows, so this
caps GES's cost on large tables; smaller ones select on every row, as before."""


def selection_rows(y: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subsample of ``max_rows`` rows of ``y``; stratified when ``y``
    holds class indices (integers), so each class keeps its share (at least one row each)."""
    y = np.asarray(y)
    n = y.shape[0]
    rng = np.random.default_rng(seed)
    if not np.issubdtype(y.dtype, np.integer):
        return np.sort(rng.choice(n, size=max_rows, replace=False))
    parts = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        take = min(len(members), max(1, int(round(max_rows * len(members) / n))))
        parts.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(parts))


def select_best(losses: np.ndarray, counts: np.ndarray) -> int:
    """Index of the candidate to add this round.

    Non-finite losses (NaN from an undefined metric or broken predictions, +-inf) never win. Among
    the candidates tied at the minimum (within ``TIE_ATOL``) the one already chosen most often wins,
    then the lowest index: re-picking a chosen model keeps the ensemble small and the choice
    deterministic. When no candidate has a finite loss, the most-chosen model (else 0) is repeated,
    which leaves the running mean unchanged in spirit instead of adding an arbitrary model.
    """
    losses = np.asarray(losses, dtype=np.float64)
    finite = np.isfinite(losses)
    if not finite.any():
        return int(np.argmax(counts)) if counts.max() > 0 else 0
    best = losses[finite].min()
    tied = np.flatnonzero(finite & (losses <= best + TIE_ATOL))
    return int(tied[np.argmax(counts[tied])])  # argmax returns the first (lowest index) on ties


@dataclass
class GreedySelection:
    """Greedy forward selection with replacement.

    Parameters
    ----------
    loss : LossFn
        ``loss(y, pred, w)``, lower is better (e.g. ``MetricLoss("auc", "classification")``).
    rounds : int, default 25
        Selection rounds; the best prefix of the trajectory is kept.
    max_rows : int or None, default ``SELECTION_ROWS``
        Select on a seeded, stratified subsample of this many of the rows ``fit`` is given, when it
        is given more (None: always every row). Inside ``nested_oof`` each fit draws from its own
        training folds only, so the nested OOF stays honest.
    seed : int, default 0
        Seed of that subsample.

    Attributes
    ----------
    picks_ : list[int]
        Member picked in each round (all ``rounds``).
    trajectory_ : np.ndarray
        Loss of the running ensemble after each round.
    best_round_ : int
        Index of the round whose prefix is kept (the first minimum of ``trajectory_``).
    weights_ : np.ndarray of shape (M,)
        Pick counts in the kept prefix / prefix length; sums to 1.
    """

    loss: LossFn
    rounds: int = 25
    max_rows: int | None = SELECTION_ROWS
    seed: int = 0
    picks_: list[int] = field(default_factory=list, init=False)
    trajectory_: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False)
    best_round_: int = field(default=0, init=False)
    weights_: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False)

    def fit(
        self, P: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, extra: np.ndarray | None = None
    ) -> "GreedySelection":
        """Select on OOF stack ``P`` (M, n, K); ``extra`` is ignored (GES sees predictions only)."""
        if self.rounds < 1:
            raise ValueError("rounds must be >= 1")
        P = check_stack(P, y)
        if self.max_rows is not None and P.shape[1] > self.max_rows:
            rows = selection_rows(y, self.max_rows, self.seed)
            P, y, w = P[:, rows], np.asarray(y)[rows], None if w is None else np.asarray(w)[rows]
        m = P.shape[0]
        running = np.zeros(P.shape[1:])
        counts = np.zeros(m, dtype=np.int64)
        picks: list[int] = []
        trajectory: list[float] = []
        for r in range(self.rounds):
            # running mean update: the ensemble after this round is (sum of picks + candidate) / (r+1)
            losses = np.array([self.loss(y, (running + P[j]) / (r + 1), w) for j in range(m)])
            losses = np.where(np.isnan(losses), np.inf, losses)
            j = select_best(losses, counts)
            running += P[j]
            counts[j] += 1
            picks.append(j)
            trajectory.append(float(losses[j]))
        traj = np.array(trajectory)
        self.picks_ = picks
        self.trajectory_ = traj
        # the first minimum = the shortest best prefix; all-inf trajectories keep one round
        self.best_round_ = int(np.argmin(traj)) if np.isfinite(traj).any() else 0
        kept = np.bincount(np.array(picks[: self.best_round_ + 1]), minlength=m)
        self.weights_ = kept / kept.sum()
        return self

    def predict(self, P: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
        """Weighted mean of the members (only members with non-zero weight are touched, so a
        member with NaN predictions that was never picked cannot poison the blend)."""
        P = check_stack(P)
        if P.shape[0] != self.weights_.shape[0]:
            raise ValueError(f"fitted on {self.weights_.shape[0]} members, got {P.shape[0]}")
        used = np.flatnonzero(self.weights_ > 0)
        return np.tensordot(self.weights_[used], P[used], axes=1)
