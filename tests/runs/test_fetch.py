"""Fetching public data files (runs.fetch) and the book's data preflight (book.preflight), against a local HTTP server standing in for
the publishers (``CSTA_FETCH_BASE_URL``): downloads, archive members, checksums, atomic writes, offline."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import tarfile
import threading
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from csta_lib.book import build, preflight
from csta_lib.cli import main as csta_main
from csta_lib.runs import fetch, locator
from csta_lib.errors import CstaInputError, DataFormatError, MissingDataError

PUBLISHER = "https://publisher.example"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Publisher:
    """Files served at ``/publisher.example/<path>`` (the override's layout), with or without range support."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.ranges = True
        self.sent = 0
        self.requests: list[str] = []

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
    assert fetch.is_online([f"http://127.0.0.1:{closed_port}/x"]) is False
    start = time.perf_counter()
    assert fetch.is_online([fetch.download_url(locator.entry("splits.csta.summe"))]) is True
    unresolvable = fetch.is_online(["https://no-such-host.invalid/x"], timeout=2.0)
    assert unresolvable is False and time.perf_counter() - start < 5


def test_online_probe_gives_up_on_a_hanging_lookup(monkeypatch):
    def hanging_lookup(*args, **kwargs):
        time.sleep(2)
        raise OSError("name resolution timed out")

    monkeypatch.setattr(fetch.socket, "create_connection", hanging_lookup)
    start = time.perf_counter()
    assert fetch.is_online(["https://publisher.example/x"], timeout=0.3) is False
    assert time.perf_counter() - start < 1.5


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
