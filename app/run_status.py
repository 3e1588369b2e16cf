"""One run's status, from the local runner or from the Jobs API: what `obsrv status` prints and
the app's Watch page draws (one function for both).

Five states, the issue's: pending, running, succeeded, failed, skipped. The sources have more, and
the original is kept in `TaskStatus.detail` (e.g. `upstream_failed`, `TIMEDOUT`), so nothing is lost
by the mapping.

Local source: `$OBSRV_HOME/runs/<workflow id>/state.json`, which the runner rewrites atomically
(write to a temporary file, then `os.replace`: service_tasks/local/scheduler.py `RunState.save`) at
every state change, and `job.yml` beside it (what ran: task order and dependencies). A browser
refresh or an app restart re-reads them, so nothing lives in the app's memory.

Workspace source: `WorkspaceClient().jobs.get_run` / `list_runs` (databricks-sdk, imported only
when asked: the compile path never loads it). The mapping follows the SDK's own types in
databricks/sdk/service/jobs.py: `RunLifeCycleState`, `RunResultState`, and the newer
`RunStatus.state` (`RunLifecycleStateV2State`) with `TerminationDetails.type`/`.code`
(`TerminationTypeType`, `TerminationCodeCode`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

State = Literal["pending", "running", "succeeded", "failed", "skipped"]
STATES: tuple[State, ...] = ("pending", "running", "succeeded", "failed", "skipped")
LOG_TAIL_LINES = 20


@dataclass
class TaskStatus:
    key: str
    state: State
    detail: str = ""  # the source's own state name, and its message
    seconds: float | None = None
    attempts: int = 0
    depends_on: tuple[str, ...] = ()
    url: str | None = None  # the task run's page in the Jobs UI (workspace only)
    log_tail: str = ""  # last lines of a failed task's log


@dataclass
class RunStatus:
    source: Literal["local", "workspace"]
    job: str
    run_id: str
    state: State
    tasks: list[TaskStatus] = field(default_factory=list)
    url: str | None = None  # the run's page in the Jobs UI (workspace only)
    started: float | None = None  # epoch seconds
    seconds: float | None = None
    detail: str = ""
    job_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for task in data["tasks"]:
            task["depends_on"] = list(task["depends_on"])
        return data

    def counts(self) -> dict[str, int]:
        return {s: sum(t.state == s for t in self.tasks) for s in STATES}


class StatusError(Exception):
    """A status question obsrv cannot answer (no such run, no such job): a message, no traceback."""


def overall_state(tasks: list[TaskStatus], finished: bool) -> State:
    """A local run's state from its tasks: pending until a task starts, running until the runner
    ends, then failed when any task failed (or never ended), else succeeded."""
    states = {t.state for t in tasks}
    if not finished:
        return "running" if states - {"pending"} else "pending"
    return "failed" if states & {"failed", "pending", "running"} else "succeeded"


# ------------------------------------------------------------------------------------- local

# service_tasks/local/scheduler.py's states → the five. `skipped` there means "done in an earlier
# attempt of this workflow" (resume); upstream_failed is Databricks' "Upstream failed", which the
# Jobs UI also shows as a task that never ran; cancelled and timed_out are failures of the run.
_LOCAL: dict[str, State] = {
    "pending": "pending",
    "retry_wait": "pending",
    "running": "running",
    "succeeded": "succeeded",
    "skipped": "skipped",
    "upstream_failed": "skipped",
    "cancelled": "failed",
    "timed_out": "failed",
    "failed": "failed",
}


_ENDED = {"succeeded", "skipped", "upstream_failed", "cancelled", "timed_out", "failed"}


def runs_dir(workdir: str | Path) -> Path:
    return Path(workdir).resolve() / ".obsrv" / "runs"


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _job_tasks(run_dir: Path) -> list[dict[str, Any]]:
    """The tasks of the job.yml this run executed, in the compiled order."""
    import yaml

    path = run_dir / "job.yml"
    if not path.exists():
        return []
    document = yaml.safe_load(path.read_text()) or {}
    jobs: dict[str, Any] = document.get("resources", {}).get("jobs", {})
    job: dict[str, Any] = next(iter(jobs.values()), {})
    return list(job.get("tasks", []))


def _job_name(run_dir: Path) -> str:
    import yaml

    document = yaml.safe_load((run_dir / "job.yml").read_text()) or {}
    jobs: dict[str, Any] = document.get("resources", {}).get("jobs", {})
    job: dict[str, Any] = next(iter(jobs.values()), {})
    return str(job.get("name", ""))


def local_status(workdir: str | Path, run_id: str, *, now: float | None = None) -> RunStatus:
    """The status of local workflow `run_id` under `workdir`/.obsrv, from the runner's files."""
    run_dir = runs_dir(workdir) / run_id
    path = run_dir / "state.json"
    if not path.exists():
        if not (run_dir / "job.yml").exists():
            raise StatusError(f"no local run {run_id!r}: {path} does not exist")
        # The runner allocated the run and wrote what it will run, but no task started yet.
        waiting = [TaskStatus(key=t["task_key"], state="pending", detail="pending",
                              depends_on=tuple(d["task_key"] for d in t.get("depends_on", [])))
                   for t in _job_tasks(run_dir)]
        return RunStatus(source="local", job=_job_name(run_dir), run_id=run_id, state="pending", tasks=waiting,
                         detail="starting")
    data = json.loads(path.read_text())
    now = time.time() if now is None else now
    compiled = _job_tasks(run_dir)
    order = [t["task_key"] for t in compiled] or sorted(data["tasks"])
    deps = {t["task_key"]: tuple(d["task_key"] for d in t.get("depends_on", [])) for t in compiled}
    runner_alive = _alive(data.get("runner_pid"))
    tasks: list[TaskStatus] = []
    starts: list[float] = []
    for key in order:
        raw = data["tasks"].get(key, {"state": "pending"})
        local = str(raw.get("state", "pending"))
        state = _LOCAL.get(local, "failed")
        seconds = float(raw.get("seconds") or 0.0)
        if raw.get("started"):
            starts.append(float(raw["started"]))
        if local == "running" and raw.get("started"):
            seconds += max(0.0, now - float(raw["started"]))
        if state in ("pending", "running") and not runner_alive:
            # The runner died (or was killed) mid-run: nothing will move this task any more.
            state, local = "failed", f"{local}, runner gone"
        message = str(raw.get("message") or "")
        tasks.append(TaskStatus(
            key=key, state=state, detail=f"{local}: {message}" if message else local,
            seconds=round(seconds, 1) if seconds else None, attempts=int(raw.get("attempts") or 0),
            depends_on=deps.get(key, ()),
            log_tail=_log_tail(run_dir / "logs" / f"{key}.log") if state == "failed" else "",
        ))
    # Every task ended means the run did, whatever the pid says (a runner the app started stays a
    # zombie, which os.kill still finds, until the app reaps it).
    ended = all(str(data["tasks"].get(k, {}).get("state", "pending")) in _ENDED for k in order)
    state = overall_state(tasks, finished=ended or not runner_alive)
    started = min(starts) if starts else None
    ends = [path.stat().st_mtime] if not runner_alive else [now]
    return RunStatus(
        source="local", job=str(data.get("job_name", "")), run_id=run_id, state=state, tasks=tasks,
        started=started, seconds=round(max(ends) - started, 1) if started else None,
        detail="runner alive" if runner_alive else "runner ended",
    )


def local_runs(workdir: str | Path, job: str | None = None) -> list[str]:
    """Local workflow ids (newest first), of `job` only when given."""
    found: list[tuple[float, str]] = []
    for state_file in runs_dir(workdir).glob("*/state.json"):
        try:
            name = json.loads(state_file.read_text()).get("job_name")
        except (OSError, ValueError):
            continue  # a run folder being created right now
        if job is None or name == job:
            found.append((state_file.stat().st_mtime, state_file.parent.name))
    return [run_id for _, run_id in sorted(found, reverse=True)]


def local_history(workdir: str | Path, job: str | None = None, limit: int = 20) -> list[RunStatus]:
    return [local_status(workdir, run_id) for run_id in local_runs(workdir, job)[:limit]]


# ---------------------------------------------------------------------------------- workspace

# RunLifeCycleState (V1, `Run.state.life_cycle_state`): not yet ended.
_V1_PENDING = {"PENDING", "QUEUED", "BLOCKED", "WAITING_FOR_RETRY"}
_V1_RUNNING = {"RUNNING", "TERMINATING"}
# RunResultState (V1, `Run.state.result_state`) once TERMINATED (or SKIPPED / INTERNAL_ERROR).
_RESULT: dict[str, State] = {
    "SUCCESS": "succeeded",
    "SUCCESS_WITH_FAILURES": "succeeded",  # the docs: succeeded, some failed tasks had run_if ALL_DONE children
    "FAILED": "failed",
    "TIMEDOUT": "failed",
    "CANCELED": "failed",
    "MAXIMUM_CONCURRENT_RUNS_REACHED": "failed",
    "DISABLED": "skipped",
    "EXCLUDED": "skipped",
    "UPSTREAM_FAILED": "skipped",
    "UPSTREAM_CANCELED": "skipped",
}
# RunLifecycleStateV2State (`Run.status.state`), the newer field.
_V2_PENDING = {"PENDING", "QUEUED", "BLOCKED", "WAITING"}
_V2_RUNNING = {"RUNNING", "TERMINATING"}
# TerminationCodeCode values that mean "did not run" rather than "failed".
_V2_SKIPPED_CODES = {"SKIPPED", "DISABLED"}


def _value(enum_or_none: Any) -> str:
    return "" if enum_or_none is None else str(getattr(enum_or_none, "value", enum_or_none))


def sdk_state(state: Any, status: Any) -> tuple[State, str]:
    """(one of the five, the SDK's own names) from a Run's or RunTask's `state` (jobs.RunState) and
    `status` (jobs.RunStatus). V1 is read first: only it tells UPSTREAM_FAILED apart from FAILED."""
    life = _value(getattr(state, "life_cycle_state", None))
    result = _value(getattr(state, "result_state", None))
    message = str(getattr(state, "state_message", "") or "")
    if life:
        detail = "/".join(p for p in (life, result) if p) + (f": {message}" if message else "")
        if life in _V1_PENDING:
            return "pending", detail
        if life in _V1_RUNNING:
            return "running", detail
        if life == "SKIPPED":
            return "skipped", detail
        if result:
            return _RESULT.get(result, "failed"), detail
        return "failed", detail  # INTERNAL_ERROR, or TERMINATED without a result
    v2 = _value(getattr(status, "state", None))
    details = getattr(status, "termination_details", None)
    kind, code = _value(getattr(details, "type", None)), _value(getattr(details, "code", None))
    message = str(getattr(details, "message", "") or "")
    detail = "/".join(p for p in (v2, code) if p) + (f": {message}" if message else "")
    if v2 in _V2_PENDING:
        return "pending", detail
    if v2 in _V2_RUNNING:
        return "running", detail
    if v2 == "TERMINATED":
        if kind == "SUCCESS" or code in ("SUCCESS", "SUCCESS_WITH_FAILURES"):
            return "succeeded", detail
        return ("skipped" if code in _V2_SKIPPED_CODES else "failed"), detail
    return "pending", detail or "no state yet"


def _ms_to_s(value: int | None) -> float | None:
    return round(value / 1000.0, 1) if value else None


def _task_seconds(task: Any) -> float | None:
    if task.execution_duration:
        return _ms_to_s(task.execution_duration)
    if task.start_time and task.end_time:
        return _ms_to_s(task.end_time - task.start_time)
    return None


def failed_task_log(jobs: Any, task_run_id: int, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a failed task run's output: `jobs.get_run_output(run_id)`'s `error`,
    `error_trace` and `logs` (jobs.RunOutput); a wheel task's stdout is `logs`."""
    output = jobs.get_run_output(task_run_id)
    text = "\n".join(str(part) for part in (output.logs, output.error, output.error_trace) if part)
    return "\n".join(text.splitlines()[-lines:])


def run_from_sdk(jobs: Any, run: Any, *, job: str = "") -> RunStatus:
    """RunStatus from a `jobs.Run`; fetches the log tail of each failed task."""
    tasks: list[TaskStatus] = []
    for task in run.tasks or []:
        state, detail = sdk_state(task.state, task.status)
        tail = failed_task_log(jobs, task.run_id) if state == "failed" and task.run_id else ""
        tasks.append(TaskStatus(
            key=task.task_key, state=state, detail=detail, seconds=_task_seconds(task),
            attempts=(task.attempt_number or 0) + 1 if task.run_id else 0,
            depends_on=tuple(d.task_key for d in task.depends_on or []), url=task.run_page_url, log_tail=tail,
        ))
    state, detail = sdk_state(run.state, run.status)
    started = run.start_time / 1000.0 if run.start_time else None
    seconds = _ms_to_s(run.run_duration) or (_ms_to_s(run.end_time - run.start_time)
                                              if run.start_time and run.end_time else None)
    return RunStatus(
        source="workspace", job=job or str(run.run_name or ""), run_id=str(run.run_id), state=state, tasks=tasks,
        url=run.run_page_url, started=started, seconds=seconds, detail=detail, job_id=run.job_id,
    )


def workspace_status(jobs: Any, run_id: int, *, job: str = "") -> RunStatus:
    """`jobs.get_run(run_id)` (jobs.Run, its `tasks` included) as a RunStatus."""
    return run_from_sdk(jobs, jobs.get_run(run_id), job=job)


def find_job_id(jobs: Any, name: str) -> int:
    """The id of the deployed job called `name` (`jobs.list(name=...)`, an exact-name filter).
    A dev deploy prefixes `[dev <user>] `, so that form is accepted too."""
    matches = [j for j in jobs.list(name=name)]
    if not matches:
        matches = [j for j in jobs.list() if (j.settings and j.settings.name or "").endswith(f"] {name}")]
    if not matches:
        raise StatusError(f"no job named {name!r} on this workspace: deploy it first (databricks bundle deploy)")
    if len(matches) > 1:
        ids = ", ".join(str(j.job_id) for j in matches)
        raise StatusError(f"{len(matches)} jobs are named {name!r} (ids {ids}): give the job id instead")
    return int(matches[0].job_id)


def workspace_history(jobs: Any, job_id: int, *, limit: int = 20, job: str = "") -> list[RunStatus]:
    """Earlier runs of a job, newest first (`jobs.list_runs(job_id=..., expand_tasks=True)`)."""
    runs = []
    for index, run in enumerate(jobs.list_runs(job_id=job_id, expand_tasks=True, limit=min(limit, 25))):
        if index >= limit:
            break
        runs.append(run_from_sdk(_NoLogs(), run, job=job))
    return runs


class _NoLogs:
    """History rows do not fetch every failed task's output (one call each); Watch does."""

    def get_run_output(self, run_id: int) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(logs=None, error=None, error_trace=None)


def workspace_client(profile: str | None = None, host: str | None = None) -> Any:
    """databricks-sdk's WorkspaceClient with unified auth: `profile` from ~/.databrickscfg, else the
    environment (DATABRICKS_HOST/...; inside a Databricks App, its service principal's
    DATABRICKS_CLIENT_ID/SECRET, which the platform injects)."""
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(profile=profile, host=host)
