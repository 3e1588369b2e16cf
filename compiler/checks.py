"""Validate a loaded spec and turn every problem into a located `Diagnostic`.

Three layers, all run on every spec so one pass reports everything:
1. pydantic (`SpecFile`) checks shape, types, ranges and the models' own validators; its errors are
   translated here: located through the loader's position map, given a stable code, a did-you-mean
   and a one-line fix.
2. Job-graph checks on the raw data (so they still run when some task fails pydantic): reserved and
   duplicate ids, unknown `depends_on` targets, cycles, GPU overrides the context does not allow.
3. Checks that need the validated spec: output-name lengths, and warnings.
"""

from __future__ import annotations

import graphlib
import re
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from obsrv.compiler import spec as S
from obsrv.compiler.diagnostics import Diagnostic
from obsrv.compiler.plan import JobPlan, base_environment, task_environment
from obsrv.compiler.yaml_loader import LoadedYaml, PathKey, Span, dotted_path

FAMILY_BLOCKS = ("route", "stack", "boost", "vote")
# UC table names are at most 255 characters. Output tables are `{table}_{kind}_{run id}_{task}`,
# and a Databricks run id is an int64 (at most 19 digits).
MAX_UC_NAME = 255
RUN_ID_DIGITS = 19
# The longest table kind each stage writes (see ARCHITECTURE.md, "Tables"); others write
# oof/holdout/models, of which `holdout` is the longest.
_LONGEST_KIND = {"prepare": "prepared", "evaluate": "leaderboard", "route_cluster": "clustered"}
_DEFAULT_KIND = "holdout"
# Schema versions of the official bundle JSON schema know only these accelerators.
SCHEMA_ACCELERATORS = ("GPU_1xA10", "GPU_8xH100")


def suggest(word: object, choices: Iterable[str]) -> str | None:
    """The closest choice to `word`, if any is close enough to be a plausible typo."""
    if not isinstance(word, str):
        return None
    import difflib  # only needed when there is an error to explain

    options = list(choices)
    lowered = {c.lower(): c for c in options}
    if word.lower() in lowered:
        return lowered[word.lower()]
    match = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return match[0] if match else None


def _show(value: object, limit: int = 40) -> str:
    """A value as the user wrote it in YAML (`true`, `null`), shortened."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: object) -> str:
    """How a YAML value reads to the user (used in "got ..." phrases)."""
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}` (true/false)"
    if isinstance(value, (int, float)):
        return f"the number `{value}`"
    if isinstance(value, str):
        return f"the text `{_show(value)}`"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__} value"


# ------------------------------------------------------------------------------ type navigation


def _unwrap(tp: Any) -> Any:
    """Strip Annotated[...] and Optional[...] down to the type that validates the value."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
            continue
        if origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _field(model: type[BaseModel], key: object) -> tuple[str, FieldInfo] | None:
    for name, info in model.model_fields.items():
        if key == (info.alias or name):
            return name, info
    return None


def allowed_keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


class Trace(NamedTuple):
    """Where a pydantic `loc` leads: the data path (union tags dropped) and the types on the way."""

    data_path: PathKey
    parent: type[BaseModel] | None  # the model holding the last key
    field: FieldInfo | None  # the field the last key names
    target: Any  # the type that validates the value at the end (None when unknown)


def trace(loc: Sequence[str | int]) -> Trace:
    current: Any = S.SpecFile
    data_path: list[str | int] = []
    parent: type[BaseModel] | None = None
    info: FieldInfo | None = None
    for part in loc:
        tp = _unwrap(current)
        origin = get_origin(tp)
        if _is_model(tp):
            found = _field(tp, part)
            parent, info = tp, (found[1] if found else None)
            data_path.append(part)
            current = found[1].annotation if found else None
        elif origin in (Union, types.UnionType) and isinstance(part, str):
            # A discriminated union puts the tag into loc: pick the member it names and do not
            # add it to the data path (it is a value in the YAML, not a key).
            current = next((m for m in get_args(tp) if _is_model(m) and part in _literal_values(m, "task")), None)
        elif origin is list and isinstance(part, int):
            data_path.append(part)
            current = get_args(tp)[0]
        elif origin is dict:
            data_path.append(part)
            current = get_args(tp)[1]
        else:
            data_path.append(part)
            current = None
    return Trace(tuple(data_path), parent, info, _unwrap(current) if current is not None else None)


def _literal_values(model: type[BaseModel], field_name: str) -> tuple[Any, ...]:
    info = model.model_fields.get(field_name)
    if info is None:
        return ()
    tp = _unwrap(info.annotation)
    return get_args(tp) if get_origin(tp) is Literal else ()


def _patterns(annotation: Any) -> set[str]:
    """Every `pattern` constraint inside an annotation (through Annotated, Optional, unions)."""
    found: set[str] = set()
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *metadata = get_args(annotation)
        for meta in metadata:
            for item in [meta, *getattr(meta, "metadata", [])]:
                if getattr(item, "pattern", None):
                    found.add(item.pattern)
        found |= _patterns(base)
    elif origin in (Union, types.UnionType):
        for member in get_args(annotation):
            found |= _patterns(member)
    return found


def _field_patterns(info: FieldInfo | None) -> set[str]:
    if info is None:
        return set()
    found = _patterns(info.annotation)
    for meta in info.metadata:
        if getattr(meta, "pattern", None):
            found.add(meta.pattern)
    return found


# --------------------------------------------------------------------------- pydantic → codes


_EXPECTED_BY_TYPE = {
    "int": "a whole number",
    "float": "a number",
    "string": "text",
    "bool": "true or false",
    "dict": "a mapping (`key: value` lines)",
    "model": "a mapping (`key: value` lines)",
    "list": "a list (`[a, b]` or `- item` lines)",
}
_BOUND_WORDS = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}


def _name_of(path: PathKey) -> str:
    """The key a path ends in, for messages (`job[2]` for list items)."""
    for part in reversed(path):
        if isinstance(part, str):
            last = part
            break
    else:
        return "the document"
    return dotted_path(path[path.index(last) :]) if path and isinstance(path[-1], int) else last


def _mentioned_key(message: str, keys: Iterable[str]) -> str | None:
    """The first key of the mapping that a model-validator message names (to point at it)."""
    present = set(keys)
    for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", message):
        if word in present:
            return word
    return None


class _Translator:
    def __init__(self, doc: LoadedYaml) -> None:
        self.doc = doc

    def _at_key(self, path: PathKey) -> Span | None:
        return self.doc.key_span(path)

    def _at_value(self, path: PathKey) -> Span | None:
        return self.doc.value_span(path)

    def _diag(self, code: str, message: str, span: Span | None, fix: str | None, path: PathKey) -> Diagnostic:
        return self.doc.diagnostic(code, message, span, fix=fix, path=dotted_path(path) or None)

    def translate(self, error: dict[str, Any]) -> Diagnostic:
        kind: str = error["type"]
        where = trace(error["loc"])
        path = where.data_path
        value = error.get("input")
        ctx = error.get("ctx") or {}
        name = _name_of(path)

        if kind == "extra_forbidden":
            return self._unknown_key(path, where)
        if kind == "missing":
            return self._missing(path, where)
        if kind == "union_tag_not_found":
            return self._diag(
                "OBS102",
                "this task has no `task:` key saying which task type it is",
                self._at_value(path),
                f"add `task: <type>`, one of: {', '.join(S.TASK_TYPES)}",
                path,
            )
        if kind == "union_tag_invalid":
            tag = ctx.get("tag")
            guess = suggest(tag, S.TASK_TYPES)
            message = f"unknown task type `{_show(tag)}`" + (f"; did you mean `{guess}`?" if guess else "")
            fix = f"write `task: {guess}`" if guess else f"use one of: {', '.join(S.TASK_TYPES)}"
            return self._diag("OBS201", message, self._at_value((*path, "task")), fix, (*path, "task"))
        if kind in ("literal_error", "enum"):
            return self._choice(path, value, ctx, name)
        if kind == "string_pattern_mismatch":
            return self._pattern(path, value, ctx.get("pattern", ""), name)
        if kind == "string_too_long" and S.IDENTIFIER_PATTERN in _field_patterns(where.field):
            return self._diag(
                "OBS106",
                f"`{name}` is longer than {ctx.get('max_length')} characters",
                self._at_value(path),
                f"shorten it to at most {ctx.get('max_length')} characters",
                path,
            )
        if kind in _BOUND_WORDS:
            key, words = _BOUND_WORDS[kind]
            return self._diag(
                "OBS105",
                f"`{name}` must be {words} {ctx.get(key)}, got {_show(value)}",
                self._at_value(path),
                f"set `{name}` to a value {words} {ctx.get(key)}",
                path,
            )
        if kind in ("too_short", "too_long", "string_too_short", "string_too_long"):
            bound = ctx.get("min_length") if "short" in kind else ctx.get("max_length")
            unit = "character" if kind.startswith("string") else "item"
            words = "at least" if "short" in kind else "at most"
            message = f"`{name}` must have {words} {bound} {unit}{'s' if bound != 1 else ''}"
            fix = "list at least one task under `job:`" if path == ("obsrv", "job") and "short" in kind else (
                f"give {words} {bound} {unit}{'s' if bound != 1 else ''}"
            )
            return self._diag("OBS105", message, self._at_value(path), fix, path)
        if kind == "int_parsing_size":
            # pydantic refuses integers of more than 4,300 digits (CPython's int-from-str limit)
            return self._diag(
                "OBS105", f"`{name}` is too large a number", self._at_value(path),
                f"give `{name}` a value within its range (`obsrv schema` lists the bounds)", path,
            )
        if kind.endswith("_type") or kind.endswith("_parsing") or kind in ("int_from_float", "model_attributes_type"):
            return self._wrong_type(kind, path, value, ctx, name)
        if kind in ("value_error", "assertion_error"):
            return self._value_error(path, error, where, name)
        # Anything pydantic adds later still gets a location and a code.
        return self._diag("OBS108", f"`{name}`: {error['msg']}", self._at_value(path), _generic_fix(name), path)

    # ---- individual error kinds

    def _unknown_key(self, path: PathKey, where: Trace) -> Diagnostic:
        key = path[-1]
        allowed = allowed_keys(where.parent) if where.parent is not None else []
        parent = where.parent
        # A task carrying another family's block: say where its parameters belong instead.
        task_type = next(iter(_literal_values(parent, "task")), None) if parent is not None else None
        if task_type is not None and key in FAMILY_BLOCKS:
            block = S.TASK_FAMILY_BLOCK[task_type]
            return self._diag(
                "OBS101",
                f"a {task_type} task takes its parameters under `{block}:`, not `{key}:`",
                self._at_key(path),
                f"rename `{key}:` to `{block}:`",
                path,
            )
        if parent is S.SpecFile and key in allowed_keys(S.Workflow):
            return self._diag(
                "OBS101",
                f"unknown top-level key `{key}`",
                self._at_key(path),
                "put `context:` and `job:` under a top-level `obsrv:` key",
                path,
            )
        guess = suggest(key, allowed)
        where_text = f" in `{_name_of(path[:-1])}`" if len(path) > 1 else ""
        message = f"unknown key `{_show(key)}`{where_text}" + (f"; did you mean `{guess}`?" if guess else "")
        fix = f"rename it to `{guess}`" if guess else f"remove it; the keys allowed here are: {', '.join(allowed)}"
        return self._diag("OBS101", message, self._at_key(path), fix, path)

    def _missing(self, path: PathKey, where: Trace) -> Diagnostic:
        key = path[-1]
        parent_path = path[:-1]
        if not parent_path:
            return self._diag(
                "OBS102",
                "the spec has no top-level `obsrv:` key",
                self._at_value(()),
                "start the file with `obsrv:` and put `context:` and `job:` under it",
                path,
            )
        description = (where.field.description or "").rstrip(".") if where.field else ""
        hint = f" ({description[0].lower() + description[1:]})" if description else ""
        span = self._at_value(parent_path) if isinstance(parent_path[-1], int) else self._at_key(parent_path)
        return self._diag(
            "OBS102",
            f"missing required key `{key}` in `{_name_of(parent_path)}`",
            span,
            f"add `{key}:`{hint}",
            path,
        )

    def _choice(self, path: PathKey, value: object, ctx: dict[str, Any], name: str) -> Diagnostic:
        expected = re.findall(r"'([^']*)'", str(ctx.get("expected", ""))) or [str(ctx.get("expected", ""))]
        # A metric of the other problem type is the likely mix-up; say so.
        if "metric" in path and isinstance(value, str):
            other = "regression" if value in S.REGRESSION_METRICS else "classification" if value in S.CLASSIFICATION_METRICS else None
            if other is not None and other not in path:
                listed = "classification" if other == "regression" else "regression"
                return self._diag(
                    "OBS104",
                    f"`{value}` is a {other} metric, but it is listed under `{listed}`",
                    self._at_value(path),
                    f"for a {other} target write `{other}: [...]`; otherwise use one of: {', '.join(expected)}",
                    path,
                )
        guess = suggest(value, expected)
        label = name if not isinstance(path[-1], int) else _name_of(path[:-1])
        message = f"{_describe(value)} is not allowed for `{label}`" + (f"; did you mean `{guess}`?" if guess else "")
        fix = f"use `{guess}`" if guess else f"use one of: {', '.join(expected)}"
        if path == ("obsrv", "version"):
            message, fix = f"unsupported format version {_show(value)}", "write `version: 1` (or leave it out)"
        return self._diag("OBS104", message, self._at_value(path), fix, path)

    def _pattern(self, path: PathKey, value: object, pattern: str, name: str) -> Diagnostic:
        if pattern == S.IDENTIFIER_PATTERN:
            text = str(value)
            cleaned = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or "name"
            if cleaned[0].isdigit():
                cleaned = "_" + cleaned
            return self._diag(
                "OBS106",
                f"`{_show(text)}` is not a valid name for `{name}`: Databricks names used by obsrv may only contain "
                "letters, digits and underscores, and may not start with a digit",
                self._at_value(path),
                f"use e.g. `{cleaned}`",
                path,
            )
        label = _name_of(path[:-1]) if isinstance(path[-1], int) else name
        if pattern == S.UC_TABLE_PATTERN:
            parts = [re.sub(r"[^A-Za-z0-9_]+", "_", p).strip("_") or "name" for p in str(value).split(".")]
            example = ".".join((["main", "default"][: max(0, 3 - len(parts))] + parts)[:3])
            return self._diag(
                "OBS110",
                f"`{_show(value)}` in `{label}` is not a Unity Catalog table name: write `catalog.schema.table`, "
                "three parts of letters, digits and underscores",
                self._at_value(path),
                f"use e.g. `{example}`",
                path,
            )
        if "@" in pattern:
            what, fix = "an email address", "write a full address such as `ml-team@example.com`"
        elif "{0,2}" in pattern:
            what, fix = "a table reference", "write `table`, `schema.table` or `catalog.schema.table` (letters, digits, _)"
        else:
            what, fix = "a notification destination id", "copy the destination id from the workspace settings"
        return self._diag("OBS108", f"`{_show(value)}` in `{label}` is not {what}", self._at_value(path), fix, path)

    def _wrong_type(self, kind: str, path: PathKey, value: object, ctx: dict[str, Any], name: str) -> Diagnostic:
        head = "dict" if kind in ("model_type", "model_attributes_type", "dict_type") else kind.split("_")[0]
        expected = _EXPECTED_BY_TYPE.get(head, "a different kind of value")
        if ctx.get("class_name") == "Dependency" or (
            isinstance(value, str) and len(path) >= 2 and path[-2] == "depends_on"
        ):
            fix = f"write `- task: {value}`" if isinstance(value, str) else "write `- task: <task id>`"
            return self._diag(
                "OBS103",
                f"each `depends_on` entry is a mapping `task: <id>`, got {_describe(value)}",
                self._at_value(path),
                fix,
                path,
            )
        if len(path) == 3 and path[:2] == ("obsrv", "job") and isinstance(path[2], int):
            fix = f"write `- task: {value}`" if isinstance(value, str) else "write each task as `- task: <type>` plus its keys"
            return self._diag(
                "OBS103", f"each entry of `job` is a task mapping, got {_describe(value)}", self._at_value(path), fix, path
            )
        if value is None and head == "dict":
            fix = f"give `{name}` its keys, or remove the empty `{name}:`"
        elif head == "int" and isinstance(value, float):
            fix = f"use a whole number, e.g. {int(value)}"
        elif head == "int" and isinstance(value, str) and value.strip().isdigit():
            fix = f"write {value.strip()} without quotes"
        elif head == "bool":
            fix = "write `true` or `false`"
        elif head == "list":
            fix = f"write `{name}: [{_show(value) if value is not None else '...'}]`"
        elif head == "string":
            fix = f"quote the value: `{name}: \"{_show(value)}\"`" if value is not None else f"give `{name}` a value"
        else:
            fix = f"give `{name}` {expected}"
        return self._diag("OBS103", f"`{name}` should be {expected}, got {_describe(value)}", self._at_value(path), fix, path)

    def _value_error(self, path: PathKey, error: dict[str, Any], where: Trace, name: str) -> Diagnostic:
        message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if _is_model(where.target):
            # A model validator: settings inside this mapping disagree. Point at the first key the
            # message names, so the caret sits on something the user wrote.
            data = self._data_at(path)
            keys = list(data) if isinstance(data, dict) else []
            blamed = _mentioned_key(message, keys)
            span = self._at_key((*path, blamed)) if blamed else self._at_key(path)
            blame_path = (*path, blamed) if blamed else path
            agree = _fix_from(message) or f"make the settings under `{_name_of(path)}` agree"
            return self._diag("OBS109", message, span, agree, blame_path)
        field_name = next((p for p in reversed(path) if isinstance(p, str)), "")
        code = "OBS107" if field_name == "timeout" else "OBS108"
        value = error.get("input")
        fix = _VALUE_FIXES[field_name](value) if field_name in _VALUE_FIXES else _fix_from(message)
        if fix is None and isinstance(value, list):
            fix = f"give exactly one value, e.g. `{field_name}: {_show(value[0]) if value else '...'}`"
        return self._diag(
            code, f"`{name}`: {message}", self._at_value(path), fix or _generic_fix(field_name), path
        )

    def _data_at(self, path: PathKey) -> Any:
        node: Any = self.doc.data
        for part in path:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return None
        return node


def _fix_from(message: str) -> str | None:
    """Validators in spec.py phrase the remedy as an instruction ('...; use kfold for regression'):
    reuse that part as the fix line."""
    for marker in ("; use ", "; give ", "; write "):
        if marker in message:
            return marker[2:] + message.split(marker, 1)[1]
    if message.startswith(("give ", "list ", "use ", "write ")):
        return message
    return None


def _timezone_fix(value: object) -> str:
    import zoneinfo

    guess = suggest(value, sorted(zoneinfo.available_timezones() | {"UTC"}))
    return f"use `{guess}`" if guess else "use an IANA/Java id such as `UTC` or `Europe/Amsterdam`"


# Field-specific remedies for validator messages that do not carry one themselves.
_VALUE_FIXES: dict[str, Callable[[object], str]] = {
    "timeout": lambda _: "write e.g. `15 minutes`, `1h30m`, `90s` or a number of seconds",
    "cron": lambda _: "write 6 or 7 Quartz fields, e.g. `0 0 3 * * ?` (every day at 03:00)",
    "timezone": _timezone_fix,
    "classification": lambda _: "remove the repeated metric",
    "regression": lambda _: "remove the repeated metric",
    "algorithms": lambda _: "remove the repeated algorithm",
}


def _generic_fix(field_name: str) -> str:
    return f"see `obsrv schema` for what `{field_name}` accepts" if field_name else "see `obsrv schema`"


def pydantic_diagnostics(doc: LoadedYaml, error: ValidationError) -> list[Diagnostic]:
    translator = _Translator(doc)
    return [translator.translate(dict(e)) for e in error.errors(include_url=False)]


# --------------------------------------------------------------------------------- graph checks


class _RawTask(NamedTuple):
    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose: the task's position
    id: str
    explicit_id: bool
    deps: tuple[tuple[int, str], ...]  # (position in depends_on, target id)


def _raw_tasks(data: Any) -> list[_RawTask]:
    job = data.get("obsrv", {}).get("job") if isinstance(data, dict) and isinstance(data.get("obsrv"), dict) else None
    if not isinstance(job, list):
        return []
    tasks = []
    for index, item in enumerate(job):
        if not isinstance(item, dict):
            continue
        explicit = isinstance(item.get("id"), str)
        task_id = item["id"] if explicit else item.get("task")
        if not isinstance(task_id, str):
            continue
        deps_raw = item.get("depends_on")
        deps = tuple(
            (j, d["task"])
            for j, d in enumerate(deps_raw if isinstance(deps_raw, list) else [])
            if isinstance(d, dict) and isinstance(d.get("task"), str)
        )
        tasks.append(_RawTask(index, task_id, explicit, deps))
    return tasks


def _is_reserved(task_id: str) -> bool:
    lowered = task_id.lower()
    return lowered in S.RESERVED_TASK_IDS or lowered.startswith(S.RESERVED_TASK_PREFIX)


def graph_diagnostics(doc: LoadedYaml) -> list[Diagnostic]:
    """Ids, depends_on targets and cycles, checked on the raw data."""
    out: list[Diagnostic] = []
    tasks = _raw_tasks(doc.data)

    def id_path(task: _RawTask) -> PathKey:
        return ("obsrv", "job", task.index, "id" if task.explicit_id else "task")

    # Reserved ids and duplicates. UC table names are case-insensitive and task ids end up in
    # them, so `Stack` and `stack` would write the same tables: compare case-folded.
    first_by_id: dict[str, _RawTask] = {}
    for task in tasks:
        path = id_path(task)
        if _is_reserved(task.id):
            out.append(
                doc.diagnostic(
                    "OBS203",
                    f"`{task.id}` is reserved for a stage obsrv adds itself (prepare, base_<family>, evaluate)",
                    doc.value_span(path),
                    fix="choose another `id:`",
                    path=dotted_path(path),
                )
            )
            continue
        first = first_by_id.get(task.id.casefold())
        if first is None:
            first_by_id[task.id.casefold()] = task
            continue
        first_line = (doc.value_span(id_path(first)) or Span(0, 0)).line
        same_case = first.id == task.id
        message = (
            f"duplicate task id `{task.id}` (first used on line {first_line})"
            if same_case
            else f"task ids `{first.id}` (line {first_line}) and `{task.id}` differ only in case; "
            "Unity Catalog table names ignore case, so their outputs would collide"
        )
        if not same_case:
            fix = f"rename `{task.id}` so that it differs from `{first.id}` in more than case"
        elif not task.explicit_id or not first.explicit_id:
            fix = "give one of the two tasks its own `id:` (two tasks of the same type need ids)"
        else:
            fix = "rename one of the two ids"
        out.append(doc.diagnostic("OBS202", message, doc.value_span(path), fix=fix, path=dotted_path(path)))

    known = {t.id for t in tasks if not _is_reserved(t.id)}
    edges: dict[str, list[str]] = {}
    for task in tasks:
        seen: set[str] = set()
        for position, target in task.deps:
            path = ("obsrv", "job", task.index, "depends_on", position, "task")
            span = doc.value_span(path)
            if target in seen:
                out.append(
                    doc.diagnostic(
                        "OBS206",
                        f"`{task.id}` lists `{target}` in depends_on twice",
                        span,
                        fix="remove the repeated entry",
                        path=dotted_path(path),
                    )
                )
                continue
            seen.add(target)
            if target not in known:
                out.append(_unknown_target(doc, task.id, target, known, span, path))
                continue
            edges.setdefault(task.id, []).append(target)
    out.extend(_cycles(doc, tasks, edges))
    return out


def _unknown_target(
    doc: LoadedYaml, task_id: str, target: str, known: set[str], span: Span | None, path: PathKey
) -> Diagnostic:
    if _is_reserved(target):
        return doc.diagnostic(
            "OBS204",
            f"`{task_id}` depends on `{target}`, a stage obsrv adds itself",
            span,
            fix="remove this entry: every task already runs after prepare and all base_* models",
            path=dotted_path(path),
        )
    guess = suggest(target, sorted(known))
    message = f"`{task_id}` depends on `{target}`, but no task has that id" + (f"; did you mean `{guess}`?" if guess else "")
    fix = f"write `task: {guess}`" if guess else (
        f"use one of the task ids: {', '.join(sorted(known))}" if known else "remove the depends_on entry"
    )
    return doc.diagnostic("OBS204", message, span, fix=fix, path=dotted_path(path))


def _cycles(doc: LoadedYaml, tasks: list[_RawTask], edges: dict[str, list[str]]) -> Iterator[Diagnostic]:
    """Every cycle, each as its exact path `a -> b -> a` ("a depends on b, which depends on a")."""
    order = {t.id: t.index for t in tasks}
    by_id = {t.id: t for t in tasks}
    remaining = {node: list(targets) for node, targets in edges.items()}
    for _ in range(len(tasks) + 1):  # each round removes one edge, so this terminates
        try:
            graphlib.TopologicalSorter(remaining).prepare()
            return
        except graphlib.CycleError as error:
            cycle: list[str] = list(error.args[1])
        # graphlib lists the cycle along "is needed by"; turn it into depends_on order and start
        # it at the task written first, so the message does not depend on dict order.
        if cycle[1] not in remaining.get(cycle[0], []):
            cycle.reverse()
        ring = cycle[:-1]
        start = min(range(len(ring)), key=lambda i: order[ring[i]])
        ring = ring[start:] + ring[:start]
        head, nxt = ring[0], ring[1 % len(ring)]
        task = by_id[head]
        position = next(p for p, target in task.deps if target == nxt)
        path = ("obsrv", "job", task.index, "depends_on", position, "task")
        text = " -> ".join([*ring, ring[0]])
        yield doc.diagnostic(
            "OBS205",
            f"dependency cycle: {text}",
            doc.value_span(path),
            fix="remove one of these depends_on entries" if len(ring) > 1 else f"`{head}` cannot depend on itself; remove the entry",
            path=dotted_path(path),
        )
        remaining[head] = [t for t in remaining[head] if t != nxt]


def context_diagnostics(doc: LoadedYaml) -> list[Diagnostic]:
    """Cross checks between tasks and the context that still work on raw data."""
    out: list[Diagnostic] = []
    data = doc.data
    obsrv = data.get("obsrv") if isinstance(data, dict) else None
    if not isinstance(obsrv, dict):
        return out
    context: dict[str, Any] = obsrv["context"] if isinstance(obsrv.get("context"), dict) else {}
    job: list[Any] = obsrv["job"] if isinstance(obsrv.get("job"), list) else []
    compute: dict[str, Any] = context["compute"] if isinstance(context.get("compute"), dict) else {}
    serverless = compute.get("serverless", ["CPU"])
    serverless = [serverless] if isinstance(serverless, str) else serverless
    gpu_allowed = isinstance(serverless, list) and "GPU" in serverless
    source: dict[str, Any] = context["source"] if isinstance(context.get("source"), dict) else {}
    target = source.get("target")
    for index, item in enumerate(job):
        if not isinstance(item, dict):
            continue
        if item.get("compute") == "GPU" and not gpu_allowed and isinstance(serverless, list):
            path: tuple[str | int, ...] = ("obsrv", "job", index, "compute")
            out.append(
                doc.diagnostic(
                    "OBS207",
                    "this task asks for GPU, but `context.compute.serverless` does not include GPU",
                    doc.value_span(path),
                    fix="add GPU to the context (`serverless: [CPU, GPU]`) or remove `compute: GPU`",
                    path=dotted_path(path),
                )
            )
        route = item.get("route")
        feature = route.get("feature") if item.get("task") == "route_feature" and isinstance(route, dict) else None
        column = feature.get("column") if isinstance(feature, dict) else None
        if isinstance(column, str) and isinstance(target, str) and column.lower() == target.lower():
            path = ("obsrv", "job", index, "route", "feature", "column")
            out.append(
                doc.diagnostic(
                    "OBS209",
                    f"`{column}` is the target column; routing on it would leak the label",
                    doc.value_span(path),
                    fix="route on a feature column instead",
                    path=dotted_path(path),
                )
            )
    return out


# ------------------------------------------------------------------- checks on the valid spec


def _task_path(index: int | None, explicit_id: bool) -> PathKey:
    if index is None:
        return ("obsrv", "context", "source", "table")
    return ("obsrv", "job", index, "id" if explicit_id else "task")


def spec_diagnostics(doc: LoadedYaml, spec: S.SpecFile) -> list[Diagnostic]:
    """Limits and warnings that need the validated spec."""
    out: list[Diagnostic] = []
    ctx = spec.obsrv.context
    table = ctx.source.table
    # (task key, stage, index in job or None for implicit stages)
    keys: list[tuple[str, str, int | None, bool]] = [("prepare", "prepare", None, False), ("evaluate", "evaluate", None, False)]
    keys += [(f"{S.RESERVED_TASK_PREFIX}{family}", "base", None, False) for family in S.MODEL_FAMILIES]
    keys += [(t.task_id, t.task, i, t.id is not None) for i, t in enumerate(spec.obsrv.job)]
    reported: set[PathKey] = set()
    for key, stage, index, explicit in keys:
        kind = _LONGEST_KIND.get(stage, _DEFAULT_KIND)
        suffix = "" if stage == "evaluate" else f"_{key}"  # the leaderboard has no task suffix
        length = len(table) + len(kind) + RUN_ID_DIGITS + 2 + len(suffix)
        path = _task_path(index, explicit)
        if length > MAX_UC_NAME and path not in reported:
            reported.add(path)  # one message per thing to shorten
            example = f"{table}_{kind}_<run id>{suffix}"
            out.append(
                doc.diagnostic(
                    "OBS301",
                    f"output table `{_show(example, 80)}` could be {length} characters; Unity Catalog allows {MAX_UC_NAME}",
                    doc.value_span(path),
                    fix=f"shorten the {'task id' if index is not None else 'source table name'} by "
                    f"{length - MAX_UC_NAME} characters",
                    path=dotted_path(path),
                )
            )
    uses_gpu = any(base_environment(ctx, f) == "gpu" for f in S.MODEL_FAMILIES) or any(
        task_environment(ctx, t) == "gpu" for t in spec.obsrv.job
    )
    if uses_gpu and ctx.compute.accelerator not in SCHEMA_ACCELERATORS:
        path = ("obsrv", "context", "compute", "accelerator")
        out.append(
            doc.diagnostic(
                "OBS401",
                f"`{ctx.compute.accelerator}` is newer than the bundle schema of Databricks CLI v1.13; "
                "older CLIs reject it on `bundle validate --strict`",
                doc.value_span(path),
                fix=f"use a recent Databricks CLI, or one of {', '.join(SCHEMA_ACCELERATORS)}",
                severity="warning",
                path=dotted_path(path),
            )
        )
    for index, task in enumerate(spec.obsrv.job):
        if task.timeout is not None and task.timeout > ctx.timeout:
            path = ("obsrv", "job", index, "timeout")
            out.append(
                doc.diagnostic(
                    "OBS402",
                    f"task timeout ({task.timeout} s) is longer than the job timeout ({ctx.timeout} s); the job timeout wins",
                    doc.value_span(path),
                    fix="shorten the task timeout or raise `context.timeout`",
                    severity="warning",
                    path=dotted_path(path),
                )
            )
    return out


# ------------------------------------------------ task-level constraints that fail only at run time
# Each check here moves forward a TaskError that a task would raise from spec values alone, minutes
# into a run (after serverless start-ups), to `obsrv validate`.

# "You can create jobs that contain up to 1000 tasks."
# https://docs.databricks.com/aws/en/jobs/large-jobs (also the bundle reference's `tasks (up to 1000)`).
MAX_JOB_TASKS = 1000
# stack_blend takes whole folds as its blend split: at least 2 blend folds (so its guard can nest
# over them) plus 1 blend-train fold (service_tasks/ensembles/tasks.py, `_blend_split`).
MIN_STACK_BLEND_FOLDS = 3
# The source roles that prepare never keeps as features, so a route on them fails at run time
# (tasks.py `_not_a_feature`). route_external may join on the id column: that one is allowed there.
_ROLE_FIELDS = ("id_column", "group_column", "time_column", "weight_column")
# Fewest rows the leaderboard should rank models on (see sample_size_diagnostics).
MIN_RANKING_ROWS = 100


def _sampled_rows(ctx: S.Context) -> tuple[int, int] | None:
    """(rows after sampling, training rows after the holdout) when `sample.size` bounds them, the
    way prepare computes them (service_tasks/stages/prepare.py `_holdout_mask`); None when the source's
    size decides (unknown at compile time)."""
    size = ctx.sample.size
    if size is None:
        return None
    if ctx.holdout == 0:
        return size, size
    n_hold = min(max(int(round(ctx.holdout * size)), 1), size - 1) if size > 1 else 0
    return size, size - n_hold


def job_size_diagnostics(doc: LoadedYaml, spec: S.SpecFile) -> list[Diagnostic]:
    """More tasks than the Jobs API accepts: `bundle deploy` would fail, after a full compile."""
    from obsrv.compiler.plan import build_plan

    # The stages obsrv adds, counted on a one-task job: this check must also run when the graph has
    # errors (a cycle, an unknown depends_on) that a plan of the whole job could not be built with.
    first = spec.obsrv.job[0].model_copy(update={"depends_on": []})
    one_task = spec.model_copy(update={"obsrv": spec.obsrv.model_copy(update={"job": [first]})})
    total = len(build_plan(one_task, source=doc.file).tasks) - 1 + len(spec.obsrv.job)
    if total <= MAX_JOB_TASKS:
        return []
    own = len(spec.obsrv.job)
    added = total - own
    path: PathKey = ("obsrv", "job")
    return [
        doc.diagnostic(
            "OBS302",
            f"the job would have {total} tasks ({own} of yours and {added} that obsrv adds: prepare, one "
            f"base_<family> per model family, evaluate, cleanup); a Databricks job may have at most {MAX_JOB_TASKS}",
            doc.key_span(path),
            fix=f"split the tasks over several specs (jobs), at most {MAX_JOB_TASKS - added} tasks each",
            path=dotted_path(path),
        )
    ]


def task_constraint_diagnostics(doc: LoadedYaml, spec: S.SpecFile) -> list[Diagnostic]:
    """Errors a task would raise at run time from its spec values alone."""
    out: list[Diagnostic] = []
    ctx = spec.obsrv.context
    roles = {role: getattr(ctx.source, role) for role in _ROLE_FIELDS if getattr(ctx.source, role)}
    for index, task in enumerate(spec.obsrv.job):
        # `folds: auto` is at least MIN_STACK_BLEND_FOLDS on any table with a class of 3 rows or more;
        # below that, stack_blend stops at run time with the same advice (stack_tasks.py)
        if task.task == "stack_blend" and isinstance(ctx.folds, int) and ctx.folds < MIN_STACK_BLEND_FOLDS:
            path: PathKey = ("obsrv", "job", index, "task")
            out.append(
                doc.diagnostic(
                    "OBS210",
                    f"stack_blend takes whole folds as its blend split and needs at least "
                    f"{MIN_STACK_BLEND_FOLDS} folds (2 to blend on, 1 to re-fit on), but `context.folds` is "
                    f"{ctx.folds}",
                    doc.value_span(path),
                    fix=f"set `context.folds: {MIN_STACK_BLEND_FOLDS}` or more, or use stack_top_any "
                    "(it stacks on the shared-fold OOF)",
                    path=dotted_path(path),
                )
            )
        column: str | None = None
        skip: tuple[str, ...] = ()
        if isinstance(task, S.RouteFeatureTask):
            column, field = task.route.feature.column, ("route", "feature", "column")
        elif isinstance(task, S.RouteExternalTask):
            column, field, skip = task.route.external.key, ("route", "external", "key"), ("id_column",)
        if column is None:
            continue
        role = next(
            (r for r, name in roles.items() if r not in skip and name.lower() == column.lower()), None
        )
        if role is not None:
            path = ("obsrv", "job", index, *field)
            out.append(
                doc.diagnostic(
                    "OBS209",
                    f"`{column}` is the source's {role}, which prepare never keeps as a feature, so "
                    f"this task cannot route on it",
                    doc.value_span(path),
                    fix=f"route on a feature column instead (or stop naming `{column}` as `source.{role}`)",
                    path=dotted_path(path),
                )
            )
        elif isinstance(task, S.RouteExternalTask) and column.lower() == ctx.source.target.lower():
            path = ("obsrv", "job", index, *field)
            out.append(
                doc.diagnostic(
                    "OBS209",
                    f"`{column}` is the target column; joining routes on it would leak the label",
                    doc.value_span(path),
                    fix="join on a feature column or on `source.id_column`",
                    path=dotted_path(path),
                )
            )
    return out


def sample_size_diagnostics(doc: LoadedYaml, spec: S.SpecFile) -> list[Diagnostic]:
    """What `sample.size` makes certain before any row is read: too few rows for the folds is an
    error (prepare would raise it), a class that must be rarer than the folds is a warning."""
    ctx = spec.obsrv.context
    rows = _sampled_rows(ctx)
    if rows is None:
        return []
    size, train = rows
    path: PathKey = ("obsrv", "context", "sample", "size")
    span = doc.value_span(path)
    # the folds prepare would assign (`auto` resolved for these rows, as prepare does)
    folds = ctx.fold_count(train)
    if size < folds or train < folds:
        after = f" after the {ctx.holdout:g} holdout" if ctx.holdout else ""
        return [
            doc.diagnostic(
                "OBS303",
                f"`sample.size: {size}` leaves at most {train} training rows{after}, fewer than "
                f"the {folds} folds; prepare would stop",
                span,
                fix=f"raise `sample.size` to at least {_rows_for(ctx, folds)}, or lower `context.folds`",
                path=dotted_path(path),
            )
        ]
    out: list[Diagnostic] = []
    # The leaderboard ranks models on the holdout rows (or out-of-fold on every training row when
    # `holdout: 0`); below MIN_RANKING_ROWS a metric's standard error is around 0.05 or more
    # (accuracy near 0.5: sqrt(0.25 / 100)), so the champion would be chosen by noise.
    ranked = size - train if ctx.holdout else train
    if ranked < MIN_RANKING_ROWS:
        what = "holdout rows" if ctx.holdout else "training rows (out-of-fold, `holdout: 0`)"
        out.append(
            doc.diagnostic(
                "OBS406",
                f"`sample.size: {size}` leaves {ranked} {what} to rank the models on; with fewer than "
                f"{MIN_RANKING_ROWS} the champion is chosen by noise",
                span,
                fix=f"raise `sample.size` (or `context.holdout`) so that at least {MIN_RANKING_ROWS} rows rank "
                "the models",
                severity="warning",
                path=dotted_path(path),
            )
        )
    # With at least 2 classes, the rarest one has at most half the training rows: below the fold
    # count some fold must lack it, and stratified folds cannot be made. (`folds: auto` lowers its
    # count to the rarest class's rows, so only a written number can hit this.)
    rarest = train // 2
    if ctx.metric.problem == "classification" and rarest < ctx.fold_count(train, rarest):
        out.append(
            doc.diagnostic(
                "OBS404",
                f"`sample.size: {size}` leaves {train} training rows, so the rarest class has at most "
                f"{rarest}, fewer than the {folds} folds: some fold will miss a class",
                span,
                fix=f"raise `sample.size` to at least {_rows_for(ctx, 2 * folds)}, or lower `context.folds`",
                severity="warning",
                path=dotted_path(path),
            )
        )
    return out


def _rows_for(ctx: S.Context, train_rows: int) -> int:
    """The smallest `sample.size` that leaves `train_rows` training rows after the holdout."""
    size = train_rows
    while (_sampled_rows(ctx.model_copy(update={"sample": S.Sample(size=size)})) or (0, 0))[1] < train_rows:
        size += 1
    return size


def feasibility_diagnostics(doc: LoadedYaml, spec: S.SpecFile) -> list[Diagnostic]:
    """Everything that would fail, or run badly, only once the job runs (see the section comment)."""
    return [
        *job_size_diagnostics(doc, spec),
        *task_constraint_diagnostics(doc, spec),
        *sample_size_diagnostics(doc, spec),
    ]


def timing_diagnostics(doc: LoadedYaml, spec: S.SpecFile) -> list[Diagnostic]:
    """A job timeout that cannot hold the critical path of start-ups, stage work and minimum
    searches (compiler/timing.py): the job would time out before evaluate, however fast its data."""
    from obsrv.compiler.plan import build_plan
    from obsrv.compiler.timing import MIN_SEARCH_SECONDS, PLANNED_SHARE

    plan = build_plan(spec, source=doc.file)
    timing = plan.timing
    if timing is None:
        return []
    out = _short_task_timeouts(doc, spec, plan)
    if timing.fits:
        return out
    path: PathKey = ("obsrv", "context", "timeout")
    span = doc.value_span(path) if path in doc.positions else doc.key_span(("obsrv", "context"))
    steps = len(timing.critical_path)
    minutes = timing.needed_timeout // 60
    return out + [
        doc.diagnostic(
            "OBS403",
            f"the job timeout ({timing.job_timeout} s) cannot hold the critical path "
            f"{' -> '.join(timing.critical_path)}: it needs at least {timing.min_path_seconds} s "
            f"({steps} serverless start-ups of {timing.startups_on_path} s in all, each stage's own work, "
            f"{MIN_SEARCH_SECONDS} s searches), plus {1 - PLANNED_SHARE:.0%} slack",
            span,
            fix=f"set `context.timeout: {minutes} minutes` or more (every minute above that goes to the "
            "searches), or drop tasks from the longest depends_on chain",
            severity="warning",
            path=dotted_path(path),
        )
    ]


def _short_task_timeouts(doc: LoadedYaml, spec: S.SpecFile, plan: JobPlan) -> list[Diagnostic]:
    """A task's own `timeout:` shorter than its start-up, its work and a minimum search: it would
    time out on serverless before doing anything useful."""
    from obsrv.compiler.timing import MIN_SEARCH_SECONDS, SEARCH_WEIGHT, Stage

    out: list[Diagnostic] = []
    for index, task in enumerate(spec.obsrv.job):
        if task.timeout is None:
            continue
        planned = plan.task(task.task_id)
        stage = Stage(planned.key, planned.stage, planned.environment, planned.depends_on)
        need = stage.fixed_seconds + (MIN_SEARCH_SECONDS if planned.stage in SEARCH_WEIGHT else 0)
        if task.timeout < need:
            path: PathKey = ("obsrv", "job", index, "timeout")
            out.append(
                doc.diagnostic(
                    "OBS405",
                    f"task timeout ({task.timeout} s) is shorter than what `{task.task_id}` needs at the very "
                    f"least on serverless {planned.environment.upper()} ({need} s: start-up, environment "
                    "install and its own work)",
                    doc.value_span(path),
                    fix=f"give it at least {need} s, or remove `timeout:` to let obsrv plan it",
                    severity="warning",
                    path=dotted_path(path),
                )
            )
    return out


def score_diagnostics(doc: LoadedYaml, spec: S.SpecFile) -> list[Diagnostic]:
    """The `score` block against the job it belongs to: names the score task writes at run time."""
    score = spec.obsrv.score
    if score is None:
        return []
    out: list[Diagnostic] = []
    ctx = spec.obsrv.context
    where: PathKey = ("obsrv", "score", "output") if score.output is not None else ("obsrv", "score", "input", 0)
    longest = score.baseline_table
    if len(longest) > MAX_UC_NAME:
        out.append(
            doc.diagnostic(
                "OBS304",
                f"the scored table's baseline `{_show(longest, 80)}` would be {len(longest)} characters; "
                f"Unity Catalog allows {MAX_UC_NAME}",
                doc.value_span(where),
                fix=f"give `score.output` a name of at most {MAX_UC_NAME - len(S.BASELINE_SUFFIX)} characters",
                path=dotted_path(where),
            )
        )
    # The scored table lives in the job's output schema (as deployed to prod: dev writes a prefixed copy).
    written = {
        f"{ctx.output_catalog}.{ctx.deployed_output_schema}.{name}".lower(): name
        for name in (score.output_table, score.baseline_table)
    }
    for index, table in enumerate(score.input):
        if table.lower() in written:
            path: PathKey = ("obsrv", "score", "input", index)
            out.append(
                doc.diagnostic(
                    "OBS212",
                    f"the score job writes `{table}` (its output in the job's output schema) and also reads it "
                    "as an input: each run would overwrite the table it scores",
                    doc.value_span(path),
                    fix="give `score.output` another name, or score a table outside the job's output schema",
                    path=dotted_path(path),
                )
            )
    return out


def check(doc: LoadedYaml) -> tuple[S.SpecFile | None, list[Diagnostic]]:
    """Every diagnostic for one loaded spec, and the spec itself when it has no errors."""
    diagnostics = list(doc.diagnostics)
    spec: S.SpecFile | None = None
    try:
        spec = S.SpecFile.model_validate(doc.data)
    except ValidationError as error:
        diagnostics += pydantic_diagnostics(doc, error)
    diagnostics += graph_diagnostics(doc)
    diagnostics += context_diagnostics(doc)
    if spec is not None:
        diagnostics += spec_diagnostics(doc, spec)
        diagnostics += feasibility_diagnostics(doc, spec)
        diagnostics += score_diagnostics(doc, spec)
        if not any(d.is_error for d in diagnostics):  # the critical path needs a valid graph
            diagnostics += timing_diagnostics(doc, spec)
    # Different layers can notice the same thing; keep one of each identical diagnostic.
    unique: dict[tuple[str, int, int, str], Diagnostic] = {}
    for d in diagnostics:
        unique.setdefault((d.code, d.line, d.column, d.message), d)
    result = list(unique.values())
    if any(d.is_error for d in result):
        spec = None
    return spec, result
