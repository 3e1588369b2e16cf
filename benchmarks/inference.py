"""Serving speed of a finished obsrv run, side by side with AutoGluon best_quality on the same split.

    .venv/bin/python benchmarks/inference.py [--home .obsrv] [--ag-budget 120] [--no-autogluon]

Run it after the README's main command (`obsrv data demo && obsrv compile examples/credit_risk.yaml
&& obsrv run examples/credit_risk.yaml --time-limit 120`). For each model it prints:

* cold start: a fresh process from its first import to its first one-row prediction, split into
  the import of the serving library (`import mlflow`; AutoGluon: `import autogluon.tabular`), the
  load (`mlflow.pyfunc.load_model(uri)`, which imports the model's ML libraries as it unpickles,
  resolves the alias in the registry and checks the model's requirements against the installed
  packages; AutoGluon: `TabularPredictor.load` of its folder, in a process of its own after the fit)
  and the first one-row call (lazy loading shows there: AutoGluon loads its models then);
* reload: the same model loaded again in that process from a local copy of its artifacts, as
  Model Serving loads a model it has downloaded: the libraries are imported and MLflow's
  requirement check has its package map, so this is the model's own load work (AutoGluon: its load
  and first call, since its models load at the first call);
* single-row latency p50/p99 over warm calls, one row of the table each;
* 1,000 and 100,000 rows (the table's rows resampled with replacement to reach 100k), rows/s;
* the model's size on disk.

Models: the `@champion`, the best base model of the run (by the leaderboard's OOF ranking), the
best ensemble model (the champion of a run is sometimes a single model; `--model NAME`, repeatable,
measures leaderboard models by name instead), and AutoGluon `best_quality` trained in the peers' virtualenv (benchmarks/setup_peers.sh) on obsrv's own
training rows (prepare's folds >= 0; obsrv's holdout rows are left out of both).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PEERS_PYTHON = BENCH_DIR / ".venv-peers" / "bin" / "python"
SINGLE_CALLS = 200
BIG = 100_000


def _timings(predict, X) -> dict:  # noqa: ANN001 - any predict(frame)
    """Warm single-row p50/p99 and batch times of ``predict`` on rows of ``X``."""
    import numpy as np

    n = len(X)
    lat = []
    for i in range(SINGLE_CALLS):
        row = X.iloc[[i % n]]
        t = time.perf_counter()
        predict(row)
        lat.append(time.perf_counter() - t)
    thousand = X.sample(1000, replace=n < 1000, random_state=1)
    big = X.sample(BIG, replace=True, random_state=2).reset_index(drop=True)
    t1k = []
    for _ in range(3):
        t = time.perf_counter()
        predict(thousand)
        t1k.append(time.perf_counter() - t)
    t = time.perf_counter()
    predict(big)
    t100k = time.perf_counter() - t
    ms = np.array(lat) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "rows1k_ms": float(np.median(t1k) * 1000), "rows100k_s": t100k}


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _use_store(mlflow: Any, home: Path) -> None:
    """The run's local MLflow store, for its runs and its registry."""
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{home / 'mlflow.db'}")


def measure_obsrv(uri: str, home: Path, table: Path) -> dict:
    """One model in this (fresh) process: cold start in its parts, reload, timings, size."""
    t = time.perf_counter()
    import mlflow
    import pandas as pd

    imported = time.perf_counter() - t
    _use_store(mlflow, home)
    t = time.perf_counter()
    model = mlflow.pyfunc.load_model(uri)
    load = time.perf_counter() - t
    X = pd.read_parquet(table)[model.metadata.signature.inputs.input_names()]
    t = time.perf_counter()
    model.predict(X.iloc[[0]])
    first = time.perf_counter() - t
    local = Path(mlflow.artifacts.download_artifacts(uri))
    t = time.perf_counter()
    mlflow.pyfunc.load_model(str(local))
    reload = time.perf_counter() - t
    return {"import_s": imported, "load_s": load, "first_call_s": first, "reload_s": reload,
            **_timings(model.predict, X), "size_mb": _size(local) / 1e6}


# the import name of each requirement a logged obsrv model can carry, where it differs from the pip name
_IMPORT_NAMES = {"scikit-learn": "sklearn"}


def libraries_loaded(uri: str, home: Path) -> list[str]:
    """The model's requirements that loading it imports (every obsrv model lists all the families'
    libraries; a model imports only its members')."""
    import sys

    import mlflow

    _use_store(mlflow, home)
    before = set(sys.modules)
    local = Path(mlflow.artifacts.download_artifacts(uri))
    mlflow.pyfunc.load_model(str(local), suppress_warnings=True)
    requirements = [line.split("==")[0] for line in (local / "requirements.txt").read_text().split()]
    return [r for r in requirements if _IMPORT_NAMES.get(r, r) in set(sys.modules) - before]


def load_breakdown(uri: str, home: Path, table: Path, libraries: list[str]) -> dict:
    """A fresh process's cold start of one model, step by step in the order MLflow takes them:
    where a load's seconds go (the steps add up to the cold start)."""
    import importlib

    steps: dict[str, float] = {}
    t = time.perf_counter()
    import mlflow
    import pandas as pd

    steps["import mlflow, pandas"] = time.perf_counter() - t
    _use_store(mlflow, home)
    t = time.perf_counter()
    local = Path(mlflow.artifacts.download_artifacts(uri))
    steps["resolve the alias in the local registry, copy the artifacts"] = time.perf_counter() - t
    t = time.perf_counter()
    for name in libraries:
        importlib.import_module(_IMPORT_NAMES.get(name, name))
    steps[f"import the libraries the model unpickles ({', '.join(libraries)})"] = time.perf_counter() - t
    from mlflow.utils import requirements_utils

    t = time.perf_counter()
    requirements_utils._init_packages_to_modules_map()  # the requirement check's scan of installed packages
    steps["MLflow's requirement check: its map of the installed packages"] = time.perf_counter() - t
    t = time.perf_counter()
    model = mlflow.pyfunc.load_model(str(local))
    steps["load_model of the local copy (the rest: MLflow's reading, obsrv's unpickling and warm-up)"] = (
        time.perf_counter() - t)
    X = pd.read_parquet(table)[model.metadata.signature.inputs.input_names()]
    t = time.perf_counter()
    model.predict(X.iloc[[0]])
    steps["first one-row call"] = time.perf_counter() - t
    return steps


def fit_autogluon(split: Path, budget: int) -> dict:
    """In the peers' virtualenv: fit best_quality on the split's training rows into its folder."""
    import pandas as pd
    from autogluon.tabular import TabularPredictor

    meta = json.loads((split / "meta.json").read_text())
    train = pd.read_parquet(split / "train.parquet")
    t = time.perf_counter()
    predictor = TabularPredictor(label=meta["target"], eval_metric=meta["metric"], path=str(split / "ag_models"),
                                 verbosity=0)
    predictor.fit(train, presets="best_quality", time_limit=budget, num_cpus=meta["n_jobs"], num_gpus=0,
                  dynamic_stacking="auto" if budget >= 120 else False)  # as peers_runner.py: short budgets skip DyStack
    return {"fit_s": time.perf_counter() - t, "best_model": str(predictor.model_best)}


def measure_autogluon(split: Path) -> dict:
    """In a fresh process of the peers' virtualenv, after fit_autogluon: timed as the obsrv models."""
    t = time.perf_counter()
    import pandas as pd
    from autogluon.tabular import TabularPredictor

    imported = time.perf_counter() - t
    meta = json.loads((split / "meta.json").read_text())
    path = split / "ag_models"
    t = time.perf_counter()
    predictor = TabularPredictor.load(str(path))
    load = time.perf_counter() - t
    X = pd.read_parquet(split / "train.parquet").drop(columns=[meta["target"]])
    t = time.perf_counter()
    predictor.predict_proba(X.iloc[[0]])
    first = time.perf_counter() - t
    t = time.perf_counter()
    TabularPredictor.load(str(path)).predict_proba(X.iloc[[0]])  # its models load lazily, at the first call
    reload = time.perf_counter() - t
    return {"import_s": imported, "load_s": load, "first_call_s": first, "reload_s": reload,
            **_timings(predictor.predict_proba, X), "size_mb": _size(path) / 1e6}


def _subprocess(python: Path | str, args: list[str], timeout: float) -> dict:
    proc = subprocess.run([str(python), str(Path(__file__).resolve()), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]}
    return json.loads(lines[-1])


def _run_facts(home: Path, extra: list[str]) -> tuple[str, str, list[tuple[str, str]], Path, Path]:
    """(workflow id, champion model name, [(label, model URI)] of the best base model and the extra
    models (default: the best ensemble), source table file, split folder)."""
    import pandas as pd

    runs = sorted((home / "runs").glob("*/leaderboard.json"))
    if not runs:
        raise SystemExit(f"no finished run under {home}/runs: run the README's main command first")
    board = pd.DataFrame(json.loads(runs[-1].read_text()))
    workflow = runs[-1].parent.name
    champion = str(board.loc[board["is_champion"], "model"].iloc[0])
    best_base = board[board["kind"] == "base"].iloc[0]  # the leaderboard is ranked by OOF score
    from obsrv.service_tasks.io import LocalDeltaStore
    from obsrv.service_tasks.io.naming import output_table

    store = LocalDeltaStore(home)

    def uri_of(model: str) -> str:
        rows = board[board["model"] == model]
        if rows.empty:
            raise SystemExit(f"no model {model!r} on the leaderboard of {workflow}")
        models = store.read(output_table("main", "credit_risk_ensemble", "training_data", "models", workflow,
                                         str(rows["task_id"].iloc[0])))
        return str(models.loc[models["model"] == model, "model_uri"].iloc[0])

    if not extra:
        ensembles = board[board["kind"] == "ensemble"]
        extra = [str(ensembles["model"].iloc[0])] if len(ensembles) else []
    others = [(f"obsrv best single ({best_base['model']})", uri_of(str(best_base["model"])))]
    others += [(f"obsrv {m}", uri_of(m)) for m in extra]
    prepared = store.read(output_table("main", "credit_risk_ensemble", "training_data", "prepared", workflow,
                                       "prepare"))
    table = next((home / "warehouse" / "main" / "credit_risk" / "training_data").glob("*.parquet"))
    split = home.parent / "bench_inference"
    split.mkdir(exist_ok=True)
    prepared.to_parquet(split / "prepared.parquet")
    return workflow, champion, others, table, split


def _ag_split(split: Path) -> None:
    """obsrv's training rows (prepare's folds >= 0): features and target as prepare wrote them."""
    import pandas as pd

    prepared = pd.read_parquet(split / "prepared.parquet")
    train = prepared[prepared["obsrv_fold"] >= 0].drop(columns=["obsrv_row_id", "obsrv_fold"])
    train.to_parquet(split / "train.parquet")
    meta = {"target": "default_label", "metric": "accuracy", "n_jobs": os.cpu_count()}
    (split / "meta.json").write_text(json.dumps(meta))


def _row(name: str, r: dict) -> str:
    if "error" in r:
        return f"| {name} | failed: {r['error'][0][:100]} |" + " |" * 9
    cold = r["import_s"] + r["load_s"] + r["first_call_s"]
    return (f"| {name} | {cold:.2f} | {r['import_s']:.2f} | {r['load_s']:.2f} | {r['first_call_s']:.2f} | "
            f"{r['reload_s']:.2f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['rows1k_ms']:.0f} | "
            f"{r['rows100k_s']:.1f} ({BIG / r['rows100k_s']:,.0f} rows/s) | {r['size_mb']:.1f} |")


HEADER = ("| model | cold start s | import s | load s | first call s | reload s | 1 row p50 ms | 1 row p99 ms "
          "| 1k rows ms | 100k rows s | size MB |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", default=".obsrv", type=Path)
    ap.add_argument("--ag-budget", type=int, default=120)
    ap.add_argument("--no-autogluon", action="store_true")
    ap.add_argument("--model", action="append", default=[], help="a leaderboard model to measure as well")
    ap.add_argument("--measure", nargs=3, metavar=("URI", "HOME", "TABLE"), help=argparse.SUPPRESS)
    ap.add_argument("--libraries", nargs=2, metavar=("URI", "HOME"), help=argparse.SUPPRESS)
    ap.add_argument("--breakdown", nargs=4, metavar=("URI", "HOME", "TABLE", "LIBS"), help=argparse.SUPPRESS)
    ap.add_argument("--autogluon-fit", metavar="SPLIT", help=argparse.SUPPRESS)
    ap.add_argument("--autogluon", metavar="SPLIT", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(measure_obsrv(args.measure[0], Path(args.measure[1]), Path(args.measure[2]))))
        return 0
    if args.libraries:
        print(json.dumps({"libraries": libraries_loaded(args.libraries[0], Path(args.libraries[1]))}))
        return 0
    if args.breakdown:
        uri, where, table, libs = args.breakdown
        print(json.dumps(load_breakdown(uri, Path(where), Path(table), [x for x in libs.split(",") if x])))
        return 0
    if args.autogluon_fit:
        print(json.dumps(fit_autogluon(Path(args.autogluon_fit), args.ag_budget)))
        return 0
    if args.autogluon:
        print(json.dumps(measure_autogluon(Path(args.autogluon))))
        return 0
    started = time.perf_counter()
    home = args.home.resolve()
    workflow, champion, others, table, split = _run_facts(home, args.model)
    rows = [(f"obsrv champion ({champion})", _subprocess(sys.executable, ["--measure", "models:/credit_risk_ensemble@champion",
                                                                        str(home), str(table)], 900))]
    rows += [(label, _subprocess(sys.executable, ["--measure", uri, str(home), str(table)], 900)) for label, uri in others]
    if not args.no_autogluon:
        if not PEERS_PYTHON.exists():
            rows.append(("AutoGluon best_quality", {"error": ["no peers virtualenv: run benchmarks/setup_peers.sh"]}))
        else:
            _ag_split(split)
            fit = _subprocess(PEERS_PYTHON, ["--autogluon-fit", str(split), "--ag-budget", str(args.ag_budget)],
                              args.ag_budget * 4 + 600)
            ag = fit if "error" in fit else _subprocess(PEERS_PYTHON, ["--autogluon", str(split)], 900)
            name = f"AutoGluon best_quality ({fit.get('best_model', '?')}, fit {fit.get('fit_s', 0):.0f} s)"
            rows.append((name, ag))
    print(f"workflow {workflow}; single-row latency over {SINGLE_CALLS} warm calls")
    print(HEADER)
    print("|---" * HEADER.count(" | ") + "|---|")
    for name, r in rows:
        print(_row(name, r))
    champion_uri = "models:/credit_risk_ensemble@champion"
    libraries = _subprocess(sys.executable, ["--libraries", champion_uri, str(home)], 900).get("libraries", [])
    steps = _subprocess(sys.executable, ["--breakdown", champion_uri, str(home), str(table), ",".join(libraries)], 900)
    print("\nWhere the champion's cold start goes (a fresh process, step by step):")
    print("| step | s |\n|---|---|")
    for step, seconds in steps.items():
        print(f"| {step} | {seconds[0] if isinstance(seconds, list) else f'{seconds:.2f}'} |")
    print(f"wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
