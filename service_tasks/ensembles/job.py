"""What every ensemble task wrapper shares: the validated task config, the prepared data and the
candidate pool (`Job`, `load_job`), and publishing the outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from obsrv.compiler import spec
from obsrv.service_tasks import metrics
from obsrv.service_tasks.stages.base_models import search_metric
from obsrv.service_tasks.errors import TaskError
from obsrv.service_tasks.contract import ModelOutput, PredictionSet, PreparedData, TaskContext, predict_rows
from pydantic import TypeAdapter
from .base import MetricLoss, strength_order
from .greedy import GreedySelection
from .predictors import CombinedPredictor
from .voting import SoftVote


_TASK_ADAPTER: TypeAdapter[Any] = TypeAdapter(spec.TaskSpec)


@dataclass
class Job:
    """What every wrapper needs, loaded once."""

    ctx: TaskContext
    task: Any  # the validated spec model
    data: PreparedData
    pool: PredictionSet
    metric: str  # the primary metric: ranks members, reported
    objective: str  # what combiners optimise (``service_tasks.base.search_metric``, as the base models)
    loss: MetricLoss  # ``objective`` as a loss
    greater: bool  # direction of ``metric``
    seed: int

    @property
    def k(self) -> int:
        return self.data.n_outputs

    @property
    def order(self) -> np.ndarray:
        return strength_order(self.pool.oof_score, self.greater)

    def stack(self, idx: list[int]) -> tuple[np.ndarray, np.ndarray]:
        return self.pool.oof[idx], self.pool.holdout[idx]

    def on_holdout(self, predict: Callable[[], np.ndarray]) -> np.ndarray:
        """``predict()`` for the holdout rows; empty without calling it when there are none
        (``context.holdout: 0``), since sklearn and the combiners refuse zero-row input."""
        return predict_rows(len(self.data.y_holdout), self.k, predict)

    def names(self, idx: list[int]) -> list[str]:
        return [self.pool.models[i] for i in idx]

    def natural(self, loss_value: float) -> float:
        """An objective loss back in the objective's natural direction."""
        return -loss_value if metrics.greater_is_better(self.objective) else loss_value

    def score(self, pred: np.ndarray) -> float:
        return metrics.score(self.metric, self.data.y_train, pred, problem=self.data.problem,
                             weights=self.data.w_train)


def load_job(ctx: TaskContext, *, needs_pool: bool = True, allow_empty_pool: bool = False) -> Job:
    """Validate the task config and load data + candidate pool (models with non-finite OOF or
    holdout predictions are dropped from the pool, with a log line). ``needs_pool=False`` skips
    reading the pool (boost); ``allow_empty_pool`` reads it but accepts none (route tasks)."""
    task = _TASK_ADAPTER.validate_python(ctx.request.task)
    if task.task != ctx.request.stage:
        raise ValueError(f"stage {ctx.request.stage!r} was handed a {task.task!r} task config")
    data = ctx.prepared
    metric = ctx.request.context.metric.primary
    pool = ctx.predictions() if needs_pool else _empty_pool(data)
    n_published = len(pool.models)
    ok = [i for i in range(len(pool.models))
          if np.isfinite(pool.oof[i]).all() and np.isfinite(pool.holdout[i]).all()]
    if len(ok) < len(pool.models):
        bad = [m for i, m in enumerate(pool.models) if i not in ok]
        ctx.log(f"dropped from the pool (non-finite predictions): {', '.join(bad)}")
        pool = PredictionSet([pool.models[i] for i in ok], [pool.families[i] for i in ok],
                             [pool.task_ids[i] for i in ok], pool.oof[ok], pool.holdout[ok], pool.oof_score[ok])
    if needs_pool and not allow_empty_pool and not pool.models:
        why = (f"all {n_published} published models had non-finite predictions" if n_published
               else "none of its upstream tasks published a model")
        raise TaskError(
            f"Task {ctx.request.task_id!r} has an empty candidate pool: {why} (upstream: "
            f"{', '.join(ctx.request.upstream) or 'none'}). Check that the base_* tasks succeeded, or add "
            "tasks that publish models to this task's `depends_on`.")
    objective = search_metric(metric, data.problem)
    return Job(ctx, task, data, pool, metric, objective, MetricLoss(objective, data.problem),
               metrics.greater_is_better(metric), ctx.request.context.seed)


def _empty_pool(data: PreparedData) -> PredictionSet:
    k = data.n_outputs
    return PredictionSet([], [], [], np.zeros((0, len(data.y_train), k)), np.zeros((0, len(data.y_holdout), k)),
                         np.zeros(0))


def _weights_metrics(names: list[str], weights: np.ndarray) -> dict[str, float]:
    return {f"weight/{n}": float(w) for n, w in zip(names, weights)}


def _publish(job: Job, outputs: list[ModelOutput]) -> None:
    for o in outputs:
        for note in o.notes:
            job.ctx.log(f"{o.name}: {note}")
    job.ctx.publish(outputs)


def _predictor(job: Job, idx: list[int], combiner: Any, passthrough: bool = False) -> CombinedPredictor:
    """Members' predictors + combiner; a greedy combiner keeps only its non-zero-weight members."""
    if isinstance(combiner, GreedySelection):
        used = [i for i, wt in zip(idx, combiner.weights_) if wt > 0]
        combiner = SoftVote(combiner.weights_[combiner.weights_ > 0])
        idx = used
    names = job.names(idx)
    loaded = job.ctx.predictors(names)
    return CombinedPredictor([loaded[n] for n in names], combiner, passthrough, names)
