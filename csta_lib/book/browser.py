"""Check the built book in a real browser with the network cut off.

Drives Debian's ``chromium`` headless through the Chrome DevTools protocol (``websocket-client``): each
page is loaded from disk (``file://``) with the network emulated offline, a proxy that goes nowhere and
DNS mapped to nothing; JavaScript exceptions, console errors, failed loads and every attempted request
to anything but a local file are recorded. ``python -m csta_lib.book.browser _build/html`` checks a whole
site and exits 1 when a page has a problem.

The attention page's widgets are exercised too: :meth:`Browser.image_stack_state` reads which image an
image stack (:func:`csta_lib.book.widgets.image_stack`) shows, and :meth:`Browser.press_slider_key`
moves its slider with real key presses.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csta_lib.book.paper import TABLE1
from csta_lib.book.widgets import CONTROL_CLASS, STACK_CLASS

LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome:", "devtools:", "chrome-extension:")


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

    def __init__(self, binary: str | None = None, width: int = 1280, height: int = 1600) -> None:
        self.binary = binary or find_chromium()
        if not self.binary:
            raise FileNotFoundError("chromium not found (Debian: apt-get install chromium)")
        self.profile = Path(tempfile.mkdtemp(prefix="csta-chromium-"))
        args = [
            self.binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--remote-debugging-port=0", f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--disable-features=Translate,OptimizationHints,MediaRouter",
            # belt and braces beside the offline emulation: no proxy, no DNS
            "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "about:blank",
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.port = self._wait_port()
            self.cdp = CdpConnection(self._page_ws_url())
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.cdp.send(f"{domain}.enable")
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
                if not request_url.startswith(LOCAL_SCHEMES):
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

    def image_stack_state(self, index: int = 0) -> dict[str, Any] | None:
        """The image shown by the ``index``-th image stack: its label and a digest of its pixels."""
        script = f"""(async () => {{
          const stack = document.querySelectorAll('.{STACK_CLASS}')[{index}];
          if (!stack) return null;
          const imgs = [...stack.querySelectorAll('img')].filter(i => i.offsetParent !== null);
          if (!imgs.length) return null;
          const img = imgs[0];
          if (!img.complete) await new Promise(r => img.addEventListener('load', r, {{once: true}}));
          const c = document.createElement('canvas');
          c.width = img.naturalWidth; c.height = img.naturalHeight;
          c.getContext('2d').drawImage(img, 0, 0);
          const label = [...stack.querySelectorAll('b')].filter(b => b.offsetParent !== null)
                          .map(b => b.textContent).join(' ');
          return {{label, pixels: c.toDataURL('image/png'), width: img.naturalWidth,
                   controls: document.querySelectorAll('.{CONTROL_CLASS}').length}};
        }})()"""
        state = self.evaluate(script)
        if state:
            state["pixels"] = hashlib.sha256(state["pixels"].encode()).hexdigest()
        return state

    def tables(self) -> list[dict[str, Any]]:
        """Every ``<table>`` of the page: its text and whether it fits the text column.

        A table *fits* when its rendered box is no wider than the article's content box, and *scrolls* when
        it or an ancestor inside the article is a horizontal scroll frame (``overflow-x: auto|scroll``) that
        itself fits; a table that does neither hides columns or spills over the page.
        """
        return self.evaluate("""(() => {
          const article = document.querySelector('.bd-article') || document.querySelector('main') || document.body;
          const limit = article.getBoundingClientRect().width + 1;
          return [...article.querySelectorAll('table')].map((table, index) => {
            let frame = null;
            for (let el = table; el && el !== article; el = el.parentElement) {
              const style = getComputedStyle(el);
              if (['auto', 'scroll'].includes(style.overflowX) && el.getBoundingClientRect().width <= limit) {
                frame = el; break;
              }
            }
            const width = table.getBoundingClientRect().width;
            return {index, text: table.innerText, width, scroll_width: table.scrollWidth, column: limit - 1,
                    fits: width <= limit, scrolls: frame !== null};
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

    def press_slider_key(self, key: str = "ArrowRight", index: int = 0) -> None:
        """Focus the ``index``-th image-stack slider handle and press ``key`` (real key events)."""
        focused = self.evaluate(f"""(() => {{
          const ctrl = document.querySelectorAll('.{CONTROL_CLASS}')[{index}];
          const handle = ctrl && ctrl.querySelector('.noUi-handle, [role=slider], input[type=range]');
          if (!handle) return false;
          handle.scrollIntoView({{block: 'center'}});
          handle.focus();
          return document.activeElement === handle;
        }})()""")
        if not focused:
            raise RuntimeError("no slider handle to focus")
        codes = {"ArrowRight": 39, "ArrowLeft": 37, "ArrowUp": 38, "ArrowDown": 40}
        for kind in ("keyDown", "keyUp"):
            self.cdp.send("Input.dispatchKeyEvent", {
                "type": kind, "key": key, "code": key, "windowsVirtualKeyCode": codes.get(key, 0),
                "nativeVirtualKeyCode": codes.get(key, 0)})

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the whole page."""
        metrics = self.cdp.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics.get("contentSize")
        data = self.cdp.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 6000), "scale": 1}})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def close(self) -> None:
        cdp = getattr(self, "cdp", None)
        if cdp is not None:
            try:
                cdp.close()
            except Exception:
                pass
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


def read_page(browser: Browser, url: str) -> dict[str, Any]:
    """Load ``url`` and read what a reader sees: its load report, tables, admonitions and prose."""
    report = browser.load(url)
    return {"report": report, "tables": browser.tables(), "admonitions": browser.admonitions(),
            "text": browser.visible_text()}


def reader_problems(read: Mapping[str, Any]) -> list[str]:
    """What a reader would trip over on a page read by :func:`read_page`: a table holding our results beside the
    paper's Table 1 values, a table wider than the column that scrolls in no frame of its own, raw ``**``."""
    problems = []
    for table in read["tables"]:
        mixed = mixes_ours_and_paper(table["text"])
        if mixed:
            problems.append(f"table {table['index']} holds our results and the paper's {mixed}")
        if not (table["fits"] or table["scrolls"]):
            problems.append(f"table {table['index']} is {table['width']:.0f} px wide in a {table['column']:.0f} px "
                            "column and scrolls in no frame of its own")
    if "**" in read["text"]:
        line = next(line for line in read["text"].splitlines() if "**" in line)
        problems.append(f"raw Markdown '**' in the visible text: {line[:120]!r}")
    return problems


def site_pages(site: Path) -> list[Path]:
    """The site's content pages (search and index pages of Sphinx excluded)."""
    skip = {"search.html", "genindex.html"}
    return sorted(p for p in site.rglob("*.html")
                  if p.name not in skip and "_static" not in p.parts and "_sources" not in p.parts)


def check_site(site: Path, browser: Browser | None = None) -> list[PageReport]:
    """Load every page of ``site`` offline; one report per page (reader problems count as errors)."""
    own = browser is None
    browser = browser or Browser()
    try:
        reports = []
        for page in site_pages(site):
            read = read_page(browser, page.resolve().as_uri())
            read["report"].errors.extend(f"reader: {p}" for p in reader_problems(read))
            reports.append(read["report"])
        return reports
    finally:
        if own:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m csta_lib.book.browser",
        description="Load every page of a built book in headless chromium with the network cut off; "
        "report JavaScript errors, attempted remote requests and what a reader would trip over (tables "
        "mixing our results with the paper's, tables wider than the column, raw Markdown).",
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
