"""The `cleanup` stage keeps the output schema bounded over repeated runs (context.keep_runs)."""

from __future__ import annotations

import pytest

from obsrv.service_tasks.stages.cleanup import plan_cleanup
from obsrv.service_tasks.entry import run_stage

from support.runtime_helpers import SOURCE, Job, context_for, make_job

pytestmark = pytest.mark.slow  # five in-process runs of a job


def _names(run: str, evaluated: bool = True) -> list[str]:
    names = [f"t_prepared_{run}_prepare", f"t_meta_{run}_prepare", f"t_oof_{run}_base_linear",
             f"t_holdout_{run}_base_linear", f"t_models_{run}_base_linear", f"t_clustered_{run}_route_a"]
    return names + ([f"t_leaderboard_{run}"] if evaluated else [])


def test_plan_keeps_recent_leaderboards_the_champion_baseline_and_unfinished_runs() -> None:
    names = _names("10") + _names("11") + _names("12", evaluated=False) + _names("13") + ["t", "other_x_13_y"]
    plan = plan_cleanup("t", "13", names, keep_runs=2)
    assert plan.runs == ["10", "11", "12", "13"] and plan.champion_run == "13"
    kept = set(plan.keep)
    # the current run keeps everything until the next run's cleanup
    assert set(_names("13")) <= kept
    # run 12 is recent and unfinished: everything kept, so it can still be resumed
    assert set(_names("12", evaluated=False)) <= kept
    # runs 10 and 11 are older than keep_runs: every table dropped
    assert not any(n.endswith(("_10", "_11")) or "_10_" in n or "_11_" in n for n in kept)
    # tables that are not this job's run tables are never touched
    assert "t" not in plan.drop and "other_x_13_y" not in plan.drop and "t" not in kept
    # a kind ending in digits cannot be read as another run's table
    assert plan_cleanup("t", "2", ["t_oof_12_1_base", "t_leaderboard_2"], keep_runs=1).drop == []


def test_plan_keeps_only_the_champion_baseline_of_an_older_champion_run() -> None:
    names = _names("10") + _names("11") + _names("12")
    plan = plan_cleanup("t", "12", names, keep_runs=2)
    assert plan.champion_run == "12"
    assert set(plan.drop) == set(_names("10")) | (set(_names("11")) - {"t_leaderboard_11"})


def test_plan_without_a_finished_current_run_keeps_the_previous_champion() -> None:
    names = _names("10") + _names("11", evaluated=False)
    plan = plan_cleanup("t", "11", names, keep_runs=1)
    assert plan.champion_run == "10"
    assert {"t_leaderboard_10", "t_prepared_10_prepare", "t_meta_10_prepare"} <= set(plan.keep)
    assert "t_oof_10_base_linear" in plan.drop and set(_names("11", evaluated=False)) <= set(plan.keep)
    with pytest.raises(ValueError):
        plan_cleanup("t", "11", names, keep_runs=0)


@pytest.mark.slow  # five in-process runs of four stages: ~20 s on the shared 2-core machine
def test_table_count_stays_bounded_over_repeated_runs(tmp_path) -> None:
    """Five in-process runs with keep_runs 2; the third stops before evaluate (kept for a resume)."""
    from support.runtime_helpers import synthetic

    keep = 2
    first = make_job(tmp_path, "binary", df=synthetic("binary", n=120), mlflow=False, keep_runs=keep)
    counts = []
    for i in range(5):
        job = Job(tmp_path, first.context, workflow_id=str(100 + i), mlflow=False)
        job.prepare()
        job.base("linear")
        if i != 2:
            job.evaluate(["base_linear"])
        run_stage(job.request("cleanup", "cleanup"), job.ctx(job.request("cleanup", "cleanup")))
        counts.append(len(job.store.list_tables("main", "lab")))
    # source + the current run's 6 tables (5 without evaluate) +
    # 100: - | 101: lb100 | 102: champion 101's lb + sample (3) | 103: unfinished 102 (5) | 104: lb103
    assert counts == [7, 8, 9, 12, 8], counts
    tables = set(first.store.list_tables("main", "lab"))
    assert SOURCE.table in tables  # the source table is not a run table
    assert {"training_data_leaderboard_103", "training_data_oof_104_base_linear"} <= tables
    assert not any(f"_{run}" in t for t in tables for run in (100, 101, 102)), tables


def test_keep_runs_is_validated() -> None:
    from obsrv.compiler.spec import Context

    assert Context.model_validate(context_for("binary")).keep_runs == 5
    with pytest.raises(ValueError, match="keep_runs"):
        Context.model_validate(context_for("binary", keep_runs=0))
