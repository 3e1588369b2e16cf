"""Wraps the `obsrv-task` entry point to record each task process's peak memory (its own and its
children's, e.g. joblib workers) for scale.py, and, when $OBSRV_BENCH_PROFILE_DIR is set, a
cProfile of the task process (ensemble_cost.py).

scale.py gives the local runner a launcher that calls `run(argv)` here (forked warm, as `obsrv run`
does by default) or, with `--cold`, starts this file as a script. The task itself is the installed
`obsrv-task` entry point, untouched. Output: one JSON file per task in $OBSRV_BENCH_RUSAGE_DIR.
A warm task's peak includes the libraries it shares with the fork server, as a cold one's does.
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


def _dump(argv: list[str] | None = None) -> None:
    out = os.environ.get("OBSRV_BENCH_RUSAGE_DIR")
    if not out:
        return
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    record = {
        "task": _task_id(sys.argv[1:] if argv is None else argv),
        "wall_s": time.perf_counter() - _T0,
        "maxrss_mb": me.ru_maxrss / 1024,  # Linux: KiB
        "children_maxrss_mb": kids.ru_maxrss / 1024,
        "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / f"{record['task']}.json").write_text(json.dumps(record))


def _entry_point():
    """The installed `obsrv-task` console script's function."""
    return next(e for e in entry_points(group="console_scripts") if e.name == "obsrv-task").load()


def run(argv: list[str] | None = None) -> None:
    """The warm launcher's target: the real entry point (called as a wheel task calls it: no
    arguments, `sys.argv` set, SystemExit on failure), then the record."""
    global _T0
    _T0 = time.perf_counter()
    argv = sys.argv[1:] if argv is None else argv
    profile_dir = os.environ.get("OBSRV_BENCH_PROFILE_DIR")
    profiler = None
    if profile_dir:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        _entry_point()()
    finally:
        if profiler is not None:
            profiler.disable()
            Path(profile_dir).mkdir(parents=True, exist_ok=True)
            profiler.dump_stats(str(Path(profile_dir) / f"{_task_id(argv)}.prof"))
        _dump(argv)


if __name__ == "__main__":
    atexit.register(_dump)
    main = _entry_point()
    sys.argv = ["obsrv-task", *sys.argv[1:]]
    sys.exit(main())
