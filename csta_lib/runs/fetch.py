"""Fetching the public data files from where they are published.

:func:`fetch_entry` downloads a manifest entry from its ``download`` URL: the file itself, or an archive
(``.zip``/``.whl``, ``.tar.gz``/``.tgz``; standard library only) from which only the ``member`` files are
extracted (a zip served with HTTP range support is read in place, so only its directory and the needed members
are transferred). Every file is checked against its manifest sha256 and written atomically into the project's
``data/`` (never into a mirror): a failed, interrupted or corrupt download leaves nothing behind. A machine
without network gets one clear error per file. Which files the book needs is the book's knowledge
(:mod:`csta_lib.book.preflight`); ``csta data fetch`` and the book build's preflight call this module.
:func:`status_rows` says, for every manifest file, whether it is found and verified (``csta data check``).

**Download override, for tests and local mirrors only.** With ``CSTA_FETCH_BASE_URL=http://HOST:PORT[/prefix]``
every download URL ``https://publisher.host/some/path`` becomes ``http://HOST:PORT[/prefix]/publisher.host/some/path``
(the layout ``wget -x`` writes), so a test can serve generated files from a local HTTP server standing in for
the publishers. Checksums are still those of the manifest.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from csta_lib.errors import CstaInputError, DataFormatError, MissingDataError
from csta_lib.runs import locator
from csta_lib.runs.io import atomic_path, nearest_existing_dir
from csta_lib.runs.locator import DataEntry

BASE_URL_ENV = "CSTA_FETCH_BASE_URL"  # tests and local mirrors only (module docstring)
ONLINE_TIMEOUT = 3.0  # seconds for the whole "is the publisher reachable" probe
CHUNK = 1 << 20

Log = Callable[[str], None]


def _print(message: str) -> None:
    print(message, flush=True)


# -------------------------------------------------------------------------------------------------------------
# where a file is downloaded from


def rebase(url: str, base: str | None = None) -> str:
    """``url`` with its scheme and host replaced by ``base`` (default ``$CSTA_FETCH_BASE_URL``), the host kept
    as the first path component: ``https://h.org/a/b`` -> ``BASE/h.org/a/b``. Unchanged when no base is set."""
    base = os.environ.get(BASE_URL_ENV, "") if base is None else base
    if not base:
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return url
    tail = f"{parts.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")
    return f"{base.rstrip('/')}/{tail}"


def download_url(e: DataEntry) -> str | None:
    """Where ``csta data fetch`` downloads ``e`` from (the override applied), or None when it cannot."""
    url = e.download or locator.direct_url(e)
    return rebase(url) if url else None


def fetchable(e: DataEntry) -> bool:
    """Whether ``e`` can be downloaded (a direct URL of the file, or of an archive with its member names)."""
    if e.download:
        return e.kind == "file" or bool(e.member)
    return locator.direct_url(e) is not None


def _archive_kind(name: str) -> str | None:
    suffix = Path(name).suffix.lower()
    if name.lower().endswith((".tar.gz", ".tar.bz2", ".tar.xz")) or suffix in (".tgz", ".tar"):
        return "tar"
    if suffix in (".zip", ".whl"):
        return "zip"
    return None


def where_published(e: DataEntry) -> str:
    """The download URL (with the archive members taken from it) when there is one, else the manifest's
    ``url`` text; the test override is not applied."""
    if e.download:
        member = e.member[0].rsplit("!", 1)[-1].lstrip("*") if e.member else ""
        return e.download + (f" [{member} in it]" if member else "")
    return locator.direct_url(e) or e.url


# -------------------------------------------------------------------------------------------------------------
# network


def _host_port(url: str) -> tuple[str, int] | None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def is_online(urls: Iterable[str], timeout: float = ONLINE_TIMEOUT) -> bool:
    """Whether a TCP connection to the host of the first http(s) URL opens within ``timeout`` seconds.

    Name resolution has no timeout of its own, so the probe runs in a daemon thread that is abandoned after
    ``timeout``: the answer comes within that time even on a machine whose DNS hangs. ``file://`` URLs
    count as reachable.
    """
    targets = [u for u in urls if u]
    if not targets:
        return False
    address = _host_port(targets[0])
    if address is None:
        return urllib.parse.urlsplit(targets[0]).scheme == "file"
    answer: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection(address, timeout=timeout):
                answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True, name="csta-online-probe")
    thread.start()
    thread.join(timeout)
    return bool(answer and answer[0])


def _size_text(n: int | None) -> str:
    if n is None or n < 0:
        return "size unknown"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _offline_error(name: str, url: str, target: Path, exc: BaseException) -> MissingDataError:
    """One line: the download failed, why, and where the file goes when fetched by other means."""
    if isinstance(exc, urllib.error.HTTPError):
        why = f"the server answered HTTP {exc.code} {exc.reason} (moved or removed?)"
    else:
        why = f"{getattr(exc, 'reason', None) or exc}. Is this machine offline?"
    return MissingDataError(f"could not download {name!r} from {url}: {why} "
                            f"Download it elsewhere and put it at {target}")


def _download(url: str, dest: Path, name: str, target: Path, timeout: float, log: Log) -> str:
    """Stream ``url`` into ``dest``; return the sha256. Network failures raise :class:`MissingDataError`."""
    digest = hashlib.sha256()
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            log(f"[fetch] {name}: downloading {url} ({_size_text(total)})")
            done, next_report = 0, 0.25
            while block := response.read(CHUNK):
                digest.update(block)
                out.write(block)
                done += len(block)
                if total and total > 50 * CHUNK and done / total >= next_report:  # large files: a line per 25 %
                    log(f"[fetch] {name}:   {done / total:.0%} of {_size_text(total)}")
                    next_report += 0.25
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _offline_error(name, url, target, exc) from exc
    log(f"[fetch] {name}:   {_size_text(dest.stat().st_size)} in {time.perf_counter() - start:.1f} s")
    return digest.hexdigest()


class HttpRangeFile(io.RawIOBase):
    """A read-only, seekable file over HTTP range requests (enough for :class:`zipfile.ZipFile`)."""

    def __init__(self, url: str, size: int, timeout: float) -> None:
        super().__init__()
        self.url, self.size, self.timeout, self.pos = url, size, timeout, 0
        self.transferred = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        origin = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, origin + offset)
        return self.pos

    def readinto(self, buffer: Any) -> int:
        if self.pos >= self.size or len(buffer) == 0:
            return 0
        end = min(self.pos + len(buffer), self.size) - 1
        request = urllib.request.Request(self.url, headers={"Range": f"bytes={self.pos}-{end}"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            if response.status != 206:
                raise OSError(f"{self.url}: the server ignored a range request (HTTP {response.status})")
            data = response.read()
        buffer[: len(data)] = data
        self.pos += len(data)
        self.transferred += len(data)
        return len(data)


def _range_size(url: str, timeout: float) -> int | None:
    """The size of ``url`` when its server answers range requests (``bytes 0-0/SIZE``), else None."""
    request = urllib.request.Request(url, headers={"Range": "bytes=0-0"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # closed unread when not a range answer
        content_range = response.headers.get("Content-Range", "")
        if response.status != 206 or "/" not in content_range:
            return None
        total = content_range.rsplit("/", 1)[1].strip()
        return int(total) if total.isdigit() else None


# -------------------------------------------------------------------------------------------------------------
# archives


class _Archive:
    """The member names of a zip or tar archive and extraction of one member to a path."""

    def __init__(self, kind: str, source: Any) -> None:
        self.kind = kind
        if kind == "zip":
            self._zip = zipfile.ZipFile(source)
            self.names = [i.filename for i in self._zip.infolist() if not i.is_dir()]
        else:
            self._tar = tarfile.open(source, "r:*")
            self.names = [m.name for m in self._tar.getmembers() if m.isfile()]

    def extract(self, name: str, dest: Path) -> None:
        with open(dest, "wb") as out:
            if self.kind == "zip":
                with self._zip.open(name) as src:
                    shutil.copyfileobj(src, out, CHUNK)
            else:
                src = self._tar.extractfile(name)
                if src is None:
                    raise DataFormatError(f"archive member {name!r} is not a regular file")
                with src:
                    shutil.copyfileobj(src, out, CHUNK)

    def close(self) -> None:
        (self._zip if self.kind == "zip" else self._tar).close()


def _wanted(name: str) -> bool:
    """Archive members worth looking at: not macOS resource forks (``__MACOSX/``, ``._x``)."""
    return not name.startswith("__MACOSX/") and not Path(name).name.startswith("._")


def _find_members(archive: _Archive, pattern: str, workdir: Path, depth: int = 0) -> list[tuple[_Archive, str]]:
    """``(archive, member)`` pairs matching ``pattern``; ``A!B`` looks for B inside the nested archive A."""
    head, sep, rest = pattern.partition("!")
    matches = [n for n in archive.names if _wanted(n) and fnmatch.fnmatchcase(n, head)]
    if not sep:
        return [(archive, n) for n in matches]
    found: list[tuple[_Archive, str]] = []
    for n in matches:
        kind = _archive_kind(n)
        if kind is None or depth > 2:
            continue
        nested_path = workdir / f"nested-{depth}-{len(found)}{''.join(Path(n).suffixes)}"
        archive.extract(n, nested_path)
        found += _find_members(_Archive(kind, nested_path), rest, workdir, depth + 1)
    return found


# -------------------------------------------------------------------------------------------------------------
# fetching one entry


def _expected(e: DataEntry) -> str:
    return e.sha256.removeprefix("prefix:")


def _check_sha(e: DataEntry, actual: str, what: str, url: str) -> None:
    expected = _expected(e)
    if expected and not actual.startswith(expected):
        raise DataFormatError(f"{what} of {e.name!r} from {url} has sha256 {actual}, expected {expected}; "
                              "nothing was written")


def _check_root(root: Path) -> None:
    """Refuse to write into a mirror (``$CSTA_DATA_MIRROR`` or ``../shared/data``): fetch writes into data/."""
    resolved = root.resolve()
    for mirror in locator.data_roots()[1:]:
        if resolved == mirror.resolve():
            raise CstaInputError(f"{root} is a data mirror (read-only); csta data fetch writes into the "
                                 f"project's data/ ({locator.PROJECT_ROOT / 'data'}) or --root")


@contextlib.contextmanager
def _workdir(root: Path) -> Iterator[Path]:
    """A scratch folder on the file system of ``root`` (so renames into place are atomic), always removed."""
    base = root if root.is_dir() else nearest_existing_dir(root)
    work = Path(tempfile.mkdtemp(prefix=".csta-fetch-", dir=base))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def _open_archive(url: str, e: DataEntry, target: Path, work: Path, timeout: float, log: Log) -> Iterator[_Archive]:
    """The archive at ``url``: read in place over HTTP ranges when it is a zip and the server allows it,
    else downloaded whole into ``work``."""
    kind = _archive_kind(urllib.parse.urlsplit(url).path)
    assert kind is not None
    remote = None
    if kind == "zip" and url.startswith(("http://", "https://")):
        try:
            size = _range_size(url, timeout)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise _offline_error(e.name, url, target, exc) from exc
        if size is not None:
            log(f"[fetch] {e.name}: reading {', '.join(e.member)} from {url} ({_size_text(size)} archive; "
                "only its directory and these members are transferred)")
            remote = HttpRangeFile(url, size, timeout)
    if remote is None:
        local = work / ("archive" + "".join(Path(urllib.parse.urlsplit(url).path).suffixes[-2:]))
        _download(url, local, e.name, target, timeout, log)
    try:  # a remote zip's directory is read here, over the network
        archive = _Archive(kind, io.BufferedReader(remote, buffer_size=CHUNK) if remote is not None else local)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise DataFormatError(f"{url}: not a readable {kind} archive ({exc}); nothing was written") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise _offline_error(e.name, url, target, exc) from exc
    try:
        yield archive
    except (urllib.error.URLError, OSError) as exc:
        if isinstance(exc, CstaInputError):  # already clear (missing data, disk full)
            raise
        raise _offline_error(e.name, url, target, exc) from exc
    finally:
        archive.close()
        if remote is not None:
            log(f"[fetch] {e.name}:   {_size_text(remote.transferred)} transferred")


def _matching(archive: _Archive, e: DataEntry, work: Path, url: str) -> list[tuple[_Archive, str]]:
    """The members of ``e`` in ``archive``: the first of its patterns that matches anything."""
    for pattern in e.member:
        found = _find_members(archive, pattern, work)
        if found:
            return found
    raise DataFormatError(f"{url}: no member matching {' or '.join(e.member)} (for {e.name!r}); nothing was written")


def _fetch_file_from_archive(e: DataEntry, url: str, target: Path, work: Path, timeout: float, log: Log) -> None:
    with _open_archive(url, e, target, work, timeout, log) as archive:
        found = _matching(archive, e, work, url)
        if len(found) > 1:
            names = ", ".join(n for _, n in found[:4])
            raise DataFormatError(f"{url}: several members match {e.member} ({names}); expected one for {e.name!r}")
        owner, member = found[0]
        with atomic_path(target) as tmp:
            owner.extract(member, tmp)
            _check_sha(e, locator.sha256_file(tmp), f"member {member}", url)


def _fetch_folder_from_archive(e: DataEntry, url: str, target: Path, work: Path, timeout: float, log: Log) -> None:
    expected = dict(e.contents)
    staged = work / "folder"
    staged.mkdir()
    with _open_archive(url, e, target, work, timeout, log) as archive:
        for owner, member in _matching(archive, e, work, url):
            base = Path(member).name
            if expected and base not in expected:
                continue  # extract only what the manifest lists
            owner.extract(member, staged / base)
    for base, sha in expected.items():
        path = staged / base
        if not path.is_file():
            raise DataFormatError(f"{url}: {e.name!r} needs {base!r}, which the archive lacks; nothing was written")
        actual = locator.sha256_file(path)
        if actual != sha:
            raise DataFormatError(f"{base} of {e.name!r} from {url} has sha256 {actual}, expected {sha}; "
                                  "nothing was written")
    if not any(staged.iterdir()):
        raise DataFormatError(f"{url}: no files for {e.name!r}; nothing was written")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # --force: swap the old folder out, the new one in
        target.rename(work / "old")
    try:
        staged.rename(target)
    except OSError:
        if not target.is_dir():  # another process put the same folder in place meanwhile: keep that one
            raise


def fetch_entry(name_or_entry: str | DataEntry, root: str | os.PathLike[str] | None = None, *,
                timeout: float = 30.0, force: bool = False, log: Log = _print) -> Path:
    """Download one manifest entry into ``root`` (default: the project's ``data/``) and return its path.

    Already present under ``root`` (and not ``force``): returned as is. Raises :class:`MissingDataError` when
    the entry has no download URL or the download fails (offline: one clear line), and
    :class:`DataFormatError` when a checksum does not match or the archive lacks the member; in every failure
    nothing is left under ``root``.
    """
    e = name_or_entry if isinstance(name_or_entry, DataEntry) else locator.entry(name_or_entry)
    root_path = Path(root) if root is not None else locator.PROJECT_ROOT / "data"
    _check_root(root_path)
    target = root_path / e.path
    present = target.is_dir() if e.kind == "dir" else target.is_file()
    if present and not force:
        return target
    url = download_url(e) if fetchable(e) else None
    if url is None:
        raise MissingDataError(f"{e.name!r} has no direct download URL (csta data fetch only downloads files "
                               f"that have one); get it by hand from {e.url} and put it at {target} "
                               f"(licence: {e.licence})")
    if e.member or e.kind == "dir":
        with _workdir(root_path) as work:
            if e.kind == "dir":
                _fetch_folder_from_archive(e, url, target, work, timeout, log)
            else:
                _fetch_file_from_archive(e, url, target, work, timeout, log)
    else:
        with atomic_path(target) as tmp:
            _check_sha(e, _download(url, tmp, e.name, target, timeout, log), "the download", url)
    log(f"[fetch] {e.name}: wrote {target}")
    return target


def status_rows(hash_files: bool = True) -> list[dict[str, Any]]:
    """One row per manifest entry, as ``csta data check`` prints it and the book's "Data files found" page
    shows it: name, status (verified / unverified / missing / mismatch), path (or None), expected location,
    url, sha256, licence, whether it has a direct download, and the mismatch's detail."""
    rows = []
    for name, e in locator.manifest().items():
        path = locator.find(name)
        status, detail = "missing", ""
        if path is not None:
            if hash_files:
                try:
                    status = locator.verify(name, path)
                except DataFormatError as exc:
                    status, detail = "mismatch", str(exc)
            else:
                status = "unverified"
        rows.append({"name": name, "status": status, "path": str(path) if path else None,
                     "expected": e.path, "url": e.url, "sha256": e.sha256, "licence": e.licence,
                     "direct_download": fetchable(e), "detail": detail})
    return rows


def main_fetch_names(names: Sequence[str], root: str | None, force: bool, log: Log = _print) -> dict[str, str]:
    """Fetch several entries, one line each; return ``{name: error}`` for the failures."""
    failures = {}
    for name in names:
        try:
            path = fetch_entry(name, root, force=force, log=log)
            log(f"{name}: {path} ({locator.verify(name, path)})")
        except CstaInputError as exc:
            failures[name] = str(exc)
    return failures
