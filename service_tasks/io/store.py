"""TableStore: read, atomically overwrite, test and drop a three-level table.

Two implementations behind one protocol:

* `LocalDeltaStore` keeps Delta tables (the `deltalake` package, no Spark) under
  `$OBSRV_HOME/warehouse/<catalog>/<schema>/<table>`. A Delta overwrite is one atomic commit, so a
  retried task replaces its outputs and a reader never sees half a table.
* `SparkTableStore` uses the Spark session (`spark.table`, `saveAsTable` in overwrite mode): Unity
  Catalog on Databricks, where the overwrite is a single Delta commit too.

`get_store()` picks one from the environment (`DATABRICKS_RUNTIME_VERSION`). Names are validated
identifiers and always used backtick-quoted; no SQL is built by concatenating spec values.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import pandas as pd

from obsrv.compiler.spec import IDENTIFIER_RE, MAX_IDENTIFIER_LENGTH, Context
from obsrv.service_tasks.uc_rules import check_table


def check_identifier(value: str, what: str = "identifier") -> str:
    """`value` if it is a portable UC identifier (`[A-Za-z_][A-Za-z0-9_]*`), else ValueError."""
    if not isinstance(value, str) or not IDENTIFIER_RE.match(value) or len(value) > MAX_IDENTIFIER_LENGTH:
        raise ValueError(
            f"{what} {value!r} is not a valid identifier: use letters, digits and underscores, "
            "starting with a letter or underscore"
        )
    return value


@dataclass(frozen=True)
class TableName:
    """A validated three-level table name."""

    catalog: str
    schema: str
    table: str

    def __post_init__(self) -> None:
        check_identifier(self.catalog, "catalog")
        check_identifier(self.schema, "schema")
        check_identifier(self.table, "table")

    @property
    def quoted(self) -> str:
        """Backtick-quoted `catalog`.`schema`.`table` (identifiers cannot contain backticks)."""
        return f"`{self.catalog}`.`{self.schema}`.`{self.table}`"

    @property
    def full(self) -> str:
        return f"{self.catalog}.{self.schema}.{self.table}"

    def __str__(self) -> str:
        return self.full

    @classmethod
    def parse(cls, text: str, *, catalog: str | None = None, schema: str | None = None) -> "TableName":
        """`table`, `schema.table` or `catalog.schema.table`; missing parts come from the defaults."""
        parts = str(text).split(".")
        if len(parts) > 3:
            raise ValueError(f"table name {text!r} has more than three parts; write catalog.schema.table")
        if len(parts) == 3:
            return cls(*parts)
        if len(parts) == 2 and catalog:
            return cls(catalog, parts[0], parts[1])
        if len(parts) == 1 and catalog and schema:
            return cls(catalog, schema, parts[0])
        raise ValueError(
            f"table name {text!r} needs {'a catalog' if len(parts) == 2 else 'a catalog and schema'}; "
            "write catalog.schema.table"
        )


class TableStore(Protocol):
    """The table I/O port every stage is written against."""

    def read(self, name: TableName) -> pd.DataFrame: ...

    def read_sample(self, name: TableName, context: Context, log: Callable[[str], Any] = print) -> pd.DataFrame:
        """The source rows prepare starts from. Either the whole table (prepare then samples it to
        `context.sample.size` in pandas) or, where the table may not fit in memory, a sample of at
        most `context.sample.size` rows drawn by the store (prepare then keeps every row)."""
        ...

    def write(self, name: TableName, df: pd.DataFrame) -> None:
        """Replace `name` with `df` in one atomic commit (schema replaced too)."""
        ...

    def exists(self, name: TableName) -> bool: ...

    def drop(self, name: TableName) -> None: ...

    def list_tables(self, catalog: str, schema: str) -> list[str]:
        """The names of the tables in `catalog.schema` (cleanup)."""
        ...

    def location(self, name: TableName) -> str:
        """Where the table lives, for messages (a path locally, the name on Databricks)."""
        ...


def on_databricks() -> bool:
    return bool(os.environ.get("DATABRICKS_RUNTIME_VERSION"))


def obsrv_home() -> Path:
    """`$OBSRV_HOME`, default `./.obsrv`."""
    return Path(os.environ.get("OBSRV_HOME") or ".obsrv").resolve()


def get_store(home: Path | str | None = None) -> TableStore:
    """The store for this environment: Spark on Databricks, local Delta elsewhere."""
    if on_databricks():
        return SparkTableStore()
    return LocalDeltaStore(Path(home) if home is not None else obsrv_home())


class TableNotFound(LookupError):
    """The table does not exist."""


# ------------------------------------------------------------------------------------------ local

_DTYPE_KEY = "obsrv.pandas_dtype"


class LocalDeltaStore:
    """Delta tables under `<home>/warehouse/<catalog>/<schema>/<table>` via `deltalake`.

    Delta keeps Arrow types, which lose pandas' nullable ints/bools and categories; each column's
    pandas dtype is therefore kept in its Delta field metadata (same commit) and restored on read.
    """

    def __init__(self, home: Path | str) -> None:
        self.home = Path(home)
        self.warehouse = self.home / "warehouse"

    def path(self, name: TableName) -> Path:
        return self.warehouse / name.catalog / name.schema / name.table

    def location(self, name: TableName) -> str:
        return str(self.path(name))

    def exists(self, name: TableName) -> bool:
        from deltalake import DeltaTable

        path = self.path(name)
        return path.is_dir() and DeltaTable.is_deltatable(str(path))

    def read(self, name: TableName) -> pd.DataFrame:
        from deltalake import DeltaTable

        if not self.exists(name):
            raise TableNotFound(f"table {name} does not exist (looked in {self.path(name)})")
        table = DeltaTable(str(self.path(name)))
        df = _read_arrow(table).to_pandas()
        dtypes = {f.name: (f.metadata or {}).get(_DTYPE_KEY) for f in table.schema().fields}
        return _restore_dtypes(df, {k: v for k, v in dtypes.items() if isinstance(v, str)})

    def read_sample(self, name: TableName, context: Context, log: Callable[[str], Any] = print) -> pd.DataFrame:
        """The whole table: prepare samples it in pandas, so local runs keep their exact rows."""
        return self.read(name)

    def write(self, name: TableName, df: pd.DataFrame) -> None:
        from deltalake import write_deltalake

        check_table(name.catalog, name.schema, name.table)  # fail locally where UC would
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_deltalake(str(path), _to_arrow(df), mode="overwrite", schema_mode="overwrite")

    def drop(self, name: TableName) -> None:
        shutil.rmtree(self.path(name), ignore_errors=True)

    def list_tables(self, catalog: str, schema: str) -> list[str]:
        base = self.warehouse / check_identifier(catalog, "catalog") / check_identifier(schema, "schema")
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir() and (p / "_delta_log").is_dir())


def _read_arrow(table: Any) -> Any:
    """The table as a pyarrow Table.

    Column names are written as they are (delta-rs accepts spaces, dots, ``,;{}()=`` and any
    Unicode without column mapping, and reads them back). A table *with* column mapping (written by
    another engine) is read through delta-rs' query engine: its pyarrow reader returns every value
    of such a table as null (deltalake 1.6.6), which would lose the data silently."""
    import pyarrow as pa

    mode = (table.metadata().configuration or {}).get("delta.columnMapping.mode", "none")
    if mode == "none":
        return table.to_pyarrow_table()
    from deltalake import QueryBuilder

    result = pa.table(QueryBuilder().register("t", table).execute('SELECT * FROM "t"').read_all())
    fields = [pa.field(f.name, pa.string() if pa.types.is_string_view(f.type) else f.type) for f in result.schema]
    return result.cast(pa.schema(fields))


def _to_arrow(df: pd.DataFrame) -> Any:
    import pyarrow as pa

    for col in df.columns:
        if not isinstance(col, str):
            raise ValueError(f"column names must be strings, got {col!r}")
    frame = df.reset_index(drop=True)
    dtypes = {c: str(t) for c, t in frame.dtypes.items()}
    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = []
    for field in table.schema:
        t = field.type
        if pa.types.is_null(t):  # an all-None object column: Delta has no null type
            t = pa.string()
        elif pa.types.is_dictionary(t):  # categories are stored as their values
            t = t.value_type
        elif pa.types.is_large_string(t):
            t = pa.string()
        elif pa.types.is_timestamp(t) and t.unit == "ns":  # Delta stores microseconds
            t = pa.timestamp("us", tz=t.tz)
        fields.append(pa.field(field.name, t, metadata={_DTYPE_KEY: dtypes[field.name]}))
    return table.cast(pa.schema(fields), safe=False).replace_schema_metadata(None)


def _restore_dtypes(df: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    for col, dtype in dtypes.items():
        if col not in df.columns or str(df[col].dtype) == dtype:
            continue
        try:
            if dtype.startswith("datetime64"):
                df[col] = df[col].astype(dtype)
            elif dtype == "object":
                df[col] = df[col].astype(object).where(df[col].notna(), None)
            else:
                df[col] = df[col].astype(dtype)
        except (TypeError, ValueError):  # keep what Arrow gave rather than fail a read
            pass
    return df


# ------------------------------------------------------------------------------------------ spark


class SparkTableStore:
    """Tables through a Spark session: Unity Catalog on Databricks, the session catalog locally.

    On Databricks the session comes from `databricks.sdk.runtime` (Spark Connect on serverless).
    """

    def __init__(self, spark: Any | None = None) -> None:
        self._spark = spark

    @property
    def spark(self) -> Any:
        if self._spark is None:
            if on_databricks():
                from databricks.sdk.runtime import spark

                self._spark = spark
            else:  # local Spark, for tests of this code path
                from pyspark.sql import SparkSession

                self._spark = SparkSession.builder.getOrCreate()
        return self._spark

    def location(self, name: TableName) -> str:
        return name.full

    def exists(self, name: TableName) -> bool:
        return bool(self.spark.catalog.tableExists(name.quoted))

    def read(self, name: TableName) -> pd.DataFrame:
        if not self.exists(name):
            raise TableNotFound(f"table {name} does not exist")
        return _spark_to_pandas(self.spark.table(name.quoted))

    def read_sample(self, name: TableName, context: Context, log: Callable[[str], Any] = print) -> pd.DataFrame:
        """The sample, drawn in Spark: only the needed columns are read and only the sample is
        collected, so a warehouse-scale table never reaches the driver (see `spark_sampling`)."""
        from obsrv.service_tasks.io.spark_sampling import sample_source

        if not self.exists(name):
            raise TableNotFound(f"table {name} does not exist")
        return sample_source(self.spark.table(name.quoted), context, name.full, log)

    def write(self, name: TableName, df: pd.DataFrame) -> None:
        check_table(name.catalog, name.schema, name.table)
        frame = df.reset_index(drop=True)
        sdf = self.spark.createDataFrame(_pandas_for_spark(frame), schema=_spark_schema(frame))
        (
            sdf.write.mode("overwrite")
            .option("overwriteSchema", "true")
            .saveAsTable(name.quoted)
        )

    def list_tables(self, catalog: str, schema: str) -> list[str]:
        """The table names in `catalog.schema` (the catalog API: no SQL text is built)."""
        database = f"{check_identifier(catalog, 'catalog')}.{check_identifier(schema, 'schema')}"
        return sorted(t.name for t in self.spark.catalog.listTables(database))

    def drop(self, name: TableName) -> None:
        # a named parameter inside IDENTIFIER(): the name is never spliced into the SQL text
        self.spark.sql("DROP TABLE IF EXISTS IDENTIFIER(:name)", args={"name": name.quoted})


def _spark_schema(df: pd.DataFrame) -> Any:
    """An explicit Spark schema from the pandas dtypes (inference fails on all-null columns)."""
    from pyspark.sql import types as T

    fields = []
    for col, dtype in df.dtypes.items():
        if pd.api.types.is_bool_dtype(dtype):
            t: Any = T.BooleanType()
        elif pd.api.types.is_integer_dtype(dtype):
            t = T.IntegerType() if str(dtype).lower() in ("int32", "int16", "int8") else T.LongType()
        elif pd.api.types.is_float_dtype(dtype):
            t = T.DoubleType()
        elif pd.api.types.is_datetime64_any_dtype(dtype):
            t = T.TimestampType() if getattr(dtype, "tz", None) is not None else T.TimestampNTZType()
        else:
            t = T.StringType()
        fields.append(T.StructField(str(col), t, True))
    return T.StructType(fields)


def _pandas_for_spark(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col, dtype in out.dtypes.items():
        if isinstance(dtype, pd.CategoricalDtype) or dtype == object or pd.api.types.is_string_dtype(dtype):
            out[col] = out[col].astype(object).where(out[col].notna(), None).map(
                lambda v: v if v is None else str(v)
            )
        elif pd.api.types.is_extension_array_dtype(dtype) and not pd.api.types.is_datetime64_any_dtype(dtype):
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


def _spark_to_pandas(sdf: Any) -> pd.DataFrame:
    from pyspark.sql import types as T

    pdf = sdf.toPandas()
    for field in sdf.schema.fields:
        col = field.name
        if isinstance(field.dataType, (T.LongType, T.IntegerType, T.ShortType)) and pdf[col].dtype == object:
            pdf[col] = pdf[col].astype("Int64")
        elif isinstance(field.dataType, (T.LongType, T.IntegerType)) and pdf[col].dtype.kind == "f":
            pdf[col] = pdf[col].astype("Int64")
        elif isinstance(field.dataType, T.BooleanType) and pdf[col].dtype == object:
            pdf[col] = pdf[col].astype("boolean")
    return pdf
