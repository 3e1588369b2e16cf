"""Watch: live task states of a run (the shared status function `obsrv status` uses), the run's
Jobs UI link, the last log lines of failed tasks, and the run history."""

from __future__ import annotations

import streamlit as st

from obsrv.app.dag import job_dot
from obsrv.app.run_status import RunStatus, StatusError, find_job_id, local_history, workspace_history
from obsrv.app.status_query import local_query, workspace_query
from obsrv.app.ui import session

# Plain marks, not emoji: a browser without an emoji font (a headless one, a locked-down desktop)
# draws emoji as empty boxes.
_ICON = {"pending": "·", "running": "»", "succeeded": "✓", "failed": "✗", "skipped": "–"}


def history() -> list[RunStatus]:
    checked = session.current()
    job = checked.compiled.job_key if checked is not None and checked.compiled is not None else None
    if session.mode() == "local":
        every = st.toggle("runs of every job", value=False, key="watch_every")
        return local_history(session.workdir(), None if every else job)
    if job is None:
        return []
    jobs = session.jobs_api()
    try:
        return workspace_history(jobs, find_job_id(jobs, job), job=job)
    except StatusError:
        return []


def status_of(run_id: str | None, job: str | None) -> RunStatus:
    if session.mode() == "local":
        return local_query(session.workdir(), job, run_id)
    return workspace_query(session.jobs_api(), job, run_id)


def show(status: RunStatus) -> None:
    head = f"{_ICON[status.state]} run **{status.run_id}** of {status.job}: **{status.state}**"
    if status.seconds is not None:
        head += f" ({status.seconds:.0f} s)"
    st.markdown(head)
    if status.url:
        st.markdown(f"[open run {status.run_id} in the Jobs UI]({status.url})")
    counts = ", ".join(f"{n} {s}" for s, n in status.counts().items() if n)
    st.caption(counts)
    rows = [{"task": t.key, "state": f"{_ICON[t.state]} {t.state}", "seconds": t.seconds, "attempts": t.attempts,
             "detail": t.detail, **({"link": t.url} if status.source == "workspace" else {})} for t in status.tasks]
    st.dataframe(rows, hide_index=True, width="stretch")
    for task in status.tasks:
        if task.state == "failed":
            st.error(f"{task.key} failed: {task.detail}")
            if task.log_tail:
                st.code(task.log_tail, language="text")


def render() -> None:
    st.header("Watch")
    runs = history()
    if not runs:
        st.info("no runs of this job yet: launch one")
        return
    ids = [r.run_id for r in runs]
    wanted = st.session_state.get("run_id")
    chosen = st.selectbox("run", ids, index=ids.index(wanted) if wanted in ids else 0, key="watch_run",
                          format_func=lambda i: f"{i} ({next(r.state for r in runs if r.run_id == i)})")
    job = runs[ids.index(chosen)].job

    @st.fragment(run_every=2.0 if runs[ids.index(chosen)].state in ("pending", "running") else None)
    def live() -> None:
        status = status_of(chosen, job)
        show(status)
        checked = session.current()
        if checked is not None and checked.compiled is not None and checked.compiled.job_key == status.job:
            st.graphviz_chart(job_dot(checked.compiled.job, {t.key: t.state for t in status.tasks}))

    live()
    st.subheader("run history")
    st.dataframe([{"run": r.run_id, "state": f"{_ICON[r.state]} {r.state}", "seconds": r.seconds,
                   "tasks": ", ".join(f"{n} {s}" for s, n in r.counts().items() if n)} for r in runs],
                 hide_index=True, width="stretch")
