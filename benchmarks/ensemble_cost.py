"""Re-run only the ensemble tasks of a finished `scale.py` size, and time (and optionally profile) them.

    python benchmarks/scale.py --sizes 100000 --jobs 1 --work-dir /tmp/w --out-dir /tmp/o   # once
    python benchmarks/ensemble_cost.py --size-dir /tmp/w/n100000 --label after --profile-dir /tmp/prof

Each task runs as `obsrv run SPEC --workflow-id s<rows> --only TASK` would, through the same warm
launcher and `_task_rusage` wrapper as scale.py, so its wall time (the runner's figure: process
start to exit) is comparable with scale.py's. The base models are not re-trained: the tasks read
the OOF tables and models the scale run published. The base stages' times are read from the state
file that the first call saves beside the run (``state_base.json``), so that the fraction of base
time uses the scale run's base figures even after the ensemble tasks have been re-run.
With ``--profile-dir`` each task is run under cProfile; ``--top`` prints its costliest calls.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import obsrv_adapter as OA  # noqa: E402
from scale import ENSEMBLES  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-dir", required=True, help="a scale.py work dir's n<rows> folder")
    ap.add_argument("--tasks", default=",".join(t["task"] for t in ENSEMBLES))
    ap.add_argument("--label", default="run", help="name of this measurement in the JSON output")
    ap.add_argument("--out", default=None, help="JSON file to add this measurement to")
    ap.add_argument("--profile-dir", default=None)
    ap.add_argument("--top", type=int, default=25, help="with --profile-dir: calls printed per task")
    args = ap.parse_args()

    from obsrv.service_tasks.local import launchers

    wd = Path(args.size_dir)
    wf = "s" + wd.name.lstrip("n")
    run_dir = wd / ".obsrv" / "runs" / wf
    base_state = run_dir / "state_base.json"
    if not base_state.exists():
        shutil.copyfile(run_dir / "state.json", base_state)
    base = json.loads(base_state.read_text())["tasks"]
    base_s = sum(v["seconds"] for k, v in base.items() if k.startswith("base_"))

    os.environ["OBSRV_TASK_BUDGET_SECONDS"] = "0"  # as scale.py: no search
    os.environ["OBSRV_BENCH_RUSAGE_DIR"] = str(wd / "rusage")
    if args.profile_dir:
        os.environ["OBSRV_BENCH_PROFILE_DIR"] = args.profile_dir
    launcher = launchers.WarmLauncher(target="_task_rusage:run")
    tasks = [t for t in args.tasks.split(",") if t]
    result: dict[str, float] = {}
    for task in tasks:
        ok, _, states = OA.run_workflow(wd / "spec.yaml", wd, task_budget=None, workflow_id=wf, jobs=1,
                                        launcher=launcher, only=task)
        if not ok or states.get(task, {}).get("state") != "succeeded":
            print(f"[ensemble_cost] {task} failed: {OA.failed_tasks(states, wd, wf)}", file=sys.stderr)
            return 1
        result[task] = float(states[task]["seconds"])
        print(f"[ensemble_cost] {task:<15} {result[task]:7.1f} s ({result[task] / base_s:.1%} of base)")
        if args.profile_dir and args.top:
            import pstats

            pstats.Stats(str(Path(args.profile_dir) / f"{task}.prof")).sort_stats("cumulative").print_stats(args.top)
    total = sum(result.values())
    print(f"[ensemble_cost] {len(result)} tasks {total:.1f} s over base models {base_s:.1f} s = {total / base_s:.1%}")
    if args.out:
        out = Path(args.out)
        data = json.loads(out.read_text()) if out.exists() else {}
        data[args.label] = {"tasks_s": result, "total_s": total, "base_s": base_s,
                            "scale_run_tasks_s": {t: base[t]["seconds"] for t in tasks if t in base}}
        out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
