"""A stand-in for obsrv-task in the scheduler tests: behaviour from argv, events to a journal.

Runs as a script (cold launcher) or as `stand_in_task:main` forked by the warm launcher.

* `--sleep S`: how long the task works (sleeps) before it ends.
* `--behaviour ok|fail|fail_once|raise|exit`: how it ends (`exit` raises SystemExit(5), as the
  real entry point may).
* `--wait-for KEY`: before sleeping, wait (bounded) until task KEY has started, so that a test
  proves two tasks overlap by event order instead of by timing; exit code 4 if KEY never starts.
* `--wait-file PATH`: before sleeping, wait (bounded) until PATH exists: a test releases it.
* `--grandchild MARKER`: start a child process that ignores SIGTERM and writes MARKER if it is
  ever orphaned (its parent, this task, gone while it still lives) and then lives on; it journals
  its pid (`grandchild` event) once it ignores SIGTERM, so a test can check that it died with the task.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

# The grandchild: ignores SIGTERM (as a worker that traps it to finish its batch would), notices
# its parent is gone, waits a moment for whoever should kill it, then leaves the marker and lives
# on (an orphan doing work nobody asked for).
GRANDCHILD = r"""
import json, os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
parent, marker, journal, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
with open(journal, "a") as f:  # armed: from here on only SIGKILL ends it
    f.write(json.dumps({"task": key, "event": "grandchild", "pid": os.getpid(), "pgid": os.getpgid(0)}) + "\n")
while os.getppid() == parent:
    time.sleep(0.05)
time.sleep(5.0)  # far longer than a kill takes; the group check is the real test
with open(marker, "w") as f:
    f.write(str(os.getpid()))
time.sleep(30)
"""


def _store_ready() -> bool:
    """Whether the local MLflow store's schema is complete as this task starts (see workdir.py)."""
    import sqlite3

    db = os.path.join(os.environ.get("OBSRV_HOME", ""), "mlflow.db")
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return bool(conn.execute("SELECT version_num FROM alembic_version").fetchall())
    except sqlite3.Error:
        return False


def _journal(journal: str, event: dict[str, object]) -> None:
    with open(journal, "a") as f:
        f.write(json.dumps(event) + "\n")


def _started(journal: str, key: str) -> bool:
    with open(journal) as f:
        return any(json.loads(line).get("task") == key and json.loads(line)["event"] == "start" for line in f)


def main(argv: list[str] | None = None) -> None:
    """Called like the real entry point: no arguments (sys.argv), SystemExit(code) on failure."""
    argv = sys.argv[1:] if argv is None else argv
    args = dict(zip(argv[0::2], argv[1::2]))
    journal = args["--journal"]
    key = args["--task-id"]
    counter = os.path.join(os.path.dirname(journal), key + ".attempts")
    attempt = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
    with open(counter, "w") as f:
        f.write(str(attempt))
    _journal(journal, {"task": key, "event": "start", "t": time.time(), "run": args.get("--run", args.get("--workflow-id")),
                       "budget": os.environ.get("OBSRV_TASK_BUDGET_SECONDS"),
                       "compute": os.environ.get("OBSRV_COMPUTE"), "pid": os.getpid(),
                       "pgid": os.getpgid(0), "ppid": os.getppid(), "omp": os.environ.get("OMP_NUM_THREADS"),
                       "store_ready": _store_ready()})
    print(f"stand-in {key} attempt {attempt} says hello", flush=True)
    if "--grandchild" in args:
        subprocess.Popen([sys.executable, "-c", GRANDCHILD, str(os.getpid()), args["--grandchild"], journal, key])
    if "--wait-for" in args:
        deadline = time.monotonic() + 120  # a bound for a broken scheduler, not a timing assertion
        while not _started(journal, args["--wait-for"]):
            if time.monotonic() > deadline:
                return 4
            time.sleep(0.05)
    if "--wait-file" in args:
        deadline = time.monotonic() + 120
        while not os.path.exists(args["--wait-file"]):
            if time.monotonic() > deadline:
                return 4
            time.sleep(0.05)
    time.sleep(float(args.get("--sleep", "0.2")))
    behaviour = args.get("--behaviour", "ok")
    code = 0
    if behaviour == "fail" or (behaviour == "fail_once" and attempt == 1):
        code = 3
    if behaviour == "final":  # obsrv-task's EXIT_FINAL: an error retrying cannot fix
        code = 65
    if behaviour == "raise":
        raise RuntimeError("stand-in crashed")
    if behaviour == "exit":
        code = 5
    _journal(journal, {"task": key, "event": "end", "t": time.time(), "code": code})
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
