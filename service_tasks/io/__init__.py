"""The table I/O port: one small protocol, a local Delta implementation and a Spark one.

Task code asks `get_store()` for a store and never branches on where it runs.
"""

from obsrv.service_tasks.io.naming import output_table, leaderboard_table
from obsrv.service_tasks.io.store import (
    LocalDeltaStore,
    SparkTableStore,
    TableName,
    TableStore,
    get_store,
    obsrv_home,
    on_databricks,
)

__all__ = [
    "LocalDeltaStore",
    "SparkTableStore",
    "TableName",
    "TableStore",
    "get_store",
    "leaderboard_table",
    "obsrv_home",
    "on_databricks",
    "output_table",
]
