"""`obsrv run`'s numbers are checked while parsing (usage errors, exit 2), a workdir that cannot be
written is the user's environment (exit 1, "cannot write to <path>: <reason>"), and the resume hint
repeats every option the run needs."""

from __future__ import annotations

import errno
import math
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from obsrv.compiler import cli
from obsrv.service_tasks.local.scheduler import RunError, run_workflow

SPEC = Path(__file__).resolve().parents[2] / "examples" / "credit_risk.yaml"


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--budget", "nan"), ("--budget", "inf"), ("--budget", "-inf"), ("--budget", "0"), ("--budget", "-3"),
     ("--budget", "ten"), ("--time-limit", "nan"), ("--time-limit", "NaN"), ("--time-limit", "inf"),
     ("--time-limit", "0"), ("--jobs", "0"), ("--jobs", "-2"), ("--jobs", "1.5"), ("--jobs", "many")],
)
def test_bad_numbers_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str,
                                      value: str) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", str(SPEC), "--workdir", str(tmp_path), f"{flag}={value}"])  # `=`: "-inf" is a value
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: {value!r}" in err, err
    assert "Traceback" not in err
    assert not (tmp_path / ".obsrv").exists()  # nothing was created


@pytest.mark.parametrize("kwargs", [{"budget": math.nan}, {"time_limit": math.nan}, {"budget": math.inf},
                                    {"time_limit": -1.0}, {"jobs": 0}])
def test_bad_numbers_from_python_callers_are_refused_too(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(RunError, match="must be"):
        run_workflow(str(SPEC), workdir=str(tmp_path), live=False, **kwargs)
    assert not (tmp_path / ".obsrv").exists()


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().err


def test_a_workdir_below_a_file_is_reported_as_such(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A real failure even as root (chmod does not stop root): a folder cannot be made below a file.
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, err = _run_cli(["run", str(SPEC), "--workdir", str(blocker / "ws")], capsys)
    assert code == 1, err
    assert re.search(rf"cannot write to {re.escape(str(blocker))}/ws/\S+: Not a directory", err), err
    assert "internal error" not in err and "Traceback" not in err


@pytest.mark.parametrize(("code_", "reason"), [(errno.EROFS, "Read-only file system"),
                                               (errno.EACCES, "Permission denied"),
                                               (errno.ENOSPC, "No space left on device")])
def test_a_read_only_or_full_workdir_is_the_users_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, code_: int, reason: str
) -> None:
    # As root, chmod cannot make a folder read-only and a read-only bind mount needs privileges the
    # test may not have; the kernel's error is raised where the real one would be (the first
    # write into the workdir), with the same errno, message and path.
    workdir = tmp_path / "ws"
    real_mkdir = Path.mkdir

    def refuse(self: Path, *args: Any, **kwargs: Any) -> None:
        if str(self).startswith(str(workdir)):
            raise OSError(code_, os.strerror(code_), str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    code, err = _run_cli(["run", str(SPEC), "--workdir", str(workdir)], capsys)
    assert code == 1, err
    assert f"cannot write to {workdir}/.obsrv/runs: {reason}" in err, err
    assert "internal error" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through a read-only mode")
def test_a_chmod_read_only_workdir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workdir = tmp_path / "ws"
    workdir.mkdir()
    workdir.chmod(0o555)
    try:
        code, err = _run_cli(["run", str(SPEC), "--workdir", str(workdir)], capsys)
    finally:
        workdir.chmod(0o755)
    assert code == 1 and "cannot write to" in err and "Permission denied" in err, err


def test_a_write_error_mid_run_is_not_an_internal_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from obsrv.service_tasks.local import scheduler as local_runner

    def disk_full(*args: Any, **kwargs: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "state.tmp"))

    monkeypatch.setattr(local_runner, "run_workflow", disk_full)
    code, err = _run_cli(["run", str(SPEC), "--workdir", str(tmp_path)], capsys)
    assert code == 1
    assert f"cannot write to {tmp_path / 'state.tmp'}: No space left on device" in err


def test_the_resume_hint_parses_back_to_the_same_run() -> None:
    from obsrv.service_tasks.local.scheduler import resume_command

    hint = resume_command("my spec.yaml", "20260101000000", workdir="/data/my ws", budget=7.5, time_limit=120.0,
                          jobs=3, cold=True, only=None)
    argv = shlex.split(hint)
    assert argv[:2] == ["obsrv", "run"]
    args = cli.build_parser().parse_args(argv[1:])
    assert (args.spec, args.workdir, args.workflow_id, args.budget, args.time_limit, args.jobs, args.cold) == (
        "my spec.yaml", "/data/my ws", "20260101000000", 7.5, 120.0, 3, True)
    assert args.only is None and not args.resume
    assert "--budget 1234567.25" in resume_command("s.yaml", "1", workdir=".", budget=1234567.25, time_limit=None,
                                                    jobs=None, cold=False, only=None)
    # defaults stay out of it
    assert resume_command("s.yaml", "1", workdir=".", budget=None, time_limit=None, jobs=None, cold=False,
                          only=None) == "obsrv run s.yaml --workflow-id 1"
