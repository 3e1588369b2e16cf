"""`obsrv run`: execute a compiled bundle job on this machine, the way Databricks Workflows would.

The runner never calls stage functions directly. It compiles the spec with the real compiler, then
walks the emitted `resources.jobs.<key>` mapping: for each task it resolves the dynamic value
references (`{{job.run_id}}`, `{{job.parameters.*}}`) and starts the `obsrv-task` console-script
entry point with the compiled parameters, in its own process. So a green local run exercises the
exact argv, dependencies, timeouts and retries that the bundle ships.

State lives in `$OBSRV_HOME/runs/<workflow id>/`: `job.yml` (what ran), `state.json` (task states,
for resume) and `logs/<task>.log`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import graphlib
import hashlib
import json
import math
import os
import re
import shlex
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import yaml

from obsrv.service_tasks.errors import EXIT_FINAL
from obsrv.service_tasks.local.launchers import Launcher, TaskProcess, kill_tree, kill_trees, make_launcher
from obsrv.service_tasks.local.budget_plan import BUDGETED_STAGES, TimePlan
from obsrv.service_tasks.local.workdir import (
    JobLock,
    allocate_workflow_id,
    describe_holder,
    ensure_writable,
    init_store,
    job_lock,
    local_store_uri,
    store_lock,
    store_needs_init,
)

_REFERENCE = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")

# Terminal states; everything else is pending or running.
SUCCEEDED, FAILED, SKIPPED, UPSTREAM_FAILED, CANCELLED, TIMED_OUT = (
    "succeeded",
    "failed",
    "skipped",
    "upstream_failed",
    "cancelled",
    "timed_out",
)
PENDING, RUNNING, RETRY_WAIT = "pending", "running", "retry_wait"
DONE_STATES = {SUCCEEDED, SKIPPED}
TERMINAL_STATES = {SUCCEEDED, FAILED, SKIPPED, UPSTREAM_FAILED, CANCELLED, TIMED_OUT}
# Signals that stop a run cleanly (tasks stopped, state saved, exit 128 + the signal's number):
# Ctrl-C, `kill` and a closed terminal. SIGKILL cannot be caught: see `lifeline`.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


ALL_DONE = "ALL_DONE"
RUN_IF_SUPPORTED = ("ALL_SUCCESS", ALL_DONE)


def _supported_run_if(task: dict[str, Any]) -> str:
    run_if = str(task.get("run_if") or "ALL_SUCCESS")
    if run_if not in RUN_IF_SUPPORTED:
        raise RunError(f"task {task['task_key']!r}: run_if {run_if} is not supported by the local runner "
                       f"(supported: {', '.join(RUN_IF_SUPPORTED)})")
    return run_if


class RunError(Exception):
    """A problem the user can fix (bad flags, unknown task id, missing state); no traceback."""


@dataclass(frozen=True)
class LocalTask:
    """One task of the compiled job, as the runner needs it."""

    key: str
    depends_on: tuple[str, ...]
    argv: tuple[str, ...]  # parameters with dynamic references still in place
    environment: str
    timeout_seconds: int
    max_retries: int
    min_retry_interval_millis: int
    retry_on_timeout: bool
    # Databricks' `run_if`: ALL_SUCCESS (the default) or ALL_DONE (the cleanup task), the two the
    # compiler emits; ALL_DONE starts once every dependency ended, whatever its outcome.
    run_if: str = "ALL_SUCCESS"

    @property
    def stage(self) -> str:
        """The `--stage` the task runs (prepare, base, evaluate or a task type)."""
        argv = list(self.argv)
        return argv[argv.index("--stage") + 1] if "--stage" in argv[:-1] else ""

    @classmethod
    def from_compiled(cls, task: dict[str, Any]) -> "LocalTask":
        if "python_wheel_task" in task:
            argv = task["python_wheel_task"].get("parameters", [])
        elif "notebook_task" in task:
            # `--gpu-runner notebook`: the shim rebuilds the wheel argv from base_parameters in
            # this order, so the local run does the same.
            from obsrv.compiler.emit import ARGV_FLAGS, SHIM_PARAMETERS

            params = task["notebook_task"].get("base_parameters", {})
            argv = [part for name, flag in zip(SHIM_PARAMETERS, ARGV_FLAGS) for part in (flag, params[name])]
        else:
            raise RunError(f"task {task['task_key']!r}: the local runner supports wheel and notebook tasks only")
        return cls(
            key=task["task_key"],
            depends_on=tuple(dep["task_key"] for dep in task.get("depends_on", [])),
            argv=tuple(str(a) for a in argv),
            environment=str(task.get("environment_key", "cpu")),
            timeout_seconds=int(task.get("timeout_seconds", 0) or 0),
            max_retries=int(task.get("max_retries", 0) or 0),
            min_retry_interval_millis=int(task.get("min_retry_interval_millis", 0) or 0),
            retry_on_timeout=bool(task.get("retry_on_timeout", False)),
            run_if=_supported_run_if(task),
        )


@dataclass
class TaskState:
    state: str = PENDING
    attempts: int = 0
    seconds: float = 0.0
    started: float | None = None
    message: str = ""
    pid: int | None = None  # of the task process (its process group), while running


@dataclass
class RunState:
    """Persisted progress of one workflow id; resume skips tasks that succeeded."""

    workflow_id: str
    job_name: str
    job_digest: str
    tasks: dict[str, TaskState] = field(default_factory=dict)
    runner_pid: int | None = None  # the runner that last saved it

    def save(self, path: Path) -> None:
        payload = {
            "workflow_id": self.workflow_id,
            "job_name": self.job_name,
            "job_digest": self.job_digest,
            "runner_pid": os.getpid(),
            "tasks": {k: asdict(v) for k, v in self.tasks.items()},
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
        os.replace(tmp, path)  # a crash mid-write never corrupts the resume state

    @classmethod
    def load(cls, path: Path) -> "RunState":
        data = json.loads(path.read_text())
        return cls(
            workflow_id=data["workflow_id"],
            job_name=data["job_name"],
            job_digest=data["job_digest"],
            tasks={k: TaskState(**v) for k, v in data["tasks"].items()},
            runner_pid=data.get("runner_pid"),
        )


def resolve_references(value: str, references: dict[str, str]) -> str:
    """Substitute `{{name}}` dynamic value references; unknown names are an error, as on Databricks."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in references:
            raise RunError(f"unknown dynamic value reference {{{{{name}}}}} in a compiled parameter")
        return references[name]

    return _REFERENCE.sub(substitute, value)


def job_references(job: dict[str, Any], workflow_id: str) -> dict[str, str]:
    refs = {"job.run_id": workflow_id, "job.name": str(job.get("name", ""))}
    for param in job.get("parameters", []):
        refs[f"job.parameters.{param['name']}"] = str(param["default"])
    return refs


def new_workflow_id(runs_dir: Path) -> str:
    """A numeric id, like Databricks' job.run_id, unique within this OBSRV_HOME (its run folder is
    created as the allocation: `workdir.allocate_workflow_id`)."""
    return allocate_workflow_id(runs_dir)


def latest_workflow_id(runs_dir: Path, job_name: str) -> str:
    candidates = []
    for state_file in runs_dir.glob("*/state.json"):
        with contextlib.suppress(Exception):
            if json.loads(state_file.read_text())["job_name"] == job_name:
                candidates.append((state_file.stat().st_mtime, state_file.parent.name))
    if not candidates:
        raise RunError(f"nothing to resume: no earlier run of {job_name!r} under {runs_dir}")
    return max(candidates)[1]


def downstream_of(tasks: dict[str, LocalTask], start: str) -> set[str]:
    children: dict[str, set[str]] = {k: set() for k in tasks}
    for task in tasks.values():
        for dep in task.depends_on:
            children[dep].add(task.key)
    seen, stack = {start}, [start]
    while stack:
        for child in children[stack.pop()]:
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


@dataclass
class _Running:
    process: TaskProcess
    deadline: float | None
    budget: float | None  # the budget it was given (search, or bounded fits)


class LocalRunner:
    """Schedules the compiled tasks as processes, in dependency order, at most `jobs` at once."""

    def __init__(
        self,
        job: dict[str, Any],
        *,
        home: Path,
        workflow_id: str,
        state: RunState,
        budget_seconds: float | None,
        jobs: int,
        on_change: Callable[[], None] = lambda: None,
        command: list[str] | None = None,
        launcher: Launcher | None = None,
        time_limit: float | None = None,
        started_at: float | None = None,
    ) -> None:
        self.job = job
        self.home = home
        self.workflow_id = workflow_id
        self.state = state
        self.budget_seconds = budget_seconds
        self.jobs = max(1, jobs)
        self.on_change = on_change
        self.tasks = {t["task_key"]: LocalTask.from_compiled(t) for t in job["tasks"]}
        # Also rejects cycles, which the compiler already did.
        sorter = graphlib.TopologicalSorter({k: set(t.depends_on) for k, t in self.tasks.items()})
        self._topological_order = tuple(sorter.static_order())
        self.run_dir = home / "runs" / workflow_id
        self.log_dir = self.run_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.references = job_references(job, workflow_id)
        # Tests swap in a stand-in task program (`command`, cold) or target (`launcher`); real
        # runs use the installed entry point, forked warm unless --cold.
        self.launcher = launcher or make_launcher(cold=False, command=command)
        self._running: dict[str, _Running] = {}
        self._retry_at: dict[str, float] = {}
        self.time_plan = TimePlan(time_limit, self.jobs) if time_limit is not None else None
        # --time-limit counts from here, or from `started_at` (run_workflow: before compiling).
        self._started_at = time.monotonic() if started_at is None else started_at
        self._stop = False
        self.stop_signal: int | None = None  # the signal that stopped the run
        for key in self.tasks:
            self.state.tasks.setdefault(key, TaskState())

    # -------------------------------------------------------------------------------- scheduling

    def run(self) -> bool:
        """Run until every task is terminal; returns True when all succeeded."""
        order = list(self._topological_order)
        # Among ready tasks, budgeted ones first: they are the longest, and a late one (boost
        # after seven quick stacks) would hold up evaluate at the end of the run.
        order.sort(key=lambda k: self.tasks[k].stage not in BUDGETED_STAGES)
        previous = self._install_stop_handlers()
        try:
            while not self._all_terminal():
                if self._stop:
                    self._cancel_all()
                    break
                self._reap()
                self._propagate_failures()
                for key in order:
                    if len(self._running) >= self.jobs:
                        break
                    if self._ready(key):
                        self._start(key)
                self.on_change()
                time.sleep(0.1)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._save()
        return all(self.state.tasks[k].state in DONE_STATES for k in self.tasks)

    def _install_stop_handlers(self) -> dict[int, Any]:
        """SIGINT, SIGTERM and SIGHUP all stop the run cleanly; returns the handlers to restore.
        (Signal handlers can only be set in the main thread, which is also the thread the tasks'
        parent-death signals are tied to: see `lifeline`.) A signal that was ignored when the run
        started stays ignored: `nohup obsrv run` must survive its terminal closing."""
        return {signum: signal.signal(signum, self._interrupt) for signum in STOP_SIGNALS
                if signal.getsignal(signum) is not signal.SIG_IGN}

    def _interrupt(self, signum: int, frame: Any) -> None:
        self._stop = True
        if self.stop_signal is None:
            self.stop_signal = signum

    @property
    def stopped(self) -> bool:
        """A stop signal (Ctrl-C, SIGTERM, SIGHUP) ended the run."""
        return self._stop

    @property
    def stop_reason(self) -> str:
        if self.stop_signal in (None, signal.SIGINT):
            return "Ctrl-C"
        return signal.Signals(self.stop_signal).name

    @property
    def stop_exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + int(self.stop_signal or signal.SIGINT)

    def _all_terminal(self) -> bool:
        return not self._running and all(s.state in TERMINAL_STATES for s in self.state.tasks.values())

    def _ready(self, key: str) -> bool:
        task_state = self.state.tasks[key]
        if task_state.state == RETRY_WAIT:
            return time.monotonic() >= self._retry_at.get(key, 0.0)
        if task_state.state != PENDING:
            return False
        wanted = TERMINAL_STATES if self.tasks[key].run_if == ALL_DONE else DONE_STATES
        return all(self.state.tasks[d].state in wanted for d in self.tasks[key].depends_on)

    def _propagate_failures(self) -> None:
        # Databricks' default run_if (ALL_SUCCESS): a task whose upstream failed never starts.
        changed = True
        while changed:
            changed = False
            for key, task in self.tasks.items():
                if self.state.tasks[key].state != PENDING or task.run_if == ALL_DONE:
                    continue
                bad = [d for d in task.depends_on if self.state.tasks[d].state in TERMINAL_STATES - DONE_STATES]
                if bad:
                    self.state.tasks[key].state = UPSTREAM_FAILED
                    self.state.tasks[key].message = f"upstream {bad[0]} did not succeed"
                    changed = True

    # ------------------------------------------------------------------------------- processes

    def _start(self, key: str) -> None:
        task = self.tasks[key]
        task_state = self.state.tasks[key]
        task_state.attempts += 1
        task_state.state = RUNNING
        task_state.started = time.time()
        argv = [resolve_references(a, self.references) for a in task.argv]
        env = dict(os.environ)
        env["OBSRV_HOME"] = str(self.home)
        env["OBSRV_COMPUTE"] = "gpu" if task.environment == "gpu" else "cpu"
        env["PYTHONUNBUFFERED"] = "1"
        budget = self._task_budget(key)
        if budget is not None:
            env["OBSRV_TASK_BUDGET_SECONDS"] = f"{budget:g}"
        # Parallel tasks share the cores: give each its slice so that the libraries' thread pools
        # (OpenMP in lightgbm/xgboost/hist_gbm, joblib in sklearn) do not oversubscribe them.
        threads = str(max(1, (os.cpu_count() or 1) // self.jobs))
        env.setdefault("OBSRV_THREADS", threads)
        env.setdefault("OMP_NUM_THREADS", threads)
        log_path = self.log_dir / f"{key}.log"
        with open(log_path, "ab") as log:
            log.write(f"\n=== {key} attempt {task_state.attempts} ===\n".encode())
        try:
            process = self.launcher.start(argv, env, log_path)
        except Exception as exc:  # noqa: BLE001 - a task that cannot start fails like one that crashed
            with open(log_path, "a") as log:
                log.write(f"could not start the task process: {type(exc).__name__}: {exc}\n")
            task_state.state = FAILED
            task_state.message = f"could not start: {exc}"
            self._save()
            return
        deadline = time.monotonic() + task.timeout_seconds if task.timeout_seconds > 0 else None
        self._running[key] = _Running(process, deadline, budget)
        task_state.pid = process.pid
        self._save()

    def _longest_chain_s(self, keys: set[str], plan: TimePlan) -> float:
        """Expected seconds of the longest dependency path through `keys`."""
        done: dict[str, float] = {}
        for key in self._topological_order:
            before = max((done[d] for d in self.tasks[key].depends_on), default=0.0)
            done[key] = before + (plan.expected(self.tasks[key].stage) if key in keys else 0.0)
        return max(done.values(), default=0.0)

    def _task_budget(self, key: str) -> float | None:
        """OBSRV_TASK_BUDGET_SECONDS for a task starting now: --budget, capped by --time-limit's plan."""
        plan = self.time_plan
        if plan is None or self.tasks[key].stage not in BUDGETED_STAGES:
            return self.budget_seconds
        waiting = [k for k, s in self.state.tasks.items() if s.state in (PENDING, RETRY_WAIT) or k == key]
        budgeted = [self.tasks[k].stage for k in waiting if self.tasks[k].stage in BUDGETED_STAGES]
        other_keys = {k for k in waiting if self.tasks[k].stage not in BUDGETED_STAGES | {"prepare"}}
        planned = plan.budget(time.monotonic() - self._started_at, budgeted,
                              [self.tasks[k].stage for k in other_keys], self._longest_chain_s(other_keys, plan))
        return planned if self.budget_seconds is None else min(planned, self.budget_seconds)

    def _reap(self) -> None:
        now = time.monotonic()
        for key, running in list(self._running.items()):
            code = running.process.poll()
            timed_out = code is None and running.deadline is not None and now > running.deadline
            if code is None and not timed_out:
                continue
            if timed_out:
                kill_tree(running.process)
            del self._running[key]
            task, task_state = self.tasks[key], self.state.tasks[key]
            task_state.pid = None
            wall = time.time() - (task_state.started or time.time())
            task_state.seconds += wall
            if self.time_plan is not None and code == 0:
                self.time_plan.record(task.stage, wall, running.budget)
            if code == 0 and not timed_out:
                task_state.state, task_state.message = SUCCEEDED, ""
            else:
                final = code == EXIT_FINAL  # the task said retrying cannot fix it
                retryable = (not final and task_state.attempts <= task.max_retries
                             and (not timed_out or task.retry_on_timeout))
                outcome = f"timed out after {task.timeout_seconds}s" if timed_out else f"exit code {code}"
                if final:
                    outcome += " (final: an error retrying cannot fix, not retried)"
                if retryable:
                    task_state.state = RETRY_WAIT
                    task_state.message = f"{outcome}; retrying"
                    self._retry_at[key] = now + task.min_retry_interval_millis / 1000.0
                else:
                    task_state.state = TIMED_OUT if timed_out else FAILED
                    task_state.message = f"{outcome}; see {self.log_dir / (key + '.log')}"
            self._save()

    def _cancel_all(self) -> None:
        # All groups at once: a second task does not wait for the first one's grace period.
        kill_trees([running.process for running in self._running.values()])
        for key in self._running:
            self.state.tasks[key].state = CANCELLED
            self.state.tasks[key].message = f"stopped by {self.stop_reason}"
            self.state.tasks[key].pid = None
        self._running.clear()
        for task_state in self.state.tasks.values():
            if task_state.state in (PENDING, RETRY_WAIT):
                task_state.state = CANCELLED
                task_state.message = "not started: run stopped"

    def _save(self) -> None:
        self.state.save(self.run_dir / "state.json")


def log_tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def job_digest(job: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _display(runner: "LocalRunner", live: bool) -> Iterator[None]:
    """A rich live table on a terminal; plain state-change lines otherwise (CI logs)."""
    if live:
        from rich.live import Live

        with Live(render_table(runner), refresh_per_second=4, transient=False) as view:
            runner.on_change = lambda: view.update(render_table(runner))
            yield
            view.update(render_table(runner))
    else:
        seen: dict[str, str] = {}

        def print_changes() -> None:
            for key, task_state in runner.state.tasks.items():
                if seen.get(key) != task_state.state:
                    seen[key] = task_state.state
                    extra = f" ({task_state.message})" if task_state.message else ""
                    timing = f" {task_state.seconds:.1f}s" if task_state.state in TERMINAL_STATES else ""
                    print(f"[obsrv] {key:<24} {task_state.state}{timing}{extra}", flush=True)

        runner.on_change = print_changes
        yield
        print_changes()


_STYLE = {
    SUCCEEDED: "green",
    SKIPPED: "dim green",
    RUNNING: "bold cyan",
    RETRY_WAIT: "yellow",
    FAILED: "bold red",
    TIMED_OUT: "bold red",
    UPSTREAM_FAILED: "red",
    CANCELLED: "yellow",
    PENDING: "dim",
}


def render_table(runner: "LocalRunner") -> Any:
    from rich.table import Table

    table = Table(title=f"obsrv run {runner.workflow_id}", title_justify="left")
    for column in ("task", "state", "attempt", "time", "note"):
        table.add_column(column)
    now = time.time()
    for key in runner.tasks:
        task_state = runner.state.tasks[key]
        seconds = task_state.seconds + (now - task_state.started if task_state.state == RUNNING and task_state.started else 0)
        style = _STYLE.get(task_state.state, "")
        table.add_row(
            key,
            f"[{style}]{task_state.state}[/]",
            str(task_state.attempts or ""),
            f"{seconds:.1f}s" if seconds else "",
            task_state.message[:60],
        )
    return table


def run_workflow(
    spec_path: str,
    *,
    workdir: str = ".",
    budget: float | None = None,
    only: str | None = None,
    from_task: str | None = None,
    workflow_id: str | None = None,
    resume: bool = False,
    jobs: int | None = None,
    live: bool | None = None,
    cold: bool = False,
    launcher: Launcher | None = None,
    time_limit: float | None = None,
    wait: bool | None = None,
    score: bool = False,
    score_tables: Sequence[str] = (),
) -> int:
    """Compile `spec_path` and run it locally; returns the process exit code.

    `score` runs the spec's scoring job `<name>_score` instead of the training job (`obsrv score`);
    `score_tables` replace its `input` parameter, as "Run now with different parameters" does.

    `cold` starts each task in a fresh interpreter; `launcher` (benchmarks, tests) replaces both.
    `wait`: when another run of the same job holds this workdir, queue behind it (True) or refuse
    (False); None follows the compiled job's `queue.enabled`, as Databricks does.
    """
    from obsrv.compiler.api import compile_file

    clock = time.monotonic()
    check_run_numbers(budget=budget, time_limit=time_limit, jobs=jobs)
    compiled = compile_file(spec_path, score_input=list(score_tables) or None)
    home = (Path(workdir) / ".obsrv").resolve()
    if score:
        compiled = scoring_job(compiled, score_tables, home, spec_path)
    job = compiled.job
    runs_dir = home / "runs"
    ensure_writable(runs_dir)

    job_name = str(job["name"])
    keys = [t["task_key"] for t in job["tasks"]]
    for name, flag in ((only, "--only"), (from_task, "--from")):
        if name is not None and name not in keys:
            raise RunError(f"{flag} {name!r}: no such task; tasks are {', '.join(keys)}")
    if workflow_id is not None and not re.fullmatch(r"[A-Za-z0-9_]{1,40}", workflow_id):
        raise RunError("--workflow-id must be 1-40 letters, digits or underscores (it is part of table names)")
    if wait is None:
        wait = bool(job.get("queue", {}).get("enabled", False))

    def queued(holder: dict[str, Any]) -> None:
        print(f"[obsrv] job {job_name!r} is already running in this workdir: {describe_holder(holder)}; "
              "waiting for it to end (as Databricks queues a run of a job with max_concurrent_runs: 1). "
              "Ctrl-C to give up, --no-wait to refuse instead", file=sys.stderr, flush=True)

    with job_lock(home, job_name, wait=wait, on_wait=queued) as lock:
        return _run_locked(
            spec_path, compiled, home, lock, workdir=workdir, budget=budget, only=only, from_task=from_task,
            workflow_id=workflow_id, resume=resume, jobs=jobs, live=live, cold=cold, launcher=launcher,
            time_limit=time_limit, clock=clock,
        )


def scoring_job(compiled: Any, tables: Sequence[str], home: Path, spec_path: str) -> Any:
    """The compiled scoring job of `compiled`, its `input` parameter set to `tables` when given.

    Refused before anything runs when the spec has no `score` block (and no tables were given), or
    when the local registry has no champion of the job yet."""
    if compiled.score_job_key is None or compiled.score_job is None:
        raise RunError(
            f"{spec_path} has no `score` block: add one (`score: {{input: catalog.schema.table}}`) or name the "
            "table to score with --table catalog.schema.table"
        )
    require_local_champion(home, compiled.job_key, spec_path)
    result = compiled.for_job(compiled.score_job_key)
    if tables:
        job = dict(result.job)
        job["parameters"] = [
            {**p, "default": ",".join(tables)} if p["name"] == "input" else p for p in job["parameters"]
        ]
        result = dataclasses.replace(result, job=job, score_job=job)
    return result


def print_scored(compiled: Any, home: Path, wall: float, log: Path) -> None:
    """Where `obsrv score` wrote: the scored table (and the monitor's baseline) in the warehouse."""
    task = json.loads(compiled.files[f"{compiled.job_key}.plan.json"])["tasks"]["score"]["task"]
    catalog, schema = compiled.output
    folder = home / "warehouse" / catalog / schema
    print(f"[obsrv] scored in {wall:.1f}s -> {catalog}.{schema}.{task['output_table']} ({folder / task['output_table']})")
    if task["score"].get("monitor"):
        print(f"[obsrv] monitor baseline -> {catalog}.{schema}.{task['baseline_table']}; prediction shares in MLflow")
    print(f"[obsrv] log {log}")


def require_local_champion(home: Path, model: str, spec_path: str) -> None:
    """RunError unless the local registry has `model@champion` (evaluate of `obsrv run` sets it)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or local_store_uri(home)
    advice = f"train one first: obsrv run {shlex.quote(spec_path)}"
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise RunError(f"no local champion to score with ({uri} does not exist yet); {advice}")
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from obsrv.service_tasks.tracking import quiet

    quiet()
    try:
        MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias(model, "champion")
    except MlflowException:
        raise RunError(f"the local registry ({uri}) has no {model}@champion yet; {advice}") from None


def check_run_numbers(*, budget: float | None, time_limit: float | None, jobs: int | None) -> None:
    """The numeric flags of `obsrv run`, for callers of `run_workflow` other than the CLI (which
    checks them while parsing: `cli_commands`). NaN compares false with everything, so a plain
    `<= 0` check would let it through."""
    for value, flag in ((budget, "--budget"), (time_limit, "--time-limit")):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise RunError(f"{flag} must be a positive number of seconds, not {value!r}")
    if jobs is not None and jobs < 1:
        raise RunError(f"--jobs must be a whole number of at least 1, not {jobs!r}")


def resume_command(
    spec_path: str, workflow_id: str, *, workdir: str, budget: float | None, time_limit: float | None,
    jobs: int | None, cold: bool, only: str | None,
) -> str:
    """The command that continues this very run with the same options (printed on stop/failure)."""
    parts = ["obsrv", "run", spec_path]
    if workdir != ".":
        parts += ["--workdir", workdir]
    parts += ["--workflow-id", workflow_id]
    if only:
        parts += ["--only", only]
    for flag, value in (("--budget", budget), ("--time-limit", time_limit), ("--jobs", jobs)):
        if value is not None:
            # 15 significant digits: the value as typed (`:g` would round 1234567 to 1.23457e+06)
            parts += [flag, f"{value:.15g}" if isinstance(value, float) else str(value)]
    if cold:
        parts.append("--cold")
    return shlex.join(parts)


def recover_abandoned(state: RunState, home: Path) -> list[str]:
    """Tasks a dead runner left `running` (or waiting to retry): they are re-run, not trusted.

    The caller holds the job lock, so the runner that saved them is gone; its tasks died with it
    (`lifeline`). A process group still alive under a recorded pid that is an obsrv task of this
    workdir (a runner from before the lifelines, or a platform without them) is stopped first, so
    that two copies of a task never publish at once. (A warm task's /proc environment is the
    forkserver's, so it is never matched: left alone rather than guessed at.)
    """
    lines = []
    for key, task_state in state.tasks.items():
        if task_state.state not in (RUNNING, RETRY_WAIT):
            continue
        if task_state.pid and _is_task_of(task_state.pid, home):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(task_state.pid, signal.SIGKILL)
            lines.append(f"task {key}: stopped its process group {task_state.pid}, left by the runner that died")
        lines.append(f"task {key} was left {task_state.state} by a runner that is gone "
                     f"(pid {state.runner_pid or '?'}); re-running it")
    return lines


def _is_task_of(pid: int, home: Path) -> bool:
    """Whether `pid` leads a live process group whose environment says OBSRV_HOME=home (Linux /proc;
    elsewhere False: never signal a process that cannot be identified)."""
    try:
        os.killpg(pid, 0)
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"OBSRV_HOME={home}".encode() in environ


def _run_locked(
    spec_path: str, compiled: Any, home: Path, lock: JobLock, *, workdir: str, budget: float | None,
    only: str | None, from_task: str | None, workflow_id: str | None, resume: bool, jobs: int | None,
    live: bool | None, cold: bool, launcher: Launcher | None, time_limit: float | None, clock: float,
) -> int:
    """`run_workflow` once this process holds the job's lock."""
    job = compiled.job
    runs_dir = home / "runs"
    job_name = str(job["name"])
    keys = [t["task_key"] for t in job["tasks"]]
    if resume and workflow_id is None:
        workflow_id = latest_workflow_id(runs_dir, job_name)
    continuing = workflow_id is not None and (runs_dir / workflow_id / "state.json").exists()
    if (only or from_task) and not continuing:
        raise RunError("--only and --from re-run tasks of an earlier run: add --resume or --workflow-id ID")
    workflow_id = workflow_id or new_workflow_id(runs_dir)
    lock.record(workflow_id)
    run_dir = runs_dir / workflow_id
    run_dir.mkdir(parents=True, exist_ok=True)

    digest = job_digest(job)
    if continuing:
        state = RunState.load(run_dir / "state.json")
        if state.job_digest != digest:
            raise RunError(
                f"the spec changed since workflow {workflow_id} ran; start a new run (drop --resume/--workflow-id)"
            )
        for line in recover_abandoned(state, home):
            print(f"[obsrv] {line}", file=sys.stderr, flush=True)
    else:
        state = RunState(workflow_id=workflow_id, job_name=job_name, job_digest=digest)
    # Keep exactly what ran (the job file; a notebook shim, if any, is not needed locally).
    job_file = next(text for name, text in compiled.files.items() if name.endswith(".job.yml"))
    (run_dir / "job.yml").write_text(job_file)
    # What `bundle deploy` would do: resolve `${...}` and sync the plan file (service_tasks/local/bundle_values.py).
    from obsrv.service_tasks.local.bundle_values import deploy_job

    try:
        job = deploy_job(compiled.bundle, compiled.job_key, compiled.files, run_dir)
    except ValueError as error:
        raise RunError(f"cannot deploy the compiled job locally: {error}") from error
    tasks = {t["task_key"]: LocalTask.from_compiled(t) for t in job["tasks"]}
    rerun: set[str] = set()
    if only:
        rerun = {only}
    elif from_task:
        rerun = downstream_of(tasks, from_task)
    for key in keys:
        previous = state.tasks.get(key)
        if key in rerun or previous is None or previous.state not in DONE_STATES:
            state.tasks[key] = TaskState()
        else:
            state.tasks[key] = TaskState(state=SKIPPED, attempts=previous.attempts, seconds=0.0, message="done earlier")
    if only:
        for key in keys:
            if key != only and state.tasks[key].state == PENDING:
                state.tasks[key] = TaskState(state=CANCELLED, message="not selected by --only")
        missing = [d for d in tasks[only].depends_on if state.tasks[d].state not in DONE_STATES]
        if missing:
            raise RunError(f"--only {only}: its upstream {', '.join(missing)} has not succeeded in workflow {workflow_id}")

    launcher = launcher or make_launcher(cold=cold)
    initialise_store(home, launcher, run_dir / "logs")
    runner = LocalRunner(
        job,
        home=home,
        workflow_id=workflow_id,
        state=state,
        budget_seconds=budget,
        jobs=jobs or os.cpu_count() or 1,
        launcher=launcher,
        time_limit=time_limit,
        started_at=clock,
    )
    start = "warm start" if runner.launcher.name == "warm" else "a fresh interpreter per task"
    print(f"[obsrv] workflow {workflow_id}: {len(keys)} tasks ({start}), state in {run_dir}", flush=True)
    started = time.time()
    use_live = sys.stdout.isatty() if live is None else live
    with _display(runner, use_live):
        ok = runner.run()
    if only:
        # The other tasks were deliberately left alone; success means the selected one succeeded.
        ok = state.tasks[only].state == SUCCEEDED
    wall = time.time() - started
    again = resume_command(spec_path, workflow_id, workdir=workdir, budget=budget, time_limit=time_limit,
                           jobs=jobs, cold=cold, only=only)
    if compiled.job_key == compiled.score_job_key:  # a scoring run is never resumed: it scores again
        again = shlex.join(["obsrv", "score", spec_path, *(["--workdir", workdir] if workdir != "." else [])])

    if runner.stopped:
        print(f"[obsrv] stopped by {runner.stop_reason}. Resume with: {again}", file=sys.stderr)
        return runner.stop_exit_code
    if not ok:
        for key in keys:
            task_state = state.tasks[key]
            if task_state.state in (FAILED, TIMED_OUT):
                print(f"\n[obsrv] task {key} {task_state.state}: {task_state.message}", file=sys.stderr)
                print(log_tail(runner.log_dir / f"{key}.log"), file=sys.stderr)
        print(f"\n[obsrv] run {workflow_id} failed after {wall:.1f}s. Fix the cause, then: {again}",
              file=sys.stderr)
        return 1
    if compiled.job_key == compiled.score_job_key:
        print_scored(compiled, home, wall, runner.log_dir / "score.log")
    elif not only:
        print_summary(job, home, workflow_id, wall)
    else:
        print(f"[obsrv] task {only} done in {wall:.1f}s")
    return 0


def initialise_store(home: Path, launcher: Launcher, log_dir: Path) -> None:
    """Create the sqlite MLflow schema before any task can race to (see `workdir`). It runs in a
    task process of `launcher`, where the warm server has MLflow imported already; a launcher
    without `start_function` (a test's own) gets it done in this process."""
    uri = local_store_uri(home)
    if not store_needs_init(uri):
        return
    artifacts = (home / "mlartifacts").resolve().as_uri()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "_mlflow_store.log"
    with store_lock(home):
        if not store_needs_init(uri):  # another job's run created it while this one waited
            return
        start_function = getattr(launcher, "start_function", None)
        if start_function is None:
            init_store([uri, artifacts])
            return
        env = dict(os.environ, OBSRV_HOME=str(home))
        code = start_function("obsrv.service_tasks.local.workdir:init_store", [uri, artifacts], env, log_path).wait()
    if code != 0:
        raise RunError(f"could not create the MLflow store {uri} (exit code {code}):\n{log_tail(log_path)}")


def print_summary(job: dict[str, Any], home: Path, workflow_id: str, wall: float) -> None:
    """Print the final leaderboard and where everything was written."""
    from rich.console import Console
    from rich.table import Table

    from obsrv.service_tasks.local.run_summary import leaderboard_frame

    # Off a terminal (CI logs, pipes) rich assumes 80 columns and would crop the model names.
    console = Console() if sys.stdout.isatty() else Console(width=140)
    board = leaderboard_frame(job, home, workflow_id)
    if board is not None:
        metrics = [c for c in board.columns if c not in ("task_id", "kind", "model", "is_champion", "scored_on")]
        ranked_by = next((f"out-of-fold {c[4:]}" for c in metrics if c.startswith("oof_")), "out-of-fold score")
        # boards written before `scored_on` existed always scored the holdout
        scored = "out-of-fold scores (no holdout)" if ("scored_on" in board.columns and not board.empty
                                                     and board["scored_on"].iloc[0] == "oof") else "holdout scores"
        table = Table(
            title=f"leaderboard, workflow {workflow_id}: {scored}, ranked by {ranked_by} (champion ★)",
            title_justify="left",
        )
        table.add_column("model")
        table.add_column("kind")
        for metric in metrics:
            table.add_column(metric, justify="right")
        table.add_column("champion")
        for _, row in board.iterrows():
            table.add_row(
                str(row["model"]),
                str(row["kind"]),
                *[f"{row[m]:.4f}" for m in metrics],
                "★" if bool(row["is_champion"]) else "",
            )
        console.print(table)
    console.print(f"[bold]done[/] in {wall:.1f}s")
    console.print(f"  tables   {home / 'warehouse'}")
    tracking = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
    console.print(f"  mlflow   {tracking}  (mlflow ui --backend-store-uri {tracking})")
    report = home / "runs" / workflow_id / "report.html"
    if report.exists():
        console.print(f"  report   {report}")
    console.print(f"  logs     {home / 'runs' / workflow_id / 'logs'}")


def load_compiled_job(path: Path) -> dict[str, Any]:
    """The single job of an emitted `<name>.job.yml` (used by tests and tools)."""
    document = yaml.safe_load(path.read_text())
    jobs = document["resources"]["jobs"]
    return next(iter(jobs.values()))
