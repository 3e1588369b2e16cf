"""The layout's import rules, checked on the source (every import statement, lazy ones included).

- Code that runs inside a Databricks task (`service_tasks/` outside `local/`) never imports the
  local Workflows emulator (`service_tasks/local/`): a task must behave the same on a laptop and on
  a workspace, and the wheel's task path must not depend on laptop-only code.
- Task code takes nothing from the compiler but the spec models (`compiler/spec.py`), which both
  sides share.
- The compiler imports the task side only where the CLI registers the local `run`/`data` commands.
(Heavy imports on the compile path are checked in a real process in
`tests/compiler/test_compiler_cli.py`.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in `path`, relative imports resolved."""
    package = "obsrv." + ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((node.lineno, module))
            out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return out


def _task_modules() -> list[Path]:
    root = REPO / "service_tasks"
    return sorted(p for p in root.rglob("*.py") if "local" not in p.relative_to(root).parts[:1])


def test_the_rules_see_imports() -> None:
    """The scan is not vacuous: it finds the local runner's own imports and a lazy import."""
    found = {m for _, m in _imports(REPO / "service_tasks" / "local" / "scheduler.py")}
    assert "obsrv.service_tasks.local.launchers" in found
    lazy = {m for _, m in _imports(REPO / "compiler" / "cli.py")}
    assert "obsrv.service_tasks.local" in lazy


@pytest.mark.parametrize("path", _task_modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_task_code_never_imports_the_local_runner(path: Path) -> None:
    bad = [(line, m) for line, m in _imports(path) if m == "obsrv.service_tasks.local" or m.startswith("obsrv.service_tasks.local.")]
    assert not bad, f"{path.relative_to(REPO)} imports local-only code: {bad}"


@pytest.mark.parametrize("path", _task_modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_task_code_takes_only_the_spec_from_the_compiler(path: Path) -> None:
    bad = [(line, m) for line, m in _imports(path)
           if m.startswith("obsrv.compiler") and not m.startswith("obsrv.compiler.spec") and m != "obsrv.compiler"]
    assert not bad, f"{path.relative_to(REPO)} imports compiler internals: {bad}"


def test_the_compiler_imports_the_task_side_only_for_the_local_commands() -> None:
    allowed = {("cli.py", "obsrv.service_tasks.local"), ("cli.py", "obsrv.service_tasks.local.cli")}
    bad = [(p.name, line, m) for p in sorted((REPO / "compiler").glob("*.py")) for line, m in _imports(p)
           if m.startswith("obsrv.service_tasks") and (p.name, m) not in allowed]
    assert not bad, bad


def test_the_app_stays_outside_the_tasks_and_streamlit_stays_in_its_pages() -> None:
    """Task code never imports the app (obsrv.app: laptop and Databricks App only); the app's
    shared modules (what `obsrv status` also runs) never import streamlit: only app/ui/ does."""
    bad = [(str(p.relative_to(REPO)), line, m) for p in _task_modules() for line, m in _imports(p)
           if m == "obsrv.app" or m.startswith("obsrv.app.")]
    assert not bad, bad
    shared = sorted((REPO / "app").glob("*.py"))
    assert shared, "app/ moved: update this test"
    bad = [(p.name, line, m) for p in shared for line, m in _imports(p) if m.split(".")[0] == "streamlit"]
    assert not bad, bad
    pages = {m for p in (REPO / "app" / "ui").glob("*.py") for _, m in _imports(p)}
    assert "streamlit" in pages  # the scan sees the pages' imports
