"""The dashboard's pages, each a Streamlit script run by ``st.navigation`` in :mod:`coordscope.app.main`.

Not called ``pages/``: a ``pages`` folder beside the entry script switches Streamlit to its older
multipage mode, which lists every file in the sidebar before ``st.navigation`` takes over."""
