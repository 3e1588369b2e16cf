"""What local runs share in one workdir (`.obsrv/`), and how they avoid clobbering each other.

* **One run per job at a time** (`job_lock`): the compiled job says `max_concurrent_runs: 1` with
  the queue enabled, so on Databricks a second run of the job waits in the queue until the first
  ends; without the queue it would be skipped (databricks-bundles 1.22,
  `databricks/bundles/jobs/_models/job.py`, `max_concurrent_runs`: "new runs are skipped unless
  there are fewer than 3 active runs"; `_models/queue_settings.py`). Locally the same job shares
  one warehouse schema, one MLflow experiment name prefix and one `champion` alias, so two runs
  at once would overwrite each other's tables and move the alias in whichever order they end. A
  second run therefore waits for the first (`--no-wait`: refuses at once, naming the other run).
  The lock is `fcntl.flock` on `.obsrv/locks/<job>.lock`: the kernel releases it when the holder
  dies, however it dies, so a killed run never leaves a stale lock behind.
* **Workflow ids are allocated atomically** (`allocate_workflow_id`): creating the run folder is
  the allocation (`mkdir` fails if it exists), so two runs started in the same second get two ids.
* **The MLflow store is created once** (`store_needs_init`, `store_lock`): sqlite MLflow creates
  its schema on first use; two processes doing that at once fail with `table ... already exists`
  (MLflow 3.x `store/tracking/sqlalchemy_store.py` checks `_all_tables_exist` and then runs
  `_initialize_tables`, `create_all` plus the migrations, with no lock; only its jobs and
  workspace stores go through the locked `_safe_initialize_tables`).
  The runner creates it before any task starts, under a workdir-wide lock (different jobs share
  `mlflow.db`).
* **A workdir that cannot be written** is the user's environment, not an obsrv bug
  (`WorkdirError`, `write_error`): exit 1 with the path and the reason.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; runs are not serialised there
    fcntl = None  # type: ignore[assignment]

# errno values that mean "this environment does not let obsrv write there".
WRITE_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR}
)


class WorkdirError(Exception):
    """The workdir cannot be written: the user's environment, reported as such (exit 1)."""


class JobBusy(Exception):
    """Another run of the same job holds the job lock and the caller chose not to wait."""


def write_error(error: OSError, fallback: Path | None = None) -> str | None:
    """`cannot write to <path>: <reason>` for an OSError that the environment caused, else None."""
    if error.errno not in WRITE_ERRNOS:
        return None
    path = error.filename or fallback
    return f"cannot write to {path}: {error.strerror or error}; choose a writable --workdir or fix its permissions"


def ensure_writable(folder: Path) -> None:
    """Create `folder` and prove a file can be written in it, before anything else is done there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as error:
        message = write_error(error, folder)
        if message is None and isinstance(error, FileExistsError):  # a file where a folder must be
            message = f"cannot write to {folder}: {error.filename or folder} is a file, not a folder"
        if message is None:
            raise
        raise WorkdirError(message) from error


# ------------------------------------------------------------------------------------ job lock


@contextlib.contextmanager
def _flock(path: Path, *, blocking: bool) -> Iterator[int | None]:
    """Hold an exclusive flock on `path`; yields the fd, or None if `blocking` is False and another
    process holds it. The fd is not inherited by task processes (Python opens it close-on-exec and
    the launchers pass no other descriptors), so only this process holds the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield None
                return
        yield fd
    finally:
        os.close(fd)  # releases the lock


def _lock_name(job_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", job_name) or "job"


def lock_path(home: Path, job_name: str) -> Path:
    return home / "locks" / f"{_lock_name(job_name)}.lock"


def read_holder(path: Path) -> dict[str, Any]:
    """What the holder of a job lock wrote about itself (workflow id, pid); {} while unknown."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text() or "{}")
        if isinstance(data, dict):
            return data
    return {}


def describe_holder(holder: dict[str, Any]) -> str:
    workflow = holder.get("workflow_id") or "(id not allocated yet)"
    return f"workflow {workflow} (pid {holder.get('pid', '?')}, started {holder.get('started', '?')})"


class JobLock:
    """The held lock of one job; `record` tells waiting runs which workflow holds it."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd, self.path = fd, path
        self.record(None)

    def record(self, workflow_id: str | None) -> None:
        started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        payload = json.dumps({"workflow_id": workflow_id, "pid": os.getpid(), "started": started}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, payload, 0)


@contextlib.contextmanager
def job_lock(
    home: Path, job_name: str, *, wait: bool, on_wait: Callable[[dict[str, Any]], None] = lambda holder: None
) -> Iterator[JobLock]:
    """Hold the lock of `job_name` in this workdir for the body (see the module doc).

    Busy: `wait` blocks until the other run ends (`on_wait` is told who holds it first); otherwise
    raises JobBusy naming the other run.
    """
    path = lock_path(home, job_name)
    with _flock(path, blocking=False) as fd:
        if fd is not None:
            yield JobLock(fd, path)
            return
    holder = read_holder(path)
    if not wait:
        raise JobBusy(
            f"job {job_name!r} is already running in this workdir: {describe_holder(holder)}. "
            "Drop --no-wait to queue behind it, as Databricks does for max_concurrent_runs: 1"
        )
    on_wait(holder)
    with _flock(path, blocking=True) as fd:
        assert fd is not None
        yield JobLock(fd, path)


# ---------------------------------------------------------------------------------- workflow ids


def allocate_workflow_id(runs_dir: Path, now: datetime | None = None) -> str:
    """A numeric id, like Databricks' job.run_id, unique within this OBSRV_HOME; its run folder is
    created as the allocation, so two runs can never get the same id."""
    base = (now or datetime.now(timezone.utc)).strftime("%Y%m%d%H%M%S")
    runs_dir.mkdir(parents=True, exist_ok=True)
    for n in range(10_000):
        candidate = base if n == 0 else f"{base}{n:02d}"
        try:
            (runs_dir / candidate).mkdir()
        except FileExistsError:
            continue
        return candidate
    raise WorkdirError(f"cannot allocate a workflow id under {runs_dir}: 10000 runs started this second")


# ---------------------------------------------------------------------------------- MLflow store


def local_store_uri(home: Path) -> str:
    """The tracking URI the tasks will use (`tracking.tracking_uri`, without importing MLflow)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def store_needs_init(uri: str) -> bool:
    """True for a sqlite store whose schema is not complete yet (MLflow stamps the alembic
    version last, after creating every table); other stores are servers, which do it themselves."""
    db = sqlite_path(uri)
    if db is None:
        return False
    if not db.exists():
        return True
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
            return not conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        return True


@contextlib.contextmanager
def store_lock(home: Path) -> Iterator[None]:
    """Workdir-wide: every job of the workdir shares one sqlite store."""
    with _flock(home / "locks" / "mlflow-store.lock", blocking=True):
        yield


def init_store(argv: list[str] | None = None) -> None:
    """`URI ARTIFACT_ROOT`: create the MLflow schema (run in a task process by the runner).

    Called like the entry point (launchers call both the same way): with no arguments it reads
    `sys.argv[1:]`; failure is an exception."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    import logging

    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    started = time.monotonic()
    SqlAlchemyStore(argv[0], argv[1])
    print(f"MLflow store {argv[0]} created in {time.monotonic() - started:.1f}s", flush=True)
