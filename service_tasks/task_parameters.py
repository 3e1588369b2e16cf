"""Building a `TaskRequest`: from the compiled argv (see ARCHITECTURE.md) or directly in tests."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Sequence

from obsrv.compiler.spec import Context
from obsrv.service_tasks.contract import TaskRequest

def capped_budget(planned: float) -> float:
    """The compiled search budget, capped by $OBSRV_TASK_BUDGET_SECONDS (`obsrv run --budget` or
    `--time-limit`'s plan) when that is set. The compiler plans `planned` from the job's critical
    path (compiler/timing.py) and passes it in the task payload, so both sides use one number."""
    budget = float(planned)
    env = os.environ.get("OBSRV_TASK_BUDGET_SECONDS")
    if env:
        try:
            budget = min(budget, float(env)) if budget > 0 else float(env)
        except ValueError:
            pass
    return max(budget, 0.0)


def build_request(
    *,
    stage: str,
    task_id: str,
    workflow_id: str,
    context: Context | dict[str, Any],
    catalog: str | None = None,
    schema: str | None = None,
    task: dict[str, Any] | None = None,
    upstream: Sequence[str] = (),
    budget_seconds: float,
    experiment: str = "",
    model: str = "",
) -> TaskRequest:
    """A TaskRequest with the defaults the compiler would fill in (output = the source's schema).

    `budget_seconds` is the search budget as given (the compiled one goes through `capped_budget`
    in `parse_request`)."""
    ctx = context if isinstance(context, Context) else Context.model_validate(context)
    task = dict(task or {})
    return TaskRequest(
        stage=stage,
        task_id=task_id,
        workflow_id=str(workflow_id),
        catalog=catalog or ctx.output_catalog,
        schema=schema or ctx.output_schema,
        context=ctx,
        task=task,
        upstream=tuple(sorted(upstream)),
        budget_seconds=float(budget_seconds),
        experiment=experiment,
        model=model,
    )


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obsrv-task", description="Run one compiled obsrv task.")
    parser.add_argument("--stage", required=True)
    parser.add_argument("--task-id", required=True)
    parser.add_argument("--workflow-id", required=True)
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--schema", required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--plan", help="path of the job's plan file (bundle_out/<job>.plan.json, synced by the bundle)")
    source.add_argument("--spec", help="inline compact JSON {context, task, upstream} (tests, older compiled jobs)")
    parser.add_argument("--experiment", default="", help="the job's MLflow experiment (the bundle's resource)")
    parser.add_argument("--model", default="", help="the champion's registered-model name in catalog.schema")
    parser.add_argument(
        "--input", default="", help="score stage: comma-separated input tables (the score job's `input` parameter)"
    )
    return parser


class PlanFileError(ValueError):
    """The plan file cannot be read or does not describe this task."""


def read_plan_entry(path: str, task_id: str) -> dict[str, Any]:
    """{context, task, upstream, budget_seconds} of `task_id` from the plan file at `path`."""
    try:
        with open(path, encoding="utf-8") as handle:
            plan = json.load(handle)
    except (OSError, ValueError) as error:
        raise PlanFileError(f"cannot read the plan file {path}: {error}") from error
    entry = plan.get("tasks", {}).get(task_id)
    if entry is None:
        raise PlanFileError(
            f"the plan file {path} has no task {task_id!r} (it lists {', '.join(sorted(plan.get('tasks', {})))}); "
            "recompile and redeploy the bundle"
        )
    payload = {"context": plan["context"], "task": entry.get("task") or {}, "upstream": entry.get("upstream") or []}
    if "budget_seconds" in entry:
        payload["budget_seconds"] = entry["budget_seconds"]
    return payload


def parse_request(argv: Sequence[str]) -> TaskRequest:
    """The TaskRequest for the compiled argv; unknown arguments are ignored (forward compatible)."""
    args, _unknown = argument_parser().parse_known_args(list(argv))
    payload = read_plan_entry(args.plan, args.task_id) if args.plan else json.loads(args.spec)
    if not isinstance(payload.get("budget_seconds"), (int, float)):
        raise ValueError(
            "the task's plan entry has no budget_seconds (compiled by an older obsrv?); recompile the job "
            "with `obsrv compile` and deploy it again"
        )
    task = dict(payload.get("task") or {})
    if args.input.strip():
        task["input"] = [name.strip() for name in args.input.split(",") if name.strip()]
    return build_request(
        stage=args.stage,
        task_id=args.task_id,
        workflow_id=args.workflow_id,
        catalog=args.catalog,
        schema=args.schema,
        context=payload["context"],
        task=task,
        upstream=payload.get("upstream") or [],
        budget_seconds=capped_budget(payload["budget_seconds"]),
        experiment=args.experiment,
        model=args.model,
    )
