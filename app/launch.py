"""Validate, compile and launch a spec: the calls the app's Edit, Job and Launch pages make, and
the same ones `obsrv validate`, `obsrv compile` and `obsrv run` make.

Locally a launch starts `obsrv run SPEC --time-limit S` as a background process (its own session,
so the app's restart does not stop it); its state is the runner's own files (run_status.py). On a
workspace a deployed job is started with `jobs.run_now(job_id, job_parameters=...)`; an edited
spec that is not deployed is sent as a one-time run with `jobs.submit(tasks=..., environments=...)`
of its compiled tasks. Which of the two happened is in `WorkspaceLaunch.how`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from obsrv.compiler.api import CompileResult, SpecError, compile_file
from obsrv.compiler.diagnostics import Diagnostic

APP_DIR = "app"  # under .obsrv/: the specs the app saved, the background runs' console logs


@dataclass
class Checked:
    """A spec text checked by the compiler: its diagnostics (errors and warnings, sorted as
    `obsrv validate` prints them) and, when it compiled, the result."""

    path: Path
    diagnostics: list[Diagnostic]
    compiled: CompileResult | None

    @property
    def ok(self) -> bool:
        return self.compiled is not None and not any(d.is_error for d in self.diagnostics)


def spec_file(workdir: str | Path, name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "spec"
    return Path(workdir).resolve() / ".obsrv" / APP_DIR / "specs" / (safe if safe.endswith(".yaml") else f"{safe}.yaml")


def check_text(text: str, path: Path) -> Checked:
    """Write `text` to `path` (atomically) and compile it exactly as `obsrv compile` does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    # Messages name the file as a user would type it: relative to where the app runs, when inside.
    shown = Path(os.path.relpath(path)) if path.resolve().is_relative_to(Path.cwd().resolve()) else path
    try:
        compiled = compile_file(shown, verify=False)
    except SpecError as error:
        return Checked(path, list(error.diagnostics), None)
    return Checked(path, list(compiled.warnings), compiled)


# -------------------------------------------------------------------------------------- local


@dataclass
class LocalLaunch:
    pid: int
    log: Path
    command: list[str]
    run_id: str | None = None  # the workflow id the runner allocated (read from its first line)


_WORKFLOW_LINE = re.compile(r"\[obsrv\] workflow (\S+):")


def ensure_demo_source(compiled: CompileResult, workdir: str | Path) -> str | None:
    """`obsrv data demo` when the spec reads one of the demo tables and it is not loaded yet (a new
    user's first launch); returns what was done, None when nothing was needed."""
    from obsrv.service_tasks.io import LocalDeltaStore, TableName
    from obsrv.service_tasks.local.load_data import DEMO_CREDIT, DEMO_HOUSING, DEMO_SEGMENTS, load_demo

    source = compiled.plan["context"]["source"]
    table = TableName(source["catalog"], source["schema"], source["table"])
    home = Path(workdir).resolve() / ".obsrv"
    if table not in (DEMO_CREDIT, DEMO_SEGMENTS, DEMO_HOUSING) or LocalDeltaStore(home).exists(table):
        return None
    load_demo(home)
    return f"loaded the demo tables (obsrv data demo) into {home / 'warehouse'}"


def run_command(spec: Path, workdir: str | Path, time_limit: float) -> list[str]:
    return [sys.executable, "-m", "obsrv.compiler.cli", "run", str(spec), "--workdir", str(Path(workdir).resolve()),
            "--time-limit", f"{time_limit:g}"]


def start_local_run(spec: Path, workdir: str | Path, time_limit: float, *, wait_s: float = 60.0) -> LocalLaunch:
    """Start `obsrv run` in the background and wait until it names its workflow id."""
    if not time_limit > 0:
        raise ValueError(f"the time limit must be a positive number of seconds, not {time_limit!r}")
    logs = Path(workdir).resolve() / ".obsrv" / APP_DIR / "launches"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6}.log"
    command = run_command(spec, workdir, time_limit)
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, cwd=str(Path(workdir).resolve()))
    launch = LocalLaunch(pid=process.pid, log=log, command=command)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        match = _WORKFLOW_LINE.search(log.read_text(errors="replace"))
        if match:
            launch.run_id = match.group(1)
            return launch
        if process.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise RuntimeError(f"obsrv run ended (exit code {process.returncode}) before it started:\n{tail}")
        time.sleep(0.2)
    return launch  # still compiling or queued behind another run of the job: Watch finds it later


# ---------------------------------------------------------------------------------- workspace


@dataclass
class WorkspaceLaunch:
    how: Literal["run_now", "submit"]
    run_id: int
    job_id: int | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.how == "run_now":
            return f"started the deployed job {self.job_id} (jobs.run_now): run {self.run_id}"
        return f"submitted a one-time run of the compiled tasks (jobs.submit; the spec is not deployed): run {self.run_id}"


def run_deployed(jobs: Any, job_id: int, parameters: dict[str, str]) -> WorkspaceLaunch:
    """`jobs.run_now(job_id, job_parameters=...)`; the job's own defaults fill what is not given."""
    waiter = jobs.run_now(job_id=job_id, job_parameters=dict(parameters) or None)
    return WorkspaceLaunch(how="run_now", run_id=int(waiter.run_id), job_id=job_id)


def submit_payload(compiled: CompileResult, *, file_path: str, wheel: str, user: str) -> dict[str, Any]:
    """The `jobs.submit` arguments for a compiled spec, as dicts of the Jobs API's shape.

    A submitted run has no job and so no job parameters: `{{job.parameters.X}}` is replaced by the
    parameter's default. The deploy-time `${...}` references are resolved as a deploy of a bundle
    whose files are at `file_path` would (compiler/bundle_refs.py), and the wheel dependency
    (`../dist/*.whl`, a bundle artifact glob) is replaced by `wheel`, an uploaded wheel's path.
    """
    from obsrv.compiler.bundle_refs import User, normalize_string, resolve

    config = {"bundle": {"name": "obsrv"}, **compiled.bundle}
    for schema in config.get("resources", {}).get("schemas", {}).values():
        schema.pop("grants", None)
    short = normalize_string(user.split("@", 1)[0]) or "user"
    job = resolve(config, None, User(user_name=user, short_name=short), file_path=file_path)["resources"]["jobs"][
        compiled.job_key]
    defaults = {f"job.parameters.{p['name']}": str(p["default"]) for p in job.get("parameters", [])}

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return re.sub(r"\{\{\s*(job\.parameters\.[^{}]+?)\s*\}\}", lambda m: defaults.get(m.group(1), m.group(0)), value)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    environments = []
    for env in job.get("environments", []):
        spec = dict(env.get("spec", {}))
        spec["dependencies"] = [wheel if str(d).endswith(".whl") else d for d in spec.get("dependencies", [])]
        environments.append({"environment_key": env["environment_key"], "spec": spec})
    return {
        "run_name": f"{job['name']} (obsrv app, not deployed)",
        "tasks": fill(job["tasks"]),
        "environments": environments,
        "timeout_seconds": job.get("timeout_seconds"),
    }


def submit_compiled(jobs: Any, workspace: Any, compiled: CompileResult, *, folder: str, wheel: str,
                    user: str) -> WorkspaceLaunch:
    """`jobs.submit` of the compiled tasks of a spec that is not deployed.

    Its plan file (what every task reads) is uploaded first to `folder`/bundle_out/ with
    `workspace.mkdirs` and `workspace.upload(..., overwrite=True)`, and the tasks read it there.
    The tasks and environments are built into the SDK's own types (jobs.SubmitTask,
    jobs.JobEnvironment: databricks/sdk/service/jobs.py), so a field the API does not take fails
    here rather than on the workspace."""
    import io

    from databricks.sdk.service import jobs as sdk_jobs
    from databricks.sdk.service.workspace import ImportFormat

    plan_name = next(name for name in compiled.files if name.endswith(".plan.json"))
    workspace.mkdirs(f"{folder}/bundle_out")
    workspace.upload(f"{folder}/bundle_out/{plan_name}", io.BytesIO(compiled.files[plan_name].encode()),
                     format=ImportFormat.AUTO, overwrite=True)
    payload = submit_payload(compiled, file_path=folder, wheel=wheel, user=user)
    waiter = jobs.submit(
        run_name=payload["run_name"],
        tasks=[sdk_jobs.SubmitTask.from_dict(t) for t in payload["tasks"]],
        environments=[sdk_jobs.JobEnvironment.from_dict(e) for e in payload["environments"]],
        timeout_seconds=payload["timeout_seconds"],
    )
    return WorkspaceLaunch(how="submit", run_id=int(waiter.run_id), notes=[
        f"plan file uploaded to {folder}/bundle_out/{plan_name}; the output schema, experiment and model are "
        "the deployed bundle's (deploy it once)"])
