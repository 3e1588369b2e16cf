"""The bundle resources a compiled job owns besides the job: output schema, champion model, experiment.

Written to `bundle_out/<job>.resources.yml` (a file with the `.job.yml` extension may define only
one job: databricks/cli bundle/config/loader/process_include.go, validateSingleResourceDefined).
Included files are merged into the bundle as a whole (`b.Config.Merge` in the same file), so this
file may also declare the job's own `variables`.

Why they are resources: `mode: development` prefixes the names of schemas, registered models and
experiments (bundle/config/mutator/resourcemutator/apply_presets.go: "Schemas: Prefix",
"Registered models presets: Prefix", "Experiments presets: Prefix"), so a developer's deploy gets
its own schema `dev_<user>_<schema>`, its own champion model inside it and its own experiment,
and can never move the production `@champion` alias. The job's `catalog`/`schema` parameters
default to `${resources.schemas.<job>.catalog_name|name}`, which resolve to the deployed (prefixed)
names and make the CLI create the schema before the job.
"""

from __future__ import annotations

from typing import Any

from obsrv.compiler import spec as S
from obsrv.compiler.plan import JobPlan, score_job_key

# Privileges granted on every output schema to the `readers` principal (a bundle variable): enough
# to read the leaderboard and prediction tables and to load the champion (EXECUTE on models).
READER_PRIVILEGES = ("USE_SCHEMA", "SELECT", "EXECUTE")
# The bundle variable (declared in databricks.yml) naming who may read every job's outputs.
READERS_VARIABLE = "readers"


def resources_file_name(job_key: str) -> str:
    return f"{job_key}.resources.yml"


def catalog_variable(job_key: str) -> str:
    return f"{job_key}_catalog"


def schema_variable(job_key: str) -> str:
    return f"{job_key}_schema"


def experiment_name(job_key: str) -> str:
    """The experiment path before target presets. A user's (or service principal's) home folder
    always exists, and an experiment needs an existing parent folder (RESOURCE_DOES_NOT_EXIST
    otherwise); dev mode inserts its prefix before the last path segment."""
    return "/Users/${workspace.current_user.userName}/obsrv_" + job_key


# The quality monitor's inference-log columns: the score task writes exactly these
# (service_tasks/stages/score.py); the required fields of catalog.MonitorInferenceLog in
# ../shared/reference/databricks_bundle_schema.json are granularities, model_id_col, prediction_col,
# problem_type and timestamp_col.
MONITOR_PREDICTION_COLUMN = "prediction"
MONITOR_MODEL_ID_COLUMN = "model_version"
MONITOR_TIMESTAMP_COLUMN = "scored_at"
# One of the values the schema's description lists ("5 minutes, 30 minutes, 1 hour, 1 day, n weeks,
# 1 month, or 1 year"): a batch job scores at most a few times a day.
MONITOR_GRANULARITIES = ("1 day",)
_PROBLEM_TYPES = {"classification": "PROBLEM_TYPE_CLASSIFICATION", "regression": "PROBLEM_TYPE_REGRESSION"}


def monitor_assets_dir(job_key: str) -> str:
    """Where Databricks keeps the monitor's dashboard (`assets_dir`, required on create): beside the
    experiment in the deploying user's home folder, which always exists."""
    return "/Workspace/Users/${workspace.current_user.userName}/obsrv_" + job_key + "_monitoring"


def quality_monitor(plan: JobPlan, score: S.Score, problem: S.Problem) -> dict[str, Any]:
    """The `resources.quality_monitors.<job>_score` mapping: an inference-log profile of the scored
    table with the champion's predictions on its training sample as baseline. Names are built from
    the job's own schema resource, so a dev deploy monitors the developer's copy."""
    schema = "${resources.schemas." + plan.key + ".catalog_name}.${resources.schemas." + plan.key + ".name}"
    return {
        "table_name": f"{schema}.{score.output_table}",
        "output_schema_name": schema,
        "assets_dir": monitor_assets_dir(plan.key),
        "baseline_table_name": f"{schema}.{score.baseline_table}",
        "inference_log": {
            "problem_type": _PROBLEM_TYPES[problem],
            "prediction_col": MONITOR_PREDICTION_COLUMN,
            "model_id_col": MONITOR_MODEL_ID_COLUMN,
            "timestamp_col": MONITOR_TIMESTAMP_COLUMN,
            "granularities": list(MONITOR_GRANULARITIES),
        },
    }


def resources_mapping(plan: JobPlan, monitor: dict[str, Any] | None = None) -> dict[str, Any]:
    """`variables` and `resources` (schemas, registered_models, experiments and, with
    `score.monitor`, quality_monitors) of one job."""
    key = plan.key
    catalog, schema = plan.output
    schema_ref = "${resources.schemas." + key + "}"
    return {
        "variables": {
            catalog_variable(key): {
                "description": f"Catalog of the {key} job's output schema (default: the spec's output catalog).",
                "default": catalog,
            },
            schema_variable(key): {
                "description": (
                    f"Output schema of the {key} job (default: the spec's output schema); "
                    "development mode prefixes it with dev_<user>_."
                ),
                "default": schema,
            },
        },
        "resources": {
            "schemas": {
                key: {
                    "catalog_name": "${var." + catalog_variable(key) + "}",
                    "name": "${var." + schema_variable(key) + "}",
                    "comment": f"obsrv outputs of the {key} job: prepared samples, predictions, leaderboards",
                    "grants": [
                        {"principal": "${var." + READERS_VARIABLE + "}", "privileges": list(READER_PRIVILEGES)},
                    ],
                }
            },
            "registered_models": {
                key: {
                    "catalog_name": schema_ref.replace("}", ".catalog_name}"),
                    "schema_name": schema_ref.replace("}", ".name}"),
                    "name": key,
                    "comment": f"Champion of the {key} job; evaluate moves its @champion alias",
                }
            },
            "experiments": {key: {"name": experiment_name(key)}},
            **({"quality_monitors": {score_job_key(key): monitor}} if monitor is not None else {}),
        },
    }


def verify_resources(document: dict[str, Any]) -> None:
    """databricks-bundles' typed models accept every resource (an obsrv self-check, lazily imported)."""
    from obsrv.compiler.emit import require_databricks_bundles

    require_databricks_bundles()
    from databricks.bundles.experiments import MlflowExperiment
    from databricks.bundles.quality_monitors import QualityMonitor
    from databricks.bundles.registered_models import RegisteredModel
    from databricks.bundles.schemas import Schema

    from obsrv.compiler.emit import EmitError

    models = {"schemas": Schema, "registered_models": RegisteredModel, "experiments": MlflowExperiment,
              "quality_monitors": QualityMonitor}
    for kind, entries in document["resources"].items():
        for value in entries.values():
            try:
                models[kind].from_dict(value)
            except (TypeError, ValueError, KeyError) as error:
                raise EmitError(f"databricks-bundles rejects the emitted {kind} resource: {error}") from error
