"""`boost`: tune each listed gradient-boosting library on the shared folds, then combine the tuned
boosters by greedy selection.

Why this shape: the four libraries make different errors (level-wise vs leaf-wise trees, ordered
target statistics in CatBoost), so a convex GES blend of their tuned versions is a cheap, reliable
gain. Tuning is the runtime zoo's seeded random search (``zoo.search_family``: default config
first, then random configs while the time budget lasts, capped at ``trials``; xgboost, lightgbm
and CPU catboost fits, the default one included, stop at their share of the budget, sklearn's GBM
runs to the end), scored on the
shared-fold OOF like every base model; its boosters early-stop on an inner split of each fold's
training rows, never on the held fold.

GPU: the runtime's placement rule (``zoo.resolve_devices``, the same as the base tasks'): unless the
task was placed on CPU (``OBSRV_COMPUTE=cpu``), a CUDA device makes xgboost train with
``device="cuda"``, catboost with ``task_type="GPU"`` and lightgbm with its GPU device (only if this
lightgbm build has one); sklearn's GBM has no GPU mode. Whatever cannot use the GPU runs on CPU and
the reason is logged (the zoo also falls back to CPU if a GPU fit fails).

Warm start: ``boost`` runs after the base tasks, on the same rows, folds and seed, so a library's
base task has already fitted the first configs of that family's sequence (default first, then the
portfolio). Given their published models (``WarmStart``), boost continues the sequence after them
(``FitRequest.skip_configs``) with its own budget, and each library's booster is the best by OOF of
the base task's models and boost's new ones: no config is fitted twice, and boost is never built
from boosters weaker than the ones the run already has.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
from obsrv.service_tasks import metrics as M
from obsrv.service_tasks import zoo
from obsrv.service_tasks.contract import predict_rows

from .base import LossFn, Problem, nested_oof
from .greedy import GreedySelection

ALGORITHM_FAMILY = {"gbm": "hist_gbm", "xgboost": "xgboost", "lightgbm": "lightgbm", "catboost": "catboost"}
"""`gbm` is sklearn's histogram GBM (HistGradientBoosting: the GradientBoosting family, 10-100x
faster, native missing values and categoricals) -- the zoo's `hist_gbm` family."""


@dataclass(frozen=True)
class DevicePlan:
    """The zoo device (``"cuda"``/``"cpu"``) per library, plus log lines explaining each choice."""

    gpu: bool
    devices: dict[str, str]
    notes: list[str]


def resolve_device(
    algorithms: list[str],
    env: Mapping[str, str] | None = None,
    *,
    cuda_count: Callable[[], int] | None = None,
    lightgbm_gpu: Callable[[], bool] | None = None,
) -> DevicePlan:
    """The runtime's one placement rule (``zoo.resolve_devices``, which the base tasks use too),
    per library: the libraries are mapped to their zoo families. ``env`` and the probes are
    injectable for tests (default: ``os.environ`` and the zoo's probes)."""
    families = [ALGORITHM_FAMILY[a] for a in algorithms]
    devices, notes = zoo.resolve_devices(families, env, cuda_count=cuda_count, lightgbm_gpu=lightgbm_gpu)
    per_algorithm = {a: devices[ALGORITHM_FAMILY[a]] for a in algorithms}
    notes = [f"boost: {notes[0]}", *notes[1:]] if notes else []
    return DevicePlan(any(d == "cuda" for d in per_algorithm.values()), per_algorithm, notes)


@dataclass
class BaseFit:
    """A published base model as a boost candidate: the ``zoo.FamilyFit`` fields boost reads."""

    name: str  # its published name, e.g. "base_xgboost/xgboost_0"
    predictor: Any  # its servable predictor (``tracking.PackedPredictor`` in a task)
    oof: np.ndarray
    holdout: np.ndarray
    params: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)  # none of boost's own
    device: str = "cpu"


@dataclass(frozen=True)
class WarmStart:
    """What a library's base task fitted on the same rows and folds: its published models and how
    many configs of the family's sequence its search went through (``FamilyFit.configs_drawn``)."""

    fits: list[BaseFit]
    configs_tried: int


@dataclass
class TunedBooster:
    algorithm: str
    fit: Any  # zoo.FamilyFit (predictor: FoldBag, oof, holdout, params, trials, device) or a BaseFit
    reused: str | None = None  # the base model it is, when none of boost's new configs beat it


@dataclass
class BoostResult:
    boosters: list[TunedBooster]
    selection: GreedySelection
    oof: np.ndarray  # nested GES OOF (honest)
    holdout: np.ndarray
    weights: dict[str, float]


def boost(
    X: pd.DataFrame, y: np.ndarray, folds: np.ndarray, *, problem: Problem, n_outputs: int, loss: LossFn,
    objective: str, algorithms: list[str], trials: int, budget_s: float, seed: int = 42,
    w: np.ndarray | None = None, X_holdout: pd.DataFrame | None = None,
    categorical_columns: list[str] | None = None, device: DevicePlan | None = None, rounds: int = 25,
    warm: Mapping[str, WarmStart] | None = None, log: Callable[[str], None] = lambda s: None,
) -> BoostResult:
    """Tune every listed library (the time budget split evenly; ``trials`` configs at most each),
    then GES over the tuned boosters. ``warm`` (by library): the base task's models, the configs
    to start after (module docstring).

    ``objective`` is the zoo's search metric; ``loss`` the GES objective. The published OOF is the
    *nested* GES OOF (weights chosen on the other folds), so the selection step does not flatter the
    ensemble; the servable weights use all OOF rows.
    """
    device = device or resolve_device(algorithms, {})  # {}: placement unset, a CUDA device decides
    per_algo = budget_s / max(len(algorithms), 1)
    boosters = []
    scored = np.asarray(folds) >= 0
    for a in algorithms:
        start = (warm or {}).get(a)
        t0 = time.perf_counter()
        request = zoo.FitRequest(
            ALGORITHM_FAMILY[a], X, y, folds, w, problem=problem, n_classes=max(n_outputs, 1),
            budget_seconds=per_algo, seed=seed, metric=objective, X_holdout=X_holdout,
            categorical_columns=categorical_columns, device=device.devices.get(a, "cpu"), max_trials=trials,
            time_bound=True, skip_configs=start.configs_tried if start else 0,
        )
        if start is None:
            fit = zoo.fit_family(request)
            log(f"{a}: {len(fit.trials)} trial(s) in {time.perf_counter() - t0:.1f}s on {fit.device}; best oof "
                f"{objective}={fit.score:.5f} {fit.params}")
            boosters.append(TunedBooster(a, fit))
            continue
        new = zoo.search_family(request, keep=1)
        candidates: list[tuple[str | None, Any]] = [(None, f) for f in new] + [(b.name, b) for b in start.fits]
        losses = [float(M.loss(objective, y[scored], f.oof[scored], problem=problem,
                               weights=None if w is None else w[scored])) for _, f in candidates]
        # the lowest OOF loss; on a tie the base model (already published, nothing to add)
        best = min(range(len(candidates)), key=lambda i: (losses[i], candidates[i][0] is None))
        reused, fit = candidates[best]
        tried = len(new[0].trials) if new else 0
        log(f"{a}: {tried} new trial(s) after the base task's {start.configs_tried} config(s), in "
            f"{time.perf_counter() - t0:.1f}s; kept {reused or 'a new config'} (oof {objective} loss "
            f"{losses[best]:.5f}) {fit.params}")
        boosters.append(TunedBooster(a, fit, reused))
    P = np.stack([b.fit.oof for b in boosters])
    H = np.stack([b.fit.holdout if b.fit.holdout is not None else np.zeros((0, P.shape[2])) for b in boosters])
    sel = GreedySelection(loss, rounds).fit(P, y, w)
    oof = nested_oof(lambda: GreedySelection(loss, rounds), P, y, folds, w) if len(boosters) > 1 else P[0]
    return BoostResult(boosters, sel, oof, predict_rows(H.shape[1], P.shape[2], lambda: sel.predict(H)),
                       {b.algorithm: float(x) for b, x in zip(boosters, sel.weights_)})
