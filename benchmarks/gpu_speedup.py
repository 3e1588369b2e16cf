"""GPU speedup of obsrv's boosting families: the zoo's own fit path on CPU vs CUDA, side by side.

Runs `zoo.fit_family` (the code behind `base_xgboost`/`base_lightgbm`/`base_catboost` and the
`boost` task) for each library twice on the same synthetic data and shared folds: once with
`device="cpu"`, once with `device="cuda"`, and prints wall time, OOF AUC, the device the zoo really
used (it falls back to CPU when a GPU fit fails) and the speedup.

    python benchmarks/gpu_speedup.py --rows 100000 --features 30 --folds 3

Needs a machine with a CUDA device and GPU-enabled builds of the libraries; see
benchmarks/README.md for how it was run on a lent H100.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd


def make_data(rows: int, features: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    logits = X[:, :5] @ rng.normal(size=5) + 0.5 * X[:, 5] * X[:, 6] - 0.3 * X[:, 7] ** 2
    y = (logits + rng.normal(scale=1.0, size=rows) > 0).astype(np.int64)
    return pd.DataFrame(X, columns=[f"x{i}" for i in range(features)]), y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--families", default="xgboost,lightgbm,catboost")
    args = parser.parse_args()

    from obsrv.service_tasks import metrics as M
    from obsrv.service_tasks import zoo

    X, y = make_data(args.rows, args.features, seed=0)
    folds = np.arange(len(y)) % args.folds
    cores = zoo.available_cores()
    print(f"# {args.rows} rows x {args.features} features, {args.folds} shared folds, {cores} cores, "
          f"{platform.node()}, CUDA devices: {zoo.cuda_device_count()}")
    print(f"{'family':<10} {'cpu s':>8} {'gpu s':>8} {'speedup':>8} {'cpu auc':>8} {'gpu auc':>8}  gpu device used")
    for family in args.families.split(","):
        timings: dict[str, tuple[float, float, str]] = {}
        for device in ("cpu", "cuda"):
            start = time.perf_counter()
            fit = zoo.fit_family(zoo.FitRequest(family, X, y, folds, problem="classification", n_classes=2, budget_seconds=0,
                                 seed=0, n_jobs=cores, device=device, max_trials=1))
            seconds = time.perf_counter() - start
            auc = M.score("auc", y, fit.oof, problem="classification")
            timings[device] = (seconds, auc, fit.device)
        (cpu_s, cpu_auc, _), (gpu_s, gpu_auc, used) = timings["cpu"], timings["cuda"]
        print(f"{family:<10} {cpu_s:8.2f} {gpu_s:8.2f} {cpu_s / gpu_s:7.2f}x {cpu_auc:8.4f} {gpu_auc:8.4f}  {used}",
              flush=True)
    os.sys.stdout.flush()


if __name__ == "__main__":
    main()
