"""Loading files and the offline demo data into the local warehouse."""

from __future__ import annotations

import pandas as pd
import pytest

from obsrv.service_tasks.local.load_data import DEMO_CREDIT, DEMO_HOUSING, DEMO_SEGMENTS, load_demo, load_file
from obsrv.service_tasks.errors import TaskError
from obsrv.service_tasks.io import LocalDeltaStore, TableName


def test_load_csv_keeps_column_names(tmp_path) -> None:
    path = tmp_path / "in.csv"
    names = ["Credit Amount", "Status", "2nd", "a.b", "Gewicht (kg)", "Größe", "x,y;z={}"]
    pd.DataFrame([[1, "a", 0.5, 1.0, 2.0, 3.0, 4], [2, "b", 1.5, 2.0, 3.0, 4.0, 5]], columns=names).to_csv(
        path, index=False)
    loaded = load_file(path, "main.s.t", tmp_path)
    assert (loaded.table, loaded.rows, loaded.notes, loaded.warnings) == (TableName("main", "s", "t"), 2, [], [])
    df = LocalDeltaStore(tmp_path).read(loaded.table)
    assert list(df.columns) == names
    assert df["Status"].tolist() == ["a", "b"]


def test_load_parquet(tmp_path) -> None:
    path = tmp_path / "in.parquet"
    pd.DataFrame({"a": [1, 2, 3]}).to_parquet(path)
    loaded = load_file(path, "main.s.p", tmp_path)
    assert loaded.rows == 3 and LocalDeltaStore(tmp_path).read(loaded.table)["a"].tolist() == [1, 2, 3]


def test_load_says_which_csv_headers_it_had_to_name(tmp_path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("a,a,,b\n1,2,3,4\n", encoding="utf-8")
    loaded = load_file(path, "main.s.d", tmp_path)
    assert list(LocalDeltaStore(tmp_path).read(loaded.table).columns) == ["a", "a.1", "Unnamed: 2", "b"]
    assert loaded.notes == [
        "column 2 of dup.csv repeats the name 'a'; it is loaded as 'a.1'",
        "column 3 of dup.csv has no name in the header; it is loaded as 'Unnamed: 2'",
    ]


def test_load_warns_about_reserved_names(tmp_path) -> None:
    path = tmp_path / "r.csv"
    pd.DataFrame({"OBSRV_ROW_ID": [1], "obsrv_fold": [0], "y": [1]}).to_csv(path, index=False)
    loaded = load_file(path, "main.s.r", tmp_path)
    assert len(loaded.warnings) == 2
    assert "'OBSRV_ROW_ID' has a name obsrv reserves" in loaded.warnings[0]
    assert "prepare will refuse this table" in loaded.warnings[1]


@pytest.mark.parametrize(
    ("frame", "file", "table", "message"),
    [
        (pd.DataFrame({"Amount": [1], "b": [0], "amount": [2], "B": [3]}), "x.csv", "main.s.t",
         "differ only by case: 'Amount', 'amount'; 'b', 'B'"),
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
