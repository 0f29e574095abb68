"""The built book in a real browser: Debian's chromium, headless, every page loaded from disk with the network
cut off. Fails on JavaScript errors or attempted remote requests; checks that the attention-map widget works
without a kernel (moving the slider changes the shown image) and saves a screenshot of that page."""

from __future__ import annotations

from pathlib import Path

import pytest

from csta_lib.book.browser import Browser, find_chromium, site_pages
from csta_lib.data.locator import PROJECT_ROOT
from test_book import smoke_book

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (Debian: apt-get install chromium; "
                       ".ci/run installs it)"),
]

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
ATTENTION_PAGE = Path("book") / "_generated" / "07_attention_maps.html"


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
