"""What every page shares: the workdir, the mode (local or workspace) and the current spec.

Nothing here is the app's own state: the spec is the file the Edit page last saved under
.obsrv/app/specs/, the runs are the runner's files or the Jobs API, so a refresh loses nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import streamlit as st

from obsrv.app.launch import Checked, check_text, spec_file


def workdir() -> Path:
    argv = sys.argv[1:]
    if "--workdir" in argv[:-1]:
        return Path(argv[argv.index("--workdir") + 1]).resolve()
    return Path.cwd().resolve()


def examples() -> dict[str, Path]:
    """The example specs to start from: the repository's examples/ (an editable install)."""
    for folder in (Path(__file__).resolve().parents[2] / "examples", workdir() / "examples"):
        if folder.is_dir():
            return {p.stem: p for p in sorted(folder.glob("*.yaml"))}
    return {}


def saved_spec() -> Path | None:
    """The spec the Edit page saved last (newest file), if any."""
    folder = spec_file(workdir(), "x").parent
    files = sorted(folder.glob("*.yaml"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return files[-1] if files else None


def current() -> Checked | None:
    """The current spec, checked by the compiler (cached per file content)."""
    path = saved_spec()
    if path is None:
        found = examples()
        if not found:
            return None
        name, example = next(iter(found.items()))
        return check_text(example.read_text(encoding="utf-8"), spec_file(workdir(), name))
    return _checked(path.read_text(encoding="utf-8"), str(path))


def _checked(text: str, path: str) -> Checked:
    return check_text(text, Path(path))


def mode() -> str:
    return str(st.session_state.get("mode", "local"))


def jobs_api() -> Any:
    """The Jobs API of the workspace (databricks-sdk unified auth: a Databricks App's own service
    principal, or the profile typed in the sidebar). Tests put a stand-in in session_state."""
    if "jobs_api" in st.session_state:
        return st.session_state["jobs_api"]
    from obsrv.app.run_status import workspace_client

    return workspace_client(st.session_state.get("profile") or None).jobs


def workspace_api() -> Any:
    if "workspace_api" in st.session_state:
        return st.session_state["workspace_api"]
    from obsrv.app.run_status import workspace_client

    return workspace_client(st.session_state.get("profile") or None).workspace


def statements_api() -> Any:
    """The SQL Statement Execution API (`WorkspaceClient().statement_execution`)."""
    if "statements_api" in st.session_state:
        return st.session_state["statements_api"]
    from obsrv.app.run_status import workspace_client

    return workspace_client(st.session_state.get("profile") or None).statement_execution


def registry() -> Any:
    """None: results.workspace_champion opens the UC registry itself. Tests put a stand-in here."""
    return st.session_state.get("registry")
