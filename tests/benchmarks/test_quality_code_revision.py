"""A protocol resumed across sittings must not mix code: quality.py records each row's code
revision and `--resume` refuses rows of another one (the issue's "not across commits")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture()
def modules() -> tuple:
    sys.path.insert(0, str(BENCH))
    import _common as C
    import quality as Q

    return C, Q


def _rows(code: object) -> pd.DataFrame:
    return pd.DataFrame([{"dataset": "credit_data", "repeat": 0, "fold": 0, "method": m, "status": "ok",
                          "machine": "m", "code": code} for m in ("best_single", "obsrv_champion")])


def test_resume_refuses_rows_of_another_code_revision_and_runs_nothing(
    modules: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, Q = modules
    monkeypatch.setenv("OBSRV_CODE_REVISION", "bbb2222")
    _rows("aaa1111").to_csv(tmp_path / "quality_runs.csv", index=False)
    before = (tmp_path / "quality_runs.csv").read_bytes()
    rc = Q.main(["--resume", "--datasets", "credit_data", "--max-splits", "1", "--out-dir", str(tmp_path),
                 "--work-dir", str(tmp_path / "work")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "ran at code aaa1111, this checkout's is bbb2222" in err and "--mixed-code" in err
    assert (tmp_path / "quality_runs.csv").read_bytes() == before  # nothing ran, nothing rewritten
    assert not (tmp_path / "quality.md").exists()


def test_rows_from_before_the_code_column_are_refused_too(modules: tuple) -> None:
    _, Q = modules
    old = _rows("x").drop(columns="code")
    assert "without a code revision" in (Q.mixed_code_message(old, "abc") or "")
    assert Q.mixed_code_message(_rows("abc"), "abc") is None
    assert Q.mixed_code_message(_rows(float("nan")), "abc") is not None


def test_the_report_names_the_one_revision_or_counts_splits_per_revision(modules: tuple) -> None:
    _, Q = modules
    assert "every row at obsrv code `abc`" in (Q.code_line(_rows("abc")) or "")
    other = _rows("def").assign(fold=1)
    mixed = Q.code_line(pd.concat([_rows("abc"), other]))
    assert mixed == "rows at several code revisions: `abc`: 1 dataset-splits; `def`: 1 dataset-splits"
    assert Q.code_line(_rows("abc").drop(columns="code")) is None


def test_the_code_revision_ignores_commits_outside_code_and_harness(
    modules: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A results-only commit leaves the revision as it was; a code commit moves it; an edit marks it dirty."""
    C, _ = modules
    monkeypatch.delenv("OBSRV_CODE_REVISION", raising=False)
    repo = tmp_path / "repo"
    (repo / "compiler").mkdir(parents=True)
    (repo / "benchmarks" / "results").mkdir(parents=True)
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)

    def commit(path: str, text: str) -> str:
        (repo / path).write_text(text)
        subprocess.run([*git, "add", path], check=True)
        subprocess.run([*git, "commit", "-qm", path], check=True)
        return subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()

    monkeypatch.setattr(C, "REPO_ROOT", repo)
    code = commit("compiler/x.py", "a = 1\n")
    commit("benchmarks/results/quality.md", "figures\n")
    assert C.code_revision() == code
    (repo / "compiler" / "x.py").write_text("a = 2\n")
    assert C.code_revision() == code + "+dirty"
    monkeypatch.setenv("OBSRV_CODE_REVISION", "arm A")
    assert C.code_revision() == "arm A"
