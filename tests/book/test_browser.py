"""The built book in a real browser: Debian's chromium, headless, every page loaded from disk with the network
cut off. Fails on JavaScript errors or attempted remote requests; checks that the attention-map widget works
without a kernel (moving the slider changes the shown image) and saves a screenshot of that page; and reads
every page as a reader would: no table mixes our surrogate results with the paper's values, every chapter
computed on surrogate features warns so, no raw Markdown (``**``) shows, every table fits the column or scrolls
in a frame of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from csta_lib.book.browser import (Browser, find_chromium, mixes_ours_and_paper, paper_table1_csta, read_page,
                                   reader_problems, site_pages)
from csta_lib.runs.locator import PROJECT_ROOT
from test_book import smoke_book

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (Debian: apt-get install chromium; "
                       ".ci/run installs it)"),
]

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
ATTENTION_PAGE = Path("book") / "_generated" / "07_attention_maps.html"
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
        "</main></body></html>")
    read = read_page(browser, page.as_uri())
    problems = reader_problems(read)
    assert any("paper's ['0.246']" in p for p in problems)
    assert any(p.startswith("table 1 is 1400 px") for p in problems)
    assert not any(p.startswith("table 2") for p in problems)  # wide, but scrolls in its own frame
    assert any("raw Markdown" in p for p in problems)
    assert read["admonitions"] == [{"kind": "warning", "text": "computed on surrogate features"}]
    assert mixes_ours_and_paper("ours 0.2460") == [] and mixes_ours_and_paper("paper 0.246") == []
    assert paper_table1_csta() == ("0.246", "0.274", "0.194", "0.255")  # the contract's values


@pytest.mark.slow
def test_every_page_reads_cleanly(smoke_pages: dict[str, dict]) -> None:
    """No table mixes our surrogate results with the paper's values; no raw '**'; every table fits or scrolls."""
    problems = [f"{name}: {problem}" for name, read in smoke_pages.items() for problem in reader_problems(read)]
    assert not problems, "\n".join(problems)


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


@pytest.mark.slow
def test_attention_widget_switches_images_without_a_kernel(browser: Browser) -> None:
    root, _ = smoke_book()
    page = root / "_build" / "html" / ATTENTION_PAGE
    report = browser.load(page.resolve().as_uri())
    assert report.ok, report
    assert browser.wait_for("document.querySelectorAll('.csta-image-stack img').length > 0", timeout=15), \
        "the attention-map widgets did not render"
    before = browser.image_stack_state()
    assert before and before["controls"] >= 1 and before["width"] > 100
    browser.press_slider_key("ArrowRight")
    after = None
    for _ in range(25):
        browser.cdp.pump(0.2)
        after = browser.image_stack_state()
        if after and after["pixels"] != before["pixels"]:
            break
    assert after and after["pixels"] != before["pixels"], "moving the slider did not change the image"
    assert after["label"] != before["label"]
    assert browser.report(page.as_uri()).ok, "interaction raised errors or remote requests"
    browser.evaluate("window.scrollTo(0, 0)")
    shot = browser.screenshot(ARTIFACTS / "attention_page.png")
    assert shot.stat().st_size > 10_000
