"""Stop a fold model's training when its share of the search budget is spent.

Why: the default configs (1,000-round boosters with early stopping, 150-tree forests) used to run
to the end whatever the budget, so a slow family on a slow problem (CatBoost on 4-6 classes: 34 s
of a 60 s run) overran ``obsrv run --time-limit``. As in AutoGluon, a fit gets a time limit and
keeps what it has trained when it runs out: boosters stop adding rounds (a training callback),
forests stop adding trees (grown in chunks with ``warm_start``). At least ``MIN_ROUNDS`` rounds or
trees are always trained, so a model is never empty.

sklearn's HistGradientBoosting has no callback either; it is grown in chunks of iterations with
``warm_start`` like the forests. kNN and the linear models have no such hook and run to the end, and
so does CatBoost on a GPU (it runs user callbacks on the CPU only).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

MIN_ROUNDS = 10
BOUNDED_FAMILIES = frozenset({"xgboost", "lightgbm", "catboost", "random_forest", "extra_trees", "hist_gbm"})
"""The zoo families whose fits stop at a time limit (CatBoost on the CPU only)."""


def task_deadline(start: float, budget_seconds: float) -> float | None:
    """The ``time.perf_counter()`` at which a task's bounded fits must end, or None for no bound.

    No bound for a budget of 0 (train the default configs to the end) or when ``OBSRV_MAX_TRIALS``
    asks for a reproducible run, in which nothing may depend on the clock."""
    if budget_seconds <= 0 or os.environ.get("OBSRV_MAX_TRIALS"):
        return None
    return start + budget_seconds


@dataclass(frozen=True)
class Deadline:
    """One deadline shared by the fits still to run: each gets an even share of the time left."""

    at: float  # time.perf_counter() value

    def share(self, fits_left: int) -> float:
        return max(0.0, self.at - time.perf_counter()) / max(fits_left, 1)

    def split(self, parts_left: int) -> "Deadline":
        """The deadline of the next of ``parts_left`` equal parts of the time left."""
        return Deadline(time.perf_counter() + self.share(parts_left))


class _Clock:
    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.start = time.perf_counter()
        self.stopped_at: int | None = None  # the number of rounds trained when the limit stopped it

    def out_of_time(self, rounds_done: int) -> bool:
        if rounds_done >= MIN_ROUNDS and time.perf_counter() - self.start > self.limit_s:
            self.stopped_at = rounds_done
            return True
        return False


def xgboost_callback(limit_s: float) -> Any:
    import xgboost as xgb

    class _StopAtLimit(xgb.callback.TrainingCallback):
        def __init__(self) -> None:
            super().__init__()
            self.clock = _Clock(limit_s)

        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            return self.clock.out_of_time(epoch + 1)

    return _StopAtLimit()


def lightgbm_callback(limit_s: float, early_stopping: Any = None) -> Any:
    """``early_stopping``: the fit's ``lgb.early_stopping`` callback, if any. LightGBM predicts with
    the iteration an EarlyStopException names, so stopping for time must name the best iteration
    early stopping has seen so far, not the current one (up to its patience in rounds past it)."""
    import lightgbm as lgb

    clock = _Clock(limit_s)

    def stop_at_limit(env: Any) -> None:
        if clock.out_of_time(env.iteration + 1):
            best = getattr(early_stopping, "best_iter", None)
            if best:
                raise lgb.callback.EarlyStopException(best[0], early_stopping.best_score_list[0])
            raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list)

    stop_at_limit.clock = clock  # type: ignore[attr-defined]
    stop_at_limit.order = 40  # type: ignore[attr-defined]  # after early stopping (30)
    return stop_at_limit


class CatBoostStopAtLimit:
    """CatBoost's user callback protocol: ``after_iteration`` returns False to stop (CPU only)."""

    def __init__(self, limit_s: float) -> None:
        self.clock = _Clock(limit_s)

    def after_iteration(self, info: Any) -> bool:
        return not self.clock.out_of_time(int(info.iteration))


def _grow_warm(pipeline: Any, frame: Any, y: np.ndarray, fit_kwargs: dict[str, Any], limit_s: float, *,
               size: str, trained: Callable[[Any], int], first: int, step: Callable[[int], int]) -> int | None:
    """Fit a preprocessing + estimator pipeline, then keep adding to the estimator in ``warm_start``
    chunks while the time lasts (the two growers below).

    ``size``: the estimator parameter that sets how much to train (trees, iterations); ``trained``:
    how much the fitted estimator holds; ``first``: the first chunk; ``step``: the most a chunk may
    add after ``before`` units. The preprocessing is fit once and the features encoded once for the
    later chunks. Returns the amount trained when the limit stopped it early, else None.
    """
    est = pipeline[-1]
    wanted = int(est.get_params()[size])
    clock = _Clock(limit_s)
    est.set_params(warm_start=True, **{size: min(wanted, first)})
    pipeline.fit(frame, y, **fit_kwargs)
    X = pipeline[:-1].transform(frame)
    est_kwargs = {k.split("__", 1)[1]: v for k, v in fit_kwargs.items()}
    per_unit = (time.perf_counter() - clock.start) / max(trained(est), 1)
    # less trained than asked for: early stopping ended the fit, and more chunks would add nothing
    while trained(est) == int(est.get_params()[size]) < wanted:
        room = int((limit_s - (time.perf_counter() - clock.start)) / max(per_unit, 1e-6))
        if room < 1:
            clock.stopped_at = trained(est)
            break
        before = trained(est)
        n = min(wanted, before + min(room, step(before)))
        t0 = time.perf_counter()
        est.set_params(**{size: n})
        est.fit(X, y, **est_kwargs)
        per_unit = max(per_unit, (time.perf_counter() - t0) / max(trained(est) - before, 1))
    est.set_params(warm_start=False)
    return clock.stopped_at


def grow_forest(pipeline: Any, frame: Any, y: np.ndarray, fit_kwargs: dict[str, Any], limit_s: float) -> int | None:
    """Fit a preprocessing + forest pipeline, adding trees in chunks while the time lasts.

    sklearn draws the seeds of warm-started trees from the same stream as a one-shot fit, so a forest
    grown to its full ``n_estimators`` equals the one-shot forest. Returns the tree count when the
    limit stopped it early, else None (a stopped forest keeps ``n_estimators`` = its tree count).
    """
    chunk = max(MIN_ROUNDS, int(getattr(pipeline[-1], "n_jobs", 1) or 1))
    return _grow_warm(pipeline, frame, y, fit_kwargs, limit_s, size="n_estimators",
                      trained=lambda est: int(est.n_estimators), first=chunk, step=lambda before: 4 * chunk)


def grow_hist_gbm(pipeline: Any, frame: Any, y: np.ndarray, fit_kwargs: dict[str, Any], limit_s: float) -> int | None:
    """Fit a preprocessing + HistGradientBoosting pipeline, adding iterations in chunks while the
    time lasts.

    Each chunk continues the same model (``warm_start``: the same validation split and early-stopping
    history), so a model that early stopping or ``max_iter`` ends before the limit equals the one-shot
    fit. Chunks double in size, because every warm start re-predicts the training rows with the trees
    so far. Returns the iteration count when the limit stopped it early, else None.
    """
    wanted = int(pipeline[-1].max_iter)
    stopped = _grow_warm(pipeline, frame, y, fit_kwargs, limit_s, size="max_iter",
                         trained=lambda est: int(est.n_iter_), first=MIN_ROUNDS,
                         step=lambda before: max(MIN_ROUNDS, before))
    pipeline[-1].set_params(max_iter=wanted)
    return stopped
