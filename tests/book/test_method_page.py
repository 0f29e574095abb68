"""The method page and the API page build cleanly on their own (seconds, no notebooks).

The book is built with warnings as errors, and the API page renders the docstrings of the library modules
the method page cites, so a docstring that is not valid reStructuredText, or a ``{py:func}`` link to an
object the API page does not document, would only show up in the full book build. This builds the two pages
(with a stub for the one page they link to) with the book's Sphinx extensions and MyST settings.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAGES = ("method.md", "api.md")


def _conf(config: dict) -> str:
    """A Sphinx conf.py with the book's MyST settings, bibliography and the extensions the two pages need."""
    parse = config.get("parse", {})
    extensions = [e for e in config["sphinx"]["extra_extensions"]
                  if e.startswith("sphinx.ext.") or e == "csta_lib.book.sphinx_pages"]
    bibfiles = [str(PROJECT_ROOT / f) for f in config["bibtex_bibfiles"]]
    return "\n".join([
        f"extensions = {['myst_parser', 'sphinx.ext.mathjax', 'sphinxcontrib.bibtex', *extensions]!r}",
        f"myst_enable_extensions = {parse.get('myst_enable_extensions', [])!r}",
        f"myst_url_schemes = {parse.get('myst_url_schemes', ['http', 'https'])!r}",
        f"bibtex_bibfiles = {bibfiles!r}",
        *(f"{key} = {value!r}" for key, value in config["sphinx"]["config"].items()
          if key.startswith(("bibtex_", "autodoc_"))),
        "root_doc = 'index'",
        "",
    ])


def _unlinked_python_refs(html: str) -> list[str]:
    """Text of every Python cross-reference that Sphinx left without a link."""
    unlinked = []
    for match in re.finditer(r'<code class="xref py[^"]*"[^>]*><span class="pre">([^<]*)', html):
        before = html[max(0, match.start() - 400): match.start()]
        if before.rfind("<a ") == -1 or before.rfind("</a>") > before.rfind("<a "):
            unlinked.append(match.group(1))
    return unlinked


def test_method_and_api_pages_build_with_warnings_as_errors(tmp_path: Path) -> None:
    config = yaml.safe_load((PROJECT_ROOT / "_config.yml").read_text(encoding="utf-8"))
    extensions = config["sphinx"]["extra_extensions"]
    assert {"sphinx.ext.autodoc", "sphinx.ext.viewcode"} <= set(extensions)
    src, out = tmp_path / "src", tmp_path / "html"
    src.mkdir()
    for page in PAGES:
        (src / page).write_text((PROJECT_ROOT / "book" / page).read_text(encoding="utf-8"), encoding="utf-8")
    (src / "deviations.md").write_text("# Deviations and caveats\n\nstub\n\n(surrogate-features)=\n"
                                       "## Surrogate features (stub of the data chapter's section)\n", encoding="utf-8")
    (src / "index.md").write_text("# Index\n\n```{toctree}\nmethod\napi\ndeviations\n```\n\n"
                                  "```{bibliography}\n```\n", encoding="utf-8")
    (src / "conf.py").write_text(_conf(config), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(src), str(out)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    method = (out / "method.html").read_text(encoding="utf-8")
    assert method.count('<code class="xref py') >= 40  # the page names the code of every step
    assert _unlinked_python_refs(method) == [], "cited on the method page but not documented on the API page"
    for label in ("method-input", "method-cnn", "method-skip", "method-loss", "method-selection", "method-metrics"):
        assert f'id="{label}"' in method
    assert method.count('class="reference internal" href="index.html#id') >= 5  # the citations link the bibliography
    api = (out / "api.html").read_text(encoding="utf-8")
    assert api.count("viewcode-link") >= 40  # every documented object links to its highlighted source
    assert "ModelConfig(backbone=" not in api, "PRESETS shown as its repr"
    presets = api[api.index('id="api-presets"'):].replace("<wbr>", "")
    assert all(f"<code class=\"docutils literal notranslate\"><span class=\"pre\">{name}</span>" in presets
               for name in ("paper", "table2.baseline", "fig4.resnet18")), "the presets table lists every preset"
    assert (out / "_modules" / "csta_lib" / "model.html").is_file()


def test_unlinked_reference_detection() -> None:
    linked = '<a class="reference internal" href="api.html#x"><code class="xref py py-func"><span class="pre">x()'
    unlinked = '<p>see <code class="xref py py-func docutils"><span class="pre">y()</span></code></p>'
    assert _unlinked_python_refs(linked) == []
    assert _unlinked_python_refs(linked + "</a>" + unlinked) == ["y()"]
