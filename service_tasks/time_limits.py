"""Stop a fold model's training when its share of the search budget is spent.

Why: the default configs (1,000-round boosters with early stopping, 150-tree forests) used to run
to the end whatever the budget, so a slow family on a slow problem (CatBoost on 4-6 classes: 34 s
of a 60 s run) overran ``obsrv run --time-limit``. As in AutoGluon, a fit gets a time limit and
keeps what it has trained when it runs out: boosters stop adding rounds (a training callback),
forests stop adding trees (grown in chunks with ``warm_start``). At least ``MIN_ROUNDS`` rounds or
trees are always trained, so a model is never empty.

sklearn's HistGradientBoosting, kNN and the linear models have no such hook and run to the end, and
so does CatBoost on a GPU (it runs user callbacks on the CPU only).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

MIN_ROUNDS = 10


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


def grow_forest(pipeline: Any, frame: Any, y: np.ndarray, fit_kwargs: dict[str, Any], limit_s: float) -> int | None:
    """Fit a preprocessing + forest pipeline, adding trees in chunks while the time lasts.

    sklearn draws the seeds of warm-started trees from the same stream as a one-shot fit, so a forest
    grown to its full ``n_estimators`` equals the one-shot forest. Returns the tree count when the
    limit stopped it early, else None.
    """
    est = pipeline[-1]
    wanted = int(est.n_estimators)
    clock = _Clock(limit_s)
    chunk = max(MIN_ROUNDS, int(getattr(est, "n_jobs", 1) or 1))
    est.set_params(warm_start=True, n_estimators=min(wanted, chunk))
    pipeline.fit(frame, y, **fit_kwargs)
    X = pipeline[:-1].transform(frame)  # encode once for the later chunks
    est_kwargs = {k.split("__", 1)[1]: v for k, v in fit_kwargs.items()}
    per_tree = (time.perf_counter() - clock.start) / est.n_estimators
    while est.n_estimators < wanted:
        elapsed = time.perf_counter() - clock.start
        room = int((limit_s - elapsed) / max(per_tree, 1e-6))
        if room < 1:
            clock.stopped_at = int(est.n_estimators)
            break
        n = min(wanted, est.n_estimators + min(room, 4 * chunk))
        t0, before = time.perf_counter(), est.n_estimators
        est.set_params(n_estimators=n)
        est.fit(X, y, **est_kwargs)
        per_tree = max(per_tree, (time.perf_counter() - t0) / (n - before))
    est.set_params(warm_start=False)
    return clock.stopped_at
