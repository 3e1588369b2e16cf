"""Edit & validate: a YAML editor seeded from the examples, the compiler's diagnostics as
`obsrv validate` prints them, and Launch disabled while there is an error."""

from __future__ import annotations

import streamlit as st

from obsrv.app.launch import check_text, spec_file
from obsrv.app.ui import session


def render() -> None:
    st.header("Edit & validate")
    found = session.examples()
    saved = session.saved_spec()
    names = list(found)
    start = st.selectbox("start from an example", ["(the spec saved last)"] * bool(saved) + names, key="example")
    if start in found:
        seed, name = found[start].read_text(encoding="utf-8"), start
    elif saved is not None:
        seed, name = saved.read_text(encoding="utf-8"), saved.stem
    else:
        seed, name = "", "spec"
    name = st.text_input("spec name", value=name, key=f"name_{start}")
    editor, report = st.columns([3, 2])
    with editor:
        text = st.text_area("spec (YAML)", value=seed, height=560, key=f"spec_{start}")
    with report:
        _report(text, name)


def _report(text: str, name: str) -> None:
    """The compiler's verdict beside the editor, and Launch (disabled on any error)."""
    checked = check_text(text, spec_file(session.workdir(), name))
    errors = [d for d in checked.diagnostics if d.is_error]
    warnings = [d for d in checked.diagnostics if not d.is_error]
    if checked.ok:
        job = checked.compiled.job if checked.compiled else {}
        st.success(f"ok: job {job.get('name')}, {len(job.get('tasks', []))} tasks"
                   + (f", {len(warnings)} warning(s)" if warnings else ""))
    else:
        st.error(f"{len(errors)} error(s): fix them to launch")
    for diagnostic in checked.diagnostics:
        where = diagnostic.location()
        box = st.error if diagnostic.is_error else st.warning
        box(f"**{diagnostic.code}** {where}: {diagnostic.message}" + (f"  \nfix: {diagnostic.fix}" if diagnostic.fix else ""))
        st.code(diagnostic.render(), language="text")
    if st.button("Launch", disabled=not checked.ok, key="edit_launch", type="primary"):
        st.query_params["page"] = "launch"
        st.rerun()
