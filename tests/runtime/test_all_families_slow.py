"""Every zoo family as its own `base_<family>` task through `obsrv-task`'s argv (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from obsrv.compiler.spec import MODEL_FAMILIES, Context
from obsrv.service_tasks import entry
from obsrv.service_tasks.io import LocalDeltaStore, leaderboard_table, output_table

from support.runtime_helpers import SOURCE, context_for, synthetic

pytestmark = pytest.mark.slow


def _argv(stage, task_id, task=None, upstream=None):
    ctx = Context.model_validate(context_for("binary")).model_dump(mode="json", by_alias=True)
    spec = json.dumps({"context": ctx, "task": task or {}, "upstream": sorted(upstream or []), "budget_seconds": 0},
                      sort_keys=True)
    return ["--stage", stage, "--task-id", task_id, "--workflow-id", "77", "--catalog", "main", "--schema", "lab",
            "--spec", spec]


def test_all_families_through_entry(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OBSRV_HOME", str(tmp_path))
    monkeypatch.setenv("OBSRV_TASK_BUDGET_SECONDS", "0")
    store = LocalDeltaStore(tmp_path)
    store.write(SOURCE, synthetic("binary", n=300))
    assert entry.exit_code(_argv("prepare", "prepare")) == 0
    bases = [f"base_{f}" for f in MODEL_FAMILIES]
    for family in MODEL_FAMILIES:
        assert entry.exit_code(_argv("base", f"base_{family}", {"family": family})) == 0, family
    assert entry.exit_code(_argv("evaluate", "evaluate", upstream=bases)) == 0
    board = store.read(leaderboard_table("main", "lab", "training_data", "77"))
    assert len(board) == len(MODEL_FAMILIES) and board["is_champion"].sum() == 1
    assert board["auc"].min() > 0.6
    folds = None
    for b in bases:
        oof = store.read(output_table("main", "lab", "training_data", "oof", "77", b)).sort_values("row_id")
        f = oof.loc[oof["model"] == oof["model"].iloc[0], "fold"].to_numpy()
        folds = f if folds is None else folds
        np.testing.assert_array_equal(f, folds)
    assert (tmp_path / "runs" / "77" / "report.html").is_file()
