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

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
from obsrv.compiler import spec
from obsrv.service_tasks import metrics, zoo
from obsrv.service_tasks.zoo import time_limits
from obsrv.service_tasks.stages.base_models import search_metric
from obsrv.service_tasks.columns import name_key, same_column
from obsrv.service_tasks.errors import TaskError
from obsrv.service_tasks.contract import ModelOutput, PredictionSet, PreparedData, TaskContext, predict_rows
from obsrv.service_tasks.tracking import PackedPredictor
from pydantic import TypeAdapter

from .base import MetricLoss, best_of_family, fold_ids, nested_oof, strength_order
from .boosting import boost, resolve_device
from .greedy import GreedySelection
from .learners import FamilyFactory, ZooLearner
from .predictors import CombinedPredictor
from .routing import (
    ClusterRouter,
    ExternalRouter,
    FeatureRouter,
    RoutedPredictor,
    Router,
    nested_blend,
    routed_cv,
)
from .stacking import MetaFactory, PassthroughFactory, dynamic_stack
from .voting import SoftVote, make_vote, select_diverse

_TASK_ADAPTER: TypeAdapter[Any] = TypeAdapter(spec.TaskSpec)
ROUTE_FAMILIES = ("hist_gbm", "linear")
"""Per-route (and global) model families tried by the route_* tasks, with default settings (no
per-route tuning: routes are small, tuning would over-fit). The family whose routed/global blend
has the best nested OOF is kept (ties: the first listed): per-route linear models win when the
routes carry the interaction (different slopes per segment), the GBM when they do not. Under a budget
a time-bound family (hist_gbm) is skipped when the families fit before it left no time."""


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


# ------------------------------------------------------------------------------------------ stack


def _stack(job: Job, idx: list[int], meta: str, *, passthrough: bool = False, classwise: bool = False,
           selection: str) -> None:
    P, H = job.stack(idx)
    d = job.data
    factory: Any = MetaFactory(meta, d.problem, job.k, job.seed, classwise)  # type: ignore[arg-type]
    extra, extra_h = None, None
    if passthrough:
        # the meta-learner gets the raw feature frame and fits its own encoder (medians, scales, top
        # levels) on the rows it is fit on: per nested fold the other folds only, finally all rows
        factory = PassthroughFactory(factory, tuple(d.categorical_columns))
        extra, extra_h = d.X_train.reset_index(drop=True), d.X_holdout.reset_index(drop=True)
    res = dynamic_stack(factory, P, d.y_train, d.folds, job.loss, w=d.w_train, extra=extra,
                        metric_name=job.objective, greater_is_better=metrics.greater_is_better(job.objective))
    notes = [res.note] if res.note else [
        f"stacking kept: nested OOF {job.objective} {job.natural(res.stack_loss):.5f} vs greedy selection "
        f"{job.natural(res.greedy_loss):.5f}"]
    names = job.names(idx)
    params: dict[str, Any] = {"members": names, "selection": selection, "meta_learner": meta,
                              "passthrough": passthrough, "combiner": res.used}
    if res.used == "greedy":
        params["weights"] = dict(zip(names, map(float, res.combiner.weights_)))  # type: ignore[attr-defined]
        passthrough = False  # greedy selection ignores passthrough features
        extra_h = None
    elif not classwise and meta == "linear":
        inner = res.combiner.inner if passthrough else res.combiner  # type: ignore[attr-defined]
        params["coefficients"] = dict(zip(names, map(float, inner.coef_)))
    holdout = job.on_holdout(lambda: res.combiner.predict(H, extra_h))
    out = ModelOutput(
        name="stack", family=job.task.task, predictor=_predictor(job, idx, res.combiner, passthrough),
        oof=res.oof, holdout=holdout, params=params,
        metrics={f"nested_oof_{job.objective}/stack": job.natural(res.stack_loss),
                 f"nested_oof_{job.objective}/greedy": job.natural(res.greedy_loss)},
        notes=notes,
    )
    _publish(job, [out])


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
    unbudgeted config to the end (1000 boosting rounds at the configured rate)."""
    loaded = job.ctx.predictors(job.names(idx))
    out: list[MemberRefit] = []
    for n in job.names(idx):
        member = loaded[n]
        # a packed member is unpickled here one at a time, read and dropped
        bag = member.load() if isinstance(member, PackedPredictor) else member
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
              "meta_learner": p.meta_learner, "combiner": res.used}
    predictor = CombinedPredictor(list(members), res.combiner, False, [f"{n} (re-fit)" for n in names])
    _publish(job, [ModelOutput("stack", "stack_blend", predictor, oof, holdout,
                               params=params, notes=notes)])


# ------------------------------------------------------------------------------------------- vote


def vote_top_alg(ctx: TaskContext) -> None:
    """Soft vote (plain mean) of the best model of each of the top ``top_alg`` families."""
    job = load_job(ctx)
    idx = best_of_family(job.order, job.pool.families, job.task.vote.top_alg)
    P, H = job.stack(idx)
    vote = SoftVote()
    _publish(job, [ModelOutput("vote", "vote_top_alg", _predictor(job, idx, vote), vote.predict(P),
                               job.on_holdout(lambda: vote.predict(H)),
                               params={"members": job.names(idx), "mode": "soft"})])


def vote_mix(ctx: TaskContext) -> None:
    """Vote over a diverse mix: up to ``top_n`` strong, least-correlated models (``mode``: soft,
    hard or rank). The rank vote's reference distributions (and, for regression, the target
    quantiles) are learned, so its OOF is nested on the shared folds."""
    job = load_job(ctx)
    p = job.task.vote
    d = job.data
    idx = select_diverse(job.pool.oof, job.pool.oof_score, p.top_n, greater_is_better=job.greater)
    P, H = job.stack(idx)
    vote = make_vote(p.mode, d.problem).fit(P, d.y_train, d.w_train)
    oof = nested_oof(lambda: make_vote(p.mode, d.problem), P, d.y_train, d.folds, d.w_train) \
        if p.mode == "rank" else vote.predict(P)
    _publish(job, [ModelOutput("vote", "vote_mix", _predictor(job, idx, vote), oof,
                               job.on_holdout(lambda: vote.predict(H)),
                               params={"members": job.names(idx), "mode": p.mode})])


def vote_weight(ctx: TaskContext) -> None:
    """Caruana greedy ensemble selection with replacement over the top ``top_n`` models: ``rounds``
    rounds, best prefix kept, ties to models already chosen, weights = pick counts / prefix length
    (logged as params and as ``weight/<model>`` metrics). OOF = nested (weights chosen on the other
    folds)."""
    job = load_job(ctx)
    p = job.task.vote
    d = job.data
    idx = [int(i) for i in job.order[: p.top_n]]
    P, H = job.stack(idx)
    ges = GreedySelection(job.loss, p.rounds).fit(P, d.y_train, d.w_train)
    oof = nested_oof(lambda: GreedySelection(job.loss, p.rounds), P, d.y_train, d.folds, d.w_train)
    names = job.names(idx)
    params = {"members": names, "weights": dict(zip(names, map(float, ges.weights_))),
              "rounds": p.rounds, "best_round": ges.best_round_ + 1}
    _publish(job, [ModelOutput("vote", "vote_weight", _predictor(job, idx, ges), oof,
                               job.on_holdout(lambda: ges.predict(H)),
                               params=params, metrics=_weights_metrics(names, ges.weights_))])


# ------------------------------------------------------------------------------------------ boost


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


# ------------------------------------------------------------------------------------------ route


def _route(job: Job, make_router: Callable[[], Router], min_size: int, *, X_train: pd.DataFrame,
           X_holdout: pd.DataFrame, label: str, extra_input_columns: list[str] | None = None) -> None:
    """Routed models per family in ROUTE_FAMILIES, then the nested routed/global blend.

    The blend's global side is the stronger (by OOF objective) of the family's own global model
    (trained in the same folds) and the best model of the candidate pool (its shared-fold OOF is
    honest and it is already servable): routing is then judged against -- and can fall back to --
    the strongest model the task can see, not just a default-config model of its own family.
    ``extra_input_columns``: non-feature columns the router reads (route_external on the id column);
    the predictors declare them so that serving passes them through.
    """
    d = job.data
    y, w = d.y_train, d.w_train
    best_pool = int(job.order[0]) if job.pool.models else None
    # The task's budget bounds its per-route fits, as it bounds a base task's search (``--time-limit``
    # plans it): hist_gbm stops adding iterations when its share is spent.
    at = time_limits.task_deadline(time.perf_counter(), job.ctx.request.budget_seconds)
    deadline = None if at is None else time_limits.Deadline(at)
    job.ctx.log(f"per-route fits within a budget of {job.ctx.request.budget_seconds:g}s" if deadline else
                "per-route fits run to the end (no budget, or OBSRV_MAX_TRIALS set)")
    tried = []
    skipped: list[str] = []
    # Families without a time hook (linear: quick) fit first, so that those that stop at their
    # share of the time (hist_gbm) get all of the budget that is left.
    for family in sorted(ROUTE_FAMILIES, key=lambda f: f in time_limits.BOUNDED_FAMILIES):
        if (tried and deadline is not None and family in time_limits.BOUNDED_FAMILIES
                and deadline.share(1) <= 0.0):
            # With no time left every fit of a bounded family would still train MIN_ROUNDS rounds:
            # all cost, no budget (on Car's 6 classes, 20 s of hist_gbm against a 7 s budget).
            skipped.append(family)
            job.ctx.log(f"{label} [{family}]: skipped; the families before it spent the budget of "
                        f"{job.ctx.request.budget_seconds:g}s (raise the task's budget or --time-limit to try it)")
            continue
        learner = FamilyFactory(family, d.problem, job.k, seed=job.seed)
        t0 = time.perf_counter()
        res = routed_cv(X_train, y, d.folds, make_router, learner, min_size, w=w,
                        X_holdout=X_holdout, learner_columns=list(d.feature_columns), deadline=deadline)
        fitted = [m.model_ for b in res.bundles for m in [b.global_model, *b.route_models.values()]
                  if m.model_ is not None]
        g_oof, g_hold, g_name = res.oof_global, res.holdout_global, f"{family} global"
        if best_pool is not None and job.loss(y, job.pool.oof[best_pool], w) <= job.loss(y, g_oof, w):
            g_oof, g_hold, g_name = job.pool.oof[best_pool], job.pool.holdout[best_pool], job.pool.models[best_pool]
        alpha, blend_oof, per_fold = nested_blend(res.oof_routed, g_oof, y, d.folds, job.loss, w)
        s_r, s_fg, s_g, s_b = (job.score(res.oof_routed), job.score(res.oof_global), job.score(g_oof),
                               job.score(blend_oof))
        job.ctx.log(f"{label} [{family}]: OOF {job.metric} routed {s_r:.5f}, {family} global {s_fg:.5f}, "
                    f"blend with {g_name} ({s_g:.5f}) {s_b:.5f} (routed weight {alpha:.2f}; per fold {per_fold}); "
                    f"route models per fold {res.n_routed_per_fold}; fit in {time.perf_counter() - t0:.1f}s"
                    + time_limits.limit_summary(fitted, "fits"))
        tried.append({"loss": job.loss(y, blend_oof, w), "family": family, "res": res, "alpha": alpha,
                      "blend_oof": blend_oof, "per_fold": per_fold, "g_hold": g_hold, "g_name": g_name,
                      "figures": {f"oof_{job.metric}/routed/{family}": s_r,
                                  f"oof_{job.metric}/global/{family}": s_fg,
                                  f"oof_{job.metric}/blend/{family}": s_b}})
    tried.sort(key=lambda t: ROUTE_FAMILIES.index(t["family"]))
    best = min(tried, key=lambda t: t["loss"])  # ties -> the first family tried in ROUTE_FAMILIES
    res, alpha, family, g_name = best["res"], best["alpha"], best["family"], best["g_name"]
    figures: dict[str, float] = {k: v for t in tried for k, v in t["figures"].items()}
    figures.update({f"oof_{job.metric}/routed": job.score(res.oof_routed),
                    f"oof_{job.metric}/blend": job.score(best["blend_oof"]), "blend_weight": alpha})
    families_tried = [t["family"] for t in tried]
    params = {"router": label, "min_size": min_size, "model_family": family,
              "families_tried": families_tried, "families_skipped": skipped, "blend_global": g_name,
              "routes_with_model_per_fold": res.n_routed_per_fold, "blend_weight": alpha,
              "blend_weight_per_fold": best["per_fold"]}
    notes = [f"per-route model family {family} (best nested blend OOF of {', '.join(families_tried)}); "
             f"blend = {alpha:.2f} routed + {1 - alpha:.2f} {g_name}"]
    if skipped:
        notes.append(f"not tried for lack of time: {', '.join(skipped)}")
    if not any(res.n_routed_per_fold):
        notes.append(f"no route reached min_size={min_size}; every row uses the global model")
    extras = list(extra_input_columns or [])
    partner = None
    if best_pool is not None and g_name == job.pool.models[best_pool] and alpha < 1.0:
        partner = job.ctx.predictors([g_name])[g_name]
    _publish(job, [
        ModelOutput("routed", job.task.task, RoutedPredictor(res.bundles, 1.0, None, extras), res.oof_routed,
                    res.holdout_routed, params=params, is_final=False, metrics=dict(figures), notes=notes),
        ModelOutput("blend", job.task.task, RoutedPredictor(res.bundles, alpha, partner, list(extras)),
                    best["blend_oof"],
                    alpha * res.holdout_routed + (1 - alpha) * best["g_hold"], params=params,
                    is_final=True, metrics=dict(figures), notes=list(notes)),
    ])


def route_cluster(ctx: TaskContext) -> None:
    """Cluster routes (kmeans / agglomerative + nearest centroid / gmm), per-cluster models, blend.

    Writes ``{table}_clustered_{workflow_id}_{task_id}`` (obsrv_row_id, cluster) for every train and
    holdout row, from a clusterer fit on all training rows (label-free, so no target leak; the OOF
    routing itself re-fits the clusterer per fold). Publishes ``routed`` and ``blend`` (final).
    """
    job = load_job(ctx, allow_empty_pool=True)
    r = job.task.route
    d = job.data
    cats = list(d.categorical_columns)

    def make() -> ClusterRouter:
        return ClusterRouter(r.cluster.method, r.cluster.n_clusters, cats, job.seed)

    full = make().fit(d.X_train)
    table = pd.DataFrame({
        "obsrv_row_id": np.concatenate([d.row_ids_train, d.row_ids_holdout]).astype(np.int64),
        "cluster": np.concatenate([full.predict(d.X_train),
                                   full.predict(d.X_holdout) if len(d.X_holdout) else np.zeros(0)]).astype(np.int32),
    })
    name = ctx.write_table("clustered", table)
    ctx.log(f"wrote {name}: cluster sizes {np.bincount(table['cluster']).tolist()}")
    _route(job, make, r.min_size, X_train=d.X_train, X_holdout=d.X_holdout,
           label=f"{r.cluster.method}(n_clusters={r.cluster.n_clusters})")


def _source_roles(ctx: TaskContext) -> dict[str, str]:
    """The source's role columns (target, id, weight, group, time): prepare never makes them features."""
    src = ctx.request.context.source
    roles = {"target": src.target, "id_column": src.id_column, "weight_column": src.weight_column,
             "group_column": src.group_column, "time_column": src.time_column}
    return {name_key(c): role for role, c in roles.items() if c}  # spec names match ignoring case


def _not_a_feature(ctx: TaskContext, column: str, what: str, alternative: str = "") -> str:
    """Why ``column`` is not among the prepared features, and what to change (for a TaskError)."""
    features = ", ".join(ctx.prepared.feature_columns)
    role = _source_roles(ctx).get(name_key(column))
    why = (f"it is the source's {role}, which is never a feature" if role else
           "prepare did not keep it as a feature (it is not in the source table, or it was dropped as a "
           "per-row id-like key, an unsupported type or an all-missing column; the prepare log lists them)")
    return f"The {what} {column!r} is not a feature column: {why}. Set {what} to one of: {features}{alternative}."


def route_feature(ctx: TaskContext) -> None:
    """Routes by the values of one feature column; unseen values and small segments -> global."""
    job = load_job(ctx, allow_empty_pool=True)
    spec_col = job.task.route.feature.column
    col = job.data.feature_name(spec_col)  # prepare may have renamed it (served models take either)
    if col not in job.data.feature_columns:
        raise TaskError(_not_a_feature(ctx, spec_col, "route.feature.column"))
    _route(job, lambda: FeatureRouter(col), job.task.route.feature.min_size,
           X_train=job.data.X_train, X_holdout=job.data.X_holdout, label=f"feature {col}")


def _source_table_name(ctx: TaskContext) -> str:
    src = ctx.request.context.source
    return f"{src.catalog}.{src.schema_}.{src.table}"


def _id_keys(ctx: TaskContext, key: str) -> tuple[np.ndarray, np.ndarray]:
    """The original ``id_column`` values of the train and holdout rows (route_external on the id).

    ``PreparedData.ids_train`` / ``ids_holdout`` when the runtime provides them. Otherwise the obsrv
    row ids, which are the id values only when the id column is a (null-free) integer column --
    prepare numbers the rows 0..n-1 for any other id column, and joining those numbers to the
    routing table would silently match the wrong rows or none -- so the source's id column type is
    checked first.
    """
    d = ctx.prepared
    if d.ids_train is not None and d.ids_holdout is not None:
        return np.asarray(d.ids_train), np.asarray(d.ids_holdout)
    name = _source_table_name(ctx)
    try:
        ids = ctx.read_table(name)[key]
    except Exception as exc:  # noqa: BLE001 - any failure: we cannot tell what the row ids are
        raise TaskError(
            f"route_external joins on the source's id_column {key!r}, but the prepared data carries no id "
            f"values and the source table {name} could not be read to check the id column ({exc}). Route "
            "on a feature column instead (set route.external.key).") from exc
    if not (pd.api.types.is_integer_dtype(ids) and ids.notna().all()):
        raise TaskError(
            f"route_external joins on the source's id_column {key!r}, which has type {ids.dtype}: prepare "
            "replaced it by surrogate row numbers, so the routing table cannot be joined on it here. Use an "
            "integer id column (source.id_column), or route on a feature column (route.external.key).")
    return d.row_ids_train, d.row_ids_holdout


def route_external(ctx: TaskContext) -> None:
    """Routes from an external table joined on ``key``; missing keys -> global.

    The key is a feature column, or the source's ``id_column`` (joined on its original values). At
    serving time the input frame must carry the key column: when it is not a feature, the published
    predictors declare it in ``extra_input_columns`` (the served model's signature includes it);
    rows without it use the global model.
    """
    job = load_job(ctx, allow_empty_pool=True)
    e = job.task.route.external
    d = job.data
    X, H = d.X_train, d.X_holdout
    key = d.feature_name(e.key)  # the frame's name of the key (prepare may have renamed a feature)
    extra_inputs: list[str] = []
    if key not in d.feature_columns:
        id_column = d.id_column or ctx.request.context.source.id_column  # the source's spelling
        if not (id_column and same_column(e.key, id_column)):
            raise TaskError(_not_a_feature(
                ctx, e.key, "route.external.key",
                f"; or, if {e.key!r} is a unique row id, declare it as the source's id_column "
                f"(source.id_column: {e.key})"))
        key = id_column
        ids_tr, ids_ho = _id_keys(ctx, key)
        X = X.assign(**{key: ids_tr})
        H = H.assign(**{key: ids_ho})
        extra_inputs = [key]
    table = ctx.read_table(e.table)
    router = ExternalRouter.from_table(table, e.key, e.column, table_name=e.table)
    router = ExternalRouter(key, router.mapping)
    matched = int((router.fit(X).predict(X) != -1).sum())
    ctx.log(f"route_external: {matched} of {len(X)} training rows found a route in {e.table}")
    if matched == 0:
        ctx.log(f"WARNING route_external: no training row's {e.key!r} matches a key of {e.table} with a "
                f"non-null {e.column!r}; every row uses the global model. Check route.external.key and the "
                "table's key values.")
    _route(job, lambda: ExternalRouter(router.key, router.mapping), e.min_size, X_train=X, X_holdout=H,
           label=f"external {e.table}.{e.column} on {e.key}", extra_input_columns=extra_inputs)


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
