"""The boost task wrapper: tune several boosting libraries, combine them by greedy selection."""

from __future__ import annotations

import json

import numpy as np

from obsrv.compiler import spec
from obsrv.service_tasks.contract import ModelOutput, TaskContext
from .boosting import ALGORITHM_FAMILY, BaseFit, WarmStart, boost, resolve_device
from .predictors import CombinedPredictor
from .voting import SoftVote
from .job import Job, load_job, _weights_metrics, _publish


def boost_task(ctx: TaskContext) -> None:
    """Tune the listed boosting libraries within the task budget, starting after what their base
    tasks fitted, then greedy-select over them. Publishes the new tuned boosters (not final; they
    join downstream pools) and the ensemble."""
    job = load_job(ctx, needs_pool=False)
    p = job.task.boost
    d = job.data
    device = resolve_device(list(p.algorithms))  # its notes are logged when the model is published
    res = boost(d.X_train, d.y_train, d.folds, problem=d.problem, n_outputs=job.k, loss=job.loss,
                objective=job.objective, algorithms=list(p.algorithms), trials=p.trials,
                budget_s=max(ctx.request.budget_seconds, 0.0), seed=job.seed, w=d.w_train, X_holdout=d.X_holdout,
                categorical_columns=list(d.categorical_columns), device=device,
                warm=warm_starts(job, list(p.algorithms)), log=ctx.log)
    outs = [
        ModelOutput(b.algorithm, b.algorithm, b.fit.predictor, b.fit.oof, b.fit.holdout,
                    params={"algorithm": b.algorithm, "tuned": b.fit.params, "trials": len(b.fit.trials),
                            "device": b.fit.device},
                    is_final=False, metrics={"tuning_seconds": sum(t["seconds"] for t in b.fit.trials)})
        for b in res.boosters
        if b.reused is None  # a base model boost kept is published already, under its own name
    ]
    wts = res.selection.weights_
    used = np.flatnonzero(wts > 0)
    predictor = CombinedPredictor([res.boosters[i].fit.predictor for i in used], SoftVote(wts[used]), False,
                                  [res.boosters[i].reused or res.boosters[i].algorithm for i in used])
    outs.append(ModelOutput(
        "boost", "boost", predictor, res.oof, res.holdout,
        params={"algorithms": list(p.algorithms), "weights": res.weights, "trials": p.trials,
                "devices": {b.algorithm: b.fit.device for b in res.boosters},
                "tuned": {b.algorithm: b.fit.params for b in res.boosters},
                "reused": {b.algorithm: b.reused for b in res.boosters if b.reused}},
        metrics=_weights_metrics([b.algorithm for b in res.boosters], wts), notes=list(device.notes)))
    _publish(job, outs)


def warm_starts(job: Job, algorithms: list[str]) -> dict[str, WarmStart]:
    """Per library, what its base task published, when this task runs after it (a compiled job
    always puts every base task upstream of the user's tasks): the models, with their OOF and
    holdout predictions as the pool holds them, and how far its search went (the models table's
    `search_trials`; a table without the column, from before it, skips nothing)."""
    ctx = job.ctx
    by_task = {f"{spec.RESERVED_TASK_PREFIX}{ALGORITHM_FAMILY[a]}": a for a in algorithms}
    ids = [t for t in ctx.request.upstream if t in by_task]
    if not ids:
        return {}
    pool = ctx.predictions(ids)
    rows = ctx.model_rows(ids).set_index("model")
    usable = [i for i in range(len(pool.models))
              if np.isfinite(pool.oof[i]).all() and np.isfinite(pool.holdout[i]).all()]
    predictors = ctx.predictors([pool.models[i] for i in usable])
    out: dict[str, WarmStart] = {}
    for task_id in ids:
        mine = [i for i in usable if pool.task_ids[i] == task_id]
        if not mine:
            continue
        names = [pool.models[i] for i in mine]
        tried = max(int(rows.loc[n, "search_trials"]) for n in names) if "search_trials" in rows.columns else 0
        fits = [BaseFit(pool.models[i], predictors[pool.models[i]], pool.oof[i], pool.holdout[i],
                        json.loads(str(rows.loc[pool.models[i], "params"])) if "params" in rows.columns else {})
                for i in mine]
        out[by_task[task_id]] = WarmStart(fits, tried)
    return out
