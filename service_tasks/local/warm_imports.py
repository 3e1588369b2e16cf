"""Imported once by the warm launcher's fork server (see `launchers.WarmLauncher`).

Everything here is what every task process would otherwise import and initialise for itself:
pandas, scikit-learn, the boosting libraries, deltalake, MLflow (and its SQL stores) and obsrv's
own task modules. Importing must not start threads, open files or create database connections:
each task is forked from this state. An import that fails is left to the task, which then fails
with the real error in its own log.
"""

from __future__ import annotations

import contextlib
import importlib

MODULES = (
    "numpy",
    "pandas",
    "scipy.stats",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.neighbors",
    "sklearn.cluster",
    "sklearn.mixture",
    "sklearn.model_selection",
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.preprocessing",
    "sklearn.impute",
    "sklearn.metrics",
    "threadpoolctl",
    "cloudpickle",
    "deltalake",
    "deltalake.fs",
    "pyarrow",
    "pyarrow.dataset",
    "pyarrow.parquet",
    "pyarrow.pandas_compat",
    "xgboost",
    "lightgbm",
    "catboost",
    "mlflow",
    "mlflow.pyfunc",
    "mlflow.models",
    "mlflow.tracking",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    # imported lazily by MLflow on a task's first run or model log (about a second per task on 2
    # cores): the sqlite dialect, alembic, tracing export, OpenTelemetry metrics, GitPython
    # (run source tags) and narwhals' pandas backend (signature inference)
    "sqlalchemy.dialects.sqlite",
    "alembic.command",
    "alembic.config",
    "mlflow.tracing.export",
    "mlflow.tracing.processor",
    "mlflow.models.display_utils",
    "mlflow.store.workspace_aware_mixin",
    "opentelemetry.sdk.metrics",
    "git",
    "narwhals._pandas_like.dataframe",
    "narwhals._interchange.dataframe",
    "obsrv.service_tasks.entry",
    "obsrv.service_tasks.context",
    "obsrv.service_tasks.stages.prepare",
    "obsrv.service_tasks.stages.base_models",
    "obsrv.service_tasks.stages.evaluate",
    "obsrv.service_tasks.ensembles",
)


def _warm_caches() -> None:
    # MLflow maps installed distributions to modules on first model log (~0.8 s per process).
    with contextlib.suppress(Exception):
        from mlflow.utils import requirements_utils

        requirements_utils._init_packages_to_modules_map()


for _name in MODULES:
    with contextlib.suppress(Exception):
        importlib.import_module(_name)
_warm_caches()
