"""The 11 user task types: thin wrappers from a TaskContext to the pure algorithms.

Every wrapper: validates its task config with the spec models, reads the prepared data and the
candidate pool (base models + the models of the user's ``depends_on`` tasks), picks members by
the primary OOF metric, fits its combiner on OOF only, publishes an *honest* OOF for itself
(nested on the shared folds wherever something is learned from labels), holdout predictions and a
picklable predictor over raw feature frames.

Member *ranking* (top_n / best-of-family / diverse mix) uses the members' OOF scores directly and is
not nested: a discrete choice among a few models, as in AutoGluon and H2O.
"""


from __future__ import annotations

from typing import Callable

from obsrv.compiler import spec
from obsrv.service_tasks.contract import TaskContext

from .boost_task import boost_task
from .route_tasks import route_cluster, route_external, route_feature
from .stack_tasks import stack_blend, stack_classwise, stack_top_alg, stack_top_any
from .vote_tasks import vote_mix, vote_top_alg, vote_weight


TASKS: dict[str, Callable[[TaskContext], None]] = {
    "stack_top_any": stack_top_any,
    "stack_top_alg": stack_top_alg,
    "stack_blend": stack_blend,
    "stack_classwise": stack_classwise,
    "boost": boost_task,
    "vote_top_alg": vote_top_alg,
    "vote_mix": vote_mix,
    "vote_weight": vote_weight,
    "route_cluster": route_cluster,
    "route_feature": route_feature,
    "route_external": route_external,
}
assert set(TASKS) == set(spec.TASK_TYPES)


def run_task(ctx: TaskContext) -> None:
    """Run the user task ``ctx.request.stage`` (one of ``spec.TASK_TYPES``)."""
    fn = TASKS.get(ctx.request.stage)
    if fn is None:
        raise ValueError(f"unknown ensemble task type {ctx.request.stage!r}; expected one of "
                         f"{', '.join(spec.TASK_TYPES)}")
    fn(ctx)
