"""The `score` stage: the batch-scoring job `<name>_score` applies the registered champion to new rows.

1. Resolve `models:/<model>@champion` to one version at run time (`get_model_version_by_alias`), so
   the whole run scores with one model and records its version.
2. Check every input table before anything is written: the champion's signature columns are there
   (matched ignoring case, as Spark does; all missing ones listed), and no column holds text where
   the signature wants numbers (or the reverse).
3. Score: on Spark with `mlflow.pyfunc.spark_udf`, so the work is spread over the executors; with the
   local Delta store through the pyfunc itself.
4. Replace the output table in one commit: the key columns, `prediction`, `probability_<class>`
   (classification), `model_version`, `scored_at`. Key columns are the spec's `source.id_column` when
   the input has it, else the model's input columns (the scored row is its own key).

With `score.monitor` the champion's predictions on its own training sample are written beside it as
`<output>_baseline` (same schema: the quality monitor's baseline). Locally, where no monitor service
runs, the prediction share per class (regression: quantiles) of both is logged to MLflow.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from obsrv.service_tasks import tracking, uc_rules
from obsrv.service_tasks.columns import find_column, name_key
from obsrv.service_tasks.contract import Log, TaskRequest
from obsrv.service_tasks.errors import FinalTaskError, TaskError
from obsrv.service_tasks.io.store import SparkTableStore, TableName, TableStore, on_databricks

CHAMPION_ALIAS = "champion"
MODEL_VERSION_COLUMN = "model_version"
SCORED_AT_COLUMN = "scored_at"
PREDICTION_COLUMN = "prediction"
# Quantiles logged for a regression champion's predictions (locally, in place of a monitor).
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
_NUMERIC = {"double", "float", "long", "integer"}


@dataclass(frozen=True)
class Champion:
    name: str  # registered model name (three-level on Databricks)
    version: str
    run_id: str
    uri: str  # models:/<name>/<version>: pinned for the whole run
    inputs: list[tuple[str, str]]  # signature input (column, MLflow type name), in order
    outputs: list[tuple[str, str]]  # signature output (column, type name)


@dataclass(frozen=True)
class ScoreSettings:
    inputs: list[TableName]
    output: TableName
    baseline: TableName
    monitor: bool


def settings(request: TaskRequest) -> ScoreSettings:
    """The compiled task settings; `request.task["input"]` (the job's `input` parameter) wins."""
    task = request.task
    score = task.get("score") or {}
    raw = task.get("input") or score.get("input") or []
    names = [raw] if isinstance(raw, str) else list(raw)
    tables = []
    for text in names:
        try:
            tables.append(TableName.parse(str(text).strip()))
        except ValueError as error:
            raise FinalTaskError(f"Input table {text!r}: {error}.") from error
    if not tables:
        raise FinalTaskError("No input table to score: give `score.input` in the spec or `--table catalog.schema.table`.")
    return ScoreSettings(
        inputs=tables,
        output=TableName(request.catalog, request.schema, str(task["output_table"])),
        baseline=TableName(request.catalog, request.schema, str(task["baseline_table"])),
        monitor=bool(score.get("monitor", False)),
    )


def model_name(request: TaskRequest) -> str:
    """As evaluate registers it: `catalog.schema.<model>` on Databricks, the bare name locally."""
    name = request.model or request.context.name
    full = f"{request.catalog}.{request.schema}.{name}" if on_databricks() else name
    return uc_rules.check_registered_model_name(full, three_level=on_databricks())


def resolve_champion(name: str) -> Champion:
    """The version `@champion` points at now; a FinalTaskError saying how to get one if none."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException as error:
        raise FinalTaskError(
            f"No champion to score with: the registered model {name!r} has no @{CHAMPION_ALIAS} version yet "
            f"({str(error).splitlines()[0]}). Run the training job first: its evaluate task registers the "
            "champion (`obsrv run SPEC` locally, `databricks bundle run <job>` on a workspace)."
        ) from error
    uri = f"models:/{name}/{version.version}"
    info = mlflow.models.get_model_info(uri)
    signature = info.signature
    if signature is None or signature.inputs is None or signature.outputs is None:
        raise FinalTaskError(f"The champion {uri} has no signature; retrain it with this obsrv version.")
    return Champion(
        name=name,
        version=str(version.version),
        run_id=str(version.run_id or ""),
        uri=uri,
        inputs=[(str(c.name), _type_name(c)) for c in signature.inputs.inputs],
        outputs=[(str(c.name), _type_name(c)) for c in signature.outputs.inputs],
    )


def _type_name(spec: Any) -> str:
    kind = getattr(spec, "type", None)
    return str(getattr(kind, "name", kind))


# ------------------------------------------------------------------------------------- checks


def matched_columns(columns: list[str], champion: Champion, table: TableName) -> dict[str, str]:
    """signature column -> the input's column (as the input spells it); FinalTaskError listing every
    missing one."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for name, _ in champion.inputs:
        column = name if name in columns else find_column(columns, name, "the champion's input column")
        if column is None:
            missing.append(name)
        else:
            found[name] = column
    if missing:
        raise FinalTaskError(
            f"The input table {table} lacks {len(missing)} of the champion's feature column(s): "
            f"{', '.join(repr(c) for c in missing)}. Score a table with the columns the model was trained on "
            "(names match ignoring case); nothing was written."
        )
    return found


def type_problems(kinds: dict[str, str], champion: Champion, matched: dict[str, str]) -> list[str]:
    """Columns whose kind (`number`, `string`, `bool`, `other`) the signature cannot accept."""
    problems = []
    for name, wanted in champion.inputs:
        have = kinds[matched[name]]
        if wanted in _NUMERIC and have not in ("number", "bool"):
            problems.append(f"{matched[name]!r} is {have}, the champion expects a number ({wanted})")
        elif wanted == "string" and have == "number":
            problems.append(f"{matched[name]!r} is a number, the champion expects text")
        elif wanted == "boolean" and have not in ("bool",):
            problems.append(f"{matched[name]!r} is {have}, the champion expects true/false")
    return problems


def _pandas_kind(dtype: Any) -> str:
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(dtype):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "a timestamp"
    return "string"


def _spark_kind(data_type: Any) -> str:
    from pyspark.sql import types as T

    if isinstance(data_type, T.BooleanType):
        return "bool"
    if isinstance(data_type, T.NumericType):
        return "number"
    if isinstance(data_type, T.StringType):
        return "string"
    return data_type.simpleString()


def _refuse_types(problems: list[str], table: TableName) -> None:
    if problems:
        raise FinalTaskError(
            f"The input table {table} has column types the champion's signature rejects: {'; '.join(problems)}. "
            "Cast those columns to the types the model was trained on; nothing was written."
        )


def key_columns(request: TaskRequest, columns: list[str], matched: dict[str, str]) -> list[str]:
    """The spec's id column when the input has it, else the model's input columns."""
    id_column = request.context.source.id_column
    found = find_column(columns, id_column, "source.id_column") if id_column else None
    return [found] if found is not None else [matched[c] for c in matched]


def _refuse_clashes(keys: list[str], champion: Champion, table: TableName) -> None:
    produced = {name_key(c) for c, _ in champion.outputs} | {name_key(MODEL_VERSION_COLUMN), name_key(SCORED_AT_COLUMN)}
    clash = [k for k in keys if name_key(k) in produced]
    if clash:
        raise FinalTaskError(
            f"The input table {table} has the column(s) {', '.join(map(repr, clash))}, which the scored table "
            f"writes itself ({PREDICTION_COLUMN}, probability_<class>, {MODEL_VERSION_COLUMN}, {SCORED_AT_COLUMN}). "
            "Rename them in the input, or give the spec a `source.id_column`; nothing was written."
        )


# -------------------------------------------------------------------------------------- scoring


def score_frame(model: Any, frame: pd.DataFrame, matched: dict[str, str], keys: list[str],
                version: str, scored_at: dt.datetime) -> pd.DataFrame:
    """The scored rows of one pandas frame (the local path, and the baseline on both)."""
    from mlflow.exceptions import MlflowException

    X = frame[[matched[c] for c in matched]].set_axis(list(matched), axis=1)
    try:
        predicted = model.predict(X)
    except MlflowException as error:
        raise FinalTaskError(
            f"The champion's signature rejects the input: {str(error).splitlines()[0]} Cast the column to the "
            "type the model was trained on; nothing was written."
        ) from error
    out = frame[keys].reset_index(drop=True).copy()
    for column in predicted.columns:
        out[column] = predicted[column].to_numpy()
    out[MODEL_VERSION_COLUMN] = version
    out[SCORED_AT_COLUMN] = pd.Series([scored_at] * len(out), dtype="datetime64[us, UTC]")
    return out


def _spark_result_type(champion: Champion) -> str:
    spark_types = {"double": "double", "float": "float", "long": "bigint", "integer": "int", "string": "string",
                   "boolean": "boolean"}
    return ", ".join(f"`{c}` {spark_types.get(t, 'string')}" for c, t in champion.outputs)


def score_spark(store: SparkTableStore, champion: Champion, request: TaskRequest, plan: ScoreSettings,
                scored_at: dt.datetime, log: Log) -> Any:
    """The scored Spark DataFrame of every input (nothing collected to the driver)."""
    import mlflow
    from pyspark.sql import functions as F

    spark = store.spark
    frames = []
    for table in plan.inputs:
        if not store.exists(table):
            raise FinalTaskError(f"The input table {table} does not exist; nothing was written.")
        sdf = spark.table(table.quoted)
        matched = matched_columns(sdf.columns, champion, table)
        kinds = {f.name: _spark_kind(f.dataType) for f in sdf.schema.fields}
        _refuse_types(type_problems(kinds, champion, matched), table)
        keys = key_columns(request, sdf.columns, matched)
        _refuse_clashes(keys, champion, table)
        frames.append((sdf, matched, keys))
    # env_manager="local": the executors use the job's own environment, which has the pinned ML stack.
    udf = mlflow.pyfunc.spark_udf(spark, champion.uri, result_type=_spark_result_type(champion), env_manager="local")
    scored = None
    for sdf, matched, keys in frames:
        # One struct argument: its field names (the signature's) become the pandas columns the model sees.
        features = F.struct(*[F.col(f"`{matched[c]}`").alias(c) for c in matched])
        out = sdf.select(*[F.col(f"`{k}`") for k in keys], udf(features).alias("obsrv_scored"))
        out = out.select(
            *[F.col(f"`{k}`") for k in keys],
            *[F.col("obsrv_scored").getField(c).alias(c) for c, _ in champion.outputs],
            F.lit(champion.version).alias(MODEL_VERSION_COLUMN),
            F.lit(scored_at).cast("timestamp").alias(SCORED_AT_COLUMN),
        )
        scored = out if scored is None else scored.unionByName(out)
    return scored


def run_score(request: TaskRequest, store: TableStore, *, log: Log = print, home: Any = None) -> TableName:
    """Score the input table(s) with the champion and replace the output table; returns its name."""
    import mlflow

    plan = settings(request)
    tracking.configure(tracking.experiment_name(request), home)
    champion = resolve_champion(model_name(request))
    log(f"champion {champion.name} version {champion.version} ({champion.uri})")
    scored_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    if isinstance(store, SparkTableStore):
        scored = score_spark(store, champion, request, plan, scored_at, log)
        uc_rules.check_table(plan.output.catalog, plan.output.schema, plan.output.table)
        scored.write.mode("overwrite").option("overwriteSchema", "true").saveAsTable(plan.output.quoted)
        log(f"scored {', '.join(map(str, plan.inputs))} -> {plan.output}")
        scored_frame: pd.DataFrame | None = None
    else:
        frames = []
        for table in plan.inputs:
            try:
                frames.append((table, store.read(table)))
            except LookupError as error:
                raise FinalTaskError(f"The input table {table} does not exist ({error}); nothing was written.") from error
        checked = []
        for table, frame in frames:
            columns = [str(c) for c in frame.columns]
            matched = matched_columns(columns, champion, table)
            _refuse_types(type_problems({c: _pandas_kind(frame[c].dtype) for c in columns}, champion, matched), table)
            keys = key_columns(request, columns, matched)
            _refuse_clashes(keys, champion, table)
            checked.append((frame, matched, keys))
        model = mlflow.pyfunc.load_model(champion.uri)
        parts = [score_frame(model, f, m, k, champion.version, scored_at) for f, m, k in checked]
        scored_frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        store.write(plan.output, scored_frame)
        log(f"scored {len(scored_frame)} rows of {', '.join(map(str, plan.inputs))} -> {plan.output}")
    if plan.monitor:
        baseline = write_baseline(request, store, champion, plan, scored_at, log)
        if on_databricks():
            log(f"baseline -> {plan.baseline}; the bundle's quality monitor profiles {plan.output} against it")
        else:
            log_local_monitor(request, champion, scored_frame, baseline, plan, log)
    return plan.output


# ------------------------------------------------------------------------------------ monitoring


def write_baseline(request: TaskRequest, store: TableStore, champion: Champion, plan: ScoreSettings,
                   scored_at: dt.datetime, log: Log) -> pd.DataFrame:
    """The champion's predictions on the training rows of the run that trained it, with the scored
    table's columns: the quality monitor's baseline (`<output>_baseline`)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from obsrv.service_tasks.stages.prepare import load_prepared

    run = MlflowClient().get_run(champion.run_id) if champion.run_id else None
    workflow = (run.data.tags.get("obsrv_workflow_id") if run is not None else None) or ""
    if not workflow:
        raise TaskError(f"The champion {champion.uri} names no training run; cannot build the monitor's baseline.")
    prepared = load_prepared(dataclasses.replace(request, workflow_id=workflow), store)
    names = prepared.original_names or {}
    frame = prepared.X_train.rename(columns=names).reset_index(drop=True)
    columns = [str(c) for c in frame.columns]
    matched = matched_columns(columns, champion, plan.baseline)
    id_column = prepared.id_column or request.context.source.id_column
    if id_column and prepared.ids_train is not None:
        frame.insert(0, id_column, prepared.ids_train)
        keys = [id_column]
    else:
        keys = [matched[c] for c in matched]
    model = mlflow.pyfunc.load_model(champion.uri)
    baseline = score_frame(model, frame, matched, keys, champion.version, scored_at)
    store.write(plan.baseline, baseline)
    log(f"baseline: the champion's predictions on its {len(baseline)} training rows (workflow {workflow}) -> {plan.baseline}")
    return baseline


def prediction_summary(frame: pd.DataFrame, classification: bool) -> dict[str, float]:
    """Share of each predicted class, or quantiles of the predicted value."""
    values = frame[PREDICTION_COLUMN]
    if classification:
        shares = values.astype(str).value_counts(normalize=True).sort_index()
        return {f"share_{tracking.safe_metric_name(str(k))}": float(v) for k, v in shares.items()}
    qs = np.quantile(values.to_numpy(dtype=np.float64), QUANTILES)
    return {f"q{int(q * 100):02d}": float(v) for q, v in zip(QUANTILES, qs)}


def log_local_monitor(request: TaskRequest, champion: Champion, scored: pd.DataFrame | None,
                      baseline: pd.DataFrame, plan: ScoreSettings, log: Log) -> None:
    """Locally there is no monitor service: log the scored and baseline prediction summaries side by
    side to one MLflow run, and say where drift monitoring really runs."""
    import mlflow

    if scored is None:
        return
    classification = request.context.metric.problem == "classification"
    metrics = {f"scored_{k}": v for k, v in prediction_summary(scored, classification).items()}
    metrics.update({f"baseline_{k}": v for k, v in prediction_summary(baseline, classification).items()})
    tags = tracking.run_tags(request, "score", model_version=champion.version)
    with mlflow.start_run(run_name=tracking.run_name(request, "score"), tags=tags) as run:
        tracking._retry(lambda: mlflow.log_metrics(metrics))
        tracking._retry(lambda: mlflow.log_params({"model": champion.uri, "output": plan.output.full}))
    what = "prediction share per class" if classification else "prediction quantiles"
    log(f"{what} of {plan.output} and of the training sample logged to MLflow run {run.info.run_id}")
    log("drift monitoring runs on the workspace: the bundle's quality monitor profiles the scored table "
        "against its baseline there; locally only these summaries are logged")


__all__ = ["run_score", "resolve_champion", "settings", "prediction_summary"]
