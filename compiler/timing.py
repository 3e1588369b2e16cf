"""Search budgets and task timeouts planned from the job's critical path.

On serverless, every task pays a start-up before its own work: compute is allocated and the task's
environment (obsrv's wheel and its ML libraries) is installed. A job's tasks run in dependency
order, so the job's wall time is its *critical path*: the longest chain of

    start-up allowance + work allowance + search budget

over the DAG (prepare -> base models -> the user's tasks -> evaluate). This module plans the search
budgets so that the critical path takes `PLANNED_SHARE` of the job timeout, and gives each task a
timeout of its own planned time plus its slack on that plan (the classic critical-path "float"). A
job timeout too short for the path even with minimum searches is reported by the compiler as a
warning (OBS403) naming the path and the time it needs.

The budgets travel to the tasks in the compiled payload (`budget_seconds`, see
service_tasks/task_parameters.py), so the compiler and the runtime cannot disagree about them.

Pure standard library (graphlib): it runs on the compile path.
"""

from __future__ import annotations

import graphlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

# Serverless start-up per task, by environment. Not measured here (no workspace is reachable), so a
# deliberately generous allowance: Databricks documents serverless compute as starting in seconds
# to a minute, but each task then installs its environment's dependencies, and obsrv's (xgboost,
# lightgbm, catboost, scikit-learn, mlflow, pandas, pyarrow) are several hundred MB of wheels, a
# minute or two of pip when the environment is not cached. GPU adds the allocation of an
# accelerator, the usual wait on serverless GPU, and larger CUDA wheels.
STARTUP_ALLOWANCE_SECONDS = {"cpu": 180, "gpu": 300}
# Work a stage does besides its search (which its budget bounds), by stage class. prepare reads,
# samples and writes the source (bounded by `sample.size`); search stages write their out-of-fold
# and holdout predictions and log models to MLflow after the search; combiners fit meta-models on
# predictions (nested out-of-fold, stack_blend re-fits members); evaluate scores every model,
# writes the leaderboard and registers the champion.
WORK_ALLOWANCE_SECONDS = {"prepare": 120, "search": 90, "combiner": 120, "evaluate": 120}
# Search stages and their relative share of the search time: the base models get 3 parts for every
# 2 of the user's training stages (boost, route_*), the ratio of the shares the runtime used before
# budgets were planned (30 % and 20 % of the job timeout). The other stages search nothing.
SEARCH_WEIGHT = {"base": 3, "boost": 2, "route_cluster": 2, "route_feature": 2, "route_external": 2}
# The critical path is planned to take this share of the job timeout; the rest is slack for start-ups
# slower than the allowance, a retry of a quick stage, or a source larger than usual.
PLANNED_SHARE = 0.8
# A search stage never gets less: a budget of 0 would mean "train the default configs to the end,
# unbounded" at run time (service_tasks/zoo/time_limits.py), the opposite of what a tight job needs.
MIN_SEARCH_SECONDS = 30
# No task timeout below this (a start-up alone can take minutes), unless the job timeout is shorter.
MIN_TASK_TIMEOUT_SECONDS = 300


def stage_class(stage: str) -> str:
    if stage in ("prepare", "evaluate"):
        return stage
    return "search" if stage in SEARCH_WEIGHT else "combiner"


@dataclass(frozen=True)
class Stage:
    """What the planner needs of one task."""

    key: str
    stage: str
    environment: str  # cpu | gpu
    depends_on: tuple[str, ...]
    timeout_override: int | None = None  # the user's own `timeout:` for this task

    @property
    def fixed_seconds(self) -> int:
        """Start-up plus the work outside the search."""
        return STARTUP_ALLOWANCE_SECONDS[self.environment] + WORK_ALLOWANCE_SECONDS[stage_class(self.stage)]

    def budget(self, unit: int) -> int:
        """The search budget at `unit` seconds per weight, within the user's own task timeout."""
        weight = SEARCH_WEIGHT.get(self.stage, 0)
        if weight == 0:
            return 0
        budget = unit * weight
        if self.timeout_override is not None:
            budget = min(budget, self.timeout_override - self.fixed_seconds)
        return max(MIN_SEARCH_SECONDS, budget)


@dataclass(frozen=True)
class Timing:
    """The plan: per-task budgets and timeouts, and the critical path they were planned on."""

    job_timeout: int
    budgets: dict[str, int]
    timeouts: dict[str, int]
    critical_path: tuple[str, ...]
    path_seconds: int  # the critical path's planned time (start-ups, work, budgets)
    min_path_seconds: int  # the same with minimum searches: what the job needs at the very least
    startups_on_path: int  # start-up allowance on the critical path, in seconds

    @property
    def fits(self) -> bool:
        """Whether the job timeout holds the critical path with minimum searches and the slack."""
        return self.min_path_seconds <= PLANNED_SHARE * self.job_timeout

    @property
    def needed_timeout(self) -> int:
        """The smallest job timeout, in whole minutes, that holds the path with minimum searches."""
        return 60 * math.ceil(self.min_path_seconds / PLANNED_SHARE / 60)


def _order(stages: Sequence[Stage]) -> list[Stage]:
    """The stages in dependency order (graphlib; a cycle raises, but checks.py reports those first)."""
    by_key = {s.key: s for s in stages}
    return [by_key[k] for k in graphlib.TopologicalSorter({s.key: s.depends_on for s in stages}).static_order()]


def _longest(order: Sequence[Stage], unit: int) -> tuple[dict[str, int], dict[str, str | None]]:
    """Finish time of each task on the longest path to it, and its predecessor on that path."""
    finish: dict[str, int] = {}
    before: dict[str, str | None] = {}
    for stage in order:
        key = stage.key
        # ties go to the dependency listed first, so the reported path is deterministic
        prev = max(stage.depends_on, key=finish.__getitem__, default=None)
        start = finish[prev] if prev is not None else 0
        finish[key] = start + stage.fixed_seconds + stage.budget(unit)
        before[key] = prev
    return finish, before


def _path_to(end: str, before: dict[str, str | None]) -> tuple[str, ...]:
    path = [end]
    while (prev := before[path[-1]]) is not None:
        path.append(prev)
    return tuple(reversed(path))


def plan_timing(stages: Sequence[Stage], job_timeout: int) -> Timing:
    """Budgets that make the critical path take PLANNED_SHARE of `job_timeout`, and timeouts."""
    target = PLANNED_SHARE * job_timeout
    order = _order(stages)

    def length(unit: int) -> int:
        return max(_longest(order, unit)[0].values())

    # the largest whole number of seconds per weight whose critical path still fits (monotone)
    low, high = 0, job_timeout
    while low < high:
        mid = (low + high + 1) // 2
        if length(mid) <= target:
            low = mid
        else:
            high = mid - 1
    unit = low
    min_finish, _ = _longest(order, 0)
    fits = max(min_finish.values()) <= target
    finish, before = _longest(order, unit)
    end = max(finish, key=lambda k: finish[k])
    path = _path_to(end, before)
    by_key = {s.key: s for s in stages}
    # time after each task on its longest downstream chain
    after: dict[str, int] = {s.key: 0 for s in stages}
    for stage in reversed(order):
        key = stage.key
        own = stage.fixed_seconds + stage.budget(unit)
        for dep in stage.depends_on:
            after[dep] = max(after[dep], own + after[key])
    budgets = {s.key: s.budget(unit) for s in stages}
    timeouts: dict[str, int] = {}
    for s in stages:
        if s.timeout_override is not None:
            timeouts[s.key] = s.timeout_override
            continue
        need = s.fixed_seconds + budgets[s.key]
        start = finish[s.key] - need
        # its own time plus its float: what it may take before the job timeout is in danger. When
        # even the minimum plan does not fit (OBS403), the allowances may be the pessimistic part:
        # only the job timeout bounds the task then, rather than a plan that cannot hold anyway.
        allowed = job_timeout - start - after[s.key] if fits else job_timeout
        timeouts[s.key] = min(job_timeout, max(allowed, need, MIN_TASK_TIMEOUT_SECONDS))
    return Timing(
        job_timeout=job_timeout,
        budgets=budgets,
        timeouts=timeouts,
        critical_path=path,
        path_seconds=finish[end],
        min_path_seconds=max(min_finish.values()),
        startups_on_path=sum(STARTUP_ALLOWANCE_SECONDS[by_key[k].environment] for k in path),
    )
