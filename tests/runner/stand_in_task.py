"""A stand-in for obsrv-task in the scheduler tests: behaviour from argv, events to a journal.

Runs as a script (cold launcher) or as `stand_in_task:main` forked by the warm launcher.
"""

from __future__ import annotations

import json
import os
import sys
import time


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
    with open(journal, "a") as f:
        f.write(json.dumps({"task": key, "event": "start", "t": time.time(), "run": args.get("--run"),
                            "budget": os.environ.get("OBSRV_TASK_BUDGET_SECONDS"),
                            "compute": os.environ.get("OBSRV_COMPUTE"), "pid": os.getpid(),
                            "pgid": os.getpgid(0), "omp": os.environ.get("OMP_NUM_THREADS")}) + "\n")
    print(f"stand-in {key} attempt {attempt} says hello", flush=True)
    time.sleep(float(args.get("--sleep", "0.2")))
    behaviour = args.get("--behaviour", "ok")
    code = 0
    if behaviour == "fail" or (behaviour == "fail_once" and attempt == 1):
        code = 3
    if behaviour == "final":  # obsrv-task's EXIT_FINAL: an error retrying cannot fix
        code = 65
    if behaviour == "raise":
        raise RuntimeError("stand-in crashed")
    with open(journal, "a") as f:
        f.write(json.dumps({"task": key, "event": "end", "t": time.time(), "code": code}) + "\n")
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    main()
