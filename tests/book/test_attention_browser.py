"""The attention explorer in a real browser (Debian's chromium, headless, network cut off), with no kernel: each of
its four controls, driven by real key presses and clicks, changes the shown picture, independently of the others;
no JavaScript error, nothing fetched from the network. First on a page of a small explorer rendered by the
vendored widget manager (seconds), then on the built smoke book's attention chapter (the contract of issue 20)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from csta_lib.book import attention
from csta_lib.book.browser import Browser, find_chromium
from csta_lib.book.vendor import VENDOR_DIR, vendor
from csta_lib.runs.locator import PROJECT_ROOT

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (Debian: apt-get install chromium; "
                       ".ci/run installs it)"),
]

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
ATTENTION_PAGE = Path("book") / "_generated" / "07_attention_maps.html"
PICTURE = f".{attention.PICTURE_CLASS}"


def control(name: str, element: str) -> str:
    """CSS selector of an element of one of the explorer's controls."""
    return f".{attention.CONTROL_CLASSES[name]} {element}"


def standalone_page(widget: Any, path: Path) -> Path:
    """A page that renders ``widget`` with the book's vendored require.js and widget manager, as the book does."""
    from ipywidgets.embed import dependency_state

    vendor()
    state = {"version_major": 2, "version_minor": 0, "state": dependency_state([widget], drop_defaults=True)}
    view = {"version_major": 2, "version_minor": 0, "model_id": widget.model_id}
    scripts = [VENDOR_DIR / "requirejs" / "require.js", VENDOR_DIR / "html-manager" / "dist" / "embed-amd.js"]
    path.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        + "".join(f"<script src='{s.as_uri()}'></script>" for s in scripts)
        + f"<script type='application/vnd.jupyter.widget-state+json'>{json.dumps(state)}</script></head>"
        + "<body><div style='width: 760px'><script type='application/vnd.jupyter.widget-view+json'>"
        + f"{json.dumps(view)}</script></div></body></html>", encoding="utf-8")
    return path


def changed(browser: Browser, before: dict[str, Any], attempts: int = 30) -> dict[str, Any] | None:
    """The picture's state once it differs from ``before`` (None if it never does)."""
    for _ in range(attempts):
        browser.cdp.pump(0.2)
        state = browser.picture_state(PICTURE)
        if state and state["pixels"] != before["pixels"]:
            return state
    return None


def drive_every_control(browser: Browser, url: str) -> list[dict[str, Any]]:
    """Load ``url`` and switch video, model, map and zoom one after the other; the picture's state after each."""
    report = browser.load(url)
    assert report.ok, report
    assert browser.wait_for(f"document.querySelectorAll('{PICTURE} img').length > 0", timeout=20), \
        "the explorer did not render"
    states = [browser.picture_state(PICTURE)]
    assert states[0] and states[0]["width"] > 100
    for action in (lambda: browser.press_key(control("video", "select"), "ArrowDown"),
                   lambda: browser.press_key(control("model", "select"), "ArrowDown"),
                   lambda: browser.click(control("map", "button:nth-of-type(3)")),
                   lambda: browser.click(control("zoom", "button:nth-of-type(2)"))):
        action()
        state = changed(browser, states[-1])
        assert state is not None, f"switch {len(states)} did not change the picture"
        states.append(state)
    assert browser.report(url).ok, "interaction raised errors or remote requests"
    return states


@pytest.fixture(scope="module")
def browser():
    with Browser() as b:
        yield b


def test_each_control_switches_the_picture_on_its_own(browser: Browser, tiny: dict[str, Path], tmp_path: Path,
                                                      preset_checkpoints: dict[str, Path], one_thread) -> None:
    paths = [preset_checkpoints[p] for p in ("paper", "table2.kv")]
    videos = attention.videos_from_source(tiny["data"])[:2]
    models = [attention.model_from_checkpoint(p) for p in paths]
    page = standalone_page(attention.static_explorer(videos, models), tmp_path / "explorer.html")
    start, video, model, maps, zoom = drive_every_control(browser, page.as_uri())
    # each switch changed what it controls and kept what the others chose
    assert videos[0].title in start["text"] and models[0].name in start["text"]
    assert videos[1].title in video["text"] and models[0].name in video["text"]
    assert videos[1].title in model["text"] and models[1].name in model["text"]
    assert "A_T, the temporal softmax" in model["text"] and "M = V⊙A_T + V⊙A_D" in maps["text"]
    assert videos[1].title in zoom["text"] and models[1].name in zoom["text"] and "M = V⊙A_T" in zoom["text"]
    transform = browser.evaluate(f"""[...document.querySelectorAll('{PICTURE} img.{attention.RASTER_CLASS}')]
        .filter(i => i.offsetParent !== null).map(i => getComputedStyle(i).transform)""")
    assert transform and transform[0].startswith("matrix(4, 0, 0, 1")  # the first quarter, stretched fourfold


@pytest.mark.slow
def test_built_attention_chapter_switches_video_and_model_without_a_kernel(browser: Browser) -> None:
    """The contract: the built chapter holds independent video and model controls (and map and zoom), and
    switching either changes the shown picture in headless Chromium with no kernel."""
    from test_book import smoke_book

    root, _ = smoke_book()
    page = root / "_build" / "html" / ATTENTION_PAGE
    start, video, model, maps, zoom = drive_every_control(browser, page.resolve().as_uri())
    assert video["text"].splitlines()[0] != start["text"].splitlines()[0]  # another video's title
    assert "CSTA (the full model)" in start["text"] and "CSTA (the full model)" not in model["text"]
    assert browser.evaluate(f"document.querySelectorAll('.{attention.EXPLORER_CLASS} .jupyter-widgets-error-widget')"
                            ".length") == 0
    browser.evaluate("window.scrollTo(0, 0)")
    shot = browser.screenshot(ARTIFACTS / "attention_page.png")
    assert shot.stat().st_size > 10_000
