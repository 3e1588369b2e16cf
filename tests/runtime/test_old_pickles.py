"""Models already in a registry keep loading after obsrv's modules move.

The fixture is a real `vote_top_alg` champion (linear + hist_gbm members) logged by obsrv before
the task side was split into sub-packages (`tests/fixtures/pre_restructure_model`, made by the
commit that added it). obsrv's code is pickled by value, so the model must load and predict with
no reference to the module paths it was written under.
"""

from __future__ import annotations

import pickletools
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # loads an MLflow model (MLflow's import and model loading)

FIXTURE = Path(__file__).parents[1] / "fixtures" / "pre_restructure_model"


def _module_references(path: Path) -> set[str]:
    """Every module name a pickle imports by reference (GLOBAL / STACK_GLOBAL opcodes)."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        import gzip

        data = gzip.decompress(data)
    modules: set[str] = set()
    strings: list[str] = []
    for op, arg, _ in pickletools.genops(data):
        if op.name in {"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"}:
            strings.append(str(arg))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            modules.add(strings[-2])
        elif op.name == "GLOBAL":
            modules.add(str(arg).split(" ")[0])
    return modules


def test_the_fixture_holds_no_reference_to_obsrv_modules() -> None:
    for name in ("python_model.pkl", "artifacts/predictor.pkl"):
        refs = _module_references(FIXTURE / name)
        assert refs, name  # the scan itself works: numpy, sklearn, ... are referenced
        assert not [m for m in refs if m.startswith("obsrv")], (name, sorted(refs))


def test_a_model_pickled_before_the_move_loads_and_predicts_the_same() -> None:
    model = mlflow.pyfunc.load_model(str(FIXTURE))
    X = pd.read_csv(FIXTURE / "input.csv")
    X["count"] = X["count"].astype("int64")
    X["flag"] = X["flag"].astype(bool)
    expected = pd.read_csv(FIXTURE / "expected.csv")
    out = model.predict(X)
    assert list(out.columns) == ["prediction", "probability_no", "probability_yes"]
    assert list(out["prediction"]) == list(expected["prediction"])
    np.testing.assert_allclose(out[["probability_no", "probability_yes"]].to_numpy(),
                               expected[["probability_no", "probability_yes"]].to_numpy(), rtol=1e-12, atol=1e-12)
