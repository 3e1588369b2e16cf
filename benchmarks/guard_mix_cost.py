"""What the stacking guard's mix costs on a large table, beside what the guard cost before it.

    python benchmarks/guard_mix_cost.py                 # 800,000 OOF rows, as a 1M-row table at a 20 % holdout
    python benchmarks/guard_mix_cost.py --rows 100000

Synthetic binary OOF predictions (5 members of decreasing strength, 5 folds), AUC, the linear
meta-learner. Prints three timings from one run: `dynamic_stack` in all; the two candidates'
nested OOFs and the final stack fit (what the guard did before it could mix); and the mix's
two-candidate greedy selection with its own nested OOF (the added work, paid when a mix is tried).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from obsrv.service_tasks.ensembles.base import MetricLoss, nested_oof
from obsrv.service_tasks.ensembles.greedy import GreedySelection
from obsrv.service_tasks.ensembles.stacking import MIX_ROUNDS, MetaFactory, dynamic_stack


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=800_000)
    ap.add_argument("--members", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n, m = args.rows, args.members
    y = rng.integers(0, 2, n)
    folds = rng.integers(0, 5, n)
    z = (2 * y - 1)[None, :] * np.linspace(1.2, 0.6, m)[:, None] + rng.normal(size=(m, n))
    p = 1 / (1 + np.exp(-z))
    P = np.stack([1 - p, p], axis=2)
    loss = MetricLoss("auc", "classification")
    meta = MetaFactory("linear", "classification", 2)

    t = time.perf_counter()
    res = dynamic_stack(meta, P, y, folds, loss, metric_name="auc", greater_is_better=True)
    total = time.perf_counter() - t
    t = time.perf_counter()
    stack_oof = nested_oof(meta, P, y, folds)
    greedy_oof = nested_oof(lambda: GreedySelection(loss, 25), P, y, folds)
    meta().fit(P, y)
    before = time.perf_counter() - t
    both = np.stack([greedy_oof, stack_oof])
    t = time.perf_counter()
    GreedySelection(loss, MIX_ROUNDS).fit(both, y)
    nested_oof(lambda: GreedySelection(loss, MIX_ROUNDS), both, y, folds)
    mix = time.perf_counter() - t
    print(f"rows {n:,}, members {m}: dynamic_stack {total:.1f} s (served: {res.used}, stack weight "
          f"{res.stack_weight:.2f}); the two candidates' nested OOFs + final fit {before:.1f} s; "
          f"the mix's selection + its nested OOF {mix:.1f} s")


if __name__ == "__main__":
    main()
