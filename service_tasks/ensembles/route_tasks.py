"""The route_* task wrappers: one model per route (cluster, feature value, external segment)."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import pandas as pd

from obsrv.service_tasks.zoo import time_limits
from obsrv.service_tasks.columns import name_key, same_column
from obsrv.service_tasks.errors import TaskError
from obsrv.service_tasks.contract import ModelOutput, TaskContext
from .learners import FamilyFactory
from .routing import ClusterRouter, ExternalRouter, FeatureRouter, RoutedPredictor, Router, nested_blend, routed_cv
from .job import Job, load_job, _publish


ROUTE_FAMILIES = ("hist_gbm", "linear")
"""Per-route (and global) model families tried by the route_* tasks, with default settings (no
per-route tuning: routes are small, tuning would over-fit). The family whose routed/global blend
has the best nested OOF is kept (ties: the first listed): per-route linear models win when the
routes carry the interaction (different slopes per segment), the GBM when they do not. Under a budget
a time-bound family (hist_gbm) is skipped when the families fit before it left no time."""


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
    tried: list[dict[str, Any]] = []
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
