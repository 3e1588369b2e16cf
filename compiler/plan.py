"""The typed plan (IR) between the validated spec and the emitted bundle YAML.

`build_plan` makes every decision about the job here: which tasks exist (the implicit `prepare`,
one `base_<family>` per model family, the user's tasks, `evaluate`), their dependencies, CPU or
GPU, timeouts and retries, and the exact argv each task gets. The emitter only lays the plan out
as YAML, so it never sees the raw spec and the two cannot disagree. See ARCHITECTURE.md,
"Compiled job → task contract".
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, replace
from typing import Any, Literal

from obsrv.compiler import spec as S
from obsrv.compiler.timing import MIN_TASK_TIMEOUT_SECONDS, Stage, Timing, plan_timing

Environment = Literal["cpu", "gpu"]

SPEC_VERSION = "1"
# Tags obsrv puts on every job (spec.OBSRV_TAGS names them, so the spec can reserve room for them).
OBSRV_TAG_VALUES = {"obsrv_spec_version": SPEC_VERSION}
PACKAGE_NAME = "obsrv"
ENTRY_POINT = "obsrv-task"
# The `obsrv-task` argv flags, in order (docs/bundle.md, "Compiled job → task contract"). The plan
# (context, per-task settings, upstream) is not inline: it is one file the bundle syncs, and
# `--plan` is its workspace path, so the Jobs UI shows a handful of short parameters.
ARGV_FLAGS = ("--stage", "--task-id", "--workflow-id", "--catalog", "--schema", "--plan", "--experiment", "--model")
# Default folder of the compiled files relative to the bundle root (the CLI syncs it with the rest
# of the bundle's files to `${workspace.file_path}`).
DEFAULT_PLAN_DIR = "bundle_out"
# The job parameters every compiled job has; tasks read them through `{{job.parameters.X}}`
# because positional wheel parameters do not receive job parameters by push-down.
JOB_PARAMETERS = ("catalog", "schema")
# Runs write tables suffixed with their own run id, so two runs cannot clobber each other's data,
# but evaluate moves the champion alias of one registered model: one run at a time, the rest queue.
MAX_CONCURRENT_RUNS = 1

# Stages that train models. Their time is bounded by the AutoML search itself, and a timeout is not
# retried: a search that ran out of time would only run out again, burning the rest of the job's
# budget. Search budgets and every task's timeout are planned from the critical path (timing.py).
TRAINING_STAGES = frozenset({"base", "boost", "route_cluster", "route_feature", "route_external"})
# GPU capacity shortages are the usual transient failure on serverless GPU; wait longer there.
RETRY_INTERVAL_MILLIS = {"cpu": 60_000, "gpu": 120_000}
# The final cleanup task only lists and drops tables: a short timeout (capped by the job's).
CLEANUP_TIMEOUT_SECONDS = MIN_TASK_TIMEOUT_SECONDS
# Databricks runs a task with `run_if: ALL_DONE` once all its dependencies ended, whatever their
# outcome (jobs.Task.run_if, enum jobs.RunIf in ../shared/reference/databricks_bundle_schema.json;
# ../shared/reference/databricks-bundles.md section 4): cleanup runs after a failed evaluate too.
RUN_IF_DEFAULT = "ALL_SUCCESS"

_DESCRIPTIONS = {
    "prepare": "obsrv prepare: sample the source, assign the shared folds and the holdout",
    "base": "obsrv base models: tune and cross-validate the {family} family",
    "evaluate": "obsrv evaluate: score every model on the holdout, write the leaderboard, register the champion",
    "cleanup": "obsrv cleanup: drop the intermediate tables of finished runs, keeping context.keep_runs runs",
}
# `context.holdout: 0`: nothing is held out, and evaluate scores the out-of-fold predictions
_NO_HOLDOUT_DESCRIPTIONS = {
    "prepare": "obsrv prepare: sample the source, assign the shared folds (no holdout)",
    "evaluate": "obsrv evaluate: score every model out-of-fold (no holdout), write the leaderboard, register the "
    "champion",
}


@dataclass(frozen=True)
class TaskPlan:
    key: str
    stage: str  # prepare | base | <task type> | evaluate
    depends_on: tuple[str, ...]
    environment: Environment
    timeout_seconds: int
    max_retries: int
    min_retry_interval_millis: int
    retry_on_timeout: bool
    spec_json: str  # this task's entry of the plan file: compact JSON {"task", "upstream"}, keys sorted
    upstream: tuple[str, ...]
    description: str
    budget_seconds: int = 0  # search budget planned from the critical path (timing.py); in spec_json
    run_if: str = RUN_IF_DEFAULT
    plan_path: str = ""  # `--plan`: the plan file's workspace path (a `${workspace.file_path}` reference)
    experiment: str = ""  # `--experiment`: a `${resources.experiments.<job>.name}` reference
    model: str = ""  # `--model`: a `${resources.registered_models.<job>.name}` reference
    # flags after the contract's eight (the score task's `--input {{job.parameters.input}}`)
    extra_args: tuple[tuple[str, str], ...] = ()

    @property
    def argv(self) -> tuple[str, ...]:
        """Positional `obsrv-task` parameters (ARCHITECTURE.md); `{{...}}` resolve at run time."""
        return tuple(arg for flag, value in self.named_args for arg in (flag, value))

    @property
    def named_args(self) -> tuple[tuple[str, str], ...]:
        values = (
            self.stage,
            self.key,
            "{{job.run_id}}",
            "{{job.parameters.catalog}}",
            "{{job.parameters.schema}}",
            self.plan_path,
            self.experiment,
            self.model,
        )
        return tuple(zip(ARGV_FLAGS, values)) + self.extra_args


@dataclass(frozen=True)
class Schedule:
    quartz_cron_expression: str
    timezone_id: str
    paused: bool


@dataclass(frozen=True)
class Notify:
    on_start: tuple[str, ...] = ()
    on_success: tuple[str, ...] = ()
    on_failure: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.on_start or self.on_success or self.on_failure)


@dataclass(frozen=True)
class JobPlan:
    key: str  # resource key and file name stem; also the job name
    source: str  # the spec path as written in headers (relative, '/'-separated)
    timeout_seconds: int
    tags: tuple[tuple[str, str], ...]
    parameters: tuple[tuple[str, str], ...]  # (name, default)
    schedule: Schedule | None
    email: Notify
    webhook: Notify
    accelerator: str
    tasks: tuple[TaskPlan, ...]
    max_concurrent_runs: int = MAX_CONCURRENT_RUNS
    timing: Timing | None = None  # the critical-path plan the budgets and timeouts come from
    context: dict[str, Any] | None = None  # the validated context, as the plan file carries it
    output: tuple[str, str] = ("", "")  # the spec's output (catalog, schema): prod writes there
    kind: Literal["train", "score"] = "train"  # the training job, or the batch-scoring job `<name>_score`

    @property
    def environments(self) -> tuple[Environment, ...]:
        """`cpu` always (prepare runs there); `gpu` only when some task uses it."""
        used = {t.environment for t in self.tasks}
        return tuple(env for env in ("cpu", "gpu") if env in used)

    def task(self, key: str) -> TaskPlan:
        return next(t for t in self.tasks if t.key == key)


# ------------------------------------------------------------------------------------ decisions


def base_environment(ctx: S.Context, family: str) -> Environment:
    """Only families with a CUDA mode go to GPU, and only when the context allows GPU."""
    return "gpu" if ctx.compute.gpu and family in S.GPU_FAMILIES else "cpu"


def task_environment(ctx: S.Context, task: Any) -> Environment:
    """A per-task `compute` wins; otherwise boosting and per-route training use GPU when allowed,
    and combiners (stack, vote) stay on CPU: they fit small meta-models on predictions."""
    if task.compute is not None:
        return "gpu" if task.compute == "GPU" else "cpu"
    trains = task.task == "boost" or task.task.startswith("route_")
    return "gpu" if ctx.compute.gpu and trains else "cpu"


def _task_doc(task: Any) -> str:
    """The task type's one-line description from the spec model (also its JSON Schema doc)."""
    doc = type(task).model_fields["task"].description or ""
    return doc[:1].lower() + doc[1:].rstrip(".")


def _stage_class(stage: str) -> str:
    if stage in ("prepare", "evaluate", "cleanup"):
        return "evaluate" if stage == "cleanup" else stage
    return "training" if stage in TRAINING_STAGES else "combiner"


def _spec_json(context: dict[str, Any], task: dict[str, Any], upstream: tuple[str, ...], budget: int = 0) -> str:
    """One task's entry of the plan file (the shared context is written once, at the top)."""
    del context  # kept in the signature: the context goes to the plan file once, not per task
    payload = {"task": task, "upstream": list(upstream), "budget_seconds": budget}
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _with_timing(tasks: list[TaskPlan], ctx: S.Context, overrides: dict[str, int]) -> tuple[list[TaskPlan], Timing]:
    """Every task with the timeout and search budget planned from the job's critical path."""
    stages = [Stage(t.key, t.stage, t.environment, t.depends_on, overrides.get(t.key)) for t in tasks]
    timing = plan_timing(stages, ctx.timeout)
    timed = []
    for task in tasks:
        payload = json.loads(task.spec_json)
        budget = timing.budgets[task.key]
        spec_json = _spec_json({}, payload["task"], tuple(payload["upstream"]), budget)
        timed.append(
            dataclasses.replace(
                task, timeout_seconds=timing.timeouts[task.key], budget_seconds=budget, spec_json=spec_json
            )
        )
    return timed, timing


def plan_file_name(job_key: str) -> str:
    return f"{job_key}.plan.json"


def experiment_reference(job_key: str) -> str:
    """The experiment's name as the CLI resolves it at deploy time (dev mode prefixes it)."""
    return "${resources.experiments." + job_key + ".name}"


def model_reference(job_key: str) -> str:
    """The champion model's name within the output schema as deployed (dev mode prefixes it)."""
    return "${resources.registered_models." + job_key + ".name}"


def plan_document(plan: "JobPlan") -> str:
    """The plan file's text: the context once, then every task's settings and upstream by task key.

    Deterministic (sorted keys, compact separators, one trailing newline), so `compile --check`
    can compare it byte for byte."""
    tasks = {task.key: json.loads(task.spec_json) for task in plan.tasks}
    payload = {"context": plan.context, "job": plan.key, "tasks": tasks, "version": 1}
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def _user_order(tasks: list[Any]) -> list[Any]:
    """Topological order of the user's tasks; ties keep the order of the spec (deterministic)."""
    pending = {t.task_id: {d.task for d in t.depends_on} for t in tasks}
    done: set[str] = set()
    ordered: list[Any] = []
    while len(ordered) < len(tasks):
        ready = next(t for t in tasks if t.task_id not in done and pending[t.task_id] <= done)
        ordered.append(ready)
        done.add(ready.task_id)
    return ordered


def _make_task(
    ctx: S.Context,
    context_dump: dict[str, Any],
    key: str,
    stage: str,
    depends_on: tuple[str, ...],
    environment: Environment,
    task_dump: dict[str, Any],
    upstream: tuple[str, ...],
    description: str,
    timeout: int | None = None,
    retries: int | None = None,
) -> TaskPlan:
    return TaskPlan(
        key=key,
        stage=stage,
        depends_on=depends_on,
        environment=environment,
        timeout_seconds=timeout if timeout is not None else ctx.timeout,  # planned in _with_timing
        max_retries=retries if retries is not None else ctx.retries,
        min_retry_interval_millis=RETRY_INTERVAL_MILLIS[environment],
        retry_on_timeout=_stage_class(stage) in ("combiner", "evaluate"),
        spec_json=_spec_json(context_dump, task_dump, upstream),
        upstream=upstream,
        description=description,
    )


def build_plan(spec: S.SpecFile, *, source: str, plan_dir: str = DEFAULT_PLAN_DIR) -> JobPlan:
    """The whole job for one validated spec. `source` is the spec path shown in the header;
    `plan_dir` is the output folder relative to the bundle root (where the plan file is synced)."""
    ctx = spec.obsrv.context
    context_dump = ctx.model_dump(mode="json", by_alias=True)
    descriptions = {**_DESCRIPTIONS, **(_NO_HOLDOUT_DESCRIPTIONS if ctx.holdout == 0 else {})}
    tasks: list[TaskPlan] = [
        _make_task(ctx, context_dump, "prepare", "prepare", (), "cpu", {}, (), descriptions["prepare"])
    ]
    base_keys = tuple(f"{S.RESERVED_TASK_PREFIX}{family}" for family in S.MODEL_FAMILIES)
    for family, key in zip(S.MODEL_FAMILIES, base_keys):
        tasks.append(
            _make_task(
                ctx,
                context_dump,
                key,
                "base",
                ("prepare",),
                base_environment(ctx, family),
                {"family": family},
                (),
                _DESCRIPTIONS["base"].format(family=family),
            )
        )
    user_keys: list[str] = []
    for task in _user_order(list(spec.obsrv.job)):
        direct = tuple(d.task for d in task.depends_on)
        dump = {**task.model_dump(mode="json", by_alias=True), "id": task.task_id}
        user_keys.append(task.task_id)
        tasks.append(
            _make_task(
                ctx,
                context_dump,
                task.task_id,
                task.task,
                base_keys + direct,
                task_environment(ctx, task),
                dump,
                tuple(sorted({*base_keys, *direct})),
                f"obsrv {task.task}: {_task_doc(task)}",
                timeout=task.timeout,
                retries=task.retries,
            )
        )
    everything = base_keys + tuple(user_keys)
    tasks.append(
        _make_task(
            ctx,
            context_dump,
            "evaluate",
            "evaluate",
            everything,
            "cpu",
            {},
            tuple(sorted(everything)),
            descriptions["evaluate"],
        )
    )
    tasks.append(
        replace(
            _make_task(
                ctx,
                context_dump,
                "cleanup",
                "cleanup",
                ("evaluate",),
                "cpu",
                {},
                (),
                _DESCRIPTIONS["cleanup"],
                timeout=min(ctx.timeout, CLEANUP_TIMEOUT_SECONDS),
            ),
            run_if="ALL_DONE",
        )
    )
    overrides = {t.task_id: t.timeout for t in spec.obsrv.job if t.timeout is not None}
    # cleanup only drops tables: a short timeout of its own, not a share of the critical path's slack
    overrides["cleanup"] = min(ctx.timeout, CLEANUP_TIMEOUT_SECONDS)
    tasks, timing = _with_timing(tasks, ctx, overrides)
    notifications = ctx.notifications
    schedule = ctx.schedule
    return JobPlan(
        key=ctx.name,
        source=source,
        timeout_seconds=ctx.timeout,
        tags=tuple(sorted({**ctx.tags, **OBSRV_TAG_VALUES}.items())),
        # Deploy-time references to the job's own output schema resource: in development mode the
        # CLI prefixes the schema's name (apply_presets.go, "Schemas: Prefix"), and the reference
        # resolves to that prefixed name, so dev runs write to the developer's own schema.
        parameters=(
            ("catalog", "${resources.schemas." + ctx.name + ".catalog_name}"),
            ("schema", "${resources.schemas." + ctx.name + ".name}"),
        ),
        schedule=(
            Schedule(schedule.cron, schedule.timezone, schedule.paused) if schedule is not None else None
        ),
        email=Notify(
            tuple(notifications.email.on_start),
            tuple(notifications.email.on_success),
            tuple(notifications.email.on_failure),
        ),
        webhook=Notify(
            tuple(notifications.webhook.on_start),
            tuple(notifications.webhook.on_success),
            tuple(notifications.webhook.on_failure),
        ),
        accelerator=ctx.compute.accelerator,
        tasks=tuple(_with_plan_args(task, ctx.name, plan_dir) for task in tasks),
        timing=timing,
        context=context_dump,
        output=(ctx.output_catalog, ctx.deployed_output_schema),
    )


def _with_plan_args(task: TaskPlan, job_key: str, plan_dir: str) -> TaskPlan:
    # `${workspace.file_path}` is where the CLI syncs the bundle's files (DefineDefaultWorkspacePaths:
    # `<root_path>/files`, a /Workspace path after PrependWorkspacePrefix), so the synced plan file
    # sits at this path; tasks read workspace files by their /Workspace path
    # (https://docs.databricks.com/aws/en/files/workspace-interact, "Read data workspace files").
    # The local runner maps it to its own copy of the compiled files (service_tasks/local/bundle_values.py).
    folder = plan_dir.strip("/")
    path = "${workspace.file_path}/" + (f"{folder}/" if folder and folder != "." else "") + plan_file_name(job_key)
    return replace(task, plan_path=path, experiment=experiment_reference(job_key), model=model_reference(job_key))


# ------------------------------------------------------------------------------- the score job

SCORE_TASK_KEY = "score"
# The score job's own parameter: the comma-separated input tables (default: `score.input`), so a run
# can score another table without a recompile (`obsrv score --table`, or "Run now with parameters").
SCORE_INPUT_PARAMETER = "input"
_SCORE_DESCRIPTION = (
    "obsrv score: apply models:/<model>@champion to the input table(s), write prediction, probabilities, "
    "model version and scored_at"
)


def score_job_key(job_key: str) -> str:
    return job_key + S.SCORE_JOB_SUFFIX


def build_score_plan(spec: S.SpecFile, train: JobPlan, *, plan_dir: str = DEFAULT_PLAN_DIR) -> JobPlan | None:
    """The batch-scoring job for a spec with a `score` block (None without one).

    It shares the training job's output schema, experiment and champion model: its catalog/schema
    parameters and its `--experiment`/`--model` are the same bundle references, so every target
    scores with its own champion into its own schema."""
    score = spec.obsrv.score
    if score is None:
        return None
    ctx = spec.obsrv.context
    key = score_job_key(ctx.name)
    payload = {
        "task": {
            "score": score.model_dump(mode="json", by_alias=True),
            "output_table": score.output_table,
            "baseline_table": score.baseline_table,
        },
        "upstream": [],
        "budget_seconds": 0,
    }
    task = TaskPlan(
        key=SCORE_TASK_KEY,
        stage=SCORE_TASK_KEY,
        depends_on=(),
        environment="cpu",
        timeout_seconds=ctx.timeout,
        max_retries=ctx.retries,
        min_retry_interval_millis=RETRY_INTERVAL_MILLIS["cpu"],
        retry_on_timeout=True,  # scoring is idempotent: the output is replaced in one commit
        spec_json=json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        upstream=(),
        description=_SCORE_DESCRIPTION,
        extra_args=(("--" + SCORE_INPUT_PARAMETER, "{{job.parameters." + SCORE_INPUT_PARAMETER + "}}"),),
    )
    folder = plan_dir.strip("/")
    path = "${workspace.file_path}/" + (f"{folder}/" if folder and folder != "." else "") + plan_file_name(key)
    task = replace(task, plan_path=path, experiment=experiment_reference(ctx.name), model=model_reference(ctx.name))
    schedule = score.schedule
    return replace(
        train,
        key=key,
        parameters=(*train.parameters, (SCORE_INPUT_PARAMETER, ",".join(score.input))),
        schedule=Schedule(schedule.cron, schedule.timezone, schedule.paused) if schedule is not None else None,
        tasks=(task,),
        timing=None,
        kind="score",
    )
