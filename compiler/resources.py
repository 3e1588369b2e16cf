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

from obsrv.compiler.plan import JobPlan

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


def resources_mapping(plan: JobPlan) -> dict[str, Any]:
    """`variables` and `resources` (schemas, registered_models, experiments) of one job."""
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
        },
    }


def verify_resources(document: dict[str, Any]) -> None:
    """databricks-bundles' typed models accept every resource (an obsrv self-check, lazily imported)."""
    from obsrv.compiler.emit import require_databricks_bundles

    require_databricks_bundles()
    from databricks.bundles.experiments import MlflowExperiment
    from databricks.bundles.registered_models import RegisteredModel
    from databricks.bundles.schemas import Schema

    from obsrv.compiler.emit import EmitError

    models = {"schemas": Schema, "registered_models": RegisteredModel, "experiments": MlflowExperiment}
    for kind, entries in document["resources"].items():
        for value in entries.values():
            try:
                models[kind].from_dict(value)
            except (TypeError, ValueError, KeyError) as error:
                raise EmitError(f"databricks-bundles rejects the emitted {kind} resource: {error}") from error
