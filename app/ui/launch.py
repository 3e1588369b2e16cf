"""Launch: locally, `obsrv run` in the background with a time limit; on a workspace, run the
deployed job (jobs.run_now) or submit the compiled tasks once (jobs.submit), saying which."""

from __future__ import annotations

import streamlit as st

from obsrv.app.launch import ensure_demo_source, run_deployed, start_local_run, submit_compiled
from obsrv.app.run_status import StatusError, find_job_id
from obsrv.app.ui import session


def render() -> None:
    st.header("Launch")
    checked = session.current()
    ok = checked is not None and checked.ok
    if not ok:
        st.error("the current spec has errors: fix them on Edit & validate; Launch stays disabled")
    compiled = checked.compiled if checked is not None else None
    if session.mode() == "local":
        limit = st.number_input("time limit (seconds)", min_value=10, max_value=24 * 3600, value=120, step=10, key="time_limit")
        if st.button("Launch locally", disabled=not ok, type="primary", key="launch_local") and checked and compiled:
            loaded = ensure_demo_source(compiled, session.workdir())
            if loaded:
                st.info(loaded)
            launch = start_local_run(checked.path, session.workdir(), float(limit))
            st.session_state["run_id"] = launch.run_id
            st.success(f"started obsrv run in the background (pid {launch.pid}): workflow {launch.run_id or '(starting)'}; "
                       f"console log {launch.log}")
            st.code(" ".join(launch.command), language="bash")
        return
    if compiled is None:
        return
    jobs = session.jobs_api()
    try:
        job_id: int | None = find_job_id(jobs, compiled.job_key)
    except StatusError as error:
        job_id = None
        st.info(f"{error}; Launch submits a one-time run of the compiled tasks instead (jobs.submit)")
    if job_id is not None:
        st.write(f"deployed job **{compiled.job_key}** (id {job_id}): Launch runs it (jobs.run_now)")
        parameters = {p["name"]: st.text_input(f"parameter {p['name']}", value="", placeholder="the job's default",
                                               key=f"param_{p['name']}") for p in compiled.job.get("parameters", [])}
        if st.button("Launch on the workspace", disabled=not ok, type="primary", key="launch_run_now"):
            done = run_deployed(jobs, job_id, {k: v for k, v in parameters.items() if v})
            st.session_state["run_id"] = str(done.run_id)
            st.success(done.describe())
        return
    folder = st.text_input("workspace folder for the plan file", key="submit_folder",
                           value=f"/Workspace/Shared/obsrv_app/{compiled.job_key}")
    wheel = st.text_input("obsrv wheel (a deployed artifact's path)", key="submit_wheel")
    user = st.text_input("user (for the experiment path)", key="submit_user")
    if st.button("Submit a one-time run", disabled=not (ok and wheel and user), type="primary", key="launch_submit"):
        done = submit_compiled(jobs, session.workspace_api(), compiled, folder=folder, wheel=wheel, user=user)
        st.session_state["run_id"] = str(done.run_id)
        st.success(done.describe())
        for note in done.notes:
            st.caption(note)
