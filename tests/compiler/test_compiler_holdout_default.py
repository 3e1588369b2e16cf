"""An unwritten `holdout` is 0 (every row trains), except with time folds, where it is
`TIME_FOLDS_HOLDOUT`: with time folds the out-of-fold predictions can use the future, so a holdout
is the only forward-looking estimate (README, Known limitations). The default of 0 comes from the
A/B in benchmarks/results/holdout_ab.md (holdout 0 better on 8 of 8 splits)."""

from __future__ import annotations

from pathlib import Path

from obsrv.compiler.checks import check
from obsrv.compiler.plan import build_plan
from obsrv.compiler.spec import TIME_FOLDS_HOLDOUT, Context, SpecFile
from obsrv.compiler.yaml_loader import load_text

REPO = Path(__file__).resolve().parents[2]
SEED = (REPO / "examples" / "credit_risk.yaml").read_text()


def _context(text: str) -> tuple[SpecFile, Context]:
    spec, diagnostics = check(load_text(text, "spec.yaml"))
    assert [d for d in diagnostics if d.is_error] == [], diagnostics
    assert spec is not None
    return spec, spec.obsrv.context


def test_the_seed_without_holdout_trains_on_every_row() -> None:
    assert "holdout" not in SEED
    spec, ctx = _context(SEED)
    assert ctx.holdout == 0.0
    plan = build_plan(spec, source="spec.yaml")
    assert plan.context is not None and plan.context["holdout"] == 0.0  # what the tasks read
    assert "out-of-fold (no holdout)" in plan.task("evaluate").description


def test_time_folds_without_holdout_keep_one() -> None:
    text = SEED.replace("    fold_type: [stratified]\n", "    fold_type: time\n").replace(
        "      target: default_label\n", "      target: default_label\n      time_column: seniority\n")
    assert "fold_type: time" in text and "time_column" in text
    _, ctx = _context(text)
    assert ctx.fold_type == "time" and ctx.holdout == TIME_FOLDS_HOLDOUT


def test_a_written_holdout_wins_whatever_the_fold_type() -> None:
    _, ctx = _context(SEED.replace("    fold_type: [stratified]\n", "    fold_type: [stratified]\n    holdout: 0.25\n"))
    assert ctx.holdout == 0.25
    text = SEED.replace("    fold_type: [stratified]\n", "    fold_type: time\n    holdout: 0\n").replace(
        "      target: default_label\n", "      target: default_label\n      time_column: seniority\n")
    _, ctx = _context(text)
    assert ctx.holdout == 0.0


def test_the_schema_documents_the_default_by_fold_type() -> None:
    prop = SpecFile.model_json_schema(by_alias=True)["$defs"]["Context"]["properties"]["holdout"]
    assert "default" not in prop and "0.2 with `fold_type: time`" in prop["description"]
