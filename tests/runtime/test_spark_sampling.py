"""Warehouse-scale sources: on Spark, prepare reads the needed columns and collects only the sample.

The Spark tests run pyspark in local mode (one session for the module, driver memory bounded) on a
table a hundred times larger than the sample. They are marked slow: the JVM alone takes 10-30 s to
start on a shared machine.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pandas as pd
import pytest

from obsrv.compiler.spec import Context
from obsrv.service_tasks.io.spark_sampling import class_quotas, prefilter_threshold

from support.runtime_helpers import context_for

N_ROWS = 200_000
SIZE = 2_000
BIG = "`spark_catalog`.`default`.`obsrv_big_source`"


# ------------------------------------------------------------------------------ pure (no Spark)


def test_class_quotas_sum_to_size_and_keep_shares() -> None:
    counts = {"common": 130_000, "mid": 50_000, "rare": 10_003, "tiny": 7}
    quotas = class_quotas(counts, 2_000)
    assert sum(quotas.values()) == 2_000
    total = sum(counts.values())
    for cls, n in counts.items():
        assert abs(quotas[cls] - 2_000 * n / total) < 1  # largest remainder: within one row
    assert class_quotas(counts, 2_000) == quotas  # deterministic
    assert class_quotas({"a": 3, "b": 2}, 10) == {"a": 3, "b": 2}  # size above the table: all rows


def test_prefilter_threshold_keeps_a_margin() -> None:
    assert prefilter_threshold(10, 10) == 1.0
    t = prefilter_threshold(2_000, 200_000)
    assert 0.01 < t < 0.0125  # p plus six binomial sd plus ten rows, far below reading everything
    assert prefilter_threshold(1, 0) == 1.0


# ------------------------------------------------------------------------------------ Spark


def _java_available() -> bool:
    return bool(shutil.which("java") or os.environ.get("JAVA_HOME"))


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    pytest.importorskip("pyspark")
    if not _java_available():
        pytest.skip("pyspark needs a Java runtime (e.g. apt-get install openjdk-17-jre-headless)")
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    session = (
        SparkSession.builder.master("local[1]")
        .appName("obsrv-spark-sampling")
        # a bounded driver: the 200k-row table must never be collected into it (this takes effect
        # when this module starts the JVM; a JVM another module started keeps its own heap)
        .config("spark.driver.memory", "512m")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    u = F.rand(5)
    label = F.when(F.rand(6) < 0.01, F.lit(None)).when(u < 0.05, "rare").when(u < 0.30, "mid").otherwise("common")
    (
        session.range(N_ROWS, numPartitions=4)
        .select(
            F.col("id").alias("customer_id"),
            F.rand(1).alias("x0"),
            F.randn(2).alias("x 1"),  # a user's column name with a space, kept as it is
            (F.col("id") % 7).alias("count"),
            F.when(F.rand(3) < 0.5, "red").otherwise("blue").alias("color"),
            (F.rand(4) > 0.5).alias("flag"),
            F.col("id").cast("decimal(12,2)").alias("amount"),
            F.timestamp_seconds(F.col("id")).alias("seen_at"),  # not a usable feature type
            F.array(F.col("id")).alias("tags"),  # neither
            (F.rand(7) * 100).alias("y"),
            label.alias("label"),
        )
        .write.mode("overwrite")
        .saveAsTable(BIG)
    )
    yield session
    session.sql(f"DROP TABLE IF EXISTS {BIG}")
    session.stop()


@pytest.fixture
def collected(spark, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Row counts of everything brought from Spark into this Python process."""
    DataFrame = type(spark.range(1))  # pyspark 4: the classic (or Connect) class, not the ABC

    sizes: list[int] = []
    to_pandas, collect = DataFrame.toPandas, DataFrame.collect

    def spy_to_pandas(self: Any, *a: Any, **k: Any) -> pd.DataFrame:
        out = to_pandas(self, *a, **k)
        sizes.append(len(out))
        return out

    def spy_collect(self: Any, *a: Any, **k: Any) -> list[Any]:
        out = collect(self, *a, **k)
        sizes.append(len(out))
        return out

    monkeypatch.setattr(DataFrame, "toPandas", spy_to_pandas)
    monkeypatch.setattr(DataFrame, "collect", spy_collect)
    return sizes


def _sample(spark: Any, problem: str, **overrides: Any) -> tuple[pd.DataFrame, list[str]]:
    from obsrv.service_tasks.io.spark_sampling import sample_source

    overrides.setdefault("sample", {"size": SIZE, "method": "stratified"})
    ctx = Context.model_validate(context_for(problem, **overrides))
    logs: list[str] = []
    return sample_source(spark.table(BIG), ctx, "spark_catalog.default.obsrv_big_source", logs.append), logs


SPARK_WARNINGS = ("ignore::FutureWarning", "ignore::DeprecationWarning", "ignore:.*copy keyword.*")


@pytest.mark.slow
@pytest.mark.filterwarnings(*SPARK_WARNINGS)
def test_stratified_sample_is_drawn_in_spark(spark, collected) -> None:
    df, logs = _sample(spark, "binary", source={"id_column": "customer_id"})
    assert len(df) == SIZE
    assert max(collected) <= SIZE  # nothing bigger than the sample reached the driver
    # only the columns prepare can use: no timestamp, no array; the decimal arrives as a number
    assert list(df.columns) == ["customer_id", "x0", "x 1", "count", "color", "flag", "amount", "y", "label"]
    assert df["amount"].dtype == "float64"
    assert df["label"].notna().all()
    # class shares as in the source (usable rows), to within one row of each quota
    source = spark.table(BIG).where("label IS NOT NULL").groupBy("label").count().toPandas()
    share = source.set_index("label")["count"] / source["count"].sum()
    got = df["label"].value_counts()
    for cls, s in share.items():
        assert abs(got[cls] - SIZE * s) <= 1, (cls, got[cls], SIZE * s)
    assert any(f"{N_ROWS:,} rows" in line and "missing target" in line for line in logs), logs
    assert any("seen_at (timestamp)" in line and "tags (array<bigint>)" in line for line in logs), logs
    # seeded: the same seed gives the same rows in the same order, another seed other rows
    again, _ = _sample(spark, "binary", source={"id_column": "customer_id"})
    pd.testing.assert_frame_equal(df, again)
    other, _ = _sample(spark, "binary", source={"id_column": "customer_id"}, seed=7)
    assert len(set(df["customer_id"]) & set(other["customer_id"])) < SIZE // 10


@pytest.mark.slow
@pytest.mark.filterwarnings(*SPARK_WARNINGS)
def test_random_sample_without_id_column_is_exact_and_seeded(spark, collected) -> None:
    """Regression: a random sample, keyed by the rows' file addresses (no id column)."""
    df, logs = _sample(spark, "regression", source={"target": "y"})
    assert len(df) == SIZE and max(collected) <= SIZE
    assert not any("rand(seed)" in line for line in logs), logs  # the file-address key was used
    again, _ = _sample(spark, "regression", source={"target": "y"})
    pd.testing.assert_frame_equal(df, again)
    # a uniform sample: the mean of a uniform(0, 100) column is near 50
    assert abs(df["y"].mean() - 50) < 3


@pytest.mark.slow
@pytest.mark.filterwarnings(*SPARK_WARNINGS)
def test_prepare_on_spark_collects_only_the_sample(spark, collected) -> None:
    """The stage end to end through SparkTableStore: prepare writes the prepared table of SIZE rows,
    and never collects the 200k-row source (today's read-then-sample did)."""
    from obsrv.service_tasks.io import SparkTableStore
    from obsrv.service_tasks.contract import TaskRequest
    from obsrv.service_tasks.stages.prepare import prepared_table, run_prepare

    ctx = Context.model_validate(
        context_for(
            "binary",
            sample={"size": SIZE, "method": "stratified"},
            source={"catalog": "spark_catalog", "schema": "default", "table": "obsrv_big_source"},
        )
    )
    request = TaskRequest("prepare", "prepare", "wf1", "spark_catalog", "default", ctx, {}, (), 60.0)
    store = SparkTableStore(spark)
    logs: list[str] = []
    meta = run_prepare(request, store, log=logs.append)
    assert max(collected) <= SIZE, "prepare collected more than the sample"
    assert meta["n_rows"] == SIZE
    assert any(f"{N_ROWS:,} rows" in line for line in logs), logs
    prepared = store.read(prepared_table(request))
    assert len(prepared) == SIZE
    store.drop(prepared_table(request))


@pytest.mark.slow
@pytest.mark.filterwarnings(*SPARK_WARNINGS)
def test_method_none_takes_the_first_rows_and_a_view_falls_back_to_rand(spark, collected) -> None:
    from obsrv.service_tasks.io.spark_sampling import sample_source

    first, _ = _sample(spark, "binary", source={"id_column": "customer_id"}, sample={"size": SIZE, "method": "none"})
    usable_ids = spark.table(BIG).where("label IS NOT NULL").select("customer_id").orderBy("customer_id").limit(SIZE)
    assert first["customer_id"].tolist() == [r[0] for r in usable_ids.collect()]
    # a view has no file metadata: the sample is still exact, and the log says it is partition-dependent
    spark.sql(f"CREATE OR REPLACE TEMP VIEW obsrv_big_view AS SELECT * FROM {BIG}")
    ctx = Context.model_validate(context_for("binary", sample={"size": SIZE, "method": "stratified"}))
    logs: list[str] = []
    df = sample_source(spark.table("obsrv_big_view"), ctx, "obsrv_big_view", logs.append)
    assert len(df) == SIZE and max(collected) <= SIZE
    assert any("rand(seed)" in line for line in logs), logs
