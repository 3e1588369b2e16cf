"""The quality benchmark on a regression set: rmse rows, a spec obsrv accepts, the peers' regression
modes and a report that shows rmse, mae and r2 (no obsrv run: those are the smoke tests' cost)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture()
def modules() -> tuple:
    sys.path.insert(0, str(BENCH))
    import _common as C
    import obsrv_adapter as OA
    import peers_runner as PR
    import quality as Q

    return C, OA, PR, Q


def _regression_set(C) -> object:  # noqa: ANN001 - the benchmark's _common module
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    frame = pd.DataFrame({"x": x, "noise": rng.normal(size=200), C.TARGET: 3.0 * x + 10.0})
    return C.Dataset("toy_regression", frame, None, "regression")


def test_a_regression_split_scores_rmse_and_says_why_stacking_is_skipped(modules: tuple, tmp_path: Path) -> None:
    C, _, _, Q = modules
    ds = _regression_set(C)
    tr, te = np.arange(150), np.arange(150, 200)
    args = argparse.Namespace(seed=1, budget=5, smoke=False, obsrv_task_budget=None, obsrv_holdout=0.0, obsrv_folds=5)
    rows = {r["method"]: r for r in Q.run_split(ds, (0, 0, tr, te), args, {"constant", "sklearn_stacking"}, tmp_path)}
    y_te = ds.frame[C.TARGET].to_numpy()[te]
    mean = ds.frame[C.TARGET].to_numpy()[tr].mean()
    assert rows["constant"]["status"] == "ok" and rows["constant"]["n_classes"] == 0
    assert rows["constant"]["rmse"] == pytest.approx(float(np.sqrt(np.mean((y_te - mean) ** 2))))
    assert rows["constant"]["r2"] <= 0.01  # the mean predicts nothing
    assert rows["sklearn_stacking"]["status"] == "skipped: classification only"


def test_the_regression_spec_is_valid_obsrv_with_rmse_first_and_plain_folds(modules: tuple, tmp_path: Path) -> None:
    from obsrv.compiler.api import load_spec

    _, OA, _, _ = modules
    path = OA.write_spec(tmp_path / "spec.yaml", name="bench_toy", schema="toy", table="train", n_classes=0,
                         tasks=list(OA.QUALITY_TASKS))
    spec, _, diagnostics = load_spec(path)
    assert [d for d in diagnostics if d.severity == "error"] == []
    assert spec.obsrv.context.metric.regression[0] == "rmse"
    assert spec.obsrv.context.fold_type == "kfold"


def test_the_peers_are_asked_for_their_regression_modes(modules: tuple) -> None:
    _, _, PR, _ = modules
    assert PR._metric([], flaml=True) == "rmse"
    assert PR._metric([], flaml=False) == "root_mean_squared_error"
    assert PR._metric(["a", "b"], flaml=True) == "roc_auc"
    assert PR._metric(["a", "b", "c"], flaml=False) == "log_loss"


def test_the_report_ranks_by_rmse_and_lists_rmse_mae_r2(modules: tuple, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """quality.py's own main on the wider suite's concrete set, its split stubbed with fixed rows."""
    _, _, _, Q = modules

    def fake_split(ds, split, args, need, work):  # noqa: ANN001 - quality.run_split's signature
        assert ds.regression and ds.n_classes == 0
        return [{"method": method, "status": "ok", "dataset": ds.name, "repeat": split[0], "fold": split[1],
                 "n_classes": 0, "n_train": 800, "n_test": 200, "rmse": rmse, "mae": rmse / 2, "r2": 0.5,
                 "fit_s": 1.0, "predict_ms_per_1k": 1.0, "threshold_from_oof": False, "notes": "{}"}
                for method, rmse in (("constant", 9.0), ("best_single", 3.0), ("obsrv_champion", 2.5),
                                     ("autogluon", 2.8))]

    monkeypatch.setattr(Q, "run_split", fake_split)
    assert Q.main(["--datasets", "concrete", "--max-splits", "1", "--methods", "constant,obsrv,autogluon",
                   "--out-dir", str(tmp_path), "--work-dir", str(tmp_path / "w")]) == 0
    runs = pd.read_csv(tmp_path / "quality_runs.csv")
    assert list(Q.aggregate(runs)["mean_rank"].index[:2]) == ["obsrv_champion", "autogluon"]  # lowest rmse first
    md = (tmp_path / "quality.md").read_text()
    assert "| concrete | rmse ↓ |" in md
    assert "| method | RMSE | MAE | R² |" in md and "| obsrv_champion | 2.5000 | 1.2500 | 0.5000 |" in md


def test_code_ab_rerenders_with_a_task_beside_the_champion_and_ranks_regression_by_rmse(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    import json

    import code_ab

    rows = [{"method": m, "status": "ok", "dataset": ds, "repeat": 0, "fold": 0, "n_classes": k, "arm": arm,
             "auc": auc, "logloss": float("nan"), "rmse": rmse, "fit_s": 40.0}
            for ds, k, auc, rmse in (("credit_data", 2, 0.85, float("nan")), ("ames", 0, float("nan"), 24000.0))
            for m in ("best_single", "obsrv_champion", "obsrv:boost") for arm in ("A", "B")]
    for r in rows:  # B's boost is better on both sets: AUC up, RMSE down
        if r["method"] == "obsrv:boost" and r["arm"] == "B":
            r["auc"], r["rmse"] = (0.86, r["rmse"]) if r["n_classes"] else (r["auc"], 23000.0)
    pd.DataFrame(rows).to_csv(tmp_path / "ab_runs.csv", index=False)
    meta = {"a": "A", "b": "B", "date": "d", "machine": "m", "command": "c", "wall_s": 60.0, "budget": 60.0}
    (tmp_path / "ab_meta.json").write_text(json.dumps(meta))
    assert code_ab.main(["--rerender", "--stem", "ab", "--out-dir", str(tmp_path), "--report", "obsrv:boost"]) == 0
    md = (tmp_path / "ab.md").read_text()
    assert "**obsrv:boost, B vs A:** lower loss on 2 of 2 splits" in md
    assert "| ames | obsrv:boost | 24000.0000 | 23000.0000 |" in md
