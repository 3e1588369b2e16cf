"""Stop a fold model's training when its share of the search budget is spent.

Why: the default configs (boosters of up to 10,000 rounds with early stopping, 150-tree forests) would run
to the end whatever the budget, so a slow family on a slow problem would overrun
``obsrv run --time-limit``. As in AutoGluon, a fit gets a time limit and
keeps what it has trained when it runs out: boosters stop adding rounds (a training callback),
forests stop adding trees (grown in chunks with ``warm_start``). At least ``MIN_ROUNDS`` rounds or
trees are always trained, so a model is never empty.

sklearn's HistGradientBoosting has no callback either; it is grown in chunks of iterations with
``warm_start`` like the forests. kNN and the linear models have no such hook and run to the end, and
so does CatBoost on a GPU (it runs user callbacks on the CPU only).

Why boosters are also *paced*: a booster cut at 10-40 rounds of a 0.05 learning rate has barely
started to fit. So after its first ``MIN_ROUNDS`` rounds a time-limited booster measures its pace, and when
the rounds it can still afford at that pace are too few for its learning rate, it raises the rate
for the rounds left (``paced_learning_rate``), as a smaller budget would pick anyway. xgboost,
lightgbm and hist_gbm are paced during the fit. CatBoost cannot change its rate during a fit, so
its fold models are paced *between* fits: each one starts at the rate that the last measured pace
of a like fit (``Pace``: the previous fold's, or the previous config's in the same search) affords
within its own limit. Only the very first CatBoost fold of a search has no pace to go by. The user's view:
docs/budgets-and-pacing.md.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

MIN_ROUNDS = 10
PACE_LR_ROUNDS = 10.0
"""learning rate x rounds a paced booster aims for: 200 rounds at 0.05, 100 at 0.1, 40 at 0.25."""
MAX_PACED_LR = 0.3
"""The highest rate pacing sets (the top of the hist_gbm search space)."""
BOUNDED_FAMILIES = frozenset({"xgboost", "lightgbm", "catboost", "random_forest", "extra_trees", "hist_gbm"})
"""The zoo families whose fits stop at a time limit (CatBoost on the CPU only)."""


def trials_pinned() -> bool:
    """``OBSRV_MAX_TRIALS`` is set: a reproducible run, in which nothing may depend on the clock
    (every search runs exactly that many configs, and every fit runs to the end)."""
    return bool(os.environ.get("OBSRV_MAX_TRIALS"))


def task_deadline(start: float, budget_seconds: float) -> float | None:
    """The ``time.perf_counter()`` at which a task's bounded fits must end, or None for no bound.

    No bound for a budget of 0 (train the default configs to the end) or when ``OBSRV_MAX_TRIALS``
    asks for a reproducible run (``trials_pinned``)."""
    if budget_seconds <= 0 or trials_pinned():
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


@dataclass(frozen=True)
class Pace:
    """How fast one fit trained: the seconds before its first round's own work (building its data,
    borders and the like) and the seconds per round after that."""

    setup_s: float
    seconds_per_round: float

    def learning_rate(self, learning_rate: float, limit_s: float, wanted_rounds: int) -> float | None:
        """The rate for a like fit under ``limit_s`` at this pace, or None to keep ``learning_rate``
        (``paced_learning_rate``). A fit always trains ``MIN_ROUNDS`` rounds, so it never counts on fewer."""
        if self.seconds_per_round <= 0:
            return None
        affordable = max(float(MIN_ROUNDS), (limit_s - self.setup_s) / self.seconds_per_round)
        return paced_learning_rate(learning_rate, affordable, wanted_rounds)


def paced_learning_rate(learning_rate: float, affordable_rounds: float, wanted_rounds: int) -> float | None:
    """The learning rate for the rest of a fit that can afford ``affordable_rounds`` rounds in all
    at its pace so far and asked for ``wanted_rounds``, or None to keep ``learning_rate``.

    A fit the limit will not cut short (it can afford every round it asked for) keeps its rate.
    Otherwise, when the affordable rounds are fewer than ``PACE_LR_ROUNDS / learning_rate``, the rate
    becomes ``PACE_LR_ROUNDS / affordable_rounds`` (at most ``MAX_PACED_LR``). Never lowered."""
    if affordable_rounds <= 0 or learning_rate <= 0 or affordable_rounds >= wanted_rounds:
        return None
    paced = min(MAX_PACED_LR, PACE_LR_ROUNDS / affordable_rounds)
    return paced if paced > learning_rate else None


class FitClock:
    """One time-limited fit: when it started, where the limit stopped it, the rate pacing set.

    ``learning_rate`` and ``wanted_rounds`` (the fit's rate and ``n_estimators`` / ``max_iter``)
    turn pacing on during the fit; without them (forests, CatBoost) the clock stops the fit, and a
    callback that ``tick``s every round (CatBoost) also measures its pace for the next fold."""

    def __init__(self, limit_s: float, learning_rate: float | None = None, wanted_rounds: int = 0) -> None:
        self.limit_s = limit_s
        self.start = time.perf_counter()
        self.stopped_at: int | None = None  # the number of rounds trained when the limit stopped it
        self.learning_rate = learning_rate  # None: not paced
        self.wanted_rounds = wanted_rounds
        self.paced_lr: float | None = None  # the rate pacing set, if it raised it
        self._first_round_end: float | None = None
        self._last_round: tuple[int, float] | None = None  # (rounds done, when), for ``measured_pace``

    def tick(self, rounds_done: int) -> None:
        """Note that round ``rounds_done`` has just ended (for the pace)."""
        now = time.perf_counter()
        if rounds_done == 1:
            self._first_round_end = now
        self._last_round = (rounds_done, now)

    def measured_pace(self) -> Pace | None:
        """The fit's pace from the rounds ticked so far: per round from the end of round 1 on, so
        that building the training data does not count as per-round cost (it is ``setup_s``)."""
        if self._first_round_end is None or self._last_round is None or self._last_round[0] < 2:
            return None
        rounds, end = self._last_round
        per_round = (end - self._first_round_end) / (rounds - 1)
        return Pace(max(0.0, self._first_round_end - self.start - per_round), per_round)

    def out_of_time(self, rounds_done: int) -> bool:
        if rounds_done >= MIN_ROUNDS and time.perf_counter() - self.start > self.limit_s:
            self.stopped_at = rounds_done
            return True
        return False

    def pace(self, rounds_done: int) -> float | None:
        """For a per-round callback, after each round: at ``MIN_ROUNDS`` rounds, the raised learning
        rate for the rounds left, or None. The pace is timed from the end of round 1, so that
        building the training matrix and its bins before it does not count as per-round cost
        (``measured_pace``)."""
        self.tick(rounds_done)
        measured = self.measured_pace() if rounds_done == MIN_ROUNDS else None
        return None if measured is None else self.pace_after(rounds_done, measured.seconds_per_round)

    def pace_after(self, rounds_done: int, seconds_per_round: float) -> float | None:
        """The raised learning rate for the rounds after ``rounds_done``, at ``seconds_per_round``,
        or None; also None when the limit stops the fit here anyway (no round would use it)."""
        left = self.limit_s - (time.perf_counter() - self.start)
        if self.learning_rate is None or left <= 0 or seconds_per_round <= 0:
            return None
        self.paced_lr = paced_learning_rate(self.learning_rate, rounds_done + left / seconds_per_round,
                                            self.wanted_rounds)
        return self.paced_lr


def xgboost_callback(limit_s: float, learning_rate: float | None = None, wanted_rounds: int = 0) -> Any:
    """Stops at the limit; with the fit's ``learning_rate`` and ``n_estimators``, also paces it
    (module doc). The sklearn wrapper puts its configured rate back on the booster after the fit;
    the trees keep the rate they were grown with."""
    import xgboost as xgb

    class _StopAtLimit(xgb.callback.TrainingCallback):
        def __init__(self) -> None:
            super().__init__()
            self.clock = FitClock(limit_s, learning_rate, wanted_rounds)

        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            paced = self.clock.pace(epoch + 1)
            if paced is not None:
                model.set_param("learning_rate", paced)  # applies to the rounds still to come
            return self.clock.out_of_time(epoch + 1)

    return _StopAtLimit()


def lightgbm_callback(limit_s: float, early_stopping: Any = None, learning_rate: float | None = None,
                      wanted_rounds: int = 0) -> Any:
    """``early_stopping``: the fit's ``lgb.early_stopping`` callback, if any. LightGBM predicts with
    the iteration an EarlyStopException names, so stopping for time must name the best iteration
    early stopping has seen so far, not the current one (up to its patience in rounds past it).
    ``learning_rate`` and ``wanted_rounds``: the fit's rate and ``n_estimators``, to pace it (module doc)."""
    import lightgbm as lgb

    clock = FitClock(limit_s, learning_rate, wanted_rounds)

    def stop_at_limit(env: Any) -> None:
        paced = clock.pace(env.iteration + 1)
        if paced is not None:
            env.model.reset_parameter({"learning_rate": paced})  # applies to the rounds still to come
        if clock.out_of_time(env.iteration + 1):
            best = getattr(early_stopping, "best_iter", None)
            if best:
                raise lgb.callback.EarlyStopException(best[0], early_stopping.best_score_list[0])
            raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list)

    # lightgbm reads callbacks' attributes (order); a function attribute is its documented way
    stop_at_limit.clock = clock  # type: ignore[attr-defined]  # read back by FamilyModel._timed
    stop_at_limit.order = 40  # type: ignore[attr-defined]  # lightgbm's callback order: after early stopping (30)
    return stop_at_limit


class CatBoostStopAtLimit:
    """CatBoost's user callback protocol: ``after_iteration`` returns False to stop (CPU only).
    Its clock times every round, so that the next fold can be paced (``FitClock.measured_pace``)."""

    def __init__(self, limit_s: float) -> None:
        self.clock = FitClock(limit_s)
        self.rounds = 0

    def after_iteration(self, info: Any) -> bool:
        # counted here: ``info.iteration`` counts metric evaluations, which ``metric_period`` thins
        self.rounds += 1
        self.clock.tick(self.rounds)
        return not self.clock.out_of_time(self.rounds)


def _grow_warm(pipeline: Any, frame: Any, y: np.ndarray, fit_kwargs: dict[str, Any], limit_s: float, *,
               size: str, trained: Callable[[Any], int], first: int, step: Callable[[int], int],
               paced: bool = False) -> FitClock:
    """Fit a preprocessing + estimator pipeline, then keep adding to the estimator in ``warm_start``
    chunks while the time lasts (the two growers below).

    ``size``: the estimator parameter that sets how much to train (trees, iterations); ``trained``:
    how much the fitted estimator holds; ``first``: the first chunk; ``step``: the most a chunk may
    add after ``before`` units; ``paced``: pace the estimator's ``learning_rate`` after the first
    chunk (module doc). The preprocessing is fit once and the features encoded once for the later
    chunks. Returns the fit's clock: ``stopped_at`` is the amount trained when the limit stopped it
    early, else None.
    """
    est = pipeline[-1]
    wanted = int(est.get_params()[size])
    clock = FitClock(limit_s, float(est.get_params()["learning_rate"]) if paced else None, wanted)
    est.set_params(warm_start=True, **{size: min(wanted, first)})
    pipeline.fit(frame, y, **fit_kwargs)
    first_fit_s = time.perf_counter() - clock.start
    t0 = time.perf_counter()
    X = pipeline[:-1].transform(frame)
    prep_s = time.perf_counter() - t0  # about what the preprocessing took inside the first fit
    est_kwargs = {k.split("__", 1)[1]: v for k, v in fit_kwargs.items()}
    per_unit = first_fit_s / max(trained(est), 1)
    if paced and trained(est) == int(est.get_params()[size]) < wanted:
        lr = clock.pace_after(trained(est), max(first_fit_s - prep_s, 1e-6) / max(trained(est), 1))
        if lr is not None:
            est.set_params(learning_rate=lr)  # the trees still to come; those fit so far keep theirs
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
    return clock


def grow_forest(pipeline: Any, frame: Any, y: np.ndarray, fit_kwargs: dict[str, Any], limit_s: float) -> FitClock:
    """Fit a preprocessing + forest pipeline, adding trees in chunks while the time lasts.

    sklearn draws the seeds of warm-started trees from the same stream as a one-shot fit, so a forest
    grown to its full ``n_estimators`` equals the one-shot forest. The clock's ``stopped_at`` is the
    tree count when the limit stopped it early (a stopped forest keeps ``n_estimators`` = its tree
    count). Forests have no learning rate to pace.
    """
    chunk = max(MIN_ROUNDS, int(getattr(pipeline[-1], "n_jobs", 1) or 1))
    return _grow_warm(pipeline, frame, y, fit_kwargs, limit_s, size="n_estimators",
                      trained=lambda est: int(est.n_estimators), first=chunk, step=lambda before: 4 * chunk)


def grow_hist_gbm(pipeline: Any, frame: Any, y: np.ndarray, fit_kwargs: dict[str, Any], limit_s: float) -> FitClock:
    """Fit a preprocessing + HistGradientBoosting pipeline, adding iterations in chunks while the
    time lasts, its learning rate paced after the first chunk (module doc).

    Each chunk continues the same model (``warm_start``: the same validation split and early-stopping
    history), so a model that early stopping or ``max_iter`` ends before the limit, at a pace that
    leaves its rate alone, equals the one-shot fit. Chunks double in size, because every warm start
    re-predicts the training rows with the trees so far. The clock's ``stopped_at`` is the iteration
    count when the limit stopped it early. The estimator gets ``max_iter`` and ``learning_rate``
    back: each fitted tree keeps the rate it was fit with.
    """
    est = pipeline[-1]
    wanted, rate = int(est.max_iter), est.learning_rate
    clock = _grow_warm(pipeline, frame, y, fit_kwargs, limit_s, size="max_iter",
                       trained=lambda est: int(est.n_iter_), first=MIN_ROUNDS,
                       step=lambda before: max(MIN_ROUNDS, before), paced=True)
    est.set_params(max_iter=wanted, learning_rate=rate)
    return clock


def limit_summary(models: Iterable[Any], what: str) -> str:
    """What the time limit did to these fitted models, for a log line: ``"; time limit reached in 3
    of 5 folds (after 10-42 rounds/trees); learning rate paced to 0.12-0.3 in 2 folds"``, or ``""``
    when it did nothing. ``what`` names the models ("folds", "fits"); models without the attributes
    (a constant fold model) count in the total only."""
    models = list(models)
    stopped = [m.stopped_at_ for m in models if getattr(m, "stopped_at_", None) is not None]
    paced = [m.paced_lr_ for m in models if getattr(m, "paced_lr_", None) is not None]
    return ((f"; time limit reached in {len(stopped)} of {len(models)} {what} "
             f"(after {min(stopped)}-{max(stopped)} rounds/trees)" if stopped else "")
            + (f"; learning rate paced to {min(paced):.3g}-{max(paced):.3g} in {len(paced)} {what}" if paced else ""))
