"""The score stage and `obsrv score`: the champion applied to new rows, locally and on Spark.

One module-scoped champion (prepare, the linear family with budget 0, evaluate: ~15 s on 2 cores)
feeds every test that needs one; those are marked slow, as is the stage's own no-champion test (it
creates an MLflow store). The CLI's refusals run before any store exists and are fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from obsrv.service_tasks.errors import FinalTaskError
from obsrv.service_tasks.io import LocalDeltaStore, TableName
from obsrv.service_tasks.stages.score import run_score

from support.runtime_helpers import Job, context_for, synthetic
from support.spark_session import local_spark

# Users' column names as a source may have them: dots, spaces, mixed case.
RENAMED = {"x0": "Income.Total", "x2": "debt ratio", "color": "Colour"}
OUTPUT_SCHEMA = "lab_out"
NEW_ROWS = TableName("main", "lab", "new_rows")
SPEC = """\
obsrv:
  context:
    name: lab_job
    metric: {{classification: [auc, accuracy, f1, logloss]}}
    folds: 3
    holdout: 0.25
    output: {{schema: {schema}}}
    source: {{catalog: main, schema: lab, table: training_data, target: label, id_column: customer_id}}
  job:
    - task: vote_top_alg
{score}"""


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    df = synthetic("binary", n=n, seed=seed).rename(columns=RENAMED)
    df.insert(0, "Customer_ID", np.arange(1000 * seed, 1000 * seed + n, dtype="int64"))
    return df


def _request(job: Job, *, inputs: list[str], monitor: bool = False, output: str = "new_rows_scored") -> Any:
    task = {"score": {"input": inputs, "monitor": monitor}, "output_table": output, "baseline_table": output + "_baseline"}
    return job.request("score", "score", task=task)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Job:
    workdir = tmp_path_factory.mktemp("score")
    home = workdir / ".obsrv"
    store = LocalDeltaStore(home)
    store.write(TableName("main", "lab", "training_data"), _frame())
    context = context_for("binary", source={"id_column": "customer_id"}, output={"schema": OUTPUT_SCHEMA})
    job = Job(home, context)
    job.prepare()
    job.base("linear")
    job.evaluate(["base_linear"])
    store.write(NEW_ROWS, _frame(60, seed=1).drop(columns=["label"]))
    return job


def _by_id(frame: pd.DataFrame) -> pd.DataFrame:
    """A table's rows have no order (a Delta read may list its files in any order): align by key."""
    return frame.sort_values("Customer_ID", kind="mergesort").reset_index(drop=True)


def _champion_predictions(frame: pd.DataFrame) -> pd.DataFrame:
    import mlflow

    model = mlflow.pyfunc.load_model("models:/lab_job@champion")
    features = [c for c in frame.columns if c not in ("Customer_ID", "label")]
    return model.predict(frame[features])


@pytest.mark.slow
def test_scored_table_equals_the_pyfunc_and_keeps_user_names(trained: Job) -> None:
    output = run_score(_request(trained, inputs=[NEW_ROWS.full]), trained.store, log=print, home=trained.home)
    assert output == TableName("main", OUTPUT_SCHEMA, "new_rows_scored")
    scored = _by_id(trained.store.read(output))
    assert list(scored.columns) == [
        "Customer_ID", "prediction", "probability_no", "probability_yes", "model_version", "scored_at"
    ]
    new = _by_id(trained.store.read(NEW_ROWS))
    expected = _champion_predictions(new)
    assert scored["Customer_ID"].tolist() == new["Customer_ID"].tolist()
    assert scored["prediction"].tolist() == expected["prediction"].tolist()
    np.testing.assert_array_equal(scored["probability_yes"].to_numpy(), expected["probability_yes"].to_numpy())
    assert set(scored["model_version"]) == {"1"}
    assert scored["scored_at"].nunique() == 1 and str(scored["scored_at"].dtype).startswith("datetime64")


@pytest.mark.slow
def test_input_columns_match_ignoring_case_and_several_inputs_are_scored(trained: Job) -> None:
    other = TableName("main", "lab", "more_rows")
    frame = _frame(30, seed=2).drop(columns=["label"]).rename(columns={"Income.Total": "INCOME.total"})
    trained.store.write(other, frame)
    output = run_score(_request(trained, inputs=[NEW_ROWS.full, other.full], output="both"), trained.store,
                       log=print, home=trained.home)
    scored = _by_id(trained.store.read(output))
    assert len(scored) == 90 and scored["Customer_ID"].is_unique
    expected = _champion_predictions(frame.rename(columns={"INCOME.total": "Income.Total"}))
    # seed 2's ids (2000...) sort after the first table's (1000...)
    np.testing.assert_array_equal(scored["probability_yes"].to_numpy()[60:], expected["probability_yes"].to_numpy())


@pytest.mark.slow
def test_missing_feature_columns_are_all_listed_and_nothing_is_written(trained: Job) -> None:
    broken = TableName("main", "lab", "broken_rows")
    trained.store.write(broken, _frame(20, seed=3).drop(columns=["label", "debt ratio", "Colour"]))
    with pytest.raises(FinalTaskError, match=r"lacks 2 .*'debt ratio', 'Colour'.*nothing was written"):
        run_score(_request(trained, inputs=[broken.full], output="broken_scored"), trained.store, log=print,
                  home=trained.home)
    assert not trained.store.exists(TableName("main", OUTPUT_SCHEMA, "broken_scored"))


@pytest.mark.slow
def test_types_the_signature_rejects_fail_before_writing(trained: Job) -> None:
    typed = TableName("main", "lab", "typed_rows")
    frame = _frame(20, seed=4).drop(columns=["label"])
    frame["debt ratio"] = frame["debt ratio"].map(lambda v: f"{v:.2f}%")  # text where a number was trained
    trained.store.write(typed, frame)
    with pytest.raises(FinalTaskError, match=r"'debt ratio' is string, the champion expects a number"):
        run_score(_request(trained, inputs=[NEW_ROWS.full, typed.full], output="typed_scored"), trained.store,
                  log=print, home=trained.home)
    # the first input was fine: still nothing is written, all inputs are checked first
    assert not trained.store.exists(TableName("main", OUTPUT_SCHEMA, "typed_scored"))


@pytest.mark.slow
def test_monitor_writes_a_baseline_of_the_same_schema_and_logs_prediction_shares(trained: Job, capsys: Any) -> None:
    import mlflow

    output = run_score(_request(trained, inputs=[NEW_ROWS.full], monitor=True, output="watched"), trained.store,
                       log=print, home=trained.home)
    scored = trained.store.read(output)
    baseline = trained.store.read(TableName("main", OUTPUT_SCHEMA, "watched_baseline"))
    assert list(baseline.columns) == list(scored.columns)  # the quality monitor needs one schema
    assert len(baseline) == 300  # the champion's training rows (400 less the 25 % holdout)
    # an integer id column is prepare's row id, so the baseline's keys are the training rows' ids
    prepared = trained.store.read(TableName("main", OUTPUT_SCHEMA, "training_data_prepared_wf1_prepare"))
    assert sorted(baseline["Customer_ID"]) == sorted(prepared.loc[prepared["obsrv_fold"] >= 0, "obsrv_row_id"])
    runs = mlflow.search_runs(experiment_names=["/Users/" + _user() + "/obsrv_lab_job"],
                              filter_string="tags.obsrv_kind = 'score'")
    assert len(runs) == 1
    run = runs.iloc[0]
    share = (scored["prediction"] == "yes").mean()
    assert run["metrics.scored_share_yes"] == pytest.approx(share)
    assert run["metrics.baseline_share_yes"] == pytest.approx((baseline["prediction"] == "yes").mean())
    assert run["metrics.scored_share_yes"] + run["metrics.scored_share_no"] == pytest.approx(1.0)
    assert "drift monitoring runs on the workspace" in capsys.readouterr().out


def _user() -> str:
    from obsrv.service_tasks.tracking import local_user

    return local_user()


@pytest.mark.slow
def test_obsrv_score_runs_the_compiled_job_through_the_local_runner(trained: Job, tmp_path: Path, capsys: Any) -> None:
    from obsrv.compiler.cli import main

    workdir = trained.home.parent
    spec = workdir / "spec.yaml"
    spec.write_text(SPEC.format(schema=OUTPUT_SCHEMA, score="  score: {input: main.lab.new_rows, output: via_cli}\n"))
    assert main(["score", str(spec), "--workdir", str(workdir), "--no-live", "--cold"]) == 0
    scored = _by_id(trained.store.read(TableName("main", OUTPUT_SCHEMA, "via_cli")))
    expected = _champion_predictions(_by_id(trained.store.read(NEW_ROWS)))
    assert scored["prediction"].tolist() == expected["prediction"].tolist()
    # --table replaces the input without a score block in the spec
    bare = workdir / "bare.yaml"
    bare.write_text(SPEC.format(schema=OUTPUT_SCHEMA, score=""))
    assert main(["score", str(bare), "--workdir", str(workdir), "--no-live", "--cold",
                 "--table", "main.lab.new_rows"]) == 0
    assert trained.store.exists(TableName("main", OUTPUT_SCHEMA, "new_rows_scored"))


# ------------------------------------------------------------------------------ without a champion


@pytest.mark.slow  # creating the MLflow sqlite store (its migrations) takes ~13 s on 2 cores
def test_no_champion_says_how_to_get_one(tmp_path: Path) -> None:
    job = Job(tmp_path, context_for("binary"))
    job.store.write(NEW_ROWS, _frame(10).drop(columns=["label"]))
    with pytest.raises(FinalTaskError, match=r"no @champion version yet.*obsrv run SPEC"):
        run_score(_request(job, inputs=[NEW_ROWS.full]), job.store, log=print, home=tmp_path)
    assert job.store.list_tables("main", "lab") == ["new_rows"]


def test_cli_refuses_without_score_block_or_local_champion(tmp_path: Path, capsys: Any) -> None:
    from obsrv.compiler.cli import main

    (tmp_path / "databricks.yml").touch()
    bare = tmp_path / "bare.yaml"
    bare.write_text(SPEC.format(schema=OUTPUT_SCHEMA, score=""))
    assert main(["score", str(bare), "--workdir", str(tmp_path)]) == 1
    assert "has no `score` block: add one" in capsys.readouterr().err
    scored = tmp_path / "scored.yaml"
    scored.write_text(SPEC.format(schema=OUTPUT_SCHEMA, score="  score: {input: main.lab.new_rows}\n"))
    assert main(["score", str(scored), "--workdir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no local champion" in err and "obsrv run" in err
    assert main(["score", str(bare), "--workdir", str(tmp_path), "--table", "lab.new_rows"]) == 2
    assert "is not catalog.schema.table" in capsys.readouterr().err
    assert not (tmp_path / ".obsrv" / "warehouse").exists()



# ------------------------------------------------------------------------------------ the Spark path


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Local Spark with its session catalog (spark_catalog.default), as tests/runtime/test_io.py."""
    yield from local_spark(tmp_path_factory, "obsrv-score-tests")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning", "ignore:.*copy keyword.*")
def test_spark_path_equals_the_pyfunc_on_the_same_rows(trained: Job, spark: Any) -> None:
    """`mlflow.pyfunc.spark_udf` over a Spark table gives the pyfunc's own predictions, user names kept."""
    import dataclasses

    from obsrv.service_tasks.io import SparkTableStore

    store = SparkTableStore(spark)
    source = TableName("spark_catalog", "default", "new_rows")
    new = trained.store.read(NEW_ROWS)
    store.write(source, new)
    request = dataclasses.replace(_request(trained, inputs=[source.full]), catalog="spark_catalog", schema="default")
    output = run_score(request, store, log=print, home=trained.home)
    scored = _by_id(store.read(output))
    assert list(scored.columns) == [
        "Customer_ID", "prediction", "probability_no", "probability_yes", "model_version", "scored_at"
    ]
    expected = _champion_predictions(_by_id(new))
    assert scored["prediction"].tolist() == expected["prediction"].tolist()
    np.testing.assert_array_equal(scored["probability_yes"].to_numpy(), expected["probability_yes"].to_numpy())
    assert set(scored["model_version"]) == {"1"}

    # the checks run before Spark writes anything
    broken = TableName("spark_catalog", "default", "broken_rows")
    store.write(broken, new.drop(columns=["Colour"]))
    bad = dataclasses.replace(_request(trained, inputs=[broken.full], output="broken_scored"),
                              catalog="spark_catalog", schema="default")
    with pytest.raises(FinalTaskError, match="'Colour'"):
        run_score(bad, store, log=print, home=trained.home)
    assert not store.exists(TableName("spark_catalog", "default", "broken_scored"))
