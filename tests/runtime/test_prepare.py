"""The prepare stage: checks with clear messages, sampling, holdout and the ONE fold plan."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from obsrv.compiler.spec import Context
from obsrv.service_tasks.errors import TaskError
from obsrv.service_tasks.stages.prepare import FOLD, ROW_ID, load_prepared, prepare_frame, prepared_from_frame

from support.runtime_helpers import SOURCE, context_for, make_job, synthetic


def _prep(problem: str, df: pd.DataFrame | None = None, **overrides):
    ctx = Context.model_validate(context_for(problem, **overrides))
    return prepare_frame(synthetic(problem) if df is None else df, ctx, log=lambda m: None)


def test_stratified_folds_and_holdout() -> None:
    prepared, meta = _prep("binary", folds=4, holdout=0.2)
    hold = prepared[FOLD] == -1
    assert hold.sum() == 80 and meta["n_holdout"] == 80
    train = prepared.loc[~hold]
    assert sorted(train[FOLD].unique()) == [0, 1, 2, 3]
    # stratified: each fold's positive rate is close to the overall rate
    rate = (train["label"] == "yes").mean()
    for _, part in train.groupby(FOLD):
        assert abs((part["label"] == "yes").mean() - rate) < 0.03
    assert prepared[ROW_ID].is_unique and prepared[ROW_ID].dtype == np.int64
    assert prepared[FOLD].dtype == np.int32
    assert meta["classes"] == ["no", "yes"]
    assert meta["categorical_columns"] == ["color"]
    assert set(meta["feature_columns"]) == {"x0", "x1", "x2", "count", "color", "flag"}


def test_prepare_is_deterministic_and_seeded() -> None:
    a, _ = _prep("binary")
    b, _ = _prep("binary")
    pd.testing.assert_frame_equal(a, b)
    c, _ = _prep("binary", seed=7)
    assert not np.array_equal(a[FOLD].to_numpy(), c[FOLD].to_numpy())


def test_id_column_is_row_id_and_not_a_feature() -> None:
    df = synthetic("binary")
    df.insert(0, "customer_id", np.arange(1000, 1000 + len(df)))
    prepared, meta = _prep("binary", df=df, source={"id_column": "customer_id"})
    assert (prepared[ROW_ID] == prepared["customer_id"]).all()
    assert "customer_id" not in meta["feature_columns"]


def test_unique_id_like_column_is_not_a_feature_without_id_column() -> None:
    df = synthetic("binary")
    df.insert(0, "customer_id", np.arange(len(df)))
    _, meta = _prep("binary", df=df)
    assert "customer_id" not in meta["feature_columns"]


def test_stratified_sample() -> None:
    prepared, _ = _prep("binary", sample={"size": 200, "method": "stratified"})
    assert len(prepared) == 200
    full, _ = _prep("binary")
    assert abs((prepared["label"] == "yes").mean() - (full["label"] == "yes").mean()) < 0.02


def test_group_folds_keep_groups_together() -> None:
    df = synthetic("binary")
    df["store"] = np.arange(len(df)) % 20
    prepared, meta = _prep("binary", df=df, fold_type="group", source={"group_column": "store"})
    train = prepared.loc[prepared[FOLD] >= 0]
    assert (train.groupby("store")[FOLD].nunique() == 1).all()
    assert not set(train["store"]) & set(prepared.loc[prepared[FOLD] == -1, "store"])
    assert "store" not in meta["feature_columns"]


def test_time_folds_are_ordered_blocks_and_holdout_is_latest() -> None:
    df = synthetic("regression")
    df["day"] = pd.date_range("2024-01-01", periods=len(df), freq="D")[np.random.default_rng(1).permutation(len(df))]
    prepared, _ = _prep("regression", df=df, fold_type="time", source={"time_column": "day"})
    hold = prepared.loc[prepared[FOLD] == -1]
    train = prepared.loc[prepared[FOLD] >= 0]
    assert hold["day"].min() > train["day"].max()
    spans = train.groupby(FOLD)["day"].agg(["min", "max"]).sort_index()
    assert (spans["min"].to_numpy()[1:] > spans["max"].to_numpy()[:-1]).all()


@pytest.mark.parametrize(
    ("fold_type", "column"),
    [("stratified", None), ("kfold", None), ("group", "store"), ("time", "day")],
)
def test_holdout_zero_keeps_every_row_for_training(fold_type: str, column: str | None) -> None:
    """`context.holdout: 0`: no row is held out, every row gets a fold of the one plan."""
    df = synthetic("binary")
    df["store"] = np.arange(len(df)) % 20
    df["day"] = pd.date_range("2024-01-01", periods=len(df), freq="D")
    source = {"group_column": column} if fold_type == "group" else {"time_column": column} if column else {}
    prepared, meta = _prep("binary", df=df, holdout=0, fold_type=fold_type, folds=4, source=source)
    assert meta["n_holdout"] == 0 and meta["n_train"] == len(df) == len(prepared)
    assert sorted(prepared[FOLD].unique()) == [0, 1, 2, 3]
    data = prepared_from_frame(prepared, meta)
    assert len(data.y_holdout) == 0 and len(data.X_holdout) == 0
    assert list(data.X_holdout.columns) == list(data.X_train.columns)


def test_holdout_bounds_in_the_spec() -> None:
    assert Context.model_validate(context_for("binary", holdout=0)).holdout == 0.0
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        Context.model_validate(context_for("binary", holdout=-0.1))


@pytest.mark.parametrize(
    ("mutate", "overrides", "message"),
    [
        (lambda df: df.drop(columns=["label"]), {}, "has no column for source.target = 'label'"),
        (lambda df: df.assign(label="yes"), {}, "has only one class ('yes')"),
        (lambda df: df.head(2), {}, "fewer than the 3 folds"),
        (lambda df: df, {"source": {"id_column": "nope"}}, "source.id_column = 'nope'"),
        (lambda df: df.assign(store=np.arange(len(df)) % 2), {"fold_type": "group", "source": {"group_column": "store"}},
         "groups in the training rows, fewer than the 3 folds"),
        (lambda df: df.assign(w=-1.0), {"source": {"weight_column": "w"}}, "must be numeric, non-negative"),
    ],
    ids=["no-target", "one-class", "rows-lt-folds", "missing-id", "few-groups", "negative-weight"],
)
def test_prepare_errors(mutate, overrides, message) -> None:
    with pytest.raises(TaskError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _prep("binary", df=mutate(synthetic("binary")), **overrides)


def test_regression_needs_numeric_target() -> None:
    df = synthetic("regression").assign(label="x")
    with pytest.raises(TaskError, match="need a numeric target"):
        _prep("regression", df=df)


def test_missing_source_table_message(tmp_path) -> None:
    job = make_job(tmp_path, "binary", mlflow=False)
    job.store.drop(SOURCE)
    with pytest.raises(TaskError, match="does not exist.*obsrv data demo"):
        job.prepare()


def test_prepare_stage_writes_tables_and_loads_prepared_data(tmp_path) -> None:
    job = make_job(tmp_path, "multiclass", mlflow=False)
    ctx = job.prepare()
    prep = load_prepared(ctx.request, job.store)
    assert prep.problem == "classification" and prep.classes == [0, 1, 2] and prep.n_outputs == 3
    assert len(prep.y_train) + len(prep.y_holdout) == 400
    assert prep.n_folds == 3 and set(np.unique(prep.folds)) == {0, 1, 2}
    assert np.all(np.diff(prep.row_ids_train) > 0) and np.all(np.diff(prep.row_ids_holdout) > 0)
    assert list(prep.X_train.columns) == prep.feature_columns
    names = job.store.list_tables("main", "lab")
    assert "training_data_prepared_wf1_prepare" in names and "training_data_meta_wf1_prepare" in names


def test_all_missing_target_is_a_task_error() -> None:
    df = synthetic("binary").assign(label=None)
    with pytest.raises(TaskError, match="no non-missing values in target 'label'"):
        _prep("binary", df=df)


@pytest.mark.parametrize(
    "target",
    [
        lambda n: np.linspace(0.0, 1.0, n) ** 2,  # floats with fractions
        lambda n: np.arange(n, dtype=np.int64) * 3 % 1001,  # integers, one value per row
    ],
    ids=["fractional", "mostly-unique"],
)
def test_continuous_target_with_classification_metrics_is_a_task_error(target) -> None:
    df = synthetic("binary")
    df["label"] = target(len(df))
    with pytest.raises(TaskError, match=r"looks continuous.*`metric: regression: \["):
        _prep("binary", df=df)


def test_many_classes_and_integral_floats_are_still_classification() -> None:
    df = synthetic("binary")
    df["label"] = (np.arange(len(df)) % 60).astype("float64")  # 60 classes, 0.0..59.0, ~7 rows each
    _, meta = _prep("binary", df=df, fold_type="kfold")
    assert meta["classes"] == [float(i) for i in range(60)]


def test_feature_names_become_identifiers_and_the_mapping_is_kept() -> None:
    df = synthetic("binary").rename(columns={"x0": "x[0]", "x1": "x<1>", "x2": 'a:"b"', "count": "n {a,b}"})
    df["x_0"] = 1.0  # already an identifier, and what "x[0]" would become
    df["lbl"] = df["label"]
    df = df.drop(columns=["label"]).rename(columns={"color": "colour name"})
    prepared, meta = _prep("binary", df=df, source={"target": "lbl"})
    names = meta["column_names"]
    assert names == {"x_0_2": "x[0]", "x_1": "x<1>", "a_b": 'a:"b"', "n_a_b": "n {a,b}", "colour_name": "colour name"}
    assert set(meta["feature_columns"]) == {"x_0_2", "x_1", "a_b", "n_a_b", "colour_name", "flag", "x_0"}
    assert meta["categorical_columns"] == ["colour_name"]
    assert set(meta["feature_columns"]) <= set(prepared.columns)
    np.testing.assert_array_equal(
        prepared.set_index(ROW_ID).sort_index()["x_0_2"].to_numpy(), df["x[0]"].to_numpy()
    )


def test_id_values_align_with_train_and_holdout_rows(tmp_path) -> None:
    df = synthetic("binary")
    df.insert(0, "key", [f"k{i:04d}" for i in range(len(df))])  # a non-integer id: surrogate row ids
    job = make_job(tmp_path, "binary", df=df, mlflow=False, source={"id_column": "key"})
    ctx = job.prepare()
    prep = load_prepared(ctx.request, job.store)
    assert "key" not in prep.feature_columns
    by_key = df.set_index("key")
    for ids, X in ((prep.ids_train, prep.X_train), (prep.ids_holdout, prep.X_holdout)):
        assert ids is not None and len(ids) == len(X) and ids.dtype == object
        np.testing.assert_array_equal(by_key.loc[ids, "x0"].to_numpy(), X["x0"].to_numpy())

    job2 = make_job(tmp_path / "b", "binary", mlflow=False)
    prep2 = load_prepared(job2.prepare().request, job2.store)
    assert prep2.ids_train is None and prep2.ids_holdout is None


def test_integer_id_values_are_the_row_ids(tmp_path) -> None:
    df = synthetic("binary")
    df.insert(0, "customer_id", np.arange(5000, 5000 + len(df), dtype=np.int64))
    job = make_job(tmp_path, "binary", df=df, mlflow=False, source={"id_column": "customer_id"})
    prep = load_prepared(job.prepare().request, job.store)
    np.testing.assert_array_equal(prep.ids_train, prep.row_ids_train)
    np.testing.assert_array_equal(prep.ids_holdout, prep.row_ids_holdout)
