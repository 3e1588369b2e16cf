"""Output table names: the seed convention `{table}_{kind}_{workflow_id}_{task_id}`.

Every part is validated as an identifier, so a name built here is always safe to quote and use.
The workflow id keeps two runs of the same workflow from ever writing the same table.
"""

from __future__ import annotations

import re

from obsrv.compiler.spec import MAX_IDENTIFIER_LENGTH

from obsrv.service_tasks.io.store import TableName, check_identifier

KINDS = ("prepared", "meta", "oof", "holdout", "models", "clustered", "leaderboard")


def output_table(catalog: str, schema: str, table: str, kind: str, workflow_id: str, task_id: str) -> TableName:
    """`catalog.schema.{table}_{kind}_{workflow_id}_{task_id}`.

    `kind` is free-form (ensemble tasks may add their own kinds) but must be an identifier; the
    workflow id is `{{job.run_id}}` on Databricks (digits) or the local workflow id.
    """
    for what, value in (("table", table), ("kind", kind), ("task id", task_id)):
        check_identifier(value, what)
    wf = _workflow_part(workflow_id)
    return TableName(catalog, schema, _bounded(f"{table}_{kind}_{wf}_{task_id}"))


def leaderboard_table(catalog: str, schema: str, table: str, workflow_id: str) -> TableName:
    """`catalog.schema.{table}_leaderboard_{workflow_id}` (no task suffix)."""
    check_identifier(table, "table")
    return TableName(catalog, schema, _bounded(f"{table}_leaderboard_{_workflow_part(workflow_id)}"))


def workflow_part(workflow_id: str) -> str:
    """The workflow id as it appears in table names."""
    return _workflow_part(workflow_id)


def _workflow_part(workflow_id: str) -> str:
    # run ids are digits, local ids are `[a-z0-9_]`; anything else (a dash) is mapped to `_`
    wf = "".join(c if c.isalnum() or c == "_" else "_" for c in str(workflow_id))
    if not wf:
        raise ValueError("the workflow id is empty")
    return wf


def _bounded(name: str) -> str:
    if len(name) > MAX_IDENTIFIER_LENGTH:
        raise ValueError(f"table name {name!r} is longer than {MAX_IDENTIFIER_LENGTH} characters")
    check_identifier(name, "table name")
    return name


def identifier(name: object, *, lower: bool = True) -> str:
    """`name` as an identifier: runs of characters outside [0-9A-Za-z_] become `_` (trimmed at
    the ends), a leading digit gets a `c_` prefix; "" when nothing usable is left."""
    out = re.sub(r"[^0-9a-zA-Z_]+", "_", str(name).strip()).strip("_")
    if lower:
        out = out.lower()
    if out and out[0].isdigit():
        out = f"c_{out}"
    return out
