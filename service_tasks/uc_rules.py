"""Unity Catalog's naming rules for everything obsrv writes to the registry and to tables.

One place for the rules, applied before every registry write (`tracking.register_champion`) and
every table write (both table stores), locally too: a local run then fails exactly where
Databricks would, instead of passing on a sqlite registry that accepts anything.

Sources (no workspace is reachable from the test machine; tests/test_platform_rules_tasks.py
checks each rule):

* Object names (catalogs, schemas, tables, registered models): at most 255 characters, and no
  period, space, forward slash, ASCII control character (00-1F) or DELETE (7F).
  https://docs.databricks.com/aws/en/data-governance/unity-catalog/requirements
  ("Securable object naming requirements"), also
  https://docs.databricks.com/sql/language-manual/sql-ref-names.html
* Tags on securable objects (registered models and model versions included): keys at most 255
  characters and without any of ``. , - = / :``; values at most 1000 characters; at most 20 tags
  per object in the older page, 50 in the current one (the stricter 20 is enforced).
  https://docs.databricks.com/database-objects/tags.html ("Constraints")
* Aliases: letters, digits, ``_`` and ``-`` only, at most 255 characters, not ``latest`` and not a
  version reference like ``v3``: MLflow's own check, which the UC registry client runs too
  (mlflow/utils/validation.py, `_validate_model_alias_name` and `_validate_model_alias_name_reserved`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from obsrv.service_tasks.errors import FinalTaskError

MAX_NAME_LENGTH = 255
MAX_TAG_KEY_LENGTH = 255
MAX_TAG_VALUE_LENGTH = 1000
MAX_TAGS_PER_OBJECT = 20
TAG_KEY_FORBIDDEN = ".,-=/:"
_NAME_FORBIDDEN = re.compile(r"[. /\x00-\x1f\x7f]")
_ALIAS = re.compile(r"[\w\-]+")
_VERSION_ALIAS = re.compile(r"[vV]\d+")


class UCNameError(FinalTaskError):
    """A name, tag or alias that Unity Catalog rejects; the same write would fail again."""


def name_problem(name: str) -> str | None:
    """Why `name` is not a valid UC object name (one level), or None."""
    if not isinstance(name, str) or not name:
        return "it is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"it is {len(name)} characters long (at most {MAX_NAME_LENGTH})"
    bad = _NAME_FORBIDDEN.search(name)
    if bad:
        return f"it contains {bad.group()!r} (no period, space, '/' or control characters)"
    return None


def check_object_name(name: str, what: str) -> str:
    problem = name_problem(name)
    if problem:
        raise UCNameError(f"The {what} name {name!r} is not valid in Unity Catalog: {problem}.")
    return name


def check_three_level(full_name: str, what: str) -> str:
    """`catalog.schema.object`, each part a valid object name."""
    parts = str(full_name).split(".")
    if len(parts) != 3:
        raise UCNameError(f"The {what} name {full_name!r} must have three parts, catalog.schema.name.")
    for level, part in zip(("catalog", "schema", what), parts):
        check_object_name(part, f"{what} {level}" if level != what else what)
    return full_name


def check_registered_model_name(name: str, *, three_level: bool) -> str:
    """A registered model: `catalog.schema.model` in UC; locally the bare model name (the same rule
    for its one part, so a name Databricks would reject fails locally too)."""
    if three_level:
        return check_three_level(name, "registered model")
    return check_object_name(name, "registered model")


def tag_key_problem(key: str) -> str | None:
    if not isinstance(key, str) or not key:
        return "it is empty"
    if len(key) > MAX_TAG_KEY_LENGTH:
        return f"it is {len(key)} characters long (at most {MAX_TAG_KEY_LENGTH})"
    bad = sorted({c for c in key if c in TAG_KEY_FORBIDDEN})
    if bad:
        return f"it contains {' '.join(bad)} (tag keys may not contain {' '.join(TAG_KEY_FORBIDDEN)})"
    return None


def check_tags(tags: Mapping[str, str], where: str) -> dict[str, str]:
    """Every key and value of `tags`, meant for one object (`where` names it for the message).
    All problems are reported at once."""
    problems = []
    for key, value in tags.items():
        problem = tag_key_problem(key)
        if problem:
            problems.append(f"tag key {key!r}: {problem}")
        if not isinstance(value, str):
            problems.append(f"tag {key!r}: the value must be a string, not {type(value).__name__}")
        elif len(value) > MAX_TAG_VALUE_LENGTH:
            problems.append(f"tag {key!r}: the value is {len(value)} characters long (at most {MAX_TAG_VALUE_LENGTH})")
    if len(tags) > MAX_TAGS_PER_OBJECT:
        problems.append(f"{len(tags)} tags (at most {MAX_TAGS_PER_OBJECT} per object)")
    if problems:
        raise UCNameError(f"Unity Catalog would reject the tags of {where}: " + "; ".join(problems) + ".")
    return dict(tags)


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias) or len(alias) > MAX_NAME_LENGTH:
        raise UCNameError(
            f"The alias {alias!r} is not valid: use letters, digits, '_' and '-' (at most {MAX_NAME_LENGTH})."
        )
    if alias.lower() == "latest" or _VERSION_ALIAS.fullmatch(alias):
        raise UCNameError(f"The alias {alias!r} is reserved (it would read as a version reference).")
    return alias


def check_table(catalog: str, schema: str, table: str) -> None:
    """A three-level table name before a write."""
    check_object_name(catalog, "catalog")
    check_object_name(schema, "schema")
    check_object_name(table, "table")


__all__ = [
    "UCNameError",
    "check_alias",
    "check_object_name",
    "check_registered_model_name",
    "check_table",
    "check_tags",
    "check_three_level",
    "name_problem",
    "tag_key_problem",
]
