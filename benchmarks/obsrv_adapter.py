"""Runs obsrv through its real code path for the benchmarks, and reads back what it published.

The path is the one a user takes: the training rows are loaded into the local warehouse by the
function behind `obsrv data load`, a generated spec is compiled and executed by the local runner
behind `obsrv run` (one `obsrv-task` process per compiled task, in dependency order), and the
outer test fold is then predicted by the models the tasks published (their MLflow pyfunc). Nothing
of obsrv is re-implemented here; this module only writes a spec and reads tables.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import yaml

import _common as C

CATALOG = "bench"
NOTES: list[str] = []

# The ensemble tasks of the quality benchmark (route_feature is added where a dataset has a
# natural segment column).
QUALITY_TASKS: list[dict[str, Any]] = [
    {"task": "vote_weight"},
    {"task": "vote_top_alg"},
    {"task": "vote_mix"},
    {"task": "stack_top_any"},
    {"task": "stack_top_any", "id": "stack_level2", "stack": {"meta_learner": "lightgbm_full", "passthrough": True}},
    {"task": "stack_top_alg"},
    {"task": "stack_blend"},
    {"task": "stack_classwise"},
    {"task": "boost"},
    {"task": "route_cluster", "route": {"cluster": {"kmeans": {"n_clusters": 3}}}},
]
SMOKE_TASKS: list[dict[str, Any]] = [{"task": "vote_weight"}, {"task": "stack_top_any"}]


def base_families() -> tuple[str, ...]:
    from obsrv.compiler.spec import MODEL_FAMILIES

    return tuple(MODEL_FAMILIES)


def write_spec(
    path: Path,
    *,
    name: str,
    schema: str,
    table: str,
    n_classes: int,
    tasks: list[dict[str, Any]],
    folds: int | None = None,
    holdout: float = 0.0,
    seed: int = 42,
    timeout_s: int = 3600,
) -> Path:
    if n_classes == 0:  # a regression set: rmse first, the benchmark's primary metric
        metric: dict[str, list[str]] = {"regression": ["rmse", "mae", "r2"]}
    else:
        metric = {"classification": ["auc", "logloss", "accuracy", "f1"] if n_classes == 2
                  else ["logloss", "accuracy", "f1"]}
    spec = {
        "obsrv": {
            "context": {
                "name": name,
                "timeout": int(timeout_s),
                "metric": metric,
                "fold_type": "kfold" if n_classes == 0 else "stratified",
                **({} if folds is None else {"folds": folds}),  # None: the spec's default (`auto`)
                "holdout": holdout,
                "seed": seed,
                "source": {"catalog": CATALOG, "schema": schema, "table": table, "target": C.TARGET},
            },
            "job": tasks,
        }
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def load_table(frame: pd.DataFrame, home: Path, schema: str, table: str) -> None:
    """What `obsrv data load FILE --table bench.<schema>.<table>` does."""
    from obsrv.service_tasks.local.load_data import load_file

    home.mkdir(parents=True, exist_ok=True)
    f = home.parent / f"{table}.parquet"
    frame.to_parquet(f, index=False)
    load_file(f, f"{CATALOG}.{schema}.{table}", home)


def run_workflow(spec: Path, workdir: Path, *, task_budget: float | None, workflow_id: str,
                 jobs: int | None = None, quiet: bool = True, launcher: Any = None,
                 time_limit: float | None = None, only: str | None = None) -> tuple[bool, float, dict[str, dict]]:
    """`obsrv run SPEC --budget B --workflow-id ID [--only TASK]` in `workdir`; returns (ok, wall s,
    task states)."""
    from obsrv.service_tasks.local.scheduler import run_workflow as _run

    # mlflow.set_tracking_uri() (used when reading back a previous run's models) also sets
    # MLFLOW_TRACKING_URI in os.environ; the task processes inherit the environment, so it must
    # not leak into the next run or its tasks would log to the previous run's database.
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "OBSRV_HOME"):
        os.environ.pop(var, None)
    t0 = time.perf_counter()
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
        try:
            rc = _run(str(spec), workdir=str(workdir), budget=task_budget, workflow_id=workflow_id,
                      jobs=jobs or C.cpu_count(), live=False, launcher=launcher, time_limit=time_limit,
                      only=only)
        except SystemExit as exc:  # pragma: no cover - defensive
            rc = int(exc.code or 1)
    wall = time.perf_counter() - t0
    state_file = workdir / ".obsrv" / "runs" / workflow_id / "state.json"
    states = json.loads(state_file.read_text())["tasks"] if state_file.exists() else {}
    return rc == 0, wall, states


def failed_tasks(states: dict[str, dict], workdir: Path, workflow_id: str) -> dict[str, str]:
    out = {}
    for k, s in states.items():
        if s["state"] not in ("succeeded", "skipped"):
            log = workdir / ".obsrv" / "runs" / workflow_id / "logs" / f"{k}.log"
            tail = ""
            if log.exists():
                lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
                tail = lines[-1][:200] if lines else ""
            out[k] = f"{s['state']}: {tail or s.get('message', '')}"
    return out


# ------------------------------------------------------------------------------- reading back


def _store(home: Path):
    from obsrv.service_tasks.io import LocalDeltaStore

    return LocalDeltaStore(home)


def _out_table(schema: str, table: str, kind: str, workflow_id: str, task_id: str):
    from obsrv.service_tasks.io.naming import output_table

    return output_table(CATALOG, schema, table, kind, workflow_id, task_id)


def read_models(home: Path, schema: str, table: str, workflow_id: str, task_ids: list[str]) -> pd.DataFrame:
    store = _store(home)
    frames = []
    for t in task_ids:
        name = _out_table(schema, table, "models", workflow_id, t)
        if store.exists(name):
            frames.append(store.read(name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_leaderboard(home: Path, schema: str, table: str, workflow_id: str) -> pd.DataFrame | None:
    from obsrv.service_tasks.io.naming import leaderboard_table

    store = _store(home)
    name = leaderboard_table(CATALOG, schema, table, workflow_id)
    return store.read(name) if store.exists(name) else None


def read_oof(home: Path, schema: str, table: str, workflow_id: str, task_id: str, model: str,
             classes_obsrv: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """(row_id, proba in obsrv's class order) of one published model's OOF predictions."""
    store = _store(home)
    name = _out_table(schema, table, "oof", workflow_id, task_id)
    if not store.exists(name):
        return None
    df = store.read(name)
    df = df[df["model"] == model]
    cols = _columns("proba_", classes_obsrv)
    if df.empty or not all(c in df.columns for c in cols):
        return None
    return df["row_id"].to_numpy(), df[cols].to_numpy(dtype=float)


def _columns(prefix: str, classes: list[str]) -> list[str]:
    """obsrv's per-class column names (its own helper when present: it makes labels
    identifier-safe and collision-free)."""
    try:
        from obsrv.service_tasks.tracking import class_suffixes

        return [prefix + s for s in class_suffixes(list(classes))]
    except ImportError:
        import re

        return [prefix + re.sub(r"[^0-9A-Za-z_]", "_", str(c)) for c in classes]


def read_prepared(home: Path, schema: str, table: str, workflow_id: str) -> pd.DataFrame | None:
    """The prepare task's table (row ids, folds with −1 = obsrv's own holdout, target, features)."""
    store = _store(home)
    name = _out_table(schema, table, "prepared", workflow_id, "prepare")
    return store.read(name) if store.exists(name) else None


def load_model(uri: str, home: Path) -> Any:
    """The published pyfunc model, as a user would load it to score new rows."""
    import mlflow

    os.environ["OBSRV_HOME"] = str(home)
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    return mlflow.pyfunc.load_model(uri)


def predict_proba(model: Any, X: pd.DataFrame, classes_obsrv: list[str]) -> np.ndarray:
    """Class probabilities from a published pyfunc model, in obsrv's class order."""
    raw = model.predict(X)
    if isinstance(raw, pd.DataFrame):
        import re

        for prefix in ("probability_", "proba_"):
            cols = _columns(prefix, classes_obsrv)
            if all(c in raw.columns for c in cols):
                return raw[cols].to_numpy(dtype=float)
        num = raw.select_dtypes("number")
        if num.shape[1] == len(classes_obsrv):
            return num.to_numpy(dtype=float)
        raise ValueError(f"cannot read class probabilities from pyfunc output columns {list(raw.columns)}")
    arr = np.asarray(raw, dtype=float)
    if arr.ndim == 2 and arr.shape[1] == len(classes_obsrv):
        return arr
    raise ValueError(f"the pyfunc model returned shape {arr.shape}, not (n, {len(classes_obsrv)}) probabilities")


# ----------------------------------------------------------------------------- quality split


def run_quality_split(
    ds: C.Dataset,
    train: pd.DataFrame,
    test: pd.DataFrame,
    classes: list[str],
    *,
    budget: float,
    seed: int,
    workdir: Path,
    task_budget: float | None,
    holdout: float,
    folds: int | None,
    smoke: bool,
    log: Callable[[str], None],
    to_result: Callable[..., Any],
) -> list[Any]:
    """One obsrv workflow on the outer-train rows; returns MethodResults for best_single,
    obsrv_champion and obsrv:<task id> for each ensemble task."""
    workdir.mkdir(parents=True, exist_ok=True)
    home = workdir / ".obsrv"
    schema, table = ds.name.lower(), "train"
    tasks = list(SMOKE_TASKS if smoke else QUALITY_TASKS)
    if ds.segment_column and not smoke:
        tasks.append({"task": "route_feature", "route": {"feature": {"column": ds.segment_column}}})
    # Equal wall clock: `obsrv run --time-limit B` plans each search task's budget from the time
    # left, so that the whole run (compile, every task, MLflow logging) fits B; an explicit
    # --obsrv-task-budget replaces the plan with a fixed per-task budget.
    time_limit = None if task_budget is not None else budget
    spec = write_spec(workdir / "spec.yaml", name=f"bench_{schema}", schema=schema, table=table,
                      n_classes=len(classes), tasks=tasks, folds=folds, holdout=holdout, seed=seed)
    load_table(train, home, schema, table)
    wf = f"q{int(time.time() * 1000) % 10**10}"
    ok, wall, states = run_workflow(spec, workdir, task_budget=task_budget, workflow_id=wf, time_limit=time_limit)
    failures = failed_tasks(states, workdir, wf)
    plan = f"time limit {time_limit:g}s" if time_limit is not None else f"task budget {task_budget:g}s"
    log(f"obsrv run {'ok' if ok else 'with failures'} in {wall:.1f}s ({plan})")

    # obsrv sorts class labels; the benchmark's order puts the binary positive class last
    classes_obsrv = sorted(classes)
    reorder = [classes_obsrv.index(c) for c in classes]
    task_ids = sorted(states)
    # the job's output schema: the spec names none, so it defaults to the job's name (a job's bundle
    # owns its output schema, which may not be the source's)
    out_schema = f"bench_{schema}"
    models = read_models(home, out_schema, table, wf, task_ids)
    board = read_leaderboard(home, out_schema, table, wf)
    prepared = read_prepared(home, out_schema, table, wf)
    labels = None if prepared is None else prepared.set_index("obsrv_row_id")[C.TARGET]
    # how obsrv split the outer-train rows: its CV folds train, its own holdout only reports
    rows_used = {} if prepared is None else {"obsrv_train_rows": int((prepared["obsrv_fold"] >= 0).sum()),
                                             "obsrv_holdout_rows": int((prepared["obsrv_fold"] < 0).sum())}
    results: list[Any] = []
    X_te = test.drop(columns=[C.TARGET])
    cidx = {c: i for i, c in enumerate(classes)}

    def predict_regression(method: str, row: pd.Series, extra: dict) -> Any:
        """A regression model's predicted values as one column (the benchmark's ``test_proba``)."""
        try:
            model = load_model(str(row["model_uri"]), home)
            model.predict(X_te.head(5))  # warm-up: lazy imports, not scoring
            t0 = time.perf_counter()
            values = model.predict(X_te)["prediction"].to_numpy(dtype=float).reshape(-1, 1)
            pred_s = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001
            return to_result(method, status=f"failed: predicting with {row['model']}: {type(exc).__name__}: {str(exc)[:120]}")
        return to_result(method, test_proba=values, fit_seconds=wall, predict_seconds=pred_s,
                         notes={"model": str(row["model"]), **extra})

    def predict_row(method: str, row: pd.Series, extra: dict) -> Any:
        if not classes:
            return predict_regression(method, row, extra)
        try:
            model = load_model(str(row["model_uri"]), home)
            predict_proba(model, X_te.head(5), classes_obsrv)  # warm-up: lazy imports, not scoring
            t0 = time.perf_counter()
            proba = predict_proba(model, X_te, classes_obsrv)[:, reorder]
            pred_s = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001
            return to_result(method, status=f"failed: predicting with {row['model']}: {type(exc).__name__}: {str(exc)[:120]}")
        oof = read_oof(home, out_schema, table, wf, str(row["task_id"]), str(row["model"]), classes_obsrv)
        oof_p = oof_y = None
        if oof is not None and labels is not None:
            rid, p = oof
            oof_p = p[:, reorder]
            oof_y = labels.loc[rid].astype(str).map(cidx).to_numpy()
        return to_result(method, test_proba=proba, oof_proba=oof_p, oof_y=oof_y, fit_seconds=wall,
                         predict_seconds=pred_s, notes={"model": str(row["model"]), **extra})

    if models.empty:
        reason = "; ".join(f"{k} {v}" for k, v in list(failures.items())[:3]) or "no models table"
        for m in ["best_single", "obsrv_champion"] + [f"obsrv:{t.get('id', t['task'])}" for t in tasks]:
            results.append(to_result(m, status=f"failed: {reason[:200]}"))
        return results

    metric_col = next((c for c in models.columns if c.startswith("oof_")), None)
    higher = metric_col is not None and not metric_col.endswith(("logloss", "rmse", "mae"))
    # best single: the base model with the best OOF score
    base = models[models["kind"] == "base"].dropna(subset=[metric_col] if metric_col else None)
    if base.empty:
        results.append(to_result("best_single", status="failed: no base model published"))
    else:
        best = base.sort_values(metric_col, ascending=not higher).iloc[0]
        results.append(predict_row("best_single", best, {"family": str(best["family"]), metric_col: float(best[metric_col])}))
    # champion: the leaderboard's pick
    champ_name = None
    if board is not None and "is_champion" in board.columns and board["is_champion"].any():
        champ_name = str(board.loc[board["is_champion"].astype(bool), "model"].iloc[0])
    if champ_name and (models["model"] == champ_name).any():
        row = models[models["model"] == champ_name].iloc[0]
        # the run's task times travel with its row, so a report re-rendered after --resume (or after
        # obsrv is re-run on some splits) averages exactly the runs whose rows it shows
        seconds = {k: round(float(v.get("seconds", 0.0)), 2) for k, v in sorted(states.items())}
        results.append(predict_row("obsrv_champion", row, {"champion": champ_name, "task_seconds": seconds,
                                                           **rows_used}))
    else:
        results.append(to_result("obsrv_champion", status="failed: no champion on the leaderboard"
                                 + (f" ({'; '.join(failures)})" if failures else "")))
    # every ensemble task's final model
    for t in tasks:
        tid = t.get("id", t["task"])
        rows = models[(models["task_id"] == tid) & (models["is_final"].astype(bool))]
        if rows.empty:
            rows = models[models["task_id"] == tid]
        if rows.empty:
            results.append(to_result(f"obsrv:{tid}", status=f"failed: {failures.get(tid, 'published no model')}"))
            continue
        results.append(predict_row(f"obsrv:{tid}", rows.iloc[0], {}))
    return results


# ------------------------------------------------------------------------------- sklearn pool


def sklearn_pool(ds: C.Dataset, X: pd.DataFrame, *, n_jobs: int, seed: int, smoke: bool) -> list[tuple[str, Any]]:
    """obsrv's base pool as sklearn estimators, for the StackingClassifier baseline: every family
    of the zoo at its default config, with the zoo's own preprocessing (zoo.FamilyModel). Falls
    back to plain sklearn/boosting estimators if the zoo's interface is not there."""
    try:
        from obsrv.service_tasks import zoo

        zoo.FamilyModel, zoo.default_params  # noqa: B018 - probe the interface
    except (ImportError, AttributeError):
        NOTES.append("sklearn_stacking used a stand-in pool: obsrv.service_tasks.zoo.FamilyModel was not importable.")
        return _fallback_pool(X, n_jobs=n_jobs, seed=seed, smoke=smoke)
    categorical = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    numeric = [c for c in X.columns if c not in categorical]
    n_classes = ds.n_classes
    return [
        (f, ZooEstimator(family=f, n_classes=n_classes, numeric=tuple(numeric), categorical=tuple(categorical),
                         seed=seed, n_jobs=n_jobs))
        for f in base_families()
    ]


try:
    from sklearn.base import BaseEstimator, ClassifierMixin
except ImportError:  # pragma: no cover
    BaseEstimator = ClassifierMixin = object  # type: ignore[assignment,misc]


class ZooEstimator(ClassifierMixin, BaseEstimator):
    """sklearn face of one obsrv zoo family at its default config (classification)."""

    def __init__(self, family: str = "linear", n_classes: int = 2, numeric: tuple = (), categorical: tuple = (),
                 seed: int = 42, n_jobs: int = 1) -> None:
        self.family = family
        self.n_classes = n_classes
        self.numeric = numeric
        self.categorical = categorical
        self.seed = seed
        self.n_jobs = n_jobs

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> "ZooEstimator":
        from obsrv.service_tasks import zoo

        self.model_ = zoo.FamilyModel(
            self.family, zoo.default_params(self.family, "classification"), problem="classification",
            n_classes=self.n_classes, numeric=list(self.numeric), categorical=list(self.categorical),
            seed=self.seed, n_jobs=self.n_jobs,
        ).fit(X, np.asarray(y), None)
        self.classes_ = np.arange(self.n_classes)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.model_.predict_matrix(X)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)


def _fallback_pool(X: pd.DataFrame, *, n_jobs: int, seed: int, smoke: bool) -> list[tuple[str, Any]]:
    from catboost import CatBoostClassifier
    from lightgbm import LGBMClassifier
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
    from xgboost import XGBClassifier

    num = make_column_selector(dtype_include="number")
    cat = make_column_selector(dtype_exclude="number")

    def onehot():
        return ColumnTransformer([
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num),
            ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                  OneHotEncoder(handle_unknown="ignore", min_frequency=5, sparse_output=False)), cat),
        ])

    def ordinal():
        return ColumnTransformer([
            ("num", SimpleImputer(strategy="median"), num),
            ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                  OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)), cat),
        ])

    n = 100 if smoke else 300
    return [
        ("linear", make_pipeline(onehot(), LogisticRegression(max_iter=2000, C=1.0))),
        ("random_forest", make_pipeline(ordinal(), RandomForestClassifier(n_estimators=n, n_jobs=n_jobs, random_state=seed))),
        ("extra_trees", make_pipeline(ordinal(), ExtraTreesClassifier(n_estimators=n, n_jobs=n_jobs, random_state=seed))),
        ("hist_gbm", make_pipeline(ordinal(), HistGradientBoostingClassifier(random_state=seed))),
        ("xgboost", make_pipeline(ordinal(), XGBClassifier(n_estimators=n, learning_rate=0.05, n_jobs=n_jobs, random_state=seed))),
        ("lightgbm", make_pipeline(ordinal(), LGBMClassifier(n_estimators=n, learning_rate=0.05, n_jobs=n_jobs,
                                                             random_state=seed, verbose=-1))),
        ("catboost", make_pipeline(ordinal(), CatBoostClassifier(iterations=n, thread_count=n_jobs, random_seed=seed,
                                                                 verbose=0, allow_writing_files=False))),
        ("knn", make_pipeline(onehot(), KNeighborsClassifier(n_neighbors=25, weights="distance"))),
    ]
