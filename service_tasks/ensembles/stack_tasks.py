"""The stack_* task wrappers: meta-learners over the members' out-of-fold predictions, and the
blend split with its member re-fits (`stack_blend`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from obsrv.compiler import spec
from obsrv.service_tasks import calibration, metrics, zoo
from obsrv.service_tasks.zoo import time_limits
from obsrv.service_tasks.errors import TaskError
from obsrv.service_tasks.contract import ModelOutput, TaskContext
from obsrv.service_tasks.tracking import PackedPredictor
from .base import best_of_family, fold_ids
from .learners import ZooLearner
from .predictors import CombinedPredictor
from .level_two import FullStackFactory
from .stacking import GuardResult, MetaFactory, PassthroughFactory, StackGreedyMix, dynamic_stack
from .job import Job, load_job, _publish, _predictor


def _stack(job: Job, idx: list[int], meta: str, *, passthrough: bool = False, classwise: bool = False,
           selection: str) -> None:
    P, H = job.stack(idx)
    d = job.data
    factory: Any = MetaFactory(meta, d.problem, job.k, job.seed, classwise)  # type: ignore[arg-type]  # spec-validated MetaLearner
    extra, extra_h = None, None
    if passthrough:
        # the meta-learner gets the raw feature frame and learns what it needs of it only from the
        # rows it is fit on (per nested fold the other folds only, finally all rows): the level-2
        # LightGBM preprocesses it like a base model, the others fit their own encoder (medians,
        # scales, top levels)
        factory = (FullStackFactory(d.problem, job.k, job.seed, tuple(d.categorical_columns))
                   if meta == "lightgbm_full" else PassthroughFactory(factory, tuple(d.categorical_columns)))
        extra, extra_h = d.X_train.reset_index(drop=True), d.X_holdout.reset_index(drop=True)
    res = dynamic_stack(factory, P, d.y_train, d.folds, job.loss, w=d.w_train, extra=extra,
                        metric_name=job.objective, greater_is_better=metrics.greater_is_better(job.objective))
    notes = [res.note] if res.note else [
        f"stacking kept: nested OOF {job.objective} {job.natural(res.stack_loss):.5f} vs greedy selection "
        f"{job.natural(res.greedy_loss):.5f}"]
    names = job.names(idx)
    params: dict[str, Any] = {"members": names, "selection": selection, "meta_learner": meta,
                              "passthrough": passthrough, "combiner": res.used, "stack_weight": res.stack_weight}
    greedy = res.combiner.greedy if isinstance(res.combiner, StackGreedyMix) else res.combiner
    stack = res.combiner.stack if isinstance(res.combiner, StackGreedyMix) else res.combiner
    if res.used != "stack":
        params["weights"] = dict(zip(names, map(float, greedy.weights_)))  # type: ignore[attr-defined]  # a GreedySelection
    if res.used == "greedy":
        passthrough = False  # greedy selection ignores passthrough features
        extra_h = None
    elif not classwise and meta == "linear":
        inner: Any = stack.inner if passthrough else stack  # type: ignore[attr-defined]  # a PassthroughStacker
        params["coefficients"] = dict(zip(names, map(float, inner.coef_)))
    holdout = job.on_holdout(lambda: res.combiner.predict(H, extra_h))
    out = ModelOutput(
        name="stack", family=job.task.task, predictor=_predictor(job, idx, res.combiner, passthrough),
        oof=res.oof, holdout=holdout, params=params,
        metrics=_guard_metrics(job, res),
        notes=notes,
    )
    _publish(job, [out])


def _guard_metrics(job: Job, res: GuardResult) -> dict[str, float]:
    """The guard's nested-OOF figures, logged with the model: the stack's, greedy selection's and,
    where one was tried, the mix's."""
    out = {f"nested_oof_{job.objective}/stack": job.natural(res.stack_loss),
           f"nested_oof_{job.objective}/greedy": job.natural(res.greedy_loss)}
    if not np.isnan(res.mix_loss):
        out[f"nested_oof_{job.objective}/mix"] = job.natural(res.mix_loss)
    return out


def stack_top_any(ctx: TaskContext) -> None:
    """Top ``top_n`` models of any family by OOF + meta-learner, behind the dynamic-stacking guard."""
    job = load_job(ctx)
    p = job.task.stack
    idx = [int(i) for i in job.order[: p.top_n]]
    _stack(job, idx, p.meta_learner, passthrough=p.passthrough, selection=f"top {p.top_n} by OOF {job.metric}")


def stack_top_alg(ctx: TaskContext) -> None:
    """Best model of each of the top ``top_alg`` families (H2O BestOfFamily) + meta-learner."""
    job = load_job(ctx)
    p = job.task.stack
    idx = best_of_family(job.order, job.pool.families, p.top_alg)
    _stack(job, idx, p.meta_learner, passthrough=p.passthrough,
           selection=f"best of each of the top {p.top_alg} families")


def stack_classwise(ctx: TaskContext) -> None:
    """One meta-learner per class on that class's probability columns, renormalised.

    Binary: reduces to a single-class stack (one learner on the positive-class column, p0 = 1 - p1).
    Regression: there is no class axis, so it is the plain stack (a log line says so).
    """
    job = load_job(ctx)
    p = job.task.stack
    if job.data.problem == "regression":
        ctx.log("stack_classwise on a regression target has no classes: it is a plain stack")
    elif job.k == 2:
        ctx.log("stack_classwise on a binary target reduces to a single-class stack")
    idx = [int(i) for i in job.order[: p.top_n]]
    _stack(job, idx, p.meta_learner, classwise=True, selection=f"top {p.top_n} by OOF {job.metric}")


def _blend_split(folds: np.ndarray, fraction: float, fold_type: str = "kfold") -> tuple[np.ndarray, list[int]]:
    """The blend rows: whole shared folds, the last ``ceil(fraction * K)`` of the K fold ids
    (at least 2, so that the guard can nest over them; at most K - 1, leaving blend-train rows).

    Whole folds make the split as honest as the fold plan for every ``fold_type``: group folds keep
    each group on one side (a re-fit member never saw a blend row's group), time folds are
    time-ordered blocks with fold K-1 the latest, so the blend rows are the most recent training rows
    and the members are re-fit on the past; stratified folds keep the class balance.
    Returns (boolean mask over the train rows, the blend fold ids).
    """
    ids = fold_ids(folds)
    k = len(ids)
    if k < 3:
        raise TaskError(
            f"stack_blend takes whole folds of the shared fold plan as its blend split and needs at least 2 "
            f"blend folds plus 1 blend-train fold, but the plan has {k} ({fold_type}) folds. Set "
            "`context.folds` to 3 or more, or use stack_top_any, which stacks on the shared-fold OOF.")
    n_blend = min(max(int(np.ceil(fraction * k - 1e-9)), 2), k - 1)
    blend_ids = ids[k - n_blend:]
    return np.isin(folds, blend_ids), blend_ids


REFITTABLE = frozenset(spec.MODEL_FAMILIES)


@dataclass(frozen=True)
class MemberRefit:
    """How stack_blend re-fits one member: like its fold models were trained."""

    params: dict[str, Any] | None  # the published config; None = zoo default
    time_limit_s: float | None  # the longest limit its fold models trained under; None = to the end
    pace: time_limits.Pace | None  # its fold models' last measured pace (CatBoost), for the re-fit's rate


def _member_refits(job: Job, idx: list[int]) -> list[MemberRefit]:
    """Each member's config and, when its fold models trained under a time limit (``obsrv run
    --time-limit``, a time-bound search), that limit and their pace: a re-fit then trains like the
    fold models whose OOF chose it, and takes no longer than one of them, instead of running an
    unbudgeted config to the end (up to 10,000 boosting rounds at the configured rate, until early
    stopping)."""
    loaded = job.ctx.predictors(job.names(idx))
    out: list[MemberRefit] = []
    for n in job.names(idx):
        member = loaded[n]
        # a packed member is unpickled here one at a time, read and dropped
        bag = calibration.unscaled(member.load() if isinstance(member, PackedPredictor) else member)
        params = getattr(bag, "params", None)
        # by attribute: an unpickled published bag is not a zoo.FoldBag instance (pickled by value)
        folds = list(getattr(bag, "models_", []))
        out.append(MemberRefit(dict(params) if isinstance(params, dict) else None, zoo.fit_time_limit(folds),
                               zoo.last_pace(folds)))
    return out


def stack_blend(ctx: TaskContext) -> None:
    """Holdout blending inside the training data (H2O's blending frame).

    The training rows are split once into blend-train and blend rows: the blend rows are whole
    shared folds (the last ``ceil(blend_fraction * K)``, see ``_blend_split``), so the split respects
    groups and time like the fold plan does. The top
    ``top_n`` *base* models are re-fit on blend-train through the zoo with their published config
    (and, when their fold models trained under a time limit, that limit and pace: ``_member_refits``)
    (ensemble members from upstream tasks cannot be re-fit and are skipped, with a log line); the
    meta-learner is fit on their predictions for the blend rows, behind the same guard as the other
    stacks (nested over the shared folds within the blend rows). The evaluate holdout is never used.

    Published OOF (honest on every row): blend rows -> the guard's nested OOF; blend-train rows -> the
    meta-learner (fit on blend rows only) applied to the members' shared-fold OOF. Holdout and
    serving -> the meta-learner over the re-fit members.
    """
    job = load_job(ctx)
    p = job.task.stack
    d = job.data
    refit = [int(i) for i in job.order if job.pool.families[int(i)] in REFITTABLE]
    skipped = [job.pool.models[int(i)] for i in job.order[: p.top_n] if int(i) not in refit]
    if skipped:
        ctx.log(f"stack_blend re-fits base models only; skipped: {', '.join(skipped)}")
    idx = refit[: p.top_n]
    if not idx:
        raise TaskError(
            f"stack_blend re-fits base models, but its candidate pool has none (only ensemble models: "
            f"{', '.join(job.pool.models) or 'none'}). Check that the base_* tasks succeeded; to stack "
            "ensemble models use stack_top_any or stack_top_alg with them in `depends_on`.")
    fold_type = str(ctx.request.context.fold_type)
    blend, blend_folds = _blend_split(d.folds, p.blend_fraction, fold_type)
    ctx.log(f"stack_blend: blend split = shared folds {blend_folds} of {d.n_folds} ({fold_type}): "
            f"{int(blend.sum())} blend rows ({blend.mean():.0%}; blend_fraction {p.blend_fraction}), "
            f"{int((~blend).sum())} blend-train rows")
    X = d.X_train.reset_index(drop=True)
    refits = _member_refits(job, idx)
    configs = [r.params for r in refits]
    limits = {job.pool.models[i]: round(r.time_limit_s, 3) for i, r in zip(idx, refits) if r.time_limit_s is not None}
    members: list[ZooLearner] = []
    B = []
    for i, r in zip(idx, refits):
        m = ZooLearner(job.pool.families[i], d.problem, job.k, r.params, job.seed, list(d.categorical_columns),
                       time_limit_s=r.time_limit_s, pace_hint=r.pace)
        t0 = time.perf_counter()
        m.fit(X.loc[~blend], d.y_train[~blend], None if d.w_train is None else d.w_train[~blend])
        if r.time_limit_s is not None:
            ctx.log(f"stack_blend: re-fit {job.pool.models[i]} under its fold models' time limit of "
                    f"{r.time_limit_s:.2f}s in {time.perf_counter() - t0:.1f}s"
                    + time_limits.limit_summary([m.model_], "fits"))
        members.append(m)
        B.append(m.predict_matrix(X.loc[blend]))
    Bm = np.stack(B)
    factory = MetaFactory(p.meta_learner, d.problem, job.k, job.seed)
    wb = None if d.w_train is None else d.w_train[blend]
    res = dynamic_stack(factory, Bm, d.y_train[blend], d.folds[blend], job.loss, w=wb,
                        metric_name=job.objective, greater_is_better=metrics.greater_is_better(job.objective))
    oof = np.empty(job.pool.oof.shape[1:])
    oof[blend] = res.oof
    oof[~blend] = res.combiner.predict(job.pool.oof[idx][:, ~blend])
    holdout = job.on_holdout(
        lambda: res.combiner.predict(np.stack([m.predict_matrix(d.X_holdout) for m in members])))
    names = job.names(idx)
    notes = [res.note] if res.note else ["stacking kept over greedy selection on nested blend-row OOF"]
    params = {"members": names, "refit_families": [job.pool.families[i] for i in idx], "refit_configs": configs,
              "blend_rows": int(blend.sum()), "blend_train_rows": int((~blend).sum()),
              "blend_folds": blend_folds, "refit_time_limits": limits,
              "meta_learner": p.meta_learner, "combiner": res.used, "stack_weight": res.stack_weight}
    predictor = CombinedPredictor(list(members), res.combiner, False, [f"{n} (re-fit)" for n in names])
    _publish(job, [ModelOutput("stack", "stack_blend", predictor, oof, holdout,
                               params=params, notes=notes)])
