"""`obsrv data load` as a user meets it (issue 20, defects 8 and 10): what it had to rename is
said, and a target folder it cannot write is the user's environment (exit 1), not an obsrv bug."""

from __future__ import annotations

import errno
from pathlib import Path

import pandas as pd
import pytest

from obsrv.compiler.cli import main
from obsrv.service_tasks.io import LocalDeltaStore, TableName


def test_load_reports_renamed_headers_and_reserved_names(tmp_path, capsys) -> None:
    path = tmp_path / "in.csv"
    path.write_text("Amount,Amount,obsrv_fold\n1,2,0\n", encoding="utf-8")
    rc = main(["data", "load", str(path), "--table", "main.s.t", "--workdir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 0 and "loaded 1 rows into main.s.t" in out
    assert "obsrv data load: note: column 2 of in.csv repeats the name 'Amount'; it is loaded as 'Amount.1'" in err
    assert "obsrv data load: warning: column 'obsrv_fold' has a name obsrv reserves" in err


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot create anything in: a mode-500 folder, or /sys/kernel for root
    (root ignores permission bits; sysfs refuses new folders)."""
    for candidate in (tmp_path / "ro", Path("/sys/kernel")):
        if candidate.parent == tmp_path:
            candidate.mkdir()
            candidate.chmod(0o500)
        try:
            (candidate / "obsrv_probe").mkdir()
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.EACCES, errno.EROFS):
                return candidate
            continue
        (candidate / "obsrv_probe").rmdir()
    pytest.skip("no folder here refuses writes to this user")


def test_a_folder_it_cannot_write_is_exit_1_with_the_path_and_reason(tmp_path, capsys) -> None:
    path = tmp_path / "in.csv"
    pd.DataFrame({"a": [1]}).to_csv(path, index=False)
    workdir = _unwritable(tmp_path)
    rc = main(["data", "load", str(path), "--table", "main.s.t", "--workdir", str(workdir)])
    _, err = capsys.readouterr()
    assert rc == 1
    assert f"obsrv data load: error: cannot write to {workdir / '.obsrv'}" in err
    assert "internal error" not in err


def test_a_table_folder_delta_cannot_write_is_exit_1_too(tmp_path, capsys, monkeypatch) -> None:
    """deltalake reports I/O failures as plain exceptions with the OS message in the text."""
    import deltalake

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise Exception("Generic LocalFileSystem error: Unable to open file x: Permission denied (os error 13)")

    monkeypatch.setattr(deltalake, "write_deltalake", refuse)
    path = tmp_path / "in.csv"
    pd.DataFrame({"a": [1]}).to_csv(path, index=False)
    rc = main(["data", "load", str(path), "--table", "main.s.t", "--workdir", str(tmp_path)])
    _, err = capsys.readouterr()
    table = LocalDeltaStore(tmp_path / ".obsrv").path(TableName("main", "s", "t"))
    assert rc == 1 and f"cannot write to {table}: Generic LocalFileSystem error" in err
    assert "internal error" not in err
