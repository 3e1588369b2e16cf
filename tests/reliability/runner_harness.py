"""Shared by the reliability tests: a small spec, the stand-in CLI, the journal, bounded waits."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STAND_IN_CLI = Path(__file__).with_name("stand_in_cli.py")

# One vote task over the eight base families: prepare, eight bases, the vote and evaluate.
SPEC = """obsrv:
  context:
    name: {name}
    compute:
      serverless: [CPU]
    timeout: 30 minutes
    retries: 0
    metric:
      classification: [auc]
    source:
      catalog: main
      schema: credit_risk
      table: training_data
      target: default_label
  job:
    - task: vote_top_alg
      vote:
        top_alg: 3
"""


def write_spec(folder: Path, name: str = "reliability_job") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(SPEC.format(name=name))
    return path


def start_cli(tmp: Path, kind: str, extra: dict[str, list[str]], argv: list[str], *, tag: str = "run",
              store: bool = False) -> tuple[subprocess.Popen[str], Path]:
    """Start the stand-in `obsrv run` in its own session; stdout and stderr go to `<tag>.out`.
    `store=False` points MLflow at a server URI nobody contacts (the stand-ins never log), which
    skips the store creation, the slow part of a first run in a workdir."""
    env = dict(os.environ, STAND_IN_JOURNAL=str(tmp / "journal.jsonl"))
    if not store:
        env["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:9"
    out = tmp / f"{tag}.out"
    with open(out, "w") as sink:
        proc = subprocess.Popen([sys.executable, str(STAND_IN_CLI), kind, json.dumps(extra), *argv],
                                stdout=sink, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)
    return proc, out


def events(tmp: Path, *, cleanup: bool = False) -> list[dict[str, Any]]:
    """The stand-in tasks' journal. The final `cleanup` task runs whatever came before it
    (`run_if: ALL_DONE`), so it is left out unless asked for: these tests are about the others."""
    journal = tmp / "journal.jsonl"
    if not journal.exists():
        return []
    rows = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    return rows if cleanup else [e for e in rows if e.get("task") != "cleanup"]


def wait_for(condition: Callable[[], Any], what: str, bound_s: float = 300.0) -> Any:
    """Poll until `condition()` is truthy; the bound only turns a hang into a failure."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting {bound_s:.0f}s for {what}")


def _stat(pid: str) -> list[str]:
    """/proc/PID/stat after the command name: [state, ppid, pgrp, ...]."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def live_members(pgid: int) -> list[int]:
    """Processes of group `pgid` that still run. Zombies are left out: they run nothing, and
    whether the machine's PID 1 reaps orphans promptly is not ours to test."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state, _, pgrp = _stat(entry.name)[:3]
            except (OSError, IndexError):
                continue
            if int(pgrp) == pgid and state != "Z":
                members.append(int(entry.name))
    return members


def group_gone(pgid: int) -> bool:
    """`os.killpg(pgid, 0)` raises ProcessLookupError, or only zombies are left in the group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return not live_members(pgid)


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return _stat(str(pid))[0] == "Z"
    except (ProcessLookupError, FileNotFoundError):
        return True


def kill_leftovers(tmp: Path) -> None:
    """After a test (a failing one above all): SIGKILL every group and grandchild the journal
    names, so that a broken runner's orphans do not outlive the test."""
    for event in events(tmp):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if "pgid" in event:
                os.killpg(int(event["pgid"]), signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if event["event"] == "grandchild":
                os.kill(int(event["pid"]), signal.SIGKILL)
