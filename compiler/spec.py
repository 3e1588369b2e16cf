"""The typed obsrv spec (format version 1).

One pydantic model per concept, `extra="forbid"` everywhere, and one model per task type joined in a
discriminated union on `task`. Field descriptions double as the JSON Schema docs (`obsrv schema`).

The same models are used on both sides: the compiler validates the user's YAML with them, and every
service task re-validates the JSON slice it is handed, so the two can never drift apart.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator, model_validator
from pydantic_core import PydanticCustomError

# Databricks/UC names are used unquoted in table names, task keys and model names, so obsrv accepts
# only the portable subset. Anything else (quotes, dots, spaces, backticks) could break a
# three-level name or smuggle SQL into a statement.
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
IDENTIFIER_RE = re.compile(IDENTIFIER_PATTERN)
MAX_IDENTIFIER_LENGTH = 255
# Task ids end up inside output table names together with the source table and the run id, so they
# are kept short.
MAX_TASK_ID_LENGTH = 64
# Stage ids that the compiler adds itself; a user task may not take them.
RESERVED_TASK_IDS = frozenset({"prepare", "evaluate", "cleanup"})
RESERVED_TASK_PREFIX = "base_"
# Databricks allows 25 tags on a job; the compiler adds its own `obsrv_*` tags (see
# compiler/plan.py), so users get the rest and may not use that prefix.
MAX_JOB_TAGS = 25
RESERVED_TAG_PREFIX = "obsrv_"
OBSRV_TAGS = ("obsrv_spec_version",)
# `mode: development` adds a `dev: <user>` tag to every job (databricks/cli
# bundle/config/mutator/resourcemutator/apply_target_mode.go, then apply_presets.go), so a job
# that had 25 tags would have 26 in dev and be rejected there.
DEV_MODE_TAGS = ("dev",)
MAX_USER_TAGS = MAX_JOB_TAGS - len(OBSRV_TAGS) - len(DEV_MODE_TAGS)
# The holdout an unwritten `context.holdout` gets with time folds (0 with every other fold type).
TIME_FOLDS_HOLDOUT = 0.2
# `context.folds: auto` (the default) is resolved by prepare from the training rows it sees (the
# compiler cannot know them). Up to AUTO_FOLDS_LARGE_ROWS it follows AutoGluon 1.6's fold curve,
# DEFAULT_VALIDATION_SIZE_CURVES["num_bag_folds"] = [[59, 5], [69, 6], [79, 7], 8] in
# autogluon/tabular/configs/pipeline_presets.py: 5 folds on tiny tables (so each fold's rows stay
# representative), 8 from 80 rows (each model trains on 7/8 of the rows instead of 4/5).
AUTO_FOLDS: Literal["auto"] = "auto"
AUTO_FOLDS_CURVE: tuple[tuple[int, int], ...] = ((59, 5), (69, 6), (79, 7))
AUTO_FOLDS_MAX = 8
# Above this many training rows `auto` gives AUTO_FOLDS_LARGE folds. A cost choice, not a measured
# one (no quality-benchmark set is this large): 8 folds fit 8/5 as many models for 7.5 % more rows
# per model, where a learning curve is flat. AutoGluon's own reason for stopping at 8 is cores per CPU.
AUTO_FOLDS_LARGE_ROWS = 100_000
AUTO_FOLDS_LARGE = 5
# Fewest folds a fold plan can have: one to predict, one to train on.
MIN_FOLDS = 2
MAX_FOLDS = 20
# The job name is also the key of the job's bundle resources, written into `${resources.<type>.<key>.*}`
# references, and one path segment of such a reference must match the CLI's BaseVarDef
# `\p{L}+([-_]*[\p{L}\p{N}]+)*` (databricks/cli libs/dyn/dynvar/ref.go): a letter first, no
# trailing underscore. (`\p{L}` narrowed to ASCII letters: job names are ASCII identifiers anyway.)
JOB_NAME_PATTERN = r"^[A-Za-z]+(_*[A-Za-z0-9]+)*$"

# The Literal types are the one source; the tuples are read from them, so the two cannot drift.
Problem = Literal["classification", "regression"]
ClassificationMetric = Literal["accuracy", "f1", "auc", "logloss", "precision", "recall"]
RegressionMetric = Literal["rmse", "mae", "r2"]
PROBLEMS: tuple[Problem, ...] = get_args(Problem)
CLASSIFICATION_METRICS: tuple[ClassificationMetric, ...] = get_args(ClassificationMetric)
REGRESSION_METRICS: tuple[RegressionMetric, ...] = get_args(RegressionMetric)
Accelerator = Literal["GPU_1xA10", "GPU_1xH100", "GPU_8xH100"]
BoostAlgorithm = Literal["gbm", "xgboost", "lightgbm", "catboost"]
ACCELERATORS: tuple[Accelerator, ...] = get_args(Accelerator)
BOOST_ALGORITHMS: tuple[BoostAlgorithm, ...] = get_args(BoostAlgorithm)
# The base-model zoo. The compiler fans it out as one `base_<family>` task per family so that
# Workflows trains them side by side; the runtime implements each family.
MODEL_FAMILIES = (
    "linear",
    "random_forest",
    "extra_trees",
    "hist_gbm",
    "xgboost",
    "lightgbm",
    "catboost",
    "knn",
)
# Families with a GPU mode: their fits use a visible CUDA device (`boost` and the zoo's placement).
GPU_CAPABLE_FAMILIES = ("xgboost", "lightgbm", "catboost")
# Families whose base task runs on serverless GPU when the context allows it. LightGBM has a CUDA
# mode, but it was slower than its CPU mode when measured (benchmarks/results/), so its base task
# stays on CPU.
GPU_FAMILIES = ("xgboost", "catboost")

TASK_TYPES = (
    "route_cluster",
    "route_feature",
    "route_external",
    "stack_top_any",
    "stack_top_alg",
    "stack_blend",
    "stack_classwise",
    "boost",
    "vote_top_alg",
    "vote_mix",
    "vote_weight",
)
TASK_FAMILY_BLOCK = {
    "route_cluster": "route",
    "route_feature": "route",
    "route_external": "route",
    "stack_top_any": "stack",
    "stack_top_alg": "stack",
    "stack_blend": "stack",
    "stack_classwise": "stack",
    "boost": "boost",
    "vote_top_alg": "vote",
    "vote_mix": "vote",
    "vote_weight": "vote",
}

# One Quartz cron field: numbers, month/day names, and the special characters Quartz knows.
_QUARTZ_FIELD = re.compile(r"^[0-9A-Za-z*?,/#-]+$")
_DURATION_PART = re.compile(
    r"(\d+)\s*(hours?|hrs?|h|minutes?|mins?|m|seconds?|secs?|s)(?![a-z])", re.IGNORECASE
)


def parse_duration(value: Any) -> int:
    """Seconds in `15 minutes`, `1h30m`, `90s`, `2 hours` or a plain integer number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or text such as '15 minutes'")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            seconds = int(text)
        else:
            pos, seconds = 0, 0
            compact = re.sub(r"\s+", " ", text)
            for match in _DURATION_PART.finditer(compact):
                if compact[pos:match.start()].strip():
                    break
                amount, unit = int(match.group(1)), match.group(2).lower()
                seconds += amount * (3600 if unit.startswith("h") else 60 if unit.startswith("m") else 1)
                pos = match.end()
            if pos == 0 or compact[pos:].strip():
                raise ValueError(
                    f"cannot read {value!r} as a duration; write e.g. '15 minutes', '1h30m', '90s' or 900"
                )
    else:
        raise ValueError("a duration must be a number of seconds or text such as '15 minutes'")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def _one_or_many(value: Any) -> Any:
    """The seed writes `serverless: [GPU]` and `method: [stratified]`; a scalar means the same."""
    return [value] if isinstance(value, (str, int)) and not isinstance(value, bool) else value


def _single(value: Any) -> Any:
    """Unwrap a one-element list (`fold_type: [stratified]`) to its element."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    if isinstance(value, list):
        raise ValueError("give exactly one value here")
    return value


def _scalar_or_list(item: Any) -> BeforeValidator:
    """Accept `item` or a list of them; the JSON Schema documents both forms (`obsrv schema`)."""
    return BeforeValidator(_one_or_many, json_schema_input_type=Union[item, list[item]])


def _one_of_list(item: Any) -> BeforeValidator:
    """Accept `item` or a one-element list of it (the seed writes `fold_type: [stratified]`)."""
    return BeforeValidator(_single, json_schema_input_type=Union[item, Annotated[list[item], Field(max_length=1)]])


Duration = Annotated[
    int,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "examples": ["15 minutes", "1h30m", "90s", "2 hours", "900"]},
            ]
        }
    ),
]


def _fold_setting(value: Any) -> Any:
    """`auto` or a whole number of folds in range, checked here rather than by an `int | "auto"`
    union, which would report one error per arm (`not allowed` and `must be at least 2`)."""
    if value == AUTO_FOLDS:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("give a whole number of folds or `auto`; write e.g. `folds: 8` or `folds: auto`")
    if value < MIN_FOLDS:
        raise PydanticCustomError("greater_than_equal", "Input should be greater than or equal to {ge}", {"ge": MIN_FOLDS})
    if value > MAX_FOLDS:
        raise PydanticCustomError("less_than_equal", "Input should be less than or equal to {le}", {"le": MAX_FOLDS})
    return value


FoldSetting = Annotated[
    Union[int, Literal["auto"]],
    BeforeValidator(_fold_setting),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": MIN_FOLDS, "maximum": MAX_FOLDS}, {"const": AUTO_FOLDS}]}
    ),
]
Identifier = Annotated[
    str,
    Field(pattern=IDENTIFIER_PATTERN, max_length=MAX_IDENTIFIER_LENGTH),
]


class StrictModel(BaseModel):
    """Base of every spec model: unknown keys are errors, values are immutable once validated.

    `defer_build`: pydantic otherwise builds a validator for every one of the ~40 models at import
    time, although a compile only ever validates through `SpecFile` (and a task only through the
    slice it is handed). Deferring builds each validator on first use and keeps `obsrv compile`
    fast; behaviour is unchanged.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


# --------------------------------------------------------------------------------------- context


class Compute(StrictModel):
    serverless: Annotated[
        list[Literal["CPU", "GPU"]], _scalar_or_list(Literal["CPU", "GPU"]), Field(min_length=1)
    ] = Field(
        default=["CPU"],
        description="Serverless compute kinds the job may use: CPU, GPU, or both. With GPU, only the "
        "GPU-capable stages (gradient-boosting base models, boost, per-route training) run on GPU; "
        "prepare, combiners and evaluate always run on serverless CPU.",
    )
    accelerator: Accelerator = Field(
        default="GPU_1xA10",
        description="compute.hardware_accelerator for GPU tasks. GPU_1xH100 is newer than the v1.13 "
        "bundle schema; the compiler warns that older CLIs may reject it.",
    )

    @property
    def gpu(self) -> bool:
        return "GPU" in self.serverless


class Metric(StrictModel):
    classification: Annotated[
        list[ClassificationMetric] | None,
        _scalar_or_list(ClassificationMetric),
    ] = Field(default=None, description="Metrics for a classification target; the first is primary.")
    regression: Annotated[
        list[RegressionMetric] | None, _scalar_or_list(RegressionMetric)
    ] = Field(default=None, description="Metrics for a regression target; the first is primary.")

    @model_validator(mode="after")
    def _exactly_one_problem(self) -> "Metric":
        if (self.classification is None) == (self.regression is None):
            raise ValueError("give exactly one of `classification: [...]` or `regression: [...]`")
        if not (self.classification or self.regression):
            raise ValueError("list at least one metric; the first one is the primary metric")
        return self

    @field_validator("classification", "regression")
    @classmethod
    def _unique_metrics(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("list each metric once")
        return value

    @property
    def problem(self) -> Problem:
        return "classification" if self.classification is not None else "regression"

    @property
    def names(self) -> list[str]:
        return list(self.classification or self.regression or [])

    @property
    def primary(self) -> str:
        return self.names[0]


class Sample(StrictModel):
    size: int | None = Field(
        default=None, gt=0, description="Rows to keep before splitting; omit to use every row."
    )
    method: Annotated[
        Literal["stratified", "random", "none"], _one_of_list(Literal["stratified", "random", "none"])
    ] = Field(default="stratified", description="How rows are sampled down to `size`.")


class Source(StrictModel):
    catalog: Identifier = Field(description="Unity Catalog catalog of the training table.")
    schema_: Identifier = Field(alias="schema", description="UC schema of the training table.")
    table: Identifier = Field(description="Training table name.")
    target: Identifier = Field(description="Label column.")
    id_column: Identifier | None = Field(
        default=None, description="Row id column; a surrogate id is made when omitted."
    )
    group_column: Identifier | None = Field(
        default=None, description="Group column; required by fold_type: group."
    )
    time_column: Identifier | None = Field(
        default=None, description="Ordering column; required by fold_type: time."
    )
    weight_column: Identifier | None = Field(
        default=None, description="Sample-weight column, passed to every model and combiner."
    )

    @model_validator(mode="after")
    def _distinct_columns(self) -> "Source":
        # One column cannot play two roles: a weight or id column equal to the target would leak
        # the label into training.
        roles = {"target": self.target}
        for role in ("id_column", "group_column", "time_column", "weight_column"):
            column = getattr(self, role)
            if column is None:
                continue
            clash = next((other for other, name in roles.items() if name.lower() == column.lower()), None)
            if clash is not None:
                raise ValueError(f"`{role}` names the same column as `{clash}` ({column!r}); use a different column")
            roles[role] = column
        return self


class Output(StrictModel):
    catalog: Identifier | None = Field(default=None, description="Catalog for outputs (default: source's).")
    schema_: Identifier | None = Field(
        default=None,
        alias="schema",
        description=(
            "Schema for outputs (default: the job's name). The bundle creates and owns this schema "
            "(development mode deploys a per-user copy), so it may not be the source's schema."
        ),
    )


class Schedule(StrictModel):
    cron: str = Field(description="Quartz cron expression, e.g. '0 0 3 * * ?'.")
    timezone: str = Field(default="UTC", description="Java timezone id, e.g. 'Europe/Amsterdam'.")
    paused: bool = Field(default=False, description="Deploy the schedule paused.")

    @field_validator("cron")
    @classmethod
    def _quartz_shape(cls, value: str) -> str:
        fields = value.split()
        if not 6 <= len(fields) <= 7:
            raise ValueError(
                "a Quartz cron expression has 6 or 7 fields (sec min hour day month weekday [year]), "
                "e.g. '0 0 3 * * ?'"
            )
        bad = next((f for f in fields if not _QUARTZ_FIELD.match(f)), None)
        if bad is not None:
            raise ValueError(f"{bad!r} is not a Quartz cron field; use digits, names, and * ? , - / L W #")
        # Quartz cannot combine a day-of-month with a day-of-week: exactly one of them must be `?`.
        if (fields[3] == "?") == (fields[5] == "?"):
            raise ValueError(
                "Quartz needs `?` in exactly one of day-of-month (4th field) and day-of-week (6th field), "
                "e.g. '0 0 3 * * ?'"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        # Imported here: zoneinfo is only needed by specs that have a schedule.
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            # Without any time-zone database (bare Windows) every id would fail; accept rather than
            # reject valid specs.
            if zoneinfo.available_timezones():
                raise ValueError(f"unknown time zone {value!r}; use an IANA/Java id such as 'Europe/Amsterdam'")
        return value


Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
# A notification destination id (a UUID in practice); kept loose, but never empty or spaced.
DestinationId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", max_length=255)]


class NotificationTargets(StrictModel):
    on_start: list[Email] = Field(default_factory=list, description="Addresses mailed when a run starts.")
    on_success: list[Email] = Field(default_factory=list, description="Addresses mailed when a run succeeds.")
    on_failure: list[Email] = Field(default_factory=list, description="Addresses mailed when a run fails.")


class WebhookTargets(StrictModel):
    on_start: list[DestinationId] = Field(
        default_factory=list, description="Notification destination ids called when a run starts."
    )
    on_success: list[DestinationId] = Field(
        default_factory=list, description="Notification destination ids called when a run succeeds."
    )
    on_failure: list[DestinationId] = Field(
        default_factory=list, description="Notification destination ids called when a run fails."
    )


class Notifications(StrictModel):
    email: NotificationTargets = Field(
        default_factory=NotificationTargets, description="Job email notifications."
    )
    webhook: WebhookTargets = Field(
        default_factory=WebhookTargets, description="Job webhook notifications (workspace notification destinations)."
    )


def _is_regression(metric: Any) -> bool:
    """Whether a not yet validated `metric` value asks for regression (Metric's own check reports
    anything malformed; this only has to pick a default)."""
    if isinstance(metric, Metric):
        return metric.problem == "regression"
    return isinstance(metric, dict) and "regression" in metric and "classification" not in metric


def _no_schema_default(schema: dict[str, Any]) -> None:
    """Drop `default` from a field's JSON Schema when the real default depends on other fields."""
    schema.pop("default", None)


class Context(StrictModel):
    name: Identifier = Field(description="Job name; also the UC registered-model name of the champion.")
    compute: Compute = Field(default_factory=Compute, description="Serverless CPU and/or GPU.")
    timeout: Duration = Field(
        default=3600,
        description="Job timeout: '15 minutes', '1h30m', '90s' or seconds. Also bounds the AutoML search.",
    )
    metric: Metric = Field(description="The problem type and its metrics; the first metric is primary.")
    sample: Sample = Field(default_factory=Sample, description="Optional down-sampling before the split.")
    fold_type: Annotated[
        Literal["stratified", "kfold", "group", "time"], _one_of_list(Literal["stratified", "kfold", "group", "time"])
    ] = Field(
        default="stratified",  # never used as such: _default_fold_type picks the default by problem
        description="How the one shared fold plan is assigned. Default: stratified for a classification "
        "metric, kfold for a regression metric.",
        json_schema_extra=_no_schema_default,
    )
    folds: FoldSetting = Field(
        default=AUTO_FOLDS,
        description=(
            "Number of CV folds shared by every model, or `auto` (the default): prepare picks it from the "
            f"training rows, {AUTO_FOLDS_MAX} folds from 80 rows up to {AUTO_FOLDS_LARGE_ROWS:,} and "
            f"{AUTO_FOLDS_LARGE} above (5-7 on tables under 80 rows), and never more than the rarest "
            "class's rows (classification) or the groups (`fold_type: group`)."
        ),
    )
    holdout: float = Field(
        default=0.0,  # _default_holdout picks the default by fold_type
        ge=0.0,
        lt=0.9,
        description=(
            "Fraction held out for the final leaderboard. 0 (the default) keeps no holdout: every row "
            "trains, and the leaderboard reports out-of-fold scores (optimistic for the champion, which "
            "is chosen on them). 0.2 keeps a fifth of the rows apart for an unbiased leaderboard. "
            "Default: 0, or 0.2 with `fold_type: time`."
        ),
        json_schema_extra=_no_schema_default,
    )
    seed: int = Field(default=42, ge=0, description="Seed for sampling, folds and every model.")
    source: Source = Field(description="The training table and its special columns.")
    output: Output = Field(
        default_factory=Output, description="Where output tables go (default: a schema named after the job)."
    )
    retries: int = Field(default=1, ge=0, le=10, description="Default max_retries for every task.")
    keep_runs: int = Field(
        default=5,
        ge=1,
        le=1000,
        description=(
            "How many recent runs keep their tables in the output schema. The final cleanup task drops the "
            "rest, keeping the champion run's leaderboard and prepared sample (docs/runtime.md)."
        ),
    )
    schedule: Schedule | None = Field(default=None, description="Run the job on a Quartz cron schedule.")
    notifications: Notifications = Field(
        default_factory=Notifications, description="Who hears about runs: emails and webhook destinations."
    )
    tags: dict[str, str] = Field(
        default_factory=dict,
        description=f"Job tags (at most {MAX_USER_TAGS}: obsrv adds its own `{RESERVED_TAG_PREFIX}*` tags).",
    )

    def fold_count(self, n_train: int, smallest_part: int | None = None) -> int:
        """The folds prepare assigns to `n_train` training rows: `context.folds` when it is a number;
        for `auto`, the size curve above, capped by `smallest_part` (the rarest class's training
        rows, or the number of groups) and by the rows, never below MIN_FOLDS."""
        if isinstance(self.folds, int):
            return self.folds
        by_size = AUTO_FOLDS_LARGE if n_train > AUTO_FOLDS_LARGE_ROWS else next(
            (k for rows, k in AUTO_FOLDS_CURVE if n_train <= rows), AUTO_FOLDS_MAX
        )
        cap = n_train if smallest_part is None else min(n_train, smallest_part)
        return max(MIN_FOLDS, min(by_size, cap))

    @model_validator(mode="before")
    @classmethod
    def _default_fold_type(cls, data: Any) -> Any:
        """An unwritten fold_type follows the problem: stratified folds need classes, so a regression
        spec defaults to kfold (it must never be told to change a default it did not write)."""
        if isinstance(data, dict) and "fold_type" not in data:
            return {**data, "fold_type": "kfold" if _is_regression(data.get("metric")) else "stratified"}
        return data

    @model_validator(mode="before")
    @classmethod
    def _default_holdout(cls, data: Any) -> Any:
        """An unwritten holdout is 0 (every row trains: better on every split of
        benchmarks/results/holdout_ab.md), except with time folds, whose OOF predictions can use
        the future: there a holdout of TIME_FOLDS_HOLDOUT is the only forward-looking estimate."""
        if isinstance(data, dict) and "holdout" not in data:
            fold_type = data.get("fold_type")
            is_time = fold_type == "time" or (isinstance(fold_type, list) and fold_type == ["time"])
            return {**data, "holdout": TIME_FOLDS_HOLDOUT if is_time else 0.0}
        return data

    @model_validator(mode="after")
    def _cross_checks(self) -> "Context":
        if self.fold_type == "group" and not self.source.group_column:
            raise ValueError("fold_type: group needs source.group_column; give `source.group_column` or use another fold_type")
        if self.fold_type == "time" and not self.source.time_column:
            raise ValueError("fold_type: time needs source.time_column; give `source.time_column` or use another fold_type")
        if self.fold_type == "stratified" and self.metric.problem == "regression":
            raise ValueError("fold_type: stratified needs a classification metric; use kfold for regression")
        if len(self.tags) > MAX_USER_TAGS:
            raise ValueError(
                f"{len(self.tags)} tags is too many: Databricks allows at most {MAX_JOB_TAGS} job tags, obsrv adds "
                f"{len(OBSRV_TAGS)} and development mode adds {len(DEV_MODE_TAGS)} (`dev`); give at most {MAX_USER_TAGS} tags"
            )
        if not re.fullmatch(JOB_NAME_PATTERN, self.name):
            raise ValueError(
                f"context.name `{self.name}` cannot name bundle resources: the Databricks CLI's "
                "`${resources.jobs.<name>...}` references need a letter first and no trailing underscore; "
                "use a name that starts with a letter and does not end with `_`"
            )
        reserved = sorted(k for k in self.tags if k.lower().startswith(RESERVED_TAG_PREFIX))
        if reserved:
            raise ValueError(
                f"tags starting with `{RESERVED_TAG_PREFIX}` are set by obsrv itself ({', '.join(reserved)}); "
                "use another tag name"
            )
        return self

    @property
    def output_catalog(self) -> str:
        return self.output.catalog or self.source.catalog

    @property
    def output_schema(self) -> str:
        """The schema a task writes to when it is given no `--schema` (direct calls in tests);
        compiled jobs always pass the deployed schema, `deployed_output_schema` in prod."""
        return self.output.schema_ or self.source.schema_

    @property
    def deployed_output_schema(self) -> str:
        """The output schema the bundle declares (compiler/resources.py): a schema of its own,
        named after the job unless the spec says otherwise. It cannot be the source's schema: the
        deploy would fail to create a schema that exists, and destroy would try to drop it."""
        return self.output.schema_ or self.name


# ----------------------------------------------------------------------------------------- tasks


class Dependency(StrictModel):
    task: str = Field(description="Id of the task this one depends on (its `id`, or its type when it has none).")


class TaskBase(StrictModel):
    id: Annotated[str, Field(pattern=IDENTIFIER_PATTERN, max_length=MAX_TASK_ID_LENGTH)] | None = Field(
        default=None, description="Unique task id; defaults to the task type."
    )
    depends_on: list[Dependency] = Field(
        default_factory=list,
        description="Upstream tasks. Their models join this task's candidate pool.",
    )
    compute: Literal["CPU", "GPU"] | None = Field(
        default=None, description="Override where this task runs."
    )
    timeout: Duration | None = Field(default=None, description="Task timeout override.")
    retries: int | None = Field(default=None, ge=0, le=10, description="max_retries override.")

    @property
    def task_id(self) -> str:
        return self.id or self.task  # type: ignore[attr-defined]  # every subclass declares its `task` literal


MetaLearner = Literal["linear", "lightgbm", "lightgbm_full"]
META_LEARNERS: tuple[MetaLearner, ...] = get_args(MetaLearner)
_META_DOC = (
    "Meta-learner: `linear` (non-negative, L2-regularised logistic regression on logits; ridge for "
    "regression), `lightgbm` (a shallow, heavily regularised LightGBM) or `lightgbm_full` (a "
    "full-capacity, early-stopped LightGBM, as AutoGluon's second stack level; with `passthrough: "
    "true` it also sees the original features)."
)
_PASSTHROUGH_DOC = "Also give the meta-learner the original features (a skip connection, as AutoGluon's L2)."


# ---- route


class KMeansParams(StrictModel):
    n_clusters: int = Field(default=3, ge=2, le=50, description="Number of clusters.")


class ClusterChoice(StrictModel):
    kmeans: KMeansParams | None = Field(default=None, description="k-means clustering.")
    agglomerative: KMeansParams | None = Field(default=None, description="Ward agglomerative clustering.")
    gmm: KMeansParams | None = Field(default=None, description="Gaussian mixture clustering.")

    @model_validator(mode="after")
    def _exactly_one(self) -> "ClusterChoice":
        given = [k for k in ("kmeans", "agglomerative", "gmm") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one clustering method: kmeans, agglomerative or gmm")
        return self

    @property
    def method(self) -> str:
        return next(k for k in ("kmeans", "agglomerative", "gmm") if getattr(self, k) is not None)

    @property
    def n_clusters(self) -> int:
        return getattr(self, self.method).n_clusters


class RouteClusterParams(StrictModel):
    cluster: ClusterChoice = Field(description="Clustering method and its n_clusters.")
    min_size: int = Field(default=50, ge=1, description="Clusters smaller than this use the global model.")


class FeatureRoute(StrictModel):
    column: Identifier = Field(description="Column whose values define the routes.")
    min_size: int = Field(default=50, ge=1, description="Segments smaller than this use the global model.")


class RouteFeatureParams(StrictModel):
    feature: FeatureRoute = Field(description="Route on the values of one feature column.")


class ExternalRoute(StrictModel):
    table: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")] = Field(
        description="Routing table: `table`, `schema.table` or `catalog.schema.table` "
        "(unqualified parts default to the source's)."
    )
    key: Identifier = Field(description="Join key, present in both tables.")
    column: Identifier = Field(description="Route column in the routing table.")
    min_size: int = Field(default=50, ge=1, description="Routes smaller than this use the global model.")


class RouteExternalParams(StrictModel):
    external: ExternalRoute = Field(description="Route on a column of another table, joined by key.")


class RouteClusterTask(TaskBase):
    task: Literal["route_cluster"] = Field(description="Train one model per cluster of the features; route rows by cluster.")
    route: RouteClusterParams = Field(description="Clustering parameters.")


class RouteFeatureTask(TaskBase):
    task: Literal["route_feature"] = Field(description="Train one model per value of a feature column.")
    route: RouteFeatureParams = Field(description="Routing column parameters.")


class RouteExternalTask(TaskBase):
    task: Literal["route_external"] = Field(description="Train one model per segment given by an external table.")
    route: RouteExternalParams = Field(description="Routing table parameters.")


# ---- stack


class StackTopAnyParams(StrictModel):
    top_n: int = Field(default=5, ge=2, le=50, description="Members: the top N models of any family by OOF.")
    meta_learner: MetaLearner = Field(default="linear", description=_META_DOC)
    passthrough: bool = Field(default=False, description=_PASSTHROUGH_DOC)


class StackTopAlgParams(StrictModel):
    top_alg: int = Field(default=3, ge=2, le=20, description="Members: the best model of each of the top N families.")
    meta_learner: MetaLearner = Field(default="linear", description=_META_DOC)
    passthrough: bool = Field(default=False, description=_PASSTHROUGH_DOC)


class StackBlendParams(StrictModel):
    top_n: int = Field(default=5, ge=2, le=50, description="Members: the top N models by OOF.")
    blend_fraction: float = Field(
        default=0.25, gt=0.05, lt=0.8, description="Share of the training rows held out as the blend split."
    )
    meta_learner: MetaLearner = Field(default="linear", description=_META_DOC)


class StackClasswiseParams(StrictModel):
    top_n: int = Field(default=5, ge=2, le=50, description="Members: the top N models by OOF.")
    meta_learner: MetaLearner = Field(default="linear", description=_META_DOC)


class StackTopAnyTask(TaskBase):
    task: Literal["stack_top_any"] = Field(description="Stack the top N models of any family with a meta-learner.")
    stack: StackTopAnyParams = Field(default_factory=StackTopAnyParams, description="Stack parameters.")


class StackTopAlgTask(TaskBase):
    task: Literal["stack_top_alg"] = Field(description="Stack the best model of each of the top N families.")
    stack: StackTopAlgParams = Field(default_factory=StackTopAlgParams, description="Stack parameters.")


class StackBlendTask(TaskBase):
    task: Literal["stack_blend"] = Field(description="Blend: fit the meta-learner on a held-out blend split.")
    stack: StackBlendParams = Field(default_factory=StackBlendParams, description="Stack parameters.")


class StackClasswiseTask(TaskBase):
    task: Literal["stack_classwise"] = Field(description="One meta-learner per class (one-vs-rest stacking).")
    stack: StackClasswiseParams = Field(default_factory=StackClasswiseParams, description="Stack parameters.")


# ---- boost


class BoostParams(StrictModel):
    algorithms: Annotated[
        list[BoostAlgorithm],
        _scalar_or_list(BoostAlgorithm),
        Field(min_length=1),
    ] = Field(
        default=["gbm", "xgboost", "lightgbm", "catboost"],
        description="Boosting libraries to tune; the tuned boosters are combined by greedy selection.",
    )
    trials: int = Field(default=6, ge=1, le=200, description="Hyperparameter trials per library (time-bounded).")

    @field_validator("algorithms")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("list each algorithm once")
        return value


class BoostTask(TaskBase):
    task: Literal["boost"] = Field(description="Tune several boosting libraries and combine them by greedy selection.")
    boost: BoostParams = Field(default_factory=BoostParams, description="Boost parameters.")


# ---- vote


class VoteTopAlgParams(StrictModel):
    top_alg: int = Field(default=3, ge=2, le=20, description="Soft vote of the best model of each of the top N families.")


class VoteMixParams(StrictModel):
    top_n: int = Field(default=5, ge=2, le=50, description="Up to N strong, least-correlated models.")
    mode: Literal["soft", "hard", "rank"] = Field(default="soft", description="How votes are combined.")


class VoteWeightParams(StrictModel):
    top_n: int = Field(default=10, ge=2, le=100, description="Candidate pool: the top N models by OOF.")
    rounds: int = Field(default=25, ge=1, le=500, description="Greedy selection rounds (with replacement).")


class VoteTopAlgTask(TaskBase):
    task: Literal["vote_top_alg"] = Field(description="Soft vote of the best model of each of the top N families.")
    vote: VoteTopAlgParams = Field(default_factory=VoteTopAlgParams, description="Vote parameters.")


class VoteMixTask(TaskBase):
    task: Literal["vote_mix"] = Field(description="Vote of strong, least-correlated models.")
    vote: VoteMixParams = Field(default_factory=VoteMixParams, description="Vote parameters.")


class VoteWeightTask(TaskBase):
    task: Literal["vote_weight"] = Field(description="Weighted vote found by greedy ensemble selection (Caruana).")
    vote: VoteWeightParams = Field(default_factory=VoteWeightParams, description="Vote parameters.")


TaskSpec = Annotated[
    Union[
        RouteClusterTask,
        RouteFeatureTask,
        RouteExternalTask,
        StackTopAnyTask,
        StackTopAlgTask,
        StackBlendTask,
        StackClasswiseTask,
        BoostTask,
        VoteTopAlgTask,
        VoteMixTask,
        VoteWeightTask,
    ],
    Field(discriminator="task"),
]


# A three-level Unity Catalog table name, each part a portable identifier (IDENTIFIER_PATTERN).
UC_TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$"
UcTable = Annotated[str, Field(pattern=UC_TABLE_PATTERN, max_length=3 * MAX_IDENTIFIER_LENGTH + 2)]
# The scored table's default name in the job's output schema: `{first input table}_scored`, the
# seed's `{table}_{kind}` naming without a run id, so that every scoring run (and the quality monitor
# declared on it) finds the same table.
SCORED_KIND = "scored"
# The monitor's baseline: the champion's own predictions on its training sample, written by the score
# job beside the scored table with the same schema (the quality monitor needs both to match).
BASELINE_SUFFIX = "_baseline"
SCORE_JOB_SUFFIX = "_score"


class Score(StrictModel):
    """The batch-scoring job `<name>_score`: applies `models:/<model>@champion` to new tables."""

    input: Annotated[list[UcTable], _scalar_or_list(UcTable), Field(min_length=1)] = Field(
        description="Table(s) to score, as `catalog.schema.table`; several tables are scored into one output."
    )
    output: Identifier | None = Field(
        default=None,
        description="Name of the scored table in the job's output catalog and schema (per target, like every "
        "output). Default: `<first input table>_scored`.",
    )
    schedule: Schedule | None = Field(default=None, description="Run the scoring job on a Quartz cron schedule.")
    monitor: bool = Field(
        default=False,
        description="Declare a Databricks data-quality monitor (inference-log profile) on the scored table, "
        "with the champion's predictions on its training sample as baseline.",
    )

    @field_validator("input")
    @classmethod
    def _unique_inputs(cls, value: list[str]) -> list[str]:
        lowered = [v.lower() for v in value]
        if len(set(lowered)) != len(lowered):
            raise ValueError("list each input table once (Unity Catalog names ignore case)")
        return value

    @property
    def output_table(self) -> str:
        return self.output or f"{self.input[0].split('.')[-1]}_{SCORED_KIND}"

    @property
    def baseline_table(self) -> str:
        return self.output_table + BASELINE_SUFFIX


class Workflow(StrictModel):
    version: Literal[1] = Field(default=1, description="obsrv format version.")
    context: Context = Field(description="Settings shared by the whole job: data, metrics, compute, schedule.")
    job: list[TaskSpec] = Field(min_length=1, description="The ensemble tasks, linked by depends_on.")
    score: Score | None = Field(
        default=None,
        description="Optional batch scoring with the champion: a second job `<name>_score` in the same bundle.",
    )


class SpecFile(StrictModel):
    """The document root: everything lives under the `obsrv:` key."""

    obsrv: Workflow = Field(description="One obsrv workflow: its context and its job (list of tasks).")
