"""Results: the leaderboard with the champion marked, the report's plots, the champion's model
version and URI, and two runs of the same job compared."""

from __future__ import annotations

import streamlit as st

from obsrv.app.results import champion, compare, leaderboard, report_plots
from obsrv.app.run_status import StatusError, local_history
from obsrv.app.ui import session


def render() -> None:
    st.header("Results")
    if session.mode() != "local":
        st.info("on a workspace the leaderboard is a Unity Catalog table of the output schema; this page reads "
                "local runs only (see docs/app.md)")
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
    shown = board.copy()
    shown.insert(0, "champion", ["★" if c else "" for c in shown["is_champion"].astype(bool)])
    st.subheader(f"leaderboard, run {run_id}")
    # a static table (not the canvas grid): every figure is text a reader can copy and search
    st.table(shown.drop(columns=["is_champion"]).set_index("champion"))
    best = champion(session.workdir(), run.job, board)
    st.markdown(f"champion: **{best.model}**, registered as {best.registered_name} "
                f"version {best.version or '(not registered yet)'}")
    st.code(best.uri, language="text")
    for title, png in report_plots(session.workdir(), run_id):
        st.image(png, caption=title)
    if len(ids) > 1:
        st.subheader("compare two runs")
        other = st.selectbox("with run", [i for i in ids if i != run_id], key="results_other")
        st.dataframe(compare(board, leaderboard(session.workdir(), other), run_id, other), hide_index=True)
