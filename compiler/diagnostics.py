"""Diagnostics: what the compiler tells the user, located and rendered like a compiler's errors.

Every problem the compiler finds becomes one `Diagnostic` with a stable code (`OBS101`), the file,
1-based line and column, a message, a one-line fix and the offending source line. They are
collected, never raised one by one, so a single run reports every error; `SpecError` carries the
whole list out of the API.

Codes are stable: CI scripts and docs match on them. `CODES` is the single list of them, and the
CLI's `--help`, the tests and the README table all come from it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

Severity = Literal["error", "warning"]

# code -> one-line summary. Grouped by hundreds: 0xx reading/YAML, 1xx spec shape and values,
# 2xx the job graph and names, 3xx limits of the emitted job, 4xx warnings, 9xx obsrv bugs.
CODES: dict[str, str] = {
    "OBS001": "the spec file cannot be read (missing, a directory, or not UTF-8)",
    "OBS002": "the spec file is empty",
    "OBS003": "YAML syntax error (reported alone: parsing stops there)",
    "OBS004": "a mapping has the same key twice",
    "OBS005": "unsupported YAML: a !tag, a non-scalar key, a recursive alias or an oversized document",
    "OBS006": "the spec path is not a regular file (a device, FIFO or socket) or is larger than 10 MB",
    "OBS101": "unknown key (with the nearest known key)",
    "OBS102": "a required key is missing",
    "OBS103": "a value has the wrong type (e.g. text where a list is expected)",
    "OBS104": "a value is not one of the allowed choices",
    "OBS105": "a number or list is out of its allowed range",
    "OBS106": "an identifier (catalog, schema, table, column, job or task name) breaks Databricks' naming rules",
    "OBS107": "a duration cannot be read",
    "OBS108": "a value has the wrong format (cron, time zone, email, table reference, ...)",
    "OBS109": "settings contradict each other or are incomplete",
    "OBS110": "a `score.input` entry is not a three-level Unity Catalog table name (`catalog.schema.table`)",
    "OBS201": "unknown task type",
    "OBS202": "two tasks have the same id",
    "OBS203": "a task uses a reserved id (prepare, evaluate, base_*)",
    "OBS204": "depends_on names a task that does not exist",
    "OBS205": "the tasks' depends_on form a cycle",
    "OBS206": "a task lists the same dependency twice",
    "OBS207": "a task asks for GPU but the context does not allow GPU",
    "OBS208": "two specs compile to the same job name",
    "OBS209": "a route column is the target column or another special source column (id, group, time, weight)",
    "OBS210": "a task's settings cannot work with the context (stack_blend with fewer than 3 folds)",
    "OBS211": "an output schema is the source's or another spec's (each job's bundle owns its schema)",
    "OBS212": "the scored table (`score.output`, or its baseline) would overwrite a `score.input` table",
    "OBS301": "an output table name would be longer than Unity Catalog allows",
    "OBS302": "the job would have more than 1000 tasks, the Databricks Jobs limit",
    "OBS303": "`sample.size` leaves fewer training rows than folds",
    "OBS304": "the scored table's name (or its `_baseline` companion) would be longer than Unity Catalog allows",
    "OBS401": "warning: the GPU accelerator is newer than the pinned bundle schema",
    "OBS402": "warning: a task timeout is longer than the job timeout",
    "OBS403": "warning: the job timeout cannot hold the critical path of start-ups, stage work and searches",
    "OBS404": "warning: `sample.size` leaves a class fewer rows than folds",
    "OBS405": "warning: a task timeout is shorter than its serverless start-up and work allowance",
    "OBS406": "warning: `sample.size` leaves too few holdout (or out-of-fold) rows to rank models",
    "OBS407": "warning: serverless GPU compute is a preview a workspace admin must enable",
    "OBS901": "internal error in obsrv (a bug: please report it)",
}


@dataclass(frozen=True)
class Diagnostic:
    """One located problem. `line`/`column` are 1-based; 0 means "the whole file"."""

    code: str
    message: str
    file: str
    line: int = 0
    column: int = 0
    fix: str | None = None
    # The source line the position points into, captured when the diagnostic is made so that
    # rendering never has to re-read the file.
    source_line: str | None = None
    # How many characters the caret underline spans (at least 1).
    width: int = 1
    severity: Severity = "error"
    # Dotted spec path (`obsrv.job[1].stack.top_n`), for JSON consumers and tests.
    path: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.code not in CODES:  # a typo here would silently break CI matching
            raise ValueError(f"unknown diagnostic code {self.code}")

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def location(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"

    def render(self) -> str:
        """rustc-style text: header, numbered source line, caret underline, fix."""
        out = [f"{self.location()}: {self.severity}[{self.code}]: {self.message}"]
        if self.source_line is not None and self.line > 0:
            gutter = str(self.line)
            pad = " " * len(gutter)
            text = self.source_line.rstrip("\n").replace("\t", " ")
            caret_at = max(self.column - 1, 0)
            width = max(1, min(self.width, max(len(text) - caret_at, 1)))
            out.append(f" {pad} |")
            out.append(f" {gutter} | {text}")
            out.append(f" {pad} | {' ' * caret_at}{'^' * width}")
        for note in self.notes:
            out.append(f"  note: {note}")
        if self.fix:
            out.append(f"  fix: {self.fix}")
        return "\n".join(out)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["notes"] = list(self.notes)
        data.pop("width")
        return data


def sort_key(diagnostic: Diagnostic) -> tuple[str, int, int, str, str]:
    return (diagnostic.file, diagnostic.line, diagnostic.column, diagnostic.code, diagnostic.message)


def render_text(diagnostics: list[Diagnostic]) -> str:
    """All diagnostics, blank-line separated, followed by a one-line summary."""
    if not diagnostics:
        return ""
    blocks = [d.render() for d in diagnostics]
    errors = sum(d.is_error for d in diagnostics)
    warnings = len(diagnostics) - errors
    summary = []
    if errors:
        summary.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        summary.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return "\n\n".join(blocks) + "\n\n" + " and ".join(summary) + "\n"


def render_json(diagnostics: list[Diagnostic], **extra: object) -> str:
    payload: dict[str, object] = {
        "ok": not any(d.is_error for d in diagnostics),
        **extra,
        "diagnostics": [d.to_json() for d in diagnostics],
    }
    return json.dumps(payload, indent=2, sort_keys=False) + "\n"


class SpecError(Exception):
    """One or more specs are invalid. Carries every diagnostic found (errors and warnings)."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=sort_key)
        errors = [d for d in self.diagnostics if d.is_error]
        first = errors[0] if errors else (self.diagnostics[0] if self.diagnostics else None)
        headline = f"{first.location()}: {first.message}" if first else "invalid spec"
        more = len(errors) - 1
        super().__init__(headline + (f" (and {more} more error{'s' if more != 1 else ''})" if more > 0 else ""))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    def render(self, fmt: Literal["text", "json"] = "text") -> str:
        return render_json(self.diagnostics) if fmt == "json" else render_text(self.diagnostics)
