"""How `obsrv run` starts one task process: the two launchers behind `LocalRunner`.

Both start every task in its own process and its own process group (so a timeout or Ctrl-C can
kill the whole tree, joblib workers included), with the task's environment, its log file as stdout
and stderr, and the compiled argv. Both bind each task to the runner (`lifeline`): a task and its
children die with the runner, even when the runner is killed with SIGKILL. They differ in where the
process comes from:

* `ColdLauncher`: a fresh interpreter per task (`python -c <obsrv-task entry point> ARGV`), exactly
  how a Databricks wheel task starts. Each task pays ~3-4 s of imports (pandas, sklearn, MLflow,
  the boosting libraries) and MLflow's first-use caches.
* `WarmLauncher` (the default): the task process is forked from a server that imported those
  libraries once (`multiprocessing`'s forkserver, preloading `obsrv.service_tasks.local.warm_imports`), then
  runs the same entry point with the same argv. Still one fresh process per task, so no state leaks
  from one task to the next; only the import cost is shared. The server holds no state of its own
  beyond imported modules; the only threads in it are the libraries' own (OpenBLAS, jemalloc),
  which install fork handlers. The gain is measured by `benchmarks/task_start.py`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from importlib import import_module
from importlib.metadata import entry_points
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Protocol

from obsrv.service_tasks.local import lifeline

ENTRY_POINT_NAME = "obsrv-task"
PRELOAD_MODULE = "obsrv.service_tasks.local.warm_imports"
# Imported by the forkserver before any other preload module: the server dies with the runner.
LIFELINE_PRELOAD = "obsrv.service_tasks.local.forkserver_lifeline"
# What the Databricks CLI's wheel wrapper does (github.com/databricks/cli,
# bundle/trampoline/python_wheel.go): find the entry point in the distribution's metadata and call
# it, ignoring its return value.
PLATFORM_CALL = (
    "import sys; from importlib import metadata; "
    f"[ep for ep in metadata.distribution('obsrv').entry_points if ep.name == '{ENTRY_POINT_NAME}'][0].load()()"
)


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
    kill_trees([process], grace_seconds)


def kill_trees(processes: list[TaskProcess], grace_seconds: float = 5.0) -> None:
    """SIGTERM every task's process group at once, wait up to one shared grace for the tasks, then
    SIGKILL each group: a child that ignored SIGTERM is not left behind by a task that obeyed it."""
    for process in processes:
        _signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
        else:
            # The task is gone (and reaped: its pid is no longer a process to fall back on); any
            # member of its group that ignored SIGTERM is not.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


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
            entry_point_target()  # fails early, with a hint, when the package is not installed
            # The platform's call (see entry.main): load the entry point from the installed
            # distribution's metadata and call it with no arguments; SystemExit sets the code.
            command = [sys.executable, "-c", PLATFORM_CALL]
        self.command = list(command)

    def start(self, argv: list[str], env: dict[str, str], log_path: Path) -> TaskProcess:
        return self._popen([*self.command, *argv], env, log_path)

    def start_function(self, target: str, argv: list[str], env: dict[str, str], log_path: Path) -> TaskProcess:
        """Run `module:function` with `argv` as sys.argv[1:] in a task process (the runner's own
        helpers, not tasks), called as the entry point is: no arguments, failure = an exception."""
        module, _, attr = target.partition(":")
        code = f"from {module} import {attr} as main; main()"
        return self._popen([sys.executable, "-c", code, *argv], env, log_path)

    def _popen(self, command: list[str], env: dict[str, str], log_path: Path) -> TaskProcess:
        watch_fd = lifeline.runner_watch_fd()
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                _bound_to_runner(command, watch_fd),
                pass_fds=(watch_fd,),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                # Its own process group: Ctrl-C reaches only the runner, which then stops the
                # children itself, and a timeout can kill the whole tree.
                start_new_session=True,
            )


def _bound_to_runner(command: list[str], watch_fd: int) -> list[str]:
    """`command` behind the lifeline shim, which binds the new process to this runner and then
    execs it: any command (a stand-in too) gets the same protection, for one small interpreter
    start (`-I -S`: no site packages, no environment, no script folder on sys.path)."""
    return [sys.executable, "-I", "-S", lifeline.__file__, str(os.getpid()), str(watch_fd), *command]


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

    `target` is the `module:function` called with no arguments and `sys.argv` set, as a wheel task
    calls its entry point: it returns on success and raises `SystemExit(code)` on failure.
    """

    name = "warm"

    def __init__(self, target: str | None = None, preload: tuple[str, ...] = (PRELOAD_MODULE,)) -> None:
        if not warm_supported():
            raise LaunchError("warm task start needs fork (Linux or macOS); use --cold")
        self.target = target or entry_point_target()
        self._context = multiprocessing.get_context("forkserver")
        # The forkserver is one per runner process (it exits with it); the preload applies when it
        # first starts.
        self._context.set_forkserver_preload([LIFELINE_PRELOAD, *preload])

    def start(self, argv: list[str], env: dict[str, str], log_path: Path) -> TaskProcess:
        return self.start_function(self.target, argv, env, log_path)

    def start_function(self, target: str, argv: list[str], env: dict[str, str], log_path: Path) -> TaskProcess:
        """Fork `module:function` (argv as sys.argv[1:]) from the server, like a task (the runner's own helpers)."""
        # multiprocessing hands a pickled Connection's descriptor to the forked task (SCM_RIGHTS).
        watch = Connection(os.dup(lifeline.runner_watch_fd()), writable=False)
        process = self._context.Process(
            target=_run_forked_task,
            args=(target, list(argv), dict(env), str(log_path), watch),
            name=f"obsrv-task {' '.join(argv[:4])}",
            daemon=False,  # tasks may start their own worker processes (joblib)
        )
        try:
            with _main_module_hidden():
                process.start()
        finally:
            watch.close()
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


def _run_forked_task(target: str, argv: list[str], env: dict[str, str], log_path: str,
                     watch: Connection | None = None) -> None:
    """Runs in the forked task process: become a cold task in all but the imports."""
    os.setsid()
    if watch is not None:
        _bind_forked_task(watch)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)  # the server ignores it: forkserver_lifeline
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
    # Called as a python_wheel_task calls it: no arguments (sys.argv holds them), return value
    # ignored, failure = an exception. SystemExit carries the exit code; a return is success.
    try:
        getattr(import_module(module), attr)()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    del limits
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


def _bind_forked_task(watch: Connection) -> None:
    """Die with the forkserver (which dies with the runner) and guard this task's group."""
    lifeline.bind_to_runner(None, os.dup(watch.fileno()))
    watch.close()


def warm_supported() -> bool:
    return sys.platform != "win32" and "forkserver" in multiprocessing.get_all_start_methods()


def make_launcher(cold: bool, command: list[str] | None = None) -> Launcher:
    """The runner's launcher: cold when asked, when a stand-in command is given, or where the
    platform cannot fork (Windows; the run's first line says which launcher runs the tasks)."""
    if cold or command is not None or not warm_supported():
        return ColdLauncher(command)
    return WarmLauncher()
