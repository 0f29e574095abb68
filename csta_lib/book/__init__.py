"""The Jupyter Book: offline JavaScript vendoring (``vendor``), the build (``build``: papermill, then
jupyter-book) and small helpers the notebooks use (``captions``, ``glue``, ``widgets``, ``figures``).

Notebooks stay thin: presentation helpers live here, method code lives in the rest of ``csta_lib``.
"""
