"""Errors a user can fix (bad data, bad names); `obsrv-task` prints them without a traceback.

Also `obsrv-task`'s exit codes, here so that the local runner reads them without importing the task
code. On Databricks only "raised or not" reaches the platform (see `entry.main`).
"""

EXIT_OK = 0
EXIT_FAILED = 1  # may succeed when retried (the task's max_retries apply)
EXIT_USAGE = 2  # argparse's own code for bad arguments
EXIT_FINAL = 65  # sysexits' EX_DATAERR: a FinalTaskError, which retrying cannot fix
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


class TaskError(Exception):
    """A problem with the user's data or spec, explained in one paragraph.

    ``retryable`` says whether running the task again, unchanged, could succeed. It is True for a
    plain TaskError (an upstream table not there yet, a flaky store); errors that depend only on the
    task's inputs (a missing column, a single class, a name Unity Catalog rejects) are final:
    `obsrv-task` exits with `EXIT_FINAL` and no retry repeats the work (docs/runtime.md, "Retries").
    """

    retryable: bool = True

    def __init__(self, *args: object, retryable: bool | None = None) -> None:
        super().__init__(*args)
        if retryable is not None:
            self.retryable = retryable


class FinalTaskError(TaskError):
    """A TaskError that the same inputs always raise again: retrying cannot fix it."""

    retryable = False
