"""The local runner's scheduling semantics, with a stand-in task program instead of obsrv-task.

The stand-in reads its behaviour from argv, records start/end times in a journal file, and lets
the tests check ordering, parallelism, retries, timeouts and failure propagation without ML.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from obsrv.service_tasks.local.launchers import ColdLauncher, Launcher, WarmLauncher
from obsrv.service_tasks.local.scheduler import (
    CANCELLED,
    FAILED,
    SKIPPED,
    SUCCEEDED,
    TIMED_OUT,
    UPSTREAM_FAILED,
    LocalRunner,
    RunError,
    RunState,
    TaskState,
    downstream_of,
    LocalTask,
    resolve_references,
)

STAND_IN = Path(__file__).with_name("stand_in_task.py")
LAUNCHERS = ["cold", "warm"]


def launcher(kind: str) -> Launcher:
    if kind == "warm":
        return WarmLauncher(target="stand_in_task:main", preload=())
    return ColdLauncher([sys.executable, str(STAND_IN)])


def make_job(journal: Path, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    compiled = []
    for spec in tasks:
        argv = ["--task-id", spec["key"], "--journal", str(journal), "--run", "{{job.run_id}}"]
        argv += ["--sleep", str(spec.get("sleep", 0.2)), "--behaviour", spec.get("behaviour", "ok")]
        if spec.get("stage"):
            argv += ["--stage", spec["stage"]]
        argv += spec.get("extra", [])
        task: dict[str, Any] = {
            "task_key": spec["key"],
            "environment_key": spec.get("env", "cpu"),
            "python_wheel_task": {"package_name": "obsrv", "entry_point": "obsrv-task", "parameters": argv},
            "max_retries": spec.get("retries", 0),
            "min_retry_interval_millis": 0,
            "retry_on_timeout": spec.get("retry_on_timeout", False),
            "timeout_seconds": spec.get("timeout", 0),
        }
        if spec.get("deps"):
            task["depends_on"] = [{"task_key": d} for d in spec["deps"]]
        compiled.append(task)
    return {"name": "wf", "parameters": [{"name": "catalog", "default": "main"}], "tasks": compiled}


def run(tmp_path: Path, tasks: list[dict[str, Any]], jobs: int = 2, budget: float | None = None,
        state: RunState | None = None, kind: str = "cold",
        time_limit: float | None = None) -> tuple[LocalRunner, list[dict[str, Any]], bool]:
    journal = tmp_path / "journal.jsonl"
    job = make_job(journal, tasks)
    state = state or RunState(workflow_id="123", job_name="wf", job_digest="x")
    runner = LocalRunner(job, home=tmp_path / ".obsrv", workflow_id="123", state=state, budget_seconds=budget,
                         jobs=jobs, launcher=launcher(kind), time_limit=time_limit)
    ok = runner.run()
    events = [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []
    return runner, events, ok


def times(events: list[dict[str, Any]], task: str, event: str) -> list[float]:
    return [e["t"] for e in events if e["task"] == task and e["event"] == event]


@pytest.mark.parametrize("kind", LAUNCHERS)
def test_dependencies_are_respected_and_independent_tasks_overlap(tmp_path: Path, kind: str) -> None:
    # a and b each wait for the other to start before they end: they can only both succeed if the
    # runner ran them side by side (event order, not timing: a slow start cannot fail this).
    runner, events, ok = run(tmp_path, [
        {"key": "prepare"},
        {"key": "a", "deps": ["prepare"], "sleep": 0, "extra": ["--wait-for", "b"]},
        {"key": "b", "deps": ["prepare"], "sleep": 0, "extra": ["--wait-for", "a"]},
        {"key": "final", "deps": ["a", "b"]},
    ], budget=7, kind=kind)
    assert ok, {k: s.message for k, s in runner.state.tasks.items()}
    assert times(events, "a", "start")[0] >= times(events, "prepare", "end")[0]
    assert times(events, "final", "start")[0] >= max(times(events, "a", "end")[0], times(events, "b", "end")[0])
    # a and b ran side by side: each started before the other ended.
    assert times(events, "a", "start")[0] < times(events, "b", "end")[0]
    assert times(events, "b", "start")[0] < times(events, "a", "end")[0]
    # dynamic references and the budget reached the task process
    starts = [e for e in events if e["event"] == "start"]
    assert {e["run"] for e in starts} == {"123"}
    assert {e["budget"] for e in starts} == {"7"}
    assert all(s.state == SUCCEEDED for s in runner.state.tasks.values())
    saved = RunState.load(tmp_path / ".obsrv" / "runs" / "123" / "state.json")
    assert saved.tasks["final"].state == SUCCEEDED


def test_parallelism_is_bounded_by_jobs(tmp_path: Path) -> None:
    _, events, ok = run(tmp_path, [{"key": k, "sleep": 0.4} for k in "abc"], jobs=1)
    assert ok
    spans = sorted((times(events, k, "start")[0], times(events, k, "end")[0]) for k in "abc")
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end


@pytest.mark.parametrize("kind", LAUNCHERS)
def test_retry_then_success_and_failure_propagates(tmp_path: Path, kind: str) -> None:
    runner, events, ok = run(tmp_path, [
        {"key": "flaky", "behaviour": "fail_once", "retries": 1},
        {"key": "broken", "behaviour": "fail", "retries": 1},
        {"key": "after_broken", "deps": ["broken"]},
        {"key": "after_flaky", "deps": ["flaky"]},
    ], kind=kind)
    assert not ok
    states = {k: s.state for k, s in runner.state.tasks.items()}
    assert states == {"flaky": SUCCEEDED, "broken": FAILED, "after_broken": UPSTREAM_FAILED, "after_flaky": SUCCEEDED}
    assert runner.state.tasks["flaky"].attempts == 2
    assert runner.state.tasks["broken"].attempts == 2  # max_retries=1 → two attempts in all
    assert not times(events, "after_broken", "start")


@pytest.mark.parametrize("kind", LAUNCHERS)
def test_timeout_kills_the_task_and_respects_retry_on_timeout(tmp_path: Path, kind: str) -> None:
    # No wall-clock cap: a task that was not killed would journal its end (after 120 s) and fail
    # the last assertion; its grandchild would be left alive and mark itself orphaned.
    marker = tmp_path / "orphan.marker"
    runner, events, ok = run(tmp_path, [
        {"key": "slow", "sleep": 120, "timeout": 1, "retries": 2, "retry_on_timeout": False,
         "extra": ["--grandchild", str(marker)]},
    ], kind=kind)
    assert not ok
    assert runner.state.tasks["slow"].state == TIMED_OUT
    assert runner.state.tasks["slow"].attempts == 1
    assert not times(events, "slow", "end")  # killed before it finished
    assert_tree_gone(events, marker)


def assert_tree_gone(events: list[dict[str, Any]], marker: Path) -> None:
    """Every task group the journal saw is gone (`os.killpg(pgid, 0)` raises, zombies aside) and no
    grandchild lived on to leave its marker."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
    from runner_harness import group_gone, process_gone, wait_for

    for event in events:
        if event["event"] == "start":
            wait_for(lambda: group_gone(int(event["pgid"])), f"task group {event['pgid']} to be gone")
        if event["event"] == "grandchild":
            assert process_gone(int(event["pid"]))
    assert [e for e in events if e["event"] == "grandchild"], "the test needs a grandchild to watch"
    assert not marker.exists(), "a task's child outlived it"


@pytest.mark.parametrize("kind", LAUNCHERS)
def test_each_task_is_its_own_process_group_with_its_env_and_log(tmp_path: Path, kind: str) -> None:
    import os

    runner, events, ok = run(tmp_path, [{"key": "a"}, {"key": "b", "deps": ["a"]},
                                        {"key": "boom", "behaviour": "raise"}], jobs=2, kind=kind)
    assert not ok
    starts = {e["task"]: e for e in events if e["event"] == "start"}
    assert starts["a"]["pid"] != starts["b"]["pid"] != os.getpid()
    assert all(e["pgid"] == e["pid"] for e in starts.values())  # a group of its own: killable as a tree
    assert {e["omp"] for e in starts.values()} == {str(max(1, (os.cpu_count() or 1) // 2))}
    assert "stand-in b attempt 1 says hello" in (runner.log_dir / "b.log").read_text()
    boom = (runner.log_dir / "boom.log").read_text()
    assert "RuntimeError: stand-in crashed" in boom  # the traceback lands in the task's log
    assert runner.state.tasks["boom"].state == FAILED and "exit code 1" in runner.state.tasks["boom"].message


def test_time_limit_plans_budgets_for_budgeted_tasks_only(tmp_path: Path) -> None:
    tasks = [
        {"key": "prepare", "stage": "prepare"},
        {"key": "base_a", "stage": "base", "deps": ["prepare"], "sleep": 0.5},
        {"key": "base_b", "stage": "base", "deps": ["prepare"], "sleep": 0.5},
        {"key": "base_c", "stage": "base", "deps": ["prepare"]},
        {"key": "vote", "stage": "vote_weight", "deps": ["base_a", "base_b", "base_c"]},
        {"key": "route", "stage": "route_cluster", "deps": ["base_a", "base_b", "base_c"]},
    ]
    _, events, ok = run(tmp_path / "plain", tasks, jobs=2, time_limit=40.0)
    assert ok
    budget = {e["task"]: e["budget"] for e in events if e["event"] == "start"}
    assert budget["prepare"] is None and budget["vote"] is None  # nothing to bound
    # the routing task's per-route fits are bounded too: it gets what is left but the vote's reserve
    assert budget["route"] is not None and 5.0 < float(budget["route"]) < 40.0
    first, last = float(budget["base_a"]), float(budget["base_c"])
    # 4 budgeted tasks on 2 slots: the first two share ~40 s less the reserve for the rest (their
    # overheads and the vote); the third starts later, when that reserve was learned to be smaller
    assert 5.0 < first < 40.0 / 2
    assert first < last < 40.0
    # --budget caps the plan
    _, events, ok = run(tmp_path / "capped", tasks, jobs=2, time_limit=40.0, budget=5.0)
    assert ok and {e["budget"] for e in events if e["event"] == "start"} == {"5"}


def test_resume_skips_tasks_that_succeeded(tmp_path: Path) -> None:
    state = RunState(workflow_id="123", job_name="wf", job_digest="x",
                     tasks={"a": TaskState(state=SKIPPED), "b": TaskState()})
    runner, events, ok = run(tmp_path, [{"key": "a"}, {"key": "b", "deps": ["a"]}], state=state)
    assert ok
    assert not times(events, "a", "start")
    assert times(events, "b", "start")


def test_reference_resolution_rejects_unknown_names() -> None:
    refs = {"job.run_id": "42", "job.parameters.catalog": "main"}
    assert resolve_references("{{job.run_id}}_{{ job.parameters.catalog }}", refs) == "42_main"
    with pytest.raises(RunError, match="job.naem"):
        resolve_references("{{job.naem}}", refs)


def test_downstream_of_follows_edges() -> None:
    def task(key: str, *deps: str) -> LocalTask:
        return LocalTask(key, deps, (), "cpu", 0, 0, 0, False)

    tasks = {t.key: t for t in [task("p"), task("a", "p"), task("b", "a"), task("c", "p")]}
    assert downstream_of(tasks, "a") == {"a", "b"}
    assert downstream_of(tasks, "p") == {"p", "a", "b", "c"}


def test_cancelled_is_terminal(tmp_path: Path) -> None:
    # A task cancelled by --only never blocks the scheduler's termination.
    state = RunState(workflow_id="123", job_name="wf", job_digest="x",
                     tasks={"a": TaskState(state=CANCELLED), "b": TaskState()})
    runner, _, ok = run(tmp_path, [{"key": "a"}, {"key": "b"}], state=state)
    assert runner.state.tasks["b"].state == SUCCEEDED
    assert not ok  # a cancelled task means the workflow as a whole did not complete


def test_notebook_shim_tasks_get_the_same_argv_as_wheel_tasks() -> None:
    from obsrv.compiler.api import compile_file

    examples = Path(__file__).resolve().parents[2] / "examples"
    wheel = compile_file(examples / "credit_routing_gpu.yaml", gpu_runner="wheel").job
    notebook = compile_file(examples / "credit_routing_gpu.yaml", gpu_runner="notebook").job
    shimmed = [t for t in notebook["tasks"] if "notebook_task" in t]
    assert shimmed, "the example has GPU tasks"
    by_key = {t["task_key"]: t for t in wheel["tasks"]}
    for task in shimmed:
        assert LocalTask.from_compiled(task).argv == LocalTask.from_compiled(by_key[task["task_key"]]).argv


CTRL_C_DRIVER = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from test_scheduler import launcher, make_job
from obsrv.service_tasks.local.scheduler import LocalRunner, RunState

tmp = Path(sys.argv[1])
grandchild = ["--grandchild", str(tmp / "orphan.marker")]
job = make_job(tmp / "journal.jsonl", [{"key": "a", "sleep": 120, "extra": grandchild},
                                        {"key": "b", "sleep": 120, "extra": grandchild},
                                        {"key": "c", "deps": ["a"]}])
state = RunState(workflow_id="1", job_name="wf", job_digest="x")
runner = LocalRunner(job, home=tmp / ".obsrv", workflow_id="1", state=state, budget_seconds=None, jobs=2,
                     launcher=launcher(sys.argv[2]))
print("ready", flush=True)
runner.run()
print(json.dumps({k: v.state for k, v in runner.state.tasks.items()}), flush=True)
"""


@pytest.mark.parametrize("kind", LAUNCHERS)
def test_ctrl_c_stops_running_tasks_and_cancels_the_rest(tmp_path: Path, kind: str) -> None:
    import signal
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", CTRL_C_DRIVER, str(tmp_path), kind, str(Path(__file__).parent)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    journal = tmp_path / "journal.jsonl"
    deadline = time.time() + 120  # a bound for a hang, not a timing assertion
    while time.time() < deadline and (not journal.exists() or journal.read_text().count('"grandchild"') < 2):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    # The tasks sleep 120 s: a runner that waited for them instead of stopping them would exceed this.
    out, _ = proc.communicate(timeout=100)
    states = json.loads(out.strip().splitlines()[-1])
    assert states == {"a": CANCELLED, "b": CANCELLED, "c": CANCELLED}
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    assert not [e for e in events if e["event"] == "end"]  # killed, never finished
    assert_tree_gone(events, tmp_path / "orphan.marker")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"only": "nope"}, "--only 'nope': no such task"),
        ({"from_task": "evaluate"}, "add --resume or --workflow-id"),
        ({"budget": 0}, "--budget must be a positive"),
        ({"time_limit": -5}, "--time-limit must be a positive"),
        ({"workflow_id": "bad-id!", "only": "prepare"}, "--workflow-id must be"),
        ({"resume": True}, "nothing to resume"),
    ],
)
def test_run_flags_are_checked_before_anything_runs(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    from obsrv.service_tasks.local.scheduler import run_workflow

    seed = Path(__file__).resolve().parents[2] / "examples" / "credit_risk.yaml"
    with pytest.raises(RunError, match=re.escape(message)):
        run_workflow(str(seed), workdir=str(tmp_path), live=False, **kwargs)
    assert not list((tmp_path / ".obsrv" / "runs").glob("*/state.json"))  # nothing ran


def test_warm_launcher_does_not_rerun_the_callers_main_script(tmp_path: Path) -> None:
    # multiprocessing would re-run an unguarded __main__ (here: a script read from stdin, which it
    # cannot even find) in every task process; the warm launcher hands it a bare module instead.
    import subprocess

    script = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_scheduler import launcher
journal = Path({str(tmp_path)!r}) / "journal.jsonl"
process = launcher("warm").start(["--task-id", "t", "--journal", str(journal), "--sleep", "0"], {{}},
                                 Path({str(tmp_path)!r}) / "t.log")
print("exit", process.wait(60))
"""
    res = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120)
    assert res.stdout.strip().splitlines()[-1] == "exit 0", res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert "says hello" in (tmp_path / "t.log").read_text()


@pytest.mark.parametrize("kind", LAUNCHERS)
def test_an_entry_point_that_raises_system_exit_fails_with_its_code(tmp_path: Path, kind: str) -> None:
    # The entry point may end with `raise SystemExit(code)` instead of returning the code: both
    # launchers must report that code, not a crash.
    runner, _, ok = run(tmp_path, [{"key": "quits", "behaviour": "exit", "sleep": 0}], kind=kind)
    assert not ok
    assert runner.state.tasks["quits"].state == FAILED
    assert runner.state.tasks["quits"].message.startswith("exit code 5")
