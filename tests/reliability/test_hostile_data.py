"""Hostile but realistic data (issue 20, defects 2, 3 and 10): ±inf, obsrv's own column names,
classes rarer than the folds, splits too small to rank models, column-mapped Delta tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from deltalake import write_deltalake

from obsrv.compiler.spec import MODEL_FAMILIES
from obsrv.service_tasks import zoo
from obsrv.service_tasks.errors import TaskError
from obsrv.service_tasks.io import LocalDeltaStore, TableName
from obsrv.service_tasks.io.store import _to_arrow
from obsrv.service_tasks.stages.prepare import prepare_frame, prepared_from_frame
from obsrv.service_tasks.task_parameters import build_request
from obsrv.service_tasks.split_checks import MIN_SCORED_ROWS
from obsrv.service_tasks.tracking import ObsrvPyfunc

from support.runtime_helpers import context_for, synthetic


def _context(problem: str = "binary", **overrides):
    return build_request(stage="prepare", task_id="prepare", workflow_id="wf", task={}, upstream=[],
                         context=context_for(problem, **overrides), budget_seconds=0.0).context


def _prepare(df: pd.DataFrame, problem: str = "binary", **overrides):
    log: list[str] = []
    prepared, meta = prepare_frame(df, _context(problem, **overrides), log=log.append)
    return prepared, meta, log


def with_infinities(n: int = 120) -> pd.DataFrame:
    df = synthetic("binary", n=n)
    df.loc[[0, 5, 9], "x0"] = np.inf
    df.loc[[3], "x0"] = -np.inf
    df.loc[[7, 8], "x2"] = -np.inf
    df["count"] = df["count"].astype("float64")
    return df


def test_prepare_treats_infinities_as_missing_per_column_and_says_where() -> None:
    prepared, meta, log = _prepare(with_infinities())
    X = prepared[meta["feature_columns"]].select_dtypes("number").to_numpy(dtype=np.float64)
    assert not np.isinf(X).any()
    assert prepared["x0"].isna().sum() == 4 and prepared["x2"].isna().sum() == 2
    assert "treated ±inf as missing (column: values): 'x0': 4, 'x2': 2" in log


def test_an_infinite_regression_target_is_dropped_as_missing() -> None:
    df = synthetic("regression", n=60)
    df.loc[[1, 2], "label"] = [np.inf, -np.inf]
    prepared, _, log = _prepare(df, "regression")
    assert len(prepared) == 58 and np.isfinite(prepared["label"]).all()
    assert "dropped 2 rows with a missing target 'label'" in log


@pytest.mark.slow  # 8 families fit on 120 rows: ~15 s on a shared 2-core machine
@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_every_family_trains_on_a_table_with_infinities(family: str, monkeypatch) -> None:
    monkeypatch.setenv("OBSRV_MAX_TRIALS", "1")
    prepared, meta, _ = _prepare(with_infinities())
    d = prepared_from_frame(prepared, meta)
    fit = zoo.fit_family(zoo.FitRequest(family, d.X_train, d.y_train, d.folds, problem="classification", n_classes=2,
                         budget_seconds=0.0, seed=0, X_holdout=d.X_holdout,
                         categorical_columns=d.categorical_columns))
    assert np.isfinite(fit.oof).all() and fit.holdout.shape == (len(d.y_holdout), 2)


def test_the_served_model_treats_infinities_as_missing() -> None:
    wrapper = ObsrvPyfunc("classification", [0, 1], ["a", "b"])
    X = wrapper.model_input(pd.DataFrame({"b": ["u", "v"], "a": [np.inf, 1.0]}))
    assert list(X.columns) == ["a", "b"] and X["a"].isna().tolist() == [True, False]


@pytest.mark.parametrize("name", ["obsrv_row_id", "obsrv_fold", "OBSRV_Fold"])
def test_a_source_column_with_a_reserved_name_is_refused(name: str) -> None:
    df = synthetic("binary", n=60).assign(**{name: 1})
    with pytest.raises(TaskError, match=rf"has the column\(s\) '{name}', a name obsrv reserves"):
        _prepare(df)


def test_a_reserved_id_column_is_refused_too() -> None:
    df = synthetic("binary", n=60).assign(obsrv_row_id=np.arange(60))
    with pytest.raises(TaskError, match="a name obsrv reserves"):
        _prepare(df, source={"id_column": "obsrv_row_id"})


def test_all_problems_with_the_spec_columns_come_in_one_error() -> None:
    df = synthetic("binary", n=60).assign(obsrv_fold=0, W=1.0, w=2.0)
    with pytest.raises(TaskError) as err:
        _prepare(df, source={"weight_column": "w", "group_column": "nope"})
    text = str(err.value)
    assert "a name obsrv reserves" in text and "is ambiguous" in text and "source.group_column = 'nope'" in text


def test_a_class_with_fewer_training_rows_than_folds_is_a_clear_error() -> None:
    df = synthetic("binary", n=80)
    df.loc[:, "label"] = "no"
    df.loc[[0, 1, 2, 3], "label"] = "yes"  # 4 rows; after a 25 % holdout about 3 remain for 5 folds
    with pytest.raises(TaskError, match=r"classes with fewer training rows after the 25% holdout than the 5 "
                                        r"folds: 'yes' \(\d rows?\)"):
        _prepare(df, folds=5)


def test_a_tiny_holdout_or_fold_is_warned_about() -> None:
    df = synthetic("binary", n=10, seed=3)
    df["label"] = ["no", "yes"] * 5
    _, meta, log = _prepare(df, folds=2, holdout=0.2)
    assert meta["n_holdout"] == 2
    warnings = [line for line in log if line.startswith("WARNING")]
    assert any(f"the holdout has 2 rows (fewer than {MIN_SCORED_ROWS})" in w for w in warnings)
    assert any("the smallest fold has 4 rows" in w for w in warnings)
    _, _, log = _prepare(synthetic("binary", n=400))
    assert not [line for line in log if line.startswith("WARNING")]


def test_a_column_mapped_delta_table_is_read_with_its_values(tmp_path) -> None:
    """delta-rs' pyarrow reader returns nulls for every column of a table with column mapping (as
    Spark writes tables with spaces in names); the store reads such tables through its query engine."""
    store, name = LocalDeltaStore(tmp_path), TableName("main", "s", "mapped")
    df = pd.DataFrame({"a b": [1, 2], "Status (x)": ["u", "v"], "f": [1.5, None]})
    write_deltalake(store.location(name), _to_arrow(df), mode="overwrite", configuration={
        "delta.columnMapping.mode": "name", "delta.minReaderVersion": "2", "delta.minWriterVersion": "5"})
    pd.testing.assert_frame_equal(store.read(name), df, check_dtype=False)


def test_evaluate_repeats_the_small_split_warnings_beside_the_leaderboard(tmp_path, capsys) -> None:
    from support.runtime_helpers import make_job

    job = make_job(tmp_path, "binary", df=synthetic("binary", n=40), mlflow=False,
                   metric={"classification": ["auc"]})
    job.prepare()
    job.base("linear")
    capsys.readouterr()
    job.evaluate(["base_linear"])
    out = capsys.readouterr().out
    assert "[evaluate" in out and f"WARNING: the holdout has 10 rows (fewer than {MIN_SCORED_ROWS})" in out
