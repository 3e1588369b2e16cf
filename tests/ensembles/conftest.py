"""Fixtures for the ensemble tests (helpers in tests/support/ensemble_pool.py)."""

from __future__ import annotations

import os

# One OpenMP thread for native code loaded from here on (read when libgomp loads); see the fixture.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from typing import Any

import numpy as np
import pandas as pd
import pytest
from obsrv.service_tasks.contract import PredictionSet, PreparedData

from support.ensemble_pool import FAMILIES, binary_frame, make_pool, make_prepared


@pytest.fixture(autouse=True)
def _single_threaded_native_code():
    """One OpenMP/BLAS thread: on a shared 2-core machine, OpenMP spin-waiting under
    oversubscription made HistGradientBoosting 50x slower (25 s vs 0.5 s for one 4-fold fit).
    Per test, because threadpoolctl only limits the libraries loaded when it is entered."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="session")
def binary_setup() -> tuple[PreparedData, PredictionSet, dict[str, Any]]:
    X, y = binary_frame()
    data = make_prepared(X, y, problem="classification")
    pool, preds = make_pool(data, FAMILIES, "auc")
    return data, pool, preds


@pytest.fixture(scope="session")
def binary_no_holdout_setup() -> tuple[PreparedData, PredictionSet, dict[str, Any]]:
    """As binary_setup with ``context.holdout: 0``: every row trains, the holdout is empty."""
    X, y = binary_frame()
    data = make_prepared(X, y, problem="classification", holdout=0.0)
    pool, preds = make_pool(data, FAMILIES, "auc")
    return data, pool, preds


@pytest.fixture(scope="session")
def multiclass_setup() -> tuple[PreparedData, PredictionSet, dict[str, Any]]:
    rng = np.random.default_rng(1)
    n = 600
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=[f"x{i}" for i in range(4)])
    X["seg"] = rng.choice(["u", "v"], size=n)
    scores = np.column_stack([X.x0, X.x1, 0.5 * (X.x2 + X.x3)]) + rng.normal(scale=0.8, size=(n, 3))
    y = np.argmax(scores, axis=1).astype(np.int64)
    data = make_prepared(X, y, problem="classification", classes=["p", "q", "r"])
    pool, preds = make_pool(data, FAMILIES[:4], "logloss")
    return data, pool, preds


@pytest.fixture(scope="session")
def regression_setup() -> tuple[PreparedData, PredictionSet, dict[str, Any]]:
    rng = np.random.default_rng(2)
    n = 500
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=[f"x{i}" for i in range(4)])
    X["seg"] = rng.choice(["u", "v"], size=n)
    y = (2 * X.x0 + np.sin(2 * X.x1) + X.x2 * (X.seg == "u") + rng.normal(scale=0.5, size=n)).to_numpy()
    data = make_prepared(X, y, problem="regression")
    pool, preds = make_pool(data, FAMILIES[:4], "rmse")
    return data, pool, preds
