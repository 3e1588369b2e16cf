"""Checks of the one split (holdout + folds) that every model is ranked on.

Prepare refuses a split that cannot train (a class with fewer training rows than folds) and warns
about one that can train but cannot rank: evaluate ranks on out-of-fold (OOF) scores over the
training rows and reports holdout scores beside them, and a handful of rows makes either figure
noise, so a champion registered from it is picked by chance. Evaluate repeats the warnings,
next to the leaderboard they concern.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from obsrv.service_tasks.errors import TaskError

MIN_SCORED_ROWS = 30
"""Fewest holdout rows, and fewest training (OOF) rows, whose scores can rank models: below ~30
the standard error of a mean-type metric is of the order of the gaps between models."""
MIN_FOLD_ROWS = 10
"""Fewest rows per fold: each fold's rows are scored by a model that never saw them, and combiners
fit on those OOF predictions fold by fold."""


def small_split_warnings(n_holdout: int, fold_sizes: Sequence[int]) -> list[str]:
    """WARNING lines for a holdout or folds too small to rank models (none when they are fine)."""
    out: list[str] = []
    n_train = int(sum(fold_sizes))
    if 0 < n_holdout < MIN_SCORED_ROWS:
        out.append(
            f"WARNING: the holdout has {n_holdout} rows (fewer than {MIN_SCORED_ROWS}): its leaderboard "
            "figures are too noisy to compare models. Add rows or raise context.holdout."
        )
    if n_train < MIN_SCORED_ROWS:
        out.append(
            f"WARNING: the models are ranked on out-of-fold scores of {n_train} training rows (fewer than "
            f"{MIN_SCORED_ROWS}): the champion may be chosen by chance. Add rows."
        )
    if fold_sizes and min(fold_sizes) < MIN_FOLD_ROWS:
        out.append(
            f"WARNING: the smallest fold has {min(fold_sizes)} rows (fewer than {MIN_FOLD_ROWS}): its "
            "out-of-fold scores, and the combiners fit on them, rest on a handful of rows. Add rows or "
            "lower context.folds."
        )
    return out


def fold_sizes(folds: np.ndarray) -> list[int]:
    """Rows per fold id, in fold order (training rows only: fold >= 0)."""
    folds = np.asarray(folds)
    _, counts = np.unique(folds[folds >= 0], return_counts=True)
    return [int(c) for c in counts]


def check_classes_fit_folds(labels: np.ndarray, n_folds: int, *, holdout: float, target: str) -> None:
    """TaskError when a class has fewer training rows than folds.

    Why: such a class is missing from some fold's test rows, so some fold models never see it or
    its OOF predictions never score it; the stratified fold plan cannot exist. The compiler can only
    warn about it (it does not see the data)."""
    values, counts = np.unique(np.asarray(labels).astype(str), return_counts=True)
    rare = [(v, int(c)) for v, c in zip(values.tolist(), counts.tolist()) if c < n_folds]
    if not rare:
        return
    shown = ", ".join(f"{v!r} ({c} row{'s' if c != 1 else ''})" for v, c in rare[:10])
    after = f" after the {holdout:.0%} holdout" if holdout > 0 else ""
    raise TaskError(
        f"The target {target!r} has classes with fewer training rows{after} than the {n_folds} folds: "
        f"{shown}. Each class needs at least one row per fold. Lower context.folds, lower "
        "context.holdout, add rows of those classes, or merge rare classes."
    )
