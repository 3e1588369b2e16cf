"""The boost task wrapper: tune several boosting libraries, combine them by greedy selection."""

from __future__ import annotations

import numpy as np

from obsrv.service_tasks.contract import ModelOutput, TaskContext
from .boosting import boost, resolve_device
from .predictors import CombinedPredictor
from .voting import SoftVote
from .job import load_job, _weights_metrics, _publish


def boost_task(ctx: TaskContext) -> None:
    """Tune the listed boosting libraries within the task budget, then greedy-select over them.
    Publishes the tuned boosters (not final; they join downstream pools) and the ensemble."""
    job = load_job(ctx, needs_pool=False)
    p = job.task.boost
    d = job.data
    device = resolve_device(list(p.algorithms))  # its notes are logged when the model is published
    res = boost(d.X_train, d.y_train, d.folds, problem=d.problem, n_outputs=job.k, loss=job.loss,
                objective=job.objective, algorithms=list(p.algorithms), trials=p.trials,
                budget_s=max(ctx.request.budget_seconds, 0.0), seed=job.seed, w=d.w_train, X_holdout=d.X_holdout,
                categorical_columns=list(d.categorical_columns), device=device, log=ctx.log)
    outs = [
        ModelOutput(b.algorithm, b.algorithm, b.fit.predictor, b.fit.oof, b.fit.holdout,
                    params={"algorithm": b.algorithm, "tuned": b.fit.params, "trials": len(b.fit.trials),
                            "device": b.fit.device},
                    is_final=False, metrics={"tuning_seconds": sum(t["seconds"] for t in b.fit.trials)})
        for b in res.boosters
    ]
    wts = res.selection.weights_
    used = np.flatnonzero(wts > 0)
    predictor = CombinedPredictor([res.boosters[i].fit.predictor for i in used], SoftVote(wts[used]), False,
                                  [res.boosters[i].algorithm for i in used])
    outs.append(ModelOutput(
        "boost", "boost", predictor, res.oof, res.holdout,
        params={"algorithms": list(p.algorithms), "weights": res.weights, "trials": p.trials,
                "devices": {b.algorithm: b.fit.device for b in res.boosters},
                "tuned": {b.algorithm: b.fit.params for b in res.boosters}},
        metrics=_weights_metrics([b.algorithm for b in res.boosters], wts), notes=list(device.notes)))
    _publish(job, outs)
