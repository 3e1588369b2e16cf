"""`obsrv app`'s Streamlit entry: the sidebar (page, local or workspace) and the chosen page.

The page is the `?page=` query parameter, so each page has its own address (a bookmark, a
screenshot) and a refresh stays on it.
"""

from __future__ import annotations

import os

import streamlit as st

from obsrv.app.results import WAREHOUSE_ENV
from obsrv.app.ui import edit, job, launch, results, session, watch

PAGES = {"edit": ("Edit & validate", edit.render), "job": ("Job", job.render), "launch": ("Launch", launch.render),
         "watch": ("Watch", watch.render), "results": ("Results", results.render)}


def _follow_radio() -> None:
    st.query_params["page"] = st.session_state["page_radio"]


def main() -> None:
    st.set_page_config(page_title="obsrv", layout="wide")
    page = st.query_params.get("page", "edit")
    page = page if page in PAGES else "edit"
    with st.sidebar:
        st.title("obsrv")
        # The address decides the page; picking one in the sidebar changes the address first.
        st.session_state["page_radio"] = page
        st.radio("page", list(PAGES), format_func=lambda k: PAGES[k][0], key="page_radio", on_change=_follow_radio)
        # On Databricks Apps (DATABRICKS_APP_NAME is set) the app starts on the workspace.
        st.session_state.setdefault("mode", "workspace" if os.environ.get("DATABRICKS_APP_NAME") else "local")
        st.radio("where", ["local", "workspace"], key="mode", horizontal=True)
        if session.mode() == "workspace":
            st.text_input("profile (empty: unified auth's default, e.g. the app's service principal)", key="profile")
            if not os.environ.get(WAREHOUSE_ENV):
                # the deployed app gets it from its sql_warehouse resource; elsewhere, type it
                st.text_input("SQL warehouse id (for the leaderboard)", key="warehouse_id")
        st.caption(f"workdir {session.workdir()}")
    PAGES[page][1]()


main()
