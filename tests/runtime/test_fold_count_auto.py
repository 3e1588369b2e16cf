"""`context.folds: auto` (the default): prepare picks the fold count from the training rows.

The curve is AutoGluon 1.6's (compiler/spec.py, AUTO_FOLDS_CURVE); a class or a group set smaller
than the curve's count caps it, where a written number stops prepare with a clear error instead.
"""

from __future__ import annotations

import numpy as np
import pytest

from obsrv.compiler.checks import check
from obsrv.compiler.spec import AUTO_FOLDS, AUTO_FOLDS_LARGE_ROWS, Context
from obsrv.compiler.yaml_loader import load_text
from obsrv.service_tasks.errors import TaskError
from obsrv.service_tasks.stages.prepare import FOLD, prepare_frame

from support.runtime_helpers import context_for, synthetic


def _auto(problem: str, **overrides: object) -> Context:
    ctx = context_for(problem, **overrides)
    ctx.pop("folds")  # unwritten: the default
    return Context.model_validate(ctx)


@pytest.mark.parametrize(
    ("n_train", "expected"),
    [(2, 2), (4, 4), (30, 5), (59, 5), (60, 6), (69, 6), (70, 7), (79, 7), (80, 8), (5_000, 8),
     (AUTO_FOLDS_LARGE_ROWS, 8), (AUTO_FOLDS_LARGE_ROWS + 1, 5)],
)
def test_auto_follows_the_size_curve(n_train: int, expected: int) -> None:
    assert _auto("regression").fold_count(n_train) == expected


def test_auto_is_capped_by_the_smallest_part_but_never_below_two() -> None:
    ctx = _auto("binary")
    assert ctx.folds == AUTO_FOLDS
    assert ctx.fold_count(1_000, smallest_part=6) == 6
    assert ctx.fold_count(1_000, smallest_part=1) == 2


def test_a_written_number_is_kept_whatever_the_rows() -> None:
    ctx = Context.model_validate(context_for("binary", folds=4))
    assert ctx.fold_count(10) == 4 and ctx.fold_count(10**6, smallest_part=2) == 4


def test_prepare_assigns_eight_folds_to_a_small_table_and_says_so() -> None:
    lines: list[str] = []
    prepared, meta = prepare_frame(synthetic("binary"), _auto("binary", holdout=0.0), log=lines.append)
    assert meta["n_folds"] == 8
    assert sorted(prepared[FOLD].unique()) == list(range(8))
    assert any(line == "context.folds auto: 8 folds for 400 training rows" for line in lines)


def test_prepare_caps_auto_by_the_rarest_class_where_a_written_count_stops() -> None:
    df = synthetic("multiclass")
    rare = df.index[df["label"] == df["label"].iloc[0]][5:]
    df = df.drop(index=rare).reset_index(drop=True)  # that class keeps 5 rows
    lines: list[str] = []
    prepared, meta = prepare_frame(df, _auto("multiclass", holdout=0.0), log=lines.append)
    assert meta["n_folds"] == 5
    # each fold holds one row of the rare class: the plan stays stratified
    rare_rows = prepared.loc[prepared["label"] == df["label"].iloc[0], FOLD]
    assert sorted(rare_rows) == [0, 1, 2, 3, 4]
    assert any("5 folds" in line and "not 8" in line for line in lines)
    with pytest.raises(TaskError, match="fewer training rows than the 8 folds"):
        prepare_frame(df, Context.model_validate(context_for("multiclass", holdout=0.0, folds=8)), log=lambda m: None)


def test_prepare_caps_auto_by_the_groups() -> None:
    df = synthetic("regression")
    df["store"] = np.arange(len(df)) % 6
    prepared, meta = prepare_frame(
        df, _auto("regression", holdout=0.0, fold_type="group", source={"group_column": "store"}), log=lambda m: None
    )
    assert meta["n_folds"] == 6
    train = prepared.loc[prepared[FOLD] >= 0]
    assert (train.groupby("store")[FOLD].nunique() == 1).all()


def test_auto_counts_the_rows_left_after_the_holdout() -> None:
    df = synthetic("regression", n=100)
    _, meta = prepare_frame(df, _auto("regression", holdout=0.3), log=lambda m: None)
    assert meta["n_train"] == 70 and meta["n_folds"] == 7


SEED = """\
obsrv:
  context:
    name: folds_job
    metric: {classification: [auc]}
    FOLDS
    sample: {size: SIZE}
    source: {catalog: main, schema: s, table: t, target: y}
  job:
    - task: vote_top_alg
"""


def _diagnostics(folds_line: str, size: int = 5_000) -> list:
    _, diagnostics = check(load_text(SEED.replace("FOLDS", folds_line).replace("SIZE", str(size)), "f.yaml"))
    return diagnostics


@pytest.mark.parametrize(
    ("value", "code", "words"),
    [("1", "OBS105", "at least 2"), ("21", "OBS105", "at most 20"), ("many", "OBS108", "`auto`"),
     ("true", "OBS108", "`auto`"), ("4.5", "OBS108", "`auto`")],
)
def test_a_bad_folds_value_gets_one_error_naming_both_forms(value: str, code: str, words: str) -> None:
    errors = [d for d in _diagnostics(f"folds: {value}") if d.is_error]
    assert [d.code for d in errors] == [code]
    assert words in errors[0].message + (errors[0].fix or "")
    assert (errors[0].line, errors[0].column) == (5, 12)


def test_auto_needs_no_compile_time_fold_warning_on_a_small_sample() -> None:
    """A written count above the rarest class's possible rows warns (OBS404); `auto` lowers itself."""
    assert "OBS404" in [d.code for d in _diagnostics("folds: 8", size=12)]
    assert not {"OBS303", "OBS404"} & {d.code for d in _diagnostics("folds: auto", size=12)}
    assert "OBS303" in [d.code for d in _diagnostics("folds: auto", size=1)]


def test_the_schema_offers_a_number_or_auto() -> None:
    from obsrv.compiler.spec import SpecFile

    prop = SpecFile.model_json_schema(by_alias=True)["$defs"]["Context"]["properties"]["folds"]
    assert prop["default"] == "auto"
    assert {"const": "auto"} in prop["anyOf"]
    assert {"type": "integer", "minimum": 2, "maximum": 20} in prop["anyOf"]


def test_the_seed_example_takes_auto_and_still_validates() -> None:
    """The seed's example writes no folds: it takes `auto` and still compiles unchanged."""
    from pathlib import Path

    seed = Path(__file__).resolve().parents[2] / "examples" / "credit_risk.yaml"
    spec, diagnostics = check(load_text(seed.read_text(), str(seed)))
    assert spec is not None and spec.obsrv.context.folds == AUTO_FOLDS
    assert not [d for d in diagnostics if d.is_error]
