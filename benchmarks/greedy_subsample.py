"""Greedy ensemble selection (GES) on a subsample of the OOF rows: selection quality against rows.

    python benchmarks/greedy_subsample.py --out benchmarks/results/greedy_subsample.md

Picks ``greedy.SELECTION_ROWS`` from data that is not one of quality.py's eight sets: a synthetic
binary table (`make_classification`, 200,000 rows, 30 features, 30 % positives, 5 % label noise).
150,000 rows get 5-fold OOF predictions of 7 quick scikit-learn models of different kinds; the
other 50,000 are a test set, predicted by the mean of each model's fold models (as obsrv's fold
bags do). GES (25 rounds, as the tasks run it) then selects on all 150,000 OOF rows and on seeded
stratified subsamples of each size (5 seeds), for the AUC and log-loss objectives, over the whole
pool and over the pool without its strongest model (where blending gains more). Reported per
size: the test score of the selected blend against the full selection's (mean and worst over the
seeds), the same as a share of what the full selection gains over the best single model, the L1
distance of the weights, and the selection time.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from obsrv.service_tasks import metrics
from obsrv.service_tasks.ensembles.base import MetricLoss
from obsrv.service_tasks.ensembles.greedy import GreedySelection

SIZES = [5_000, 10_000, 20_000, 50_000, 100_000]
SEEDS = [0, 1, 2, 3, 4]


def models() -> dict[str, object]:
    from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.tree import DecisionTreeClassifier

    return {
        "logistic": LogisticRegression(max_iter=500),
        "naive_bayes": GaussianNB(),
        "hgb_deep": HistGradientBoostingClassifier(max_iter=100, random_state=0),
        "hgb_shallow": HistGradientBoostingClassifier(max_iter=100, max_depth=3, learning_rate=0.2, random_state=0),
        "extra_trees": ExtraTreesClassifier(n_estimators=20, max_depth=14, n_jobs=2, random_state=0),
        "random_forest": RandomForestClassifier(n_estimators=20, max_depth=14, max_samples=0.3, n_jobs=2,
                                                random_state=0),
        "tree": DecisionTreeClassifier(max_depth=10, random_state=0),
    }


def pool(cache: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        return z["oof"], z["y"], z["test"], z["y_test"], [str(n) for n in z["names"]]
    from sklearn.base import clone
    from sklearn.datasets import make_classification
    from sklearn.model_selection import StratifiedKFold

    X, y = make_classification(n_samples=200_000, n_features=30, n_informative=12, n_redundant=6,
                               weights=[0.7, 0.3], flip_y=0.05, class_sep=0.8, random_state=7)
    X_tr, y_tr, X_te, y_te = X[:150_000], y[:150_000], X[150_000:], y[150_000:]
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X_tr, y_tr))
    oofs, tests, names = [], [], []
    for name, est in models().items():
        t0 = time.perf_counter()
        oof = np.zeros((len(y_tr), 2))
        test = np.zeros((len(y_te), 2))
        for tr, va in folds:
            m = clone(est).fit(X_tr[tr], y_tr[tr])
            oof[va] = m.predict_proba(X_tr[va])
            test += m.predict_proba(X_te) / len(folds)
        oofs.append(oof)
        tests.append(test)
        names.append(name)
        print(f"[greedy_subsample] {name}: {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    out = np.stack(oofs), y_tr, np.stack(tests), y_te, names
    np.savez(cache, oof=out[0], y=y_tr, test=out[2], y_test=y_te, names=np.array(names))
    return out


def blend(weights: np.ndarray, P: np.ndarray) -> np.ndarray:
    return np.tensordot(weights, P, axes=1)


def pool_cli(doc: str) -> tuple[argparse.Namespace, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]]:
    """The subsample scripts' command line (``--out``, ``--cache``) and the OOF pool it names
    (shared with ``stack_subsample.py``, which measures the meta-learner on the same pool)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="markdown report (default: print)")
    ap.add_argument("--cache", default="/tmp/greedy_subsample_pool.npz", help="the OOF pool, reused when present")
    args = ap.parse_args()
    return args, pool(Path(args.cache))


def report_head(title: str, script: str) -> list[str]:
    """A subsample report's title, date, machine and command lines."""
    return [
        f"# {title}",
        "",
        f"- **date**: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; **machine**: {platform.processor() or platform.machine()}, "
        f"{platform.platform()}, Python {platform.python_version()}",
        f"- **command**: `python benchmarks/{script}.py --out benchmarks/results/{script}.md`",
    ]


def write_report(lines: list[str], out: str | None, t_start: float) -> None:
    """Closes a subsample report with the script's wall time, writes it to ``out`` and prints it."""
    lines.append(f"Whole script {time.perf_counter() - t_start:.0f} s (pool fits included unless cached).")
    text = "\n".join(lines) + "\n"
    if out:
        Path(out).write_text(text)
    print(text)


def main() -> int:
    t_start = time.perf_counter()
    args, (P, y, T, y_te, names) = pool_cli(__doc__ or "")
    lines = report_head("Greedy selection on a subsample of the OOF rows", "greedy_subsample") + [
        f"- **data**: `make_classification` 200,000 rows (150,000 OOF rows, 5 stratified folds; 50,000 test rows), "
        f"30 features, 30 % positives, 5 % flipped labels; pool of {len(names)}: {', '.join(names)}",
        "- **protocol**: GES 25 rounds on all OOF rows vs on seeded stratified subsamples "
        f"(seeds {SEEDS}); test score of the selected weights applied to the members' test predictions",
        "",
    ]
    everything = (P, T, names)
    # the whole pool is dominated by one booster (blending gains ~nothing), so the pool without it,
    # where the blend beats its best member, is measured too
    strongest = "hgb_deep"
    keep = [i for i, n in enumerate(names) if n != strongest]
    pools = [("all 7 models", everything), (f"without {strongest}", (P[keep], T[keep], [names[i] for i in keep]))]
    for (pool_name, (P, T, names)), objective in [(pl, o) for pl in pools for o in ["auc", "logloss"]]:
        loss = MetricLoss(objective, "classification")
        sign = 1.0 if metrics.greater_is_better(objective) else -1.0  # report "higher is better" deltas

        def test_score(wts: np.ndarray) -> float:
            return metrics.score(objective, y_te, blend(wts, T), problem="classification")

        best_single = max(sign * metrics.score(objective, y_te, T[j], problem="classification")
                          for j in range(len(names)))
        t0 = time.perf_counter()
        full = GreedySelection(loss, 25, max_rows=None).fit(P, y)
        full_s = time.perf_counter() - t0
        full_score = test_score(full.weights_)
        gain = sign * full_score - best_single
        lines += [f"## Pool {pool_name}, objective {objective}", "",
                  f"Full selection ({len(y):,} rows, {full_s:.1f} s): test {objective} {full_score:.5f}; best single "
                  f"model {sign * best_single:.5f}; gain of the full selection {gain:+.5f}. Weights: "
                  + ", ".join(f"{n} {w:.2f}" for n, w in zip(names, full.weights_) if w > 0), "",
                  f"| rows | mean test Δ vs full | worst test Δ | worst Δ / gain | mean weight L1 to full | selection s |",
                  "|---|---|---|---|---|---|"]
        for size in SIZES:
            deltas, dists, secs = [], [], []
            for seed in SEEDS:
                t0 = time.perf_counter()
                sel = GreedySelection(loss, 25, max_rows=size, seed=seed).fit(P, y)
                secs.append(time.perf_counter() - t0)
                deltas.append(sign * (test_score(sel.weights_) - full_score))
                dists.append(float(np.abs(sel.weights_ - full.weights_).sum()))
            worst = min(deltas)
            lines.append(f"| {size:,} | {np.mean(deltas):+.5f} | {worst:+.5f} | "
                         f"{worst / gain:+.1%} | {np.mean(dists):.3f} | {np.mean(secs):.2f} |"
                         if gain > 0 else
                         f"| {size:,} | {np.mean(deltas):+.5f} | {worst:+.5f} | n/a | {np.mean(dists):.3f} | "
                         f"{np.mean(secs):.2f} |")
        lines.append("")
    write_report(lines, args.out, t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
