"""Ensemble tasks through the runtime's real RuntimeContext: local Delta tables + local MLflow.

The seed's chain (route_cluster -> stack_top_any that depends on it, and vote_top_alg) plus
vote_weight, then evaluate, all in-process through ``entry.run_stage`` like ``obsrv-task`` does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from support import runtime_helpers

BASES = ["base_linear", "base_hist_gbm", "base_knn"]


@pytest.fixture(autouse=True)
def _local_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DATABRICKS_RUNTIME_VERSION", "MLFLOW_TRACKING_URI", "OBSRV_TASK_BUDGET_SECONDS", "OBSRV_MAX_TRIALS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OBSRV_COMPUTE", "cpu")


@pytest.mark.slow
def test_seed_chain_through_the_runtime_context(tmp_path: Path) -> None:
    job = runtime_helpers.make_job(tmp_path, "binary")
    job.prepare()
    for b in BASES:
        job.base(b.removeprefix("base_"))
    job.run("route_cluster", "route_cluster", upstream=BASES,
            task={"task": "route_cluster", "id": "route_cluster",
                  "route": {"cluster": {"kmeans": {"n_clusters": 2}}, "min_size": 30}})
    stack = job.run("stack_top_any", "stack_top_any", upstream=BASES + ["route_cluster"],
                    task={"task": "stack_top_any", "id": "stack_top_any", "stack": {"top_n": 4},
                          "depends_on": [{"task": "route_cluster"}]})
    job.run("vote_weight", "vote_weight", upstream=BASES,
            task={"task": "vote_weight", "id": "vote_weight", "vote": {"top_n": 4}})

    # the clustered table, named as in the seed
    clustered = stack.store.read(stack.table("clustered", "route_cluster"))
    assert list(clustered.columns) == ["obsrv_row_id", "cluster"]
    prep = stack.prepared
    assert len(clustered) == len(prep.row_ids_train) + len(prep.row_ids_holdout)

    # route_cluster's models joined the stack's pool (a two-level ensemble)
    pool = stack.predictions()
    assert {"route_cluster/routed", "route_cluster/blend"} <= set(pool.models)
    models = stack.models_table("stack_top_any")
    assert models["model"].tolist() == ["stack_top_any/stack"]
    assert bool(models["is_final"].iloc[0]) and models["kind"].iloc[0] == "ensemble"

    # the logged pyfunc-backed predictor predicts raw frames like the published holdout
    pred = stack.predictors(["stack_top_any/stack"])["stack_top_any/stack"]
    hold = stack.predictions(["stack_top_any"]).holdout[0]
    np.testing.assert_allclose(pred.predict_matrix(prep.X_holdout), hold, atol=1e-6)

    ev = job.evaluate(BASES + ["route_cluster", "stack_top_any", "vote_weight"])
    board = ev.store.read(runtime_helpers.TableName(ev.request.catalog, ev.request.schema,
                                                    f"training_data_leaderboard_{ev.request.workflow_id}"))
    assert {"route_cluster/blend", "stack_top_any/stack", "vote_weight/vote"} <= set(board["model"])
    assert "route_cluster/routed" not in set(board["model"])  # not final


@pytest.mark.slow
def test_route_external_on_a_string_id_column_is_served_with_the_key(tmp_path: Path) -> None:
    """route_external joined on a non-integer source id_column: prepare keeps the id values, the
    routing table matches them, and the served MLflow model takes the key as an input column."""
    import mlflow
    import pandas as pd

    df = runtime_helpers.synthetic("binary")
    df.insert(0, "cust", [f"C-{i:04d}" for i in range(len(df))])
    job = runtime_helpers.make_job(tmp_path, "binary", df=df, source={"id_column": "cust"})
    segment = np.where(df["x0"] > 0, "hi", "lo")
    routes = pd.DataFrame({"cust": df["cust"], "segment": segment}).iloc[: int(0.9 * len(df))]
    job.store.write(runtime_helpers.TableName("main", "lab", "routes"), routes)
    job.prepare()
    job.base("linear")
    ctx = job.run("route_external", "route_external", upstream=["base_linear"],
                  task={"task": "route_external", "id": "route_external",
                        "route": {"external": {"table": "main.lab.routes", "key": "cust", "column": "segment",
                                               "min_size": 30}}})
    prep = ctx.prepared
    assert prep.ids_train is not None and str(prep.ids_train[0]).startswith("C-")
    models = ctx.models_table("route_external").set_index("model")
    hold = ctx.predictions(["route_external"])
    final = hold.models.index("route_external/blend")
    served = mlflow.pyfunc.load_model(models.loc["route_external/blend", "model_uri"])
    rows = df.set_index("cust").loc[list(prep.ids_holdout)].reset_index()
    out = served.predict(rows.drop(columns=["label"]))
    proba = out[[c for c in out.columns if c.startswith("probability_")]].to_numpy()
    np.testing.assert_allclose(proba, hold.holdout[final], atol=1e-6)
    routed = ctx.predictors(["route_external/routed"])["route_external/routed"].load()
    matched = routed.bundles[0].routes(prep.X_holdout.assign(cust=prep.ids_holdout)) >= 0
    in_table = np.isin(prep.ids_holdout, routes["cust"])
    assert (matched == in_table).all() and matched.any()
