"""Job: the compiled DAG as a picture beside the compiled job YAML (read-only)."""

from __future__ import annotations

import streamlit as st

from obsrv.app.dag import job_dot
from obsrv.app.ui import session


def render() -> None:
    st.header("Job")
    checked = session.current()
    if checked is None or checked.compiled is None:
        st.error("the current spec does not compile: fix it on Edit & validate")
        return
    compiled = checked.compiled
    st.caption(f"{checked.path}: job {compiled.job_key}, {len(compiled.job['tasks'])} tasks "
               "(implicit stages and your tasks; GPU tasks have a green border)")
    left, right = st.columns([3, 2])
    with left:
        st.graphviz_chart(job_dot(compiled.job), width="stretch")
    with right:
        st.code(compiled.files[f"{compiled.job_key}.job.yml"], language="yaml")
