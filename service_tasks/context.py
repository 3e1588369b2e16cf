"""`RuntimeContext`: the concrete `contract.TaskContext` every stage and ensemble task receives.

Build one from a request (`request.build_request(...)` in tests, `request.parse_request(argv)` in
`obsrv-task`): ``RuntimeContext(request)`` uses the environment's table store and MLflow;
``RuntimeContext(request, store=LocalDeltaStore(tmp), home=tmp)`` pins both for a test.
"""

from __future__ import annotations

import json
import sys
import time
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from obsrv.service_tasks import calibration
from obsrv.service_tasks import metrics as M
from obsrv.service_tasks import tracking
from obsrv.service_tasks.errors import TaskError
from obsrv.service_tasks.io import TableName, TableStore, get_store, obsrv_home, output_table
from obsrv.service_tasks.contract import ModelOutput, PredictionSet, PreparedData, Predictor, TaskRequest
from obsrv.service_tasks.stages.prepare import load_prepared

MODEL_COLUMNS = (
    "task_id", "model", "family", "kind", "is_final", "mlflow_run_id", "model_uri", "artifact_uri", "sha256",
)


def proba_columns(classes: list[Any]) -> list[str]:
    """`proba_<class>` per class (identifier-safe; by index when labels collide), named exactly like
    the served model's `probability_<class>` columns (`tracking.class_suffixes`)."""
    return ["proba_" + s for s in tracking.class_suffixes(classes)]


def prediction_columns(prepared: PreparedData) -> list[str]:
    return proba_columns(prepared.classes) if prepared.problem == "classification" else ["prediction"]


class RuntimeContext:
    """The task context for one task run (see `contract.TaskContext` for the contract)."""

    def __init__(
        self,
        request: TaskRequest,
        *,
        store: TableStore | None = None,
        home: Path | str | None = None,
        mlflow: bool = True,
        stream: Any = None,
    ) -> None:
        self.request = request
        self.home = Path(home) if home is not None else obsrv_home()
        self.store = store if store is not None else get_store(self.home)
        self.mlflow_enabled = mlflow
        self._stream = stream
        self._models_cache: dict[str, pd.DataFrame] = {}
        self._started = time.perf_counter()

    # ------------------------------------------------------------------------------ basics
    def log(self, message: str) -> None:
        elapsed = time.perf_counter() - self._started
        print(f"[{self.request.task_id} {elapsed:6.1f}s] {message}", file=self._stream or sys.stdout, flush=True)

    @property
    def kind(self) -> str:
        return "base" if self.request.stage == "base" else "ensemble"

    @property
    def primary_metric(self) -> str:
        return self.request.context.metric.primary

    @property
    def metric_names(self) -> list[str]:
        return self.request.context.metric.names

    def table(self, kind: str, task_id: str | None = None) -> TableName:
        r = self.request
        return output_table(
            r.catalog, r.schema, r.context.source.table, kind, r.workflow_id, task_id or r.task_id
        )

    @cached_property
    def prepared(self) -> PreparedData:
        return load_prepared(self.request, self.store)

    def read_table(self, name: str) -> pd.DataFrame:
        src = self.request.context.source
        try:
            table = TableName.parse(name, catalog=src.catalog, schema=src.schema_)
        except ValueError as exc:
            raise TaskError(f"Cannot read table {name!r}: {exc}") from exc
        if not self.store.exists(table):
            raise TaskError(f"The table {table} does not exist ({self.store.location(table)}).")
        return self.store.read(table)

    def write_table(self, kind: str, df: pd.DataFrame) -> str:
        name = self.table(kind)
        self.store.write(name, df)
        return name.full

    def setup_mlflow(self) -> str | None:
        if not self.mlflow_enabled:
            return None
        return tracking.configure(tracking.experiment_name(self.request), self.home)

    # ------------------------------------------------------------------------- upstream reads
    def models_table(self, task_id: str) -> pd.DataFrame:
        if task_id not in self._models_cache:
            name = self.table("models", task_id)
            if not self.store.exists(name):
                raise TaskError(
                    f"Task {task_id!r} has not published models in workflow {self.request.workflow_id} "
                    f"(no table {name}); it must finish before {self.request.task_id!r}."
                )
            self._models_cache[task_id] = self.store.read(name)
        return self._models_cache[task_id]

    def predictions(self, task_ids: list[str] | None = None) -> PredictionSet:
        ids = list(self.request.upstream if task_ids is None else task_ids)
        prep = self.prepared
        cols = prediction_columns(prep)
        models, families, owners, oofs, holds = [], [], [], [], []
        for task_id in ids:
            table = self.models_table(task_id)
            oof = self.store.read(self.table("oof", task_id))
            hold = self.store.read(self.table("holdout", task_id))
            for _, row in table.iterrows():
                name = row["model"]
                oofs.append(_aligned(oof, name, prep.row_ids_train, cols, prep.folds, task_id))
                holds.append(_aligned(hold, name, prep.row_ids_holdout, cols, None, task_id))
                models.append(name)
                families.append(str(row["family"]))
                owners.append(task_id)
        k = prep.n_outputs
        oof_arr = np.stack(oofs) if oofs else np.zeros((0, len(prep.y_train), k))
        hold_arr = np.stack(holds) if holds else np.zeros((0, len(prep.y_holdout), k))
        scores = np.array(
            [
                M.score(self.primary_metric, prep.y_train, o, problem=prep.problem, weights=prep.w_train)
                for o in oof_arr
            ]
        )
        return PredictionSet(models, families, owners, oof_arr, hold_arr, scores)

    def model_rows(self, task_ids: list[str] | None = None) -> pd.DataFrame:
        ids = list(self.request.upstream if task_ids is None else task_ids)
        frames = [self.models_table(t) for t in ids]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(MODEL_COLUMNS))

    def predictors(self, model_names: list[str]) -> dict[str, Predictor]:
        """Packed (``tracking.PackedPredictor``, compressed bytes): a member is unpickled only for
        the moment it predicts, so an ensemble over large fold bags never holds them all at once."""
        rows = self.model_rows(sorted({n.split("/", 1)[0] for n in model_names}))
        by_name = {r["model"]: r for _, r in rows.iterrows()}
        experiment_id = self.setup_mlflow()
        root = tracking.experiment_artifact_root(str(experiment_id)) if experiment_id else ""
        out: dict[str, Predictor] = {}
        for name in model_names:
            if name not in by_name:
                raise TaskError(f"No published model named {name!r} in workflow {self.request.workflow_id}.")
            row = by_name[name]
            # checked before anything is unpickled (docs/runtime.md, "Model integrity")
            blob = tracking.verified_model_blob(
                name, str(row["model_uri"]), artifact_uri=str(row.get("artifact_uri") or ""),
                sha256=str(row.get("sha256") or ""), root=root,
            )
            out[name] = tracking.PackedPredictor(blob, name, keep_loaded=False)
        return out

    # ---------------------------------------------------------------------------------- publish
    def _calibrated(self, outputs: list[ModelOutput]) -> list[ModelOutput]:
        """With OBSRV_CALIBRATE=auto, every published model temperature-scaled when AutoGluon's rule
        says so (docs/calibration.md):
        base models, so the champion is, and ensembles, whose pool then holds nested-calibrated OOF.
        Otherwise the outputs are returned untouched, so served predictions stay bit-identical."""
        prep = self.prepared
        if not calibration.enabled() or not calibration.should_calibrate(prep.problem, self.primary_metric, len(prep.y_train), prep.n_outputs):
            return outputs
        y = np.asarray(prep.y_train, dtype=np.int64)
        out = [calibration.calibrate_output(o, y, prep.folds, prep.w_train) for o in outputs]
        for o in out:
            if "temperature" in o.metrics:
                self.log(f"{o.name}: {o.notes[-1]}")
        return out

    def publish(self, outputs: list[ModelOutput]) -> None:
        """Write this task's oof/holdout/models tables and log one MLflow run per model."""
        if not outputs:
            raise TaskError(f"Task {self.request.task_id!r} produced no models.")
        prep = self.prepared
        names = [o.name for o in outputs]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique within a task: {names}")
        for o in outputs:
            _check_matrix(o.oof, (len(prep.y_train), prep.n_outputs), f"{o.name}.oof")
            _check_matrix(o.holdout, (len(prep.y_holdout), prep.n_outputs), f"{o.name}.holdout")
        outputs = self._calibrated(outputs)
        cols = prediction_columns(prep)
        oof_frames, hold_frames, rows = [], [], []
        if self.mlflow_enabled:
            self.setup_mlflow()
        for o in outputs:
            full = f"{self.request.task_id}/{o.name}"
            oof_frames.append(_frame(full, prep.row_ids_train, prep.folds, o.oof, cols))
            hold_frames.append(
                _frame(full, prep.row_ids_holdout, np.full(len(prep.row_ids_holdout), -1), o.holdout, cols)
            )
            run_id, uri, location, digest, seconds = "", "", "", "", 0.0
            if self.mlflow_enabled:
                t0 = time.perf_counter()
                run_id, logged = self._log_model_run(full, o)
                uri, location, digest = logged.model_uri, logged.artifact_uri, logged.sha256
                seconds = time.perf_counter() - t0
            primary = M.score(self.primary_metric, prep.y_train, o.oof, problem=prep.problem, weights=prep.w_train)
            rows.append(
                {
                    "task_id": self.request.task_id,
                    "model": full,
                    "family": o.family,
                    "kind": self.kind,
                    "is_final": bool(o.is_final),
                    "mlflow_run_id": run_id,
                    "model_uri": uri,
                    "artifact_uri": location,
                    "sha256": digest,
                    f"oof_{self.primary_metric}": float(primary),
                    "params": json.dumps(o.params, sort_keys=True, default=str),
                    "search_trials": int(o.search_trials),
                }
            )
            self.log(
                f"published {full}: oof {self.primary_metric}={primary:.5f}"
                + (f" (mlflow {seconds:.1f}s)" if self.mlflow_enabled else "")
            )
        # the models table is written last: its presence marks the task's outputs as complete
        self.store.write(self.table("oof"), pd.concat(oof_frames, ignore_index=True))
        self.store.write(self.table("holdout"), pd.concat(hold_frames, ignore_index=True))
        self.store.write(self.table("models"), pd.DataFrame(rows))
        self._models_cache.pop(self.request.task_id, None)

    def _log_model_run(self, full_name: str, o: ModelOutput) -> tuple[str, tracking.LoggedModel]:
        import mlflow

        prep = self.prepared
        metrics: dict[str, float] = {}
        for m in self.metric_names:
            metrics[f"oof_{m}"] = M.score(m, prep.y_train, o.oof, problem=prep.problem, weights=prep.w_train)
            if len(prep.y_holdout):  # none with context.holdout: 0
                metrics[f"holdout_{m}"] = M.score(m, prep.y_holdout, o.holdout, problem=prep.problem,
                                                  weights=prep.w_holdout)
        for k, v in o.metrics.items():
            metrics[tracking.safe_metric_name(k)] = float(v)
        metrics = {k: v for k, v in metrics.items() if v is not None and np.isfinite(v)}
        tags = tracking.run_tags(self.request, self.kind, model=full_name, family=o.family,
                                 is_final=str(bool(o.is_final)).lower())
        if o.notes:
            tags["mlflow.note.content"] = "\n".join(o.notes)
        run = tracking._retry(lambda: mlflow.start_run(run_name=tracking.run_name(self.request, full_name), tags=tags))
        try:
            params = tracking.flat_params(o.params)
            items = list(params.items())
            for i in range(0, len(items), 100):
                tracking._retry(lambda chunk=dict(items[i : i + 100]): mlflow.log_params(chunk))
            tracking._retry(lambda: mlflow.log_metrics(metrics))
            logged = tracking.log_pyfunc_model(
                o.predictor,
                problem=prep.problem,
                classes=prep.classes,
                X_example=self._serving_example(o.predictor),
                feature_columns=prep.feature_columns,
                input_names=prep.original_names,
            )
        finally:
            tracking._retry(lambda: mlflow.end_run())
        return run.info.run_id, logged

    def _serving_example(self, predictor: Predictor) -> pd.DataFrame:
        """A few training rows as the served model receives them (`tracking.example_rows`: every
        column set in at least one of them where the data has a value): the feature columns plus the
        predictor's `extra_input_columns` (the source's id_column comes from `ids_train`)."""
        prep = self.prepared
        rows = tracking.example_rows(prep.X_train)
        X = prep.X_train.iloc[rows]
        extra = [c for c in (getattr(predictor, "extra_input_columns", None) or []) if c not in X.columns]
        id_column = prep.id_column or self.request.context.source.id_column  # the source's spelling
        for col in extra:
            if col == id_column and prep.ids_train is not None:
                X = X.assign(**{col: np.asarray(prep.ids_train)[rows]})
            else:
                raise TaskError(
                    f"The model of task {self.request.task_id!r} needs the input column {col!r}, which is "
                    "neither a feature column nor the source's id_column."
                )
        return X


def _check_matrix(arr: np.ndarray, shape: tuple[int, int], what: str) -> None:
    a = np.asarray(arr)
    if a.shape != shape:
        raise ValueError(f"{what} has shape {a.shape}, expected {shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} contains NaN or infinite values")


def _frame(model: str, row_ids: np.ndarray, folds: np.ndarray, pred: np.ndarray, cols: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "model": pd.Series([model] * len(row_ids), dtype="str"),
            "row_id": np.asarray(row_ids, dtype=np.int64),
            "fold": np.asarray(folds, dtype=np.int32),
        }
    )
    for k, c in enumerate(cols):
        df[c] = np.asarray(pred[:, k], dtype=np.float64)
    return df


def _aligned(
    table: pd.DataFrame,
    model: str,
    row_ids: np.ndarray,
    cols: list[str],
    folds: np.ndarray | None,
    task_id: str,
) -> np.ndarray:
    """``model``'s rows of a predictions table, in the order of ``row_ids``.

    Sort-based (``searchsorted``) rather than a hash index or ``setdiff1d``: at 1M rows those cost
    ~0.8 s per model, paid by every ensemble task for every member (``benchmarks/ensemble_cost.py``
    profiles). Tables written by ``_frame`` are already in prepare's order, which is checked first."""
    at = np.flatnonzero((table["model"] == model).to_numpy())
    ids = table["row_id"].to_numpy(dtype=np.int64)[at]
    want = np.asarray(row_ids, dtype=np.int64)
    if not np.array_equal(ids, want):
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        pos = np.searchsorted(sorted_ids, want).clip(max=max(len(ids) - 1, 0))
        found = sorted_ids[pos] == want if len(ids) else np.zeros(len(want), dtype=bool)
        missing = int(len(want) - found.sum())
        if missing or len(ids) != len(want):
            raise TaskError(
                f"The predictions of {model} (task {task_id}) do not cover the prepared rows "
                f"({missing} missing); the task must be rerun for this workflow."
            )
        at = at[order[pos]]
    if folds is not None and not np.array_equal(
        table["fold"].to_numpy(dtype=np.int64)[at], np.asarray(folds, dtype=np.int64)
    ):
        raise TaskError(f"The OOF table of {model} (task {task_id}) uses a different fold plan than prepare.")
    return table[cols].iloc[at].to_numpy(dtype=np.float64)  # only this model's rows are converted


__all__ = ["RuntimeContext", "proba_columns", "prediction_columns"]
