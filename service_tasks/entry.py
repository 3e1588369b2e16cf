"""`obsrv-task`: the console script every compiled task runs.

    obsrv-task --stage <stage> --task-id <task_key> --workflow-id <run id>
               --catalog <catalog> --schema <schema> --spec <compact JSON>

`prepare`, `base` and `evaluate` are the runtime's own stages; every other stage is a user task
type, run by `obsrv.service_tasks.ensembles.run_task(ctx)`. Exit codes: 0 done, 1 failed (a
`TaskError` prints one paragraph, anything else its traceback: in the Jobs UI that is useful),
2 bad arguments, 65 a final error that retrying cannot fix (`FinalTaskError`), 130 interrupted.
`main` raises `SystemExit` with that code instead of returning it (see `main`).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Sequence

from obsrv.compiler.spec import TASK_TYPES
from obsrv.service_tasks import final_failure
from obsrv.service_tasks.errors import (
    EXIT_FAILED,
    EXIT_FINAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    FinalTaskError,
    TaskError,
)
from obsrv.service_tasks.contract import StageContext, TaskRequest
from obsrv.service_tasks.io.store import TableStore

RUNTIME_STAGES = ("prepare", "base", "evaluate", "cleanup", "score")


def run_stage(request: TaskRequest, ctx: StageContext | None = None) -> None:
    """Run one task in this process (what `main` does after parsing; tests call it directly)."""
    from obsrv.service_tasks.context import RuntimeContext

    context: StageContext = ctx if ctx is not None else RuntimeContext(request)
    if request.stage == "prepare":
        from obsrv.service_tasks.stages.prepare import run_prepare

        run_prepare(request, context.store, log=context.log)
        if getattr(context, "mlflow_enabled", False):
            # create the tracking store and experiment once, before the parallel base tasks race
            context.setup_mlflow()
    elif request.stage == "base":
        from obsrv.service_tasks.stages.base_models import run_base

        run_base(context)
    elif request.stage == "evaluate":
        from obsrv.service_tasks.stages.evaluate import run_evaluate

        run_evaluate(context)
    elif request.stage == "cleanup":
        from obsrv.service_tasks.stages.cleanup import run_cleanup

        run_cleanup(request, context.store, log=context.log)
    elif request.stage == "score":
        from obsrv.service_tasks.stages.score import run_score

        run_score(request, context.store, log=context.log, home=context.home)
    elif request.stage in TASK_TYPES:
        from obsrv.service_tasks.ensembles import run_task

        run_task(context)
    else:
        known = ", ".join(RUNTIME_STAGES + TASK_TYPES)
        raise FinalTaskError(f"Unknown stage {request.stage!r}; expected one of {known}.")


def task_completed(request: TaskRequest, store: TableStore | None = None) -> bool:
    """Whether this task already finished for its workflow (for resuming a stopped local run).

    Each stage writes its completion marker last: `meta` (prepare), `models` (base and user tasks),
    the leaderboard (evaluate).
    """
    from obsrv.service_tasks.io import get_store, leaderboard_table, output_table

    if request.stage in ("cleanup", "score"):
        return False  # idempotent: a resumed run applies keep_runs again, or scores again
    st = store if store is not None else get_store()
    table = request.context.source.table
    if request.stage == "evaluate":
        name = leaderboard_table(request.catalog, request.schema, table, request.workflow_id)
    else:
        kind = "meta" if request.stage == "prepare" else "models"
        name = output_table(request.catalog, request.schema, table, kind, request.workflow_id, request.task_id)
    return bool(st.exists(name))


def main(argv: Sequence[str] | None = None) -> None:
    """The `obsrv-task` console script: returns None on success, raises `SystemExit(code)` otherwise.

    Why raise: a `python_wheel_task` calls this function inside the task's Python process and
    ignores what it returns. The Databricks CLI's wheel wrapper, which mimics the platform, does
    `entry[0].load()()` (github.com/databricks/cli, bundle/trampoline/python_wheel.go). Only an
    exception fails the task, so a returned 1 would leave it SUCCEEDED: no retries, no failure
    notifications, and the downstream tasks would run. The local runner calls this same function
    (`launchers.py`).
    """
    code = exit_code(argv)
    if code != EXIT_OK:
        raise SystemExit(code)


def exit_code(argv: Sequence[str] | None = None) -> int:
    """Run the task for `argv` (default `sys.argv[1:]`) and return its exit code (see EXIT_*)."""
    from obsrv.service_tasks.task_parameters import parse_request

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        request = parse_request(args)
    except SystemExit as exc:  # argparse already printed the usage
        return int(exc.code if isinstance(exc.code, int) else EXIT_USAGE)
    except (ValueError, KeyError) as exc:
        print(f"obsrv-task: cannot read the task parameters: {exc}", file=sys.stderr)
        return EXIT_USAGE
    label = f"[{request.task_id}]"
    print(
        f"{label} stage {request.stage}, workflow {request.workflow_id}, output "
        f"{request.catalog}.{request.schema}, pid {os.getpid()}",
        flush=True,
    )
    t0 = time.perf_counter()
    try:
        final_failure.refuse_if_failed_before(request)
        run_stage(request)
    except TaskError as exc:
        if exc.retryable:
            print(f"{label} error: {exc}", file=sys.stderr, flush=True)
            return EXIT_FAILED
        print(f"{label} error (final, not retryable): {exc}", file=sys.stderr, flush=True)
        final_failure.record(request, exc)
        return EXIT_FINAL
    except KeyboardInterrupt:
        print(f"{label} interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception:  # noqa: BLE001 - a batch task: the traceback is the useful part
        traceback.print_exc()
        print(f"{label} failed after {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
        return EXIT_FAILED
    print(f"{label} done in {time.perf_counter() - t0:.1f}s", flush=True)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    main()
