"""The live attention explorer in JupyterLab: a real Jupyter server started here (loopback only, a token, a free
port, stopped at the end) and headless chromium that can reach nothing but that server. The attention chapter's
notebook, given a checkpoint of each of two models and an eccv16 file as a user would in its parameter cell, is
opened and run in JupyterLab; changing the model and the video controls makes the kernel draw another picture."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_attention_browser import PICTURE, changed, control

from csta_lib.book import attention
from csta_lib.book.browser import Browser, find_chromium
from csta_lib.config import PRESETS
from csta_lib.runs.locator import PROJECT_ROOT

JUPYTER_LAB = Path(sys.executable).with_name("jupyter-lab")
NOTEBOOK = PROJECT_ROOT / "notebooks" / "07_attention_maps.ipynb"
ARTIFACTS = PROJECT_ROOT / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (Debian: apt-get install chromium)"),
    pytest.mark.skipif(not JUPYTER_LAB.is_file(), reason="JupyterLab not installed (the [book] extra)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_parameters(source: Path, target: Path, values: dict[str, object]) -> Path:
    """A copy of a notebook whose parameter cell sets ``values`` (what a user edits before running it)."""
    nb = json.loads(source.read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    lines = "".join(cell["source"]).splitlines()
    for name, value in values.items():
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{name} = "))
        lines[index] = f"{name} = {value!r}"
    cell["source"] = "\n".join(lines)
    target.write_text(json.dumps(nb), encoding="utf-8")
    return target


@pytest.fixture()
def lab_server(tmp_path: Path) -> Iterator[str]:
    """JupyterLab serving ``tmp_path`` on a free loopback port with a token; yields its base URL with the token."""
    port, token = free_port(), secrets.token_hex(16)
    # its settings, cookie secret and workspaces in the test's folder, not the user's
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / ".config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / ".run"),
           "JUPYTER_DATA_DIR": str(tmp_path / ".data"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / ".workspaces"),
           "OMP_NUM_THREADS": "1"}
    log = tmp_path / "server.log"
    with log.open("w") as log_file:  # the child keeps its own copy of the descriptor
        server = subprocess.Popen(
            [str(JUPYTER_LAB), "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
             # window.jupyterapp, to run the cells; no package index behind the extension manager
             "--LabApp.expose_app_in_browser=True", "--LabApp.extension_manager=readonly",
             *(["--allow-root"] if os.geteuid() == 0 else [])],
            stdout=subprocess.DEVNULL, stderr=log_file, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 60
        while True:
            try:
                with opener.open(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError as exc:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start: {log.read_text()[-2000:]}") from exc
                time.sleep(0.3)
        yield f"{base}/lab/tree/{{path}}?token={token}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its kernels: a session of their own
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_live_explorer_in_jupyterlab_redraws_when_a_control_changes(lab_server: str, tmp_path: Path,
                                                                     tiny: dict[str, Path],
                                                                     preset_checkpoints: dict[str, Path]) -> None:
    paths = [str(preset_checkpoints[p]) for p in ("paper", "table2.attention")]
    with_parameters(NOTEBOOK, tmp_path / NOTEBOOK.name,
                    {"profile": "smoke", "checkpoints": paths, "source": str(tiny["data"]), "device": "cpu"})
    with Browser(loopback=True, width=1400, height=1800) as browser:
        url = lab_server.format(path=NOTEBOOK.name)
        browser.load(url, settle=1.0)
        if not browser.wait_for("!!(window.jupyterapp && document.querySelector('.jp-Notebook .jp-Cell'))", 90):
            browser.screenshot(ARTIFACTS / "lab_not_open.png")
            pytest.fail(f"JupyterLab did not open the notebook (screenshot in {ARTIFACTS})")
        browser.click(".jp-Notebook .jp-Cell .jp-InputPrompt")  # the notebook gets the focus, as a user's click
        assert browser.wait_for("window.jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel?.status "
                                "=== 'idle'", 90), "the notebook's kernel did not start"
        browser.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")  # Run > Run All Cells
        assert browser.wait_for(f"[...document.querySelectorAll('{PICTURE} img')].some(i => i.offsetParent && "
                                "i.complete && i.naturalWidth)", 240), "the live explorer showed no picture"
        first = browser.picture_state(PICTURE)
        assert first and attention.model_label("paper", PRESETS["paper"]) in first["text"]
        browser.choose(control("model", "select"), 1)  # JupyterLab keeps the arrow keys for moving between cells
        second = changed(browser, first, attempts=300)
        assert second is not None, "changing the model did not redraw the picture"
        assert "(+) Attention Module" in second["text"] and "does not use this map" not in second["text"]
        browser.choose(control("video", "select"), 1)
        third = changed(browser, second, attempts=300)
        assert third is not None and "video_2" in third["text"], "changing the video did not redraw the picture"
        report = browser.report(url)
        assert not report.remote_requests, report.remote_requests
