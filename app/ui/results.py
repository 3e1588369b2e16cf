"""Results: the leaderboard with the champion marked, the report's plots, the champion's model
version and URI, and two runs of the same job compared."""

from __future__ import annotations

from typing import Any

import streamlit as st

from obsrv.app.results import (Champion, champion, compare, configured_warehouse, leaderboard, report_plots, run_outputs,
                               workspace_champion, workspace_leaderboard)
from obsrv.app.run_status import StatusError, find_job_id, local_history, workspace_history
from obsrv.app.ui import session


def render() -> None:
    st.header("Results")
    if session.mode() != "local":
        _workspace()
        return
    checked = session.current()
    job = checked.compiled.job_key if checked is not None and checked.compiled is not None else None
    finished = [r for r in local_history(session.workdir(), job) if r.state == "succeeded"]
    if not finished:
        st.info("no finished run of this job yet")
        return
    ids = [r.run_id for r in finished]
    wanted = st.session_state.get("run_id")
    run_id = st.selectbox("run", ids, index=ids.index(wanted) if wanted in ids else 0, key="results_run")
    run = finished[ids.index(run_id)]
    try:
        board = leaderboard(session.workdir(), run_id)
    except StatusError as error:
        st.warning(str(error))
        return
    _board(board, run_id)
    _champion(champion(session.workdir(), run.job, board))
    for title, png in report_plots(session.workdir(), run_id):
        st.image(png, caption=title)
    if len(ids) > 1:
        st.subheader("compare two runs")
        other = st.selectbox("with run", [i for i in ids if i != run_id], key="results_other")
        st.dataframe(compare(board, leaderboard(session.workdir(), other), run_id, other), hide_index=True)


def _board(board: Any, run_id: str) -> None:
    shown = board.copy()
    shown.insert(0, "champion", ["★" if c else "" for c in shown["is_champion"].astype(bool)])
    st.subheader(f"leaderboard, run {run_id}")
    # a static table (not the canvas grid): every figure is text a reader can copy and search
    st.table(shown.drop(columns=["is_champion"]).set_index("champion"))


def _champion(best: Champion) -> None:
    st.markdown(f"champion: **{best.model}**, registered as {best.registered_name} "
                f"version {best.version or '(not registered yet)'}")
    st.code(best.uri, language="text")


def _workspace() -> None:
    """The leaderboard table of a finished workspace run (through the SQL warehouse) and the
    champion's UC registered version."""
    checked = session.current()
    if checked is None or checked.compiled is None:
        st.info("no valid spec: fix it on Edit & validate first")
        return
    job = checked.compiled.job_key
    source_table = str(checked.compiled.plan["context"]["source"]["table"])
    try:
        warehouse = configured_warehouse(st.session_state.get("warehouse_id"))
        jobs = session.jobs_api()
        finished = [r for r in workspace_history(jobs, find_job_id(jobs, job), job=job) if r.state == "succeeded"]
        if not finished:
            st.info(f"no finished run of {job} on this workspace yet")
            return
        ids = [r.run_id for r in finished]
        wanted = st.session_state.get("run_id")
        run_id = st.selectbox("run", ids, index=ids.index(wanted) if wanted in ids else 0, key="results_run")
        outputs = run_outputs(jobs.get_run(int(run_id)), job)
        board = workspace_leaderboard(session.statements_api(), warehouse, outputs.leaderboard_table(source_table))
        _board(board, run_id)
        _champion(workspace_champion(board, outputs, session.registry()))
    except StatusError as error:
        st.warning(str(error))
