"""The optional `score` block: the second job `<name>_score` and its quality monitor.

Platform sources for the fields emitted here:
* `resources.quality_monitors.<key>`: ../shared/reference/databricks_bundle_schema.json,
  `github.com/databricks/cli/bundle/config/resources.QualityMonitor` (required: table_name,
  assets_dir, output_schema_name; `baseline_table_name`: "The baseline table and the monitored table
  shall have the same schema") and `catalog.MonitorInferenceLog` (required: granularities,
  model_id_col, prediction_col, problem_type, timestamp_col; problem_type one of
  PROBLEM_TYPE_CLASSIFICATION / PROBLEM_TYPE_REGRESSION).
* The typed load: databricks-bundles' `databricks.bundles.quality_monitors.QualityMonitor` and
  `databricks.bundles.jobs.Job`, as `obsrv compile --verify` runs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from obsrv.compiler.api import compile_file, compile_files
from obsrv.compiler.diagnostics import SpecError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "credit_scoring.yaml"

SPEC = """\
obsrv:
  context:
    name: loans
    metric: {regression: [rmse]}
    source: {catalog: main, schema: credit, table: training_data, target: amount, id_column: Loan_ID}
  job:
    - task: vote_top_alg
  score:
SCORE
"""


def _spec(tmp_path: Path, score: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(SPEC.replace("SCORE", score))
    (tmp_path / "databricks.yml").touch()
    return path


@pytest.fixture(scope="module")
def example() -> Any:
    return compile_file(EXAMPLE, root=REPO, output_dir=REPO / "bundle_out", verify=True)


def test_the_score_job_is_a_second_job_with_its_own_files(example: Any) -> None:
    assert example.score_job_key == "credit_scoring_score"
    assert {"credit_scoring_score.job.yml", "credit_scoring_score.plan.json"} <= set(example.files)
    document = yaml.safe_load(example.files["credit_scoring_score.job.yml"])
    assert document == {"resources": {"jobs": {"credit_scoring_score": example.score_job}}}
    (task,) = example.score_job["tasks"]
    argv = task["python_wheel_task"]["parameters"]
    pairs = dict(zip(argv[::2], argv[1::2]))
    # The same per-target schema, experiment and champion model as the training job.
    assert pairs["--stage"] == "score" and pairs["--input"] == "{{job.parameters.input}}"
    assert pairs["--model"] == "${resources.registered_models.credit_scoring.name}"
    assert pairs["--experiment"] == "${resources.experiments.credit_scoring.name}"
    assert pairs["--plan"] == "${workspace.file_path}/bundle_out/credit_scoring_score.plan.json"
    assert example.score_job["parameters"] == [
        *example.job["parameters"],
        {"name": "input", "default": "main.credit_risk.training_data"},
    ]
    assert example.score_job["schedule"] == {"quartz_cron_expression": "0 0 6 * * ?", "timezone_id": "Europe/Amsterdam"}
    assert "schedule" not in example.job  # the training job keeps the context's (none here)


def test_official_schema_and_typed_load_accept_the_score_job_and_monitor(example: Any, bundle_schema: Any) -> None:
    from databricks.bundles.jobs import Job
    from databricks.bundles.quality_monitors import QualityMonitor

    assert bundle_schema(yaml.safe_load(example.files["credit_scoring_score.job.yml"])) == []
    assert bundle_schema(yaml.safe_load(example.files["credit_scoring.resources.yml"])) == []
    assert Job.from_dict(example.score_job).as_dict() == example.score_job  # lossless: the types were right
    monitor = example.resources["resources"]["quality_monitors"]["credit_scoring_score"]
    assert QualityMonitor.from_dict(monitor).as_dict() == monitor


def test_the_monitor_profiles_the_columns_the_score_task_writes(example: Any) -> None:
    from obsrv.service_tasks.stages import score as stage

    monitor = example.resources["resources"]["quality_monitors"]["credit_scoring_score"]
    schema = "${resources.schemas.credit_scoring.catalog_name}.${resources.schemas.credit_scoring.name}"
    assert monitor["table_name"] == f"{schema}.loans_scored"
    assert monitor["baseline_table_name"] == f"{schema}.loans_scored_baseline"
    assert monitor["output_schema_name"] == schema
    assert monitor["assets_dir"].startswith("/Workspace/Users/${workspace.current_user.userName}/")
    assert monitor["inference_log"] == {
        "problem_type": "PROBLEM_TYPE_CLASSIFICATION",
        "prediction_col": stage.PREDICTION_COLUMN,
        "model_id_col": stage.MODEL_VERSION_COLUMN,
        "timestamp_col": stage.SCORED_AT_COLUMN,
        "granularities": ["1 day"],
    }
    plan = example.plan if example.plan["job"] == "credit_scoring_score" else None
    assert plan is None  # `plan` is the training job's; the score job's plan file is its own
    import json

    score_plan = json.loads(example.files["credit_scoring_score.plan.json"])
    assert score_plan["tasks"]["score"]["task"]["output_table"] == "loans_scored"
    assert score_plan["tasks"]["score"]["task"]["baseline_table"] == "loans_scored_baseline"


def test_regression_monitor_and_default_output_name(tmp_path: Path) -> None:
    result = compile_file(_spec(tmp_path, "    input: [main.credit.new_a, main.credit.new_b]\n    monitor: true"),
                          root=tmp_path, verify=True)
    monitor = result.resources["resources"]["quality_monitors"]["loans_score"]
    assert monitor["inference_log"]["problem_type"] == "PROBLEM_TYPE_REGRESSION"
    assert monitor["table_name"].endswith(".new_a_scored")  # `<first input table>_scored`
    parameters = {p["name"]: p["default"] for p in result.score_job["parameters"]}
    assert parameters["input"] == "main.credit.new_a,main.credit.new_b"


def test_no_monitor_without_monitor_true(tmp_path: Path) -> None:
    result = compile_file(_spec(tmp_path, "    input: main.credit.new_a"), root=tmp_path, verify=True)
    assert "quality_monitors" not in result.resources["resources"]
    assert result.score_job_key == "loans_score"


def test_compiles_byte_identical_run_to_run(tmp_path: Path) -> None:
    path = _spec(tmp_path, "    input: main.credit.new_a\n    monitor: true\n    schedule: {cron: '0 0 3 * * ?'}")
    first = compile_file(path, root=tmp_path).files
    second = compile_file(path, root=tmp_path).files
    assert first == second and "loans_score.job.yml" in first


def _codes(tmp_path: Path, score: str) -> list[tuple[str, int, int, str]]:
    with pytest.raises(SpecError) as error:
        compile_file(_spec(tmp_path, score), root=tmp_path, verify=False)
    return [(d.code, d.line, d.column, d.fix or "") for d in error.value.diagnostics]


def test_bad_score_blocks_are_located_with_a_fix(tmp_path: Path) -> None:
    codes = _codes(tmp_path, "    input: [main.credit.ok, credit.new]\n    output: 'x.y'\n    monitor: maybe")
    assert [(c, line, col) for c, line, col, _ in codes] == [("OBS110", 9, 29), ("OBS106", 10, 13), ("OBS103", 11, 14)]
    assert codes[0][3] == "use e.g. `main.credit.new`"


def test_a_missing_input_is_reported(tmp_path: Path) -> None:
    codes = _codes(tmp_path, "    monitor: true")
    assert [c for c, *_ in codes] == ["OBS102"]


def test_the_output_may_not_overwrite_an_input(tmp_path: Path) -> None:
    # The scored table goes to the job's output schema: main.loans (the job's name) by default.
    codes = _codes(tmp_path, "    input: [main.credit.a, main.loans.scored_here]\n    output: scored_here")
    assert [(c, line) for c, line, *_ in codes] == [("OBS212", 9)]


def test_an_output_too_long_for_its_baseline(tmp_path: Path) -> None:
    codes = _codes(tmp_path, f"    input: main.credit.a\n    output: {'t' * 250}")
    assert [(c, line) for c, line, *_ in codes] == [("OBS304", 10)]
    assert "at most 246 characters" in codes[0][3]


def test_a_score_job_name_taken_by_another_spec(tmp_path: Path) -> None:
    first = _spec(tmp_path, "    input: main.credit.a", name="a.yaml")
    other = tmp_path / "b.yaml"
    other.write_text(SPEC.replace("name: loans", "name: loans_score").replace("  score:\nSCORE\n", ""))
    with pytest.raises(SpecError) as error:
        compile_files([first, other], root=tmp_path, verify=False)
    assert [d.code for d in error.value.diagnostics] == ["OBS208"]
    assert "the scoring job in" in error.value.diagnostics[0].message
