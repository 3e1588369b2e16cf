"""A real browser: serve `obsrv app` over a finished local run and look at every page with
headless Chromium (Debian's `chromium`). The DAG and the leaderboard must render; one
screenshot per page. OBSRV_SCREENSHOTS=DIR keeps them there (docs/images/ was made so)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .browser import CHROMIUM, chromium

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent: apt-get install -y chromium (.ci/run does)"),
]
pytest.importorskip("streamlit")

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """A workdir holding one finished local run of the seed example, and the app serving it."""
    from obsrv.app.launch import check_text, spec_file
    from obsrv.service_tasks.local.load_data import load_demo
    from obsrv.service_tasks.local.scheduler import run_workflow

    workdir = tmp_path_factory.mktemp("browser")
    load_demo(workdir / ".obsrv")
    checked = check_text((ROOT / "examples" / "credit_risk.yaml").read_text(), spec_file(workdir, "credit_risk"))
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        assert run_workflow(str(checked.path), workdir=str(workdir), live=False, time_limit=20) == 0
    finally:
        os.chdir(cwd)
    run_id = next((workdir / ".obsrv" / "runs").glob("*/state.json")).parent.name
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "obsrv.compiler.cli", "app", "--workdir", str(workdir),
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=2) as reply:
                    if reply.read() == b"ok":
                        break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail("obsrv app did not answer its health check within 60 s")
        yield f"http://localhost:{port}", run_id, workdir
    finally:
        server.terminate()
        server.wait(timeout=20)
        # `obsrv app` execs the server: nothing of it is left on the port
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "the app server outlived obsrv app"


PAGES = {
    "edit": ["Edit & validate", "ok: job credit_risk_ensemble, 14 tasks", "OBS403"],
    "job": ["implicit stage · CPU", "route_cluster", "base · GPU", "resources:"],
    "launch": ["time limit (seconds)", "Launch locally"],
    "watch": ["succeeded", "run history"],
    "results": ["champion:", "models:/credit_risk_ensemble@champion", "★",
                "stack_top_any/stack", "ROC curves"],
}


def test_every_page_renders_in_chromium(served: tuple[str, str, Path], tmp_path: Path) -> None:
    url, run_id, workdir = served
    keep = os.environ.get("OBSRV_SCREENSHOTS")
    with chromium(tmp_path / "profile") as page:
        for name, expect in PAGES.items():
            text = page.open(f"{url}/?page={name}", expect + ([run_id] if name in ("watch", "results") else []))
            shot = tmp_path / f"app_{name}.png"
            page.screenshot(shot)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000, name
            if name == "job":  # the DAG is an SVG the browser drew: every task is a node of it
                for task in ("prepare", "base_knn", "stack_top_any", "vote_top_alg", "evaluate", "cleanup"):
                    assert task in text
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, Path(keep) / shot.name)
        # An invalid spec saved last: its diagnostics, and a Launch button the browser disables.
        specs = workdir / ".obsrv" / "app" / "specs"
        bad = (specs / "credit_risk.yaml").read_text().replace("top_n: 5", "top_n: -5")
        (specs / "credit_risk_broken.yaml").write_text(bad)
        text = page.open(f"{url}/?page=edit", ["error[OBS105]: `top_n` must be at least 2, got -5", "1 error(s)"])
        assert "fix: set `top_n` to a value at least 2" in text
        disabled = page.call("Runtime.evaluate", returnByValue=True, expression=(
            "[...document.querySelectorAll('button')].filter(b => b.innerText.trim() == 'Launch')"
            ".map(b => b.disabled)"))["result"]["value"]
        assert disabled == [True]
        shot = tmp_path / "app_edit_invalid.png"
        page.screenshot(shot)
        if keep:
            shutil.copy(shot, Path(keep) / shot.name)
