"""Served models of two runs side by side in one process, calls interleaved: before/after a change
to the served path, on a machine whose load drifts between two separate benchmark runs.

    .venv/bin/python benchmarks/inference_ab.py OLD_WORKFLOW NEW_WORKFLOW [--home .obsrv] [--model NAME ...]

Both workflows must come from the same spec and seed, so that their models are the same fits
(obsrv's models are pickled with obsrv's code by value: a model logged before a change serves with
the code of then). For each model it first checks that both serve the very same frame (the full
table in one call and 50 single-row calls, `check_exact`), then alternates old and new calls:
single-row p50/p99 over 200 rows each, the median of 5 calls on 1,000 rows, one call on 100,000.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

MODELS = ["base_linear/linear_0", "stack_top_any/stack", "route_cluster/blend", "vote_top_alg/vote"]


def _load(workflow: str, model: str):  # noqa: ANN202 - an MLflow PyFuncModel
    """The model `model` logged by `workflow`, found by its MLflow run (`<workflow id> <model>`,
    tag `obsrv_workflow_id`): a later run's cleanup drops the older runs' models tables."""
    import mlflow

    runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string=f"tags.obsrv_workflow_id = '{workflow}'")
    run = next((r for r in runs if r.info.run_name == f"{workflow} {model}"), None)
    if run is None:
        raise SystemExit(f"no MLflow run of {model} in workflow {workflow}")
    logged = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list",
                                         filter_string=f"source_run_id = '{run.info.run_id}'")
    if not logged:
        raise SystemExit(f"the run of {model} in workflow {workflow} logged no model")
    t = time.perf_counter()
    loaded = mlflow.pyfunc.load_model(f"models:/{logged[0].model_id}")
    return loaded, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    import mlflow

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--home", default=".obsrv", type=Path)
    ap.add_argument("--model", action="append", default=[])
    args = ap.parse_args(argv)
    home = args.home.resolve()
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{home / 'mlflow.db'}")
    mlflow.search_experiments(max_results=1)  # MLflow's store start-up, before any load is timed
    source = pd.read_parquet(next((home / "warehouse" / "main" / "credit_risk" / "training_data").glob("*.parquet")))
    print(f"old {args.old} vs new {args.new}; calls interleaved in one process")
    print("| model | side | load s | first call s | 1 row p50 ms | 1 row p99 ms | 1k rows ms | 100k rows s |")
    print("|---|---|---|---|---|---|---|---|")
    for model in args.model or MODELS:
        (old, old_load), (new, new_load) = _load(args.old, model), _load(args.new, model)
        X = source[new.metadata.signature.inputs.input_names()]
        first = {}
        for side, m in (("old", old), ("new", new)):
            t = time.perf_counter()
            m.predict(X.iloc[[0]])
            first[side] = time.perf_counter() - t
        pd.testing.assert_frame_equal(old.predict(X), new.predict(X), check_exact=True)
        for i in range(50):
            pd.testing.assert_frame_equal(old.predict(X.iloc[[i]]), new.predict(X.iloc[[i]]), check_exact=True)
        lat: dict[str, list[float]] = {"old": [], "new": []}
        for i in range(200):
            for side, m in (("old", old), ("new", new)) if i % 2 else (("new", new), ("old", old)):
                t = time.perf_counter()
                m.predict(X.iloc[[i % len(X)]])
                lat[side].append(time.perf_counter() - t)
        thousand = X.sample(1000, replace=len(X) < 1000, random_state=1)
        t1k: dict[str, list[float]] = {"old": [], "new": []}
        for i in range(5):
            for side, m in (("old", old), ("new", new)) if i % 2 else (("new", new), ("old", old)):
                t = time.perf_counter()
                m.predict(thousand)
                t1k[side].append(time.perf_counter() - t)
        big = X.sample(100_000, replace=True, random_state=2).reset_index(drop=True)
        t100k = {}
        for side, m in (("old", old), ("new", new)):
            t = time.perf_counter()
            m.predict(big)
            t100k[side] = time.perf_counter() - t
        for side, load in (("old", old_load), ("new", new_load)):
            ms = np.array(lat[side]) * 1000
            print(f"| {model} | {side} | {load:.2f} | {first[side]:.2f} | {np.percentile(ms, 50):.1f} | "
                  f"{np.percentile(ms, 99):.1f} | {np.median(t1k[side]) * 1000:.0f} | {t100k[side]:.1f} |")
        sys.stdout.flush()
    print("served frames identical (check_exact) for every model: full table in one call, 50 single rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
