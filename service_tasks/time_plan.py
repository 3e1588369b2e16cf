"""`obsrv run --time-limit`: search budgets that make a whole local run fit a wall-clock target.

The only time a run can trade away is hyperparameter search (the `base_<family>` tasks and `boost`);
everything else (loading, the default config of each family, the ensembles, MLflow logging) is a
cost to be reserved. So each searching task, when it starts, gets

    budget = (time left - reserve) * min(jobs, searching left) / searching left

The reserve is what the tasks not yet started will need besides their search: for each searching
task its expected overhead (wall time minus budget), spread over the parallel slots; for the other
tasks their expected wall time, spread over the slots, or their longest dependency chain (stack
after route after the bases, then evaluate) when that is longer, because a chain cannot run in
parallel. Expected times are the median of what finished tasks of the same stage took, else of any
finished task of the same kind, else a prior (`STAGE_PRIOR_S`, `DEFAULT_OVERHEAD_S`: measured on
the demo data on 2 cores; the routing tasks fit per-route models, and boost always trains four
boosters at their default config). `prepare` is left out: it runs once, and locally it also pays
for starting the warm launcher. The limit is a target, not a guarantee: every family trains its
default config whatever its budget, so a large table can overrun a small limit.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

SEARCHING_STAGES = frozenset({"base", "boost"})
MIN_SEARCH_S = 1.0
DEFAULT_OVERHEAD_S = 3.0
STAGE_PRIOR_S = {"boost": 15.0, "route_cluster": 8.0, "route_feature": 8.0, "route_external": 8.0}


@dataclass
class TimePlan:
    limit_s: float
    jobs: int
    observed: dict[str, list[float]] = field(default_factory=dict)  # stage -> overhead or wall seconds

    def expected(self, stage: str) -> float:
        """Expected overhead (searching stage) or wall time (other stage) of a task not yet run."""
        if self.observed.get(stage):
            return statistics.median(self.observed[stage])
        if stage in STAGE_PRIOR_S:
            return STAGE_PRIOR_S[stage]
        searching = stage in SEARCHING_STAGES
        alike = [v for s, vs in self.observed.items() if (s in SEARCHING_STAGES) == searching
                 and s not in STAGE_PRIOR_S for v in vs]
        return statistics.median(alike) if alike else DEFAULT_OVERHEAD_S

    def budget(self, elapsed_s: float, searching: list[str], others: list[str],
               others_chain_s: float = 0.0) -> float:
        """Search budget for one searching task starting now.

        `searching`: the stages of the searching tasks not yet started, this one included;
        `others`: those of the other tasks not yet started; `others_chain_s`: the expected seconds
        of their longest dependency chain.
        """
        jobs = max(1, self.jobs)
        n = max(1, len(searching))
        reserve = sum(self.expected(s) for s in searching) / jobs
        reserve += max(sum(self.expected(s) for s in others) / jobs, others_chain_s)
        available = self.limit_s - elapsed_s - reserve
        return max(MIN_SEARCH_S, available * min(jobs, n) / n)

    def record(self, stage: str, wall_s: float, budget_s: float | None) -> None:
        """Learn from a finished task (prepare excluded, see the module doc)."""
        if stage == "prepare":
            return
        if stage in SEARCHING_STAGES:
            if budget_s is not None:
                self.observed.setdefault(stage, []).append(max(0.0, wall_s - budget_s))
        else:
            self.observed.setdefault(stage, []).append(wall_s)
