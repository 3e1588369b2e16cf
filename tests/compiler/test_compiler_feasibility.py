"""Task-level constraints that used to surface only at run time are compile diagnostics.

Each case is a TaskError (or a Databricks API error) that a job would hit from its spec values
alone, minutes into a run; `obsrv validate` now reports it with a code, a location and a fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from obsrv.compiler.api import compile_file
from obsrv.compiler.checks import MAX_JOB_TASKS, MIN_STACK_BLEND_FOLDS, check
from obsrv.compiler.diagnostics import Diagnostic
from obsrv.compiler.yaml_loader import load_text

BASE = """\
obsrv:
  context:
    name: feasible
    timeout: 2 hours
    metric:
      classification: [auc]
    folds: 5
    holdout: 0.2
    source:
      catalog: main
      schema: s
      table: t
      target: y
      id_column: customer_id
      weight_column: w
  job:
    - task: stack_top_any
"""


def diagnostics_of(text: str) -> list[Diagnostic]:
    _, found = check(load_text(text, "spec.yaml"))
    return found


def only(text: str, code: str) -> Diagnostic:
    found = [d for d in diagnostics_of(text) if d.code == code]
    assert len(found) == 1, diagnostics_of(text)
    return found[0]


def test_the_base_spec_is_clean() -> None:
    assert diagnostics_of(BASE) == []


def test_more_than_the_jobs_task_limit_is_an_error() -> None:
    # prepare + 8 base models + evaluate + cleanup + 990 user tasks (BASE has one) = 1001 tasks
    tasks = "".join(f"    - {{task: vote_mix, id: v{i}}}\n" for i in range(MAX_JOB_TASKS - 11))
    d = only(BASE + tasks, "OBS302")
    assert d.is_error and "1001 tasks" in d.message and "at most 1000" in d.message
    assert d.line == 16 and "at most 989 tasks each" in (d.fix or "")
    at_limit = "".join(f"    - {{task: vote_mix, id: v{i}}}\n" for i in range(MAX_JOB_TASKS - 11 - 1))  # 1000 tasks
    assert not any(d.code == "OBS302" for d in diagnostics_of(BASE + at_limit))


@pytest.mark.parametrize("folds", [2])
def test_stack_blend_with_fewer_than_3_folds_is_an_error(folds: int) -> None:
    text = BASE.replace("folds: 5", f"folds: {folds}") + "    - task: stack_blend\n"
    d = only(text, "OBS210")
    assert d.is_error and (d.line, d.column) == (18, 13) and f"`context.folds` is {folds}" in d.message
    assert f"context.folds: {MIN_STACK_BLEND_FOLDS}" in (d.fix or "")
    assert not any(x.code == "OBS210" for x in diagnostics_of(BASE.replace("folds: 5", "folds: 3") + "    - task: stack_blend\n"))


@pytest.mark.parametrize(
    ("task", "column", "role"),
    [
        ("route_feature", "customer_id", "id_column"),
        ("route_feature", "W", "weight_column"),
        ("route_external", "w", "weight_column"),
    ],
)
def test_routing_on_a_special_column_is_an_error(task: str, column: str, role: str) -> None:
    block = (
        f"      route: {{feature: {{column: {column}}}}}\n"
        if task == "route_feature"
        else f"      route: {{external: {{table: routes, key: {column}, column: segment}}}}\n"
    )
    d = only(BASE + f"    - task: {task}\n" + block, "OBS209")
    assert d.is_error and f"source's {role}" in d.message and d.line == 19


def test_route_external_may_join_on_the_id_column_but_not_the_target() -> None:
    external = "    - task: route_external\n      route: {{external: {{table: routes, key: {key}, column: segment}}}}\n"
    assert not any(d.code == "OBS209" for d in diagnostics_of(BASE + external.format(key="customer_id")))
    d = only(BASE + external.format(key="Y"), "OBS209")
    assert "target column" in d.message


def test_a_sample_smaller_than_the_folds_is_an_error() -> None:
    text = BASE.replace("    folds: 5\n", "    folds: 5\n    sample: {size: 5}\n")
    d = only(text, "OBS303")
    # 5 rows, 1 held out: 4 training rows for 5 folds (prepare: "Only 4 training rows remain")
    assert d.is_error and "at most 4 training rows after the 0.2 holdout" in d.message
    assert "at least 6" in (d.fix or "")
    assert (d.line, d.column) == (8, 20)
    fixed = BASE.replace("    folds: 5\n", "    folds: 5\n    sample: {size: 6}\n")
    assert not any(x.code == "OBS303" for x in diagnostics_of(fixed))


def test_a_sample_that_leaves_a_class_under_the_folds_is_a_warning() -> None:
    text = BASE.replace("    folds: 5\n", "    folds: 5\n    sample: {size: 10}\n")
    d = only(text, "OBS404")
    assert d.severity == "warning" and "at most 4" in d.message and "at least 12" in (d.fix or "")
    assert only(text, "OBS406").severity == "warning"  # and 2 holdout rows cannot rank models
    regression = text.replace("classification: [auc]", "regression: [rmse]")
    assert not any(x.code == "OBS404" for x in diagnostics_of(regression))
    big = BASE.replace("    folds: 5\n", "    folds: 5\n    sample: {size: 12}\n")
    assert not any(x.code == "OBS404" for x in diagnostics_of(big))


def test_a_holdout_too_small_to_rank_models_is_a_warning() -> None:
    """The probe's case: a 10-row sample with folds 5 registered a champion from a 2-row holdout."""
    text = BASE.replace("    folds: 5\n", "    folds: 5\n    sample: {size: 10}\n")
    d = only(text, "OBS406")
    assert d.severity == "warning" and "leaves 2 holdout rows" in d.message and "at least 100" in (d.fix or "")
    enough = BASE.replace("    folds: 5\n", "    folds: 5\n    sample: {size: 500}\n")  # 100 holdout rows
    assert not any(x.code == "OBS406" for x in diagnostics_of(enough))
    no_holdout = text.replace("holdout: 0.2", "holdout: 0")
    assert "10 training rows (out-of-fold" in only(no_holdout, "OBS406").message


def test_a_warning_does_not_stop_compile(tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(BASE.replace("    folds: 5\n", "    folds: 5\n    sample: {size: 10}\n"))
    result = compile_file(tmp_path / "spec.yaml", root=tmp_path, verify=False)
    assert sorted(w.code for w in result.warnings) == ["OBS404", "OBS406"]
