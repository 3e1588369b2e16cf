"""`write_outputs` is all or nothing: every file is staged before any output is replaced."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from obsrv.compiler import api

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def two_jobs(tmp_path: Path) -> list[api.CompileResult]:
    for name in ("credit_risk.yaml", "housing_regression.yaml"):
        shutil.copy(REPO / "examples" / name, tmp_path / name)
    (tmp_path / "databricks.yml").write_text("bundle: {name: t}\n")
    return api.compile_files(
        [tmp_path / "credit_risk.yaml", tmp_path / "housing_regression.yaml"], root=tmp_path, verify=False
    )


def test_a_write_failing_on_the_second_file_leaves_every_old_output(
    tmp_path: Path, two_jobs: list[api.CompileResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bundle_out"
    out.mkdir()
    names = list(api.merged_files(two_jobs))
    assert len(names) >= 2  # per job: its job file, plan file and resources; the GPU notebook shim
    for name in names:
        (out / name).write_text(f"old {name}\n")
    real_fdopen = os.fdopen
    opened: list[int] = []

    class FullDisk:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def __enter__(self) -> "FullDisk":
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        opened.append(fd)
        handle = real_fdopen(fd, *args, **kwargs)
        return FullDisk(handle) if len(opened) == 2 else handle

    monkeypatch.setattr(api.os, "fdopen", fdopen)
    with pytest.raises(OSError, match="No space left"):
        api.write_outputs(two_jobs, out)
    monkeypatch.undo()
    assert len(opened) == 2  # the first file was staged, the second failed
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no temp file left behind
    for name in names:
        assert (out / name).read_text() == f"old {name}\n"


def test_a_clean_write_replaces_every_changed_file_and_reports_it(
    tmp_path: Path, two_jobs: list[api.CompileResult]
) -> None:
    out = tmp_path / "bundle_out"
    files = api.merged_files(two_jobs)
    first, *others = files
    out.mkdir()
    (out / first).write_text(files[first])
    (out / first).chmod(0o640)
    assert api.write_outputs(two_jobs, out) == [(first, False)] + [(name, True) for name in others]
    assert {p.name: p.read_text() for p in out.iterdir()} == files
    assert (out / first).stat().st_mode & 0o777 == 0o640
    assert all((out / name).stat().st_mode & 0o777 == 0o644 for name in others)
    assert api.write_outputs(two_jobs, out) == [(name, False) for name in files]
