"""Fixtures for the compiler tests.

Golden files: `OBSRV_UPDATE_GOLDEN=1 pytest tests/compiler` (or `pytest tests/compiler
--update-golden`) rewrites tests/compiler/golden/ from the current compiler; review the diff.
The official bundle schema lives in ../shared/reference; tests that need it skip when it is absent.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_REFERENCE = REPO.parent / "shared" / "reference"
VALIDATOR_SCRIPT = SHARED_REFERENCE / "validate_bundle_schema.py"


def pytest_addoption(parser: pytest.Parser) -> None:
    # Only seen when pytest starts from this folder (`pytest tests/compiler ...`); the environment
    # variable works from anywhere.
    try:
        parser.addoption("--update-golden", action="store_true", help="rewrite tests/compiler/golden/")
    except ValueError:  # already registered by another conftest
        pass


@pytest.fixture(scope="session")
def update_golden(request: pytest.FixtureRequest) -> bool:
    from_option = bool(request.config.getoption("--update-golden", default=False))
    return from_option or os.environ.get("OBSRV_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def _load_validator_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("validate_bundle_schema", VALIDATOR_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def bundle_schema() -> Any:
    """`problems(doc) -> list[str]` against the official bundle JSON schema (v1.13)."""
    if not VALIDATOR_SCRIPT.is_file():
        pytest.skip(f"official bundle schema not available: {VALIDATOR_SCRIPT} is absent (no ../shared checkout)")
    module = _load_validator_module()
    validator = module.load_validator()
    return lambda doc: module.problems(validator, doc)
