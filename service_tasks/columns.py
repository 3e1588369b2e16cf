"""Users' column names: how a name in the spec finds its column, and the names obsrv reserves.

Column names are kept as the source has them (case, dots, spaces, any Unicode). A spec refers to
a column the way Spark SQL does with its default ``spark.sql.caseSensitive=false``: the match
ignores case, and a name that matches two columns is an error, never a guess (no exact-case
preference: Spark's resolver keeps every case-insensitive match and fails on more than one).

Sources (apache/spark):
* ``sql/catalyst/src/main/scala/org/apache/spark/sql/internal/SQLConf.scala``, ``CASE_SENSITIVE``:
  ``buildConf("spark.sql.caseSensitive") ... .createWithDefault(false)``;
* ``sql/catalyst/src/main/scala/org/apache/spark/sql/catalyst/analysis/package.scala``:
  ``caseInsensitiveResolution = (a, b) => a.equalsIgnoreCase(b)``, the resolver used when it is false;
* the analyzer's ``AMBIGUOUS_REFERENCE`` error (``Reference ... is ambiguous, could be: ...``) when
  more than one column resolves.

Delta and Unity Catalog tables are case-insensitive too: a table cannot hold two columns that are
equal up to case (delta-rs: "Duplicate field name (case-insensitive)").
"""

from __future__ import annotations

from collections.abc import Iterable

from obsrv.service_tasks.errors import TaskError

ROW_ID = "obsrv_row_id"
"""The prepared table's row id column."""
FOLD = "obsrv_fold"
"""The prepared table's fold column (-1 = holdout)."""
RESERVED_COLUMNS = (ROW_ID, FOLD)
"""The columns prepare adds beside the source's own: a source column of one of these names (in
any case) would be overwritten or would clash, so prepare refuses it."""


def name_key(name: str) -> str:
    """The case-insensitive key of a column name (Java's ``equalsIgnoreCase`` for the names that
    occur in practice)."""
    return str(name).lower()


def same_column(a: str, b: str) -> bool:
    return name_key(a) == name_key(b)


def find_column(columns: Iterable[str], name: str, what: str) -> str | None:
    """The one column of ``columns`` that ``name`` refers to (case-insensitive), or None.

    Raises TaskError when two columns match (they differ only by case), naming both."""
    matches = [c for c in columns if same_column(c, name)]
    if len(matches) > 1:
        raise TaskError(
            f"{what} = {name!r} is ambiguous: the columns {', '.join(repr(c) for c in matches)} differ only "
            "by case, and column names are matched case-insensitively (as Spark and Unity Catalog do). "
            "Rename one of those columns in the source."
        )
    return matches[0] if matches else None


def case_duplicates(columns: Iterable[str]) -> list[list[str]]:
    """Groups of two or more names that are equal up to case, in column order."""
    groups: dict[str, list[str]] = {}
    for col in columns:
        groups.setdefault(name_key(col), []).append(col)
    return [g for g in groups.values() if len(g) > 1]


def reserved_columns(columns: Iterable[str]) -> list[str]:
    """The names among ``columns`` that equal (up to case) a name obsrv reserves."""
    reserved = {name_key(r) for r in RESERVED_COLUMNS}
    return [c for c in columns if name_key(c) in reserved]


def reserved_message(found: list[str], table: object) -> str:
    return (
        f"The source table {table} has the column(s) {', '.join(repr(c) for c in found)}, a name obsrv "
        f"reserves for its own columns ({', '.join(RESERVED_COLUMNS)}, in any case). Rename "
        f"{'it' if len(found) == 1 else 'them'} in the source (e.g. `obsrv data load` a file with another "
        "header) and run again."
    )
