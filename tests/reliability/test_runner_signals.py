"""Stopping `obsrv run` stops its work: SIGTERM and SIGHUP like Ctrl-C, and SIGKILL takes the tasks,
their children and the forkserver along; `--resume` then recovers what the dead runner left
`running`.

Each case runs the real CLI with stand-in tasks (`stand_in_cli.py`). The first task spins and
starts a grandchild that would leave a marker file if it were ever orphaned; the tests wait for
events (the grandchild's journal entry, the runner's exit), never for a wall-clock threshold. The
bounds in `wait_for` only turn a hang into a failure.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner_harness import events, group_gone, kill_leftovers, process_gone, start_cli, wait_for, write_spec

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups via /proc")


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    kill_leftovers(tmp_path)


def _spinning_run(tmp_path: Path, kind: str, *extra_argv: str) -> tuple[object, Path, dict[str, object], Path]:
    spec = write_spec(tmp_path)
    marker = tmp_path / "orphan.marker"
    workdir = tmp_path / "ws"
    proc, out = start_cli(tmp_path, kind, {"*": ["--sleep", "300", "--grandchild", str(marker)]},
                          ["run", str(spec), "--workdir", str(workdir), "--no-live", *extra_argv])
    grandchild = wait_for(lambda: next((e for e in events(tmp_path) if e["event"] == "grandchild"), None),
                          "the first task to start its grandchild")
    return proc, out, grandchild, marker


def _state(tmp_path: Path) -> dict[str, object]:
    (state_file,) = (tmp_path / "ws" / ".obsrv" / "runs").glob("*/state.json")
    return json.loads(state_file.read_text())


def _assert_all_gone(tmp_path: Path, grandchild: dict[str, object], marker: Path) -> None:
    pgid, pid = int(grandchild["pgid"]), int(grandchild["pid"])
    wait_for(lambda: group_gone(pgid), f"task process group {pgid} to be gone")
    assert process_gone(pid), "the grandchild outlived its task"
    start = next(e for e in events(tmp_path) if e["event"] == "start")
    assert process_gone(int(start["pid"]))
    assert not marker.exists(), "a grandchild was orphaned and went on working"
    assert not [e for e in events(tmp_path) if e["event"] == "end"], "the task ran to its end"


@pytest.mark.parametrize(("kind", "signum"), [("cold", signal.SIGTERM), ("warm", signal.SIGTERM),
                                              ("warm", signal.SIGHUP)])
def test_sigterm_and_sighup_stop_the_run_like_ctrl_c(tmp_path: Path, kind: str, signum: int) -> None:
    cold = ["--cold"] if kind == "cold" else []  # (the stand-in CLI picks its launcher by `kind`)
    proc, out, grandchild, marker = _spinning_run(tmp_path, kind, "--budget", "7", "--jobs", "1", *cold)
    if signum == signal.SIGHUP:
        # a closed terminal signals its whole foreground group: the runner and the forkserver
        os.killpg(proc.pid, signum)  # type: ignore[attr-defined]
    else:
        proc.send_signal(signum)  # type: ignore[attr-defined]
    code = proc.wait(timeout=120)  # type: ignore[attr-defined]
    assert code == 128 + signum, out.read_text()
    _assert_all_gone(tmp_path, grandchild, marker)
    state = _state(tmp_path)
    prepare = state["tasks"]["prepare"]
    assert prepare["state"] == "cancelled" and prepare["message"] == f"stopped by {signal.Signals(signum).name}"
    assert {t["state"] for t in state["tasks"].values()} == {"cancelled"}
    # the hint resumes this very run with the same options
    hint = next(line for line in out.read_text().splitlines() if "Resume with:" in line).split("Resume with: ")[1]
    argv = shlex.split(hint)
    assert argv[:3] == ["obsrv", "run", str(tmp_path / "reliability_job.yaml")]
    for flag, value in (("--workdir", str(tmp_path / "ws")), ("--workflow-id", state["workflow_id"]),
                        ("--budget", "7"), ("--jobs", "1")):
        assert argv[argv.index(flag) + 1] == value, hint
    assert ("--cold" in argv) == (kind == "cold")
    assert "Traceback" not in out.read_text()


def _kill_runner(tmp_path: Path, kind: str) -> dict[str, object]:
    proc, out, grandchild, marker = _spinning_run(tmp_path, kind, "--jobs", "1")
    proc.kill()  # type: ignore[attr-defined]
    proc.wait(timeout=60)  # type: ignore[attr-defined]
    _assert_all_gone(tmp_path, grandchild, marker)
    start = next(e for e in events(tmp_path) if e["event"] == "start")
    if kind == "warm":
        # the task's parent is the forkserver: it must not outlive the runner either
        wait_for(lambda: process_gone(int(start["ppid"])), "the forkserver to be gone")
    state = _state(tmp_path)
    assert state["tasks"]["prepare"]["state"] == "running"  # SIGKILL leaves no chance to save
    return state


def test_sigkill_of_the_runner_takes_its_cold_task_along(tmp_path: Path) -> None:
    _kill_runner(tmp_path, "cold")


@pytest.mark.slow  # a resumed run of all eleven stand-in tasks and the summary: ~10 s on 2 cores
def test_sigkill_of_the_runner_takes_its_warm_task_along_and_resume_recovers(tmp_path: Path) -> None:
    state = _kill_runner(tmp_path, "warm")
    # --resume: the lock is free, so the runner that saved `running` is dead; the task is re-run
    resumed, resumed_out = start_cli(tmp_path, "warm", {"*": ["--sleep", "0"]},
                                     ["run", str(tmp_path / "reliability_job.yaml"), "--workdir", str(tmp_path / "ws"),
                                      "--resume", "--no-live", "--jobs", "2"], tag="resume")
    assert resumed.wait(timeout=300) == 0, resumed_out.read_text()
    text = resumed_out.read_text()
    assert "task prepare was left running by a runner that is gone" in text
    after = _state(tmp_path)
    assert after["workflow_id"] == state["workflow_id"]
    assert {t["state"] for t in after["tasks"].values()} == {"succeeded"}
    prepare_starts = [e for e in events(tmp_path) if e["event"] == "start" and e["task"] == "prepare"]
    assert len(prepare_starts) == 2 and prepare_starts[1]["run"] == state["workflow_id"]


def test_nohup_keeps_sighup_ignored(tmp_path: Path) -> None:
    # `nohup obsrv run ...` starts the runner with SIGHUP ignored; a closed terminal must not stop it.
    from obsrv.service_tasks.local.scheduler import LocalRunner, RunState

    job = {"name": "wf", "tasks": []}
    runner = LocalRunner(job, home=tmp_path, workflow_id="1", state=RunState("1", "wf", "x"), budget_seconds=None,
                         jobs=1, command=["true"])
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        installed = runner._install_stop_handlers()
        assert signal.SIGHUP not in installed and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == runner._interrupt
        for signum, handler in installed.items():
            signal.signal(signum, handler)
    finally:
        signal.signal(signal.SIGHUP, previous)
