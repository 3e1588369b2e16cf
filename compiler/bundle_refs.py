"""Resolve a bundle's deploy-time `${...}` references for one target, following the Databricks CLI.

No workspace (and no Go CLI) is reachable here, so this reproduces, for the subset of the bundle
format obsrv emits, what `databricks bundle validate -t <target>` would resolve. The local runner
uses it (target `None`: no target mode) to run the compiled job with the same names, and the
platform-rule tests use it to check that `dev` and `prod` never share a schema, model or experiment.

Rules (databricks/cli at 7bbe2852, v1.13.0 + 4):
* `${var.X}`: the target's `variables.X` override, else the variable's `default`; a variable with
  neither is an error (bundle/config/mutator/set_variables.go).
* Included files are merged into one configuration (bundle/config/loader/process_include.go).
* `workspace.root_path` defaults to `~/.bundle/${bundle.name}/${bundle.target}`
  (default_workspace_root.go); `~/` expands to `/Workspace/Users/<userName>` (expand_workspace_root.go);
  other absolute paths get a `/Workspace` prefix (prepend_workspace_prefix.go); `file_path` and
  `artifact_path` default to `<root_path>/files` and `<root_path>/artifacts` (default_workspace_paths.go).
* `mode: development` sets the name prefix `[dev <short_name>] `, a `dev` tag, 4 concurrent runs
  where none is set and trigger pause status PAUSED (resourcemutator/apply_target_mode.go).
  apply_presets.go writes PAUSED only into schedules whose `pause_status` is empty.
  apply_presets.go adds it in front of job names, in front of the last path segment of experiment
  names, and, normalized (`dev_<short_name>_`, normalizePrefix + libs/textutil NormalizeString),
  in front of schema and registered-model names.
* `${resources.<type>.<key>.<field>}` resolves to that field after presets (capture_uc_dependencies.go
  relies on this for schema names).
"""

from __future__ import annotations

import copy
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

# One `${a.b.c}` reference (the CLI's pattern, libs/dyn/dynvar/ref.go, ASCII letters for \p{L}).
_SEGMENT = r"[A-Za-z]+(?:[-_]*[A-Za-z0-9]+)*"
REFERENCE = re.compile(r"\$\{(" + _SEGMENT + r"(?:\." + _SEGMENT + r"(?:\[[0-9]+\])*)*)\}")


class ResolveError(ValueError):
    """A reference that the CLI would also refuse to resolve."""


@dataclass(frozen=True)
class User:
    user_name: str  # `${workspace.current_user.userName}` (an email, or a service principal's id)
    short_name: str  # `${workspace.current_user.short_name}`


def normalize_string(name: str) -> str:
    """libs/textutil/textutil.go NormalizeString: lower case, non-alphanumerics to `_`, runs of `_`
    collapsed, leading/trailing `_` dropped."""
    out = "".join(ch if unicodedata.category(ch)[0] in "LN" else "_" for ch in name.lower())
    return re.sub(r"_+", "_", out).strip("_")


def normalize_prefix(prefix: str) -> str:
    """resourcemutator/apply_presets.go normalizePrefix: `[dev alice] ` -> `dev_alice_`."""
    prefix = prefix.replace("[", "").strip(" ")
    suffix = "_" if prefix.endswith("]") else ""
    return normalize_string(prefix) + suffix


def merge(*documents: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge included documents (maps merge, later scalars win), as the CLI's loader does."""
    out: dict[str, Any] = {}
    for doc in documents:
        _merge_into(out, copy.deepcopy(doc))
    return out


def _merge_into(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge_into(into[key], value)
        else:
            into[key] = value


def _workspace_path(path: str, user: User) -> str:
    if path.startswith("~/"):
        path = f"/Workspace/Users/{user.user_name}/{path[2:]}"
    if path.startswith("/") and not path.startswith(("/Workspace/", "/Volumes/")):
        path = "/Workspace" + path
    return path


def resolve(
    config: dict[str, Any],
    target: str | None,
    user: User,
    *,
    file_path: str | None = None,
    overrides: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The configuration with the target applied and every `${...}` resolved.

    `target=None` applies no target (no mode, no overrides): the local runner's view. `file_path`
    replaces `workspace.file_path` (the local runner points it at its copy of the bundle files).
    `overrides` are `--var name=value` / `BUNDLE_VAR_name` values: they win over everything.
    """
    config = copy.deepcopy(config)
    selected = (config.get("targets") or {}).get(target, {}) if target else {}
    if target and target not in (config.get("targets") or {}):
        raise ResolveError(f"no target {target!r} in the bundle")
    mode = selected.get("mode")
    for key in ("workspace", "run_as", "permissions", "presets", "resources"):
        if key in selected:
            if isinstance(selected[key], dict):
                config[key] = merge(config.get(key) or {}, selected[key])
            else:
                config[key] = selected[key]
    variables: dict[str, Any] = {}
    for name, spec in (config.get("variables") or {}).items():
        override = (overrides or {}).get(name, (selected.get("variables") or {}).get(name))
        if isinstance(override, dict):
            override = override.get("default")
        value = override if override is not None else (spec or {}).get("default")
        lookup = (spec or {}).get("lookup")
        if value is None and isinstance(lookup, dict) and lookup:
            # The CLI looks it up at deploy (bundle/config/mutator/resolve_resource_references.go);
            # offline there is no workspace to ask, so the value says what would be looked up.
            kind, looked_up = next(iter(lookup.items()))
            value = f"<lookup {kind}: {looked_up}>"
        if value is None:
            raise ResolveError(f"no value assigned to required variable {name}")
        variables[name] = value
    bundle = {**(config.get("bundle") or {}), "target": target or "local"}
    workspace = dict(config.get("workspace") or {})
    workspace["current_user"] = {"userName": user.user_name, "short_name": user.short_name}

    scope: dict[str, Any] = {"var": variables, "bundle": bundle, "workspace": workspace}
    # Everything outside `resources` first (the CLI's ResolveVariableReferencesWithoutResources).
    for name in list(variables):
        variables[name] = _substitute(variables[name], scope, set())
    root = workspace.get("root_path") or "~/.bundle/${bundle.name}/${bundle.target}"
    workspace["root_path"] = _workspace_path(_substitute(root, scope, set()), user)
    for name, leaf in (("file_path", "files"), ("artifact_path", "artifacts")):
        value = workspace.get(name) or f"{workspace['root_path']}/{leaf}"
        workspace[name] = _workspace_path(_substitute(value, scope, set()), user)
    if file_path is not None:
        workspace["file_path"] = file_path

    resources = _substitute({k: v for k, v in (config.get("resources") or {}).items()}, scope, {"resources"})
    if mode == "development":
        _apply_dev_presets(resources, user)
    scope["resources"] = resources
    resources = _substitute(resources, scope, set())
    for key in ("run_as", "permissions"):
        if key in config:
            config[key] = _substitute(config[key], scope, set())
    config.update(variables=variables, bundle=bundle, workspace=workspace, resources=resources)
    config.pop("targets", None)
    config["mode"] = mode
    return config


def _apply_dev_presets(resources: dict[str, Any], user: User) -> None:
    prefix = f"[dev {user.short_name}] "
    for job in (resources.get("jobs") or {}).values():
        job["name"] = prefix + job["name"]
        tags = job.setdefault("tags", {})
        if not tags.get("dev"):  # a tag the job sets itself wins
            tags["dev"] = user.short_name
        if job.get("max_concurrent_runs", 0) == 0:
            job["max_concurrent_runs"] = 4  # apply_target_mode.go developmentConcurrentRuns
        # trigger_pause_status PAUSED: only schedules that do not set pause_status are paused.
        if "schedule" in job and not job["schedule"].get("pause_status"):
            job["schedule"]["pause_status"] = "PAUSED"
    for experiment in (resources.get("experiments") or {}).values():
        head, slash, base = experiment["name"].rpartition("/")
        experiment["name"] = f"{head}/{prefix}{base}" if slash else prefix + base
    for kind in ("schemas", "registered_models"):
        for entry in (resources.get(kind) or {}).values():
            entry["name"] = normalize_prefix(prefix) + entry["name"]


# `${resources.<kind>.<key>.id}`: e.g. an app's job resource (databricks.yml resources.apps)
DEPLOY_TIME_ID = re.compile(r"resources\.[A-Za-z_]+\.[A-Za-z0-9_-]+\.id")


def _lookup(path: str, scope: dict[str, Any]) -> Any:
    node: Any = scope
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ResolveError(f"reference does not exist: ${{{path}}}")
        node = node[part]
    return node


def _substitute(value: Any, scope: dict[str, Any], skip: set[str]) -> Any:
    """Replace references in strings (recursively); references into `skip` namespaces stay."""
    if isinstance(value, dict):
        return {k: _substitute(v, scope, skip) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, scope, skip) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        path = match.group(1)
        if path.split(".", 1)[0] in skip or path.split(".", 1)[0] not in scope:
            return match.group(0)
        if DEPLOY_TIME_ID.fullmatch(path):
            # A resource's id exists only once it is deployed: the CLI leaves it to the deploy
            # (bundle/deploy/terraform/interpolate.go rewrites it to the Terraform resource's
            # id). The resource itself must exist, as `bundle validate` checks.
            _lookup(path.rsplit(".", 1)[0], scope)
            return match.group(0)
        found = _substitute(_lookup(path, scope), scope, skip)
        if isinstance(found, (dict, list)):
            raise ResolveError(f"${{{path}}} is not a string")
        return str(found)

    for _ in range(10):  # a resolved value may itself hold references (e.g. a schema's `${var.*}`)
        new = REFERENCE.sub(one, value)
        if new == value:
            return new
        value = new
    raise ResolveError(f"references in {value!r} do not resolve (a cycle?)")
