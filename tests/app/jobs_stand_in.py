"""A stand-in for databricks-sdk's `WorkspaceClient().jobs` and `.workspace`: records every call
and replays responses built with the SDK's own dataclasses (`jobs.Run.from_dict`, ...: the
installed databricks/sdk/service/jobs.py), so a field name or enum value the SDK does not have
fails here. No workspace can be reached from the tests; this is what the workspace path is
verified against."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from databricks.sdk.service import jobs

HOST = "https://example.cloud.databricks.com"


def task(key: str, life: str, result: str | None = None, *, deps: tuple[str, ...] = (), run_id: int = 0,
         message: str = "", start: int = 1_700_000_000_000, duration_ms: int = 0) -> dict[str, Any]:
    state: dict[str, Any] = {"life_cycle_state": life, "state_message": message}
    if result:
        state["result_state"] = result
    return {"task_key": key, "run_id": run_id, "state": state, "depends_on": [{"task_key": d} for d in deps],
            "start_time": start, "execution_duration": duration_ms, "attempt_number": 0,
            "run_page_url": f"{HOST}/#job/7/run/{run_id}"}


def run(run_id: int, life: str, result: str | None, tasks: list[dict[str, Any]], job_id: int = 7) -> jobs.Run:
    state: dict[str, Any] = {"life_cycle_state": life}
    if result:
        state["result_state"] = result
    return jobs.Run.from_dict({
        "run_id": run_id, "job_id": job_id, "run_name": "credit_risk_ensemble", "state": state, "tasks": tasks,
        "start_time": 1_700_000_000_000, "run_duration": 95_000, "run_page_url": f"{HOST}/#job/{job_id}/run/{run_id}",
    })


class JobsStandIn:
    def __init__(self, runs: dict[int, jobs.Run], *, deployed: dict[str, int] | None = None,
                 outputs: dict[int, jobs.RunOutput] | None = None) -> None:
        self.runs = runs
        self.deployed = deployed or {}
        self.outputs = outputs or {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.next_run_id = 9001

    def get_run(self, run_id: int, **kwargs: Any) -> jobs.Run:
        self.calls.append(("get_run", {"run_id": run_id, **kwargs}))
        return self.runs[run_id]

    def get_run_output(self, run_id: int) -> jobs.RunOutput:
        self.calls.append(("get_run_output", {"run_id": run_id}))
        return self.outputs.get(run_id, jobs.RunOutput())

    def list(self, name: str | None = None, **kwargs: Any) -> list[jobs.BaseJob]:
        self.calls.append(("list", {"name": name, **kwargs}))
        return [jobs.BaseJob.from_dict({"job_id": i, "settings": {"name": n}}) for n, i in self.deployed.items()
                if name is None or n == name]

    def list_runs(self, **kwargs: Any) -> list[jobs.BaseRun]:
        self.calls.append(("list_runs", kwargs))
        chosen = [r for r in self.runs.values() if r.job_id == kwargs.get("job_id")]
        chosen.sort(key=lambda r: -(r.run_id or 0))
        return [jobs.BaseRun.from_dict(r.as_dict()) for r in chosen][: kwargs.get("limit") or None]

    def run_now(self, **kwargs: Any) -> SimpleNamespace:
        self.calls.append(("run_now", kwargs))
        return SimpleNamespace(run_id=self._new())  # the SDK returns a Wait[Run] whose run_id is set

    def submit(self, **kwargs: Any) -> SimpleNamespace:
        self.calls.append(("submit", kwargs))
        return SimpleNamespace(run_id=self._new())

    def _new(self) -> int:
        self.next_run_id += 1
        return self.next_run_id


class WorkspaceStandIn:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def mkdirs(self, path: str) -> None:
        self.calls.append(("mkdirs", {"path": path}))

    def upload(self, path: str, content: Any, **kwargs: Any) -> None:
        self.calls.append(("upload", {"path": path, "content": content.read().decode(), **kwargs}))
