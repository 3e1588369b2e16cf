"""Two runs of one job in one workdir are serialised, as Databricks' queue does for
`max_concurrent_runs: 1`; workflow ids are allocated atomically; the MLflow store is created once,
before any task starts.

The runs use the real CLI with stand-in tasks (`stand_in_cli.py`); the first run's prepare holds
until the test releases it, so the order of events is decided by the test, not by timing.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from runner_harness import events, kill_leftovers, start_cli, wait_for, write_spec
from obsrv.service_tasks.local.scheduler import new_workflow_id
from obsrv.service_tasks.local.workdir import allocate_workflow_id, store_needs_init

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock")


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    kill_leftovers(tmp_path)


def _run_ids(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "ws" / ".obsrv" / "runs").iterdir())


@pytest.mark.slow  # three `obsrv run` processes (imports, compile): ~10 s on 2 cores
def test_a_second_run_of_the_job_queues_behind_the_first_or_refuses_with_no_wait(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    release = tmp_path / "release"
    # prepare fails at once after its wait: with retries 0 the rest is upstream_failed, so each run
    # is short; what is tested is who runs when.
    behaviour = {"prepare": ["--wait-file", str(release), "--sleep", "0", "--behaviour", "fail"],
                 "*": ["--sleep", "0"]}
    argv = ["run", str(spec), "--workdir", str(tmp_path / "ws"), "--no-live", "--jobs", "1"]
    first, first_out = start_cli(tmp_path, "warm", behaviour, argv, tag="first")
    held = wait_for(lambda: next((e for e in events(tmp_path) if e["event"] == "start"), None), "the first run's prepare")
    first_id = held["run"]

    refused, refused_out = start_cli(tmp_path, "warm", behaviour, [*argv, "--no-wait"], tag="refused")
    assert refused.wait(timeout=120) == 1
    message = refused_out.read_text()
    assert f"is already running in this workdir: workflow {first_id} (pid {first.pid}" in message, message
    assert "Traceback" not in message
    assert _run_ids(tmp_path) == [first_id]  # the refused run allocated nothing

    queued, queued_out = start_cli(tmp_path, "warm", behaviour, argv, tag="queued")
    wait_for(lambda: f"already running in this workdir: workflow {first_id}" in queued_out.read_text(),
             "the second run to say it waits")
    assert queued.poll() is None
    assert [e["run"] for e in events(tmp_path) if e["event"] == "start"] == [first_id]  # nothing of its own ran

    release.touch()
    assert first.wait(timeout=120) == 1, first_out.read_text()
    assert queued.wait(timeout=120) == 1, queued_out.read_text()
    journal = events(tmp_path)
    runs = [e["run"] for e in journal if e["event"] == "start"]
    second_id = runs[-1]
    assert second_id != first_id and runs == [first_id, second_id]
    # the queued run started only after the first one's task had ended
    assert [e["event"] for e in journal] == ["start", "end", "start", "end"]
    assert _run_ids(tmp_path) == sorted([first_id, second_id])


def test_workflow_ids_are_allocated_not_just_checked(tmp_path: Path) -> None:
    # check-then-create handed the same id to two callers until one of them created the folder
    first, second = new_workflow_id(tmp_path), new_workflow_id(tmp_path)
    assert first != second
    assert (tmp_path / first).is_dir() and (tmp_path / second).is_dir()


def _allocate_many(folder: str, now: datetime, count: int, out: "multiprocessing.Queue[list[str]]") -> None:
    out.put([allocate_workflow_id(Path(folder), now) for _ in range(count)])


def test_workflow_ids_are_unique_across_processes_started_in_the_same_second(tmp_path: Path) -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_allocate_many, args=(str(tmp_path), now, 10, queue)) for _ in range(3)]
    for worker in workers:
        worker.start()
    ids = [i for _ in workers for i in queue.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=60)
    assert len(ids) == len(set(ids)) == 30
    assert all(i.startswith("20260102030405") for i in ids)


def test_store_readiness_is_read_from_the_alembic_stamp(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    assert store_needs_init(uri)  # no file
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE experiments (id INTEGER)")  # a creation that died half-way
    assert store_needs_init(uri)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num TEXT)")
        conn.execute("INSERT INTO alembic_version VALUES ('x')")
    assert not store_needs_init(uri)
    assert not store_needs_init("http://mlflow.example:5000")  # a server creates its own schema


@pytest.mark.slow  # creates a real MLflow sqlite store (MLflow import and migrations: ~5-15 s)
def test_the_mlflow_store_exists_before_any_task_starts(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    proc, out = start_cli(tmp_path, "warm", {"prepare": ["--sleep", "0", "--behaviour", "fail"]},
                          ["run", str(spec), "--workdir", str(tmp_path / "ws"), "--no-live"], store=True)
    assert proc.wait(timeout=300) == 1, out.read_text()  # prepare fails by design: one task is enough
    (start,) = [e for e in events(tmp_path) if e["event"] == "start"]
    assert start["store_ready"], out.read_text()
    assert not store_needs_init(f"sqlite:///{tmp_path / 'ws' / '.obsrv' / 'mlflow.db'}")
