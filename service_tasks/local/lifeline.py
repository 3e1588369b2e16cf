"""Task processes die with the runner, even when the runner is killed with SIGKILL.

Three mechanisms, because each covers a case the others miss:

* **Parent-death signal** (Linux `prctl(PR_SET_PDEATHSIG)`, `man 2 prctl`): the kernel sends a
  signal to a process when its parent dies. The forkserver and each task process ask for SIGKILL.
  The signal fires when the parent *thread* that forked the child exits, not the parent process:
  the runner starts its tasks (and, on the first warm start, the forkserver) from its main thread,
  which lives as long as the runner (`LocalRunner.run` must run there anyway, for its signal
  handlers). A child checks its parent right after the call, because a parent that died between
  the fork and the call sends nothing.
* **Watchdog pipe**: the runner holds the only write end of a pipe (`runner_watch_fd`); every task
  gets the read end. When the runner dies, however it dies, the kernel closes the write end and a
  read returns end-of-file. This also works where there is no `prctl` (macOS).
* **Group guard**: a parent-death signal is not inherited, so a task's own children (joblib
  workers, anything it spawned) would outlive it. Each task forks a small guard into its own
  process group (the task called `setsid`) right after it starts, while still single-threaded. The
  guard waits for end-of-file on the watchdog pipe or for its parent-death signal (the task
  ended), then SIGKILLs the whole group, itself included. So no process of a task outlives the task
  or the runner.

This module imports only the standard library: the cold launcher runs it as a script
(`python -I -S lifeline.py RUNNER_PID WATCH_FD COMMAND...`) that binds itself to the runner and
then execs the task command, and the forkserver imports `forkserver_lifeline`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# The guard's parent-death signal: not SIGTERM (the runner's kill_tree sends that to the group, and
# the guard should then just die with it) and not SIGKILL (the guard must act on it).
GUARD_SIGNAL = signal.SIGUSR1

_WATCH: tuple[int, int] | None = None


def set_parent_death_signal(sig: int) -> bool:
    """Have the kernel send `sig` to this process when the thread that forked it exits.

    Returns False where the platform has no such call (the watchdog pipe still covers it).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        # CDLL(None): the symbols already loaded into the interpreter, glibc's prctl among them
        # (ctypes.util.find_library would start a subprocess).
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(expected_parent: int | None = None) -> None:
    """SIGKILL this process when its parent dies; exit now if the parent is already gone."""
    parent = os.getppid() if expected_parent is None else expected_parent
    if set_parent_death_signal(signal.SIGKILL) and os.getppid() != parent:
        os._exit(128 + signal.SIGKILL)  # the parent died before the call: nobody would signal


def runner_watch_fd() -> int:
    """The read end of this runner's watchdog pipe (created once; the write end is never closed,
    so end-of-file means this process is gone). Both ends are non-inheritable: a child gets the
    read end only where a launcher passes it on explicitly."""
    global _WATCH
    if _WATCH is None:
        _WATCH = os.pipe()
    return _WATCH[0]


class _TaskGone(Exception):
    pass


def start_group_guard(watch_fd: int) -> int:
    """Fork the guard into the caller's process group; returns its pid (see the module doc).

    Call it right after `setsid()`, before the task starts threads: the guard runs only system
    calls, but a fork of a multi-threaded process may inherit a lock another thread held.
    """
    pgid, task = os.getpgid(0), os.getpid()
    pid = os.fork()
    if pid:
        return pid
    try:
        _guard(watch_fd, pgid, task)
    finally:
        os._exit(0)


def _guard(watch_fd: int, pgid: int, task: int) -> None:
    def task_gone(signum: int, frame: object) -> None:
        raise _TaskGone

    signal.signal(GUARD_SIGNAL, task_gone)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    set_parent_death_signal(GUARD_SIGNAL)
    try:
        if os.getppid() == task:  # else the task ended before the guard could watch it
            while os.read(watch_fd, 1):  # the runner never writes: b"" is its death
                pass
    except _TaskGone:
        pass
    except OSError:
        pass  # a watch fd that cannot be read cannot protect anything: clean up now
    os.killpg(pgid, signal.SIGKILL)


def bind_to_runner(runner_pid: int | None, watch_fd: int) -> None:
    """In a new task process (its own session already): die with the parent, start the guard,
    and drop the watch fd, which the task itself does not need."""
    die_with_parent(runner_pid)
    start_group_guard(watch_fd)
    os.close(watch_fd)


def _shim(argv: list[str]) -> None:
    """`lifeline.py RUNNER_PID WATCH_FD COMMAND...`: the cold launcher's first program."""
    runner_pid, watch_fd, command = int(argv[0]), int(argv[1]), argv[2:]
    bind_to_runner(runner_pid, watch_fd)
    # The parent-death signal survives execve (it is cleared only for set-user-ID programs).
    os.execvp(command[0], command)


if __name__ == "__main__":
    _shim(sys.argv[1:])
