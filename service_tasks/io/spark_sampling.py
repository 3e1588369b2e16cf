"""Sample a warehouse table inside Spark, so that prepare collects the sample and nothing more.

A source table can have a hundred million rows; reading it into pandas first (and sampling there)
would kill the driver. On Spark, prepare therefore asks `sample_source` for its input:

1. Only the columns prepare can use are read: the target, the id/group/time/weight columns and
   every column whose Spark type can be a feature (numbers, booleans, strings). Dates, timestamps,
   binaries, arrays, maps and structs would be dropped by prepare anyway, so they are never read.
   Decimals are cast to double: in pandas they would arrive as Python objects and pass for labels.
2. One cheap aggregation counts the source's rows, the rows with a missing target and, for a
   stratified sample, the rows of each class; prepare logs these counts.
3. Each usable row gets a seeded uniform key `u` in [0, 1). `stratified` (classification) keeps
   exactly `quota[c]` rows of class `c`, the quotas apportioned by largest remainder so the class
   shares match the source's; `random` (and `stratified` for regression) keeps exactly
   `sample.size` rows; `none` keeps the first `sample.size` rows in key order. A Bernoulli
   pre-filter (`u` under a threshold with a wide binomial margin) shrinks the data before the exact
   trim (the smallest `u` per class), so the trim sorts a few thousand rows, not the table.
4. Only the sample is collected (`toPandas`), then put in row-key order (table order for file
   addresses, id order for an id column).

Determinism: `u` is `xxhash64(seed, row key)`. The row key is the spec's `id_column` when there is
one, else the row's physical address (`_metadata.file_path`, `_metadata.row_index`), so the sample
depends on the seed and the table's contents (its version), not on how Spark splits the files into
partitions (which changes with the cluster's size). A source without that metadata (a view, say)
falls back to Spark's `rand(seed)`, which is seeded but partition-dependent; the log says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd

from obsrv.compiler.spec import Context
from obsrv.service_tasks.errors import TaskError

# More classes than this cannot be a label worth stratifying on; prepare's own checks then report
# a continuous-looking target on the sample.
MAX_STRATA = 1000
# The pre-filter keeps `margin_sd` binomial standard deviations (plus a few rows) above each quota,
# so that it falls short about once in a billion runs; a shortfall is detected and redone unfiltered.
_MARGIN_SD = 6.0
_MARGIN_ROWS = 10
_KEY = "__obsrv_u"
_RANK = "__obsrv_rank"
_HASH_BITS = 53  # a double holds 53 bits exactly: u = (hash & (2^53 - 1)) / 2^53

Log = Callable[[str], Any]


@dataclass(frozen=True)
class ColumnPlan:
    """The columns read from the source and the ones left out (with their Spark type)."""

    selected: list[str]
    skipped: dict[str, str]
    to_double: list[str]  # decimal columns, cast to double on read


def plan_columns(schema: Any, context: Context) -> ColumnPlan:
    """The source columns prepare needs, from the table's Spark schema."""
    from pyspark.sql import types as T

    src = context.source
    roles = {c for c in (src.target, src.id_column, src.weight_column, src.group_column, src.time_column) if c}
    usable = (T.NumericType, T.BooleanType, T.StringType, T.CharType, T.VarcharType)
    selected, skipped, to_double = [], {}, []
    for field in schema.fields:
        name, dtype = field.name, field.dataType
        if name in roles or isinstance(dtype, usable):
            selected.append(name)
            # the id column keeps its type: an integer id is used as the row id as it is
            if isinstance(dtype, T.DecimalType) and name != src.id_column:
                to_double.append(name)
        else:
            skipped[name] = dtype.simpleString()
    return ColumnPlan(selected, skipped, to_double)


def class_quotas(counts: dict[Any, int], size: int) -> dict[Any, int]:
    """Rows to keep per class: `size` apportioned to the class counts by largest remainder.

    Each quota is within one row of `size * share`, and they sum to `size` exactly. Ties in the
    remainder go to the earlier class in `counts`' order, so the result is deterministic.
    """
    total = sum(counts.values())
    if size >= total:
        return dict(counts)
    exact = {c: n * size / total for c, n in counts.items()}
    quotas = {c: min(counts[c], math.floor(v)) for c, v in exact.items()}
    order = sorted(counts, key=lambda c: (-(exact[c] - math.floor(exact[c])), list(counts).index(c)))
    short = size - sum(quotas.values())
    for c in order:
        if short == 0:
            break
        if quotas[c] < counts[c]:
            quotas[c] += 1
            short -= 1
    return quotas


def prefilter_threshold(keep: int, available: int) -> float:
    """A `u` threshold that passes at least `keep` of `available` rows with near certainty."""
    if keep >= available or available == 0:
        return 1.0
    p = keep / available
    return min(1.0, p + _MARGIN_SD * math.sqrt(p * (1 - p) / available) + _MARGIN_ROWS / available)


def sample_source(sdf: Any, context: Context, name: str, log: Log = print) -> pd.DataFrame:
    """The rows of `sdf` that prepare samples, as pandas; at most `context.sample.size` rows."""
    from pyspark.sql import functions as F

    from obsrv.service_tasks.io.store import _spark_to_pandas

    src, sample = context.source, context.sample
    columns = plan_columns(sdf.schema, context)
    if columns.skipped:
        log("not read (type prepare cannot use as a feature): "
            + ", ".join(f"{c} ({t})" for c, t in columns.skipped.items()))
    key_cols, u = _row_key(sdf, context, log)
    frame = sdf.select(
        *[F.col(_q(c)).cast("double").alias(c) if c in columns.to_double else F.col(_q(c)) for c in columns.selected],
        *[expr.alias(alias) for alias, expr in key_cols],
        u.alias(_KEY),
    )
    target = F.col(_q(src.target))
    usable = target.isNotNull()
    if _is_floating(frame.schema[src.target].dataType):
        usable = usable & ~F.isnan(target)

    stratify = sample.method == "stratified" and context.metric.problem == "classification"
    total, n_usable, class_counts = _count(frame, src.target, usable, stratify and sample.size is not None)
    missing = total - n_usable
    log(f"source {name}: {total:,} rows" + (f", {missing:,} with a missing target (not used)" if missing else ""))
    if total and not n_usable:  # the message prepare gives for it, before anything is collected
        raise TaskError(
            f"There are no non-missing values in target {src.target!r}: every row of {name} has it "
            "missing. Check source.target and the table's contents."
        )
    rows = frame.filter(usable)
    size = sample.size
    by_u = [F.col(_KEY)] + [F.col(alias) for alias, _ in key_cols]

    quotas: dict[Any, int] | None = None
    if size is None or n_usable <= size:
        picked, what = rows, "every usable row"
    elif sample.method == "none":
        first = [F.col(alias) for alias, _ in key_cols]
        picked, what = (rows.orderBy(*first).limit(size) if first else rows.limit(size)), "first rows"
    elif stratify and class_counts is not None and min(class_counts.values()) >= 2:
        quotas = class_quotas(class_counts, size)
        picked, what = _stratified(rows, src.target, class_counts, quotas, by_u), "stratified"
    else:
        if stratify:
            why = "more than %d classes" % MAX_STRATA if class_counts is None else "a class has a single row"
            log(f"sample.method stratified: {why}, so the sample is random")
        threshold = prefilter_threshold(size, n_usable)
        picked, what = rows.filter(F.col(_KEY) < F.lit(threshold)).orderBy(*by_u).limit(size), "random"
    n_want = n_usable if size is None else min(size, n_usable)

    out = _collect(picked, key_cols, _spark_to_pandas)
    if len(out) < n_want and what in ("stratified", "random"):
        # the pre-filter fell short (about once in a billion runs): sample again without it
        log(f"the Spark pre-filter kept {len(out)} of the {n_want} rows wanted; sampling again without it")
        if quotas is not None:
            picked = _stratified(rows, src.target, class_counts or {}, quotas, by_u, prefilter=False)
        else:
            picked = rows.orderBy(*by_u).limit(n_want)
        out = _collect(picked, key_cols, _spark_to_pandas)
    if len(out) != n_want:
        raise RuntimeError(f"Spark sampling of {name} returned {len(out)} rows, expected {n_want}")
    log(f"sampled {len(out):,} of {n_usable:,} usable rows in Spark ({what}, seed {context.seed}); "
        f"collected {len(out):,} rows x {out.shape[1]} columns")
    return out


def _row_key(sdf: Any, context: Context, log: Log) -> tuple[list[tuple[str, Any]], Any]:
    """(key columns kept for ordering, the seeded uniform u) for each row."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    seed = F.lit(int(context.seed))
    if context.source.id_column:
        keys = [("__obsrv_key_id", F.col(_q(context.source.id_column)))]
    else:
        keys = [("__obsrv_key_file", F.col("_metadata.file_path")),
                ("__obsrv_key_row", F.col("_metadata.row_index"))]
        try:
            sdf.select(*[expr for _, expr in keys]).schema  # analysed here, also on Spark Connect
        except AnalysisException:
            log("the source has no file metadata (_metadata.file_path/row_index): the sample uses "
                "rand(seed), which also depends on how Spark partitions the table")
            return [], F.rand(int(context.seed))
    hashed = F.xxhash64(seed, *[expr for _, expr in keys])
    u = hashed.bitwiseAND(F.lit((1 << _HASH_BITS) - 1)).cast("double") / float(1 << _HASH_BITS)
    return keys, u


def _count(frame: Any, target: str, usable: Any, by_class: bool) -> tuple[int, int, dict[Any, int] | None]:
    """(source rows, rows with a target, rows per class or None): one aggregation over the target."""
    from pyspark.sql import functions as F

    if by_class:
        groups = (
            frame.groupBy(F.col(_q(target)).alias("c"))
            .agg(F.count(F.lit(1)).alias("n"), F.max(usable.cast("int")).alias("ok"))
            .limit(MAX_STRATA + 3)  # + null + NaN + one over: enough to know there are too many
            .collect()
        )
        counts = {r["c"]: int(r["n"]) for r in groups if r["ok"] == 1}
        if len(counts) <= MAX_STRATA and len(groups) < MAX_STRATA + 3:
            total = sum(int(r["n"]) for r in groups)
            return total, sum(counts.values()), dict(sorted(counts.items(), key=lambda kv: _sort_key(kv[0])))
    row = frame.agg(F.count(F.lit(1)).alias("total"), F.sum(usable.cast("long")).alias("ok")).collect()[0]
    return int(row["total"]), int(row["ok"] or 0), None


def _stratified(rows: Any, target: str, counts: dict[Any, int], quotas: dict[Any, int], order: list[Any],
                prefilter: bool = True) -> Any:
    """Exactly quotas[c] rows of each class c: the smallest u within each class."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    t = F.col(_q(target))
    quota_of = _per_class(t, quotas)
    if prefilter:
        threshold = _per_class(t, {c: prefilter_threshold(quotas[c], counts[c]) for c in counts})
        rows = rows.filter(F.col(_KEY) < threshold)
    ranked = rows.withColumn(_RANK, F.row_number().over(Window.partitionBy(t).orderBy(*order)))
    return ranked.filter(F.col(_RANK) <= quota_of).drop(_RANK)


def _per_class(target: Any, values: dict[Any, Any]) -> Any:
    """A column holding values[class of the row] (a CASE over the, at most MAX_STRATA, classes)."""
    from pyspark.sql import functions as F

    expr: Any = None  # a pyspark Column once the first branch is built
    for cls, value in values.items():
        expr = (F.when if expr is None else expr.when)(target == F.lit(cls), F.lit(value))
    return expr.otherwise(F.lit(0))


def _collect(picked: Any, key_cols: list[tuple[str, Any]], to_pandas: Callable[[Any], pd.DataFrame]) -> pd.DataFrame:
    """The sample as pandas, in row-key order (u without a key). The order is set here, not by a
    Spark sort: a global sort costs Spark a sampling job and a shuffle, pandas a few milliseconds."""
    keys = [alias for alias, _ in key_cols] or [_KEY]
    out = to_pandas(picked)
    out = out.sort_values(keys, kind="mergesort") if len(out) else out
    return out.drop(columns=[_KEY] + [alias for alias, _ in key_cols]).reset_index(drop=True)


def _is_floating(dtype: Any) -> bool:
    from pyspark.sql import types as T

    return isinstance(dtype, (T.FloatType, T.DoubleType))


def _sort_key(value: Any) -> tuple[int, Any]:
    """Classes in a stable order (numbers, then text) so quotas' tie-breaks are deterministic."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return (1, str(value))
    return (0, value)


def _q(column: str) -> str:
    """A column reference that keeps dots, spaces and backticks in the name literal."""
    return "`" + column.replace("`", "``") + "`"
