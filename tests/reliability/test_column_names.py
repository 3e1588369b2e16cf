"""Users' own column names, end to end (issue 20, defect 0).

A file's names (upper case, dots, spaces, non-ASCII, names equal up to case) are kept by
`obsrv data load`; the spec's names find their columns ignoring case, as Spark does
(`spark.sql.caseSensitive=false`; see `obsrv.service_tasks.columns` for the sources), and a name
two columns match is an error; the champion serves the file's own rows under the file's names.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from obsrv.service_tasks import tracking
from obsrv.service_tasks.columns import find_column
from obsrv.service_tasks.local.load_data import load_file
from obsrv.service_tasks.errors import TaskError
from obsrv.service_tasks.io import LocalDeltaStore
from obsrv.service_tasks.stages.prepare import prepare_frame
from obsrv.service_tasks.task_parameters import build_request

from support.runtime_helpers import SOURCE, Job, context_for

FEATURES = ["Income.Monthly", "years at address", "Größe", "Score"]


def users_file(n: int = 240, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    df = pd.DataFrame({
        "Income.Monthly": x[:, 0] * 1000 + 3000,
        "years at address": rng.integers(0, 30, n),
        "Größe": np.where(x[:, 1] > 0, "groß", "klein"),
        "Score": x[:, 2],
    })
    df["Churn"] = np.where(x[:, 0] + 0.5 * x[:, 2] + rng.normal(scale=0.5, size=n) > 0, "Yes", "No")
    return df


@pytest.mark.slow  # ~40 s on a shared 2-core machine: a whole prepare -> base -> evaluate -> registry run
def test_a_users_file_loads_trains_and_its_rows_score_on_the_champion(tmp_path) -> None:
    """data load -> prepare -> base linear -> evaluate -> the registered champion scores the
    ORIGINAL file's rows under the file's own column names."""
    path = tmp_path / "customers.csv"
    original = users_file()
    original.to_csv(path, index=False)
    home = tmp_path / "home"
    loaded = load_file(path, SOURCE.full, home)
    assert list(LocalDeltaStore(home).read(loaded.table).columns) == FEATURES + ["Churn"]

    job = Job(home, context_for("binary", source={"target": "Churn"}, metric={"classification": ["auc"]}))
    job.prepare()
    job.base("linear")
    job.evaluate(["base_linear"])

    tracking.configure(job.workflow_id, job.home)
    champion = mlflow.pyfunc.load_model("models:/lab_job@champion")
    assert champion.metadata.signature.inputs.input_names() == FEATURES
    rows = pd.read_csv(path).drop(columns=["Churn"])
    out = champion.predict(rows)
    assert len(out) == len(rows) and set(out["prediction"]) <= {"No", "Yes"}
    assert ((out["prediction"] == "Yes") == (original["Churn"] == "Yes")).mean() > 0.7


def _prepare(df: pd.DataFrame, **source: str):
    ctx = build_request(stage="prepare", task_id="prepare", workflow_id="wf", task={}, upstream=[],
                        context=context_for("binary", source=source), budget_seconds=0.0).context
    log: list[str] = []
    prepared, meta = prepare_frame(df, ctx, log=log.append)
    return prepared, meta, log


def test_spec_names_match_source_columns_ignoring_case() -> None:
    df = users_file(60).rename(columns={"Churn": "CHURN"}).assign(Weight=1.0)
    prepared, meta, _ = _prepare(df, target="churn", weight_column="weight")
    assert meta["target"] == "CHURN" and meta["weight_column"] == "Weight"
    assert "CHURN" in prepared.columns and "Weight" in prepared.columns
    assert "Weight" not in meta["feature_columns"]


def test_a_spec_name_two_columns_match_is_an_error_naming_both() -> None:
    df = users_file(60).assign(Region=1.0, region=2.0)
    with pytest.raises(TaskError, match=r"source.weight_column = 'REGION' is ambiguous: the columns 'Region', "
                                        r"'region' differ only by case"):
        _prepare(df, target="Churn", weight_column="REGION")


def test_spark_has_no_exact_case_preference() -> None:
    """Spark's case-insensitive resolver keeps every match, so an exact-case name is ambiguous too."""
    assert find_column(["Region", "x"], "REGION", "c") == "Region"
    with pytest.raises(TaskError, match="ambiguous"):
        find_column(["Region", "region"], "region", "c")


def test_features_equal_up_to_case_train_under_internal_names_and_serve_under_their_own() -> None:
    df = users_file(60).assign(Region=1.0, region=2.0)
    prepared, meta, log = _prepare(df, target="Churn")
    internal = meta["feature_columns"]
    assert len({c.lower() for c in internal}) == len(internal)  # a Delta table can hold them
    source_names = [meta["column_names"].get(c, c) for c in internal]
    assert source_names == FEATURES + ["Region", "region"]
    assert any("internal names" in line for line in log)
