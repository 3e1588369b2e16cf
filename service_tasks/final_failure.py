"""Final failures on Databricks: a retry of a task that failed for good stops at once.

Locally, `obsrv-task` exits with `entry.EXIT_FINAL` and the runner does not retry that code. On
Databricks only "raised or not" reaches the platform, and a task has no per-attempt "do not retry"
switch: its retry settings are `max_retries`, `min_retry_interval_millis` and `retry_on_timeout`
and nothing else (jobs.Task in the bundle schema, ../shared/reference/databricks_bundle_schema.json;
`task_retry_mode` exists only for continuous jobs). So the first attempt that fails with a
`FinalTaskError` records it in a one-row marker table, `<table>_failed_<run id>_<task>`, and
every later attempt of the same task in the same run finds the marker and fails within seconds,
saying that it does not repeat the work. The cleanup task drops the marker with the run's other
intermediate tables.
"""

from __future__ import annotations

import pandas as pd

from obsrv.service_tasks.errors import FinalTaskError, TaskError
from obsrv.service_tasks.io import TableName, get_store, on_databricks, output_table
from obsrv.service_tasks.contract import TaskRequest

MARKER_KIND = "failed"  # short: the name must fit UC's 255 characters with the longest task id


class AlreadyFailed(FinalTaskError):
    """This attempt stopped because an earlier one failed for good (its marker is already there)."""


def markers_enabled() -> bool:
    """Markers are for platform retries; the local runner reads the exit code instead (and a local
    `--resume` after fixing the data must run the task again)."""
    return on_databricks()


def marker_table(request: TaskRequest) -> TableName:
    return output_table(request.catalog, request.schema, request.context.source.table, MARKER_KIND,
                        request.workflow_id, request.task_id)


def record(request: TaskRequest, error: TaskError, store: object | None = None) -> None:
    """Write the marker for a final failure (best effort: failing to write it must not hide the
    error itself, which the caller reports either way)."""
    if not markers_enabled() or isinstance(error, AlreadyFailed):
        return
    try:
        st = store if store is not None else get_store()
        st.write(marker_table(request), pd.DataFrame({"message": [str(error)]}))  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - the task fails with the original error regardless
        print(f"[{request.task_id}] could not record the final failure ({exc}); a retry will redo the work")


def refuse_if_failed_before(request: TaskRequest, store: object | None = None) -> None:
    """Raise a FinalTaskError when an earlier attempt of this task in this run failed for good."""
    if not markers_enabled():
        return
    st = store if store is not None else get_store()
    table = marker_table(request)
    if not st.exists(table):  # type: ignore[attr-defined]
        return
    frame = st.read(table)  # type: ignore[attr-defined]
    message = str(frame["message"].iloc[0]) if len(frame) else "(no message recorded)"
    raise AlreadyFailed(
        f"Not retrying: an earlier attempt of task {request.task_id!r} in run {request.workflow_id} failed with "
        f"an error that retrying cannot fix, so this attempt does not repeat the work. The error was: {message} "
        f"Fix the cause and start a new run (to repair this run instead, drop {table.full} first)."
    )
