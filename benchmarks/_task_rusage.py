"""Stand-in for the `obsrv-task` console script that runs the real entry point, then records the
process's peak memory (its own and its children's, e.g. joblib workers) for scale.py.

The local runner starts `[*command, *argv]` per task; scale.py points `command` here. The task
itself is the installed `obsrv-task` entry point, untouched. Output: one JSON file per task in
$OBSRV_BENCH_RUSAGE_DIR.
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

_T0 = time.perf_counter()


def _task_id(argv: list[str]) -> str:
    for i, a in enumerate(argv):
        if a == "--task-id" and i + 1 < len(argv):
            return argv[i + 1]
    return "unknown"


def _dump() -> None:
    out = os.environ.get("OBSRV_BENCH_RUSAGE_DIR")
    if not out:
        return
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    record = {
        "task": _task_id(sys.argv[1:]),
        "wall_s": time.perf_counter() - _T0,
        "maxrss_mb": me.ru_maxrss / 1024,  # Linux: KiB
        "children_maxrss_mb": kids.ru_maxrss / 1024,
        "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / f"{record['task']}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    atexit.register(_dump)
    ep = next(e for e in entry_points(group="console_scripts") if e.name == "obsrv-task")
    main = ep.load()
    sys.argv = ["obsrv-task", *sys.argv[1:]]
    sys.exit(main())
