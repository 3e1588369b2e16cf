"""The `base` stage: one zoo family per task (`base_<family>`), trained on the shared folds.

The search objective is the spec's primary metric when it ranks probabilities (auc, logloss) or is a
regression metric; for threshold metrics (accuracy, f1, precision, recall) it is logloss, because a
0.5-threshold score is a noisy objective and evaluate tunes the threshold on OOF afterwards anyway.
The best `KEEP` configs are published as `<task_id>/<family>_<i>`; every trial is logged to one
MLflow search run (`<task_id>/search`).
"""

from __future__ import annotations

import json
import time

from obsrv.service_tasks import tracking, zoo
from obsrv.service_tasks.contract import StageContext
from obsrv.service_tasks.errors import TaskError
from obsrv.service_tasks.contract import ModelOutput
from obsrv.service_tasks.metrics import THRESHOLD_METRICS

KEEP = 2


def search_metric(primary: str, problem: str) -> str:
    if problem == "classification" and primary in THRESHOLD_METRICS:
        return "logloss"
    return primary


def run_base(ctx: StageContext) -> list[ModelOutput]:
    family = ctx.request.task.get("family")
    if family not in zoo.FAMILIES:
        raise TaskError(f"Unknown model family {family!r}; expected one of {', '.join(zoo.FAMILIES)}.")
    prep = ctx.prepared
    metric = search_metric(ctx.primary_metric, prep.problem)
    devices, notes = zoo.resolve_devices([family])
    device = devices[family]
    if family in zoo.GPU_CAPABLE:
        ctx.log(f"{family} device: " + "; ".join(notes))
    budget = ctx.request.budget_seconds
    ctx.log(
        f"{family}: {len(prep.y_train)} train rows, {prep.n_folds} folds, budget {budget:.0f}s, "
        f"objective oof {metric}, device {device}, {zoo.available_cores()} cores"
    )
    t0 = time.perf_counter()
    request = zoo.FitRequest(
        family,
        prep.X_train,
        prep.y_train,
        prep.folds,
        prep.w_train,
        problem=prep.problem,
        n_classes=max(prep.n_outputs, 1),
        budget_seconds=budget,
        seed=ctx.request.context.seed,
        metric=metric,
        X_holdout=prep.X_holdout,
        categorical_columns=prep.categorical_columns,
        device=device,
        time_bound=True,  # the budget holds for the default config too (obsrv run --time-limit)
    )
    fits = zoo.search_family(request, keep=KEEP, log=ctx.log)
    trials = fits[0].trials
    ctx.log(f"{family}: {len(trials)} trials in {time.perf_counter() - t0:.1f}s")
    outputs = [
        ModelOutput(
            name=f"{family}_{i}",
            family=family,
            predictor=fit.predictor,
            oof=fit.oof,
            holdout=fit.holdout,  # type: ignore[arg-type]  # X_holdout given: every fit has one
            params=fit.params,
            is_final=True,
            metrics={"fit_seconds": fit.seconds},
            notes=[f"trained on {fit.device}; config {i + 1} of {len(trials)} by oof {metric}"],
            search_trials=fits[0].configs_drawn,
        )
        for i, fit in enumerate(fits)
    ]
    if ctx.mlflow_enabled:
        _log_search(ctx, family, metric, trials, fits[0].device)
    ctx.publish(outputs)
    return outputs


def _log_search(ctx: StageContext, family: str, metric: str, trials: list[dict], device: str) -> None:
    import mlflow

    ctx.setup_mlflow()
    name = tracking.run_name(ctx.request, f"{ctx.request.task_id}/search")
    tags = tracking.run_tags(ctx.request, "search")
    with tracking._retry(lambda: mlflow.start_run(run_name=name, tags=tags)):
        tracking._retry(
            lambda: mlflow.log_params(
                {"family": family, "objective": f"oof_{metric}", "device": device, "trials": len(trials),
                 "budget_seconds": ctx.request.budget_seconds}
            )
        )
        for t in trials:
            tracking._retry(
                lambda t=t: mlflow.log_metrics(
                    {f"trial_oof_{metric}": float(t[f"oof_{metric}"]), "trial_seconds": float(t["seconds"])},
                    step=int(t["trial"]),
                )
            )
        tracking._retry(lambda: mlflow.log_dict({"trials": json.loads(json.dumps(trials, default=str))}, "trials.json"))
