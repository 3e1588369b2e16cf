"""The table I/O port: names, the local Delta store and (when pyspark is installed) the Spark store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from obsrv.service_tasks.io import LocalDeltaStore, TableName, get_store, leaderboard_table, output_table
from obsrv.service_tasks.io.store import SparkTableStore
from support.spark_session import local_spark


def _typed_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "i": np.array([1, 2, 3], dtype="int64"),
            "i32": np.array([1, 2, 3], dtype="int32"),
            "f": [1.5, np.nan, 3.0],
            "s": pd.Series(["a", None, "c"], dtype="str"),
            "b": [True, False, True],
            "ts": pd.to_datetime(["2024-01-01 10:00", "2024-06-01 00:00", None]).astype("datetime64[us]"),
            "ni": pd.array([1, None, 3], dtype="Int64"),
            "nb": pd.array([True, None, False], dtype="boolean"),
        }
    )


def test_local_store_round_trips_dtypes(tmp_path) -> None:
    store = LocalDeltaStore(tmp_path)
    name = TableName("main", "s", "t")
    df = _typed_frame()
    store.write(name, df)
    back = store.read(name)
    assert dict(back.dtypes.astype(str)) == dict(df.dtypes.astype(str))
    pd.testing.assert_frame_equal(back, df)
    assert store.path(name) == tmp_path / "warehouse" / "main" / "s" / "t"


def test_local_store_overwrite_replaces_rows_and_schema(tmp_path) -> None:
    store = LocalDeltaStore(tmp_path)
    name = TableName("main", "s", "t")
    store.write(name, _typed_frame())
    new = pd.DataFrame({"other": pd.array([7, None], dtype="Int64")})
    store.write(name, new)
    pd.testing.assert_frame_equal(store.read(name), new)
    assert store.exists(name)
    store.drop(name)
    assert not store.exists(name)


def test_get_store_is_local_off_databricks(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.setenv("OBSRV_HOME", str(tmp_path))
    store = get_store()
    assert isinstance(store, LocalDeltaStore) and store.home == tmp_path
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    assert isinstance(get_store(), SparkTableStore)


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (("main", "s", "t; DROP TABLE x"), "table 't; DROP TABLE x' is not a valid identifier"),
        (("ma`in", "s", "t"), "catalog 'ma`in' is not a valid identifier"),
        (("main", "a.b", "t"), "schema 'a.b' is not a valid identifier"),
        (("main", "s", "1t"), "table '1t' is not a valid identifier"),
    ],
)
def test_table_names_validated(parts, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        TableName(*parts)


def test_table_name_quoting_and_parsing() -> None:
    assert TableName("main", "s", "t").quoted == "`main`.`s`.`t`"
    assert TableName.parse("seg", catalog="c", schema="s") == TableName("c", "s", "seg")
    assert TableName.parse("x.seg", catalog="c", schema="s") == TableName("c", "x", "seg")
    assert TableName.parse("a.x.seg") == TableName("a", "x", "seg")
    with pytest.raises(ValueError, match="more than three parts"):
        TableName.parse("a.b.c.d")


def test_seed_naming_convention() -> None:
    name = output_table("main", "credit_risk", "training_data", "clustered", "wf123", "route_cluster")
    assert name.full == "main.credit_risk.training_data_clustered_wf123_route_cluster"
    assert leaderboard_table("main", "cr", "training_data", "7").table == "training_data_leaderboard_7"
    with pytest.raises(ValueError, match="task id"):
        output_table("main", "s", "t", "oof", "1", "bad-id")




@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    yield from local_spark(tmp_path_factory, "obsrv-tests")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning", "ignore:.*copy keyword.*")
def test_spark_store_round_trip_and_overwrite(spark) -> None:
    """The Databricks code path against local Spark's session catalog (spark_catalog.default)."""
    store = SparkTableStore(spark)
    name = TableName("spark_catalog", "default", "obsrv_t")
    store.drop(name)
    assert not store.exists(name)
    df = _typed_frame()
    store.write(name, df)
    back = store.read(name).sort_values("i").reset_index(drop=True)
    assert list(back.columns) == list(df.columns)
    assert back["i"].tolist() == [1, 2, 3]
    assert back["ni"].isna().tolist() == [False, True, False]
    assert back["s"].isna().tolist() == [False, True, False]
    assert back["b"].tolist() == [True, False, True]
    store.write(name, pd.DataFrame({"x": [1.0]}))
    assert store.read(name).columns.tolist() == ["x"]
    store.drop(name)
    assert not store.exists(name)
