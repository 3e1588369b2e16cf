"""The Streamlit pages of `obsrv app`: widgets only, over obsrv.app's functions (one module per page)."""
