"""Negative tests: at least one per diagnostic code, with message, fix and location asserted."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from obsrv.compiler.api import compile_file, compile_files, load_spec
from obsrv.compiler.diagnostics import CODES, Diagnostic, SpecError

BASE = """\
obsrv:
  context:
    name: credit_risk_ensemble
    timeout: 15 minutes
    metric:
      classification: [accuracy, f1, auc]
    source:
      catalog: main
      schema: credit_risk
      table: training_data
      target: default_label
  job:
    - task: stack_top_any
      stack:
        top_n: 5
"""
# BASE line numbers: 3 name, 4 timeout, 6 classification, 7 source, 10 table, 11 target, 12 job,
# 13 `- task`, 14 stack, 15 top_n.


def edit(*pairs: tuple[str, str], text: str = BASE) -> str:
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def add_tasks(tasks: str) -> str:
    return BASE + tasks


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    code: str
    line: int
    column: int
    message: str  # a substring of the message
    fix: str = ""  # a substring of the fix


CASES = [
    # ---- YAML and file level
    Case("syntax", "obsrv:\n  context: [\n", "OBS003", 2, 13, "YAML syntax error", "indentation and quoting"),
    Case("tab-indent", "obsrv:\n\tcontext: 1\n", "OBS003", 2, 1, "cannot start any token", "tabs"),
    Case("two-documents", "obsrv: {}\n---\nobsrv: {}\n", "OBS003", 2, 1, "another document", "one obsrv spec per file"),
    Case("unknown-tag", "obsrv: !!python/object:os.system {}\n", "OBS005", 1, 8, "unsupported YAML tag", "`!tag`"),
    Case("unknown-scalar-tag", "obsrv: !custom x\n", "OBS005", 1, 8, "unsupported YAML tag `!custom`", "`!tag`"),
    Case("empty", "", "OBS002", 0, 0, "the file is empty", "start the spec with `obsrv:`"),
    Case("only-comments", "# nothing here\n", "OBS002", 0, 0, "the file is empty", "obsrv:"),
    Case(
        "duplicate-key",
        edit(("    timeout: 15 minutes\n", "    timeout: 15 minutes\n    timeout: 20 minutes\n")),
        "OBS004", 5, 5, "duplicate key `timeout` (first given on line 4)", "remove one of the two `timeout:`",
    ),
    Case("recursive-alias", "obsrv: &a\n  x: *a\n", "OBS005", 1, 8, "contains an alias to itself", "recursive"),
    Case("complex-key", "obsrv:\n  ? [a, b]\n  : 1\n", "OBS005", 2, 5, "must be plain text", "as text"),
    # ---- shape and values
    Case(
        "unknown-key-did-you-mean", edit(("        top_n: 5", "        top_k: 5")),
        "OBS101", 15, 9, "unknown key `top_k` in `stack`; did you mean `top_n`?", "rename it to `top_n`",
    ),
    Case(
        "unknown-key-no-match", edit(("    timeout: 15 minutes", "    zzz: 1")),
        "OBS101", 4, 5, "unknown key `zzz` in `context`", "the keys allowed here are: name, compute",
    ),
    Case(
        "wrong-family-block", edit(("      stack:\n        top_n: 5", "      vote:\n        top_n: 5")),
        "OBS101", 14, 7, "a stack_top_any task takes its parameters under `stack:`, not `vote:`",
        "rename `vote:` to `stack:`",
    ),
    Case(
        "missing-obsrv-root", "context:\n  name: x\n", "OBS101", 1, 1, "unknown top-level key `context`",
        "under a top-level `obsrv:` key",
    ),
    Case(
        "missing-required", edit(("      target: default_label\n", "")),
        "OBS102", 7, 5, "missing required key `target` in `source`", "add `target:` (label column)",
    ),
    Case(
        "missing-task-type", edit(("    - task: stack_top_any\n      stack:", "    - stack:")),
        "OBS102", 13, 7, "no `task:` key", "add `task: <type>`",
    ),
    Case("missing-root", "foo: 1\n", "OBS102", 1, 1, "no top-level `obsrv:` key", "start the file with `obsrv:`"),
    Case(
        "wrong-type-mapping", edit(("    timeout: 15 minutes", "    sample: 5")),
        "OBS103", 4, 13, "`sample` should be a mapping", "give `sample` a mapping",
    ),
    Case(
        "depends-on-as-text", add_tasks("    - task: vote_mix\n      depends_on: [stack_top_any]\n"),
        "OBS103", 17, 20, "each `depends_on` entry is a mapping `task: <id>`", "write `- task: stack_top_any`",
    ),
    Case(
        "task-as-text", add_tasks("    - vote_mix\n"), "OBS103", 16, 7, "each entry of `job` is a task mapping",
        "write `- task: vote_mix`",
    ),
    Case(
        "float-for-int", edit(("        top_n: 5", "        top_n: 2.5")),
        "OBS103", 15, 16, "`top_n` should be a whole number, got the number `2.5`", "use a whole number, e.g. 2",
    ),
    Case(
        "empty-block", edit(("      stack:\n        top_n: 5\n", "      stack:\n")),
        "OBS103", 14, 13, "got nothing (an empty value)", "remove the empty `stack:`",
    ),
    Case(
        "choice-did-you-mean", edit(("    timeout: 15 minutes", "    fold_type: stratifed")),
        "OBS104", 4, 16, "the text `stratifed` is not allowed for `fold_type`; did you mean `stratified`?",
        "use `stratified`",
    ),
    Case(
        "metric-of-other-problem", edit(("[accuracy, f1, auc]", "[accuracy, rmse]")),
        "OBS104", 6, 34, "`rmse` is a regression metric, but it is listed under `classification`",
        "write `regression: [...]`",
    ),
    Case(
        "serverless-choice", edit(("    timeout: 15 minutes", "    compute: {serverless: [TPU]}")),
        "OBS104", 4, 28, "the text `TPU` is not allowed for `serverless`; did you mean `GPU`?", "use `GPU`",
    ),
    Case(
        "version", edit(("obsrv:\n", "obsrv:\n  version: 2\n")), "OBS104", 2, 12, "unsupported format version 2",
        "write `version: 1`",
    ),
    Case(
        "range", edit(("        top_n: 5", "        top_n: 1")), "OBS105", 15, 16, "`top_n` must be at least 2, got 1",
        "at least 2",
    ),
    Case(
        "range-float", edit(("    timeout: 15 minutes", "    holdout: 0.95")),
        "OBS105", 4, 14, "`holdout` must be less than 0.9, got 0.95", "less than 0.9",
    ),
    Case(
        "empty-job", edit(("  job:\n    - task: stack_top_any\n      stack:\n        top_n: 5\n", "  job: []\n")),
        "OBS105", 12, 8, "`job` must have at least 1 item", "list at least one task under `job:`",
    ),
    Case(
        "identifier", edit(("table: training_data", "table: training-data")),
        "OBS106", 10, 14, "`training-data` is not a valid name for `table`", "use e.g. `training_data`",
    ),
    Case(
        "identifier-injection", edit(("table: training_data", 'table: "t; DROP TABLE x"')),
        "OBS106", 10, 14, "may only contain letters, digits and underscores", "use e.g. `t_DROP_TABLE_x`",
    ),
    Case(
        "identifier-leading-digit", edit(("name: credit_risk_ensemble", "name: 2024_model")),
        "OBS106", 3, 11, "may not start with a digit", "use e.g. `_2024_model`",
    ),
    Case(
        "task-id-too-long", add_tasks(f"    - id: {'t' * 65}\n      task: vote_mix\n"),
        "OBS106", 16, 11, "`id` is longer than 64 characters", "at most 64 characters",
    ),
    Case(
        "duration", edit(("timeout: 15 minutes", "timeout: 15 minuts")),
        "OBS107", 4, 14, "cannot read '15 minuts' as a duration", "`15 minutes`, `1h30m`, `90s`",
    ),
    Case(
        "duration-zero", edit(("timeout: 15 minutes", "timeout: 0")), "OBS107", 4, 14, "a duration must be positive",
        "a number of seconds",
    ),
    Case(
        "cron-fields", edit(("    timeout: 15 minutes", "    schedule: {cron: '0 3 * * *'}")),
        "OBS108", 4, 22, "a Quartz cron expression has 6 or 7 fields", "e.g. `0 0 3 * * ?`",
    ),
    Case(
        "cron-question-mark", edit(("    timeout: 15 minutes", "    schedule: {cron: '0 0 3 * * *'}")),
        "OBS108", 4, 22, "Quartz needs `?` in exactly one of day-of-month", "`0 0 3 * * ?`",
    ),
    Case(
        "timezone", edit(("    timeout: 15 minutes", "    schedule: {cron: '0 0 3 * * ?', timezone: Europe/Amsterdm}")),
        "OBS108", 4, 47, "unknown time zone 'Europe/Amsterdm'", "use `Europe/Amsterdam`",
    ),
    Case(
        "email", edit(("    timeout: 15 minutes", "    notifications: {email: {on_failure: [oncall]}}")),
        "OBS108", 4, 42, "`oncall` in `on_failure` is not an email address", "ml-team@example.com",
    ),
    Case(
        "routing-table",
        add_tasks(
            "    - task: route_external\n      route:\n        external: {table: a.b.c.d, key: k, column: c}\n"
        ),
        "OBS108", 18, 27, "`a.b.c.d` in `table` is not a table reference", "`catalog.schema.table`",
    ),
    Case(
        "repeated-metric", edit(("[accuracy, f1, auc]", "[auc, auc]")), "OBS108", 6, 23, "list each metric once",
        "remove the repeated metric",
    ),
    Case(
        "fold-type-list", edit(("    timeout: 15 minutes", "    fold_type: [kfold, group]")),
        "OBS108", 4, 16, "give exactly one value here", "give exactly one value",
    ),
    Case(
        "group-fold-needs-column", edit(("    timeout: 15 minutes", "    fold_type: group")),
        "OBS109", 4, 5, "fold_type: group needs source.group_column", "give `source.group_column`",
    ),
    Case(
        # Only a fold_type the user wrote: an unwritten one defaults to kfold for regression.
        "stratified-regression", edit(
            ("    timeout: 15 minutes", "    timeout: 15 minutes\n    fold_type: stratified"),
            ("classification: [accuracy, f1, auc]", "regression: [rmse]"),
        ),
        "OBS109", 5, 5, "fold_type: stratified needs a classification metric", "kfold for regression",
    ),
    Case(
        "two-problems", edit(("      classification: [accuracy, f1, auc]", "      classification: [auc]\n      regression: [rmse]")),
        "OBS109", 6, 7, "give exactly one of `classification: [...]` or `regression: [...]`", "give exactly one",
    ),
    Case(
        "two-cluster-methods",
        add_tasks("    - task: route_cluster\n      route:\n        cluster: {kmeans: {}, gmm: {}}\n"),
        "OBS109", 18, 19, "give exactly one clustering method", "give exactly one clustering method",
    ),
    Case(
        "column-roles", edit(("      target: default_label", "      target: default_label\n      weight_column: default_label")),
        "OBS109", 12, 7, "`weight_column` names the same column as `target`", "use a different column",
    ),
    Case(
        "reserved-tag", edit(("    timeout: 15 minutes", "    tags: {obsrv_spec_version: '2'}")),
        "OBS109", 4, 5, "tags starting with `obsrv_` are set by obsrv itself (obsrv_spec_version)", "use another tag name",
    ),
    Case(
        "too-many-tags",
        # 24 tags: 24 + obsrv's 1 + development mode's `dev` = 26 > 25 (the CLI adds `dev` in
        # bundle/config/mutator/resourcemutator/apply_target_mode.go).
        edit(("    timeout: 15 minutes", "    tags: {" + ", ".join(f"t{i}: v" for i in range(24)) + "}")),
        "OBS109", 4, 5, "24 tags is too many: Databricks allows at most 25 job tags, obsrv adds 1 and development "
        "mode adds 1 (`dev`); give at most 23 tags", "give at most 23 tags",
    ),
    Case(
        # `${resources.jobs.credit_risk_.id}` would not parse (databricks/cli libs/dyn/dynvar/ref.go).
        "job-name-not-a-reference-segment",
        edit(("    name: credit_risk_ensemble", "    name: credit_risk_")),
        "OBS109", 3, 5, "context.name `credit_risk_` cannot name bundle resources",
        "use a name that starts with a letter and does not end with `_`",
    ),
    # ---- the job graph
    Case(
        "task-type", edit(("- task: stack_top_any", "- task: stack_top_anyy")),
        "OBS201", 13, 13, "unknown task type `stack_top_anyy`; did you mean `stack_top_any`?",
        "write `task: stack_top_any`",
    ),
    Case(
        "task-type-no-match", edit(("- task: stack_top_any", "- task: xgb")),
        "OBS201", 13, 13, "unknown task type `xgb`", "use one of: route_cluster",
    ),
    Case(
        "duplicate-id-default", add_tasks("    - task: stack_top_any\n"),
        "OBS202", 16, 13, "duplicate task id `stack_top_any` (first used on line 13)", "give one of the two tasks its own `id:`",
    ),
    Case(
        "duplicate-id-case", add_tasks("    - id: Stack_Top_Any\n      task: vote_mix\n"),
        "OBS202", 16, 11, "differ only in case", "differs from `stack_top_any` in more than case",
    ),
    Case(
        "reserved-id", add_tasks("    - id: evaluate\n      task: vote_mix\n"),
        "OBS203", 16, 11, "`evaluate` is reserved", "choose another `id:`",
    ),
    Case(
        "reserved-prefix", add_tasks("    - id: base_custom\n      task: vote_mix\n"),
        "OBS203", 16, 11, "`base_custom` is reserved", "choose another `id:`",
    ),
    Case(
        "unknown-target", add_tasks("    - task: vote_mix\n      depends_on:\n        - task: stack_top_ani\n"),
        "OBS204", 18, 17, "`vote_mix` depends on `stack_top_ani`, but no task has that id; did you mean `stack_top_any`?",
        "write `task: stack_top_any`",
    ),
    Case(
        "depends-on-implicit-stage", add_tasks("    - task: vote_mix\n      depends_on:\n        - task: prepare\n"),
        "OBS204", 18, 17, "a stage obsrv adds itself", "every task already runs after prepare",
    ),
    Case(
        "cycle",
        edit(
            ("        top_n: 5\n", "        top_n: 5\n      depends_on:\n        - task: vote_mix\n"),
            text=add_tasks("    - task: vote_mix\n      depends_on:\n        - task: stack_top_any\n"),
        ),
        "OBS205", 17, 17, "dependency cycle: stack_top_any -> vote_mix -> stack_top_any",
        "remove one of these depends_on entries",
    ),
    Case(
        "self-cycle", edit(("        top_n: 5\n", "        top_n: 5\n      depends_on: [{task: stack_top_any}]\n")),
        "OBS205", 16, 27, "dependency cycle: stack_top_any -> stack_top_any", "cannot depend on itself",
    ),
    Case(
        "duplicate-dependency",
        add_tasks("    - task: vote_mix\n      depends_on: [{task: stack_top_any}, {task: stack_top_any}]\n"),
        "OBS206", 17, 50, "`vote_mix` lists `stack_top_any` in depends_on twice", "remove the repeated entry",
    ),
    Case(
        "gpu-not-allowed", edit(("- task: stack_top_any\n", "- task: stack_top_any\n      compute: GPU\n")),
        "OBS207", 14, 16, "asks for GPU, but `context.compute.serverless` does not include GPU", "serverless: [CPU, GPU]",
    ),
    Case(
        "route-on-target", add_tasks("    - task: route_feature\n      route: {feature: {column: Default_Label}}\n"),
        "OBS209", 17, 33, "`Default_Label` is the target column", "route on a feature column",
    ),
    Case(
        "output-name-too-long", edit(("table: training_data", "table: " + "t" * 230)),
        "OBS301", 10, 14, "Unity Catalog allows 255", "shorten the source table name",
    ),
]


def _diagnostics(tmp_path: Path, text: str) -> list[Diagnostic]:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        _, _, warnings = load_spec(path)
    except SpecError as error:
        return error.diagnostics
    return warnings


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_error_case(case: Case, tmp_path: Path) -> None:
    diagnostics = _diagnostics(tmp_path, case.text)
    found = [d for d in diagnostics if d.code == case.code]
    assert found, f"expected {case.code}, got:\n" + "\n".join(d.render() for d in diagnostics)
    match = next((d for d in found if case.message in d.message), None)
    assert match is not None, f"no {case.code} mentions {case.message!r}:\n" + "\n".join(d.render() for d in found)
    assert (match.line, match.column) == (case.line, case.column), match.render()
    assert match.file.endswith("spec.yaml")
    assert match.fix and case.fix in match.fix, match.render()
    if match.line:
        # The snippet is the source line, with the caret under the reported column.
        rendered = match.render().splitlines()
        assert rendered[2].endswith(case.text.splitlines()[match.line - 1].replace("\t", " "))
        assert rendered[3].index("^") - rendered[3].index("|") - 2 == match.column - 1


def test_yaml_syntax_error_is_reported_alone(tmp_path: Path) -> None:
    diagnostics = _diagnostics(tmp_path, "obsrv:\n  context: [\n  job: {{\n")
    assert [d.code for d in diagnostics] == ["OBS003"]


def test_every_error_in_one_pass(tmp_path: Path) -> None:
    text = edit(
        ("name: credit_risk_ensemble", "name: credit-risk"),
        ("timeout: 15 minutes", "timeout: soon"),
        ("        top_n: 5", "        top_k: 5"),
        text=add_tasks(
            "    - task: vote_mixx\n"
            "    - task: vote_weight\n      depends_on: [{task: nope}]\n"
            "    - id: prepare\n      task: boost\n"
        ),
    )
    codes = sorted(d.code for d in _diagnostics(tmp_path, text))
    assert codes == ["OBS101", "OBS106", "OBS107", "OBS201", "OBS203", "OBS204"]


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as missing:
        load_spec(tmp_path / "nope.yaml")
    assert missing.value.diagnostics[0].code == "OBS001"
    assert "no such file" in missing.value.diagnostics[0].message
    with pytest.raises(SpecError) as folder:
        load_spec(tmp_path)
    assert folder.value.diagnostics[0].code == "OBS001"
    binary = tmp_path / "latin1.yaml"
    binary.write_bytes(b"obsrv:\n  context:\n    name: caf\xe9\n")
    with pytest.raises(SpecError) as encoding:
        load_spec(binary)
    first = encoding.value.diagnostics[0]
    assert (first.code, first.line) == ("OBS001", 3) and "not UTF-8" in first.message


def test_duplicate_job_names_across_specs(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(BASE)
    (tmp_path / "b.yaml").write_text(BASE)
    with pytest.raises(SpecError) as error:
        compile_files([tmp_path / "a.yaml", tmp_path / "b.yaml"], root=tmp_path, verify=False)
    (diagnostic,) = error.value.errors
    assert diagnostic.code == "OBS208" and diagnostic.file.endswith("b.yaml")
    assert "a.yaml" in diagnostic.message and "another `context.name`" in (diagnostic.fix or "")


def test_two_specs_sharing_an_output_schema(tmp_path: Path) -> None:
    """Two bundle resources for one UC schema cannot both be created; each job owns its schema."""
    shared = "    timeout: 15 minutes\n    output: {schema: shared_out}"
    (tmp_path / "a.yaml").write_text(edit(("    timeout: 15 minutes", shared)))
    (tmp_path / "b.yaml").write_text(edit(("    timeout: 15 minutes", shared), ("credit_risk_ensemble", "other_job")))
    with pytest.raises(SpecError) as error:
        compile_files([tmp_path / "a.yaml", tmp_path / "b.yaml"], root=tmp_path, verify=False)
    (diagnostic,) = error.value.errors
    assert diagnostic.code == "OBS211" and diagnostic.file.endswith("b.yaml")
    assert "main.shared_out" in diagnostic.message and "credit_risk_ensemble" in diagnostic.message
    # The output may not be the source's schema either: the deploy would try to create it.
    (tmp_path / "c.yaml").write_text(edit(("    timeout: 15 minutes", "    timeout: 15 minutes\n    output: {schema: credit_risk}")))
    with pytest.raises(SpecError) as error:
        compile_files([tmp_path / "c.yaml"], root=tmp_path, verify=False)
    (diagnostic,) = error.value.errors
    assert diagnostic.code == "OBS211" and "main.credit_risk of job `credit_risk_ensemble` is its source's schema" in diagnostic.message
    # Without `output`, each job gets a schema named after itself: no clash.
    (tmp_path / "a.yaml").write_text(BASE)
    (tmp_path / "b.yaml").write_text(edit(("credit_risk_ensemble", "other_job")))
    results = compile_files([tmp_path / "a.yaml", tmp_path / "b.yaml"], root=tmp_path, verify=False)
    assert [r.output for r in results] == [("main", "credit_risk_ensemble"), ("main", "other_job")]


def test_warnings_do_not_fail(tmp_path: Path) -> None:
    text = edit(
        ("    timeout: 15 minutes", "    timeout: 15 minutes\n    compute: {serverless: GPU, accelerator: GPU_1xH100}"),
        ("        top_n: 5", "        top_n: 5\n      timeout: 1h"),
    )
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    result = compile_file(path, root=tmp_path, verify=False)
    codes = {(w.code, w.line, w.severity) for w in result.warnings}
    # OBS403: BASE's 15-minute timeout cannot hold its critical path (test_compiler_timing.py)
    assert codes == {("OBS401", 5, "warning"), ("OBS402", 17, "warning"), ("OBS403", 4, "warning")}
    assert "GPU_1xH100" in result.files[f"{result.job_key}.job.yml"]


def test_no_h100_warning_without_gpu_tasks(tmp_path: Path) -> None:
    text = edit(("    timeout: 15 minutes", "    compute: {serverless: CPU, accelerator: GPU_1xH100}"))
    (tmp_path / "spec.yaml").write_text(text)
    assert compile_file(tmp_path / "spec.yaml", root=tmp_path, verify=False).warnings == ()


def test_every_code_is_tested() -> None:
    # OBS006: test_compiler_spec_files.py; OBS211: above; OBS210, OBS302, OBS303, OBS404, OBS406: test_compiler_feasibility.py
    # OBS403, OBS405: test_compiler_timing.py; OBS407: test_compiler_cli.py; OBS110, OBS212, OBS304: test_compiler_score.py
    elsewhere = {"OBS006", "OBS210", "OBS211", "OBS302", "OBS303", "OBS403", "OBS404", "OBS405", "OBS406", "OBS407",
                 "OBS110", "OBS212", "OBS304"}
    tested = {c.code for c in CASES} | elsewhere | {"OBS001", "OBS208", "OBS401", "OBS402", "OBS901"}  # the last: CLI tests
    assert tested == set(CODES)


def test_spec_error_renders_text_and_json(tmp_path: Path) -> None:
    import json

    path = tmp_path / "spec.yaml"
    path.write_text(edit(("        top_n: 5", "        top_k: 5")))
    with pytest.raises(SpecError) as error:
        load_spec(path)
    text = error.value.render()
    assert "spec.yaml:15:9: error[OBS101]: unknown key `top_k`" in text
    assert " 15 |         top_k: 5\n    |         ^^^^^\n  fix: rename it to `top_n`" in text
    assert text.endswith("1 error\n")
    payload = json.loads(error.value.render("json"))
    assert payload["ok"] is False
    (item,) = payload["diagnostics"]
    assert (item["code"], item["line"], item["column"], item["path"]) == ("OBS101", 15, 9, "obsrv.job[0].stack.top_k")
    assert "unknown key" in str(error.value)


def test_a_number_too_long_to_parse_gets_a_range_error_with_a_fix() -> None:
    """pydantic's int_parsing_size (over 4,300 digits), found by the fuzz test."""
    from obsrv.compiler.checks import check
    from obsrv.compiler.yaml_loader import load_text

    seed = (Path(__file__).resolve().parents[2] / "examples" / "credit_risk.yaml").read_text()
    text = seed.replace("size: 50000", "size: '" + "9" * 5000 + "'")
    spec, diagnostics = check(load_text(text, "big.yaml"))
    assert spec is None
    (d,) = [d for d in diagnostics if d.is_error]
    assert d.code == "OBS105" and "too large" in d.message and d.fix and (d.line, d.column) == (10, 13)
