"""Fit one AutoML peer on one outer split and write its predictions. Runs in the peers'
virtualenv (benchmarks/.venv-peers), never in obsrv's environment.

    .venv-peers/bin/python peers_runner.py --method flaml --split-dir DIR --budget 60 --n-jobs 2

DIR holds train.parquet, test.parquet and meta.json ({"target", "classes", "metric", "seed"});
`classes` fixes the column order of every probability matrix (binary: [negative, positive]); an
empty `classes` is a regression set, whose "probability matrix" is one column of predicted values.
Writes DIR/<method>.npz (test_proba, oof_proba or empty, fit_seconds, predict_seconds,
startup_seconds) or DIR/<method>.error.txt. Metrics are computed by the caller, by the same code
for every method.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def _order(proba: pd.DataFrame | np.ndarray, labels: list, classes: list) -> np.ndarray:
    """Reorder probability columns given in `labels` order into `classes` order."""
    arr = np.asarray(proba, dtype=np.float64)
    index = {str(lab): i for i, lab in enumerate(labels)}
    out = np.zeros((arr.shape[0], len(classes)))
    for j, c in enumerate(classes):
        if str(c) in index:
            out[:, j] = arr[:, index[str(c)]]
    return out


def _metric(classes: list, *, flaml: bool) -> str:
    """Each peer's name for the benchmark's primary metric (rmse for a regression set)."""
    if not classes:
        return "rmse" if flaml else "root_mean_squared_error"
    return "roc_auc" if len(classes) == 2 else "log_loss"


def run_flaml(train, test, meta, budget, n_jobs, work):
    from flaml import AutoML

    target, classes = meta["target"], meta["classes"]
    X, y = train.drop(columns=[target]), train[target]
    automl = AutoML()
    t0 = time.perf_counter()
    automl.fit(
        X,
        y,
        task="classification" if classes else "regression",
        metric=_metric(classes, flaml=True),
        time_budget=budget,
        ensemble=True,  # stacker after the search (FLAML's own design); counted in fit time
        n_jobs=n_jobs,
        seed=meta["seed"],
        verbose=0,
        log_file_name=str(work / "flaml.log"),
    )
    fit = time.perf_counter() - t0
    Xt = test.drop(columns=[target])
    if not classes:
        automl.predict(Xt.head(5))  # warm-up
        t0 = time.perf_counter()
        values = np.asarray(automl.predict(Xt), dtype=np.float64).reshape(-1, 1)
        pred = time.perf_counter() - t0
        return values, None, fit, pred, 0.0, {"best_estimator": automl.best_estimator}
    automl.predict_proba(Xt.head(5))  # warm-up (every method gets one), then the timed call
    t0 = time.perf_counter()
    proba = automl.predict_proba(Xt)
    pred = time.perf_counter() - t0
    labels = list(automl.classes_)
    return _order(proba, labels, classes), None, fit, pred, 0.0, {"best_estimator": automl.best_estimator}


def run_autogluon(train, test, meta, budget, n_jobs, work):
    from autogluon.tabular import TabularPredictor

    target, classes = meta["target"], meta["classes"]
    path = work / "ag_models"
    predictor = TabularPredictor(
        label=target,
        problem_type=None if classes else "regression",
        eval_metric=_metric(classes, flaml=False),
        path=str(path),
        verbosity=0,
    )
    t0 = time.perf_counter()
    # best_quality turns on dynamic stacking (DyStack), which spends a quarter of the budget on a
    # sub-fit; below ~2 minutes that sub-fit trains nothing and AutoGluon 1.6 then fails with
    # "Learner is already fit", so short budgets keep the preset but skip that guard.
    predictor.fit(
        train,
        presets="best_quality",
        time_limit=budget,
        num_cpus=n_jobs,
        num_gpus=0,
        dynamic_stacking="auto" if budget >= 120 else False,
    )
    fit = time.perf_counter() - t0
    Xt = test.drop(columns=[target])
    if not classes:
        predictor.predict(Xt.head(5))  # warm-up
        t0 = time.perf_counter()
        values = predictor.predict(Xt).to_numpy(dtype=np.float64).reshape(-1, 1)
        pred = time.perf_counter() - t0
        extra = {"best_model": str(predictor.model_best)}
        shutil.rmtree(path, ignore_errors=True)
        return values, None, fit, pred, 0.0, extra
    predictor.predict_proba(Xt.head(5), as_multiclass=True)  # warm-up
    t0 = time.perf_counter()
    proba = predictor.predict_proba(Xt, as_multiclass=True)
    pred = time.perf_counter() - t0
    oof = None
    try:
        o = predictor.predict_proba_oof(as_multiclass=True)
        oof = _order(o.loc[train.index], list(o.columns), classes)
    except Exception:  # noqa: BLE001 - OOF is optional (only for the F1 threshold)
        oof = None
    extra = {"best_model": str(predictor.model_best)}
    shutil.rmtree(path, ignore_errors=True)
    return _order(proba, list(proba.columns), classes), oof, fit, pred, 0.0, extra


def run_h2o(train, test, meta, budget, n_jobs, work):
    import h2o
    from h2o.automl import H2OAutoML

    target, classes = meta["target"], meta["classes"]
    t0 = time.perf_counter()
    h2o.init(nthreads=n_jobs, max_mem_size="6G", verbose=False, ice_root=str(work))
    h2o.no_progress()
    startup = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        hf = h2o.H2OFrame(train)
        if classes:
            hf[target] = hf[target].asfactor()
        aml = H2OAutoML(
            max_runtime_secs=budget,
            seed=meta["seed"],
            sort_metric=("AUC" if len(classes) == 2 else "logloss") if classes else "RMSE",
            verbosity=None,
        )
        aml.train(y=target, training_frame=hf)
        fit = time.perf_counter() - t0
        aml.leader.predict(h2o.H2OFrame(test.drop(columns=[target]).head(5)))  # warm-up
        t0 = time.perf_counter()
        ht = h2o.H2OFrame(test.drop(columns=[target]))
        pr = aml.leader.predict(ht).as_data_frame(use_multi_thread=False)
        pred = time.perf_counter() - t0
        extra = {"leader": aml.leader.model_id}
        if not classes:
            return pr["predict"].to_numpy(dtype=np.float64).reshape(-1, 1), None, fit, pred, startup, extra
        labels = [c for c in pr.columns if c != "predict"]
        return _order(pr[labels].to_numpy(), labels, classes), None, fit, pred, startup, extra
    finally:
        try:
            h2o.cluster().shutdown()
        except Exception:  # noqa: BLE001
            pass


RUNNERS = {"flaml": run_flaml, "autogluon": run_autogluon, "h2o": run_h2o}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", choices=sorted(RUNNERS), required=True)
    ap.add_argument("--split-dir", required=True)
    ap.add_argument("--budget", type=float, required=True)
    ap.add_argument("--n-jobs", type=int, required=True)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    d = Path(args.split_dir)
    meta = json.loads((d / "meta.json").read_text())
    train = pd.read_parquet(d / "train.parquet")
    test = pd.read_parquet(d / "test.parquet")
    work = Path(tempfile.mkdtemp(prefix=f"{args.method}_", dir=d))
    try:
        proba, oof, fit, pred, startup, extra = RUNNERS[args.method](
            train, test, meta, int(args.budget), args.n_jobs, work
        )
    except BaseException:  # noqa: BLE001 - report any failure as a row, never drop the peer
        (d / f"{args.method}.error.txt").write_text(traceback.format_exc())
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    np.savez(
        d / f"{args.method}.npz",
        test_proba=proba,
        oof_proba=np.zeros((0, 0)) if oof is None else oof,
        fit_seconds=fit,
        predict_seconds=pred,
        startup_seconds=startup,
        extra=json.dumps(extra),
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
