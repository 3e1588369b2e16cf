"""Property test (issue 20): random small tables through prepare and one cheap family.

Random dtypes (floats with NaN and ±inf, ints, bools, strings, all-missing columns), random column
names (dots, spaces, case, non-ASCII, names equal up to case), imbalanced classes or a regression
target, random folds and holdouts. Every outcome is a success or a TaskError with a message, never
another exception (a traceback is an obsrv bug, whatever the data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obsrv.service_tasks import zoo
from obsrv.service_tasks.errors import TaskError
from obsrv.service_tasks.stages.prepare import prepare_frame, prepared_from_frame
from obsrv.service_tasks.task_parameters import build_request

from support.runtime_helpers import context_for

NAME_CHARS = st.sampled_from(list("abxXyY_.éÉ ßö1"))  # x/X, y/Y, é/É: names equal up to case
DTYPES = ("float", "float_inf", "float_inf", "int", "bool", "str", "all_missing")  # inf twice: the classic crash


@st.composite
def tables(draw):
    n = draw(st.integers(6, 50))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    names = draw(st.lists(st.text(NAME_CHARS, min_size=1, max_size=6), min_size=1, max_size=5))
    df = pd.DataFrame(index=range(n))
    for i, name in enumerate(names):
        name = name if name not in df.columns else f"{name}{i}"
        kind = draw(st.sampled_from(DTYPES))
        if kind == "float":
            col = rng.normal(size=n)
            col[rng.uniform(size=n) < 0.2] = np.nan
        elif kind == "float_inf":
            col = rng.choice([np.inf, -np.inf, np.nan, 1.0, 2.5], size=n)
        elif kind == "int":
            col = rng.integers(-3, 3, n)
        elif kind == "bool":
            col = rng.uniform(size=n) > 0.5
        elif kind == "str":
            col = pd.Series(rng.choice(["u", "v", "w", None], size=n), dtype="str")
        else:
            col = np.full(n, np.nan)
        df[name] = col
    problem = draw(st.sampled_from(["binary", "multiclass", "regression"]))
    if problem == "regression":
        df["Target"] = rng.normal(size=n)
    else:
        k = 2 if problem == "binary" else 3
        p = np.array(draw(st.lists(st.floats(0.02, 1.0), min_size=k, max_size=k)))
        df["Target"] = rng.choice([f"c{j}" for j in range(k)], size=n, p=p / p.sum())
    spec_target = draw(st.sampled_from(["Target", "target", "TARGET"]))
    overrides = {
        "folds": draw(st.integers(2, 5)),
        "holdout": draw(st.sampled_from([0.0, 0.2, 0.5])),
        "source": {"target": spec_target},
    }
    if problem != "regression":
        overrides["fold_type"] = draw(st.sampled_from(["stratified", "kfold"]))
    return df, problem, overrides


@pytest.mark.slow  # ~20 s: 30 random tables, each through prepare and a linear fit
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tables())
def test_prepare_and_linear_either_succeed_or_say_what_is_wrong(case) -> None:
    df, problem, overrides = case
    context = build_request(stage="prepare", task_id="prepare", workflow_id="wf", task={}, upstream=[],
                            context=context_for(problem, **overrides), budget_seconds=0.0).context
    try:
        prepared, meta = prepare_frame(df, context, log=lambda _line: None)
        d = prepared_from_frame(prepared, meta)
        fit = zoo.fit_family(zoo.FitRequest("linear", d.X_train, d.y_train, d.folds, d.w_train, problem=d.problem,
                             n_classes=max(d.n_outputs, 1), budget_seconds=0.0, seed=0, X_holdout=d.X_holdout,
                             categorical_columns=d.categorical_columns, max_trials=1))
    except TaskError as exc:
        assert str(exc).strip(), "a TaskError must say what is wrong"
        return
    assert fit.oof.shape == (len(d.y_train), max(d.n_outputs, 1))
    assert np.isfinite(fit.oof).all() and np.isfinite(fit.holdout).all()
