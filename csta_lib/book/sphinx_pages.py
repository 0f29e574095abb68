"""Sphinx extension (listed in ``_config.yml``): what the hand-written pages take from the code at build time,
and how the book's tables wrap.

Directives, so that a page cannot disagree with the code it describes:

- ``{csta-presets}``: the model presets × the switches they set (:data:`csta_lib.config.PRESETS`), one row per
  preset, the switches every preset shares in one sentence below;
- ``{csta-profiles}``: what each build profile trains (:data:`csta_lib.runs.experiments.PROFILE_SIZES`) and how
  long the build takes (:data:`csta_lib.book.build.EXPECTED_TIME`);
- ``{csta-citation}``: a BibTeX entry: ``book`` from ``CITATION.cff``, or a key of the book's bibliography;
- ``{csta-paper-cost}``: what the ``paper`` profile costs, from per-step times measured on the machine that
  builds the book (:func:`csta_lib.runs.grid.profile_cost`; measured once per machine, cached).

Every page ends with the build panel under the theme's author line (commit, build date, profile, library
versions; a ``<details>`` in the footer, :func:`build_panel_html`), and inside table cells the build adds break
opportunities (``<wbr>``) after the ``/ _ . , =`` of long identifiers, paths and addresses and keeps numbers in one
piece (:func:`wrap_table_cells`), so that a narrow column never breaks a word in the middle.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import importlib.metadata
import os
import platform
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from csta_lib.book.build import EXPECTED_TIME, PROFILE_ENV
from csta_lib.config import PRESETS, ModelConfig
from csta_lib.runs import cost, grid
from csta_lib.runs.experiments import EXPERIMENTS, PROFILE_SIZES, Size
from csta_lib.runs.locator import PROJECT_ROOT

CITATION_FILE = PROJECT_ROOT / "CITATION.cff"
#: Distributions whose versions the build panel lists (what computes or renders a number of the book).
PANEL_DISTRIBUTIONS = ("csta-book", "torch", "torchvision", "numpy", "scipy", "h5py", "pandas", "matplotlib",
                       "papermill", "jupyter-book", "sphinx", "myst-nb", "sphinxcontrib-bibtex")
PANEL_CLASS = "csta-build-panel"
NOWRAP_CLASS = "csta-nowrap"
COMPACT_CLASS = "csta-compact"


# ---------------------------------------------------------------------------------------------------------
# tables as docutils nodes


def table_node(header: Sequence[str], rows: Sequence[Sequence[str]],
               literal_columns: Sequence[int] = ()) -> nodes.table:
    """A docutils table; cells of ``literal_columns`` are set as code."""
    table = nodes.table()
    group = nodes.tgroup(cols=len(header))
    table += group
    group.extend(nodes.colspec(colwidth=1) for _ in header)

    def row_node(cells: Sequence[str], literal: Sequence[int]) -> nodes.row:
        row = nodes.row()
        for index, text in enumerate(cells):
            entry = nodes.entry()
            entry += nodes.paragraph("", "", nodes.literal(text, text) if index in literal else nodes.Text(text))
            row += entry
        return row

    head = nodes.thead()
    head += row_node(header, ())
    body = nodes.tbody()
    body.extend(row_node(cells, literal_columns) for cells in rows)
    group += head
    group += body
    return table


def switch_text(value: Any) -> str:
    """A switch value as the tables print it: ``–`` for None, on/off for booleans, else the value."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def presets_rows(presets: dict[str, ModelConfig]) -> tuple[list[str], list[list[str]], dict[str, Any]]:
    """(switch names that differ between presets, one row per preset, {switch: value} shared by all)."""
    names = [f.name for f in dataclasses.fields(ModelConfig)]
    varying = [n for n in names if len({repr(getattr(c, n)) for c in presets.values()}) > 1]
    first = next(iter(presets.values()))
    shared = {n: getattr(first, n) for n in names if n not in varying}
    rows = [[name, *(switch_text(getattr(config, n)) for n in varying)] for name, config in presets.items()]
    return varying, rows, shared


class PresetsTable(SphinxDirective):
    """``{csta-presets}``: :data:`~csta_lib.config.PRESETS` as a presets × switches table."""

    def run(self) -> list[nodes.Node]:
        varying, rows, shared = presets_rows(PRESETS)
        table = table_node(["preset", *varying], rows, literal_columns=(0,))
        table["classes"].append(COMPACT_CLASS)  # nine columns: set a little smaller than the prose
        note = nodes.paragraph("", "Every preset also has " + ", ".join(
            f"{name} = {switch_text(value)}" for name, value in shared.items()) + " (\u2013: None).")
        return [table, note]


def size_text(s: Size) -> list[str]:
    """The cells of one size: datasets, folds, seeds, epochs."""
    data = " (tiny subsets: a few short videos)" if s.data == "tiny" else ""

    def listed(values: Sequence[int]) -> str:
        contiguous = len(values) > 2 and list(values) == list(range(values[0], values[-1] + 1))
        return f"{values[0]}\u2013{values[-1]}" if contiguous else ", ".join(map(str, values))

    fewer = "".join(f" ({d}: {listed(s.seeds_of(d))})" for d in s.datasets if s.seeds_of(d) != s.seeds)
    return [" + ".join(d for d in s.datasets) + data, listed(s.splits), listed(s.seeds) + fewer, str(s.epochs)]


def profiles_rows(sizes: dict[str, dict[str, Size]], expected: dict[str, str]) -> list[list[str]]:
    """One row per (profile, group of experiments of the same size); the expected time on a profile's first row."""
    rows = []
    for profile, by_experiment in sizes.items():
        groups: dict[Size, list[str]] = {}
        for experiment, s in by_experiment.items():
            groups.setdefault(s, []).append(experiment)
        for index, (s, experiments) in enumerate(groups.items()):
            names = "all" if len(experiments) == len(EXPERIMENTS) else ", ".join(experiments)
            rows.append([profile if index == 0 else "", names, *size_text(s),
                         expected.get(profile, "") if index == 0 else ""])
    return rows


class ProfilesTable(SphinxDirective):
    """``{csta-profiles}``: every profile's sizes, from :data:`~csta_lib.runs.experiments.PROFILE_SIZES`."""

    def run(self) -> list[nodes.Node]:
        rows = profiles_rows(PROFILE_SIZES, EXPECTED_TIME)
        return [table_node(["profile", "experiments", "datasets", "folds", "seeds", "epochs",
                            "expected time of the whole build"], rows, literal_columns=(0,))]


def paper_cost_rows(costs: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the paper profile's cost: per experiment (and all, shared runs once) the distinct runs,
    their CPU time and the wall time on N Ray nodes like the building machine."""
    header = ["experiment", "distinct runs", "CPU time of the runs",
              *[f"wall, {n} node{'s' if n > 1 else ''}" for n in cost.NODE_COUNTS]]
    rows = [[name, str(c["runs"]), cost.duration(c["cpu"]["cpu_s"]),
             *[cost.duration(c["cpu"]["wall_s_by_ray_nodes"][str(n)]) for n in cost.NODE_COUNTS]]
            for name, c in costs.items()]
    return header, rows


class PaperCost(SphinxDirective):
    """``{csta-paper-cost}``: the paper profile's cost on the machine that builds the book (one run at a time per
    machine, this machine's cores as its threads, as ``csta grid`` does by default)."""

    def run(self) -> list[nodes.Node]:
        threads = grid.default_cpus_per_run("local", 1, joins_cluster=False)
        costs = grid.profile_cost(list(EXPERIMENTS), "paper", threads, say=print)
        header, rows = paper_cost_rows(costs)
        table = table_node(header, rows, literal_columns=(0,))
        table["classes"].append(COMPACT_CLASS)
        return [nodes.paragraph("", line.strip()) for line in cost.describe(costs["all"], totals=False)] + [table]


# ---------------------------------------------------------------------------------------------------------
# citations


def read_citation(path: Path = CITATION_FILE) -> dict[str, Any]:
    """The repository's ``CITATION.cff`` as a dict."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def cff_person(person: dict[str, Any]) -> str:
    """A CFF author as BibTeX names it: ``Family, Given`` for a person, ``{Name}`` for an entity."""
    if "name" in person:
        return "{" + person["name"] + "}"
    return f"{person['family-names']}, {person['given-names']}"


def software_bibtex(cff: dict[str, Any], key: str = "cstabook") -> str:
    """The BibTeX entry (``@software``) of the repository, from its CITATION.cff."""
    return bibtex_text("software", key, {
        "author": " and ".join(cff_person(p) for p in cff["authors"]),
        "title": "{" + cff["title"] + "}",
        "version": cff.get("version"),
        "year": str(cff["date-released"])[:4] if cff.get("date-released") else None,
        "license": cff.get("license"),
        "url": cff.get("repository-code") or cff.get("url"),
    })


def bibliography_entry(key: str, bibfile: Path) -> str:
    """One entry of a ``.bib`` file as BibTeX text to copy: its fields as written there, persons joined with
    "and" (read with pybtex, which sphinxcontrib-bibtex uses; its own writer would escape the URLs)."""
    from pybtex.database import parse_file  # the [book] extra (sphinxcontrib-bibtex needs it)

    data = parse_file(str(bibfile))
    if key not in data.entries:
        raise KeyError(f"{bibfile}: no entry {key!r}; entries: {', '.join(data.entries)}")
    entry = data.entries[key]
    fields: dict[str, str | None] = {role: " and ".join(str(person) for person in people)
                                     for role, people in entry.persons.items()}
    fields.update(entry.fields)
    return bibtex_text(entry.type, key, fields)


def bibtex_text(kind: str, key: str, fields: dict[str, str | None]) -> str:
    """``@kind{key, field = {value}, ...}``, one field a line, empty fields left out."""
    body = ",\n".join(f"  {name:<9} = {{{value}}}" for name, value in fields.items() if value)
    return f"@{kind}{{{key},\n{body}\n}}"


class CitationBlock(SphinxDirective):
    """``{csta-citation} book`` (from CITATION.cff) or ``{csta-citation} KEY`` (from the book's bibliography):
    a BibTeX block to copy."""

    required_arguments = 1
    option_spec = {"bibfile": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        which = self.arguments[0]
        if which == "book":
            self.env.note_dependency(str(CITATION_FILE))
            text = software_bibtex(read_citation())
        else:
            bibfile = Path(self.env.srcdir) / self.options.get("bibfile", self.config.bibtex_bibfiles[0])
            self.env.note_dependency(str(bibfile))
            text = bibliography_entry(which, bibfile)
        block = nodes.literal_block(text, text)
        block["language"] = "bibtex"
        return [block]


def author_year_label(entry: Any) -> str:
    """``Son et al., 2024``, ``Zhou and Xiang, 2018`` or ``Gygli, 2014``: how the text cites an entry (pybtex entry)."""
    names = [" ".join(p.last_names) for p in entry.persons.get("author", [])] or ["Anonymous"]
    who = names[0] if len(names) == 1 else f"{names[0]} and {names[1]}" if len(names) == 2 else f"{names[0]} et al."
    return f"{who}, {entry.fields.get('year', 'n.d.')}".replace("{", "").replace("}", "")


def register_bibliography_style() -> None:
    """Register the pybtex style ``csta`` (``bibtex_default_style`` in ``_config.yml``): the bibliography sorted by
    author and year, each entry labelled as the text cites it (:func:`author_year_label`), so that the list and
    the author-year citations read alike."""
    from pybtex.plugin import register_plugin  # the [book] extra (sphinxcontrib-bibtex needs it)
    from pybtex.style.formatting.unsrt import Style as UnsrtStyle
    from pybtex.style.labels import BaseLabelStyle
    from pybtex.style.sorting.author_year_title import SortingStyle

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries):
            seen: dict[str, int] = {}
            for entry in sorted_entries:
                label = author_year_label(entry)
                seen[label] = seen.get(label, 0) + 1
                yield label if seen[label] == 1 else f"{label}{chr(ord('a') + seen[label] - 1)}"

    class CstaStyle(UnsrtStyle):
        default_label_style = AuthorYearLabels
        default_sorting_style = SortingStyle

    register_plugin("pybtex.style.formatting", "csta", CstaStyle, force=True)


# ---------------------------------------------------------------------------------------------------------
# the build panel


GIT_TIMEOUT_S = 60.0  # seconds for one git call of the build panel (a stuck lock or network file system)


def git_commit(root: Path = PROJECT_ROOT) -> str:
    """The checkout's commit (12 hex digits), "+ uncommitted changes" when tracked files differ; "unknown"
    outside a git checkout or when git does not answer within :data:`GIT_TIMEOUT_S`."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True,
                              timeout=GIT_TIMEOUT_S).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except subprocess.TimeoutExpired:
        return f"unknown (git did not answer within {GIT_TIMEOUT_S:g} s)"
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" + uncommitted changes" if dirty else "")


def build_date() -> str:
    """The build's date and time in UTC (``SOURCE_DATE_EPOCH`` when set, for reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = (datetime.datetime.fromtimestamp(int(epoch), datetime.UTC) if epoch and epoch.isdigit()
              else datetime.datetime.now(datetime.UTC))
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def library_versions(names: Sequence[str] = PANEL_DISTRIBUTIONS) -> dict[str, str]:
    """``{distribution: version}`` of the installed ``names`` (and Python); missing ones say so."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def build_panel_html(commit: str, date: str, profile: str | None, versions: dict[str, str]) -> str:
    """The footer's build panel (HTML); the theme's footer line above it names the author (``author`` of
    ``_config.yml``)."""
    e = html.escape
    profile_text = f", profile {e(profile)}" if profile else ""
    rows = "".join(f"<tr><td>{e(name)}</td><td>{e(version)}</td></tr>" for name, version in versions.items())
    return (f'<div class="{PANEL_CLASS}"><p class="csta-build-line">'
            f"Built from commit {e(commit)} on {e(date)}{profile_text}.</p>"
            f"<details><summary>Library versions of this build</summary><table>{rows}</table></details></div>")


def _add_build_panel(app: Sphinx, config: Any) -> None:
    """Append the build panel to the theme's footer (``html.extra_footer`` of ``_config.yml``; the book's theme,
    sphinx-book-theme, has that option, others do not)."""
    if config.html_theme != "sphinx_book_theme":
        return
    options = dict(getattr(config, "html_theme_options", {}) or {})
    panel = build_panel_html(git_commit(), build_date(), os.environ.get(PROFILE_ENV),
                             library_versions())
    options["extra_footer"] = (options.get("extra_footer") or "") + panel
    config.html_theme_options = options


# ---------------------------------------------------------------------------------------------------------
# table cells: break opportunities, numbers in one piece

_CELL = re.compile(r"(<t[dh][\s>].*?</t[dh]>)", re.S)
_TAG = re.compile(r"(<[^>]+>)")
_NUMBER = re.compile(r"^[(\[]?[-+\u2212]?\d[\d,]*(\.\d+)?(e[-+\u2212]?\d+)?%?[)\],;]*$", re.I)
_BREAK_AFTER = re.compile(r"([/_.,=])(?=[^\s])")
_PLUS_MINUS = re.compile(r"([-+\u2212]?\d[\d.,]*\s*\u00b1)(?=\s*\d)")
LONG_TOKEN = 16  # shorter identifiers fit any column
HEADER_TOKEN = 8


def _wrap_token(token: str, long_token: int) -> str:
    if _NUMBER.match(token):
        return f'<span class="{NOWRAP_CLASS}">{token}</span>' if re.search(r"[-\u2212]", token[1:]) else token
    if len(token) >= long_token and not any(c in token for c in "\\$"):  # not inside math (MathJax reads the text)
        return _BREAK_AFTER.sub(r"\1<wbr>", token)
    return token


def wrap_text(text: str, long_token: int = LONG_TOKEN) -> str:
    """Break opportunities after ``/ _ . , =`` in the tokens of ``text`` at least ``long_token`` characters long;
    numbers with a minus kept whole, and a value never parted from the ``±`` after it (the spread may go to the
    next line: a table of "mean ± sd" columns would not fit the page otherwise)."""
    parts = _PLUS_MINUS.split(text)  # odd items are the "value ±" matches
    return "".join(f'<span class="{NOWRAP_CLASS}">{part}</span>' if i % 2 else
                   re.sub(r"\S+", lambda m: _wrap_token(m.group(0), long_token), part)
                   for i, part in enumerate(parts))


def wrap_table_cells(body: str) -> str:
    """``body`` (a page's HTML) with :func:`wrap_text` applied to the text (not the tags) of every table cell;
    in header cells every identifier may break (a column is often only as wide as its header)."""
    def cell(match: re.Match[str]) -> str:
        limit = HEADER_TOKEN if match.group(0).startswith("<th") else LONG_TOKEN
        return "".join(part if part.startswith("<") else wrap_text(part, limit) for part in _TAG.split(match.group(0)))

    return _CELL.sub(cell, body)


def _wrap_tables(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    if "body" in context:
        context["body"] = wrap_table_cells(context["body"])


def setup(app: Sphinx) -> dict[str, Any]:
    register_bibliography_style()
    app.add_directive("csta-presets", PresetsTable)
    app.add_directive("csta-profiles", ProfilesTable)
    app.add_directive("csta-citation", CitationBlock)
    app.add_directive("csta-paper-cost", PaperCost)
    app.connect("config-inited", _add_build_panel, priority=800)
    app.connect("html-page-context", _wrap_tables)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

