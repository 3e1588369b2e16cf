"""The `prepare` stage: check the source, sample, split the holdout, assign THE fold plan.

Every later stage reads the `prepared` table this stage writes, so every model sees the same train
rows, the same holdout and the same folds (`obsrv_fold`, -1 = holdout). `load_prepared` turns the
table back into `contract.PreparedData` in a canonical row order (train rows then holdout rows, each
sorted by `obsrv_row_id`), the order every prediction matrix uses.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import (
    GroupKFold,
    GroupShuffleSplit,
    KFold,
    StratifiedKFold,
    train_test_split,
)

from obsrv.compiler.spec import MIN_FOLDS, Context
from obsrv.service_tasks import columns as cols
from obsrv.service_tasks.columns import FOLD, ROW_ID
from obsrv.service_tasks.errors import FinalTaskError, TaskError
from obsrv.service_tasks.io.naming import identifier
from obsrv.service_tasks.io import TableName, TableStore, output_table
from obsrv.service_tasks.contract import Log, PreparedData, TaskRequest
from obsrv.service_tasks.split_checks import check_classes_fit_folds, fold_sizes, small_split_warnings

HOLDOUT_FOLD = -1


def prepared_table(request: TaskRequest) -> TableName:
    return _stage_table(request, "prepared")


def meta_table(request: TaskRequest) -> TableName:
    return _stage_table(request, "meta")


def _stage_table(request: TaskRequest, kind: str) -> TableName:
    src = request.context.source
    return output_table(request.catalog, request.schema, src.table, kind, request.workflow_id, "prepare")


def source_table(context: Context) -> TableName:
    src = context.source
    return TableName(src.catalog, src.schema_, src.table)


# ------------------------------------------------------------------------------------------ stage


def run_prepare(request: TaskRequest, store: TableStore, log: Log = print) -> dict[str, Any]:
    """Read and check the source, then write the `prepared` and `meta` tables; returns the meta."""
    context = request.context
    name = source_table(context)
    if not store.exists(name):
        raise TaskError(
            f"The source table {name} does not exist ({store.location(name)}). Load it first, e.g. "
            "`obsrv data demo` for the credit example or `obsrv data load FILE --table "
            f"{name}`, or fix context.source in the spec."
        )
    raw = store.read_sample(name, context, log)  # on Spark: the sample only, drawn in Spark
    log(f"read {name}: {len(raw)} rows, {raw.shape[1]} columns")
    try:
        prepared, meta = prepare_frame(raw, context, log=log)
    except TaskError as exc:
        # prepare_frame is a pure function of the rows just read: the same rows fail the same way,
        # so a retry cannot help (docs/runtime.md, "Retries")
        raise FinalTaskError(str(exc)) from exc
    store.write(prepared_table(request), prepared)
    store.write(meta_table(request), pd.DataFrame({"payload": [json.dumps(meta, sort_keys=True)]}))
    n_hold = int((prepared[FOLD] == HOLDOUT_FOLD).sum())
    if n_hold == 0 and context.fold_type == "time":
        log("WARNING: fold_type time with context.holdout: 0: each fold's models train on later folds too, so "
            "no leaderboard figure is forward-looking. Keep a holdout (the latest rows) for one.")
    log(
        f"prepared {len(prepared)} rows: {len(prepared) - n_hold} train in {meta['n_folds']} "
        f"{context.fold_type} folds, "
        + (f"{n_hold} holdout" if n_hold else "no holdout (context.holdout: 0; the leaderboard scores OOF)")
        + f" -> {prepared_table(request)}"
    )
    return meta


def prepare_frame(raw: pd.DataFrame, context: Context, log: Log = print) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The pure part of prepare: checked, sampled, split and fold-assigned rows plus the meta."""
    df = raw.copy()
    df.columns = [str(c) for c in df.columns]
    context = _check_columns(df, context)  # spec column names resolved to the source's own
    src = context.source
    problem = context.metric.problem
    _drop_infinities(df, log)

    missing_target = df[src.target].isna()
    if missing_target.any():
        log(f"dropped {int(missing_target.sum())} rows with a missing target {src.target!r}")
        df = df.loc[~missing_target]
    df = df.reset_index(drop=True)
    if len(df) == 0:
        raise TaskError(
            f"There are no non-missing values in target {src.target!r}: every row of "
            f"{source_table(context)} has it missing. Check source.target and the table's contents."
        )

    # row ids: a unique integer id column is used as is, anything else gets a surrogate
    if src.id_column and pd.api.types.is_integer_dtype(df[src.id_column]) and df[src.id_column].notna().all():
        if df[src.id_column].duplicated().any():
            dup = df.loc[df[src.id_column].duplicated(), src.id_column].iloc[0]
            raise TaskError(
                f"The id column {src.id_column!r} is not unique (e.g. {dup!r} appears more than once). "
                "Give a unique row id in source.id_column, or omit it to use a surrogate id."
            )
        row_ids = df[src.id_column].astype("int64").to_numpy()
    else:
        if src.id_column and df[src.id_column].duplicated().any():
            raise TaskError(f"The id column {src.id_column!r} is not unique.")
        row_ids = np.arange(len(df), dtype=np.int64)
    df.insert(0, ROW_ID, row_ids)

    classes: list[Any] = []
    if problem == "classification":
        _check_discrete_target(df[src.target], src.target)
        classes = _sorted_classes(df[src.target])
        if len(classes) < 2:
            raise TaskError(
                f"The target {src.target!r} has only one class ({classes[0]!r}) after dropping missing "
                "values; classification needs at least 2 classes."
            )
    else:
        if not pd.api.types.is_numeric_dtype(df[src.target]) or pd.api.types.is_bool_dtype(df[src.target]):
            raise TaskError(
                f"The target {src.target!r} has type {df[src.target].dtype}, but the spec asks for "
                "regression metrics, which need a numeric target. Use `metric: classification: [...]` "
                "for a label."
            )
        df[src.target] = df[src.target].astype("float64")

    if src.weight_column:
        w = pd.to_numeric(df[src.weight_column], errors="coerce")
        if w.isna().any() or (w < 0).any() or not (w > 0).any():
            raise TaskError(
                f"The weight column {src.weight_column!r} must be numeric, non-negative and not missing."
            )
        df[src.weight_column] = w.astype("float64")

    df = _sample(df, context, log)
    asked = context.folds if isinstance(context.folds, int) else MIN_FOLDS
    if len(df) < asked:
        raise TaskError(
            f"The source has {len(df)} usable rows, fewer than the {asked} folds the spec asks "
            "for. Add rows or lower context.folds."
        )

    is_holdout = _holdout_mask(df, context)
    train_idx = np.flatnonzero(~is_holdout)
    n_folds = _fold_count(context, df.iloc[train_idx], log)
    if len(train_idx) < n_folds:
        raise TaskError(
            f"Only {len(train_idx)} training rows remain after the {context.holdout:.0%} holdout, fewer "
            f"than the {n_folds} folds. Add rows, lower context.holdout or context.folds."
        )
    if problem == "classification":
        check_classes_fit_folds(df[src.target].iloc[train_idx].to_numpy(), n_folds,
                                holdout=context.holdout, target=src.target)
    folds = np.full(len(df), HOLDOUT_FOLD, dtype=np.int32)
    folds[train_idx] = _assign_folds(df.iloc[train_idx], context, n_folds)
    for line in small_split_warnings(int(is_holdout.sum()), fold_sizes(folds)):
        log(line)
    df.insert(1, FOLD, folds)

    feature_cols, categorical = _feature_columns(df, context, log)
    keep = [ROW_ID, FOLD, src.target] + [
        c for c in (src.id_column, src.weight_column, src.group_column, src.time_column)
        if c and c not in (src.target, ROW_ID)
    ]
    renames = safe_feature_names(feature_cols, reserved=keep)
    if renames:
        log("internal names for feature columns a library would reject (served models take the source names): "
            + ", ".join(f"{old!r} -> {new!r}" for old, new in renames.items()))
    keep = list(dict.fromkeys(keep + feature_cols))
    is_hold = df[FOLD] < 0
    prepared = pd.concat([df.loc[~is_hold, keep].sort_values(ROW_ID), df.loc[is_hold, keep].sort_values(ROW_ID)])
    prepared = prepared.reset_index(drop=True).rename(columns=renames)
    feature_cols = [renames.get(c, c) for c in feature_cols]
    categorical = [renames.get(c, c) for c in categorical]
    meta = {
        "problem": problem,
        "classes": [_jsonable(c) for c in classes],
        "target": src.target,
        "feature_columns": feature_cols,
        "categorical_columns": categorical,
        "column_names": {new: old for old, new in renames.items()},  # renamed feature -> source name
        "weight_column": src.weight_column,
        "id_column": src.id_column,
        "group_column": src.group_column,
        "time_column": src.time_column,
        "n_rows": int(len(prepared)),
        "n_train": int(len(train_idx)),
        "n_holdout": int(is_holdout.sum()),
        "n_folds": n_folds,
        "fold_type": context.fold_type,
        "seed": int(context.seed),
    }
    return prepared, meta


_SOURCE_ROLES = ("target", "id_column", "group_column", "time_column", "weight_column")


def _check_columns(df: pd.DataFrame, context: Context) -> Context:
    """Check the source's columns against the spec; returns ``context`` with every spec column name
    replaced by the source column it refers to (matched case-insensitively, as Spark does: see
    ``columns``). Every problem is reported in one TaskError."""
    src = context.source
    problems: list[str] = []
    reserved = cols.reserved_columns(df.columns)
    if reserved:
        problems.append(cols.reserved_message(reserved, source_table(context)))
    resolved: dict[str, str] = {}
    missing: list[str] = []
    for role in _SOURCE_ROLES:
        name = getattr(src, role)
        if not name:
            continue
        try:
            found = cols.find_column(df.columns, name, f"source.{role}")
        except TaskError as exc:
            problems.append(str(exc))
            continue
        if found is None:
            missing.append(f"source.{role} = {name!r}")
        else:
            resolved[role] = found
    if missing:
        shown = ", ".join(repr(c) for c in df.columns[:30]) + (" ..." if df.shape[1] > 30 else "")
        problems.append(
            f"The source table {source_table(context)} has no column for {', '.join(missing)} (names are "
            f"matched ignoring case). Its columns are: {shown}."
        )
    if problems:
        raise TaskError("\n".join(problems))
    if len(df) == 0:
        raise TaskError(f"The source table {source_table(context)} is empty.")
    changed = {k: v for k, v in resolved.items() if getattr(src, k) != v}
    if not changed:
        return context
    # model_construct: the source's own names need not be spec identifiers (`Default Flag`)
    source = type(src).model_construct(**{**dict(src), **changed})
    return context.model_copy(update={"source": source})


def _drop_infinities(df: pd.DataFrame, log: Any) -> None:
    """±inf in a numeric column becomes missing, in place, per column, and the log says where.

    Why: most estimators refuse inf (sklearn's input check, the imputers), while every family
    handles missing values; an infinite value carries no more than "very large", which a missing
    value plus the families' missing-value handling keeps. The target's rows with ±inf are then
    dropped as missing targets (logged)."""
    found: list[str] = []
    for col in df.columns:
        s = df[col]
        if not pd.api.types.is_float_dtype(s):  # ints, bools and strings cannot hold inf
            continue
        values = s.to_numpy(dtype=np.float64, na_value=np.nan)
        inf = np.isinf(values)
        n = int(inf.sum())
        if n:
            df[col] = s.mask(pd.Series(inf, index=s.index))
            found.append(f"{col!r}: {n}")
    if found:
        log(f"treated ±inf as missing (column: values): {', '.join(found)}")


_SAFE_NAME = re.compile(r"[0-9A-Za-z_]+")


def safe_feature_names(features: list[str], reserved: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """{source name: internal name} for the feature columns whose names a library would reject.

    Internal only: the prepared table and the models use the internal name, the served model's
    signature and inputs the source name (``ObsrvPyfunc``). Renamed are names outside
    [0-9A-Za-z_] (xgboost and lightgbm reject `[`, `]`, `<`, `:`, JSON characters; Delta without
    column mapping rejects spaces and ``,;{}()=``; non-ASCII letters), and a name equal up to case
    to an earlier column (Delta tables are case-insensitive). Identifier names stay as they are; a
    new name never collides with another column, in any case (suffix `_2`, `_3`, ...)."""
    taken = {cols.name_key(c) for c in reserved}
    keep: set[str] = set()
    for col in features:  # identifiers keep their names unless an earlier name takes them (case)
        if _SAFE_NAME.fullmatch(col) and cols.name_key(col) not in taken:
            taken.add(cols.name_key(col))
            keep.add(col)
    out: dict[str, str] = {}
    for col in features:
        if col in keep:
            continue
        base = identifier(col, lower=False) or "feature"
        name, i = base, 2
        while cols.name_key(name) in taken:
            name, i = f"{base}_{i}", i + 1
        taken.add(cols.name_key(name))
        out[col] = name
    return out


_MAX_CLASSES_BEFORE_CHECK = 50


def _check_discrete_target(target: pd.Series, name: str) -> None:
    """Classification on a continuous-looking target is almost always a spec mistake: one class
    per row cannot be learned, and the failure would come much later and less clearly."""
    values = target.dropna()
    hint = (
        "but the spec asks for classification metrics. If it is a quantity to predict, use "
        "`metric: regression: [rmse, mae, r2]`; if it is a label, bin or recode it into classes first."
    )
    if pd.api.types.is_float_dtype(values) and not pd.api.types.is_bool_dtype(values):
        frac = values[values != np.floor(values)]
        if len(frac):
            raise TaskError(
                f"The target {name!r} has non-integer values (e.g. {float(frac.iloc[0])!r}), so it looks "
                f"continuous, {hint}"
            )
    n_unique = int(values.nunique())
    if n_unique > _MAX_CLASSES_BEFORE_CHECK and n_unique > 0.5 * len(values):
        raise TaskError(
            f"The target {name!r} has {n_unique} distinct values in {len(values)} rows (most values "
            f"unique), so it looks continuous, {hint}"
        )


def _sorted_classes(target: pd.Series) -> list[Any]:
    values = pd.unique(target.dropna())
    try:
        return sorted(values.tolist())
    except TypeError:  # mixed types: order by text
        return sorted(values.tolist(), key=str)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def _stratify_labels(df: pd.DataFrame, context: Context) -> np.ndarray | None:
    """Class labels to stratify on, or None when some class is too small for it."""
    if context.metric.problem != "classification":
        return None
    y = df[context.source.target].astype(str).to_numpy()
    _, counts = np.unique(y, return_counts=True)
    return y if counts.min() >= 2 else None


def _sample(df: pd.DataFrame, context: Context, log: Log) -> pd.DataFrame:
    size = context.sample.size
    if size is None or len(df) <= size:
        return df
    method = context.sample.method
    if method == "none":
        out = df.iloc[:size]
    elif method == "stratified" and (strat := _stratify_labels(df, context)) is not None:
        out, _ = train_test_split(df, train_size=size, stratify=strat, random_state=context.seed)
    else:
        out = df.sample(n=size, random_state=context.seed)
    log(f"sampled {len(out)} of {len(df)} rows ({method})")
    return out.sort_values(ROW_ID).reset_index(drop=True)


def _holdout_mask(df: pd.DataFrame, context: Context) -> np.ndarray:
    n = len(df)
    if context.holdout == 0:  # every row trains; evaluate scores out-of-fold predictions
        return np.zeros(n, dtype=bool)
    n_hold = int(round(context.holdout * n))
    n_hold = min(max(n_hold, 1), n - 1)
    mask = np.zeros(n, dtype=bool)
    src = context.source
    if context.fold_type == "time":
        # the most recent rows are the holdout: the leaderboard scores the future
        order = np.argsort(df[src.time_column].to_numpy(), kind="mergesort")
        mask[order[n - n_hold:]] = True
        return mask
    if context.fold_type == "group":
        groups = df[src.group_column].astype(str).to_numpy()
        if len(np.unique(groups)) < 2:
            raise TaskError(f"The group column {src.group_column!r} has a single group; it cannot be split.")
        splitter = GroupShuffleSplit(n_splits=1, test_size=context.holdout, random_state=context.seed)
        _, hold = next(splitter.split(np.zeros(n), groups=groups))
        mask[hold] = True
        return mask
    strat = _stratify_labels(df, context)
    if strat is not None and n_hold < len(np.unique(strat)):
        strat = None
    _, hold = train_test_split(np.arange(n), test_size=n_hold, stratify=strat, random_state=context.seed)
    mask[hold] = True
    return mask


def _fold_count(context: Context, train: pd.DataFrame, log: Log) -> int:
    """The folds to assign to these training rows: a written `context.folds` as it is (checked
    after), `auto` resolved as compiler/spec.py's `Context.fold_count` says, capped by the rarest
    class's rows (every fold needs one) or by the groups (each sits in one fold)."""
    if isinstance(context.folds, int):
        return context.folds
    src = context.source
    smallest: int | None = None
    if context.metric.problem == "classification":
        smallest = int(train[src.target].astype(str).value_counts().min())
    if context.fold_type == "group":
        n_groups = int(train[src.group_column].astype(str).nunique())
        smallest = n_groups if smallest is None else min(smallest, n_groups)
    k, by_size = context.fold_count(len(train), smallest), context.fold_count(len(train))
    capped = f" (not {by_size}: the rarest class or the groups allow {smallest})" if k < by_size else ""
    log(f"context.folds auto: {k} folds for {len(train)} training rows{capped}")
    return k


def _assign_folds(train: pd.DataFrame, context: Context, k: int) -> np.ndarray:
    """One fold id per training row, 0..k-1, seeded by context.seed."""
    n, src = len(train), context.source
    folds = np.empty(n, dtype=np.int32)
    X = np.zeros(n)
    if context.fold_type == "time":
        order = np.argsort(train[src.time_column].to_numpy(), kind="mergesort")
        # contiguous, time-ordered blocks: fold i holds the i-th slice of time
        by_position = np.empty(n, dtype=np.int32)
        for i, block in enumerate(np.array_split(np.arange(n), k)):
            by_position[block] = i
        folds[order] = by_position
        return folds
    if context.fold_type == "group":
        groups = train[src.group_column].astype(str).to_numpy()
        n_groups = len(np.unique(groups))
        if n_groups < k:
            raise TaskError(
                f"The group column {src.group_column!r} has {n_groups} groups in the training rows, "
                f"fewer than the {k} folds. Lower context.folds or use a coarser group."
            )
        splits = GroupKFold(n_splits=k, shuffle=True, random_state=context.seed).split(X, groups=groups)
    elif context.fold_type == "stratified" and context.metric.problem == "classification":
        y = train[src.target].astype(str).to_numpy()
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= k:
            splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=context.seed).split(X, y)
        else:  # a class rarer than the fold count cannot be stratified
            splits = KFold(n_splits=k, shuffle=True, random_state=context.seed).split(X)
    else:
        splits = KFold(n_splits=k, shuffle=True, random_state=context.seed).split(X)
    for i, (_, test) in enumerate(splits):
        folds[test] = i
    return folds


def _looks_like_id(name: str, s: pd.Series) -> bool:
    """`id` / `*_id` columns with one distinct value per row (e.g. the demo's `customer_id`)."""
    lowered = name.lower()
    if not (lowered == "id" or lowered.endswith("_id")):
        return False
    if not (pd.api.types.is_integer_dtype(s) or pd.api.types.is_string_dtype(s) or s.dtype == object):
        return False
    return bool(s.notna().all() and s.is_unique)


def _feature_columns(df: pd.DataFrame, context: Context, log: Log) -> tuple[list[str], list[str]]:
    src = context.source
    excluded = {ROW_ID, FOLD, src.target, src.id_column, src.weight_column, src.group_column, src.time_column}
    features, categorical, dropped = [], [], []
    for col in df.columns:
        if col in excluded:
            continue
        s = df[col]
        if _looks_like_id(col, s):  # a per-row key carries no signal, only leakage risk
            dropped.append(col)
            continue
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            features.append(col)
        elif isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(s) or s.dtype == object:
            features.append(col)
            categorical.append(col)
        else:  # datetimes, intervals, ...: not usable as they are
            dropped.append(col)
        if col in features and s.isna().all():
            features.remove(col)
            if col in categorical:
                categorical.remove(col)
            dropped.append(col)
    if dropped:
        log(f"not used as features (row key, unsupported type or all missing): {', '.join(dropped)}")
    if not features:
        raise TaskError(f"The source table {source_table(context)} has no usable feature columns.")
    return features, categorical


# ------------------------------------------------------------------------------------------- load


def load_prepared(request: TaskRequest, store: TableStore) -> PreparedData:
    """PreparedData from the prepare task's tables, in the canonical row order."""
    try:
        meta_df = store.read(meta_table(request))
        df = store.read(prepared_table(request))
    except LookupError as exc:
        raise TaskError(
            f"The prepared data of workflow {request.workflow_id} is missing ({exc}). The `prepare` "
            "task must run (and succeed) before this one."
        ) from exc
    meta = json.loads(meta_df["payload"].iloc[0])
    return prepared_from_frame(df, meta)


def prepared_from_frame(df: pd.DataFrame, meta: dict[str, Any]) -> PreparedData:
    df = df.sort_values(ROW_ID, kind="mergesort")
    train = df.loc[df[FOLD] >= 0].reset_index(drop=True)
    hold = df.loc[df[FOLD] < 0].reset_index(drop=True)
    features, target = list(meta["feature_columns"]), meta["target"]
    classes = list(meta["classes"])
    problem = meta["problem"]

    def encode(y: pd.Series) -> np.ndarray:
        if problem == "regression":
            return y.to_numpy(dtype=np.float64)
        lookup = {_key(c): i for i, c in enumerate(classes)}
        return np.array([lookup[_key(v)] for v in y.tolist()], dtype=np.int64)

    wcol = meta.get("weight_column")
    idcol = meta.get("id_column")
    has_ids = bool(idcol) and idcol in df.columns
    return PreparedData(
        problem=problem,
        classes=classes,
        feature_columns=features,
        categorical_columns=list(meta["categorical_columns"]),
        X_train=train[features],
        y_train=encode(train[target]),
        w_train=train[wcol].to_numpy(dtype=np.float64) if wcol else None,
        folds=train[FOLD].to_numpy(dtype=np.int64),
        row_ids_train=train[ROW_ID].to_numpy(dtype=np.int64),
        X_holdout=hold[features],
        y_holdout=encode(hold[target]),
        w_holdout=hold[wcol].to_numpy(dtype=np.float64) if wcol else None,
        row_ids_holdout=hold[ROW_ID].to_numpy(dtype=np.int64),
        ids_train=train[idcol].to_numpy() if has_ids else None,
        ids_holdout=hold[idcol].to_numpy() if has_ids else None,
        original_names=dict(meta.get("column_names") or {}),
        id_column=idcol or None,
    )


def _key(value: Any) -> Any:
    """Class labels compare across JSON round trips (1 == 1.0 == np.int64(1); True stays bool)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", float(value))
    return ("s", str(value))
