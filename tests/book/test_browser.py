"""The built book in a real browser: Debian's chromium, headless, every page loaded from disk with the network
cut off. Fails on JavaScript errors or attempted remote requests (the attention explorer's controls are driven in
test_attention_browser.py); and reads
every page as a reader would: no table mixes our surrogate results with the paper's values, every chapter
computed on surrogate features warns so, no raw Markdown (``**``) shows, every table fits the column or scrolls
in a frame of its own."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from csta_lib.book.browser import (READER_WIDTHS, Browser, find_chromium, layout_problems, mixes_ours_and_paper,
                                   paper_table1_csta, png_text, read_layout, read_page, reader_problems, set_width,
                                   site_pages, spread_definitions, unlabelled_surrogate_rows)
from csta_lib.book.figure_policy import MIN_TEXT_KEY
from test_book import smoke_book

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (Debian: apt-get install chromium; "
                       ".ci/run installs it)"),
]

# Results chapters computed on surrogate features in a build without the real feature files (the smoke build).
SURROGATE_CHAPTERS = ("04_main_result", "05_cnn_verification", "06_ablations", "07_attention_maps")


@pytest.fixture(scope="module")
def smoke_pages(browser: Browser) -> dict[str, dict]:
    """Every page of the smoke build, read once: {path relative to the site: read_page(...)}."""
    root, _ = smoke_book()
    html = root / "_build" / "html"
    return {page.relative_to(html).as_posix(): read_page(browser, page.resolve().as_uri()) for page in site_pages(html)}


@pytest.fixture(scope="module")
def browser():
    with Browser() as b:
        yield b


def test_detects_remote_requests_and_script_errors(browser: Browser, tmp_path: Path) -> None:
    """The checks can fail: a page with a remote script and a throwing script is reported on both counts."""
    page = tmp_path / "bad.html"
    page.write_text("<html><head><script src='https://cdn.example.org/lib.js'></script></head>"
                    "<body><img src='http://example.org/x.png'><script>undefinedFunction()</script></body></html>")
    report = browser.load(page.as_uri(), settle=0.5)
    assert any("cdn.example.org" in url for url in report.remote_requests)
    assert any("example.org/x.png" in url for url in report.remote_requests)
    assert any("undefinedFunction" in e for e in report.errors)
    assert not report.ok


def test_reader_checks_can_fail(browser: Browser, tmp_path: Path) -> None:
    """A page with a mixed table, a table wider than its column, raw '**' and a warning: each is caught."""
    page = tmp_path / "reader.html"
    page.write_text(
        "<html><body><main class='bd-article' style='width:500px'>"
        "<table><tr><th>row</th><th>SumMe (ours)</th><th>SumMe (paper)</th></tr>"
        "<tr><td>CSTA</td><td>0.385</td><td>0.246</td></tr></table>"
        "<table style='width:1400px'><tr><td>a very wide table</td></tr></table>"
        "<div style='overflow-x:auto'><table style='width:1400px'><tr><td>wide, in a frame</td></tr></table></div>"
        "<p>**not rendered**</p>"
        "<div class='admonition warning'><p>computed on surrogate features</p></div>"
        "<table><caption>This build: surrogate features, pipeline check; mean ± sd over runs</caption>"
        "<tr><th>row</th><th>SumMe τ</th><th>source</th></tr>"
        "<tr><th>CSTA, test-max selection</th><td>0.385</td><td>this build: all training videos</td></tr>"
        "<tr><th>CSTA, val selection (surrogate features)</th><td>0.380</td><td>this build</td></tr>"
        "<tr><th>Random (this protocol)</th><td>0.052</td><td>this book, from the annotations</td></tr></table>"
        "<p>per fold: ± the std over seeds</p>"
        "<table><caption>Per test video</caption><tr><th>video</th><th>test-max F1</th></tr></table>"
        "<table><caption>F1 over the eccv16 KTS shots</caption><tr><th>video</th><th>F1</th></tr></table>"
        "</main></body></html>")
    read = read_page(browser, page.as_uri())
    problems = reader_problems(read)
    assert any(p == "table 3: surrogate rows whose label does not say so: ['CSTA, test-max selection | 0.385']"
               for p in problems), problems
    assert "the spread is defined 2 ways on one page: sd over runs, seeds" in problems
    assert "table 4 shows F1 but its caption does not say on which shots" in problems
    assert not any(p.startswith("table 5") for p in problems)
    assert any("paper's ['0.246']" in p for p in problems)
    assert any(p.startswith("table 1 is 1400 px") for p in problems)
    assert not any(p.startswith("table 2") for p in problems)  # wide, but scrolls in its own frame
    assert any("raw Markdown" in p for p in problems)
    assert read["admonitions"] == [{"kind": "warning", "text": "computed on surrogate features"}]
    assert spread_definitions("mean ± sd over runs; the SD over runs") == ["runs"]
    assert unlabelled_surrogate_rows({"caption": "real features", "rows": [["r"], ["CSTA", "this build"]]}) == []
    grouped = {"caption": "surrogate features", "rows": [["dataset", "row"], ["SumMe", "CSTA (surrogate features)",
                                                                           "0.3", "this build"]]}
    assert unlabelled_surrogate_rows(grouped) == []  # the label is in the second header cell of a grouped row
    assert mixes_ours_and_paper("ours 0.2460") == [] and mixes_ours_and_paper("paper 0.246") == []
    assert paper_table1_csta() == ("0.246", "0.274", "0.194", "0.255")  # the contract's values


def _small_text_png() -> str:
    """A figure rendered by the book's figure policy, 6-pt text, as a base64 data URL (400 px wide or so)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from csta_lib.book.figure_policy import figure_png

    fig, ax = plt.subplots(figsize=(4, 2))
    ax.set_title("tiny", fontsize=6)
    data = figure_png(fig)
    plt.close(fig)
    assert float(png_text(data)[MIN_TEXT_KEY]) == pytest.approx(6 * 100 / 72, abs=0.01)
    return "data:image/png;base64," + base64.b64encode(data).decode()


def test_layout_checks_can_fail(browser: Browser, tmp_path: Path) -> None:
    """Hidden columns, a clipped caption, a word broken mid-word, touching cells, a cross-reference that is no
    link, a bare repr and figure text too small to read are each caught; a tidy page gives nothing."""
    page = tmp_path / "layout.html"
    page.write_text(
        "<html><body><nav class='bd-docs-nav'><a href='r.html'>Reproduce this book</a><a href='d.html'>1. Data</a>"
        "</nav><main class='bd-article' style='width:500px'>"
        "<div style='overflow-x:auto'><table style='width:900px'><caption style='white-space:nowrap'>a caption "
        "much longer than the frame that holds its table, so that its end is out of sight</caption>"
        "<tr><td>wide</td><td>licence</td></tr></table></div>"
        "<table><tr><td style='width:40px;overflow-wrap:anywhere'>connection</td><td>plain</td></tr></table>"
        "<table style='border-collapse:collapse'><tr><td style='padding:0'>efficientnet_b0</td>"
        "<td style='padding:0'>3,371,008</td></tr></table>"
        "<p>See <em>Reproduce this book</em> and the Data chapter; <a href='d.html'>the Data chapter</a> links.</p>"
        "<div class='cell_output'><div class='output text_plain'><pre>'15'</pre></div></div>"
        "<p>Computed on surrogate features.</p>"
        f"<img src='{_small_text_png()}' style='width:200px'>"
        "</main></body></html>")
    browser.load(page.as_uri(), settle=0.3)
    problems = "\n".join(layout_problems(read_layout(browser)))
    assert "table 0 hides" in problems and "table 0's caption is clipped" in problems
    assert "table 1 breaks words mid-word: ['connect" in problems
    assert "table 2 has neighbouring cells whose texts touch: ['efficientnet_b0|3,371,008']" in problems
    assert "cross-references that are not links: ['Reproduce this book', 'the Data chapter']" in problems
    assert "bare repr output: [\"'15'\"]" in problems
    assert "figure text below 9 px" in problems
    assert "mentions surrogate features without a link to their specification" in problems
    tidy = tmp_path / "tidy.html"
    tidy.write_text("<html><body><main class='bd-article' style='width:500px'><table><caption>short</caption>"
                    "<tr><td style='padding:0 8px'>efficientnet_b0</td><td style='padding:0 8px'>3,371,008</td></tr>"
                    "</table><p>See <a href='r.html'><em>Reproduce this book</em></a>; on <a href="
                    "'01_data.html#surrogate-features'>surrogate features</a>.</p></main></body></html>")
    browser.load(tidy.as_uri(), settle=0.3)
    assert layout_problems(read_layout(browser)) == []


@pytest.mark.slow
def test_every_page_reads_cleanly(smoke_pages: dict[str, dict]) -> None:
    """No table mixes our surrogate results with the paper's values; no raw '**'; every table fits or scrolls."""
    problems = [f"{name}: {problem}" for name, read in smoke_pages.items() for problem in reader_problems(read)]
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_every_page_lays_out_cleanly_on_a_wide_screen(browser: Browser) -> None:
    """The layout checks again at the widest reader width (the smoke pages above are read at 1280 px)."""
    root, _ = smoke_book()
    html = root / "_build" / "html"
    set_width(browser, READER_WIDTHS[-1])
    try:
        problems = []
        for page in site_pages(html):
            browser.load(page.resolve().as_uri(), settle=0.5)
            problems += [f"{page.relative_to(html)}: {p}" for p in layout_problems(read_layout(browser))]
    finally:
        set_width(browser, READER_WIDTHS[0])
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_every_page_has_the_build_panel_and_author_line(smoke_pages: dict[str, dict]) -> None:
    """Every page's foot says who wrote the book and which commit, date and profile it was built from."""
    missing = [name for name, read in smoke_pages.items()
               if "By the csta-book authors" not in read["text"] or not re.search(
                   r"Built from commit [0-9a-f]{12}.* on \d{4}-\d\d-\d\d \d\d:\d\d UTC, profile smoke\.", read["text"])]
    assert not missing, f"pages without the build panel: {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("chapter", SURROGATE_CHAPTERS)
def test_surrogate_chapters_open_with_a_warning(smoke_pages: dict[str, dict], chapter: str) -> None:
    """The smoke build has no real feature files: each results chapter warns that it ran on surrogate features."""
    read = smoke_pages[f"book/_generated/{chapter}.html"]
    texts = [a["text"] for a in read["admonitions"]]
    assert any("surrogate" in text.lower() for text in texts), f"{chapter}: no admonition says 'surrogate': {texts}"


@pytest.mark.slow
def test_every_page_loads_offline_without_errors(browser: Browser) -> None:
    root, _ = smoke_book()
    html = root / "_build" / "html"
    pages = site_pages(html)
    assert len(pages) >= 10
    problems = []
    for page in pages:
        report = browser.load(page.resolve().as_uri())
        if not report.ok:
            problems.append(f"{page.relative_to(html)}: {report.errors + report.remote_requests}")
    assert not problems, "\n".join(problems)
