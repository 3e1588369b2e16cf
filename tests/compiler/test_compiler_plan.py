"""The plan (IR): stage fan-out, dependencies, CPU/GPU placement, timeouts and retries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from obsrv.compiler import spec as S
from obsrv.compiler.api import compile_file
from obsrv.compiler.mermaid import mermaid
from obsrv.compiler.plan import (
    plan_document,
    MIN_TASK_TIMEOUT_SECONDS,
    OBSRV_TAG_VALUES,
    RETRY_INTERVAL_MILLIS,
    JobPlan,
    build_plan,
)

REPO = Path(__file__).resolve().parents[2]


def plan_for(context: dict[str, Any], job: list[dict[str, Any]]) -> JobPlan:
    base_context = {
        "name": "p",
        "metric": {"classification": ["auc"]},
        "source": {"catalog": "main", "schema": "s", "table": "t", "target": "y"},
    }
    spec = S.SpecFile.model_validate({"obsrv": {"context": {**base_context, **context}, "job": job}})
    return build_plan(spec, source="spec.yaml")


def test_fan_out_and_order() -> None:
    plan = plan_for({}, [{"task": "vote_mix", "depends_on": [{"task": "boost"}]}, {"task": "boost"}])
    keys = [t.key for t in plan.tasks]
    base = [f"base_{f}" for f in S.MODEL_FAMILIES]
    assert keys == ["prepare", *base, "boost", "vote_mix", "evaluate", "cleanup"]  # users in dependency order
    assert plan.task("cleanup").depends_on == ("evaluate",) and plan.task("cleanup").run_if == "ALL_DONE"
    assert plan.task("vote_mix").depends_on == (*base, "boost")
    assert plan.task("vote_mix").upstream == tuple(sorted([*base, "boost"]))
    assert plan.task("evaluate").depends_on == (*base, "boost", "vote_mix")
    assert all(plan.task(b).depends_on == ("prepare",) for b in base)


def test_cpu_only_context_keeps_everything_on_cpu() -> None:
    plan = plan_for({}, [{"task": "boost"}, {"task": "route_feature", "route": {"feature": {"column": "x"}}}])
    assert {t.environment for t in plan.tasks} == {"cpu"}
    assert plan.environments == ("cpu",)


def test_gpu_context_sends_only_gpu_capable_stages_to_gpu() -> None:
    plan = plan_for(
        {"compute": {"serverless": ["CPU", "GPU"]}},
        [
            {"task": "boost"},
            {"task": "route_cluster", "route": {"cluster": {"kmeans": {}}}},
            {"task": "stack_top_any"},
            {"id": "forced", "task": "vote_mix", "compute": "GPU"},
            {"id": "pinned", "task": "boost", "compute": "CPU"},
        ],
    )
    gpu = {t.key for t in plan.tasks if t.environment == "gpu"}
    assert gpu == {*(f"base_{f}" for f in S.GPU_FAMILIES), "boost", "route_cluster", "forced"}
    assert plan.environments == ("cpu", "gpu")
    assert plan.task("forced").min_retry_interval_millis == RETRY_INTERVAL_MILLIS["gpu"]


def test_timeouts_and_retries() -> None:
    plan = plan_for(
        {"timeout": "2h", "retries": 3},
        [{"task": "boost", "timeout": "10 minutes", "retries": 0}, {"task": "vote_mix"}],
    )
    assert plan.timeout_seconds == 7200
    # timeouts are planned from the critical path (test_compiler_timing.py); a task's own wins
    assert plan.task("prepare").retry_on_timeout is False and plan.task("base_knn").retry_on_timeout is False
    assert plan.task("vote_mix").retry_on_timeout is True
    assert plan.task("boost").timeout_seconds == 600 and plan.task("boost").max_retries == 0
    assert plan.task("vote_mix").max_retries == 3
    assert all(0 < t.timeout_seconds <= 7200 for t in plan.tasks)


def test_descriptions_say_when_there_is_no_holdout() -> None:
    with_holdout = plan_for({"holdout": 0.2}, [{"task": "vote_mix"}])
    assert "on the holdout" in with_holdout.task("evaluate").description
    none = plan_for({"holdout": 0}, [{"task": "vote_mix"}])
    assert "out-of-fold (no holdout)" in none.task("evaluate").description
    assert "(no holdout)" in none.task("prepare").description and "holdout" not in none.task("base_linear").description


def test_job_level_settings() -> None:
    plan = plan_for(
        {
            "output": {"schema": "models"},
            "tags": {"team": "x"},
            "schedule": {"cron": "0 0 3 * * ?", "timezone": "Europe/Amsterdam", "paused": True},
            "notifications": {"email": {"on_failure": ["a@b.co"]}, "webhook": {"on_start": ["abc-1"]}},
        },
        [{"task": "vote_mix"}],
    )
    # Defaults reference the job's own schema resource (resolved per target at deploy time) ...
    assert plan.parameters == (
        ("catalog", "${resources.schemas.p.catalog_name}"),
        ("schema", "${resources.schemas.p.name}"),
    )
    assert plan.output == ("main", "models")  # ... whose prod name is the spec's output
    assert dict(plan.tags) == {"team": "x", **OBSRV_TAG_VALUES}
    assert tuple(OBSRV_TAG_VALUES) == S.OBSRV_TAGS  # the spec reserves room for exactly these
    assert plan.schedule is not None and plan.schedule.paused
    assert plan.email.on_failure == ("a@b.co",) and plan.webhook.on_start == ("abc-1",)


def test_plan_file_is_the_architecture_contract() -> None:
    plan = plan_for({}, [{"id": "s", "task": "stack_top_any", "stack": {"top_n": 3}}])
    text = plan_document(plan)
    document = json.loads(text)
    assert text == json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    assert set(document) == {"context", "job", "tasks", "version"} and document["job"] == "p"
    assert list(document["tasks"]) == sorted(t.key for t in plan.tasks)
    payload = document["tasks"]["s"]
    assert set(payload) == {"task", "upstream", "budget_seconds"}
    assert payload["budget_seconds"] == 0  # a combiner searches nothing
    assert payload["task"]["id"] == "s" and payload["task"]["stack"] == {"top_n": 3, "meta_learner": "linear", "passthrough": False}
    assert document["context"]["source"]["schema"] == "s"  # by alias
    assert document["context"]["timeout"] == 3600  # defaults included
    assert document["tasks"]["base_knn"]["task"] == {"family": "knn"}
    # Each task's argv is a handful of short values; the plan is not inline any more.
    argv = plan.task("prepare").argv
    assert argv[:4] == ("--stage", "prepare", "--task-id", "prepare")
    assert argv[10:12] == ("--plan", "${workspace.file_path}/bundle_out/p.plan.json")
    assert max(len(a) for t in plan.tasks for a in t.argv) < 80


def test_mermaid_has_the_users_edges() -> None:
    plan = plan_for(
        {"compute": {"serverless": "GPU"}},
        [{"task": "boost"}, {"task": "vote_mix", "depends_on": [{"task": "boost"}]}],
    )
    text = mermaid(plan)
    assert "    boost --> vote_mix\n" in text and "    base_models --> vote_mix\n" in text
    assert 'vote_mix["vote_mix<br/>cpu"]' in text and 'boost["boost<br/>gpu"]' in text


def test_compiling_twice_is_byte_identical() -> None:
    first = compile_file(REPO / "examples" / "credit_all_tasks.yaml", root=REPO)
    second = compile_file(REPO / "examples" / "credit_all_tasks.yaml", root=REPO)
    assert first.files == second.files


def test_output_does_not_depend_on_checkout_location_or_hash_seed(tmp_path: Path) -> None:
    """Same bytes from a copy of the project elsewhere and under another PYTHONHASHSEED."""
    copy = tmp_path / "elsewhere"
    (copy / "examples").mkdir(parents=True)
    (copy / "databricks.yml").write_text((REPO / "databricks.yml").read_text())
    spec = copy / "examples" / "credit_all_tasks.yaml"
    spec.write_text((REPO / "examples" / "credit_all_tasks.yaml").read_text())
    code = (
        "import sys\nfrom obsrv.compiler.cli import main\n"
        "sys.exit(main(['compile', 'examples/credit_all_tasks.yaml']))\n"
    )
    for seed in ("1", "2"):
        subprocess.run(
            [sys.executable, "-c", code], cwd=copy, check=True, capture_output=True, env={"PYTHONHASHSEED": seed, "PATH": ""}
        )
        produced = (copy / "bundle_out" / "credit_all_tasks.job.yml").read_text()
        assert produced == (REPO / "bundle_out" / "credit_all_tasks.job.yml").read_text()
    assert yaml.safe_load(produced)["resources"]["jobs"]["credit_all_tasks"]["name"] == "credit_all_tasks"


def test_the_default_is_no_holdout() -> None:
    """Every row trains unless the spec asks for a holdout: the A/B in
    benchmarks/results/holdout_ab.md found holdout 0 better on 8 of 8 splits (p = 0.008)."""
    plan = plan_for({}, [{"task": "vote_mix"}])
    assert "out-of-fold (no holdout)" in plan.task("evaluate").description
