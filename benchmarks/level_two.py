"""The `lightgbm_full` meta-learner against the stack's others, on finished quality runs' pools.

    python benchmarks/level_two.py --work-dir /tmp/ab/work/A --out benchmarks/results/level_two.md

Reads what obsrv published in each split of a `quality.py` or `code_ab.py` work directory (the
`--work-dir` of those scripts; `<dataset>/<split>/obsrv` holds the run): the base models' OOF
predictions on the shared folds and their served pyfunc models, which predict the split's outer test
fold. Over the top 5 base models by OOF (what `stack_top_any` stacks by default) it then fits, side by
side on the same pool, greedy selection and the stack behind the dynamic-stacking guard with each
meta-learner: `linear`, `lightgbm_full` without passthrough and `lightgbm_full` with the original
features (`passthrough: true`). Reported per split: the nested-OOF loss the guard compares (for the
second level and for greedy selection), what the guard kept, the outer test score of each, and the
seconds each guard took. Nothing is re-implemented: the combiners are obsrv's own.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import obsrv_adapter as A  # noqa: E402

from obsrv.service_tasks import metrics  # noqa: E402
from obsrv.service_tasks.ensembles.base import MetricLoss  # noqa: E402
from obsrv.service_tasks.ensembles.greedy import GreedySelection  # noqa: E402
from obsrv.service_tasks.ensembles.level_two import FullStackFactory  # noqa: E402
from obsrv.service_tasks.ensembles.stacking import MetaFactory, StackGreedyMix, dynamic_stack  # noqa: E402
from obsrv.service_tasks.stages.base_models import search_metric  # noqa: E402

TOP_N = 5
VARIANTS = ("linear", "lightgbm_full", "lightgbm_full+passthrough")


def _split_pool(split_dir: Path) -> dict[str, Any]:
    """The base models' OOF and outer-test predictions of one finished split, and its labels."""
    work = split_dir / "obsrv"
    home = work / ".obsrv"
    spec = yaml.safe_load((work / "spec.yaml").read_text())["obsrv"]
    ctx = spec["context"]
    schema, table = ctx["source"]["schema"], ctx["source"]["table"]
    out_schema = f"bench_{schema}"
    wf = sorted(p.name for p in (home / "runs").iterdir())[-1]
    meta = json.loads((split_dir / "meta.json").read_text())
    classes = list(meta.get("classes") or [])
    problem = "classification" if classes else "regression"
    metric = next(iter(ctx["metric"].values()))[0]
    prepared = A.read_prepared(home, out_schema, table, wf)
    assert prepared is not None, f"{split_dir}: no prepared table"
    prepared = prepared[prepared["obsrv_fold"] >= 0].sort_values("obsrv_row_id").reset_index(drop=True)
    X = prepared.drop(columns=["obsrv_row_id", "obsrv_fold", C.TARGET])
    folds = prepared["obsrv_fold"].to_numpy()
    order = sorted(classes)  # obsrv's class order

    def labels(target: pd.Series) -> np.ndarray:
        if problem == "regression":
            return target.to_numpy(np.float64)
        return target.astype(str).map({c: i for i, c in enumerate(order)}).to_numpy(np.int64)

    y = labels(prepared[C.TARGET])
    test = pd.read_parquet(split_dir / "test.parquet")
    X_te = test.drop(columns=[C.TARGET])[list(X.columns)]
    y_te = labels(test[C.TARGET])
    task_ids = sorted(p.name[: -len(".log")] for p in (home / "runs" / wf / "logs").glob("base_*.log"))
    models = A.read_models(home, out_schema, table, wf, task_ids)
    oof, tst, names = [], [], []
    for _, row in models.iterrows():
        got = (A.read_oof(home, out_schema, table, wf, str(row["task_id"]), str(row["model"]), order)
               if problem == "classification" else _regression_oof(home, out_schema, table, wf, row))
        if got is None:
            continue
        rid, p = got
        full = np.full((len(y), p.shape[1]), np.nan)
        pos = pd.Index(prepared["obsrv_row_id"]).get_indexer(rid)
        keep = pos >= 0
        full[pos[keep]] = p[keep]
        if not np.isfinite(full).all():
            continue
        model = A.load_model(str(row["model_uri"]), home)
        if problem == "classification":
            t = A.predict_proba(model, X_te, order)
        else:
            t = model.predict(X_te)["prediction"].to_numpy(np.float64)[:, None]
        oof.append(full)
        tst.append(t)
        names.append(str(row["model"]))
    return {"X": X, "y": y, "folds": folds, "X_te": X_te.reset_index(drop=True), "y_te": y_te,
            "P": np.stack(oof), "T": np.stack(tst), "names": names, "problem": problem, "metric": metric,
            "categorical": [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])],
            "k": len(classes) if classes else 1}


def _regression_oof(home: Path, schema: str, table: str, wf: str, row: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
    store = A._store(home)
    name = A._out_table(schema, table, "oof", wf, str(row["task_id"]))
    if not store.exists(name):
        return None
    df = store.read(name)
    df = df[df["model"] == row["model"]]
    return df["row_id"].to_numpy(), df[["prediction"]].to_numpy(np.float64)


def compare(pool: dict[str, Any]) -> dict[str, Any]:
    """Greedy selection and each guarded stack over the top 5 base models, on one split."""
    problem, metric = pool["problem"], pool["metric"]
    objective = search_metric(metric, problem)
    loss = MetricLoss(objective, problem)
    P, T, y, folds = pool["P"], pool["T"], pool["y"], pool["folds"]
    scores = np.array([loss(y, P[i]) for i in range(len(P))])
    top = list(np.argsort(scores, kind="stable")[:TOP_N])
    P, T = P[top], T[top]

    def test_score(pred: np.ndarray) -> float:
        return float(metrics.score(metric, pool["y_te"], pred, problem=problem))

    out: dict[str, Any] = {"members": [pool["names"][i] for i in top], "metric": metric,
                           "best_single": test_score(T[0])}
    greedy = GreedySelection(loss, 25).fit(P, y)
    out["greedy"] = test_score(greedy.predict(T))
    k, seed = pool["k"], 42
    for variant in VARIANTS:
        t0 = time.perf_counter()
        extra = extra_te = None
        if variant == "linear":
            factory: Any = MetaFactory("linear", problem, k, seed)
        elif variant == "lightgbm_full":
            factory = MetaFactory("lightgbm_full", problem, k, seed)
        else:
            factory = FullStackFactory(problem, k, seed, tuple(pool["categorical"]))
            extra, extra_te = pool["X"], pool["X_te"]
        res = dynamic_stack(factory, P, y, folds, loss, extra=extra, metric_name=objective,
                            greater_is_better=metrics.greater_is_better(objective))
        pred = res.combiner.predict(T, None if res.used == "greedy" else extra_te)
        # the stack fit on all OOF whatever the guard said: the guard's own when it kept it, alone or mixed
        if res.used == "stack":
            stack_only = pred
        elif isinstance(res.combiner, StackGreedyMix):
            stack_only = res.combiner.stack.predict(T, extra_te)
        else:
            stack_only = factory().fit(P, y, None, extra).predict(T, extra_te)
        out[variant] = {"used": res.used, "test": test_score(pred), "stack_test": test_score(stack_only),
                        "nested_stack": _natural(objective, res.stack_loss),
                        "nested_greedy": _natural(objective, res.greedy_loss),
                        "seconds": time.perf_counter() - t0}
    return out


def _natural(objective: str, loss_value: float) -> float:
    return -loss_value if metrics.greater_is_better(objective) else loss_value


def _loss(metric: str, value: float) -> float:
    """A test score as a loss, as code_ab.py reports them: 1 - AUC, log-loss, RMSE."""
    return 1.0 - value if metrics.greater_is_better(metric) else value


def _fmt(v: float) -> str:
    return f"{v:.4f}"


def render(rows: list[tuple[str, dict[str, Any]]], args: argparse.Namespace, wall: float) -> str:
    lines = ["# The `lightgbm_full` meta-learner on finished runs' pools", "",
             f"Command: `python benchmarks/level_two.py --work-dir {args.work_dir} --out {args.out}`  ",
             f"Machine: {C.machine_label()}; versions: "
             + ", ".join(f"{k} {v}" for k, v in C.versions(["lightgbm", "scikit-learn", "numpy"]).items())
             + f"; Python {platform.python_version()}  ",
             f"Code: {C.code_revision()}; run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC in {wall / 60:.1f} min", "",
             f"Pools: the base models each split's obsrv run published; members: the top {TOP_N} by OOF. "
             "Test: the split's outer test fold, scored with the primary metric (AUC higher is better; "
             "log-loss and RMSE lower). `guarded`: what the dynamic-stacking guard serves (of greedy selection, "
             "the stack and a weighted mix of the two, the one with the best nested OOF); `stack`: the stack fit on all OOF "
             "whatever the guard says. Nested: the guard's nested-OOF figures (stack / greedy).", "",
             "| split | metric | best single | greedy | linear guarded | full guarded (nested stack / greedy) "
             "| full+features guarded (nested stack / greedy) | full+features stack | full+features s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows:
        lin, full, feat = r["linear"], r["lightgbm_full"], r["lightgbm_full+passthrough"]
        lines.append(
            f"| {name} | {r['metric']} | {_fmt(r['best_single'])} | {_fmt(r['greedy'])} | {_fmt(lin['test'])} ({lin['used']}) "
            f"| {_fmt(full['test'])} ({full['used']}; {_fmt(full['nested_stack'])} / {_fmt(full['nested_greedy'])}) "
            f"| {_fmt(feat['test'])} ({feat['used']}; {_fmt(feat['nested_stack'])} / {_fmt(feat['nested_greedy'])}) "
            f"| {_fmt(feat['stack_test'])} | {feat['seconds']:.1f} |")
    lines += ["", "## Summary", ""]
    for variant in VARIANTS:
        rel = [(_loss(r["metric"], r["greedy"]) - _loss(r["metric"], r[variant]["test"])) / _loss(r["metric"], r["greedy"])
               for _, r in rows]
        kept = sum(r[variant]["used"] == "stack" for _, r in rows)
        mixed = sum(r[variant]["used"] == "mix" for _, r in rows)
        better = sum(x > 0 for x in rel)
        lines.append(f"- `{variant}` behind the guard vs greedy selection on test: mean relative loss reduction "
                     f"{100 * np.mean(rel):+.2f} % (loss = 1 - AUC, log-loss or RMSE; positive = better), better on {better} of {len(rows)} splits; the guard kept the stack on "
                     f"{kept}" + (f" and mixed it with greedy selection on {mixed}" if mixed else "") + ".")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work-dir", required=True, help="a quality.py / code_ab.py arm work dir: <dataset>/<split>/obsrv")
    ap.add_argument("--datasets", default=None, help="comma list (default: every dataset in --work-dir)")
    ap.add_argument("--out", default=str(C.BENCH_DIR / "results" / "level_two.md"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    root = Path(args.work_dir)
    wanted = None if args.datasets is None else set(args.datasets.split(","))
    rows = []
    for split_dir in sorted(root.glob("*/*")):
        if not (split_dir / "obsrv" / "spec.yaml").exists() or (wanted and split_dir.parent.name not in wanted):
            continue
        name = f"{split_dir.parent.name} {split_dir.name}"
        r = compare(_split_pool(split_dir))
        print(f"[level_two] {name}: greedy {r['greedy']:.4f}; "
              + "; ".join(f"{v} {r[v]['test']:.4f} ({r[v]['used']})" for v in VARIANTS), flush=True)
        rows.append((name, r))
    if not rows:
        print(f"no finished obsrv splits under {root}", file=sys.stderr)
        return 2
    Path(args.out).write_text(render(rows, args, time.perf_counter() - t0))
    print(f"[level_two] wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
