"""Scale benchmark: a local `obsrv run` on synthetic data at growing row counts.

    python benchmarks/scale.py                          # 10k, 100k, 1M rows × 30 features
    python benchmarks/scale.py --sizes 10000,100000     # what fits in an afternoon on 2 cores
    python benchmarks/scale.py --smoke                  # CI smoke: 2,000 rows, 2 ensemble tasks, tiny budget

For each size the script loads the rows into the local warehouse (as `obsrv data load`), compiles
a spec with five ensemble tasks and runs it with the local runner (as `obsrv run --budget B`):
one `obsrv-task` process per stage. It reports per stage the wall time (the runner's own figure)
and the peak resident memory of the stage's process and its children, the exponent of a log-log
fit of time against rows, and the cost of ensembling: the extra time of 1 ensemble task (vote_weight)
and of 5 ensemble tasks over the same base models, as a fraction of base training.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import obsrv_adapter as OA  # noqa: E402

ENSEMBLES = [
    {"task": "vote_weight"},  # the "1 ensemble task" configuration
    {"task": "stack_top_any"},
    {"task": "stack_top_alg"},
    {"task": "vote_top_alg"},
    {"task": "vote_mix"},
]


def run_size(n_rows: int, args: argparse.Namespace, work: Path) -> dict:
    import os

    from obsrv.service_tasks.local import launchers

    wd = work / f"n{n_rows}"
    wd.mkdir(parents=True, exist_ok=True)
    home = wd / ".obsrv"
    t0 = time.perf_counter()
    frame = C.synthetic_scale(n_rows, args.features, seed=args.seed)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    OA.load_table(frame, home, "scale", "train")
    load_s = time.perf_counter() - t0
    del frame
    spec = OA.write_spec(wd / "spec.yaml", name="bench_scale", schema="scale", table="train", n_classes=2,
                         tasks=ENSEMBLES[: args.ensembles], holdout=0.2, seed=args.seed, timeout_s=6 * 3600)
    rusage_dir = wd / "rusage"
    os.environ["OBSRV_BENCH_RUSAGE_DIR"] = str(rusage_dir)
    # 0 = no search: obsrv run's --budget must be positive, so the 0 reaches the tasks through the
    # variable it sets (every task's budget is min(its share of the timeout, this))
    task_budget = args.stage_budget if args.stage_budget > 0 else None
    users_budget = os.environ.get("OBSRV_TASK_BUDGET_SECONDS")
    if task_budget is None:
        os.environ["OBSRV_TASK_BUDGET_SECONDS"] = "0"
    if args.cold:
        launcher = launchers.ColdLauncher([sys.executable, str(C.BENCH_DIR / "_task_rusage.py")])
    else:
        launcher = launchers.WarmLauncher(target="_task_rusage:run")
    try:
        wf = f"s{n_rows}"
        ok, wall, states = OA.run_workflow(spec, wd, task_budget=task_budget, workflow_id=wf, jobs=args.jobs,
                                           launcher=launcher)
    finally:
        os.environ.pop("OBSRV_BENCH_RUSAGE_DIR", None)
        if users_budget is None:
            os.environ.pop("OBSRV_TASK_BUDGET_SECONDS", None)
        else:
            os.environ["OBSRV_TASK_BUDGET_SECONDS"] = users_budget
    stages = {}
    for key, s in states.items():
        r = rusage_dir / f"{key}.json"
        rec = json.loads(r.read_text()) if r.exists() else {}
        stages[key] = {
            "state": s["state"],
            "seconds": float(s.get("seconds", float("nan"))),
            "peak_mb": max(rec.get("maxrss_mb", float("nan")), rec.get("children_maxrss_mb", 0.0)) if rec else float("nan"),
            "cpu_s": rec.get("cpu_s", float("nan")),
        }
    failures = OA.failed_tasks(states, wd, wf)
    print(f"[scale] {n_rows:>9,} rows: run {'ok' if ok else 'FAILED'} in {wall:.1f}s", flush=True)
    for k, v in stages.items():
        print(f"[scale]     {k:<24} {v['state']:<10} {v['seconds']:8.1f}s  {v['peak_mb']:8.0f} MB", flush=True)
    return {"rows": n_rows, "ok": ok, "wall_s": wall, "generate_s": gen_s, "load_s": load_s,
            "stages": stages, "failures": failures}


def _group(key: str) -> str:
    if key.startswith("base_"):
        return "base"
    if key in ("prepare", "evaluate"):
        return key
    return "ensemble"


def summarise(results: list[dict], n_ens: int = len(ENSEMBLES)) -> dict:
    out: dict = {"fits": {}, "ensemble_cost": []}
    ok = [r for r in results if r["stages"]]
    keys = list(dict.fromkeys(k for r in ok for k in r["stages"]))
    if len(ok) >= 2:
        rows = np.array([r["rows"] for r in ok], dtype=float)
        series = {k: [r["stages"].get(k, {}).get("seconds", np.nan) for r in ok] for k in keys}
        series["(whole run)"] = [r["wall_s"] for r in ok]
        series["(all base models)"] = [sum(v["seconds"] for k, v in r["stages"].items() if _group(k) == "base") for r in ok]
        for k, t in series.items():
            t = np.asarray(t, dtype=float)
            m = np.isfinite(t) & (t > 0)
            if m.sum() >= 2:
                out["fits"][k] = float(np.polyfit(np.log(rows[m]), np.log(t[m]), 1)[0])
    for r in ok:
        st = r["stages"]
        base = sum(v["seconds"] for k, v in st.items() if _group(k) == "base")
        prep = st.get("prepare", {}).get("seconds", 0.0)
        one = st.get("vote_weight", {}).get("seconds", float("nan"))
        five = sum(st.get(t["task"], {}).get("seconds", float("nan")) for t in ENSEMBLES[:n_ens])
        out["ensemble_cost"].append({
            "rows": r["rows"], "prepare_plus_base_s": prep + base, "base_s": base,
            "one_s": one, "five_s": five,
            "one_frac": one / base if base else float("nan"), "five_frac": five / base if base else float("nan"),
            "evaluate_s": st.get("evaluate", {}).get("seconds", float("nan")),
        })
    return out


def render(results: list[dict], summary: dict, meta: dict, path: Path) -> None:
    n_ens = meta["ensembles"]
    ens = ENSEMBLES[:n_ens]
    L: list[str] = []
    w = L.append
    w("# obsrv scale benchmark")
    w("")
    w(f"- **date**: {meta['date']}; **wall time**: {meta['wall_s'] / 60:.1f} min; git `{meta['git']}`")
    m = meta["machine"]
    w(f"- **machine**: {m['cpu']}, {m['cores']} cores, {m['memory']}; {m['platform']}; Python {m['python']}")
    w("- **versions**: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    w(f"- **command**: `{meta['command']}`")
    w(f"- **setup**: synthetic binary data (`make_classification`, {meta['features']} float features); the spec has "
      f"the 8 base families and {n_ens} ensemble tasks ({', '.join(t['task'] for t in ens)}); "
      f"`OBSRV_TASK_BUDGET_SECONDS={meta['stage_budget']:g}` (the fixed budget per stage"
      + ("; 0 = each family's default config trained to the end, no search" if not meta["stage_budget"] else "")
      + "); the local runner runs "
      f"{meta['jobs']} task(s) at a time, each task using every core. Wall time per stage is the runner's figure "
      "(process start to exit, imports included); peak memory is the largest resident set of the stage's process "
      "or of any of its child processes (`getrusage` ru_maxrss).")
    if meta.get("not_run"):
        w(f"- **not run**: {meta['not_run']}")
    w("")
    sizes = [r["rows"] for r in results]
    keys = list(dict.fromkeys(k for r in results for k in r["stages"]))
    w("## Wall time (s) and peak memory (MB) per stage")
    w("")
    w("| stage | " + " | ".join(f"{n:,} rows" for n in sizes) + " | time exponent |")
    w("|---|" + "---|" * (len(sizes) + 1))
    fits = summary["fits"]
    for k in keys:
        cells = []
        for r in results:
            s = r["stages"].get(k)
            if not s:
                cells.append("—")
            elif s["state"] not in ("succeeded", "skipped"):
                cells.append(f"{s['state']}")
            else:
                cells.append(f"{s['seconds']:.1f} s / {s['peak_mb']:.0f} MB")
        w(f"| {k} | " + " | ".join(cells) + f" | {fits[k]:.2f} |" if k in fits else f"| {k} | " + " | ".join(cells) + " | — |")
    for k in ("(all base models)", "(whole run)"):
        if k in fits or k == "(whole run)":
            vals = ([f"{r['wall_s']:.1f} s" for r in results] if k == "(whole run)" else
                    [f"{sum(v['seconds'] for kk, v in r['stages'].items() if _group(kk) == 'base'):.1f} s" for r in results])
            w(f"| **{k}** | " + " | ".join(vals) + f" | {fits[k]:.2f} |" if k in fits else f"| **{k}** | " + " | ".join(vals) + " | — |")
    w("")
    w("The exponent is the slope of log(time) against log(rows) over the sizes run (1 = linear). With a fixed "
      "search budget per stage, stages that search until the budget is spent grow more slowly than their "
      "work does: read their exponent together with the budget.")
    w("")
    w("## Cost of ensembling over the same base models")
    w("")
    w("One run per size trains the base models once; each ensemble task reads their out-of-fold predictions. "
      f"1 task = vote_weight alone; {n_ens} tasks = the {n_ens} tasks above. The fraction is the ensemble tasks' "
      "wall time (each task's process, start-up included) over the base models' (summed over the 8 base stages). "
      "evaluate is listed apart: it runs once whatever the number of tasks, and its time grows with the number "
      "of models it scores.")
    w("")
    w(f"| rows | base models s | 1 ensemble task s (fraction) | {n_ens} ensemble tasks s (fraction) | evaluate s |")
    w("|---|---|---|---|---|")
    for c in summary["ensemble_cost"]:
        w(f"| {c['rows']:,} | {c['base_s']:.1f} | {c['one_s']:.1f} ({c['one_frac']:.1%}) | "
          f"{c['five_s']:.1f} ({c['five_frac']:.1%}) | {c['evaluate_s']:.1f} |")
    fails = {r["rows"]: r["failures"] for r in results if r["failures"]}
    if fails:
        w("")
        w("## Failures")
        w("")
        for n, f in fails.items():
            for k, v in f.items():
                w(f"- {n:,} rows, {k}: {v}")
    L.extend(C.markdown_list_section("Notes", meta.get("notes") or []))
    path.write_text("\n".join(L) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--features", type=int, default=30)
    ap.add_argument("--stage-budget", type=float, default=0.0,
                    help="OBSRV_TASK_BUDGET_SECONDS per stage; 0 (default): every family trains its default config "
                         "to the end, without search (the cost of the data). Above 0 the budget also bounds the "
                         "default config: boosters and forests stop when it is spent")
    ap.add_argument("--jobs", type=int, default=1,
                    help="tasks run at once by the local runner (1 = clean per-stage figures)")
    ap.add_argument("--ensembles", type=int, default=len(ENSEMBLES), choices=range(1, len(ENSEMBLES) + 1),
                    help="how many of the ensemble tasks to put in the spec (the first is vote_weight)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--cold", action="store_true", help="a fresh interpreter per task (obsrv run --cold)")
    ap.add_argument("--out-dir", default=str(C.BENCH_DIR / "results"))
    ap.add_argument("--work-dir", default=None)
    ap.add_argument("--not-run", default="", help="text for the report: sizes left out and why")
    ap.add_argument("--smoke", action="store_true", help="2,000 rows, 1 s budget per stage (CI)")
    ap.add_argument("--report-only", action="store_true", help="re-render the report from results/scale.json")
    ap.add_argument("--note", action="append", default=[], help="with --report-only: a line for the Notes section")
    args = ap.parse_args(argv)
    if args.report_only:
        out_dir = Path(args.out_dir)
        data = json.loads((out_dir / "scale.json").read_text())
        data["meta"]["notes"] = data["meta"].get("notes", []) + args.note
        (out_dir / "scale.json").write_text(json.dumps(data, indent=2, default=str))
        render(data["results"], data["summary"], data["meta"], out_dir / "scale.md")
        print(f"[scale] wrote {out_dir / 'scale.md'}")
        return 0
    if args.smoke:
        args.sizes, args.stage_budget, args.jobs, args.ensembles = "2000", 1.0, C.cpu_count(), 2
    sizes = [int(s) for s in args.sizes.split(",") if s]
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "scale_smoke" if args.smoke else "scale"
    command = "python benchmarks/scale.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    work_ctx = tempfile.TemporaryDirectory(prefix="obsrv_scale_") if args.work_dir is None else None
    work = Path(work_ctx.name if work_ctx else args.work_dir)
    started = time.time()
    results = []
    try:
        for n in sizes:
            results.append(run_size(n, args, work))
            (out_dir / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str))
    finally:
        if work_ctx is not None:
            work_ctx.cleanup()
    summary = summarise(results, args.ensembles)
    meta = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_s": time.time() - started,
        "git": C.git_revision(),
        "machine": C.machine_info(),
        "versions": C.versions(["obsrv", "scikit-learn", "pandas", "numpy", "xgboost", "lightgbm", "catboost",
                                "mlflow", "deltalake"]),
        "command": command,
        "features": args.features,
        "stage_budget": args.stage_budget,
        "jobs": args.jobs,
        "ensembles": args.ensembles,
        "not_run": args.not_run,
    }
    (out_dir / f"{stem}.json").write_text(json.dumps({"meta": meta, "results": results, "summary": summary},
                                                     indent=2, default=str))
    render(results, summary, meta, out_dir / f"{stem}.md")
    print(f"[scale] wrote {out_dir / (stem + '.md')} in {(time.time() - started) / 60:.1f} min")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
