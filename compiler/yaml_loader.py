"""Read a spec file into plain Python data plus a map from every spec path to its source position.

PyYAML's constructors forget where things came from, so this module composes the node tree itself
and builds the data from it, recording for each path (`("obsrv", "job", 1, "stack", "top_n")`) where
the key and the value sit. The checks use that map to put every diagnostic on a line and column.

On top of plain `yaml.safe_load` it also:
- rejects duplicate keys (PyYAML silently keeps the last one, hiding typos and merge accidents);
- rejects empty files, non-scalar keys, recursive aliases and alias bombs;
- keeps mapping keys as their source text, so `on:` stays the string "on", not True.
YAML syntax errors stop loading (the rest of the file cannot be trusted) and raise `SpecError`;
duplicate keys are collected and loading goes on, so the caller can report everything at once.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Union

import yaml

from obsrv.compiler.diagnostics import Diagnostic, SpecError

try:  # libyaml's parser is ~5x faster; the pure-Python one behaves the same.
    _BaseLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _BaseLoader = yaml.SafeLoader

PathKey = tuple[Union[str, int], ...]
# A spec is a few hundred values (a 1000-task job, Databricks' maximum, about 15 000); this bound
# only stops alias bombs ("billion laughs"), whose expansion would otherwise exhaust memory.
MAX_NODES = 50_000
_MERGE_TAG = "tag:yaml.org,2002:merge"
# Plain mappings and lists only: an explicit `!!python/object` or `!custom` tag is refused rather
# than silently read as a mapping.
_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})
_TAG_FIX = "remove the `!tag`: obsrv specs use plain YAML only"
# A spec is a few KB (a 1000-task job is well under 1 MB). Anything larger is not a spec, and reading
# it whole would only waste memory; the size is checked before any byte is read.
MAX_SPEC_BYTES = 10 * 1024 * 1024
# Opening a FIFO for reading blocks until a writer appears (`obsrv validate` would hang): open it
# non-blocking, so the type check below can refuse it. Not every platform has the flag.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org,2002:") else tag


class Span(NamedTuple):
    """1-based start position and the width of the token on its first line."""

    line: int
    column: int
    width: int = 1


class Located(NamedTuple):
    value: Span
    key: Span | None = None  # set for mapping entries: where the key itself is written


@dataclass
class LoadedYaml:
    """The data of one spec file and where each part of it came from."""

    file: str  # the path as the user should see it
    text: str
    data: Any
    positions: dict[PathKey, Located] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def line(self, number: int) -> str | None:
        lines = self.text.splitlines()
        return lines[number - 1] if 0 < number <= len(lines) else None

    def diagnostic(
        self, code: str, message: str, span: Span | None, *, fix: str | None = None, **kwargs: Any
    ) -> Diagnostic:
        if span is None:
            return Diagnostic(code=code, message=message, file=self.file, fix=fix, **kwargs)
        return Diagnostic(
            code=code,
            message=message,
            file=self.file,
            line=span.line,
            column=span.column,
            width=span.width,
            source_line=self.line(span.line),
            fix=fix,
            **kwargs,
        )

    def value_span(self, path: PathKey) -> Span | None:
        """Where the value at `path` is written; for a missing path, its nearest written parent."""
        for cut in range(len(path), -1, -1):
            located = self.positions.get(path[:cut])
            if located is not None:
                return located.value
        return None

    def key_span(self, path: PathKey) -> Span | None:
        """Where the key of `path` is written (the value for list items and the root)."""
        located = self.positions.get(path)
        if located is None:
            return self.value_span(path)
        return located.key or located.value


def _span(node: yaml.Node) -> Span:
    start, end = node.start_mark, node.end_mark
    if isinstance(node, yaml.ScalarNode) and end is not None and end.line == start.line:
        width = max(end.column - start.column, 1)
    else:
        width = 1
    return Span(line=start.line + 1, column=start.column + 1, width=width)


class _Builder:
    """Turns a composed node tree into data and positions (one instance per file)."""

    def __init__(self, loader: Any, doc: LoadedYaml) -> None:
        self.loader = loader
        self.doc = doc
        self.count = 0
        self.active: set[int] = set()  # ids of the collections being built: detects recursion

    def _fail(self, node: yaml.Node, message: str, fix: str) -> SpecError:
        return SpecError([self.doc.diagnostic("OBS005", message, _span(node), fix=fix)])

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self._fail(
                node,
                f"the document expands to more than {MAX_NODES} values (an alias bomb?)",
                "write the spec without deeply nested aliases",
            )
        if isinstance(node, yaml.ScalarNode):
            return self.loader.construct_object(node, deep=True)
        if id(node) in self.active:
            raise self._fail(
                node, "this anchored value contains an alias to itself", "remove the recursive `*alias`"
            )
        if node.tag not in _COLLECTION_TAGS:
            raise self._fail(node, f"unsupported YAML tag `{_short_tag(node.tag)}`", _TAG_FIX)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return self._sequence(node, path)
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
        finally:
            self.active.discard(id(node))
        raise self._fail(node, "unsupported YAML node", "use plain mappings, lists and scalars")  # pragma: no cover

    def _sequence(self, node: yaml.SequenceNode, path: PathKey) -> list[Any]:
        items = []
        for index, child in enumerate(node.value):
            child_path = (*path, index)
            self.doc.positions[child_path] = Located(value=_span(child))
            items.append(self.build(child, child_path))
        return items

    def _mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[str, Any]:
        # Duplicates are judged on the keys actually written here; keys pulled in by a `<<` merge
        # may be overridden, which is what merges are for.
        seen: dict[str, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self._fail(
                    key_node, "a mapping key must be plain text, not a list or mapping", "write the key as text"
                )
            key = str(key_node.value)
            if key in seen:
                first = seen[key].start_mark.line + 1
                self.doc.diagnostics.append(
                    self.doc.diagnostic(
                        "OBS004",
                        f"duplicate key `{key}` (first given on line {first}); YAML would silently keep only the last",
                        _span(key_node),
                        fix=f"remove one of the two `{key}:` entries or merge them",
                        path=dotted_path((*path, key)),
                    )
                )
            else:
                seen[key] = key_node
        if any(k.tag == _MERGE_TAG for k, _ in node.value):
            # SafeConstructor.flatten_mapping resolves `<<: *anchor` in place (merged keys first,
            # explicit keys after them, so explicit ones win below).
            self.loader.flatten_mapping(node)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):  # only possible via a merged mapping
                raise self._fail(key_node, "a mapping key must be plain text", "write the key as text")
            key = str(key_node.value)
            child_path = (*path, key)
            self.doc.positions[child_path] = Located(value=_span(value_node), key=_span(key_node))
            result[key] = self.build(value_node, child_path)
        return result


def dotted_path(path: PathKey) -> str:
    """`("obsrv", "job", 1, "id")` -> `obsrv.job[1].id`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out



def _yaml_error(doc: LoadedYaml, error: yaml.YAMLError) -> SpecError:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    if isinstance(error, yaml.constructor.ConstructorError) and "constructor for the tag" in str(error.problem):
        # The syntax is fine; the value carries a tag obsrv does not read.
        tag = re.search(r"tag '([^']*)'", str(error.problem))
        span = Span(line=mark.line + 1, column=mark.column + 1) if mark is not None else None
        name = _short_tag(tag.group(1)) if tag else "?"
        return SpecError([doc.diagnostic("OBS005", f"unsupported YAML tag `{name}`", span, fix=_TAG_FIX)])
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    span = Span(line=mark.line + 1, column=mark.column + 1) if mark is not None else None
    lines = doc.text.splitlines()
    if span is not None and span.line > len(lines) and lines:
        # "unexpected end of stream": point just past the last line instead of at nothing.
        span = Span(line=len(lines), column=len(lines[-1]) + 1)
    notes: tuple[str, ...] = ()
    context_mark = getattr(error, "context_mark", None)
    if context and context_mark is not None and mark is not None and context_mark.line != mark.line:
        notes = (f"{context} started on line {context_mark.line + 1}, column {context_mark.column + 1}",)
    fix = "check the indentation and quoting around this position"
    if "\t" in ((doc.line(span.line) if span else None) or "") or "tab" in problem:
        fix = "YAML does not allow tabs for indentation; indent with spaces"
    elif "expected a single document" in problem or "but found another document" in problem:
        fix = "keep one obsrv spec per file (remove the extra `---` document)"
    return SpecError([doc.diagnostic("OBS003", message, span, fix=fix, notes=notes)])


def load_text(text: str, file: str) -> LoadedYaml:
    """Parse `text` (named `file` in messages). Raises SpecError for unusable input."""
    doc = LoadedYaml(file=file, text=text, data=None)
    loader = _BaseLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError(
                [
                    doc.diagnostic(
                        "OBS002",
                        "the file is empty",
                        None,
                        fix="start the spec with `obsrv:` (see examples/credit_risk.yaml)",
                    )
                ]
            )
        doc.positions[()] = Located(value=_span(node))
        doc.data = _Builder(loader, doc).build(node, ())
    except yaml.YAMLError as error:
        raise _yaml_error(doc, error) from None
    except RecursionError:
        raise SpecError(
            [doc.diagnostic("OBS005", "the document is nested too deeply", None, fix="flatten the spec")]
        ) from None
    finally:
        loader.dispose()
    return doc


def _not_a_spec_file(mode: int) -> str | None:
    """What kind of thing a non-regular path is, in words (None for a regular file)."""
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    if stat.S_ISREG(mode):
        return None
    return next((words for test, words in kinds if test(mode)), "not a regular file")


def read_spec_bytes(path: str | Path, name: str) -> bytes:
    """The bytes of a spec file; a SpecError for anything that is not a regular file of at most
    MAX_SPEC_BYTES. The checks run on the opened descriptor, so nothing can be swapped in between."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise SpecError(
            [Diagnostic("OBS001", "no such file", name, fix="check the path (it is relative to the current folder)")]
        ) from None
    except IsADirectoryError:
        raise SpecError([Diagnostic("OBS001", "this is a folder, not a spec file", name, fix="name a .yaml file")]) from None
    except OSError as error:
        raise SpecError([Diagnostic("OBS001", f"cannot read the file: {error.strerror}", name)]) from None
    try:
        info = os.fstat(fd)
        kind = _not_a_spec_file(info.st_mode)
        if kind == "a folder":
            raise SpecError([Diagnostic("OBS001", "this is a folder, not a spec file", name, fix="name a .yaml file")])
        if kind is not None:
            raise SpecError(
                [
                    Diagnostic(
                        "OBS006",
                        f"this is {kind}, not a regular file; obsrv reads specs only from regular files",
                        name,
                        fix="save the spec to a .yaml file and name that file",
                    )
                ]
            )
        if info.st_size > MAX_SPEC_BYTES:
            raise SpecError([_too_large(name, info.st_size)])
        if hasattr(os, "O_NONBLOCK"):  # regular files never block; reading is plain from here
            os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(MAX_SPEC_BYTES + 1)  # the file may have grown since fstat
    except OSError as error:
        raise SpecError([Diagnostic("OBS001", f"cannot read the file: {error.strerror}", name)]) from None
    finally:
        os.close(fd)
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError([_too_large(name, len(raw))])
    return raw


def _too_large(name: str, size: int) -> Diagnostic:
    return Diagnostic(
        "OBS006",
        f"the file is {size / 1024 / 1024:.1f} MB; a spec may be at most {MAX_SPEC_BYTES // (1024 * 1024)} MB",
        name,
        fix="name the spec file itself (a spec is a few KB of YAML), not a data file",
    )


def load_file(path: str | Path, display: str | None = None) -> LoadedYaml:
    """Read and parse a spec file; `display` is the name used in messages (default: as given)."""
    name = display if display is not None else str(path)
    raw = read_spec_bytes(path, name)
    try:
        text = raw.decode("utf-8-sig")  # tolerate a BOM written by some Windows editors
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise SpecError(
            [
                Diagnostic(
                    "OBS001",
                    f"the file is not UTF-8 text (byte {error.start})",
                    name,
                    line=line,
                    column=1,
                    fix="save the file as UTF-8",
                )
            ]
        ) from None
    return load_text(text, name)
