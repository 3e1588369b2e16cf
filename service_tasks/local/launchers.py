"""How `obsrv run` starts one task process: the two launchers behind `LocalRunner`.

Both start every task in its own process and its own process group (so a timeout or Ctrl-C can
kill the whole tree, joblib workers included), with the task's environment, its log file as stdout
and stderr, and the compiled argv. They differ in where the process comes from:

* `ColdLauncher`: a fresh interpreter per task (`python -c <obsrv-task entry point> ARGV`), exactly
  how a Databricks wheel task starts. Each task pays ~3-4 s of imports (pandas, sklearn, MLflow,
  the boosting libraries) and MLflow's first-use caches.
* `WarmLauncher` (the default): the task process is forked from a server that imported those
  libraries once (`multiprocessing`'s forkserver, preloading `obsrv.service_tasks.local.warm_imports`), then
  runs the same entry point with the same argv. Still one fresh process per task, so no state leaks
  from one task to the next; only the import cost is shared. The server holds no state of its own
  beyond imported modules; the only threads in it are the libraries' own (OpenBLAS, jemalloc),
  which install fork handlers. Measured side by side on the demo workflow (2.14x faster run):
  `benchmarks/task_start.py`, `benchmarks/results/task_start.md`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import types
from collections.abc import Iterator
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

ENTRY_POINT_NAME = "obsrv-task"
PRELOAD_MODULE = "obsrv.service_tasks.local.warm_imports"


class LaunchError(Exception):
    """The task program cannot be started (e.g. the package is not installed)."""


class TaskProcess(Protocol):
    """The part of `subprocess.Popen` the runner uses."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


class Launcher(Protocol):
    name: str

    def start(self, argv: list[str], env: dict[str, str], log_path: Path) -> TaskProcess: ...


def kill_tree(process: TaskProcess, grace_seconds: float = 5.0) -> None:
    """SIGTERM the task's process group, then SIGKILL it if it has not exited after the grace."""
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        # A warm task may not have called setsid() yet: signal the process itself.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def entry_point_target() -> str:
    """`module:function` of the installed `obsrv-task` console script."""
    matches = [ep for ep in entry_points(group="console_scripts") if ep.name == ENTRY_POINT_NAME]
    if not matches:
        raise LaunchError("the obsrv-task entry point is not installed; run `pip install -e .` first")
    return matches[0].value


# ---------------------------------------------------------------------------------------- cold


class ColdLauncher:
    """A fresh interpreter per task. `command` replaces the interpreter call (tests use a stand-in)."""

    name = "cold"

    def __init__(self, command: list[str] | None = None) -> None:
        if command is None:
            module, _, attr = entry_point_target().partition(":")
            command = [sys.executable, "-c", f"import sys; from {module} import {attr} as main; sys.exit(main())"]
        self.command = list(command)

    def start(self, argv: list[str], env: dict[str, str], log_path: Path) -> TaskProcess:
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                [*self.command, *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                # Its own process group: Ctrl-C reaches only the runner, which then stops the
                # children itself, and a timeout can kill the whole tree.
                start_new_session=True,
            )


# ---------------------------------------------------------------------------------------- warm


class _WarmProcess:
    """`Popen`'s face over a `multiprocessing.Process` forked by the forkserver."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process
        self.pid = int(process.pid or 0)

    def poll(self) -> int | None:
        code = self._process.exitcode
        # multiprocessing reports death by signal N as -N, like Popen.returncode.
        return code

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self._process.exitcode
        if code is None:
            raise subprocess.TimeoutExpired(f"task pid {self.pid}", timeout or 0.0)
        return code


class WarmLauncher:
    """Forks each task from a server that has the heavy libraries imported (see the module doc).

    `target` is the `module:function` called with the argv list; it returns the exit code.
    """

    name = "warm"

    def __init__(self, target: str | None = None, preload: tuple[str, ...] = (PRELOAD_MODULE,)) -> None:
        if not warm_supported():
            raise LaunchError("warm task start needs fork (Linux or macOS); use --cold")
        self.target = target or entry_point_target()
        self._context = multiprocessing.get_context("forkserver")
        # The forkserver is one per runner process (it exits with it); the preload applies when it
        # first starts.
        self._context.set_forkserver_preload(list(preload))

    def start(self, argv: list[str], env: dict[str, str], log_path: Path) -> TaskProcess:
        process = self._context.Process(
            target=_run_forked_task,
            args=(self.target, list(argv), dict(env), str(log_path)),
            name=f"obsrv-task {' '.join(argv[:4])}",
            daemon=False,  # tasks may start their own worker processes (joblib)
        )
        with _main_module_hidden():
            process.start()
        return _WarmProcess(process)


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """multiprocessing re-runs the parent's `__main__` script in each child, so that pickled
    references to it resolve. The task target lives in a package, and the runner's main may be a
    script without a main guard, stdin or a notebook: hand multiprocessing a bare module instead."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _run_forked_task(target: str, argv: list[str], env: dict[str, str], log_path: str) -> None:
    """Runs in the forked task process: become a cold task in all but the imports."""
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.reconfigure(line_buffering=True, write_through=True)  # type: ignore[union-attr]  # TextIO: a TextIOWrapper here
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [ENTRY_POINT_NAME, *argv]
    # The libraries' thread pools were sized when the server imported them; apply this task's
    # slice of the cores (OMP_NUM_THREADS) at run time instead.
    limits = None
    threads = env.get("OMP_NUM_THREADS")
    if threads and threads.isdigit():
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(limits=int(threads))
    module, _, attr = target.partition(":")
    code = getattr(import_module(module), attr)(argv)
    del limits
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(int(code or 0))


def warm_supported() -> bool:
    return sys.platform != "win32" and "forkserver" in multiprocessing.get_all_start_methods()


def make_launcher(cold: bool, command: list[str] | None = None) -> Launcher:
    """The runner's launcher: cold when asked, when a stand-in command is given, or where the
    platform cannot fork (Windows; the run's first line says which launcher runs the tasks)."""
    if cold or command is not None or not warm_supported():
        return ColdLauncher(command)
    return WarmLauncher()
