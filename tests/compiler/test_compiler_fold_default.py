"""An unwritten `fold_type` follows the problem: stratified for classification, kfold for regression.

A regression spec that never wrote `fold_type` must validate cleanly, not be told to change a
`stratified` default it never chose; the compiled payload and the task side (which re-validates
the same `Context`) then agree on kfold.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from obsrv.compiler.api import compile_file
from obsrv.compiler.checks import check
from obsrv.compiler.plan import build_plan
from obsrv.compiler.spec import Context
from obsrv.compiler.yaml_loader import load_text

REPO = Path(__file__).resolve().parents[2]
HOUSING = (REPO / "examples" / "housing_regression.yaml").read_text()
NO_FOLD_TYPE = HOUSING.replace("    fold_type: kfold\n", "")


def test_a_regression_spec_without_fold_type_is_valid_and_uses_kfold() -> None:
    assert "fold_type" not in NO_FOLD_TYPE
    spec, diagnostics = check(load_text(NO_FOLD_TYPE, "housing.yaml"))
    assert [d for d in diagnostics if d.is_error] == []
    assert spec is not None and spec.obsrv.context.fold_type == "kfold"
    context = build_plan(spec, source="housing.yaml").context  # written once, to the plan file
    assert context is not None and context["fold_type"] == "kfold"


def test_a_classification_spec_without_fold_type_uses_stratified() -> None:
    seed = (REPO / "examples" / "credit_risk.yaml").read_text().replace("    fold_type: [stratified]\n", "")
    spec, _ = check(load_text(seed, "seed.yaml"))
    assert spec is not None and spec.obsrv.context.fold_type == "stratified"


def test_a_written_stratified_on_regression_is_still_an_error() -> None:
    spec, diagnostics = check(load_text(HOUSING.replace("fold_type: kfold", "fold_type: stratified"), "h.yaml"))
    assert spec is None and any(d.code == "OBS109" and "kfold for regression" in (d.fix or "") for d in diagnostics)


def test_the_schema_documents_the_default_by_problem() -> None:
    from obsrv.compiler.spec import SpecFile

    prop = SpecFile.model_json_schema(by_alias=True)["$defs"]["Context"]["properties"]["fold_type"]
    assert "default" not in prop and "kfold for a regression metric" in prop["description"]


def test_the_task_side_defaults_the_same_way(tmp_path: Path) -> None:
    """prepare validates its context through the same model: a regression context without
    fold_type assigns k-fold folds (StratifiedKFold would refuse a continuous target)."""
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    from obsrv.service_tasks.stages.prepare import prepare_frame

    ctx = Context.model_validate(
        {"name": "h", "metric": {"regression": ["rmse"]}, "folds": 3, "holdout": 0.2,
         "source": {"catalog": "main", "schema": "s", "table": "t", "target": "y"}}
    )
    assert ctx.fold_type == "kfold"
    rng = np.random.default_rng(0)
    raw = pd.DataFrame({"x": rng.normal(size=60), "y": rng.normal(size=60)})
    logs: list[str] = []
    _, meta = prepare_frame(raw, ctx, log=logs.append)
    assert meta["fold_type"] == "kfold"


def test_compile_of_the_regression_spec_without_fold_type(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(NO_FOLD_TYPE)
    result = compile_file(tmp_path / "spec.yaml", root=tmp_path, verify=False)
    assert not any(w.code == "OBS109" for w in result.warnings)
