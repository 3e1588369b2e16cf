"""Search budgets and task timeouts planned from the job's critical path (compiler/timing.py).

Each serverless task pays a start-up (compute, then its environment's install) before its own
work, so a job's wall time is the longest chain of start-up + work + search over its DAG. The
budgets are planned so that chain takes PLANNED_SHARE of the job timeout; a timeout that cannot
hold it even with minimum searches is warned about at compile time (OBS403).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from obsrv.compiler import spec as S
from obsrv.compiler.api import compile_file, load_spec
from obsrv.compiler.plan import JobPlan, build_plan, plan_file_name, plan_document
from obsrv.compiler.timing import (
    MIN_SEARCH_SECONDS,
    MIN_TASK_TIMEOUT_SECONDS,
    PLANNED_SHARE,
    STARTUP_ALLOWANCE_SECONDS,
    WORK_ALLOWANCE_SECONDS,
    Stage,
    plan_timing,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def plan_for(context: dict[str, Any], job: list[dict[str, Any]]) -> JobPlan:
    base = {
        "name": "p",
        "metric": {"classification": ["auc"]},
        "source": {"catalog": "main", "schema": "s", "table": "t", "target": "y"},
    }
    spec = S.SpecFile.model_validate({"obsrv": {"context": {**base, **context}, "job": job}})
    return build_plan(spec, source="spec.yaml")


def test_the_seed_examples_timeout_is_warned_about(tmp_path: Path) -> None:
    """The seed's 15 minutes cannot hold prepare, a GPU base model, route_cluster on GPU, the stack and
    evaluate, then cleanup: six serverless start-ups alone take longer."""
    spec = tmp_path / "credit_risk.yaml"
    spec.write_text((REPO / "examples" / "credit_risk.yaml").read_text())
    (warning,) = [w for w in compile_file(spec, root=tmp_path, verify=False).warnings if w.code == "OBS403"]
    cpu, gpu = STARTUP_ALLOWANCE_SECONDS["cpu"], STARTUP_ALLOWANCE_SECONDS["gpu"]
    work = WORK_ALLOWANCE_SECONDS
    need = (
        cpu + work["prepare"]
        + 2 * (gpu + work["search"] + MIN_SEARCH_SECONDS)  # base_xgboost, route_cluster
        + cpu + work["combiner"]
        + cpu + work["evaluate"]
        + cpu + work["combiner"]  # cleanup (run_if ALL_DONE), after evaluate
    )
    assert need == 2040
    assert warning.severity == "warning" and (warning.line, warning.column) == (6, 14)
    assert "the job timeout (900 s) cannot hold the critical path" in warning.message
    assert "prepare -> base_xgboost -> route_cluster -> stack_top_any -> evaluate" in warning.message
    assert f"at least {need} s" in warning.message and "6 serverless start-ups" in warning.message
    minutes = -(-need // int(PLANNED_SHARE * 60))  # ceil(need / 0.8 / 60)
    assert f"`context.timeout: {minutes} minutes`" in (warning.fix or "")
    # the plan cannot hold, so only the job timeout bounds each task (the allowances may be pessimistic)
    plan = build_plan(load_spec(spec)[0], source="credit_risk.yaml")
    assert {t.timeout_seconds for t in plan.tasks if t.key != "cleanup"} == {900}
    assert plan.task("cleanup").timeout_seconds == 300  # cleanup keeps its own short timeout
    assert {t.budget_seconds for t in plan.tasks if t.stage in ("base", "route_cluster")} == {MIN_SEARCH_SECONDS}
    # ... and with that timeout the warning is gone
    spec.write_text(spec.read_text().replace("timeout: 15 minutes", f"timeout: {minutes} minutes"))
    assert not any(w.code == "OBS403" for w in compile_file(spec, root=tmp_path, verify=False).warnings)


def test_budgets_fill_the_planned_share_of_the_critical_path() -> None:
    """CPU only, one combiner: prepare -> base -> vote_mix -> evaluate -> cleanup; all of the search
    time goes to the base models (3 parts per weight unit)."""
    plan = plan_for({"timeout": 3600}, [{"task": "vote_mix"}])
    timing = plan.timing
    assert timing is not None and timing.fits
    fixed = 5 * STARTUP_ALLOWANCE_SECONDS["cpu"] + sum(
        WORK_ALLOWANCE_SECONDS[c] for c in ("prepare", "search", "combiner", "evaluate", "combiner")
    )
    unit = int((PLANNED_SHARE * 3600 - fixed) // 3)
    assert plan.task("base_knn").budget_seconds == 3 * unit == 1410
    assert timing.path_seconds == fixed + 3 * unit <= PLANNED_SHARE * 3600
    assert timing.critical_path == ("prepare", "base_linear", "vote_mix", "evaluate", "cleanup")
    assert {plan.task(k).budget_seconds for k in ("prepare", "vote_mix", "evaluate")} == {0}
    # timeout = own planned time + its slack on the plan (here the job's 20 %)
    slack = 3600 - timing.path_seconds
    base_need = STARTUP_ALLOWANCE_SECONDS["cpu"] + WORK_ALLOWANCE_SECONDS["search"] + 3 * unit
    assert plan.task("base_knn").timeout_seconds == base_need + slack
    assert plan.task("evaluate").timeout_seconds == (
        STARTUP_ALLOWANCE_SECONDS["cpu"] + WORK_ALLOWANCE_SECONDS["evaluate"] + slack
    )


def test_a_longer_chain_gets_smaller_budgets_and_a_longer_timeout_bigger_ones() -> None:
    short = plan_for({"timeout": 7200}, [{"task": "boost"}])
    chain = plan_for({"timeout": 7200}, [{"task": "boost"}, {"task": "vote_mix", "depends_on": [{"task": "boost"}]}])
    longer = plan_for({"timeout": 14400}, [{"task": "boost"}])
    assert chain.task("base_linear").budget_seconds < short.task("base_linear").budget_seconds
    assert longer.task("base_linear").budget_seconds > short.task("base_linear").budget_seconds
    # boost gets 2 parts for the base models' 3
    b, s = short.task("boost").budget_seconds, short.task("base_linear").budget_seconds
    assert 2 * s == 3 * b


def test_a_task_timeout_of_the_user_bounds_its_budget_and_wins() -> None:
    plan = plan_for({"timeout": "4h"}, [{"task": "boost", "timeout": "10 minutes"}])
    boost = plan.task("boost")
    assert boost.timeout_seconds == 600
    assert boost.budget_seconds == 600 - STARTUP_ALLOWANCE_SECONDS["cpu"] - WORK_ALLOWANCE_SECONDS["search"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_planned_task_fits_its_timeout_and_the_job(path: Path) -> None:
    spec, _, _ = load_spec(path)
    plan = build_plan(spec, source=path.name)
    timing = plan.timing
    assert timing is not None
    for task in plan.tasks:
        assert 0 < task.timeout_seconds <= plan.timeout_seconds
        assert task.timeout_seconds >= min(plan.timeout_seconds, MIN_TASK_TIMEOUT_SECONDS)
        searches = task.stage in ("base", "boost") or task.stage.startswith("route_")
        assert (task.budget_seconds >= MIN_SEARCH_SECONDS) if searches else task.budget_seconds == 0
        assert json.loads(task.spec_json)["budget_seconds"] == task.budget_seconds
    if timing.fits:
        assert timing.path_seconds <= PLANNED_SHARE * plan.timeout_seconds
        for task in plan.tasks:
            if task.key not in {t.task_id for t in spec.obsrv.job if t.timeout is not None}:
                need = timing.timeouts[task.key]
                assert need >= task.budget_seconds + STARTUP_ALLOWANCE_SECONDS[task.environment]


def test_the_runtime_reads_the_budget_the_compiler_planned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One number on both sides: each compiled task's argv, parsed by obsrv-task's own parser, gives
    the plan's budget; OBSRV_TASK_BUDGET_SECONDS (obsrv run --budget) only caps it."""
    request = pytest.importorskip("obsrv.service_tasks.task_parameters")
    monkeypatch.delenv("OBSRV_TASK_BUDGET_SECONDS", raising=False)
    spec, _, _ = load_spec(REPO / "examples" / "housing_regression.yaml")
    plan = build_plan(spec, source="housing_regression.yaml")

    plan_dir = tmp_path / "bundle_out"
    plan_dir.mkdir()
    (plan_dir / plan_file_name(plan.key)).write_text(plan_document(plan))

    def parsed(task: Any) -> float:
        argv = [a.replace("{{job.run_id}}", "1").replace("{{job.parameters.catalog}}", "main")
                .replace("{{job.parameters.schema}}", "s").replace("${workspace.file_path}", str(tmp_path))
                for a in task.argv]
        return request.parse_request(argv).budget_seconds

    for task in plan.tasks:
        assert parsed(task) == task.budget_seconds
    assert plan.task("base_linear").budget_seconds > 60
    monkeypatch.setenv("OBSRV_TASK_BUDGET_SECONDS", "60")
    assert parsed(plan.task("base_linear")) == 60.0


def test_the_planner_reports_the_longest_chain_deterministically() -> None:
    stages = [
        Stage("prepare", "prepare", "cpu", ()),
        Stage("a", "base", "cpu", ("prepare",)),
        Stage("b", "base", "gpu", ("prepare",)),
        Stage("c", "vote_mix", "cpu", ("a", "b")),
    ]
    timing = plan_timing(stages, 3600)
    assert timing.critical_path == ("prepare", "b", "c")  # the GPU start-up is the longer one
    assert timing.budgets["a"] == timing.budgets["b"]  # one budget per weight, whatever the slack
    # each may take the window between prepare's planned end and c's planned start
    window = 3600 - 300 - 300
    assert timing.timeouts["a"] == timing.timeouts["b"] == window


def test_a_task_timeout_shorter_than_its_start_up_is_warned_about(tmp_path: Path) -> None:
    text = (REPO / "examples" / "housing_regression.yaml").read_text().replace(
        "    - task: boost\n      timeout: 30 minutes", "    - task: boost\n      timeout: 2 minutes"
    )
    (tmp_path / "spec.yaml").write_text(text)
    (warning,) = [w for w in compile_file(tmp_path / "spec.yaml", root=tmp_path, verify=False).warnings
                  if w.code == "OBS405"]
    need = STARTUP_ALLOWANCE_SECONDS["cpu"] + WORK_ALLOWANCE_SECONDS["search"] + MIN_SEARCH_SECONDS
    assert warning.severity == "warning" and warning.line == 24
    assert "(120 s)" in warning.message and f"({need} s:" in warning.message
    assert f"at least {need} s" in (warning.fix or "")
