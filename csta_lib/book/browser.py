"""Check the built book in a real browser with the network cut off.

Drives Debian's ``chromium`` headless through the Chrome DevTools protocol (``websocket-client``): each
page is loaded from disk (``file://``) with the network emulated offline, a proxy that goes nowhere and
DNS mapped to nothing; JavaScript exceptions, console errors, failed loads and every attempted request
to anything but a local file are recorded. ``python -m csta_lib.book.browser _build/html`` checks a whole
site and exits 1 when a page has a problem.

Widgets are exercised too: :meth:`Browser.picture_state` reads what an element (e.g. the attention explorer's
picture) shows, a digest of its visible images' pixels and its visible text, and :meth:`Browser.press_key` and
:meth:`Browser.click` drive its controls with real key presses and mouse clicks (:meth:`Browser.choose` picks an
option of a ``<select>`` where the page keeps the arrow keys for itself).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csta_lib.book.figure_policy import MIN_RENDERED_TEXT_PX, MIN_TEXT_KEY
from csta_lib.book.paper import TABLE1

LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome:", "devtools:", "chrome-extension:")
#: What a :class:`Browser` with ``loopback=True`` may reach besides local files: servers on this machine.
LOOPBACK_PREFIXES = ("http://127.0.0.1:", "ws://127.0.0.1:")


def find_chromium() -> str | None:
    """Path of a chromium/chrome binary, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageReport:
    """What happened while one page loaded."""

    url: str
    errors: list[str] = field(default_factory=list)  # JS exceptions, console errors, failed loads
    remote_requests: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.remote_requests


class CdpConnection:
    """A minimal Chrome DevTools protocol client over one websocket."""

    def __init__(self, ws_url: str, timeout: float = 30.0) -> None:
        import websocket  # websocket-client is the [dev] extra: only talking to a browser needs it

        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        """Call ``method`` and return its result; events that arrive meanwhile are queued."""
        self.next_id += 1
        call_id = self.next_id
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"CDP {method} failed: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)
        raise TimeoutError(f"CDP {method}: no answer in {timeout} s")

    def pump(self, seconds: float) -> None:
        """Collect events for ``seconds``."""
        import websocket  # as in __init__

        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.ws.settimeout(max(left, 0.01))
            try:
                message = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                break
            if "method" in message:
                self.events.append(message)
        self.ws.settimeout(30)

    def wait_event(self, method: str, timeout: float) -> dict[str, Any] | None:
        """Wait for an event named ``method`` (already queued or new)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event["method"] == method:
                    return event
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.pump(min(left, 0.2))

    def close(self) -> None:
        self.ws.close()


class Browser:
    """Headless chromium with networking disabled, controlled over the DevTools protocol."""

    def __init__(self, binary: str | None = None, width: int = 1280, height: int = 1600,
                 loopback: bool = False) -> None:
        """``loopback``: pages may talk to servers on 127.0.0.1 (a local Jupyter server); everything else stays
        unreachable (a proxy that goes nowhere, no DNS) and requests to it are still reported."""
        self.binary = binary or find_chromium()
        if not self.binary:
            raise FileNotFoundError("chromium not found (Debian: apt-get install chromium)")
        self.loopback = loopback
        self.profile = Path(tempfile.mkdtemp(prefix="csta-chromium-"))
        args = [
            self.binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--remote-debugging-port=0", f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--disable-features=Translate,OptimizationHints,MediaRouter",
            # belt and braces beside the offline emulation: no proxy, no DNS (loopback: only 127.0.0.1 directly)
            "--proxy-server=127.0.0.1:9", *([] if loopback else ["--proxy-bypass-list=<-loopback>"]),
            "--host-resolver-rules=MAP * ~NOTFOUND" + (", EXCLUDE 127.0.0.1" if loopback else ""),
            "about:blank",
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.port = self._wait_port()
            self.cdp = CdpConnection(self._page_ws_url())
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.cdp.send(f"{domain}.enable")
            if not loopback:
                self.cdp.send("Network.emulateNetworkConditions", {
                    "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        except BaseException:
            self.close()
            raise

    def _wait_port(self, timeout: float = 30.0) -> int:
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_file.is_file() and port_file.read_text().strip():
                return int(port_file.read_text().split()[0])
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self.process.returncode}")
            time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    def _page_ws_url(self) -> str:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as response:
            targets = json.load(response)
        pages = [t for t in targets if t.get("type") == "page"]
        if not pages:
            raise RuntimeError("chromium has no page target")
        return pages[0]["webSocketDebuggerUrl"]

    def load(self, url: str, settle: float = 1.5, timeout: float = 30.0) -> PageReport:
        """Navigate to ``url``, wait for the load event and ``settle`` seconds; report what went wrong."""
        self.cdp.events.clear()
        self.cdp.send("Page.navigate", {"url": url})
        if self.cdp.wait_event("Page.loadEventFired", timeout) is None:
            report = PageReport(url)
            report.errors.append(f"no load event within {timeout} s")
            return report
        self.cdp.pump(settle)
        return self.report(url)

    def report(self, url: str) -> PageReport:
        """Errors and remote requests among the events collected since the last navigation."""
        report = PageReport(url)
        for event in self.cdp.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                text = details.get("exception", {}).get("description") or details.get("text", "")
                report.errors.append(f"exception: {text.splitlines()[0] if text else details}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                args = [a.get("value") or a.get("description", "") for a in params.get("args", [])]
                report.errors.append("console.error: " + " ".join(str(a) for a in args)[:300])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                report.errors.append(f"log: {entry.get('text', '')} {entry.get('url', '')}".strip())
            elif method == "Network.requestWillBeSent":
                request_url = params.get("request", {}).get("url", "")
                if not request_url.startswith(LOCAL_SCHEMES + (LOOPBACK_PREFIXES if self.loopback else ())):
                    report.remote_requests.append(request_url)
        return report

    def evaluate(self, expression: str) -> Any:
        """Evaluate a JavaScript expression in the page (promises awaited) and return its value."""
        result = self.cdp.send("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        """Poll ``expression`` until it is truthy; return its value (None on timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            self.cdp.pump(0.2)
        return None

    def picture_state(self, selector: str) -> dict[str, Any] | None:
        """What the first element matching ``selector`` shows: a digest of the pixels of its visible images (with
        their CSS transforms, so a zoomed crop differs), their count, the widest one's natural width and the
        element's visible text. None when nothing there is visible."""
        script = f"""(async () => {{
          const root = document.querySelector({json.dumps(selector)});
          if (!root) return null;
          const imgs = [...root.querySelectorAll('img')].filter(i => i.offsetParent !== null);
          if (!imgs.length) return null;
          const parts = [];
          for (const img of imgs) {{
            if (!img.complete) await new Promise(r => img.addEventListener('load', r, {{once: true}}));
            const c = document.createElement('canvas');
            c.width = img.naturalWidth; c.height = img.naturalHeight;
            c.getContext('2d').drawImage(img, 0, 0);
            parts.push(c.toDataURL('image/png') + getComputedStyle(img).transform);
          }}
          return {{pixels: parts.join('|'), images: imgs.length, text: root.innerText,
                   width: Math.max(...imgs.map(i => i.naturalWidth))}};
        }})()"""
        state = self.evaluate(script)
        if state:
            state["pixels"] = hashlib.sha256(state["pixels"].encode()).hexdigest()
        return state

    def tables(self) -> list[dict[str, Any]]:
        """Every ``<table>`` of the page: its text, caption and cells (``rows``: a list of cell texts per row) and
        whether it fits the text column.

        A table *fits* when its rendered box is no wider than the article's content box and the right sidebar
        beside it (over which the book's stylesheet lets a wide table run), and *scrolls* when
        it or an ancestor inside the article is a horizontal scroll frame (``overflow-x: auto|scroll``) that
        itself fits; a table that does neither hides columns or spills over the page.
        """
        return self.evaluate("""(() => {
          const article = document.querySelector('.bd-article') || document.querySelector('main') || document.body;
          // a table may use the right sidebar's width too (book/_css/csta.css draws it over the sidebar)
          const sidebar = document.querySelector('.bd-sidebar-secondary');
          const margin = sidebar && sidebar.checkVisibility() ? sidebar.getBoundingClientRect().width : 0;
          const limit = article.getBoundingClientRect().width + margin + 1;
          return [...article.querySelectorAll('table')].map((table, index) => {
            let frame = null;
            for (let el = table; el && el !== article; el = el.parentElement) {
              const style = getComputedStyle(el);
              if (['auto', 'scroll'].includes(style.overflowX) && el.getBoundingClientRect().width <= limit) {
                frame = el; break;
              }
            }
            const width = table.getBoundingClientRect().width;
            const caption = table.caption ? table.caption.innerText : '';
            const rows = [...table.rows].map(row => [...row.cells].map(cell => cell.innerText.trim()));
            return {index, text: table.innerText, caption, rows, width, scroll_width: table.scrollWidth,
                    column: limit - 1, fits: width <= limit, scrolls: frame !== null};
          });
        })()""") or []

    def admonitions(self) -> list[dict[str, str]]:
        """The page's admonitions (note, warning, important, ...): their kind and visible text."""
        return self.evaluate("""[...document.querySelectorAll('.admonition:not(details)')].map(a => ({
            kind: [...a.classList].filter(c => c !== 'admonition').join(' '), text: a.innerText}))""") or []

    def visible_text(self, skip: str = "pre, code, kbd, samp, .sig, .highlight, script, style") -> str:
        """The prose a reader sees on the page: visible text outside code (``skip``), one line per element."""
        return self.evaluate(f"""(() => {{
          const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
          const parts = [];
          for (let node = walker.nextNode(); node; node = walker.nextNode()) {{
            const el = node.parentElement;
            if (!el || !node.textContent.trim() || el.closest({json.dumps(skip)})) continue;
            if (el.checkVisibility && !el.checkVisibility({{visibilityProperty: true}})) continue;
            parts.push(node.textContent.trim());
          }}
          return parts.join('\\n');
        }})()""") or ""

    def _centre(self, selector: str) -> dict[str, float]:
        box = self.evaluate(f"""(() => {{
          const el = document.querySelector({json.dumps(selector)});
          if (!el) return null;
          el.scrollIntoView({{block: 'center'}});
          const r = el.getBoundingClientRect();
          return {{x: r.left + r.width / 2, y: r.top + r.height / 2}};
        }})()""")
        if not box:
            raise RuntimeError(f"nothing on the page matches {selector!r}")
        return box

    def press_key(self, selector: str, key: str = "ArrowRight") -> None:
        """Focus the first element matching ``selector`` (a slider handle, a ``<select>``) and press ``key``
        (real key events)."""
        focused = self.evaluate(f"""(() => {{
          const el = document.querySelector({json.dumps(selector)});
          if (!el) return false;
          el.scrollIntoView({{block: 'center'}});
          el.focus();
          return document.activeElement === el;
        }})()""")
        if not focused:
            raise RuntimeError(f"nothing focusable matches {selector!r}")
        codes = {"ArrowRight": 39, "ArrowLeft": 37, "ArrowUp": 38, "ArrowDown": 40}
        for kind in ("keyDown", "keyUp"):
            self.cdp.send("Input.dispatchKeyEvent", {
                "type": kind, "key": key, "code": key, "windowsVirtualKeyCode": codes.get(key, 0),
                "nativeVirtualKeyCode": codes.get(key, 0)})

    def choose(self, selector: str, index: int) -> None:
        """Choose option ``index`` of the first ``<select>`` matching ``selector`` and fire the ``change`` event a
        user's choice fires (where the page's own shortcuts take the arrow keys, as JupyterLab's do)."""
        done = self.evaluate(f"""(() => {{
          const el = document.querySelector({json.dumps(selector)});
          if (!el || !({int(index)} in el.options)) return false;
          el.scrollIntoView({{block: 'center'}});
          el.selectedIndex = {int(index)};
          el.dispatchEvent(new Event('change', {{bubbles: true}}));
          return true;
        }})()""")
        if not done:
            raise RuntimeError(f"no <select> with an option {index} matches {selector!r}")

    def click(self, selector: str) -> None:
        """Click the middle of the first element matching ``selector`` with the mouse (real input events)."""
        at = self._centre(selector)
        for kind in ("mousePressed", "mouseReleased"):
            self.cdp.send("Input.dispatchMouseEvent", {"type": kind, "x": at["x"], "y": at["y"], "button": "left",
                                                       "clickCount": 1})

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the whole page."""
        metrics = self.cdp.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics.get("contentSize")
        if not size:
            raise RuntimeError("the browser reported no page size (Page.getLayoutMetrics)")
        data = self.cdp.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 6000), "scale": 1}})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def close(self) -> None:
        cdp = getattr(self, "cdp", None)
        if cdp is not None:
            with contextlib.suppress(Exception):  # closing a connection whose browser may be gone
                cdp.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def paper_table1_csta() -> tuple[str, ...]:
    """The paper's Table 1 values for CSTA as printed (three decimals): SumMe τ, ρ, TVSum τ, ρ."""
    return tuple(f"{v:.3f}" for pair in TABLE1["CSTA"].values() if pair for v in pair)


def mixes_ours_and_paper(text: str, paper_values: tuple[str, ...] | None = None) -> list[str]:
    """The paper's Table 1 CSTA values found in a table's ``text`` when it also says "ours"; else []."""
    if not re.search(r"\bours\b", text, flags=re.I):
        return []
    values = paper_values if paper_values is not None else paper_table1_csta()
    return [v for v in values if re.search(rf"(?<![\d.]){re.escape(v)}(?!\d)", text)]


#: How a table names this build's results in its ``source`` column (csta_lib.book.results).
BUILD_SOURCE = "this build"
_SPREAD_OVER = re.compile(r"\b(?:sd|std|standard deviations?)\s+over\s+(runs|folds|seeds|splits)\b", flags=re.I)


def unlabelled_surrogate_rows(table: Mapping[str, Any]) -> list[str]:
    """Rows of this build's results (a cell starting "this build") in a table whose caption says its numbers are
    on surrogate features, whose own label (the row's other cells: its header cells, e.g. dataset and row label)
    does not say "surrogate": a row copied on its own would pass for a real result."""
    if "surrogate" not in str(table.get("caption", "")).lower():
        return []
    out = []
    for row in table.get("rows", [])[1:]:
        labels = [cell for cell in row if not cell.startswith(BUILD_SOURCE)]
        if len(labels) < len(row) and not any("surrogate" in cell.lower() for cell in labels):
            out.append(" | ".join(labels[:2]))
    return out


def f1_without_shots(table: Mapping[str, Any]) -> bool:
    """Whether a table shows an F1 column without its caption saying on which shots the summaries were made (the
    eccv16 KTS shots, or uniform 2-second shots on the TVSum surrogate): F1 depends on them."""
    header = " ".join(" ".join(row) for row in table.get("rows", [])[:3])
    return bool(re.search(r"\bF1\b", header)) and "shots" not in str(table.get("caption", "")).lower()


def spread_definitions(text: str) -> list[str]:
    """The different things a page says its sd is taken over ("runs", "folds", "seeds", "splits"), in order."""
    return sorted({m.lower() for m in _SPREAD_OVER.findall(text)})


# ---------------------------------------------------------------------------------------------------------
# layout and reading checks: tables, words, cross-references, bare reprs, figure text (book/_css/csta.css and
# csta_lib/book/figure_policy.py are what they hold the pages to)

#: The window widths at which the reader checks read every page (a laptop, a desktop screen).
READER_WIDTHS = (1280, 1920)
#: Closest two neighbouring cells' texts may come (px) before their numbers read as one.
MIN_CELL_GAP = 4.0

_TABLE_LAYOUT_JS = r"""(() => {
  const article = document.querySelector('.bd-article') || document.querySelector('main') || document.body;
  const alnum = /[\p{L}\p{N}]/u;
  const number = /^[(\[]?[-+\u2212]?\d[\d,]*(\.\d+)?(e[-+\u2212]?\d+)?%?[)\],;]*$/i;
  const textBox = (cell) => {  // the extent of what the cell shows: its text and its typeset math
    const rects = [...cell.querySelectorAll('mjx-container')].map(m => m.getBoundingClientRect());
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (node.parentElement.closest('mjx-container') || !node.textContent.trim()) continue;
      const range = document.createRange(); range.selectNodeContents(node);
      rects.push(...range.getClientRects());
    }
    rects.splice(0, rects.length, ...rects.filter(r => r.width > 0));
    if (!rects.length) return null;
    return {left: Math.min(...rects.map(r => r.left)), right: Math.max(...rects.map(r => r.right)),
            top: Math.min(...rects.map(r => r.top)), bottom: Math.max(...rects.map(r => r.bottom))};
  };
  return [...article.querySelectorAll('table')].map((table, index) => {
    // every box between the table and the article that clips (a scroll frame, or overflow hidden/clip)
    const frames = [];
    for (let el = table; el && el !== article; el = el.parentElement) {
      if (getComputedStyle(el).overflowX !== 'visible') frames.push(el);
    }
    const box = table.getBoundingClientRect();
    const visibleRight = Math.min(document.documentElement.clientWidth,
                                  ...frames.map(f => f.getBoundingClientRect().right));
    const out = {index, hidden: Math.max(0, ...frames.map(f => f.scrollWidth - f.clientWidth)),
                 beyond_viewport: frames.length ? 0 : Math.max(0, box.right - document.documentElement.clientWidth),
                 caption_clipped: false, broken: [], touching: []};
    const caption = table.querySelector('caption');
    if (caption && caption.innerText.trim()) {
      const c = caption.getBoundingClientRect();
      out.caption_clipped = c.right > visibleRight + 1 || caption.scrollWidth > caption.clientWidth + 1;
    }
    for (const row of table.rows) {
      const boxes = [...row.cells].map(textBox);
      for (let i = 1; i < boxes.length; i++) {
        const a = boxes[i - 1], b = boxes[i];
        if (a && b && a.top < b.bottom && b.top < a.bottom && b.left - a.right < %(gap)s) {
          out.touching.push(row.cells[i - 1].innerText.trim().slice(-20) + '|'
                            + row.cells[i].innerText.trim().slice(0, 20));
        }
      }
      for (const cell of row.cells) {
        const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
          for (const m of node.textContent.matchAll(/\S+/g)) {
            const range = document.createRange();
            let lastTop = null;
            for (let i = 0; i < m[0].length; i++) {
              range.setStart(node, m.index + i); range.setEnd(node, m.index + i + 1);
              const r = range.getClientRects()[0];
              if (!r || r.width === 0) continue;
              if (lastTop !== null && r.top > lastTop + 2) {
                const w = m[0];
                if (number.test(w) || (alnum.test(w[i - 1]) && alnum.test(w[i]))) {
                  out.broken.push(w.slice(0, i) + '|' + w.slice(i));
                }
              }
              lastTop = r.top;
            }
          }
        }
      }
    }
    return out;
  });
})()""".replace("%(gap)s", str(MIN_CELL_GAP))

_CROSS_REFERENCE_JS = r"""(() => {
  const titles = [...new Set([...document.querySelectorAll('.bd-sidebar-primary nav a, .bd-docs-nav a')]
    .map(a => a.textContent.replace(/^\s*[\d.]+\s+/, '').trim()).filter(t => t.length >= 4))];
  const escape = s => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const found = [];
  const article = document.querySelector('.bd-article') || document.body;
  const skip = 'a, pre, code, h1, h2, h3, h4, h5, h6, .sig, nav, script, style, .headerlink';
  for (const em of article.querySelectorAll('em, i')) {
    if (em.closest(skip)) continue;
    const text = em.textContent.trim();
    if (titles.some(t => t.toLowerCase() === text.toLowerCase())) found.push(text);
  }
  const patterns = titles.map(t => {
    const name = escape(t).replace(/\s+/g, '\\s+');
    const oneWord = !/\s/.test(t);
    return new RegExp(oneWord ? `\\bthe\\s+${name}\\s+(chapter|page)\\b`
                              : `\\b(see|in|on)\\s+(the\\s+)?${name}\\b|\\bthe\\s+${name}\\s+(chapter|page)\\b`, 'i');
  });
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || el.closest(skip) || !el.checkVisibility()) continue;
    for (const p of patterns) { const m = node.textContent.match(p); if (m) found.push(m[0]); }
  }
  return found;
})()"""

_BARE_REPR_JS = r"""(() => {
  const found = [];
  const quoted = /^(['"]).*\1$/s, address = / at 0x[0-9a-f]{4,}>/, figure = /^<Figure size /;
  for (const out of document.querySelectorAll('.cell_output .output.text_plain, .cell_output .output.stream')) {
    if (!out.checkVisibility()) continue;
    const text = out.innerText.trim();
    if (quoted.test(text) || address.test(text) || figure.test(text)) found.push(text.slice(0, 80));
  }
  for (const dt of document.querySelectorAll('dl.py.data > dt, dl.py.attribute > dt')) {
    const value = dt.innerText.split(' = ').slice(1).join(' = ').trim();
    if (value.length > %(limit)s || address.test(value) || value.includes("<class '")) {
      found.push(`${dt.id || dt.innerText.slice(0, 40)} = ${value.slice(0, 60)}... (${value.length} characters)`);
    }
  }
  return found;
})()""".replace("%(limit)s", "200")

#: The anchor of the book's one specification of the surrogate features (csta_lib.book.surrogate_spec).
SURROGATE_SPEC_ANCHOR = "surrogate-features"
_SURROGATE_LINK_JS = r"""(() => {
  const article = document.querySelector('.bd-article') || document.body;
  if (document.getElementById('%(anchor)s')) return true;  // the specification itself
  if (!/surrogate/i.test(article.innerText)) return true;
  return [...article.querySelectorAll('a[href]')].some(a => a.getAttribute('href').endsWith('#%(anchor)s'));
})()""".replace("%(anchor)s", SURROGATE_SPEC_ANCHOR)

_FIGURES_JS = r"""[...document.querySelectorAll('.bd-article img')]
  .filter(i => i.checkVisibility() && i.naturalWidth > 0)
  .map(i => ({src: i.currentSrc || i.src, natural: i.naturalWidth, rendered: i.getBoundingClientRect().width}))"""


def set_width(browser: Browser, width: int, height: int = 1100) -> None:
    """Give the page a window ``width`` CSS pixels wide (the layout is redone; reload to re-read a page)."""
    browser.cdp.send("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def png_text(data: bytes) -> dict[str, str]:
    """The tEXt chunks of a PNG file (``{}`` for anything else)."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return {}
    chunks, pos = {}, 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"tEXt" and b"\x00" in body:
            key, _, value = body.partition(b"\x00")
            chunks[key.decode("latin-1")] = value.decode("latin-1")
        if kind == b"IEND":
            break
        pos += 12 + length
    return chunks


def image_bytes(src: str) -> bytes | None:
    """The bytes behind an ``<img>`` source of the built site (a ``file:`` or ``data:`` URL); None otherwise."""
    if src.startswith("data:") and ";base64," in src:
        return base64.b64decode(src.split(";base64,", 1)[1])
    if src.startswith("file://"):
        path = Path(urllib.request.url2pathname(urllib.parse.urlparse(src).path))
        return path.read_bytes() if path.is_file() else None
    return None


def figure_text_sizes(figures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each figure whose PNG records its smallest text (:data:`csta_lib.book.figure_policy.MIN_TEXT_KEY`):
    that text's height on the page in CSS pixels (the PNG's pixels scaled as the page scales the image)."""
    sizes = []
    for fig in figures:
        data = image_bytes(fig["src"])
        recorded = png_text(data).get(MIN_TEXT_KEY) if data else None
        if recorded is not None and fig["natural"]:
            sizes.append({"src": fig["src"].rsplit("/", 1)[-1][:60],
                          "px": float(recorded) * fig["rendered"] / fig["natural"]})
    return sizes


def read_layout(browser: Browser) -> dict[str, Any]:
    """What the loaded page looks like at the current width: each table's layout (hidden columns, clipped
    caption, words broken mid-word, cells whose texts touch), cross-reference-looking text that is no link,
    bare reprs, whether a page that mentions surrogate features links their one specification, and the rendered
    size of each measurable figure's smallest text."""
    return {"width": browser.evaluate("document.documentElement.clientWidth"),
            "tables": browser.evaluate(_TABLE_LAYOUT_JS) or [],
            "cross_references": browser.evaluate(_CROSS_REFERENCE_JS) or [],
            "reprs": browser.evaluate(_BARE_REPR_JS) or [],
            "links_surrogate_spec": bool(browser.evaluate(_SURROGATE_LINK_JS)),
            "figures": figure_text_sizes(browser.evaluate(_FIGURES_JS) or [])}


def layout_problems(layout: Mapping[str, Any]) -> list[str]:
    """What a reader trips over in a :func:`read_layout` reading, one line each (the width in brackets)."""
    at = f"[{layout['width']} px]"
    problems = []
    for t in layout["tables"]:
        name = f"table {t['index']}"
        if t["hidden"] > 1:
            problems.append(f"{at} {name} hides {t['hidden']:.0f} px of its columns behind a horizontal scroll")
        if t["beyond_viewport"] > 1:
            problems.append(f"{at} {name} runs {t['beyond_viewport']:.0f} px past the window's right edge")
        if t["caption_clipped"]:
            problems.append(f"{at} {name}'s caption is clipped")
        if t["broken"]:
            problems.append(f"{at} {name} breaks words mid-word: {sorted(set(t['broken']))[:6]}")
        if t["touching"]:
            problems.append(f"{at} {name} has neighbouring cells whose texts touch: {t['touching'][:4]}")
    if layout["cross_references"]:
        problems.append(f"{at} cross-references that are not links: {sorted(set(layout['cross_references']))}")
    if layout["reprs"]:
        problems.append(f"{at} bare repr output: {layout['reprs'][:4]}")
    if not layout.get("links_surrogate_spec", True):
        problems.append(f"{at} mentions surrogate features without a link to their specification "
                        f"(#{SURROGATE_SPEC_ANCHOR})")
    small = [f"{f['src']} ({f['px']:.1f} px)" for f in layout["figures"] if f["px"] < MIN_RENDERED_TEXT_PX]
    if small:
        problems.append(f"{at} figure text below {MIN_RENDERED_TEXT_PX:g} px: {small}")
    return problems


def read_page(browser: Browser, url: str) -> dict[str, Any]:
    """Load ``url`` and read what a reader sees: its load report, tables, admonitions, prose and layout
    (:func:`read_layout`)."""
    report = browser.load(url)
    return {"report": report, "tables": browser.tables(), "admonitions": browser.admonitions(),
            "text": browser.visible_text(), "layout": read_layout(browser)}


def reader_problems(read: Mapping[str, Any]) -> list[str]:
    """What a reader would trip over on a page read by :func:`read_page`: a table holding our results beside the
    paper's Table 1 values, a surrogate row whose label does not say so (:func:`unlabelled_surrogate_rows`), an F1
    without its shots (:func:`f1_without_shots`), a spread defined more than one way (:func:`spread_definitions`),
    a table wider than the column that scrolls in no frame of its own, raw ``**``."""
    problems = []
    for table in read["tables"]:
        mixed = mixes_ours_and_paper(table["text"])
        if mixed:
            problems.append(f"table {table['index']} holds our results and the paper's {mixed}")
        if f1_without_shots(table):
            problems.append(f"table {table['index']} shows F1 but its caption does not say on which shots")
        unlabelled = unlabelled_surrogate_rows(table)
        if unlabelled:
            problems.append(f"table {table['index']}: surrogate rows whose label does not say so: {unlabelled}")
        if not (table["fits"] or table["scrolls"]):
            problems.append(f"table {table['index']} is {table['width']:.0f} px wide in a {table['column']:.0f} px "
                            "column and scrolls in no frame of its own")
    ways = spread_definitions(read["text"])  # the visible text holds the tables' captions too
    if len(ways) > 1:
        problems.append(f"the spread is defined {len(ways)} ways on one page: sd over {', '.join(ways)}")
    if "**" in read["text"]:
        line = next(line for line in read["text"].splitlines() if "**" in line)
        problems.append(f"raw Markdown '**' in the visible text: {line[:120]!r}")
    if "layout" in read:
        problems += layout_problems(read["layout"])
    return problems


def site_pages(site: Path) -> list[Path]:
    """The site's content pages: not Sphinx's search and index pages, nor the highlighted source listings of
    ``_modules/`` (code, whose comments are not prose for a reader)."""
    skip = {"search.html", "genindex.html"}
    return sorted(p for p in site.rglob("*.html")
                  if p.name not in skip and not {"_static", "_sources", "_modules"} & set(p.relative_to(site).parts))


def check_site(site: Path, browser: Browser | None = None,
               widths: tuple[int, ...] = READER_WIDTHS) -> list[PageReport]:
    """Load every page of ``site`` offline; one report per page (reader problems count as errors). Every page
    is read at the first of ``widths``, and its layout again at each of the others."""
    own = browser is None
    browser = browser or Browser()
    try:
        reports = {}
        for width in widths:
            set_width(browser, width)
            for page in site_pages(site):
                url = page.resolve().as_uri()
                if page not in reports:
                    read = read_page(browser, url)
                    read["report"].errors.extend(f"reader: {p}" for p in reader_problems(read))
                    reports[page] = read["report"]
                else:
                    browser.load(url)
                    reports[page].errors.extend(f"reader: {p}" for p in layout_problems(read_layout(browser)))
        return list(reports.values())
    finally:
        if own:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m csta_lib.book.browser",
        description="Load every page of a built book in headless chromium with the network cut off; "
        "report JavaScript errors, attempted remote requests and what a reader would trip over at 1280 and 1920 px "
        "(tables mixing our results with the paper's, hidden columns, clipped captions, words broken mid-word, "
        "cross-references that are no links, bare reprs, figure text too small to read, raw Markdown).",
    )
    parser.add_argument("site", type=Path, nargs="?", default=Path("_build/html"))
    args = parser.parse_args(argv)
    if not (args.site / "index.html").is_file():
        print(f"error: {args.site} holds no built book (index.html); run `make book` first", file=sys.stderr)
        return 2
    reports = check_site(args.site)
    for r in reports:
        status = "ok" if r.ok else "PROBLEMS"
        print(f"{status:8} {os.path.relpath(r.url.removeprefix('file://'), args.site.resolve())}")
        for line in r.errors + [f"remote request: {u}" for u in r.remote_requests]:
            print(f"         {line}")
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
