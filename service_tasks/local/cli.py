"""`obsrv run` and `obsrv data` argument definitions (owned by the runtime side).

The user CLI lives in obsrv.compiler.cli; it calls add_run_parser/add_data_parser so that the
runtime owns its own options. Only argparse is imported here: the heavy modules are imported
inside the command functions, which keeps `obsrv compile` fast.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pathlib is imported lazily, where it is used
    from pathlib import Path

RUN_EPILOG = """examples:
  obsrv data demo && obsrv run examples/credit_risk.yaml --time-limit 120
  obsrv run spec.yaml --workdir /tmp/ws --jobs 2
  obsrv run spec.yaml --time-limit 300            # plan the search budgets to finish in ~5 minutes
  obsrv run spec.yaml --resume                    # continue the latest run; finished tasks are skipped
  obsrv run spec.yaml --resume --from stack_top_any  # re-run one task and everything after it
  obsrv run spec.yaml --workflow-id 20261126101500 --only evaluate
"""

SCORE_EPILOG = """examples:
  obsrv run examples/credit_scoring.yaml --time-limit 120 && obsrv score examples/credit_scoring.yaml
  obsrv score examples/credit_risk.yaml --table main.credit_risk.training_data   # a spec without a score block
"""

DATA_EPILOG = """examples:
  obsrv data demo                                  # credit_data → main.credit_risk.training_data
  obsrv data load loans.csv --table main.credit_risk.training_data
  obsrv data load part.parquet --table main.sales.orders --workdir /tmp/ws
"""


def positive_seconds(text: str) -> float:
    """argparse type of --budget and --time-limit: a finite number of seconds above 0. float()
    accepts "nan" and "inf", and NaN fails every comparison, so they are refused by name."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite number of seconds above 0, e.g. 60")
    return value


def task_slots(text: str) -> int:
    """argparse type of --jobs: a whole number of parallel tasks, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of tasks") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least 1 task slot")
    return value


def add_run_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="compile SPEC and execute the compiled job on this machine",
        description="Compile SPEC, then run every task of the compiled job through the obsrv-task "
        "entry point, each in its own process, in dependency order, honouring the compiled "
        "timeouts and retries. Tables go to a local Delta warehouse, runs to a local MLflow store.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", help="obsrv YAML spec")
    parser.add_argument("--workdir", default=".", help="folder that holds .obsrv/ (default: .)")
    parser.add_argument(
        "--budget", type=positive_seconds, default=None, metavar="SECONDS",
        help="cap on the hyperparameter-search seconds of each search task (quick local runs)",
    )
    parser.add_argument(
        "--time-limit", type=positive_seconds, default=None, metavar="SECONDS",
        help="wall-clock target for the whole run: each search task's budget is planned from the time "
        "left (a target: every family still trains its default config)",
    )
    parser.add_argument("--only", metavar="ID", help="run just this task of an earlier run")
    parser.add_argument("--from", dest="from_task", metavar="ID", help="re-run this task and everything downstream")
    parser.add_argument("--resume", action="store_true", help="continue the latest run of this job")
    parser.add_argument("--workflow-id", metavar="ID", help="run (or continue) this workflow id")
    parser.add_argument("--jobs", type=task_slots, default=None, help="tasks run in parallel (default: CPU cores)")
    parser.add_argument(
        "--no-wait", dest="wait", action="store_false", default=None,
        help="if another run of this job is running in the workdir, refuse (exit 1, naming it) instead of "
        "waiting for it to end (the default, like the Databricks job queue with max_concurrent_runs: 1)",
    )
    parser.add_argument("--no-live", action="store_true", help="plain progress lines instead of a live table")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="start every task in a fresh Python interpreter, as Databricks does (default: fork each "
        "task from a server that imported the libraries once, ~3-4 s faster per task)",
    )
    parser.set_defaults(func=_run)


def add_score_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="run SPEC's compiled scoring job on this machine with the local champion",
        description="Compile SPEC, then run its scoring job <name>_score through the local runner: the "
        "champion registered by `obsrv run` scores the input table(s) of the spec's `score` block (or "
        "--table) from the local warehouse into <output schema>.<score.output>.",
        epilog=SCORE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", help="obsrv YAML spec")
    parser.add_argument(
        "--table", action="append", default=[], metavar="CATALOG.SCHEMA.TABLE",
        help="score this table instead of score.input (repeat for several)",
    )
    parser.add_argument("--workdir", default=".", help="folder that holds .obsrv/ (default: .)")
    parser.add_argument("--no-live", action="store_true", help="plain progress lines instead of a live table")
    parser.add_argument("--cold", action="store_true", help="start the task in a fresh Python interpreter")
    parser.set_defaults(func=_score)


def add_data_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="load data into the local warehouse",
        description="Load tables into the local warehouse that stands in for Unity Catalog.",
        epilog=DATA_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="data_command", metavar="{load,demo}", required=True)
    load = actions.add_parser("load", help="load a CSV or Parquet file as catalog.schema.table", epilog=DATA_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    load.add_argument("file", help="a .csv or .parquet file")
    load.add_argument("--table", required=True, help="three-level name, e.g. main.credit_risk.training_data")
    load.add_argument("--workdir", default=".", help="folder that holds .obsrv/ (default: .)")
    load.set_defaults(func=_data_load)
    demo = actions.add_parser("demo", help="load the demo datasets (credit_data and more)", epilog=DATA_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--workdir", default=".", help="folder that holds .obsrv/ (default: .)")
    demo.set_defaults(func=_data_demo)


def _run(args: argparse.Namespace) -> int:
    from obsrv.compiler.api import SpecError
    from obsrv.service_tasks.local.launchers import LaunchError
    from obsrv.service_tasks.local.scheduler import RunError, run_workflow
    from obsrv.service_tasks.local.workdir import JobBusy, WorkdirError, write_error

    try:
        return run_workflow(
            args.spec,
            workdir=args.workdir,
            budget=args.budget,
            only=args.only,
            from_task=args.from_task,
            workflow_id=args.workflow_id,
            resume=args.resume,
            jobs=args.jobs,
            live=False if args.no_live else None,
            cold=args.cold,
            time_limit=args.time_limit,
            wait=args.wait,
        )
    except SpecError as error:
        print(error.render(), file=sys.stderr)
        return 1
    except (RunError, LaunchError, JobBusy, WorkdirError) as error:
        print(f"obsrv run: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        # A full disk or a folder made read-only mid-run is the environment, not an obsrv bug.
        message = write_error(error)
        if message is None:
            raise
        print(f"obsrv run: error: {message}", file=sys.stderr)
        return 1


def _score(args: argparse.Namespace) -> int:
    from obsrv.compiler.api import SpecError
    from obsrv.compiler.spec import UC_TABLE_PATTERN
    from obsrv.service_tasks.local.launchers import LaunchError
    from obsrv.service_tasks.local.scheduler import RunError, run_workflow
    from obsrv.service_tasks.local.workdir import JobBusy, WorkdirError
    import re

    bad = [t for t in args.table if not re.fullmatch(UC_TABLE_PATTERN, t)]
    if bad:
        print(f"obsrv score: error: --table {bad[0]!r} is not catalog.schema.table "
              "(three parts of letters, digits and underscores)", file=sys.stderr)
        return 2
    try:
        return run_workflow(args.spec, workdir=args.workdir, live=False if args.no_live else None, cold=args.cold,
                            score=True, score_tables=args.table)
    except SpecError as error:
        print(error.render(), file=sys.stderr)
        return 1
    except (RunError, LaunchError, JobBusy, WorkdirError) as error:
        print(f"obsrv score: error: {error}", file=sys.stderr)
        return 1


def _home(workdir: str) -> Path:
    from pathlib import Path

    return (Path(workdir) / ".obsrv").resolve()


def _data_load(args: argparse.Namespace) -> int:
    from obsrv.service_tasks.local.load_data import load_file
    from obsrv.service_tasks.errors import TaskError

    try:
        loaded = load_file(args.file, args.table, _home(args.workdir))
    except TaskError as error:
        print(f"obsrv data load: error: {error}", file=sys.stderr)
        return 1
    for note in loaded.notes:
        print(f"obsrv data load: note: {note}", file=sys.stderr)
    for warning in loaded.warnings:
        print(f"obsrv data load: warning: {warning}", file=sys.stderr)
    print(f"loaded {loaded.rows} rows into {loaded.table}")
    return 0


def _data_demo(args: argparse.Namespace) -> int:
    from obsrv.service_tasks.local.load_data import load_demo
    from obsrv.service_tasks.errors import TaskError

    try:
        for name, rows in load_demo(_home(args.workdir)):
            print(f"loaded {rows} rows into {name}")
    except TaskError as error:
        print(f"obsrv data demo: error: {error}", file=sys.stderr)
        return 1
    return 0
