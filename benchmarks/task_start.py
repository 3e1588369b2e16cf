"""What does starting a task cost? The same local run, warm (the default) and cold, side by side.

    python benchmarks/task_start.py                 # the seed example on the demo data, --budget 2
    python benchmarks/task_start.py --repeats 2     # alternate warm/cold twice
    python benchmarks/task_start.py --smoke         # CI smoke mode, see below
    python benchmarks/task_start.py --out-dir benchmarks/results   # also write task_start.md

Each run is `obsrv run examples/credit_risk.yaml --budget B` (12 tasks: prepare, 8 base families,
3 user tasks, evaluate) in a fresh work folder, through `local.scheduler.run_workflow`, once with the
warm launcher (tasks forked from a server that imported the libraries once) and once with
`cold=True` (a fresh interpreter per task, as on Databricks). The search budget is tiny so that
the figures are dominated by what does not depend on it: start-up, loading, fitting the default
configs, MLflow logging. Printed: the run's wall time and each task's wall time for both, and the
cold/warm ratios. Runs alternate (warm, cold, warm, ...) so that a busy machine hits both alike.

`--smoke` (CI) proves the script still works at a fraction of the cost: 600 demo rows, --budget 1,
and the cold side re-runs only the warm run's last tasks (`--resume --from stack_top_any`, i.e.
stack_top_any and evaluate in fresh interpreters), so the table compares those tasks only. A full
cold run is 12 fresh interpreters, about 100 s on a 2-core machine; its figures belong in the real
run, not in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import _common as C

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "examples" / "credit_risk.yaml"
SMOKE_FROM = "stack_top_any"  # --smoke: the cold side re-runs this task and what depends on it


def one_run(kind: str, work: Path, budget: float, max_rows: int | None,
            from_task: str | None = None) -> tuple[float, dict[str, float]]:
    """One local run of the seed example in `work` (fresh, or with `from_task` a re-run of the
    tasks from there on in the run already in `work`); returns its wall time and the seconds of
    each task it ran."""
    from obsrv.service_tasks.local.load_data import load_demo
    from obsrv.service_tasks.local.scheduler import run_workflow

    home = work / ".obsrv"
    if from_task is None:
        work.mkdir(parents=True)
        load_demo(home)
        if max_rows:
            _shrink_demo(home, max_rows)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "OBSRV_HOME"):
        os.environ.pop(var, None)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = run_workflow(str(SEED), workdir=str(work), budget=budget, workflow_id="bench", jobs=C.cpu_count(),
                            live=False, cold=kind == "cold", resume=from_task is not None, from_task=from_task)
    wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"the {kind} run failed (exit {code}); logs in {home / 'runs' / 'bench' / 'logs'}")
    state = json.loads((home / "runs" / "bench" / "state.json").read_text())["tasks"]
    return wall, {k: float(v["seconds"]) for k, v in state.items() if v["state"] == "succeeded"}


def _shrink_demo(home: Path, rows: int) -> None:
    from obsrv.service_tasks.io import LocalDeltaStore, TableName

    store = LocalDeltaStore(home)
    name = TableName("main", "credit_risk", "training_data")
    store.write(name, store.read(name).head(rows))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=2.0, help="obsrv run --budget (search seconds per task)")
    ap.add_argument("--repeats", type=int, default=1, help="warm/cold pairs")
    ap.add_argument("--out-dir", default=None, help="also write task_start.md here")
    ap.add_argument("--smoke", action="store_true",
                    help=f"CI: 600 demo rows, --budget 1, the cold side re-runs only --from {SMOKE_FROM}")
    args = ap.parse_args(argv)
    max_rows = 600 if args.smoke else None
    budget = 1.0 if args.smoke else args.budget
    walls: dict[str, list[float]] = {"warm": [], "cold": []}
    tasks: dict[str, dict[str, list[float]]] = {"warm": {}, "cold": {}}
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for kind in ("warm", "cold"):
                # smoke: the cold side continues the warm run of this repeat (see the module doc)
                smoke_cold = args.smoke and kind == "cold"
                work = Path(tmp) / f"{'warm' if smoke_cold else kind}{r}"
                wall, per_task = one_run(kind, work, budget, max_rows, from_task=SMOKE_FROM if smoke_cold else None)
                if smoke_cold:  # compare like with like: the same tasks, warm and cold
                    walls["warm"][-1] = sum(tasks["warm"][k][-1] for k in per_task)
                    wall = sum(per_task.values())
                walls[kind].append(wall)
                for k, v in per_task.items():
                    tasks[kind].setdefault(k, []).append(v)
                print(f"[task_start] {kind} run {r + 1}: {wall:.1f}s", flush=True)
    med = {k: statistics.median(v) for k, v in walls.items()}
    lines = [
        "| task | warm s | cold s | cold / warm |",
        "|---|---|---|---|",
    ]
    for key in sorted(tasks["cold"], key=lambda k: (k != "prepare", k == "evaluate", k)):
        w, c = statistics.median(tasks["warm"][key]), statistics.median(tasks["cold"][key])
        lines.append(f"| {key} | {w:.1f} | {c:.1f} | {c / w:.2f}× |")
    total = "**these tasks, summed**" if args.smoke else "**whole run**"
    lines.append(f"| {total} | **{med['warm']:.1f}** | **{med['cold']:.1f}** | **{med['cold'] / med['warm']:.2f}×** |")
    table = "\n".join(lines)
    print(table)
    if args.out_dir:
        meta = C.machine_info()
        report = "\n".join([
            "# Task start-up: warm vs cold local runs",
            "",
            f"- **date**: {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}; **wall time**: {(time.time() - started) / 60:.1f} min; git `{C.git_revision()}`",
            f"- **machine**: {meta.get('cpu', '?')}, {meta.get('cores', '?')} cores; Python {sys.version.split()[0]}",
            f"- **command**: `python benchmarks/task_start.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
            f"- **setup**: `obsrv run examples/credit_risk.yaml --budget {budget:g}` on the demo data"
            + (f" ({max_rows} rows)" if max_rows else " (4,454 rows)")
            + (f"; smoke: the cold side re-ran only `--from {SMOKE_FROM}` of the warm run" if args.smoke else "")
            + f", {C.cpu_count()} tasks at a time, {args.repeats} warm/cold pair(s), medians; warm = tasks forked from the"
            " preloaded server (default), cold = `--cold`, a fresh interpreter per task.",
            "",
            table,
            "",
        ])
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / ("task_start_smoke.md" if args.smoke else "task_start.md")).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
