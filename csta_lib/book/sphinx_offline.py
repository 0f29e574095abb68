"""Sphinx extension (listed in ``_config.yml``) that keeps the built book free of remote assets.

- Thebe (live kernels from a remote Binder) is off in this book, but ``sphinx_thebe``, which Jupyter Book
  always loads, still adds an inline script declaring ``const THEBE_JS_URL`` (a remote URL) to every page,
  and it lands there twice, so every page throws ``SyntaxError: Identifier 'THEBE_JS_URL' has already been
  declared``. Cause (Sphinx 7.4): sphinx_thebe calls ``app.add_js_file(None, body=...)`` on
  ``env-before-read-docs``, after the HTML builder exists, so the script goes to the builder with filename
  ``None``; ``StandaloneHTMLBuilder.prepare_writing`` later re-adds every registered script as
  ``filename or ''``, and ``_JavaScript(None, ...) != _JavaScript('', ...)`` defeats the de-duplication. We
  detach sphinx_thebe's ``init_thebe_core`` handler, so no thebe script (and no remote URL) reaches a page.
- html-manager (the ipywidgets renderer) calls the MathJax 2 API ``MathJax.Hub.Queue`` to typeset widget
  labels; under MathJax 3 that throws. An inline shim, placed before the widget scripts, gives whatever
  object is ``window.MathJax`` a ``Hub.Queue`` that maps to MathJax 3's ``typesetPromise``.
- html-manager's webpack chunks find their Font Awesome fonts next to the AMD module's URL, which
  require.js derives from the module name (``@jupyter-widgets/...``) relative to the page;
  a ``require`` configuration (a global object read by require.js when it loads) maps that name to the
  vendored copy under ``_static/``, using the page's ``data-content_root``.
- pydata-sphinx-theme logs a console error on a first visit when no default colour mode is set; we set
  ``light`` (the figures have white backgrounds).
- Any page whose scripts or stylesheets name a remote URL is reported as a warning, which the build's
  ``-W`` turns into an error.
"""

from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

# Kept small and dependency-free: runs before require.js and the widget manager on widget pages.
MATHJAX_HUB_SHIM = """(function () {
  function queue() {
    var mj = window.MathJax, els = [];
    for (var i = 0; i < arguments.length; i++) {
      var a = arguments[i];
      if (a && a.length > 2 && a[2] && a[2].nodeType === 1) { els.push(a[2]); }
    }
    if (mj && typeof mj.typesetPromise === "function") {
      mj.typesetPromise(els.length ? els : undefined).catch(function (e) { console.warn(e); });
    }
  }
  function shim(mj) {
    if (mj && typeof mj === "object" && !mj.Hub) {
      Object.defineProperty(mj, "Hub", {value: {Queue: queue}, enumerable: false, configurable: true});
    }
    return mj;
  }
  var current = shim(window.MathJax);
  try {
    Object.defineProperty(window, "MathJax", {
      configurable: true, enumerable: true,
      get: function () { return current; },
      set: function (v) { current = shim(v); }
    });
  } catch (e) { console.warn("MathJax Hub shim not installed", e); }
  // read by require.js when it loads (it must not exist yet): where html-manager's modules live
  if (typeof window.require === "undefined") {
    var root = document.documentElement.getAttribute("data-content_root") || "./";
    var dist = new URL(root + "_static/html-manager/dist", document.baseURI).href;
    // modules named "@jupyter-widgets/X" and "@jupyter-widgets/html-manager/dist/X" both resolve to dist/
    window.require = {paths: {"@jupyter-widgets": dist, "@jupyter-widgets/html-manager/dist": dist}};
  }
})();"""


def _detach_thebe(app: Sphinx) -> None:
    """Remove sphinx_thebe's ``init_thebe_core`` listener (it injects the remote thebe scripts)."""
    listeners = app.events.listeners.get("env-before-read-docs", [])
    for listener in list(listeners):
        handler = listener.handler
        if getattr(handler, "__module__", "") == "sphinx_thebe" and handler.__name__ == "init_thebe_core":
            app.disconnect(listener.id)


def _add_shim(app: Sphinx, config: Any) -> None:
    """Put the MathJax shim first among the widget scripts myst-nb adds to widget pages."""
    scripts = dict(getattr(config, "nb_ipywidgets_js", {}) or {})
    scripts.pop("", None)
    config.nb_ipywidgets_js = {"": {"body": MATHJAX_HUB_SHIM}, **scripts}


def _set_default_mode(app: Sphinx, config: Any) -> None:
    """Give pydata-sphinx-theme a valid default colour mode (an empty one logs a console error)."""
    context = dict(getattr(config, "html_context", {}) or {})
    if not context.get("default_mode"):
        context["default_mode"] = "light"  # pydata-sphinx-theme reads it from html_context
        config.html_context = context


def _is_remote(uri: str) -> bool:
    return "://" in uri or uri.startswith("//")


def _check_offline(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Warn (an error under -W) when a page would load a remote script or stylesheet."""
    for key in ("script_files", "css_files"):
        for asset in context.get(key, []) or []:
            uri = str(getattr(asset, "filename", asset) or "")
            body = str(getattr(asset, "attributes", {}).get("body", "") or "")
            if _is_remote(uri) or "THEBE_JS_URL" in body:
                logger.warning(
                    f"page {pagename!r} would load a remote asset: {uri or body[:80]!r}",
                    type="csta",
                    subtype="remote-asset",
                )


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", _add_shim, priority=100)
    app.connect("config-inited", _set_default_mode, priority=900)
    app.connect("builder-inited", _detach_thebe)
    app.connect("html-page-context", _check_offline, priority=900)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
