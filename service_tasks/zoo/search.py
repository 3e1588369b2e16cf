"""Cross-fitting on the shared fold plan and the search under a time budget: the default config,
AutoGluon's portfolio in order, then seeded random configs (``spaces.config_sequence``)."""

from __future__ import annotations

import functools
import os
import time
import warnings
import zlib
from dataclasses import KW_ONLY, dataclass, field, replace
from typing import Any, Callable

import numpy as np
import pandas as pd

from obsrv.service_tasks import metrics as M
from obsrv.service_tasks.zoo import time_limits
from obsrv.service_tasks.zoo.devices import default_device, threads_for
from obsrv.service_tasks.zoo.families import FAMILIES, Problem
from obsrv.service_tasks.zoo.fold_models import FamilyModel, FoldBag, _ConstantModel, last_pace
from obsrv.service_tasks.zoo.resource_caps import KNN_MAX_FIT_ROWS, cap_forest_trees
from obsrv.service_tasks.zoo.portfolio import family_trials_for_rows
from obsrv.service_tasks.zoo.spaces import config_sequence

FIT_SHARE_PREDICT = 0.15  # of a fold's time share, kept for its OOF and holdout predictions


@dataclass(frozen=True)
class FitRequest:
    """One zoo family to train on one (X, y, folds) subset, and how to search its configs.

    Parameters
    ----------
    family : str
        One of ``FAMILIES`` (``spec.MODEL_FAMILIES``).
    X : DataFrame
        Raw features (the family does its own preprocessing, per fold).
    y : ndarray
        Int class indices ``0..n_classes-1`` (classification) or floats.
    folds : ndarray of int
        Fold id per row (the shared plan, or any subset of it). Rows with fold ``-1`` are used for
        training only. At least two distinct folds are needed.
    w : ndarray, default None
        Sample weights (kNN ignores them).
    problem : {"classification", "regression"}
    n_classes : int
        K; the prediction matrices have K columns (1 for regression). Folds whose training rows
        hold a single class get a constant (class-frequency) model.
    budget_seconds : float
        Search time; 0 trains only the default config (or ``params``).
    seed : int
        Seeds the search and every estimator.
    params : dict, default None
        Train exactly this config instead of searching.
    metric : str, default None
        Search objective (a ``metrics`` name); default logloss / rmse.
    X_holdout : DataFrame, default None
        When given, ``FamilyFit.holdout`` is the average of the fold models' predictions on it.
    categorical_columns : list of str, default None
        Default: the non-numeric columns of ``X``.
    n_jobs : int, default None
        Threads per model; default all available cores.
    device : {"cpu", "cuda"}, default None
        Default: CUDA for xgboost/lightgbm/catboost when a GPU is visible, else CPU; GPU failures
        fall back to the CPU.
    max_trials : int, default None
        Cap on the configs tried. Env ``OBSRV_MAX_TRIALS`` caps them too and also turns the time
        bound off, so that nothing depends on the clock (reproducible runs). Without either, the
        rows cap the configs as AutoGluon caps its models (``portfolio.family_trials_for_rows``).
    time_bound : bool, default False
        Train every config, the default one included, within ``budget_seconds`` (boosters and
        forests stop early); otherwise the default config runs to the end.
    skip_configs : int, default 0
        Start after the first ``skip_configs`` distinct configs of the family's sequence: an earlier
        search with the same seed, rows and folds (the base task, when ``boost`` searches after it)
        has fitted them already (``FamilyFit.configs_drawn``).
    """

    family: str
    X: pd.DataFrame
    y: np.ndarray
    folds: np.ndarray
    w: np.ndarray | None = None
    _: KW_ONLY
    problem: Problem
    n_classes: int
    seed: int
    budget_seconds: float = 0.0
    params: dict[str, Any] | None = None
    metric: str | None = None
    X_holdout: pd.DataFrame | None = None
    categorical_columns: list[str] | None = None
    n_jobs: int | None = None
    device: str | None = None
    max_trials: int | None = None
    time_bound: bool = False
    skip_configs: int = 0


@dataclass
class FamilyFit:
    """One trained config: the servable fold bag and its honest predictions."""

    predictor: FoldBag
    oof: np.ndarray  # (n, K): each row predicted by the fold model that did not see it
    params: dict[str, Any]
    score: float  # `metric` on the OOF predictions, natural direction
    holdout: np.ndarray | None = None  # (n_holdout, K): the average of the fold models
    metric: str = ""
    seconds: float = 0.0
    device: str = "cpu"
    trials: list[dict[str, Any]] = field(default_factory=list)  # the whole search (best fit only)
    # distinct configs of the sequence the search went through, skipped ones included (best fit only)
    configs_drawn: int = 0


def _split_columns(X: pd.DataFrame, categorical: list[str] | None) -> tuple[list[str], list[str]]:
    if categorical is None:
        categorical = [
            c
            for c in X.columns
            if not (pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c]))
        ]
    cats = [c for c in X.columns if c in set(categorical)]
    return [c for c in X.columns if c not in set(cats)], cats


def cross_fit(
    request: FitRequest,
    params: dict[str, Any],
    *,
    device: str = "cpu",
    deadline: float | None = None,
    pace: time_limits.Pace | None = None,
) -> tuple[FoldBag, np.ndarray, np.ndarray | None]:
    """Fit one config (``params``) of ``request.family`` on every fold: (fold bag, OOF matrix,
    averaged holdout matrix or None). The request's search settings (budget, params, device) are not
    read here: ``device`` is the device this fit runs on.

    ``deadline`` (a ``time.perf_counter()`` value): the time left is shared evenly by the folds
    still to fit, and each fold model trains within its share (``time_limits``). A CatBoost fold
    model starts at the rate that the last measured pace affords in its share: ``pace`` (an earlier
    config's, from ``search_family``) for the first fold, the previous fold's after that
    (``time_limits.Pace``). The bag's ``models_`` keep their ``pace_``.
    """
    family, X, y, folds, w = request.family, request.X, request.y, request.folds, request.w
    problem, n_classes, seed, X_holdout = request.problem, request.n_classes, request.seed, request.X_holdout
    n_jobs = request.n_jobs
    numeric, categorical = _split_columns(X, request.categorical_columns)
    k_out = n_classes if problem == "classification" else 1
    folds = np.asarray(folds)
    fold_ids = np.unique(folds[folds >= 0])
    if len(fold_ids) < 2:
        raise ValueError("cross-fitting needs at least two folds")
    oof = np.full((len(X), k_out), np.nan)  # rows of fold -1 stay NaN (train-only rows)
    models: list[Any] = []
    hold_sum = None if X_holdout is None else np.zeros((len(X_holdout), k_out))
    y = np.asarray(y)
    for done, f in enumerate(fold_ids):
        test = folds == f
        train = ~test
        y_tr = y[train]
        w_tr = None if w is None else np.asarray(w)[train]
        if problem == "classification" and len(np.unique(y_tr)) < 2:
            row = np.bincount(y_tr.astype(int), minlength=n_classes).astype(float)
            model: Any = _ConstantModel(row / row.sum())
        else:
            model = FamilyModel(
                family,
                params,
                problem=problem,
                n_classes=n_classes,
                numeric=numeric,
                categorical=categorical,
                seed=seed,
                n_jobs=threads_for(family, int(train.sum()), n_jobs),
                device=device,
            )
            if deadline is not None:
                # training only: the share leaves FIT_SHARE_PREDICT of it for predicting the fold
                share = (deadline - time.perf_counter()) / (len(fold_ids) - done)
                model.time_limit_s = max(0.0, share * (1.0 - FIT_SHARE_PREDICT))
                model.pace_hint = pace
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(X.loc[train], y_tr, w_tr)
            pace = getattr(model, "pace_", None) or pace  # a family that cannot pace itself during a fit (CatBoost)
        oof[test] = model.predict_matrix(X.loc[test])
        if hold_sum is not None and X_holdout is not None and len(X_holdout):  # empty: holdout 0
            hold_sum += model.predict_matrix(X_holdout)
        models.append(model)
    holdout = None if hold_sum is None else hold_sum / len(models)
    return FoldBag(models, family, dict(params)), oof, holdout


def search_family(
    request: FitRequest, *, keep: int = 2, log: Callable[[str], None] | None = None
) -> list[FamilyFit]:
    """Search under a time budget; the best `keep` fits, best first.

    The configs come in `spaces.config_sequence`'s order: the default config, then AutoGluon's
    zero-shot portfolio for the family in AutoGluon's order, then seeded random configs. Without
    `max_trials` (or env `OBSRV_MAX_TRIALS`), the table's rows cap the number of configs, one
    family's share of AutoGluon's cap on its models (`portfolio.family_trials_for_rows`). With `time_bound` (and a budget above 0) every trial, the default
    one included, trains within the budget: boosters and forests stop early at their fold's share of
    the time left (`cross_fit`'s deadline); without it the default config runs to the end whatever
    the budget. A further trial starts only when the time used plus the slowest trial so far stays
    within `budget_seconds`. The config sequence is fixed by
    `seed`; how many configs run depends on the machine, unless `max_trials` (or env
    `OBSRV_MAX_TRIALS`) caps it; the env variable also turns `time_bound` off and makes the search
    run exactly that many configs whatever the budget, so that a run with it
    does not depend on the clock at all. The best fit carries the whole trial list in `.trials`.
    """
    family, folds, problem, n_classes = request.family, request.folds, request.problem, request.n_classes
    budget_seconds, seed, params, max_trials = request.budget_seconds, request.seed, request.params, request.max_trials
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    metric = request.metric or ("logloss" if problem == "classification" else "rmse")
    device = request.device or default_device(family)
    if max_trials is None and os.environ.get("OBSRV_MAX_TRIALS"):
        max_trials = int(os.environ["OBSRV_MAX_TRIALS"])
    rng = np.random.default_rng([seed, zlib.crc32(family.encode())])
    y = np.asarray(request.y)
    w = None if request.w is None else np.asarray(request.w, dtype=np.float64)
    request = replace(request, y=y, w=w)  # the folds fit on these arrays
    scored = np.asarray(folds) >= 0
    ids = np.unique(np.asarray(folds)[scored])
    n_folds = len(ids)
    n_fit_rows = max((int((np.asarray(folds) != f).sum()) for f in ids), default=len(y))  # a fold model's rows
    k_out = n_classes if problem == "classification" else 1
    if max_trials is None:
        max_trials = family_trials_for_rows(len(y))  # None: no cap above AutoGluon's curve
    configs_left = 1 if params is not None else (max_trials or 10_000)
    draws = config_sequence(family, problem, rng)
    start = time.perf_counter()
    deadline = time_limits.task_deadline(start, budget_seconds) if request.time_bound else None
    slowest = 0.0
    pace: time_limits.Pace | None = None
    trials: list[dict[str, Any]] = []
    kept: list[tuple[float, int, FamilyFit]] = []
    seen: set[str] = set()
    i = 0
    # with OBSRV_MAX_TRIALS the trial count is the pin, never the clock (docs/budgets-and-pacing.md)
    clock_stops = not time_limits.trials_pinned()
    while configs_left > 0:
        if clock_stops and i > 0 and time.perf_counter() - start + slowest > budget_seconds:
            break
        origin, cfg = ("params", dict(params)) if params is not None else next(draws)
        cfg, capped = cap_forest_trees(family, cfg, n_train=n_fit_rows, n_values=k_out, n_folds=max(n_folds, 1))
        key = repr(sorted(cfg.items()))
        i += 1
        if key in seen:
            if i > 50 * (len(seen) + 1):
                break  # a tiny space is exhausted
            continue
        seen.add(key)
        if len(seen) <= request.skip_configs:
            continue  # an earlier search of this very sequence fitted it (FitRequest.skip_configs)
        configs_left -= 1
        if capped and log:
            log(capped)
        if family == "knn" and n_fit_rows > KNN_MAX_FIT_ROWS and i == 1 and log:
            log(f"knn: fold models fit on a seeded sample of {KNN_MAX_FIT_ROWS:,} of their {n_fit_rows:,} rows")
        t0 = time.perf_counter()
        fit_config = functools.partial(cross_fit, request, cfg)
        try:
            bag, oof, hold = fit_config(device=device, deadline=deadline, pace=pace)
        except Exception as exc:  # noqa: BLE001
            if device != "cpu":
                if log:
                    log(f"{family}: {device} training failed ({type(exc).__name__}: {exc}); using the CPU")
                device = "cpu"
                # the failed attempt may have spent the trial's time: the retry gets it afresh
                retry_deadline = None if deadline is None else time.perf_counter() + max(deadline - t0, 1.0)
                bag, oof, hold = fit_config(device=device, deadline=retry_deadline, pace=pace)
            elif len(trials) == 0:
                raise
            else:
                if log:
                    log(f"{family} trial {len(trials)} failed: {type(exc).__name__}: {exc}")
                continue
        seconds = time.perf_counter() - t0
        slowest = max(slowest, seconds)
        # the next config's first fold starts from this config's last pace (CatBoost; time_limits.Pace)
        pace = last_pace(bag.models_) or pace
        value = M.score(metric, y[scored], oof[scored], problem=problem, weights=None if w is None else w[scored])
        stopped = [m.stopped_at_ for m in bag.models_ if getattr(m, "stopped_at_", None) is not None]
        paced = [round(m.paced_lr_, 4) for m in bag.models_ if getattr(m, "paced_lr_", None) is not None]
        trials.append({"trial": len(trials), "origin": origin, "params": cfg, "oof_" + metric: value,
                       "seconds": round(seconds, 3)}
                      | ({"stopped_at_time_limit": stopped} if stopped else {})
                      | ({"paced_learning_rate": paced} if paced else {}))
        if log:
            log(f"{family} trial {len(trials) - 1} ({origin}): oof {metric}={value:.5f} in {seconds:.1f}s {cfg}"
                + time_limits.limit_summary(bag.models_, "folds"))
        fit = FamilyFit(bag, oof, cfg, value, hold, metric, seconds, device)
        loss = M.loss(metric, y[scored], oof[scored], problem=problem, weights=None if w is None else w[scored])
        kept.append((loss, len(trials), fit))
        kept.sort(key=lambda item: item[:2])  # ties go to the earlier trial
        del kept[keep:]
    best = [fit for _, _, fit in kept]
    if not best:  # only with skip_configs: the sequence ran out before a new config (a tiny space)
        return []
    best[0].trials = trials
    best[0].configs_drawn = len(seen)
    return best


def fit_family(request: FitRequest) -> FamilyFit:
    """Train one zoo family on any (X, y, folds) subset (``FitRequest``); the best config found.

    Returns
    -------
    FamilyFit
        ``predictor`` (a picklable FoldBag: ``predict_matrix(X) -> (n, K)``), ``oof`` (n, K),
        ``params``, ``score`` (OOF ``metric``), ``holdout``, ``trials``.
    """
    return search_family(request, keep=1)[0]
