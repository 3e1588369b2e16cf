"""One local Spark session builder for the Spark-path tests (the Databricks code paths run
against local Spark's session catalog, spark_catalog.default)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


def local_spark(tmp_path_factory: pytest.TempPathFactory, app_name: str, **config: str) -> Iterator[Any]:
    """Yield a local[1] session with its own warehouse folder, Arrow on and the UI off; `config`
    adds or overrides settings (e.g. `spark.driver.memory`). Stopped after the module."""
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    settings = {
        "spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("spark-warehouse")),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "1",
        **config,
    }
    builder = SparkSession.builder.master("local[1]").appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    yield session
    session.stop()
