"""MLflow glue: where runs go, the servable pyfunc wrapper, and champion registration.

* One MLflow experiment per job, not per run: the one the task is given (`--experiment`, the
  bundle's `resources.experiments.<job>` as deployed). Locally, without one, the same name the
  bundle deploys for a target without development mode: `/Users/<user>/obsrv_<job name>`
  (`<user>` = `$OBSRV_USER`, else the operating-system user). Each run's MLflow runs carry the
  workflow id (the job run id) in their name (`<workflow id> <model>`) and in the tag
  `obsrv_workflow_id`, so one run's models are one filter away:
  `tags.obsrv_workflow_id = '<id>'`.
* Databricks: tracking `databricks`, registry `databricks-uc`.
* Locally: tracking and registry `sqlite:///$OBSRV_HOME/mlflow.db` (unless `MLFLOW_TRACKING_URI` is
  set), artifacts under `$OBSRV_HOME/mlartifacts`.

Models are logged as a small `PythonModel` whose only artifact is the cloudpickled predictor.
obsrv's own modules are pickled *by value*, so the logged model needs only the public libraries in
its pinned `pip_requirements` (no obsrv wheel at serving time, no requirement inference).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from obsrv.service_tasks.io import obsrv_home, on_databricks

_CONFIGURED: dict[str, str] = {}
# MLflow exports every URI it is given as MLFLOW_TRACKING_URI (for subprocesses); remember ours so
# that only a URI the *user* set overrides the local default.
_SET_BY_US: set[str] = set()


def quiet() -> None:
    """Silence MLflow's and alembic's chatter (migrations, git, env inference)."""
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    for name in ("mlflow", "alembic", "sqlalchemy", "urllib3", "py4j"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="mlflow")
    warnings.filterwarnings("ignore", message=".*pydantic.*")


def local_user() -> str:
    """The user a local run stands for: `$OBSRV_USER`, else the operating-system user."""
    import getpass

    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry (containers): fall back to a fixed name
        user = ""
    return os.environ.get("OBSRV_USER") or user or "local"


def default_experiment(job_name: str) -> str:
    """The local experiment of a job when the task was given none (see the module doc)."""
    return f"/Users/{local_user()}/obsrv_{job_name}"


def experiment_name(request: Any) -> str:
    """The job's experiment for this task (`request.experiment`, else the local default)."""
    from obsrv.service_tasks.errors import FinalTaskError

    name = str(getattr(request, "experiment", "") or "")
    if "${" in name:
        raise FinalTaskError(
            f"The experiment {name!r} is an unresolved bundle reference: run the job from a deployed bundle "
            "(`databricks bundle deploy`) or with `obsrv run`, which resolve it."
        )
    if name:
        return name
    if on_databricks():
        # A workspace path needs an existing parent folder; only the bundle's resource guarantees one.
        raise FinalTaskError(
            "No MLflow experiment was given (--experiment): this compiled job predates per-job experiments. "
            "Recompile with `obsrv compile` and redeploy the bundle."
        )
    return default_experiment(request.context.name)


RUN_TAG_PREFIX = "obsrv_"


def run_tags(request: Any, kind: str, **extra: str) -> dict[str, str]:
    """The tags of every MLflow run obsrv logs: workflow (job run) id, job, task and kind, plus
    `extra` (each key prefixed `obsrv_`). Keys use `_` only, the form Unity Catalog also accepts."""
    tags = {
        "obsrv_workflow_id": str(request.workflow_id),
        "obsrv_job": str(request.context.name),
        "obsrv_task_id": str(request.task_id),
        "obsrv_kind": kind,
    }
    tags.update({f"{RUN_TAG_PREFIX}{k}": str(v) for k, v in extra.items()})
    return tags


def run_name(request: Any, name: str) -> str:
    """`<workflow id> <name>`: runs of one job share an experiment, so the name says which run."""
    return f"{request.workflow_id} {name}"


def tracking_uri(home: Path | None = None) -> str:
    if on_databricks():
        return "databricks"
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env and env not in _SET_BY_US:
        return env
    home = home or obsrv_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'mlflow.db'}"


def configure(experiment: str, home: Path | None = None) -> str:
    """Point MLflow at this environment's tracking server and the experiment named `experiment`
    (see `experiment_name`); returns the experiment id.

    Safe to call from parallel task processes: a lost race to create the experiment is retried.
    """
    import mlflow

    quiet()
    home = home or obsrv_home()
    uri = tracking_uri(home)
    default_local = not on_databricks() and uri == f"sqlite:///{home / 'mlflow.db'}"
    _SET_BY_US.add(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri("databricks-uc" if on_databricks() else uri)
    name = experiment
    key = f"{uri}|{name}"
    if key in _CONFIGURED:
        mlflow.set_experiment(experiment_id=_CONFIGURED[key])
        return _CONFIGURED[key]
    artifacts = (home / "mlartifacts").resolve().as_uri() if default_local else None
    exp_id = _retry(lambda: _get_or_create_experiment(name, artifacts))
    mlflow.set_experiment(experiment_id=exp_id)
    _CONFIGURED[key] = exp_id
    return exp_id


def _get_or_create_experiment(name: str, artifact_location: str | None) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except Exception:  # noqa: BLE001 - another task created it first
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _retry(fn: Any, attempts: int = 8) -> Any:
    """sqlite under parallel task processes may say 'database is locked': back off and retry."""
    for i in range(attempts):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001
            text = str(exc).lower()
            if i == attempts - 1 or not ("locked" in text or "unique constraint" in text or "busy" in text):
                raise
            time.sleep(0.2 * (2**i) + 0.05 * i)
    return None


# ------------------------------------------------------------------------------- pyfunc model


def class_suffixes(classes: list[Any]) -> list[str]:
    """One identifier-safe suffix per class, in class order: the label with characters outside
    [0-9A-Za-z_] replaced by `_`, or the class index for every class when two labels would collide
    (`"a b"` and `"a_b"`). The prediction tables (`proba_<suffix>`, `context.proba_columns`) and the
    served pyfunc (`probability_<suffix>`) both use it, so no column is ever lost."""
    out = [re.sub(r"[^0-9A-Za-z_]", "_", str(c)) for c in classes]
    if len(set(out)) != len(out):
        out = [str(i) for i in range(len(classes))]
    return out


def class_columns(classes: list[Any]) -> list[str]:
    """The served model's `probability_<class>` columns (see `class_suffixes`)."""
    return ["probability_" + s for s in class_suffixes(classes)]


def output_frame(pred: np.ndarray, problem: str, classes: list[Any]) -> pd.DataFrame:
    """What the served model returns: `prediction` (+ `probability_<class>` per class)."""
    pred = np.asarray(pred, dtype=np.float64)
    if problem == "regression":
        return pd.DataFrame({"prediction": pred[:, 0]})
    labels = np.asarray(classes, dtype=object)[np.argmax(pred, axis=1)]
    out = pd.DataFrame({"prediction": pd.Series(labels.tolist())})
    if all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in classes):
        out["prediction"] = out["prediction"].astype("int64")
    elif all(isinstance(c, str) for c in classes):
        out["prediction"] = out["prediction"].astype(str)
    for k, col in enumerate(class_columns(classes)):
        out[col] = pred[:, k]
    return out


try:  # the wrapper subclasses PythonModel when MLflow is importable (always, in practice)
    from mlflow.pyfunc import PythonModel as _PythonModelBase
except Exception:  # pragma: no cover
    _PythonModelBase = object


class ObsrvPyfunc(_PythonModelBase):
    """Serves a predictor: input = the feature columns (+ the predictor's `extra_input_columns`),
    output = `output_frame`.

    * Input columns are accepted under their source names: prepare renames feature columns that are
      not identifiers (`input_names`: model column -> source name), and `predict` maps them back.
      Frames that already use the model's names work too.
    * A predictor may declare `extra_input_columns` (e.g. route_external's join key): those columns
      are required inputs as well and are passed through after the features.
    * `prediction` is the argmax class (regression: the value); no tuned threshold is applied.
    """

    # the signature is given explicitly; skip MLflow's type-hint based input validation
    _skip_type_hint_validation = True

    def __init__(
        self,
        problem: str,
        classes: list[Any],
        feature_columns: list[str],
        extra_input_columns: list[str] | None = None,
        input_names: dict[str, str] | None = None,
    ) -> None:
        self.problem = problem
        self.classes = list(classes)
        self.feature_columns = list(feature_columns)
        self.extra_input_columns = [c for c in (extra_input_columns or []) if c not in self.feature_columns]
        self.input_names = {k: v for k, v in (input_names or {}).items() if k != v}
        self.predictor: Any = None

    def load_context(self, context: Any) -> None:
        self.predictor = load_predictor(context.artifacts["predictor"])
        warm(self.predictor)

    def model_input(self, model_input: Any) -> pd.DataFrame:
        """The frame the predictor sees: model column names, features then extra columns."""
        X = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        names = getattr(self, "input_names", {})  # absent in models pickled before it existed
        extra = getattr(self, "extra_input_columns", [])
        back = {src: col for col, src in names.items() if src in X.columns and col not in X.columns}
        if back:
            X = X.rename(columns=back)
        wanted = self.feature_columns + extra
        missing = [names.get(c, c) for c in wanted if c not in X.columns]
        if missing:
            raise ValueError(f"missing input columns: {', '.join(map(str, missing))}")
        return _infinities_as_missing(X[wanted])

    def predict(self, context, model_input, params=None):  # noqa: ANN001 - MLflow's PythonModel.predict signature
        X = self.model_input(model_input)
        return output_frame(self.predictor.predict_matrix(X), self.problem, self.classes)


def obsrv_objects(root: Any) -> Iterator[Any]:
    """Every obsrv object reachable from ``root`` through lists, tuples, dicts and attributes, each
    once, parents before what they hold; a packed member (``PackedPredictor``) is unpickled and the
    member it holds walked instead. Objects are recognised by module, not class: pickled by value,
    they are not this module's classes."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (list, tuple)):
            stack.extend(obj)
            continue
        if isinstance(obj, dict):
            stack.extend(obj.values())
            continue
        if not str(getattr(type(obj), "__module__", "")).startswith("obsrv."):
            continue
        if isinstance(getattr(obj, "blob", None), bytes) and callable(getattr(obj, "load", None)):
            stack.append(obj.load())  # a PackedPredictor: the member it holds
            continue
        yield obj  # the caller acts on it before its attributes are walked
        stack.extend(getattr(obj, "__dict__", {}).values())


def warm(predictor: Any) -> None:
    """Do at load what the first call would otherwise do: unpickle every packed member and build
    every fold model's served form (``zoo.served``), so that no call pays for them."""
    for obj in obsrv_objects(predictor):
        form = getattr(obj, "_form", None)
        if callable(form):
            form()


def _infinities_as_missing(X: pd.DataFrame) -> pd.DataFrame:
    """±inf in float columns as NaN, as prepare treats them in training (the models never saw an
    inf, and most estimators refuse one)."""
    floats = [c for c, t in X.dtypes.items() if pd.api.types.is_float_dtype(t)]
    if not floats or not np.isinf(X[floats].to_numpy(dtype=np.float64, na_value=np.nan)).any():
        return X
    X = X.copy()
    for c in floats:
        X[c] = X[c].mask(np.isinf(X[c].to_numpy(dtype=np.float64, na_value=np.nan)))
    return X


def pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for dist in ("mlflow", "cloudpickle", "numpy", "pandas", "scikit-learn", "xgboost", "lightgbm", "catboost", "scipy"):
        try:
            reqs.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:  # pragma: no cover
            pass
    return reqs


@contextlib.contextmanager
def _obsrv_by_value() -> Iterator[None]:
    """Pickle obsrv's task code by value, so a served model does not need the obsrv wheel."""
    import importlib

    import cloudpickle

    mods = []
    for name in ("obsrv.service_tasks",):
        try:
            mods.append(importlib.import_module(name))
        except ImportError:  # pragma: no cover
            pass
    for mod in mods:
        cloudpickle.register_pickle_by_value(mod)
    try:
        yield
    finally:
        for mod in mods:
            with contextlib.suppress(ValueError):
                cloudpickle.unregister_pickle_by_value(mod)


def dump_predictor(predictor: Any, path: Path) -> None:
    """cloudpickle, gzip level 1: fold-bagged forests shrink ~4x for a second of CPU.

    A predictor whose members are all packed (`holds_packed_members`: an ensemble over published
    models) is written as a plain pickle: its bulk is the members' bytes, gzip already, which a
    second gzip pass cannot shrink but spent 10-16 s on per ensemble task at 100,000 rows (the
    forests' blobs are hundreds of MB). `load_predictor` reads either form.
    """
    import gzip

    import cloudpickle

    if holds_packed_members(predictor):
        with _obsrv_by_value(), open(path, "wb") as raw:
            cloudpickle.dump(predictor, raw, protocol=5)
        return
    with _obsrv_by_value(), gzip.open(path, "wb", compresslevel=1) as fh:
        cloudpickle.dump(predictor, fh, protocol=5)


def holds_packed_members(predictor: Any) -> bool:
    """Whether `predictor` has members (``.members``) and every one is a `PackedPredictor`."""
    members = getattr(predictor, "members", None)
    return isinstance(members, list) and bool(members) and all(isinstance(m, PackedPredictor) for m in members)


def load_predictor(path: Path | str) -> Any:
    """Load a predictor written by `dump_predictor` (gzip or plain pickle)."""
    with open(path, "rb") as raw:
        return _load_stream(raw)


def _load_stream(raw: Any) -> Any:
    """Unpickle a seekable binary stream holding a gzip or plain pickle, decompressing as it reads:
    never a full uncompressed copy beside the object."""
    import gzip

    import cloudpickle

    gz = raw.read(2) == b"\x1f\x8b"
    raw.seek(0)
    if gz:
        with gzip.GzipFile(fileobj=raw, mode="rb") as fh:
            return cloudpickle.load(fh)
    return cloudpickle.load(raw)


class PackedPredictor:
    """A published model's predictor kept as the compressed bytes of its ``predictor.pkl`` and
    unpickled when it must predict.

    Why: unpickling every member (forest fold bags are the bulk) only to pickle them again into the
    ensemble's own model costs gigabytes per ensemble task on large tables. Packed, the task holds the members' compressed bytes (~4x smaller than the objects) and, with
    ``keep_loaded=False``, unpickles one member at a time whenever it must predict (logging the
    ensemble does not predict). A pickled PackedPredictor always keeps its member once loaded, so a
    served ensemble unpickles each member on its first prediction only.
    """

    def __init__(self, blob: bytes, name: str = "", *, keep_loaded: bool = True) -> None:
        self.blob = blob
        self.name = name
        self.keep_loaded = keep_loaded
        self._loaded: Any = None

    def load(self) -> Any:
        """The member's predictor object (unpickled now unless kept from an earlier call)."""
        if self._loaded is not None:
            return self._loaded
        predictor = _loads(self.blob)
        if self.keep_loaded:
            self._loaded = predictor
        return predictor

    def predict_matrix(self, X: pd.DataFrame) -> np.ndarray:
        return self.load().predict_matrix(X)

    def predict_inputs(self, inputs: Any) -> np.ndarray:
        """``predict_matrix`` from an ensemble's shared converted inputs (``zoo.served.Inputs``)."""
        member = self.load()
        predict_inputs = getattr(member, "predict_inputs", None)
        return predict_inputs(inputs) if predict_inputs is not None else member.predict_matrix(inputs.X)

    def __getstate__(self) -> dict[str, Any]:
        # never the unpickled member (that would undo the packing); served models keep theirs
        return {"blob": self.blob, "name": self.name, "keep_loaded": True, "_loaded": None}


def _loads(blob: bytes) -> Any:
    import io

    return _load_stream(io.BytesIO(blob))


@dataclass(frozen=True)
class LoggedModel:
    """Where a logged model is and what its predictor file holds (recorded in the models table)."""

    model_uri: str
    artifact_uri: str  # the model's artifact location (inside the experiment's artifact root)
    sha256: str  # of its predictor.pkl, as uploaded


def log_pyfunc(predictor: Any, **kwargs: Any) -> str:
    """`log_pyfunc_model`, returning only the model URI."""
    return log_pyfunc_model(predictor, **kwargs).model_uri


def log_pyfunc_model(
    predictor: Any,
    *,
    problem: str,
    classes: list[Any],
    X_example: pd.DataFrame,
    name: str = "model",
    feature_columns: list[str] | None = None,
    input_names: dict[str, str] | None = None,
) -> LoggedModel:
    """Log `predictor` as a pyfunc model with a signature into the active run; returns its URI,
    artifact location and the sha256 of its predictor file.

    `feature_columns` (default: every column of `X_example`) are the model's feature columns;
    `X_example` must also hold the predictor's `extra_input_columns`, if it declares any.
    `input_names` maps renamed feature columns to their source names, which the signature and the
    served model use.
    """
    import mlflow
    from mlflow.models import infer_signature

    features = list(X_example.columns) if feature_columns is None else list(feature_columns)
    extra = [str(c) for c in (getattr(predictor, "extra_input_columns", None) or [])]
    wrapper = ObsrvPyfunc(problem, classes, features, extra_input_columns=extra, input_names=input_names)
    absent = [c for c in features + wrapper.extra_input_columns if c not in X_example.columns]
    if absent:
        raise ValueError(f"X_example lacks the model input columns {absent}")
    example = X_example.iloc[example_rows(X_example[features + wrapper.extra_input_columns])]
    # The output schema follows from the problem and the classes alone (`output_frame`), so it is
    # built from uniform probabilities instead of a prediction: predicting here made an ensemble
    # unpickle every member just to log itself (0.3-1 s per member on a 2-core Xeon, for each of a
    # run's ~30 models). Servability is tested by loading the logged models, not here.
    n_out = 1 if problem == "regression" else len(classes)
    out = output_frame(np.full((len(example), n_out), 1.0 / max(n_out, 1)), problem, classes)
    served = _signature_frame(example).rename(columns=wrapper.input_names)
    signature = infer_signature(served, out)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictor.pkl"
        dump_predictor(predictor, path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        with _obsrv_by_value():
            info = _retry(
                lambda: mlflow.pyfunc.log_model(
                    name=name,
                    python_model=wrapper,
                    artifacts={"predictor": str(path)},
                    signature=signature,
                    pip_requirements=pip_requirements(),
                )
            )
    return LoggedModel(info.model_uri, str(info.artifact_path or model_location(info.model_uri)), digest)


def model_location(model_uri: str) -> str:
    """The artifact location a model URI (`models:/...`, `runs:/...`) resolves to."""
    if model_uri.startswith("models:/"):
        from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

        return str(ModelsArtifactRepository.get_underlying_uri(model_uri))
    if model_uri.startswith("runs:/"):
        from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

        return str(RunsArtifactRepository.get_underlying_uri(model_uri))
    return model_uri


def experiment_artifact_root(experiment_id: str) -> str:
    from mlflow.tracking import MlflowClient

    return str(MlflowClient().get_experiment(experiment_id).artifact_location)


def verified_model_blob(model: str, model_uri: str, *, artifact_uri: str, sha256: str, root: str) -> bytes:
    """The bytes of `model`'s predictor.pkl, only if its model URI still resolves to the artifact
    location recorded when it was published, that location lies inside `root` (this job's
    experiment), and the bytes hash to the recorded sha256. Anything else is a FinalTaskError
    naming the model: the file is never unpickled."""
    from obsrv.service_tasks.errors import FinalTaskError

    if not sha256 or not artifact_uri:
        raise FinalTaskError(
            f"The published model {model} has no recorded artifact location or hash in its models table, so "
            "it cannot be checked before it is loaded; rerun the task that published it."
        )
    location = model_location(model_uri).rstrip("/")
    inside = root.rstrip("/") + "/"
    if location != artifact_uri.rstrip("/") or not location.startswith(inside):
        raise FinalTaskError(
            f"The published model {model} points to {location}, which is not the location recorded when it was "
            f"published ({artifact_uri}) inside this job's experiment ({root}); refusing to load it. Check who "
            "can write the output schema and the experiment (docs/runtime.md, \"Model integrity\")."
        )
    blob = load_model_blob(model_uri)
    actual = hashlib.sha256(blob).hexdigest()
    if actual != sha256:
        raise FinalTaskError(
            f"The predictor file of the published model {model} changed since it was published (sha256 "
            f"{actual[:12]}..., recorded {sha256[:12]}...); refusing to load it. Rerun the task that published "
            "it, and check who can write the experiment (docs/runtime.md, \"Model integrity\")."
        )
    return blob


def example_rows(X: pd.DataFrame, n: int = 5) -> list[int]:
    """Positions of the rows a model's signature is inferred from: the first ``n``, plus, for each
    column missing in all of them, the first row where it is not. Why: MLflow types a column that
    holds only missing values as double, and a served model then refuses every row whose value in
    that mostly-missing string column is set ("Can not safely convert str to float64")."""
    rows = list(range(min(n, len(X))))
    head = X.iloc[rows]
    for col in X.columns[head.isna().all(axis=0).to_numpy()] if rows else []:
        found = X[col].notna().to_numpy().nonzero()[0]
        if len(found) and int(found[0]) not in rows:
            rows.append(int(found[0]))
    return sorted(rows)


def _signature_frame(X: pd.DataFrame) -> pd.DataFrame:
    """MLflow schemas know numpy/object columns; map pandas' string/nullable dtypes onto those."""
    out = X.copy()
    for col, dtype in out.dtypes.items():
        if pd.api.types.is_bool_dtype(dtype):
            out[col] = out[col].astype("boolean").astype(object) if out[col].isna().any() else out[col].astype(bool)
        elif pd.api.types.is_integer_dtype(dtype) and pd.api.types.is_extension_array_dtype(dtype):
            out[col] = out[col].astype("float64")
        elif isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
            out[col] = out[col].astype(object)
    return out


def load_model_predictor(model_uri: str) -> Any:
    """The predictor behind a logged obsrv pyfunc model (without building a pyfunc env)."""
    return _loads(load_model_blob(model_uri))


def load_model_blob(model_uri: str) -> bytes:
    """The bytes of the ``predictor.pkl`` behind a logged obsrv pyfunc model, not unpickled."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"{model_uri.rstrip('/')}", dst_path=tmp)
        candidates = sorted(Path(local).rglob("predictor.pkl"))
        if not candidates:
            raise FileNotFoundError(f"no predictor.pkl under {model_uri}")
        return candidates[0].read_bytes()


# ------------------------------------------------------------------------------- params/metrics


def flat_params(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """MLflow params: flattened, stringified, values cut to 500 characters."""
    out: dict[str, str] = {}
    for key, value in params.items():
        k = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_params(value, prefix=f"{k}."))
        else:
            out[k] = str(value)[:500]
    return out


def safe_metric_name(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_\-. /]", "_", name)


def register_champion(
    model_uri: str, name: str, *, alias: str = "champion", tags: dict[str, str] | None = None
) -> str:
    """Register `model_uri` under `name`, point `alias` at the new version, then tag it with `tags`;
    returns the version.

    Every name, the alias and the tags are checked against Unity Catalog's rules first (locally
    too), so nothing is written when one would be rejected. The alias is set before any tag: should
    a tag write still fail, the new version is not left without its alias.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    from obsrv.service_tasks import uc_rules

    uc_rules.check_registered_model_name(name, three_level=on_databricks())
    uc_rules.check_alias(alias)
    checked = uc_rules.check_tags(tags or {}, f"a version of {name}")
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), contextlib.redirect_stderr(devnull):
        version = _retry(lambda: mlflow.register_model(model_uri, name))
    client = MlflowClient()
    _retry(lambda: client.set_registered_model_alias(name, alias, version.version))
    for key, value in checked.items():
        _retry(lambda k=key, v=value: client.set_model_version_tag(name, version.version, k, v))
    return str(version.version)
