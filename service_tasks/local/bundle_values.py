"""What `databricks bundle deploy` does to a compiled job, done locally before `obsrv run` starts it.

Deploy-time `${...}` references in the compiled job are resolved the way the Databricks CLI would
for a bundle without a target mode (compiler/bundle_refs.py), and the bundle's files that tasks
read (the plan file) are "synced" to a local `workspace.file_path`:

* `${workspace.file_path}` -> `<run dir>/files`, where the freshly compiled plan file is written
  at the same relative path it has in the bundle (`bundle_out/<job>.plan.json`). Each run reads the
  plan it was compiled with, never a stale `bundle_out/` copy.
* `${workspace.current_user.userName}` -> `$OBSRV_USER`, else the operating-system user; so the
  local MLflow experiment is `/Users/<user>/obsrv_<job>`, the name the bundle deploys for a target
  without development mode (dev adds its `[dev <user>] ` prefix on Databricks only).
* `${resources.schemas.<job>.*}` -> the spec's output catalog and schema (the variables' defaults),
  `${resources.registered_models.<job>.name}` -> the job name.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

from obsrv.compiler.bundle_refs import User, normalize_string, resolve

BUNDLE_NAME = "obsrv"


def local_user() -> User:
    name = os.environ.get("OBSRV_USER") or getpass.getuser() or "local"
    return User(user_name=name, short_name=normalize_string(name.split("@", 1)[0]) or "local")


def deploy_job(bundle: dict[str, Any], job_key: str, files: dict[str, str], run_dir: Path) -> dict[str, Any]:
    """The compiled job with deploy-time references resolved; writes its plan file under run_dir."""
    files_dir = (run_dir / "files").resolve()
    config = {"bundle": {"name": BUNDLE_NAME}, **bundle}
    # Grants name workspace principals; nothing local enforces them, so they are not resolved.
    for schema in config.get("resources", {}).get("schemas", {}).values():
        schema.pop("grants", None)
    resolved = resolve(config, None, local_user(), file_path=files_dir.as_posix())
    job = resolved["resources"]["jobs"][job_key]
    plans = {name: text for name, text in files.items() if name.endswith(".plan.json")}
    for path in _plan_paths(job):
        target = Path(path)
        if files_dir not in target.parents or target.name not in plans:
            raise ValueError(f"the compiled job reads {path}, which is not a compiled plan file under {files_dir}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(plans[target.name], encoding="utf-8")
    return job


def _plan_paths(job: dict[str, Any]) -> set[str]:
    paths: set[str] = set()
    for task in job.get("tasks", []):
        argv = task.get("python_wheel_task", {}).get("parameters", [])
        paths.update(argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--plan")
        plan = task.get("notebook_task", {}).get("base_parameters", {}).get("plan")
        if plan:
            paths.add(plan)
    return paths
