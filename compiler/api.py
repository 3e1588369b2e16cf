"""The compiler's Python API: spec file(s) in, rendered bundle files (in memory) out.

Used by the CLI and by the local runner (`obsrv run`). Nothing here writes to disk except
`write_outputs`, and that only after every spec compiled: output is all-or-nothing.

    result = compile_file("examples/credit_risk.yaml")
    result.files   # {"credit_risk_ensemble.job.yml": "..."} relative to the output folder
    result.job     # the `resources.jobs.credit_risk_ensemble` mapping
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from obsrv.compiler.checks import check
from obsrv.compiler.diagnostics import Diagnostic, SpecError
from obsrv.compiler.emit import (
    DEFAULT_GPU_RUNNER,
    GPU_RUNNERS,
    SHIM_FILE,
    EmitOptions,
    GpuRunner,
    header,
    render_job,
    render_shim,
    to_yaml,
    uses_shim,
    verify_job,
)
from obsrv.compiler.plan import build_plan, build_score_plan, plan_document, plan_file_name
from obsrv.compiler.resources import quality_monitor, resources_file_name, resources_mapping, verify_resources
from obsrv.compiler.spec import SpecFile
from obsrv.compiler.yaml_loader import LoadedYaml, load_file

__all__ = [
    "DEFAULT_OUTPUT_DIR",
    "CompileResult",
    "SpecError",
    "compile_file",
    "compile_files",
    "find_bundle_root",
    "load_spec",
    "stale_outputs",
    "write_outputs",
]

DEFAULT_OUTPUT_DIR = "bundle_out"
BUNDLE_FILE = "databricks.yml"


@dataclass(frozen=True)
class CompileResult:
    job_key: str
    files: dict[str, str]  # path relative to the output folder -> file text
    job: dict[str, Any]  # the emitted `resources.jobs.<job_key>` mapping
    source: str  # the spec path as given (as messages show it)
    warnings: tuple[Diagnostic, ...] = field(default_factory=tuple)
    # `variables` and `resources` (schemas, registered_models, experiments) of `<job>.resources.yml`
    resources: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)  # the parsed plan file
    uses_gpu: bool = False
    output: tuple[str, str] = ("", "")  # the output (catalog, schema) prod writes to
    source_schema: tuple[str, str] = ("", "")  # the source table's (catalog, schema)
    # the batch-scoring job `<job>_score` of a spec with a `score` block: its key and mapping
    score_job_key: str | None = None
    score_job: dict[str, Any] | None = None

    @property
    def bundle(self) -> dict[str, Any]:
        """Every bundle key this spec contributes (its YAML files merged)."""
        merged = {kind: dict(entries) for kind, entries in self.resources.get("resources", {}).items()}
        merged["jobs"] = {self.job_key: self.job}
        if self.score_job_key is not None and self.score_job is not None:
            merged["jobs"][self.score_job_key] = self.score_job
        return {"variables": dict(self.resources.get("variables", {})), "resources": merged}

    def for_job(self, key: str) -> "CompileResult":
        """This result with `key` (the training job or `<job>_score`) as the job a local run executes."""
        if key == self.job_key:
            return self
        if key != self.score_job_key or self.score_job is None:
            raise KeyError(f"{self.source} compiles no job {key!r}")
        return replace(self, job_key=key, job=self.score_job)


def find_bundle_root(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` (default: cwd) holding databricks.yml, else cwd.

    Relative paths in the output (the wheel glob, the header's source path) are written relative
    to this root, so the output does not depend on where the repository is checked out.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / BUNDLE_FILE).is_file():
            return folder
    return Path.cwd().resolve()


def _relative(path: Path, root: Path) -> str:
    """`path` relative to `root`, '/'-separated; never absolute (falls back to the file name)."""
    try:
        return Path(os.path.relpath(path.resolve(), root)).as_posix()
    except ValueError:  # another drive on Windows
        return path.name


def load_spec(path: str | Path) -> tuple[SpecFile, LoadedYaml, list[Diagnostic]]:
    """Load and check one spec: (SpecFile, LoadedYaml, warnings). Raises SpecError on any error."""
    doc = load_file(path, display=str(path))  # messages name the file as the user wrote it
    spec, diagnostics = check(doc)
    if spec is None:
        raise SpecError(diagnostics)
    return spec, doc, diagnostics


def _options(source: str, output_dir: Path, root: Path, gpu_runner: GpuRunner) -> EmitOptions:
    out_rel = _relative(output_dir, root)
    command = ["obsrv compile", source]
    if out_rel != DEFAULT_OUTPUT_DIR:
        command += ["-o", out_rel]
    if gpu_runner != DEFAULT_GPU_RUNNER:
        command += ["--gpu-runner", gpu_runner]
    wheel_glob = _relative(root / "dist", output_dir.resolve()) + "/*.whl"
    return EmitOptions(gpu_runner=gpu_runner, wheel_glob=wheel_glob, regenerate=" ".join(command))


def compile_file(
    path: str | Path,
    *,
    gpu_runner: str = DEFAULT_GPU_RUNNER,
    output_dir: str | Path | None = None,
    root: Path | None = None,
    verify: bool = True,
    score_input: Sequence[str] | None = None,
) -> CompileResult:
    """Compile one spec in memory. Raises SpecError (with `.diagnostics`) on any spec error.

    `score_input` (`obsrv score --table`) gives a spec without a `score` block one that scores these
    tables, so the local runner has a scoring job to run; a spec with one is compiled as written.

    `output_dir` (default `bundle_out` under the bundle root) only decides relative paths inside
    the output; nothing is written. `verify` re-checks the emitted job with databricks-bundles'
    typed `Job.from_dict` (an obsrv self-check; it costs ~110 ms of imports).
    """
    if gpu_runner not in GPU_RUNNERS:
        raise ValueError(f"gpu_runner must be one of {GPU_RUNNERS}, not {gpu_runner!r}")
    root = (root or find_bundle_root()).resolve()
    out = Path(output_dir) if output_dir is not None else root / DEFAULT_OUTPUT_DIR
    out = out if out.is_absolute() else Path.cwd() / out
    spec, doc, warnings = load_spec(path)
    if score_input and spec.obsrv.score is None:
        from obsrv.compiler.spec import Score

        given = Score.model_validate({"input": list(score_input)})
        spec = spec.model_copy(update={"obsrv": spec.obsrv.model_copy(update={"score": given})})
    source = _relative(Path(path), root)
    options = _options(source, out, root, gpu_runner)
    plan = build_plan(spec, source=source, plan_dir=_relative(out, root))
    text, job = render_job(plan, options)
    score_plan = build_score_plan(spec, plan, plan_dir=_relative(out, root))
    score = spec.obsrv.score
    monitor = (
        quality_monitor(plan, score, spec.obsrv.context.metric.problem) if score is not None and score.monitor else None
    )
    resources = resources_mapping(plan, monitor)
    score_job: dict[str, Any] | None = None
    files: dict[str, str] = {}
    if score_plan is not None:
        score_text, score_job = render_job(score_plan, options)
        files[f"{score_plan.key}.job.yml"] = score_text
        files[plan_file_name(score_plan.key)] = plan_document(score_plan)
    if verify:
        verify_job(job)
        if score_job is not None:
            verify_job(score_job)
        verify_resources(resources)
    plan_text = plan_document(plan)
    files.update({
        f"{plan.key}.job.yml": text,
        resources_file_name(plan.key): header(plan, options) + to_yaml(resources),
        plan_file_name(plan.key): plan_text,
    })
    if uses_shim(plan, options):
        files[SHIM_FILE] = render_shim()
    return CompileResult(
        job_key=plan.key,
        files=files,
        job=job,
        source=doc.file,
        warnings=tuple(warnings),
        resources=resources,
        plan=json.loads(plan_text),
        uses_gpu="gpu" in plan.environments,
        output=plan.output,
        source_schema=(spec.obsrv.context.source.catalog, spec.obsrv.context.source.schema_),
        score_job_key=score_plan.key if score_plan is not None else None,
        score_job=score_job,
    )


def compile_files(
    paths: Sequence[str | Path],
    *,
    gpu_runner: str = DEFAULT_GPU_RUNNER,
    output_dir: str | Path | None = None,
    root: Path | None = None,
    verify: bool = True,
) -> list[CompileResult]:
    """Compile every spec; raise one SpecError listing the errors of all of them."""
    results: list[CompileResult] = []
    diagnostics: list[Diagnostic] = []
    unique = {str(Path(p).resolve()): p for p in paths}  # `obsrv compile a.yaml a.yaml` is one spec
    for path in unique.values():
        try:
            results.append(
                compile_file(path, gpu_runner=gpu_runner, output_dir=output_dir, root=root, verify=verify)
            )
        except SpecError as error:
            diagnostics += error.diagnostics
    # Two specs with one job name would overwrite each other's file and bundle resource.
    owners: dict[str, CompileResult] = {}
    # every job name a spec compiles (its training job, and `<name>_score` with a score block)
    names: dict[str, tuple[CompileResult, str]] = {}
    for result in results:
        owners.setdefault(result.job_key.lower(), result)
        jobs = [(result.job_key, "job")]
        if result.score_job_key is not None:
            jobs.append((result.score_job_key, "scoring job"))
        for key, kind in jobs:
            first, first_kind = names.setdefault(key.lower(), (result, kind))
            if first is not result:
                diagnostics.append(
                    Diagnostic(
                        "OBS208",
                        f"{'job name' if kind == 'job' else 'the scoring job'} `{key}` is also the name of the "
                        f"{first_kind} in {first.source}; both would compile to the same bundle file",
                        result.source,
                        fix="give one of the two specs another `context.name`",
                    )
                )
    # Each job declares its output schema as a bundle resource; the CLI rejects two resources for
    # one schema (two creates of one UC object), and two jobs would share one dev copy.
    schema_owners: dict[tuple[str, str], CompileResult] = {}
    for result in results:
        if owners[result.job_key.lower()] is not result:
            continue  # already reported as a duplicate job name (OBS208)
        output = result.output
        if output == result.source_schema:
            diagnostics.append(
                Diagnostic(
                    "OBS211",
                    f"the output schema {output[0]}.{output[1]} of job `{result.job_key}` is its source's schema, "
                    "but the bundle creates and owns the output schema: the deploy would fail (the schema exists)",
                    result.source,
                    fix="give `context.output.schema` another schema (default: the job's name)",
                )
            )
            continue
        first = schema_owners.setdefault((output[0].lower(), output[1].lower()), result)
        if first is not result:
            diagnostics.append(
                Diagnostic(
                    "OBS211",
                    f"job `{result.job_key}` writes to the output schema {output[0]}.{output[1]}, as does "
                    f"`{first.job_key}` in {first.source}; each job's bundle owns its output schema",
                    result.source,
                    fix="give one of the two specs another `context.output.schema`",
                )
            )
    for result in results:
        diagnostics += result.warnings
    gpu_jobs = [r for r in results if r.uses_gpu]
    if gpu_jobs:
        # Once per compile, not per task or per job (it is a workspace setting, not a spec problem):
        # carried by the first GPU job's result, where callers collect warnings.
        preview = Diagnostic(
            "OBS407",
            f"{len(gpu_jobs)} job(s) run tasks on serverless GPU compute, a preview that a workspace "
            "admin must enable before they can run",
            gpu_jobs[0].source,
            severity="warning",
            fix="ask a workspace admin to enable serverless GPU compute (Previews page), or set "
            "`context.compute.serverless: [CPU]`",
        )
        diagnostics.append(preview)
        carrier = results.index(gpu_jobs[0])
        results[carrier] = replace(results[carrier], warnings=(*results[carrier].warnings, preview))
    if any(d.is_error for d in diagnostics):
        raise SpecError(diagnostics)
    return results


def merged_files(results: Sequence[CompileResult]) -> dict[str, str]:
    files: dict[str, str] = {}
    for result in results:
        files.update(result.files)  # the shared shim is identical in every result
    return dict(sorted(files.items()))


def stale_outputs(results: Sequence[CompileResult], output_dir: str | Path) -> list[str]:
    """Relative paths whose file in `output_dir` is missing or differs from the compiled text."""
    out = Path(output_dir)
    stale = []
    for name, text in merged_files(results).items():
        target = out / name
        try:
            current = target.read_text(encoding="utf-8")
        except OSError:
            current = None
        if current != text:
            stale.append(name)
    return stale


def _stage(out: Path, target: Path, data: bytes) -> Path:
    """Write `data` to a temp file beside `target` (same folder, so os.replace is atomic)."""
    # Keep the mode of a file being replaced; mkstemp's own 0600 would hide new files.
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=out)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_outputs(results: Sequence[CompileResult], output_dir: str | Path) -> list[tuple[str, bool]]:
    """Write every changed file, all or nothing; unchanged files are left alone.

    Every changed file is first written in full to a temp file beside its target; only when all of
    them are staged is each moved into place with os.replace. A failure while staging (a full disk,
    a read-only file) removes the temp files and leaves every old output as it was, so a job file
    and the files it refers to never come from two different compiles.

    Returns (relative path, changed) per file.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    report: list[tuple[str, bool]] = []
    pending: list[tuple[Path, bytes]] = []
    for name, text in merged_files(results).items():
        target = out / name
        data = text.encode("utf-8")
        try:
            changed = target.read_bytes() != data
        except OSError:
            changed = True
        if changed:
            pending.append((target, data))
        report.append((name, changed))
    staged: list[tuple[Path, Path]] = []
    try:
        for target, data in pending:
            staged.append((_stage(out, target, data), target))
        while staged:
            tmp, target = staged[0]
            os.replace(tmp, target)
            staged.pop(0)
    finally:
        for tmp, _ in staged:  # left over only after a failure
            tmp.unlink(missing_ok=True)
    return report
