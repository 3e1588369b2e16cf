"""`boost`: tune each listed gradient-boosting library on the shared folds, then combine the tuned
boosters by greedy selection.

Why this shape: the four libraries make different errors (level-wise vs leaf-wise trees, ordered
target statistics in CatBoost), so a convex GES blend of their tuned versions is a cheap, reliable
gain. Tuning is the runtime zoo's seeded random search (``zoo.search_family``: default config
first, then random configs while the time budget lasts, capped at ``trials``), scored on the
shared-fold OOF like every base model; its boosters early-stop on an inner split of each fold's
training rows, never on the held fold.

GPU: unless the task was placed on CPU (``OBSRV_COMPUTE=cpu``), a CUDA driver with at least one
device makes xgboost train with
``device="cuda"``, catboost with ``task_type="GPU"`` and lightgbm with its GPU device (only if this
lightgbm build has one: probed with a tiny fit); sklearn's GBM has no GPU mode. Whatever cannot use
the GPU runs on CPU and the reason is logged (the zoo also falls back to CPU if a GPU fit fails).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
from obsrv.service_tasks import zoo

from .base import LossFn, Problem, nested_oof
from .greedy import GreedySelection

ALGORITHM_FAMILY = {"gbm": "hist_gbm", "xgboost": "xgboost", "lightgbm": "lightgbm", "catboost": "catboost"}
"""`gbm` is sklearn's histogram GBM (HistGradientBoosting: the GradientBoosting family, 10-100x
faster, native missing values and categoricals) -- the zoo's `hist_gbm` family."""


def cuda_device_count() -> int:
    """Number of CUDA devices visible through the driver API (0 when no driver is present)."""
    import ctypes

    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    if lib.cuInit(0) != 0:
        return 0
    count = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return int(count.value)


def _lightgbm_gpu_ok() -> bool:
    """Does this lightgbm build train with ``device_type="gpu"`` (the zoo's GPU setting)? pip wheels
    may lack GPU support; a tiny fit tells."""
    try:
        import lightgbm as lgb

        X = np.random.default_rng(0).normal(size=(64, 3))
        lgb.LGBMRegressor(n_estimators=2, device_type="gpu", verbose=-1).fit(X, X[:, 0])
        return True
    except Exception:  # noqa: BLE001 - any failure means "no usable CUDA build"
        return False


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
    cuda_count: Callable[[], int] = cuda_device_count,
    lightgbm_gpu: Callable[[], bool] = _lightgbm_gpu_ok,
) -> DevicePlan:
    """Choose GPU or CPU per library (the probes are injectable for tests)."""
    env = os.environ if env is None else env
    devices = {a: "cpu" for a in algorithms}
    # Placement: the local runner sets OBSRV_COMPUTE from the compiled environment; on Databricks
    # it is unset and a visible CUDA device is what tells a task it landed on serverless GPU.
    placement = env.get("OBSRV_COMPUTE", "").lower()
    if placement == "cpu":
        return DevicePlan(False, devices, ["boost: running on CPU (placed on CPU compute)"])
    n = cuda_count()
    if n == 0:
        if placement == "gpu":
            return DevicePlan(False, devices, ["boost: OBSRV_COMPUTE=gpu but no CUDA device found; fell back to CPU"])
        return DevicePlan(False, devices, ["boost: no CUDA device found; running on CPU"])
    notes = [f"boost: {n} CUDA device(s) found"]
    for a in algorithms:
        if a == "xgboost":
            devices[a] = "cuda"
            notes.append("xgboost: device=cuda")
        elif a == "catboost":
            devices[a] = "cuda"
            notes.append("catboost: task_type=GPU")
        elif a == "lightgbm":
            if lightgbm_gpu():
                devices[a] = "cuda"
                notes.append("lightgbm: device_type=gpu")
            else:
                notes.append("lightgbm: this build has no GPU support; fell back to CPU")
        elif a == "gbm":
            notes.append("gbm: sklearn has no GPU mode; CPU")
    return DevicePlan(any(d == "cuda" for d in devices.values()), devices, notes)


@dataclass
class TunedBooster:
    algorithm: str
    fit: Any  # zoo.FamilyFit: predictor (FoldBag), oof, holdout, params, trials, device


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
    log: Callable[[str], None] = lambda s: None,
) -> BoostResult:
    """Tune every listed library (the time budget split evenly; ``trials`` configs at most each),
    then GES over the tuned boosters.

    ``objective`` is the zoo's search metric; ``loss`` the GES objective. The published OOF is the
    *nested* GES OOF (weights chosen on the other folds), so the selection step does not flatter the
    ensemble; the servable weights use all OOF rows.
    """
    device = device or resolve_device(algorithms, {})
    per_algo = budget_s / max(len(algorithms), 1)
    boosters = []
    for a in algorithms:
        t0 = time.perf_counter()
        fit = zoo.fit_family(
            ALGORITHM_FAMILY[a], X, y, folds, w, problem=problem, n_classes=max(n_outputs, 1),
            budget_seconds=per_algo, seed=seed, metric=objective, X_holdout=X_holdout,
            categorical_columns=categorical_columns, device=device.devices.get(a, "cpu"), max_trials=trials,
        )
        log(f"{a}: {len(fit.trials)} trial(s) in {time.perf_counter() - t0:.1f}s on {fit.device}; best oof "
            f"{objective}={fit.score:.5f} {fit.params}")
        boosters.append(TunedBooster(a, fit))
    P = np.stack([b.fit.oof for b in boosters])
    H = np.stack([b.fit.holdout if b.fit.holdout is not None else np.zeros((0, P.shape[2])) for b in boosters])
    sel = GreedySelection(loss, rounds).fit(P, y, w)
    oof = nested_oof(lambda: GreedySelection(loss, rounds), P, y, folds, w) if len(boosters) > 1 else P[0]
    return BoostResult(boosters, sel, oof, sel.predict(H),
                       {b.algorithm: float(x) for b, x in zip(boosters, sel.weights_)})
