"""Time vote_weight's selection work (nested GES on the shared folds + the final fit) at 1M-row scale.

    python benchmarks/greedy_speed.py --rows 800000 --members 10

What scale.py's vote_weight does at 1,000,000 rows (800,000 training rows, 5 folds, the AUC
objective), on a synthetic pool instead of trained models, for the old selection (mergesort AUC, all
rows) and the current one (quicksort AUC, ``greedy.SELECTION_ROWS`` subsample). No task process,
MLflow or tables: the selection only.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from obsrv.service_tasks.ensembles.base import MetricLoss, nested_oof
from obsrv.service_tasks.ensembles.greedy import GreedySelection


def stable_sort_auc_loss(y: np.ndarray, pred: np.ndarray, w: np.ndarray | None = None) -> float:
    """The AUC loss as it was before quicksort (mergesort ranks)."""
    positive = np.asarray(y) == 1
    score = pred[:, 1]
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(s.size)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], s.size]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return -float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=800_000)
    ap.add_argument("--members", type=int, default=10)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, args.rows)
    z = (2 * y - 1)[None, :] * np.linspace(1.5, 0.5, args.members)[:, None] + rng.normal(size=(args.members, args.rows))
    p = np.round(1 / (1 + np.exp(-z)), 4)  # rounded: ties, as trees' probabilities have
    P = np.stack([1 - p, p], axis=2)
    folds = rng.integers(0, 5, args.rows)
    for name, make in [("old: mergesort AUC, all rows", lambda: GreedySelection(stable_sort_auc_loss, 25, max_rows=None)),
                       ("now: quicksort AUC, all rows", lambda: GreedySelection(MetricLoss("auc", "classification"), 25,
                                                                                max_rows=None)),
                       ("now: quicksort AUC, SELECTION_ROWS subsample",
                        lambda: GreedySelection(MetricLoss("auc", "classification"), 25))]:
        t0 = time.perf_counter()
        nested_oof(make, P, y, folds)
        final = make().fit(P, y)
        print(f"{name}: {time.perf_counter() - t0:.1f} s (nested 5 folds + final), weights "
              f"{np.round(final.weights_, 2).tolist()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
