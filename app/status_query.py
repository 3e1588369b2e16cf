"""`obsrv status`'s question, answered for the CLI and the app's Watch page alike: which run of
which job, locally or on a workspace, and its text rendering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from obsrv.app.run_status import (
    RunStatus,
    StatusError,
    find_job_id,
    local_runs,
    local_status,
    workspace_status,
)


def job_name_of(spec_or_job: str) -> str:
    """A spec file's compiled job name, or the argument itself when it is not a file (a job name)."""
    path = Path(spec_or_job)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        from obsrv.compiler.api import load_spec

        spec, _, _ = load_spec(path)  # raises SpecError, rendered by the CLI like `validate`
        return spec.obsrv.context.name
    return spec_or_job


def local_query(workdir: str | Path, spec_or_job: str | None, run_id: str | None) -> RunStatus:
    if run_id is not None:
        return local_status(workdir, run_id)
    job = job_name_of(spec_or_job) if spec_or_job else None
    runs = local_runs(workdir, job)
    if not runs:
        what = f"of job {job!r} " if job else ""
        raise StatusError(f"no local run {what}under {Path(workdir).resolve() / '.obsrv' / 'runs'}: start one with obsrv run SPEC")
    return local_status(workdir, runs[0])


def workspace_query(jobs: Any, spec_or_job: str | None, run_id: str | None) -> RunStatus:
    if run_id is not None:
        if not run_id.isdigit():
            raise StatusError(f"--run {run_id!r}: a workspace run id is a number")
        return workspace_status(jobs, int(run_id))
    if not spec_or_job:
        raise StatusError("on a workspace, name the job (SPEC or JOB) or give --run RUN_ID")
    job = job_name_of(spec_or_job)
    job_id = int(job) if job.isdigit() else find_job_id(jobs, job)
    latest = next(iter(jobs.list_runs(job_id=job_id, limit=1)), None)
    if latest is None:
        raise StatusError(f"job {job} (id {job_id}) has no runs yet: start it with databricks bundle run {job}")
    return workspace_status(jobs, int(latest.run_id), job=job)


def profile_for_target(target: str, bundle_file: Path = Path("databricks.yml")) -> tuple[str | None, str | None]:
    """(profile, host) of `targets.<target>.workspace` in databricks.yml, as the Databricks CLI's
    `-t` picks them; (None, None) when the target sets neither (unified auth's defaults apply)."""
    import yaml

    if not bundle_file.is_file():
        raise StatusError(f"-t {target}: no {bundle_file} here to read the target from")
    targets = (yaml.safe_load(bundle_file.read_text()) or {}).get("targets") or {}
    if target not in targets:
        raise StatusError(f"-t {target}: {bundle_file} has no such target; targets are {', '.join(targets) or 'none'}")
    workspace = (targets[target] or {}).get("workspace") or {}
    return workspace.get("profile"), workspace.get("host")


def render_text(status: RunStatus) -> Any:
    """A rich renderable: the run's header, its task table, the log tails of failed tasks."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    style = {"pending": "dim", "running": "bold cyan", "succeeded": "green", "failed": "bold red", "skipped": "yellow"}
    head = f"{status.job} run {status.run_id} ({status.source}): {status.state}"
    if status.seconds is not None:
        head += f", {status.seconds:.1f}s"
    parts: list[Any] = [Text(head, style=style[status.state])]
    if status.url:
        parts.append(Text(f"  {status.url}"))
    table = Table(title_justify="left")
    for column in ("task", "state", "time", "attempts", "detail"):
        table.add_column(column)
    for task in status.tasks:
        table.add_row(task.key, f"[{style[task.state]}]{task.state}[/]",
                      f"{task.seconds:.1f}s" if task.seconds is not None else "",
                      str(task.attempts or ""), task.detail[:70])
    parts.append(table)
    for task in status.tasks:
        if task.state == "failed" and task.log_tail:
            parts.append(Text(f"last lines of {task.key}'s log:", style="bold red"))
            parts.append(Text(task.log_tail))
    return Group(*parts)
