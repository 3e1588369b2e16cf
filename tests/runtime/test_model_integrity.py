"""Before a member is unpickled, its artifact must lie in this job's experiment and hash as published."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest

from obsrv.service_tasks import tracking
from obsrv.service_tasks.errors import TaskError
from obsrv.service_tasks.io import output_table

from support.runtime_helpers import Job, make_job, synthetic

MODEL = "base_linear/linear_0"
# One module job with MLflow (prepare + one linear base model): ~40 s of MLflow set-up and logging
# on the shared 2-core machine, so the module is marked slow.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Job:
    home = tmp_path_factory.mktemp("integrity")
    job = make_job(home, "binary", df=synthetic("binary", n=120))
    job.prepare()
    job.base("linear")
    return job


def _models_table(job: Job):
    return output_table("main", "lab", "training_data", "models", job.workflow_id, "base_linear")


def _ensemble_ctx(job: Job):
    return job.ctx(job.request("vote_mix", "vote_mix", upstream=["base_linear"]))


def test_publish_records_location_and_hash_and_an_intact_member_loads(job: Job) -> None:
    row = job.store.read(_models_table(job)).iloc[0]
    assert len(row["sha256"]) == 64 and row["artifact_uri"]
    member = _ensemble_ctx(job).predictors([MODEL])[MODEL]
    X = job.ctx(job.request("vote_mix", "vote_mix")).prepared.X_holdout
    assert member.predict_matrix(X).shape == (len(X), 2)


def test_a_model_pointing_outside_the_experiment_is_refused(job: Job) -> None:
    table = _models_table(job)
    models = job.store.read(table)
    try:
        moved = models.copy()
        moved.loc[0, "artifact_uri"] = "file:///elsewhere/models/m-1/artifacts"
        job.store.write(table, moved)
        with pytest.raises(TaskError, match=f"{MODEL} points to") as raised:
            _ensemble_ctx(job).predictors([MODEL])
        assert not raised.value.retryable
    finally:
        job.store.write(table, models)


def test_a_tampered_predictor_file_is_refused_before_unpickling(job: Job, monkeypatch) -> None:
    row = job.store.read(_models_table(job)).iloc[0]
    files = sorted(Path(urlparse(row["artifact_uri"]).path).rglob("predictor.pkl"))
    assert files, row["artifact_uri"]
    original = files[0].read_bytes()
    unpickled: list[bytes] = []
    # spy where PackedPredictor.load looks `_loads` up (after an earlier in-process unpickle,
    # cloudpickle's by-value rebinding leaves the module attribute unused: test_tracking.py)
    load_globals = tracking.PackedPredictor.load.__globals__
    real = load_globals["_loads"]
    monkeypatch.setitem(load_globals, "_loads", lambda blob: unpickled.append(b"") or real(blob))
    try:
        files[0].write_bytes(original + b"tampered")
        with pytest.raises(TaskError, match=f"predictor file of the published model {MODEL} changed"):
            _ensemble_ctx(job).predictors([MODEL])
        assert unpickled == []
        # the spy does fire on an intact file
        files[0].write_bytes(original)
        _ensemble_ctx(job).predictors([MODEL])[MODEL].load()
        assert unpickled
    finally:
        files[0].write_bytes(original)
