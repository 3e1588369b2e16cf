"""The linear meta-learner on a subsample of the OOF rows: stacking quality and fit time against rows.

    python benchmarks/stack_subsample.py --out benchmarks/results/stack_subsample.md

Picks ``stacking.FIT_ROWS`` from data that is not one of quality.py's eight sets: the same OOF pool
as ``greedy_subsample.py`` (a synthetic binary table, 150,000 OOF rows of 7 scikit-learn models,
50,000 test rows). ``LinearStacker`` (the default ``meta_learner: linear``) is fit on all OOF rows
and on seeded stratified subsamples of each size (5 seeds), over the whole pool and over the pool
without its strongest model. Reported per size: the test log-loss and AUC of the subsampled stack
against the full one (mean and worst over the seeds), the largest change of a member weight, and
the fit time.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from greedy_subsample import SEEDS, pool_cli, report_head, write_report  # noqa: E402
from obsrv.service_tasks import metrics  # noqa: E402
from obsrv.service_tasks.ensembles.stacking import LinearStacker  # noqa: E402

SIZES = [10_000, 20_000, 50_000, 100_000]


def main() -> int:
    t_start = time.perf_counter()
    args, (P, y, T, y_te, names) = pool_cli(__doc__ or "")
    lines = report_head("The linear meta-learner on a subsample of the OOF rows", "stack_subsample") + [
        f"- **data**: the OOF pool of `greedy_subsample.py`: `make_classification`, {len(y):,} OOF rows "
        f"(5 stratified folds), {len(y_te):,} test rows; pool of {len(names)}: {', '.join(names)}",
        f"- **protocol**: `LinearStacker('classification')` fit on all OOF rows vs on seeded stratified "
        f"subsamples (seeds {SEEDS}); test scores of its predictions on the members' test predictions",
        "",
    ]
    keep = [i for i, n in enumerate(names) if n != "hgb_deep"]
    pools = [("all 7 models", P, T, names), ("without hgb_deep", P[keep], T[keep], [names[i] for i in keep])]
    for pool_name, Pp, Tp, nm in pools:
        t0 = time.perf_counter()
        full = LinearStacker("classification", max_rows=None).fit(Pp, y)
        full_s = time.perf_counter() - t0
        full_pred = full.predict(Tp)
        full_ll = metrics.score("logloss", y_te, full_pred, problem="classification")
        full_auc = metrics.score("auc", y_te, full_pred, problem="classification")
        lines += [f"## Pool {pool_name}", "",
                  f"Full fit ({len(y):,} rows, {full_s:.2f} s): test log-loss {full_ll:.5f}, AUC {full_auc:.5f}. "
                  "Member weights: " + ", ".join(f"{n} {w:.3f}" for n, w in zip(nm, full.coef_)), "",
                  "| rows | mean log-loss Δ | worst log-loss Δ | mean AUC Δ | worst AUC Δ | largest weight change | fit s |",
                  "|---|---|---|---|---|---|---|"]
        for size in SIZES:
            ll, auc, dw, secs = [], [], [], []
            for seed in SEEDS:
                t0 = time.perf_counter()
                sub = LinearStacker("classification", max_rows=size, seed=seed).fit(Pp, y)
                secs.append(time.perf_counter() - t0)
                pred = sub.predict(Tp)
                ll.append(metrics.score("logloss", y_te, pred, problem="classification") - full_ll)
                auc.append(metrics.score("auc", y_te, pred, problem="classification") - full_auc)
                dw.append(float(np.abs(sub.coef_ - full.coef_).max()))
            lines.append(f"| {size:,} | {np.mean(ll):+.5f} | {max(ll):+.5f} | {np.mean(auc):+.5f} | {min(auc):+.5f} "
                         f"| {max(dw):.3f} | {np.mean(secs):.2f} |")
        lines.append("")
    lines += ["Log-loss Δ > 0 and AUC Δ < 0 are losses against the fit on every row.", ""]
    write_report(lines, args.out, t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
