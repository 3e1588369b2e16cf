"""The benchmark scripts' smoke modes (one dataset, one fold, tiny budget) still run end to end.

They run the real obsrv code path (compile, local runner, one process per task), so they take
tens of seconds each; the AutoML peers are never needed here (their rows say 'skipped').
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


def _run(script: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OBSRV_BENCH_NO_PEERS="1")
    return subprocess.run(
        [sys.executable, str(BENCH / script), "--smoke", "--out-dir", str(tmp_path), *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_quality_smoke(tmp_path: Path) -> None:
    res = _run("quality.py", tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "quality_smoke_runs.csv")
    status = dict(zip(runs.method, runs.status))
    # every method has a row; the baselines and obsrv's own rows produced predictions
    for m in ("constant", "best_single", "sklearn_stacking", "obsrv_champion", "obsrv:vote_weight", "obsrv:stack_top_any"):
        assert status.get(m) == "ok", (m, status, res.stdout[-3000:])
    for peer in ("flaml", "autogluon", "h2o"):
        assert status[peer].startswith("skipped"), status[peer]
    ok = runs[runs.status == "ok"]
    assert ok["auc"].between(0.0, 1.0).all()
    assert (ok.loc[ok.method == "best_single", "auc"] > 0.6).all()  # credit_data is learnable
    md = (tmp_path / "quality_smoke.md").read_text()
    assert "## Headline" in md and "credit_data" in md and "skipped" in md
    # the run's task times travel with its champion row (resume-safe) and make the per-task table
    seconds = json.loads(runs.loc[runs.method == "obsrv_champion", "notes"].iloc[0])["task_seconds"]
    assert {"prepare", "base_linear", "vote_weight", "evaluate"} <= set(seconds)
    assert all(v > 0 for v in seconds.values())
    assert "## obsrv: time per task" in md and "| evaluate |" in md
    assert (tmp_path / "quality_smoke_rank.png").stat().st_size > 1000


@pytest.mark.slow
def test_holdout_ab_smoke(tmp_path: Path) -> None:
    res = _run("holdout_ab.py", tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "holdout_ab_smoke_runs.csv")
    assert (runs.status == "ok").all(), runs[["method", "holdout", "status"]]
    assert sorted(runs.holdout.unique()) == [0.0, 0.2]
    assert set(runs.method) == {"obsrv_champion", "best_single"}
    champ = runs[runs.method == "obsrv_champion"].set_index("holdout")["notes"].map(json.loads)
    # 480 outer-train rows of the 600-row smoke sample: obsrv keeps 20 % back, or none
    assert champ[0.2]["obsrv_train_rows"] == 384 and champ[0.2]["obsrv_holdout_rows"] == 96
    assert champ[0.0]["obsrv_train_rows"] == 480 and champ[0.0]["obsrv_holdout_rows"] == 0
    assert (runs["auc"] > 0.6).all()  # credit_data is learnable in both arms
    md = (tmp_path / "holdout_ab_smoke.md").read_text()
    assert "holdout 0 vs 0.2" in md and "| credit_data | obsrv_champion |" in md


def test_resume_replaces_the_rows_of_a_redone_method(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--resume --methods obsrv` after obsrv failed on a split: the failed run's obsrv rows are
    replaced by the new run's, never kept beside them (each method one row per split)."""
    sys.path.insert(0, str(BENCH))
    import _common as C
    import quality as Q

    def row(method: str, status: str, auc: float, seconds: float) -> dict:
        notes = json.dumps({"task_seconds": {"prepare": seconds}} if method == "obsrv_champion" else {})
        return {"method": method, "status": status, "dataset": "credit_data", "repeat": 0, "fold": 0,
                "n_classes": 2, "auc": auc, "notes": notes}

    old = [row(m, s, a, 9.0) for m, s, a in [("constant", "ok", 0.5), ("best_single", "ok", 0.80),
                                              ("obsrv:vote_weight", "ok", 0.81),
                                              ("obsrv_champion", "failed: no champion on the leaderboard", float("nan"))]]
    pd.DataFrame(old).assign(code=C.code_revision()).to_csv(tmp_path / "quality_runs.csv", index=False)
    elsewhere = {"cpu": "Old CPU", "cores": "2", "memory": "8.0 GiB"}
    (tmp_path / "quality_meta.json").write_text(json.dumps({"machine": elsewhere, "wall_s": 1.0}))
    new = [row(m, "ok", a, 2.0) for m, a in [("best_single", 0.82), ("obsrv_champion", 0.84), ("obsrv:vote_weight", 0.84)]]
    calls = []
    monkeypatch.setattr(Q, "run_split", lambda ds, split, args, need, work: calls.append(set(need)) or list(new))
    monkeypatch.setattr(Q, "render_report", lambda *a, **k: None)
    assert Q.main(["--resume", "--datasets", "credit_data", "--max-splits", "1", "--methods", "obsrv",
                   "--out-dir", str(tmp_path), "--work-dir", str(tmp_path / "work")]) == 0
    assert calls == [{"obsrv"}]
    runs = pd.read_csv(tmp_path / "quality_runs.csv")
    assert sorted(runs.method) == ["best_single", "constant", "obsrv:vote_weight", "obsrv_champion"]
    assert (runs.status == "ok").all()
    assert runs.set_index("method")["auc"].to_dict() == {"constant": 0.5, "best_single": 0.82,
                                                         "obsrv:vote_weight": 0.84, "obsrv_champion": 0.84}
    # rows from before the machine column name their run's machine; the new rows name this one
    assert runs.set_index("method")["machine"].to_dict() == {
        "constant": "Old CPU, 2 cores, 8.0 GiB", "best_single": C.machine_label(),
        "obsrv:vote_weight": C.machine_label(), "obsrv_champion": C.machine_label()}
    assert Q.machines_line(runs).startswith("Old CPU, 2 cores, 8.0 GiB: 1 dataset-splits; ")
    assert Q.machines_line(runs).endswith("ran on different machines: credit_data r0f0.")
    assert set(runs["code"]) == {C.code_revision()}  # the redone rows name the same code revision
    # the per-task times come from the new run's champion row only, never the replaced one
    assert json.loads((tmp_path / "quality_meta.json").read_text())["obsrv_tasks"] == {"prepare": 2.0}


def test_splits_runs_only_the_named_splits_and_another_budget_gets_its_own_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--splits 10 --budget 300`: only split 10 (repeat 2, fold 5) runs, and the rows land in
    quality_300s_*, never in the 60 s report's files."""
    sys.path.insert(0, str(BENCH))
    import _common as C
    import quality as Q

    ran: list[tuple[str, int, int]] = []

    def fake_split(ds, split, args, need, work):
        ran.append((ds.name, int(split[0]), int(split[1])))
        return [{"method": "constant", "status": "ok", "dataset": ds.name, "repeat": split[0], "fold": split[1],
                 "n_classes": 2, "auc": 0.5, "notes": "{}"}]

    monkeypatch.setattr(Q, "run_split", fake_split)
    monkeypatch.setattr(Q, "render_report", lambda *a, **k: None)
    assert Q.main(["--datasets", "credit_data", "--max-splits", "10", "--splits", "10", "--budget", "300",
                   "--methods", "constant", "--out-dir", str(tmp_path), "--work-dir", str(tmp_path / "w")]) == 0
    assert ran == [("credit_data", 1, 4)]
    assert (tmp_path / "quality_300s_runs.csv").exists() and (tmp_path / "quality_300s_meta.json").exists()
    assert not (tmp_path / "quality_runs.csv").exists()
    meta = json.loads((tmp_path / "quality_300s_meta.json").read_text())
    assert "only split(s) 10" in meta["protocol"] and meta["budget"] == 300
    # code_ab reads each arm's quality.py CSV by the same rule
    assert C.quality_stem(smoke=False, budget=300.0) == "quality_300s"
    assert C.quality_stem(smoke=False, budget=60.0) == "quality"
    assert C.quality_stem(smoke=True, budget=8.0) == "quality_smoke"


@pytest.mark.slow
def test_scale_smoke(tmp_path: Path) -> None:
    res = _run("scale.py", tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    md = (tmp_path / "scale_smoke.md").read_text()
    assert "2,000 rows" in md and "Cost of ensembling" in md
    assert "| prepare |" in md and "| vote_weight |" in md and "MB" in md


def test_quality_task_seconds_average_exactly_the_rows_in_the_report() -> None:
    sys.path.insert(0, str(BENCH))
    import quality

    runs = pd.DataFrame({
        "method": ["obsrv_champion", "obsrv_champion", "best_single"],
        "notes": [json.dumps({"task_seconds": {"a": 1.0, "b": 4.0}}), json.dumps({"task_seconds": {"a": 3.0}}),
                  json.dumps({"task_seconds": {"a": 100.0}})],
    })
    assert quality.obsrv_task_seconds(runs) == {"a": 2.0, "b": 4.0}


@pytest.mark.parametrize("script", ["quality.py", "scale.py", "holdout_ab.py", "code_ab.py"])
def test_help(script: str) -> None:
    res = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "--smoke" in res.stdout


@pytest.mark.slow
def test_task_start_smoke(tmp_path: Path) -> None:
    res = _run("task_start.py", tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    md = (tmp_path / "task_start_smoke.md").read_text()
    # smoke: the cold side re-ran only stack_top_any and what is downstream of it: evaluate, cleanup
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ") and "---" not in line}
    assert set(rows) == {"task", "stack_top_any", "evaluate", "cleanup", "**these tasks, summed**"}, md
    for task in ("stack_top_any", "evaluate"):
        warm, cold = (float(x) for x in rows[task].split("|")[2:4])
        assert warm > 0 and cold > 0, rows[task]
    assert "cold / warm" in md and "--from stack_top_any" in md


def test_code_ab_arms_load_obsrv_from_their_own_checkout(tmp_path: Path) -> None:
    """Each arm's shim makes every obsrv package load from that arm's git worktree, ahead of the
    installed (editable) package; a shim that does not is refused before anything runs."""
    sys.path.insert(0, str(BENCH))
    import code_ab

    code = code_ab.checkout("HEAD", tmp_path / "code")
    try:
        env = code_ab.arm_env(code_ab.shim(code, tmp_path / "shim"), code)
        probe = subprocess.run([sys.executable, "-c", "import obsrv.compiler.cli as c, obsrv.service_tasks.zoo as z, "
                                "obsrv.templates as t; print(c.__file__); print(z.__file__); "
                                "print(t.__path__[0])"],
                               env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert probe.returncode == 0, probe.stderr
        loaded = [Path(os.path.realpath(line)) for line in probe.stdout.split()]
        assert len(loaded) == 3 and all(code.resolve() in p.parents for p in loaded), loaded
        with pytest.raises(SystemExit, match="loads obsrv from"):
            code_ab.arm_env(tmp_path / "empty_shim", code)  # nothing there: the installed package loads
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(code)], cwd=ROOT, capture_output=True)


def test_code_ab_summary_pairs_the_arms_split_by_split() -> None:
    sys.path.insert(0, str(BENCH))
    import code_ab

    rows = []
    for ds, n_classes, a, b in [("credit_data", 2, 0.80, 0.82), ("wa_churn", 2, 0.84, 0.84), ("Car", 6, 1.55, 1.50),
                                ("HMDA", 2, 0.83, None)]:  # B failed on HMDA: that split is not a pair
        for arm, value in (("A", a), ("B", b)):
            metric = {"auc": value} if n_classes == 2 else {"logloss": value}
            rows.append({"method": "obsrv_champion", "status": "ok" if value else "failed: boom", "dataset": ds,
                         "repeat": 0, "fold": 0, "n_classes": n_classes, "arm": arm, **metric,
                         "fit_s": 300.0 if ds == "HMDA" else 60.0 if arm == "A" else 50.0})
    f = code_ab.summarise(pd.DataFrame(rows))["obsrv_champion"]
    assert (f["pairs"], f["wins_b"], f["ties"]) == (3, 2, 1)
    # relative loss reductions per dataset: credit (0.20-0.18)/0.20, wa_churn 0, Car 0.05/1.55
    assert f["rel_loss_reduction"] == pytest.approx((0.1 + 0.0 + 0.05 / 1.55) / 3)
    assert (f["fit_s_a"], f["fit_s_b"]) == (60.0, 50.0)  # over the pairs only: A's unpaired 300 s left out
