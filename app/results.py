"""A finished local run's results: its leaderboard table, the report's plots, the champion's
registered model version, and two runs side by side (the app's Results page)."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from obsrv.app.run_status import StatusError, runs_dir

_PLOT = re.compile(r"<h2>([^<]*)</h2>\s*<img[^>]*src=[\"']data:image/png;base64,([A-Za-z0-9+/=]+)[\"']")
_NOT_METRICS = {"task_id", "kind", "model", "is_champion", "scored_on"}


def leaderboard(workdir: str | Path, run_id: str) -> Any:
    """The `{table}_leaderboard_{run_id}` Delta table evaluate wrote (ranked, champion first).
    Workflow ids are unique within one .obsrv home, so the table is found by that suffix."""
    from obsrv.service_tasks.io import LocalDeltaStore, TableName

    home = Path(workdir).resolve() / ".obsrv"
    found = sorted(p for p in (home / "warehouse").glob(f"*/*/*_leaderboard_{run_id}") if (p / "_delta_log").is_dir())
    if not found:
        raise StatusError(f"run {run_id} has no leaderboard yet (evaluate has not finished)")
    table = found[0]
    return LocalDeltaStore(home).read(TableName(table.parent.parent.name, table.parent.name, table.name))


def metric_columns(board: Any) -> list[str]:
    return [c for c in board.columns if c not in _NOT_METRICS]


def report_plots(workdir: str | Path, run_id: str) -> list[tuple[str, bytes]]:
    """(title, PNG bytes) of each plot in the run's report.html (evaluate embeds them)."""
    report = runs_dir(workdir) / run_id / "report.html"
    if not report.exists():
        return []
    return [(title, base64.b64decode(data)) for title, data in _PLOT.findall(report.read_text(errors="replace"))]


@dataclass(frozen=True)
class Champion:
    model: str  # the leaderboard's model name
    registered_name: str
    version: str | None
    uri: str  # models:/<name>@champion


def champion(workdir: str | Path, job: str, board: Any) -> Champion:
    """The champion row and its registered version in the local registry (the `champion` alias
    evaluate sets; the local model name is the job name: service_tasks/local/bundle_values.py)."""
    rows = board[board["is_champion"].astype(bool)]
    if rows.empty:
        raise StatusError("the leaderboard marks no champion")
    home = Path(workdir).resolve() / ".obsrv"
    version: str | None = None
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    try:
        version = str(MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias(job, "champion").version)
    except MlflowException:
        version = None  # evaluate registers after the leaderboard: not there (yet)
    return Champion(model=str(rows.iloc[0]["model"]), registered_name=job, version=version, uri=f"models:/{job}@champion")


def compare(first: Any, second: Any, first_id: str, second_id: str) -> Any:
    """The two leaderboards joined on model, each metric of both runs and the difference."""
    import pandas as pd

    metrics = [m for m in metric_columns(first) if m in set(metric_columns(second))]
    left = first.set_index("model")[metrics].add_suffix(f" ({first_id})")
    right = second.set_index("model")[metrics].add_suffix(f" ({second_id})")
    joined = left.join(right, how="outer")
    for metric in metrics:
        joined[f"{metric} Δ"] = joined[f"{metric} ({second_id})"] - joined[f"{metric} ({first_id})"]
    return pd.DataFrame(joined).reset_index()
