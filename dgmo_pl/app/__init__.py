"""The web app, ``dgmo-pl app``: a page that separates an uploaded or recorded sound with ``Separator``.

Needs the optional extra (``pip install -e ".[app]"``, which brings gradio). Nothing here is
imported by the library or the command line: ``dgmo_pl.app.launch`` imports gradio only when the
app starts, so the core package works without the extra.
"""
