"""`obsrv run --time-limit`: task budgets that make a whole local run fit a wall-clock target.

The time a run can trade away is the training that stops at a budget: hyperparameter search and
time-bound fits in the `base_<family>` tasks and `boost`, and the per-route model fits of the
routing tasks (`BUDGETED_STAGES`). Everything else (loading, clustering, the ensembles, MLflow
logging) is a cost to be reserved. So each budgeted task, when it starts, gets

    budget = (time left - reserve) * min(jobs, budgeted left) / budgeted left

The reserve is what the tasks not yet started will need besides their budget: for each budgeted
task its expected overhead (wall time minus budget), spread over the parallel slots; for the other
tasks their expected wall time, spread over the slots, or their longest dependency chain (stack
after route after the bases, then evaluate) when that is longer, because a chain cannot run in
parallel. Expected times are the median of what finished tasks of the same stage took, else of any
finished task of the same kind, else a prior (`STAGE_PRIOR_S`, `DEFAULT_OVERHEAD_S`: measured on
the demo data on 2 cores; boost always trains four boosters at least 10 rounds each, and the
routing tasks cluster and fit per-route linear models outside their budget). `prepare` is left
out: it runs once, and locally it also pays for starting the warm launcher. The limit is a target,
not a guarantee: kNN and linear fits run to the end whatever the budget, so a large table can
overrun a small limit.

Why the routing tasks are budgeted: they start last, after every base budget was handed out, and
their per-route hist_gbm fits ran to the end; on a machine slower than the priors assume (2-3x)
they alone overran a 60 s limit by 15-20 s.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

ROUTE_STAGES = frozenset({"route_cluster", "route_feature", "route_external"})
BUDGETED_STAGES = frozenset({"base", "boost"}) | ROUTE_STAGES
MIN_SEARCH_S = 1.0
DEFAULT_OVERHEAD_S = 3.0
STAGE_PRIOR_S = {"boost": 15.0, **{stage: 5.0 for stage in ROUTE_STAGES}}  # overheads of budgeted stages


@dataclass
class TimePlan:
    limit_s: float
    jobs: int
    observed: dict[str, list[float]] = field(default_factory=dict)  # stage -> overhead or wall seconds

    def expected(self, stage: str) -> float:
        """Expected overhead (budgeted stage) or wall time (other stage) of a task not yet run."""
        if self.observed.get(stage):
            return statistics.median(self.observed[stage])
        if stage in STAGE_PRIOR_S:
            return STAGE_PRIOR_S[stage]
        budgeted = stage in BUDGETED_STAGES
        alike = [v for s, vs in self.observed.items() if (s in BUDGETED_STAGES) == budgeted
                 and s not in STAGE_PRIOR_S for v in vs]
        return statistics.median(alike) if alike else DEFAULT_OVERHEAD_S

    def budget(self, elapsed_s: float, budgeted: list[str], others: list[str],
               others_chain_s: float = 0.0) -> float:
        """Budget for one budgeted task starting now.

        `budgeted`: the stages of the budgeted tasks not yet started, this one included;
        `others`: those of the other tasks not yet started; `others_chain_s`: the expected seconds
        of their longest dependency chain.
        """
        jobs = max(1, self.jobs)
        n = max(1, len(budgeted))
        reserve = sum(self.expected(s) for s in budgeted) / jobs
        reserve += max(sum(self.expected(s) for s in others) / jobs, others_chain_s)
        available = self.limit_s - elapsed_s - reserve
        return max(MIN_SEARCH_S, available * min(jobs, n) / n)

    def record(self, stage: str, wall_s: float, budget_s: float | None) -> None:
        """Learn from a finished task (prepare excluded, see the module doc)."""
        if stage == "prepare":
            return
        if stage in BUDGETED_STAGES:
            if budget_s is not None:
                self.observed.setdefault(stage, []).append(max(0.0, wall_s - budget_s))
        else:
            self.observed.setdefault(stage, []).append(wall_s)
