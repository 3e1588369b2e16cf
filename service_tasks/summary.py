"""What `obsrv run` prints at the end: the leaderboard the evaluate task wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from obsrv.service_tasks.io import LocalDeltaStore, leaderboard_table


def _spec_of(task: dict[str, Any]) -> dict[str, Any]:
    argv = task["python_wheel_task"]["parameters"]
    return json.loads(argv[argv.index("--spec") + 1])


def leaderboard_frame(job: dict[str, Any], home: Path, workflow_id: str) -> pd.DataFrame | None:
    """The `{table}_leaderboard_{workflow_id}` table, best first, or None when evaluate did not run."""
    evaluate = next((t for t in job["tasks"] if t["task_key"] == "evaluate"), None)
    if evaluate is None:
        return None
    context = _spec_of(evaluate)["context"]
    params = {p["name"]: p["default"] for p in job.get("parameters", [])}
    name = leaderboard_table(params["catalog"], params["schema"], context["source"]["table"], workflow_id)
    store = LocalDeltaStore(home)
    if not store.exists(name):
        return None
    board = store.read(name)
    primary = next(iter((context["metric"].get("classification") or context["metric"].get("regression"))))
    ascending = primary in ("logloss", "rmse", "mae")
    if primary in board.columns:
        board = board.sort_values(primary, ascending=ascending, kind="stable")
    return board.reset_index(drop=True)
