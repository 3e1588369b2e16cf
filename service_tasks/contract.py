"""The task contract: what every stage and ensemble task is written against.

The runtime (`context.RuntimeContext`) implements `TaskContext`; stages and ensemble tasks code
against the names and shapes below. Shapes: every prediction matrix is (n_rows, K) float64, where K is the
number of classes for classification (columns in `PreparedData.classes` order, binary keeps both
columns) and K == 1 for regression. Class targets are encoded as int indices into `classes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import pandas as pd

from obsrv.compiler.spec import Context, Problem
from obsrv.service_tasks.io.store import TableStore

Log = Callable[[str], None]
"""Where a task's progress lines go (the context's ``log``, ``print`` in tests)."""


@dataclass(frozen=True)
class TaskRequest:
    """What `obsrv-task` was asked to do (parsed from the compiled parameters)."""

    stage: str
    task_id: str
    workflow_id: str
    catalog: str  # output catalog
    schema: str  # output schema
    context: Context
    task: dict[str, Any]  # task model dump (user tasks), {"family": ...} (base) or {}
    upstream: tuple[str, ...]
    budget_seconds: float  # cap for hyperparameter search in this task
    # The job's MLflow experiment (`--experiment`: the bundle's `resources.experiments.<job>`, as
    # deployed; the local runner resolves the same name). Empty: the caller did not say.
    experiment: str = ""
    # The champion's registered-model name within catalog.schema (`--model`: the bundle's
    # `resources.registered_models.<job>`, prefixed in development mode). Empty: the job name.
    model: str = ""


def predict_rows(n_rows: int, n_outputs: int, predict: Callable[[], np.ndarray]) -> np.ndarray:
    """``predict()``, or an empty ``(0, n_outputs)`` matrix when there are no rows to predict.

    Why: with ``context.holdout: 0`` the holdout has no rows, and sklearn estimators (and the
    combiners built on them) refuse zero-row input instead of returning an empty matrix.
    """
    if n_rows == 0:
        return np.zeros((0, n_outputs), dtype=np.float64)
    return predict()


@dataclass(frozen=True)
class PreparedData:
    """The prepared table split into train (with the ONE shared fold plan) and holdout.

    The holdout is empty (zero rows) when the spec sets ``context.holdout: 0``: every row trains,
    and the leaderboard scores out-of-fold predictions instead."""

    problem: Problem
    classes: list[Any]  # original labels, sorted; [] for regression
    feature_columns: list[str]
    categorical_columns: list[str]
    X_train: pd.DataFrame  # features only
    y_train: np.ndarray  # int class index or float
    w_train: np.ndarray | None
    folds: np.ndarray  # int fold id per train row, 0..n_folds-1
    row_ids_train: np.ndarray  # int64
    X_holdout: pd.DataFrame
    y_holdout: np.ndarray
    w_holdout: np.ndarray | None
    row_ids_holdout: np.ndarray
    # the source's `id_column` values (original dtype), aligned with the train / holdout rows;
    # None when the spec names no id_column (route_external joins on these)
    ids_train: np.ndarray | None = None
    ids_holdout: np.ndarray | None = None
    # feature column (as in X_*, identifier-safe) -> its name in the source table; only the columns
    # prepare had to rename appear (xgboost/lightgbm/Delta reject `[`, `]`, `<`, `:`, spaces, ...)
    original_names: dict[str, str] | None = None
    # the source's id column as the source spells it (the spec's `id_column` may differ in case)
    id_column: str | None = None

    def feature_name(self, source_name: str) -> str:
        """The X_* column of a source column named in the spec, or ``source_name`` itself when no
        feature column matches. Matched ignoring case, as Spark does (`columns.find_column`): a
        name that two feature columns match is a TaskError."""
        from obsrv.service_tasks.columns import find_column

        names = self.original_names or {}
        by_source = {names.get(c, c): c for c in self.feature_columns}
        found = find_column(list(by_source), source_name, "the column")
        return by_source[found] if found is not None else source_name

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.problem == "classification" else 1

    @property
    def n_folds(self) -> int:
        return int(self.folds.max()) + 1


@dataclass(frozen=True)
class PredictionSet:
    """Candidate models' predictions, row-aligned with PreparedData (train rows / holdout rows)."""

    models: list[str]  # unique model names, e.g. "base_xgboost/xgboost_0"
    families: list[str]  # family per model ("xgboost", ...; ensembles use their task type)
    task_ids: list[str]  # producing task per model
    oof: np.ndarray  # (M, n_train, K)
    holdout: np.ndarray  # (M, n_holdout, K)
    oof_score: np.ndarray  # (M,) primary metric on OOF (in the metric's natural direction)


class Predictor(Protocol):
    """A fitted, picklable model over raw feature frames (preprocessing included)."""

    def predict_matrix(self, X: pd.DataFrame) -> np.ndarray:  # (n, K)
        ...


@dataclass
class ModelOutput:
    """One model a task publishes: its servable predictor plus its OOF/holdout predictions."""

    name: str  # local name; the published name is f"{task_id}/{name}"
    family: str
    predictor: Predictor
    oof: np.ndarray  # (n_train, K); OOF only — never in-sample
    holdout: np.ndarray  # (n_holdout, K)
    params: dict[str, Any] = field(default_factory=dict)
    is_final: bool = True  # the task's headline model (route tasks publish routed + blend)
    metrics: dict[str, float] = field(default_factory=dict)  # extra figures to log
    notes: list[str] = field(default_factory=list)  # human-readable decisions ("fell back to GES")
    # base models: how many configs of the family's sequence their search went through, so that
    # `boost` searching the same family after them starts with the next one; 0 for other models
    search_trials: int = 0


class TaskContext(Protocol):
    request: TaskRequest

    @property
    def prepared(self) -> PreparedData: ...

    def predictions(self, task_ids: list[str] | None = None) -> PredictionSet:
        """Predictions of every model published by `task_ids` (default: request.upstream)."""
        ...

    def predictors(self, model_names: list[str]) -> dict[str, Predictor]:
        """The fitted predictors of published models (from MLflow; may be packed: unpickled on use)."""
        ...

    def model_rows(self, task_ids: list[str] | None = None) -> pd.DataFrame:
        """The models tables of `task_ids` (default: request.upstream), one row per published model."""
        ...

    def read_table(self, name: str) -> pd.DataFrame:
        """Read a UC table by `table`, `schema.table` or `catalog.schema.table` (route_external)."""
        ...

    def write_table(self, kind: str, df: pd.DataFrame) -> str:
        """Write `{table}_{kind}_{workflow_id}_{task_id}`; returns its full name."""
        ...

    def publish(self, outputs: list[ModelOutput]) -> None:
        """Write oof/holdout/models tables, log one MLflow run per model (params, OOF and holdout
        metrics, pyfunc model with signature)."""
        ...

    def log(self, message: str) -> None: ...


class StageContext(TaskContext, Protocol):
    """What the runtime stages (prepare, base, evaluate) get besides the ensemble tasks' contract:
    the table store itself, the spec's metrics and MLflow set-up. `context.RuntimeContext` is the
    one implementation; `entry.run_stage` takes any."""

    store: TableStore
    home: Path
    mlflow_enabled: bool

    @property
    def primary_metric(self) -> str: ...

    @property
    def metric_names(self) -> list[str]: ...

    def setup_mlflow(self) -> str | None:
        """Create the tracking store and experiment (None: MLflow is off)."""
        ...

    def model_rows(self, task_ids: list[str] | None = None) -> pd.DataFrame:
        """The `models` table rows published by `task_ids` (default: request.upstream)."""
        ...
