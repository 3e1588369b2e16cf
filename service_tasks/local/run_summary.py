"""What `obsrv run` prints at the end: the leaderboard the evaluate task wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from obsrv.service_tasks.io import LocalDeltaStore, leaderboard_table


def _spec_of(task: dict[str, Any]) -> dict[str, Any]:
    """{context, ...} of a task of the locally deployed job: from its plan file (`--plan`, already
    resolved to the run's local copy), or the inline `--spec` of older compiled jobs."""
    argv = task["python_wheel_task"]["parameters"]
    if "--plan" in argv:
        return json.loads(Path(argv[argv.index("--plan") + 1]).read_text(encoding="utf-8"))
    return json.loads(argv[argv.index("--spec") + 1])


def leaderboard_frame(job: dict[str, Any], home: Path, workflow_id: str) -> pd.DataFrame | None:
    """The `{table}_leaderboard_{workflow_id}` table (ranked by evaluate), or None when it did not run."""
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
    return board  # evaluate wrote it ranked, champion first
