"""The position-keeping YAML loader."""

from __future__ import annotations

import pytest

from obsrv.compiler.diagnostics import SpecError
from obsrv.compiler.yaml_loader import MAX_NODES, Span, dotted_path, load_text

TEXT = """\
obsrv:
  context:
    name: demo   # a comment
    tags: {on: "yes", 1: two}
  job:
    - task: boost
      boost:
        algorithms: [xgboost, lightgbm]
"""


def test_data_matches_safe_load_except_key_text() -> None:
    doc = load_text(TEXT, "t.yaml")
    assert doc.data == {
        "obsrv": {
            "context": {"name": "demo", "tags": {"on": "yes", "1": "two"}},
            "job": [{"task": "boost", "boost": {"algorithms": ["xgboost", "lightgbm"]}}],
        }
    }
    assert doc.diagnostics == []


def test_positions_of_keys_and_values() -> None:
    doc = load_text(TEXT, "t.yaml")
    located = doc.positions[("obsrv", "context", "name")]
    assert located.key == Span(3, 5, 4)
    assert located.value == Span(3, 11, 4)
    assert doc.positions[("obsrv", "job", 0)].value.line == 6
    assert doc.value_span(("obsrv", "job", 0, "boost", "algorithms", 1)) == Span(8, 31, 8)
    # A path that is not written falls back to its nearest written parent.
    assert doc.value_span(("obsrv", "context", "metric")) == doc.positions[("obsrv", "context")].value
    assert doc.key_span(("obsrv", "job", 0)) == Span(6, 7, 1)


def test_duplicate_keys_are_collected_not_fatal() -> None:
    doc = load_text("a: 1\nb: 2\na: 3\nb: 4\n", "d.yaml")
    assert [(d.code, d.line) for d in doc.diagnostics] == [("OBS004", 3), ("OBS004", 4)]
    assert doc.data == {"a": 3, "b": 4}


def test_merge_keys_may_override_without_duplicate_errors() -> None:
    doc = load_text("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n", "m.yaml")
    assert doc.data["use"] == {"x": 1, "y": 3}
    assert doc.diagnostics == []


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 8)]
    with pytest.raises(SpecError) as error:
        load_text("\n".join(lines) + "\n", "bomb.yaml")
    assert error.value.diagnostics[0].code == "OBS005"
    assert str(MAX_NODES) in error.value.diagnostics[0].message


def test_bom_and_windows_newlines(tmp_path) -> None:
    from obsrv.compiler.yaml_loader import load_file

    path = tmp_path / "w.yaml"
    path.write_bytes(b"\xef\xbb\xbfobsrv:\r\n  job: []\r\n")
    doc = load_file(path)
    assert doc.data == {"obsrv": {"job": []}}
    assert doc.positions[("obsrv", "job")].value.line == 2


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(SpecError) as error:
        load_text("a: " + "[" * 5000 + "]" * 5000 + "\n", "deep.yaml")
    assert error.value.diagnostics[0].code in ("OBS003", "OBS005")


def test_dotted_path() -> None:
    assert dotted_path(("obsrv", "job", 1, "depends_on", 0, "task")) == "obsrv.job[1].depends_on[0].task"
    assert dotted_path(()) == ""
