"""Bounded HTTP transfers: the network half of :mod:`csta_lib.runs.fetch`.

Every transfer is bounded: :func:`download` refuses a ``Content-Length`` beyond the caller's limit before reading
the body and cuts a body that runs past it; :class:`HttpRangeFile` never takes more than the range it asked for, nor
more than its limit in all; a body or range reply cut short is an error. Each file has a total deadline and a
minimum rate over a sliding window (:class:`Limits`), enforced by a watchdog thread (:class:`Transfer`) that shuts
the connection down, so that neither an endless body nor a server sending a byte every few seconds keeps a fetch
alive (a per-read timeout alone never fires for the latter). Redirects are followed to http(s) URLs only. Every
network failure becomes one line (:func:`network_errors`): a :class:`~csta_lib.errors.MissingDataError` naming the
file, the URL, why, and where to put the file when fetched by other means. Tests set the bounds small with
``CSTA_FETCH_TIMEOUT`` (seconds per read), ``CSTA_FETCH_DEADLINE`` (seconds per file), ``CSTA_FETCH_MIN_RATE`` (bytes
per second) and ``CSTA_FETCH_RATE_WINDOW`` (seconds).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from csta_lib.errors import ConfigError, CstaInputError, DataFormatError, MissingDataError
from csta_lib.runs.io import is_disk_full

TIMEOUT_ENV = "CSTA_FETCH_TIMEOUT"
DEADLINE_ENV = "CSTA_FETCH_DEADLINE"
MIN_RATE_ENV = "CSTA_FETCH_MIN_RATE"
RATE_WINDOW_ENV = "CSTA_FETCH_RATE_WINDOW"
ONLINE_TIMEOUT = 3.0  # seconds for the whole "is the publisher reachable" probe
CHUNK = 1 << 20

Log = Callable[[str], None]


def _seconds_text(seconds: float) -> str:
    """``60.1437`` -> ``"60.1"``, ``0.5`` -> ``"0.5"``, ``1.0`` -> ``"1"``."""
    return f"{seconds:.1f}".rstrip("0").rstrip(".")


def one_line(text: object) -> str:
    """``text`` with its lines and runs of blanks joined by single spaces (library messages can span lines)."""
    return " ".join(str(text).split())


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


class Transfer:
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

    def __enter__(self) -> Transfer:
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
        return (f"could not download {self.name!r}: it took longer than the {_seconds_text(self.seconds)} s allowed "
                f"({size_text(self.received)} received); nothing was written")

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
                           f"last {_seconds_text(self.limits.rate_window)} s, less than the {self.limits.min_rate:g} "
                           "needed); nothing was written")
                return


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


def size_text(n: int | None) -> str:
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
        why = f"the server answered HTTP {exc.code} {one_line(exc.reason)} (moved or removed?)"
    elif isinstance(exc, http.client.IncompleteRead):
        why = f"the connection was cut after {len(exc.partial)} bytes of a chunk."
    elif isinstance(exc, http.client.HTTPException):
        why = f"the server's answer is not valid HTTP ({type(exc).__name__}: {one_line(exc) or 'empty'})."
    else:
        why = f"{one_line(getattr(exc, 'reason', None) or exc)}. Is this machine offline?"
    return MissingDataError(f"could not download {name!r} from {url}: {why} "
                            f"Download it elsewhere and put it at {target}")


_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError, ValueError)


@contextlib.contextmanager
def network_errors(transfer: Transfer, url: str, target: Path) -> Iterator[None]:
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


def _watched(base: type[http.client.HTTPConnection], transfer: Transfer) -> Callable[..., http.client.HTTPConnection]:
    """``base`` whose sockets the transfer's watchdog can shut (registered as soon as they connect)."""

    def make(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
        connection = base(*args, **kwargs)
        connection._create_connection = (  # type: ignore[attr-defined]  # http.client's own hook for the socket
            lambda *a, **k: transfer.watch_socket(socket.create_connection(*a, **k)))
        return connection

    return make


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, transfer: Transfer) -> None:
        super().__init__()
        self._transfer = transfer

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_watched(http.client.HTTPConnection, self._transfer), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, transfer: Transfer) -> None:
        super().__init__()
        self._transfer = transfer

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_watched(http.client.HTTPSConnection, self._transfer), req)


@contextlib.contextmanager
def _open_url(transfer: Transfer, url: str, headers: dict[str, str] | None = None) -> Iterator[Any]:
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


def _read_body(transfer: Transfer, response: Any, limit: int, write: Callable[[bytes], Any], what: str) -> int:
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


def _refuse_length(transfer: Transfer, response: Any, limit: int, url: str) -> int | None:
    """The announced ``Content-Length``; refused when beyond ``limit`` (before any of the body is read)."""
    declared = _content_length(response)
    if declared is not None and declared > limit:
        raise DataFormatError(f"{url}: the server announces {declared:,} bytes ({size_text(declared)}) for "
                              f"{transfer.name!r}, more than the {limit:,} expected; nothing was downloaded")
    return declared


def download(transfer: Transfer, url: str, dest: Path, target: Path, limit: int, log: Log) -> str:
    """Stream ``url`` into ``dest`` (at most ``limit`` bytes); return the sha256. Network failures raise
    :class:`MissingDataError`, a body beyond ``limit`` :class:`DataFormatError`."""
    digest = hashlib.sha256()
    start = time.perf_counter()
    with network_errors(transfer, url, target), _open_url(transfer, url) as response, open(dest, "wb") as out:
        total = _refuse_length(transfer, response, limit, url)
        log(f"[fetch] {transfer.name}: downloading {url} ({size_text(total)})")
        next_report = 0.25

        def write(block: bytes) -> None:
            nonlocal next_report
            digest.update(block)
            out.write(block)
            done = out.tell()
            if total and total > 50 * CHUNK and done / total >= next_report:  # large files: a line per 25 %
                log(f"[fetch] {transfer.name}:   {done / total:.0%} of {size_text(total)}")
                next_report += 0.25

        size = _read_body(transfer, response, limit, write, url)
    log(f"[fetch] {transfer.name}:   {size_text(size)} in {time.perf_counter() - start:.1f} s")
    return digest.hexdigest()


class HttpRangeFile(io.RawIOBase):
    """A read-only, seekable file over HTTP range requests (enough for :class:`zipfile.ZipFile`), every request
    watched by ``transfer`` and at most ``limit`` bytes transferred in all."""

    def __init__(self, url: str, size: int, transfer: Transfer, limit: int) -> None:
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


def range_size(transfer: Transfer, url: str) -> int | None:
    """The size of ``url`` when its server answers range requests (``bytes 0-0/SIZE``), else None."""
    with _open_url(transfer, url, {"Range": "bytes=0-0"}) as response:  # closed unread when not a range answer
        content_range = response.headers.get("Content-Range", "")
        if response.status != 206 or "/" not in content_range:
            return None
        total = content_range.rsplit("/", 1)[1].strip()
        return int(total) if total.isdigit() else None
