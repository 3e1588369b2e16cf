"""Loading files and the offline demo data into the local warehouse."""

from __future__ import annotations

import pandas as pd
import pytest

from obsrv.service_tasks.local.load_data import DEMO_CREDIT, DEMO_HOUSING, DEMO_SEGMENTS, load_demo, load_file
from obsrv.service_tasks.errors import TaskError
from obsrv.service_tasks.io import LocalDeltaStore, TableName


def test_load_csv_normalises_columns(tmp_path) -> None:
    path = tmp_path / "in.csv"
    pd.DataFrame({"Credit Amount": [1, 2], "Status": ["a", "b"], "2nd": [0.5, 1.5]}).to_csv(path, index=False)
    name, rows = load_file(path, "main.s.t", tmp_path)
    assert (name, rows) == (TableName("main", "s", "t"), 2)
    df = LocalDeltaStore(tmp_path).read(name)
    assert list(df.columns) == ["credit_amount", "status", "c_2nd"]


def test_load_parquet(tmp_path) -> None:
    path = tmp_path / "in.parquet"
    pd.DataFrame({"a": [1, 2, 3]}).to_parquet(path)
    name, rows = load_file(path, "main.s.p", tmp_path)
    assert rows == 3 and LocalDeltaStore(tmp_path).read(name)["a"].tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("frame", "file", "table", "message"),
    [
        (pd.DataFrame({"A b": [1], "a_b": [2]}), "x.csv", "main.s.t", "both become 'a_b'"),
        (pd.DataFrame({"a": [1]}), "x.json", "main.s.t", "use a .csv or .parquet file"),
        (pd.DataFrame({"a": [1]}), "x.csv", "s.t", "needs a catalog"),
        (pd.DataFrame({"a": [1]}), "x.csv", "main.s.bad-name", "not a valid identifier"),
    ],
    ids=["collision", "format", "two-part", "bad-name"],
)
def test_load_file_errors(tmp_path, frame, file, table, message) -> None:
    path = tmp_path / file
    frame.to_csv(path, index=False)
    with pytest.raises(TaskError, match=message):
        load_file(path, table, tmp_path)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(TaskError, match="No such file"):
        load_file(tmp_path / "nope.csv", "main.s.t", tmp_path)


def test_load_demo(tmp_path) -> None:
    loaded = dict(load_demo(tmp_path))
    assert loaded == {DEMO_CREDIT: 4454, DEMO_SEGMENTS: 4454, DEMO_HOUSING: 546}
    store = LocalDeltaStore(tmp_path)
    credit = store.read(DEMO_CREDIT)
    assert set(credit["default_label"]) == {0, 1}
    assert 0.25 < credit["default_label"].mean() < 0.31
    assert credit["customer_id"].is_unique and "status" not in credit.columns
    assert all(c == c.lower() for c in credit.columns)
    seg = store.read(DEMO_SEGMENTS)
    assert list(seg.columns) == ["customer_id", "segment"] and seg["segment"].nunique() >= 3
    assert set(seg["customer_id"]) == set(credit["customer_id"])
    assert "price" in store.read(DEMO_HOUSING).columns
