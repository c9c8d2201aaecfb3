"""The Streamlit dashboard (``coordscope app``): entry script :mod:`coordscope.app.main`, one script per
page under ``views/``, reading through :mod:`coordscope.app.data` and drawing with :mod:`coordscope.plots`."""
