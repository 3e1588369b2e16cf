"""Property tests: whatever the input, the loader and checks answer with diagnostics (SpecError),
never with another exception; and every valid spec compiles to a job the bundle tools accept."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obsrv.compiler import spec as S
from obsrv.compiler.checks import check
from obsrv.compiler.diagnostics import CODES, SpecError
from obsrv.compiler.emit import scalar
from obsrv.compiler.yaml_loader import load_text

REPO = Path(__file__).resolve().parents[2]
SEED = yaml.safe_load((REPO / "examples" / "credit_risk.yaml").read_text())
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Words the spec uses, so random documents hit real keys and values often.
VOCABULARY = [
    "obsrv", "context", "job", "name", "task", "id", "depends_on", "compute", "serverless", "GPU", "CPU",
    "metric", "classification", "regression", "source", "catalog", "schema", "table", "target", "timeout",
    "stack", "vote", "boost", "route", "top_n", "top_alg", "cluster", "kmeans", "n_clusters", "fold_type",
    *S.TASK_TYPES, "prepare", "base_xgboost", "15 minutes", "auc", "rmse",
]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True), st.sampled_from(VOCABULARY),
    st.text(max_size=12),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=6)), inner, max_size=5),
    ),
    max_leaves=30,
)


def _outcome(text: str) -> None:
    """Load and check `text`; the only exception allowed out is SpecError, with sound diagnostics."""
    try:
        doc = load_text(text, "fuzz.yaml")
        spec, diagnostics = check(doc)
    except SpecError as error:
        diagnostics, spec = error.diagnostics, None
        assert diagnostics
    for d in diagnostics:
        assert d.code in CODES and d.file == "fuzz.yaml"
        assert d.line >= 0 and d.column >= 0
        if d.is_error:
            assert d.fix, d.render()
        d.render()  # rendering never fails either
    if spec is None:
        assert any(d.is_error for d in diagnostics)


@FAST
@given(st.text(max_size=200))
def test_random_text_never_crashes(text: str) -> None:
    _outcome(text)


@FAST
@given(documents)
def test_random_documents_never_crash(document: Any) -> None:
    _outcome(yaml.safe_dump({"obsrv": document}, allow_unicode=True))


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@FAST
@given(st.data())
def test_mutated_seed_gives_located_diagnostics(data: st.DataObject) -> None:
    document = copy.deepcopy(SEED)
    paths = [p for p in _paths(document) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = document
        try:
            for part in path[:-1]:
                parent = parent[part]
            action = data.draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                parent[path[-1]] = data.draw(documents)
            elif action == "delete" and isinstance(parent, dict):
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[data.draw(st.sampled_from(VOCABULARY))] = data.draw(scalars)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed this path
    text = yaml.safe_dump(document, sort_keys=False)
    _outcome(text)
    try:
        _, diagnostics = check(load_text(text, "fuzz.yaml"))
    except SpecError:
        return
    # Every error in a non-empty document points somewhere in the file.
    assert all(d.line > 0 for d in diagnostics if d.is_error)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_emitted_scalars_read_back_exactly(text: str) -> None:
    assert yaml.safe_load(f"key: {scalar(text)}\n") == {"key": text}
    assert yaml.safe_load(f"- {scalar(text)}\n") == [text]
    assert yaml.safe_load(f"{scalar(text)}: 1\n") == {text: 1}


# ------------------------------------------------------------------- valid specs compile cleanly


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    regression = draw(st.booleans())
    context: dict[str, Any] = {
        # Job names are resource keys in `${resources.jobs.<name>...}`: a letter first, no trailing `_`.
        "name": draw(st.from_regex(r"[a-z](_{0,2}[a-z0-9]){0,10}", fullmatch=True)),
        "compute": {"serverless": draw(st.sampled_from([["CPU"], ["GPU"], ["CPU", "GPU"]]))},
        "timeout": draw(st.integers(60, 20000)),
        "metric": {"regression": ["rmse"]} if regression else {"classification": ["auc", "f1"]},
        "fold_type": "kfold" if regression else draw(st.sampled_from(["stratified", "kfold"])),
        "source": {"catalog": "main", "schema": "s", "table": "t", "target": "y"},
        "retries": draw(st.integers(0, 3)),
    }
    if draw(st.booleans()):
        context["schedule"] = {"cron": "0 0 3 * * ?", "timezone": "UTC", "paused": draw(st.booleans())}
    if draw(st.booleans()):
        context["tags"] = draw(st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), st.text(max_size=10), max_size=3))
    job = []
    for index in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(S.TASK_TYPES))
        task: dict[str, Any] = {"id": f"t{index}", "task": kind}
        if kind == "route_cluster":
            task["route"] = {"cluster": {"kmeans": {"n_clusters": 3}}}
        elif kind == "route_feature":
            task["route"] = {"feature": {"column": "x"}}
        elif kind == "route_external":
            task["route"] = {"external": {"table": "seg", "key": "k", "column": "c"}}
        if index and draw(st.booleans()):
            targets = draw(st.sets(st.integers(0, index - 1), min_size=1, max_size=3))
            task["depends_on"] = [{"task": f"t{i}"} for i in sorted(targets)]
        gpu_allowed = "GPU" in context["compute"]["serverless"]
        task_compute = draw(st.sampled_from([None, "CPU", "GPU"] if gpu_allowed else [None, "CPU"]))
        if task_compute:
            task["compute"] = task_compute
        if draw(st.booleans()):
            task["retries"] = draw(st.integers(0, 5))
        job.append(task)
    return {"obsrv": {"context": context, "job": job}}


@settings(max_examples=30, deadline=None)
@given(valid_specs(), st.sampled_from(["wheel", "notebook"]))
def test_valid_specs_compile_to_valid_jobs(tmp_path_factory: Any, document: dict[str, Any], runner: str) -> None:
    from databricks.bundles.jobs import Job

    from obsrv.compiler.api import compile_file

    folder = tmp_path_factory.mktemp("spec")
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    result = compile_file(path, gpu_runner=runner, root=folder, verify=True)
    text = result.files[f"{result.job_key}.job.yml"]
    assert yaml.safe_load(text) == {"resources": {"jobs": {result.job_key: result.job}}}
    assert Job.from_dict(result.job).as_dict() == result.job  # type: ignore[arg-type]
    keys = [t["task_key"] for t in result.job["tasks"]]
    assert len(keys) == 1 + len(S.MODEL_FAMILIES) + len(document["obsrv"]["job"]) + 2  # + evaluate, cleanup
    for task in result.job["tasks"]:
        for dep in task.get("depends_on", []):
            assert keys.index(dep["task_key"]) < keys.index(task["task_key"])
