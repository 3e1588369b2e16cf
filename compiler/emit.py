"""Lay a `JobPlan` out as a bundle resource file (`bundle_out/<job>.job.yml`).

The output must be byte-for-byte reproducible (golden tests, `obsrv compile --check`), so:
keys are written in one fixed order, lists keep the plan's order, there are no timestamps or
absolute paths, and YAML anchors are never used. Strings that YAML could misread (`"4"`,
`{{job.run_id}}`, JSON) are quoted; numbers and booleans are real ints and bools, because the
bundle schema checks scalar types strictly.

`verify_job` checks the emitted mapping with databricks-bundles' typed `Job.from_dict`, which
rejects unknown fields, bad enums and wrong shapes. It is imported lazily: the library costs
~110 ms to import, more than the rest of a compile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from obsrv.compiler.environments import pinned_requirements
from obsrv.compiler.spec import SCORE_JOB_SUFFIX
from obsrv.compiler.plan import ARGV_FLAGS, ENTRY_POINT, PACKAGE_NAME, RUN_IF_DEFAULT, JobPlan, Notify, TaskPlan

GpuRunner = Literal["wheel", "notebook"]
GPU_RUNNERS: tuple[GpuRunner, ...] = ("wheel", "notebook")
# Databricks documents serverless GPU for notebook tasks (and `ai_runtime_task`), not for wheel
# tasks (../shared/reference/databricks-bundles.md §2.1), so GPU stages run through the generated
# notebook shim by default; `--gpu-runner wheel` is the explicit opt-in to the undocumented shape.
DEFAULT_GPU_RUNNER: GpuRunner = "notebook"
ENVIRONMENT_VERSION = "4"
# The notebook shim written next to the job files when GPU tasks run as notebooks.
SHIM_FILE = "obsrv_task_notebook.py"
SHIM_TEMPLATE = "notebook_shim.py.tmpl"
# Where the notebook shim looks for the wheel when the serverless GPU environment did not install
# it from `dependencies` (unverified on Databricks; see ../shared/reference/databricks-bundles.md §9): the bundle's artifact folder.
SHIM_WHEEL_GLOB = "${workspace.artifact_path}/.internal/obsrv-*.whl"
# base_parameters keys of the shim, in argv order: `--task-id` is passed as `task_id`.
SHIM_PARAMETERS = tuple(flag.removeprefix("--").replace("-", "_") for flag in ARGV_FLAGS)


@dataclass(frozen=True)
class EmitOptions:
    gpu_runner: GpuRunner = DEFAULT_GPU_RUNNER
    # The wheel glob as seen from the output folder (relative paths resolve from the YAML file).
    wheel_glob: str = "../dist/*.whl"
    # The command that regenerates this file, for the header.
    regenerate: str = ""


def _task(task: TaskPlan, plan: JobPlan, options: EmitOptions) -> dict[str, Any]:
    out: dict[str, Any] = {"task_key": task.key, "description": task.description}
    if task.depends_on:
        out["depends_on"] = [{"task_key": key} for key in task.depends_on]
    if task.run_if != RUN_IF_DEFAULT:
        out["run_if"] = task.run_if
    out["environment_key"] = task.environment
    if task.environment == "gpu":
        out["compute"] = {"hardware_accelerator": plan.accelerator}
    out["timeout_seconds"] = task.timeout_seconds
    out["max_retries"] = task.max_retries
    out["min_retry_interval_millis"] = task.min_retry_interval_millis
    out["retry_on_timeout"] = task.retry_on_timeout
    # Serverless auto-optimization retries failed tasks on its own; obsrv wants exactly the
    # retries the spec asked for.
    out["disable_auto_optimization"] = True
    if task.environment == "gpu" and options.gpu_runner == "notebook":
        parameters = {name: value for name, (_, value) in zip(SHIM_PARAMETERS, task.named_args)}
        parameters["wheel"] = SHIM_WHEEL_GLOB
        out["notebook_task"] = {"notebook_path": f"./{SHIM_FILE}", "base_parameters": parameters}
    else:
        out["python_wheel_task"] = {
            "package_name": PACKAGE_NAME,
            "entry_point": ENTRY_POINT,
            "parameters": list(task.argv),
        }
    return out


def _notifications(notify: Notify, wrap: bool) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for event in ("on_start", "on_success", "on_failure"):
        targets = getattr(notify, event)
        if targets:
            out[event] = [{"id": t} for t in targets] if wrap else list(targets)
    return out


def job_mapping(plan: JobPlan, options: EmitOptions) -> dict[str, Any]:
    """The `resources.jobs.<key>` mapping, keys in the order they are written."""
    job: dict[str, Any] = {
        "name": plan.key,
        "description": (
            f"obsrv batch scoring with the champion of {plan.key.removesuffix(SCORE_JOB_SUFFIX)}, compiled from {plan.source}"
            if plan.kind == "score"
            else f"obsrv workflow compiled from {plan.source}"
        ),
        "tags": dict(plan.tags),
        "parameters": [{"name": name, "default": default} for name, default in plan.parameters],
        "max_concurrent_runs": plan.max_concurrent_runs,
        "queue": {"enabled": True},
        "timeout_seconds": plan.timeout_seconds,
    }
    if plan.schedule is not None:
        job["schedule"] = {
            "quartz_cron_expression": plan.schedule.quartz_cron_expression,
            "timezone_id": plan.schedule.timezone_id,
        }
        # Only an explicit `paused: true` is written. Left unset, `mode: development` pauses the
        # schedule and `mode: production` runs it; an explicit UNPAUSED would keep every
        # developer's copy of a nightly job live (apply_presets.go sets pause_status only when it
        # is empty).
        if plan.schedule.paused:
            job["schedule"]["pause_status"] = "PAUSED"
    if plan.email:
        job["email_notifications"] = _notifications(plan.email, wrap=False)
    if plan.webhook:
        job["webhook_notifications"] = _notifications(plan.webhook, wrap=True)
    job["environments"] = [
        {
            "environment_key": env,
            # The same pins in every environment (compiler/environments.py): GPU-trained pickles
            # are loaded on CPU.
            "spec": {
                "environment_version": ENVIRONMENT_VERSION,
                "dependencies": [options.wheel_glob, *pinned_requirements()],
            },
        }
        for env in plan.environments
    ]
    job["tasks"] = [_task(task, plan, options) for task in plan.tasks]
    return job


# Strings written without quotes: a conservative set that YAML cannot misread in block context
# (no `: `, ` #`, flow indicators or leading indicators). Whether such a string would resolve to a
# bool/int/float/null is then asked of PyYAML's own resolver.
_PLAIN = re.compile(r"(?:[A-Za-z0-9_./]|-(?=[-A-Za-z]))[A-Za-z0-9_./@*+=-]*(?: [A-Za-z0-9_./@*+=-]+)*")
# What may stand inside single quotes: printable characters that YAML does not treat as line
# breaks (U+2028/2029) or byte-order marks.
_PRINTABLE = re.compile(r"[\x20-\x7e\u00a0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]*")
_STR_TAG = "tag:yaml.org,2002:str"
_RESOLVER = yaml.resolver.Resolver()


def scalar(value: object) -> str:
    """One YAML scalar: plain when unambiguous, else quoted (escaping only what must be)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and _RESOLVER.resolve(yaml.ScalarNode, text, (True, False)) == _STR_TAG:
        return text
    if _PRINTABLE.fullmatch(text):
        if '"' not in text and "\\" not in text:
            return f'"{text}"'  # as the Databricks docs write them: environment_version: "4"
        # Single quotes escape nothing but themselves (doubled), which keeps the --spec JSON readable.
        return "'" + text.replace("'", "''") + "'"
    return _double_quoted(text)


def _double_quoted(text: str) -> str:
    """A YAML double-quoted scalar; escapes what YAML would otherwise fold, strip or reject."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif code < 0x20 or 0x7F <= code <= 0x9F or code in (0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF) or (
            0xD800 <= code <= 0xDFFF
        ):
            out.append(f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _inline(value: object) -> str:
    if isinstance(value, dict) and not value:
        return "{}"
    if isinstance(value, list) and not value:
        return "[]"
    return scalar(value)


def _block(value: Any, indent: int, out: list[str]) -> None:
    """Block-style YAML, list items indented under their key (as the bundle templates write it)."""
    pad = " " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                out.append(f"{pad}{scalar(key)}:")
                _block(item, indent + 2, out)
            else:
                out.append(f"{pad}{scalar(key)}: {_inline(item)}")
        return
    for item in value:
        if isinstance(item, (dict, list)) and item:
            nested: list[str] = []
            _block(item, indent + 2, nested)
            out.append(f"{pad}- {nested[0][indent + 2:]}")
            out.extend(nested[1:])
        else:
            out.append(f"{pad}- {_inline(item)}")


def to_yaml(document: dict[str, Any]) -> str:
    """YAML text for plain data (dicts, lists, str, int, bool), in the dicts' key order.

    Our own emitter rather than `yaml.dump`: PyYAML's pure-Python emitter inspects every
    character of every scalar, which made a 200-task job take most of a second (the --spec JSON
    alone is ~1 KB per task); libyaml's cannot indent lists under their key. The tests check that
    `yaml.safe_load` reads every emitted file back to exactly the data written.
    """
    out: list[str] = []
    _block(document, 0, out)
    return "\n".join(out) + "\n"


def header(plan: JobPlan, options: EmitOptions) -> str:
    lines = [
        f"# Generated by obsrv from {plan.source}. Do not edit: the next compile overwrites it.",
        f"# Regenerate: {options.regenerate}" if options.regenerate else "",
        "# The compiled job: prepare -> base_<family> (in parallel) -> your tasks -> evaluate -> cleanup."
        if plan.kind == "train"
        else "# The compiled scoring job: one task that applies the champion to the input table(s).",
    ]
    return "".join(line + "\n" for line in lines if line)


def render_job(plan: JobPlan, options: EmitOptions) -> tuple[str, dict[str, Any]]:
    """The job file's text and its `resources.jobs.<key>` mapping."""
    job = job_mapping(plan, options)
    document = {"resources": {"jobs": {plan.key: job}}}
    return header(plan, options) + to_yaml(document), job


def uses_shim(plan: JobPlan, options: EmitOptions) -> bool:
    return options.gpu_runner == "notebook" and "gpu" in plan.environments


def render_shim() -> str:
    """The Databricks notebook that runs one task through the `obsrv-task` entry point."""
    # string.Template, not Jinja: GPU jobs render the shim on every compile, and the compile path
    # stays free of heavy imports (a test checks it). `substitute` raises on a missing name.
    from importlib.resources import files
    from string import Template

    template = Template(files("obsrv.templates").joinpath(SHIM_TEMPLATE).read_text(encoding="utf-8"))
    parameters = "\n".join(f'    ("{name}", "{flag}"),' for name, flag in zip(SHIM_PARAMETERS, ARGV_FLAGS))
    return template.substitute(parameters=parameters, entry_point=ENTRY_POINT, package=PACKAGE_NAME)


class EmitError(AssertionError):
    """The emitter produced a job databricks-bundles rejects: a bug in obsrv, not in the spec."""


class MissingExtraError(RuntimeError):
    """databricks-bundles (the `cli` extra) is not installed; the typed self-check needs it."""


def require_databricks_bundles() -> None:
    try:
        import databricks.bundles.jobs  # noqa: F401
    except ImportError as error:
        raise MissingExtraError(
            "the typed bundle check (--check/--verify) needs databricks-bundles: pip install 'obsrv[cli]', "
            "or compile with --no-verify"
        ) from error


def verify_job(job: dict[str, Any]) -> None:
    require_databricks_bundles()
    from databricks.bundles.jobs import Job

    try:
        Job.from_dict(job)
    except (TypeError, ValueError, KeyError) as error:
        raise EmitError(f"databricks-bundles rejects the emitted job: {error}") from error
