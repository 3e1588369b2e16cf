"""The libraries every serverless environment of a compiled job pins, from one list.

Models trained on a GPU task are pickled (cloudpickle, inside MLflow pyfunc models) and loaded by
CPU tasks: the combiners, evaluate, and serving. Unpickling across versions of numpy, scikit-learn
or a boosting library can fail or silently change predictions, so the `cpu` and `gpu` environments
must resolve exactly the same versions. Both get these pins in `environments[].spec.dependencies`
next to the obsrv wheel (whose own requirements are ranges, compatible with every pin here;
tests/compiler/test_environments.py checks that).

Change a pin here only; `obsrv compile` writes it into every job and the golden files show it.
"""

from __future__ import annotations

# name -> exact version: released versions with CPython 3.12 wheels (serverless environment
# versions 4 and 5 run Python 3.12: databricks/cli libs/template/templates/.../versions.tmpl).
PINNED_LIBRARIES: dict[str, str] = {
    "catboost": "1.2.10",
    "cloudpickle": "3.1.3",
    "lightgbm": "4.7.0",
    "numpy": "2.4.6",
    "pandas": "3.1.1",
    "scikit-learn": "1.9.1",
    "xgboost": "3.2.0",
}


def pinned_requirements() -> list[str]:
    """`name==version` requirement strings, sorted by name (deterministic output)."""
    return [f"{name}=={version}" for name, version in sorted(PINNED_LIBRARIES.items())]
