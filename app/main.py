"""Entry script of the dashboard: ``streamlit run coordscope/app/main.py -- --root RUNS_DIR``, which is
what ``coordscope app RUNS_DIR`` runs. The runs root can also come from ``COORDSCOPE_RUNS_ROOT``."""

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).parent / "views"

st.set_page_config(page_title="coordscope", page_icon=":material/straighten:", layout="wide")
st.navigation([
    st.Page(PAGES / "coord_check.py", title="Coord check", icon=":material/show_chart:", default=True),
    st.Page(PAGES / "slopes.py", title="Slopes", icon=":material/grid_on:"),
    st.Page(PAGES / "lr_sweep.py", title="LR sweep", icon=":material/tune:"),
    st.Page(PAGES / "compare.py", title="Compare", icon=":material/compare_arrows:"),
]).run()
