"""obsrv.app: the Streamlit app (`obsrv app`) and the run-status model `obsrv status` shares with it.

The modules at this level hold what the CLI and the app both call (status, launch, results, the
DAG); they never import streamlit. `ui/` holds the Streamlit pages, one module each, and nothing
but widgets over these functions.
"""
