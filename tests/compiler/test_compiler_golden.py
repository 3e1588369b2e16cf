"""Golden tests: every example spec → the exact files the compiler must emit.

A failure prints a unified diff. After an intended change, regenerate and review:
    OBSRV_UPDATE_GOLDEN=1 python -m pytest tests/compiler -q
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from obsrv.compiler.api import compile_file, compile_files, find_bundle_root, stale_outputs
from obsrv.compiler.emit import DEFAULT_GPU_RUNNER

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
# (example stem, gpu runner); the default (notebook) runner for every example, the wheel opt-in on
# two GPU specs.
CASES = [(p.stem, DEFAULT_GPU_RUNNER) for p in EXAMPLES] + [("credit_routing_gpu", "wheel"), ("housing_gpu", "wheel")]


def _case_dir(stem: str, runner: str) -> Path:
    return GOLDEN / (stem if runner == DEFAULT_GPU_RUNNER else f"{stem}.{runner}")


def _compile(stem: str, runner: str) -> dict[str, str]:
    result = compile_file(
        REPO / "examples" / f"{stem}.yaml", gpu_runner=runner, root=REPO, output_dir=REPO / "bundle_out"
    )
    return result.files


def test_examples_cover_the_issue() -> None:
    """The example set must use all 11 task types, GPU and CPU, overrides, regression, schedule,
    notifications (issue 2, "Tests and acceptance")."""
    import yaml

    from obsrv.compiler.spec import TASK_TYPES

    types, gpu, cpu_only, overrides, regression, schedule, notifications = set(), False, False, False, False, False, False
    for path in EXAMPLES:
        spec = yaml.safe_load(path.read_text())["obsrv"]
        ctx = spec["context"]
        serverless = ctx.get("compute", {}).get("serverless", ["CPU"])
        gpu |= "GPU" in serverless
        cpu_only |= "GPU" not in serverless
        regression |= "regression" in ctx["metric"]
        schedule |= "schedule" in ctx
        notifications |= "notifications" in ctx
        for task in spec["job"]:
            types.add(task["task"])
            overrides |= bool({"compute", "timeout", "retries"} & set(task))
    assert types == set(TASK_TYPES)
    assert gpu and cpu_only and overrides and regression and schedule and notifications
    assert len(EXAMPLES) >= 6  # the seed plus at least five of our own


@pytest.mark.parametrize(("stem", "runner"), CASES, ids=[f"{s}-{r}" for s, r in CASES])
def test_golden(stem: str, runner: str, update_golden: bool) -> None:
    files = _compile(stem, runner)
    folder = _case_dir(stem, runner)
    if update_golden:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
    expected = {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir())} if folder.is_dir() else {}
    assert sorted(files) == sorted(expected), f"emitted files differ from {folder}"
    for name, text in files.items():
        if text != expected[name]:
            diff = "".join(
                difflib.unified_diff(
                    expected[name].splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    fromfile=f"golden/{folder.name}/{name}",
                    tofile="compiled",
                )
            )
            pytest.fail(f"{name} differs from its golden file (OBSRV_UPDATE_GOLDEN=1 to accept):\n{diff}")


def test_no_orphan_golden_cases() -> None:
    known = {_case_dir(stem, runner).name for stem, runner in CASES}
    assert {p.name for p in GOLDEN.iterdir() if p.is_dir()} == known


def test_committed_bundle_out_is_fresh() -> None:
    """bundle_out/ must be exactly what `obsrv compile examples/*.yaml` produces today."""
    assert find_bundle_root(REPO / "bundle_out") == REPO
    results = compile_files(EXAMPLES, root=REPO, output_dir=REPO / "bundle_out", verify=False)
    assert stale_outputs(results, REPO / "bundle_out") == [], "run: obsrv compile examples/*.yaml"
    produced = {name for r in results for name in r.files}
    on_disk = {p.name for p in (REPO / "bundle_out").iterdir() if p.is_file()}
    assert on_disk == produced, "bundle_out/ holds files no example produces (a renamed job?)"
