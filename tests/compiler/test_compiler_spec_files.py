"""Spec paths that are not spec files: devices, FIFOs and huge files are refused before reading.

Each case runs `obsrv validate` in a child process with a timeout, so a regression that blocks on
the path (reading /dev/zero forever, or waiting for a FIFO's writer) fails the test instead of
hanging the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from obsrv.compiler.diagnostics import SpecError
from obsrv.compiler.yaml_loader import MAX_SPEC_BYTES, load_file

REPO = Path(__file__).resolve().parents[2]


def _bounded_memory() -> None:
    """A regression that reads /dev/zero whole must fail fast, not eat the machine's memory."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def _validate(path: Path | str) -> subprocess.CompletedProcess[str]:
    code = f"import sys\nfrom obsrv.compiler.cli import main\nsys.exit(main(['validate', {str(path)!r}, '--format', 'json']))\n"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=os.environ, timeout=60,
        preexec_fn=_bounded_memory if sys.platform != "win32" else None,
    )


def _only_diagnostic(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    payload = json.loads(result.stdout)
    assert payload["ok"] is False and len(payload["diagnostics"]) == 1
    return payload["diagnostics"][0]


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_device_is_refused_without_reading_it() -> None:
    diagnostic = _only_diagnostic(_validate("/dev/zero"))
    assert diagnostic["code"] == "OBS006" and diagnostic["file"] == "/dev/zero"
    assert "character device" in diagnostic["message"] and diagnostic["fix"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    diagnostic = _only_diagnostic(_validate(fifo))
    assert diagnostic["code"] == "OBS006" and diagnostic["file"] == str(fifo)
    assert "named pipe" in diagnostic["message"] and diagnostic["fix"]


def test_a_file_over_the_limit_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:  # sparse: costs no disk
        handle.truncate(MAX_SPEC_BYTES + 1)
    diagnostic = _only_diagnostic(_validate(big))
    assert diagnostic["code"] == "OBS006" and "at most 10 MB" in diagnostic["message"]
    assert diagnostic["fix"]


def test_a_file_at_the_limit_is_read(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    text = (REPO / "examples" / "credit_risk.yaml").read_text()
    spec.write_text(text + "#" * (MAX_SPEC_BYTES - len(text.encode()) - 1) + "\n")
    assert spec.stat().st_size == MAX_SPEC_BYTES
    assert load_file(spec).data["obsrv"]["context"]["name"] == "credit_risk_ensemble"


def test_a_folder_and_a_missing_file_keep_their_messages(tmp_path: Path) -> None:
    for path, words in ((tmp_path, "folder"), (tmp_path / "nope.yaml", "no such file")):
        with pytest.raises(SpecError) as error:
            load_file(path)
        (diagnostic,) = error.value.diagnostics
        assert diagnostic.code == "OBS001" and words in diagnostic.message
