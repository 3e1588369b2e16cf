"""The `cleanup` stage: bounded storage in the output schema.

Each run writes a few dozen tables (`{table}_{kind}_{run id}_{task}`); nothing else removes them,
and a schema holds at most 10,000 tables. The compiled job ends with a `cleanup` task
(`run_if: ALL_DONE`: it runs whatever the outcome of `evaluate`) that applies `context.keep_runs`
to this job's runs in the output schema:

* A run is known by its prepare tables (`prepared`, `meta`, or a `failed` marker of prepare) or its
  leaderboard. Runs are ordered by run id (Databricks run ids grow over time, as do local ones);
  the current run is the newest.
* The current run keeps every table: it is what a person (or `obsrv run`'s summary, or a
  benchmark) inspects right after the run, and the next run's cleanup trims it like any other.
* The champion run is the newest run with a leaderboard: its evaluate registered the model that
  `@champion` points to. Its leaderboard and its prepared sample (`prepared`, `meta`: the baseline
  that batch-scoring monitoring compares with) are always kept. The served model itself lives in
  MLflow (pickled by value), which cleanup never touches: serving needs no table.
* Of the newest `keep_runs` runs, a run whose evaluate finished keeps only its leaderboard; a run
  whose evaluate did not finish keeps every table, so that it can still be resumed or repaired.
* Older runs lose every table, except the champion run's leaderboard and prepared sample.

So the schema holds the current run's tables, at most `keep_runs` leaderboards plus the
champion's leaderboard and sample, and the intermediate tables of at most `keep_runs - 1`
unfinished earlier runs: a bound that does not grow with the number of runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from obsrv.service_tasks.io import TableName
from obsrv.service_tasks.io.naming import workflow_part
from obsrv.service_tasks.contract import TaskRequest

PREPARE_KINDS = ("prepared", "meta", "failed")
BASELINE_KINDS = ("prepared", "meta")  # the champion run's prepared sample
# A kind ends with a letter and a task id starts with one, so `_<run id>_` is found unambiguously
# for numeric run ids (a kind like `oof_12` cannot be mistaken for kind `oof` of run 12).
_KIND = r"[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z])?"
_TASK = r"[A-Za-z_][A-Za-z0-9_]*"


@dataclass
class CleanupPlan:
    """What cleanup keeps and drops, per run id (the run-id part of the table names)."""

    runs: list[str]  # oldest first
    champion_run: str | None
    keep: list[str] = field(default_factory=list)  # table names
    drop: list[str] = field(default_factory=list)


def _sort_key(run: str) -> tuple[int, int, str]:
    return (0, int(run), "") if run.isdigit() else (1, 0, run)


def discover_runs(table: str, names: list[str]) -> set[str]:
    pattern = re.compile(
        rf"{re.escape(table)}_(?:leaderboard_(?P<lb>[A-Za-z0-9_]+)|(?:{'|'.join(PREPARE_KINDS)})_(?P<wf>[A-Za-z0-9_]+)_prepare)"
    )
    runs = set()
    for name in names:
        match = pattern.fullmatch(name)
        if match:
            runs.add(match.group("lb") or match.group("wf"))
    return runs


def tables_of_run(table: str, run: str, names: list[str]) -> dict[str, str]:
    """{table name: kind} of one run (the leaderboard has kind `leaderboard`)."""
    leaderboard = f"{table}_leaderboard_{run}"
    pattern = re.compile(rf"{re.escape(table)}_(?P<kind>{_KIND})_{re.escape(run)}_{_TASK}")
    out = {}
    for name in names:
        if name == leaderboard:
            out[name] = "leaderboard"
        else:
            match = pattern.fullmatch(name)
            if match:
                out[name] = match.group("kind")
    return out


def plan_cleanup(table: str, current_run: str, names: list[str], keep_runs: int) -> CleanupPlan:
    """The pure part: which of `names` (the output schema's tables) to keep and drop."""
    if keep_runs < 1:
        raise ValueError("keep_runs must be at least 1")
    runs = sorted(discover_runs(table, names) - {current_run}, key=_sort_key) + [current_run]
    per_run = {run: tables_of_run(table, run, names) for run in runs}
    evaluated = [run for run in runs if "leaderboard" in per_run[run].values()]
    champion = evaluated[-1] if evaluated else None
    recent = set(runs[-keep_runs:])
    plan = CleanupPlan(runs=runs, champion_run=champion)
    for run in runs:
        for name, kind in sorted(per_run[run].items()):
            if run == current_run:
                keep = True
            elif run == champion and kind in ("leaderboard", *BASELINE_KINDS):
                keep = True
            elif run in recent:
                keep = kind == "leaderboard" or run not in evaluated
            else:
                keep = False
            (plan.keep if keep else plan.drop).append(name)
    return plan


def run_cleanup(request: TaskRequest, store: object, log: object = print) -> CleanupPlan:
    """Apply `context.keep_runs` to this job's tables in the output schema (see the module doc)."""
    table = request.context.source.table
    names = store.list_tables(request.catalog, request.schema)  # type: ignore[attr-defined]
    plan = plan_cleanup(table, workflow_part(request.workflow_id), list(names), request.context.keep_runs)
    for name in plan.drop:
        store.drop(TableName(request.catalog, request.schema, name))  # type: ignore[attr-defined]
    log(  # type: ignore[operator]
        f"cleanup: {len(plan.runs)} run(s) of this job in {request.catalog}.{request.schema}; champion run "
        f"{plan.champion_run or '(none yet)'}; kept {len(plan.keep)} table(s), dropped {len(plan.drop)} "
        f"(context.keep_runs: {request.context.keep_runs})"
    )
    return plan


__all__ = ["CleanupPlan", "discover_runs", "plan_cleanup", "run_cleanup", "tables_of_run"]
