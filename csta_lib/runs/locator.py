"""Find data files by logical name: the project's ``data/`` first, then ``$CSTA_DATA_MIRROR``, then
``../shared/data`` beside the project root (the read-only mirror on our machines).

The catalogue of logical names lives in ``manifest.toml`` next to this module: for each file its
relative path (the same under every data root), sha256 (where known), where it is published and
its licence. A missing file raises :class:`~csta_lib.errors.MissingDataError` whose message says
all of that and where to put the file.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from csta_lib.errors import DataFormatError, MissingDataError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MIRROR_ENV = "CSTA_DATA_MIRROR"


@dataclass(frozen=True)
class DataEntry:
    """One logical data file of the manifest."""

    name: str
    path: str
    kind: str  # "file" or "dir"
    sha256: str  # "" unknown, "prefix:abcd1234" (torchvision naming), or the full hex digest
    url: str
    licence: str
    description: str
    download: str = ""  # direct URL of the file, or of an archive holding it (csta_lib.runs.fetch)
    member: tuple[str, ...] = ()  # archive member patterns ("A!B": B inside the nested archive A)
    contents: tuple[tuple[str, str], ...] = ()  # folders: (file name, sha256) of every file


@lru_cache(maxsize=1)
def manifest() -> dict[str, DataEntry]:
    """The manifest as ``{logical name: DataEntry}``."""
    with open(Path(__file__).with_name("manifest.toml"), "rb") as fh:
        raw = tomllib.load(fh)
    entries = {}
    for e in raw["file"]:
        e = {**e, "member": tuple(e.get("member", ())), "contents": tuple(sorted(e.get("contents", {}).items()))}
        entries[e["name"]] = DataEntry(**e)
    return entries


def data_roots() -> list[Path]:
    """The folders searched, in order: project ``data/``, ``$CSTA_DATA_MIRROR``, ``../shared/data``."""
    roots = [PROJECT_ROOT / "data"]
    if os.environ.get(MIRROR_ENV):
        roots.append(Path(os.environ[MIRROR_ENV]).expanduser())
    roots.append(PROJECT_ROOT.parent / "shared" / "data")
    return roots


def entry(name: str) -> DataEntry:
    """The manifest entry for ``name``; unknown names list the valid ones."""
    entries = manifest()
    if name not in entries:
        raise KeyError(f"unknown data file {name!r}; known: {', '.join(sorted(entries))}")
    return entries[name]


def find(name: str) -> Path | None:
    """Path of logical file ``name`` in the first data root that has it, or None."""
    e = entry(name)
    for root in data_roots():
        candidate = root / e.path
        if (candidate.is_dir() if e.kind == "dir" else candidate.is_file()):
            return candidate
    return None


def missing_message(name: str) -> str:
    """A message saying that ``name`` is missing, where it is published and where to put it."""
    e = entry(name)
    lines = [
        f"data file {name!r} ({e.description}) was not found.",
        f"  looked for {e.path!r} under: " + ", ".join(str(r) for r in data_roots()),
        f"  published at: {e.url}",
    ]
    if e.download:
        lines.append(f"  download: {e.download}" + (f" (member {' or '.join(e.member)})" if e.member else "")
                     + f"; `csta data fetch {name}` does it")
    if e.sha256.startswith("prefix:"):
        lines.append(f"  expected sha256 starting with {e.sha256.removeprefix('prefix:')}")
    elif e.sha256:
        lines.append(f"  expected sha256: {e.sha256}")
    lines.append(f"  put it at: {PROJECT_ROOT / 'data' / e.path} (or set ${MIRROR_ENV} to a folder holding {e.path})")
    lines.append(f"  licence: {e.licence}")
    return "\n".join(lines)


def locate(name: str) -> Path:
    """Path of logical file ``name``; raise :class:`MissingDataError` with instructions if absent."""
    path = find(name)
    if path is None:
        raise MissingDataError(missing_message(name))
    return path


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify(name: str, path: Path | None = None) -> str:
    """Check a located file (or every listed file of a folder) against its manifest checksums.

    Returns ``"verified"``, ``"unverified"`` (no checksum known) or raises :class:`DataFormatError` when a
    checksum does not match or a folder lacks a listed file.
    """
    e = entry(name)
    path = path or locate(name)
    if e.kind == "dir":
        if not e.contents:
            return "unverified"
        for file_name, expected_sha in e.contents:
            member = path / file_name
            if not member.is_file():
                raise DataFormatError(f"{path}: {file_name!r} is missing from {name!r}")
            if sha256_file(member) != expected_sha:
                raise DataFormatError(f"{member}: sha256 does not match the expected {expected_sha} for {name!r}")
        return "verified"
    if not e.sha256:
        return "unverified"
    actual = sha256_file(path)
    expected = e.sha256.removeprefix("prefix:")
    if not actual.startswith(expected):
        raise DataFormatError(f"{path}: sha256 {actual} does not match the expected {expected} for {name!r}")
    return "verified"


def direct_url(e: DataEntry) -> str | None:
    """The URL of the file itself when it has one (not an archive holding it), else None.

    Many entries only say where a file is published (a repository, a page); those must be fetched by hand,
    or come from an archive (``download`` + ``member``, see :mod:`csta_lib.runs.fetch`).
    """
    if e.download and not e.member and e.kind == "file":
        return e.download
    url = e.url.strip()
    if e.download or e.kind != "file" or not url.startswith(("https://", "http://", "file://")) or " " in url:
        return None
    return url


def fetch(name_or_entry: str | DataEntry, root: str | os.PathLike[str] | None = None, *,
          timeout: float = 30.0, force: bool = False) -> Path:
    """Download a manifest entry into ``root`` (default: the project ``data/``); see
    :func:`csta_lib.runs.fetch.fetch_entry` (checked against the manifest sha256, written atomically)."""
    from csta_lib.runs.fetch import fetch_entry

    return fetch_entry(name_or_entry, root, timeout=timeout, force=force)
