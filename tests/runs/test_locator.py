"""The data locator: search order, missing-file messages, checksums, the manifest, fetch."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from csta_lib.runs import fetch, locator
from csta_lib.errors import CstaInputError, DataFormatError, MissingDataError

NAME = "splits.csta.summe"


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """A fake project with its own data/, a $CSTA_DATA_MIRROR folder and a ../shared/data folder."""
    project = tmp_path / "work" / "project"
    project.mkdir(parents=True)
    monkeypatch.setattr(locator, "PROJECT_ROOT", project)
    env_mirror = tmp_path / "env_mirror"
    monkeypatch.setenv(locator.MIRROR_ENV, str(env_mirror))
    return {"project": project / "data", "env": env_mirror, "shared": tmp_path / "work" / "shared" / "data"}


def _put(root: Path, name: str, text: str) -> Path:
    path = root / locator.entry(name).path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_search_order_project_then_env_then_shared(roots):
    assert locator.data_roots() == [roots["project"], roots["env"], roots["shared"]]
    assert locator.find(NAME) is None
    shared = _put(roots["shared"], NAME, "shared")
    assert locator.locate(NAME) == shared
    env = _put(roots["env"], NAME, "env")
    assert locator.locate(NAME) == env
    project = _put(roots["project"], NAME, "project")
    assert locator.locate(NAME) == project


def test_env_mirror_is_optional(roots, monkeypatch):
    monkeypatch.delenv(locator.MIRROR_ENV)
    assert locator.data_roots() == [roots["project"], roots["shared"]]


def test_folder_entries_need_a_folder(roots):
    (roots["shared"] / "summe").mkdir(parents=True)
    (roots["shared"] / "summe" / "GT").write_text("a file, not the GT folder")
    assert locator.find("summe.gt") is None
    (roots["env"] / "summe" / "GT").mkdir(parents=True)
    assert locator.find("summe.gt") == roots["env"] / "summe" / "GT"


def test_missing_file_message_names_file_url_sha_and_destination(roots):
    with pytest.raises(MissingDataError) as info:
        locator.locate("splits.csta.tvsum")
    message = str(info.value)
    e = locator.entry("splits.csta.tvsum")
    assert "'splits.csta.tvsum'" in message and e.path in message
    assert e.url in message and e.sha256 in message
    assert str(roots["project"] / e.path) in message
    assert isinstance(info.value, CstaInputError)


def test_verify_detects_a_checksum_mismatch(roots):
    _put(roots["project"], NAME, "not the official splits\n")
    with pytest.raises(DataFormatError, match="does not match"):
        locator.verify(NAME)


def test_verify_accepts_the_real_file():
    path = locator.find(NAME)
    if path is None:
        pytest.skip(f"{NAME} is not in any data root (real CSTA split file needed)")
    assert locator.verify(NAME, path) == "verified"
    if locator.find("summe.gt") is not None:
        assert locator.verify("summe.gt") == "verified"  # every file of the folder against its listed sha256


def test_verify_checks_every_file_of_a_folder(roots):
    gt = roots["project"] / "summe" / "GT"
    gt.mkdir(parents=True)
    with pytest.raises(DataFormatError, match="Air_Force_One.mat"):
        locator.verify("summe.gt")
    for name, _ in locator.entry("summe.gt").contents:
        (gt / name).write_bytes(b"not the GT")
    with pytest.raises(DataFormatError, match="does not match"):
        locator.verify("summe.gt")


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="splits.csta.summe"):
        locator.entry("no.such.file")


def test_manifest_is_complete_and_agrees_with_the_mirror_checksums():
    entries = locator.manifest()
    for name in ("tvsum.annotations", "summe.gt", "eccv16.summe", "eccv16.tvsum", "eccv16.fields",
                 "splits.csta.summe", "splits.csta.tvsum", "weights.torchvision.googlenet"):
        assert name in entries
    for e in entries.values():
        assert e.path and e.url and e.licence and e.kind in ("file", "dir")
        assert not Path(e.path).is_absolute()
        assert e.sha256 == "" or e.sha256.startswith("prefix:") or len(e.sha256) == 64
    listing = [root / "MANIFEST.sha256" for root in locator.data_roots() if (root / "MANIFEST.sha256").is_file()]
    if not listing:
        pytest.skip("no MANIFEST.sha256 in any data root to compare against")
    published = {}
    for line in listing[0].read_text().splitlines():
        if line.strip():
            digest, rel = line.split(maxsplit=1)
            published[rel.strip().lstrip("*").removeprefix("./")] = digest
    compared = 0
    for e in entries.values():
        if e.kind == "file" and len(e.sha256) == 64 and e.path in published:
            assert published[e.path] == e.sha256, e.name
            compared += 1
    assert compared >= 10


def _entry(url: str, sha256: str) -> locator.DataEntry:
    return locator.DataEntry(name="test.blob", path="blobs/blob.bin", kind="file", sha256=sha256, url=url,
                             licence="test", description="a test file")


def test_fetch_downloads_verifies_and_renames(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"payload" * 1000)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    root = tmp_path / "data"
    path = fetch.fetch_entry(_entry(source.as_uri(), digest), root=root)
    assert path == root / "blobs" / "blob.bin"
    assert path.read_bytes() == source.read_bytes()
    assert [p.name for p in path.parent.iterdir()] == ["blob.bin"]


def test_fetch_with_wrong_checksum_writes_nothing(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"tampered")
    root = tmp_path / "data"
    with pytest.raises(DataFormatError, match="sha256"):
        fetch.fetch_entry(_entry(source.as_uri(), "prefix:00000000"), root=root)
    assert not [p for p in root.rglob("*") if p.is_file()]


def test_fetch_without_network_fails_clearly(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr("socket.create_connection", offline)
    root = tmp_path / "data"
    with pytest.raises(MissingDataError) as info:
        fetch.fetch_entry("weights.torchvision.resnet18", root=root)
    message = str(info.value)
    assert "could not download" in message and "download.pytorch.org" in message and "offline" in message
    assert not [p for p in root.rglob("*") if p.is_file()]


def test_fetch_refuses_entries_without_a_direct_url(tmp_path):
    with pytest.raises(MissingDataError, match="no direct download URL") as info:
        fetch.fetch_entry("eccv16.summe", root=tmp_path)
    assert "PGL-SUM" in str(info.value)
    assert locator.direct_url(locator.entry("weights.torchvision.googlenet")).startswith("https://")
    assert locator.direct_url(locator.entry("summe.gt")) is None
