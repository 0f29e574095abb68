"""Atomic file writing: a result is either complete on disk or absent, never half-written.

Also the checks every writing command makes *before* it starts working (:func:`check_outputs`):
an output may not be one of the command's inputs, a directory, a path below a regular file, a
name longer than the file system allows, or lie in a folder that cannot be written; private scratch
folders (:func:`scratch_dir`) that killed processes leave behind are removed like their temporaries;
:func:`sigterm_cleanup` lets that cleanup run when a process is terminated; :func:`open_regular_file` and
:func:`read_regular_file` open or read a file that must be a regular file (never a FIFO, a device or an endless
link), the latter of bounded size.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from csta_lib.errors import CstaInputError, DiskFullError

PathLike = str | os.PathLike[str]
# Paths as given to check_outputs: a mapping path -> flag name (for the message), or plain paths.
PathSpec = Mapping[PathLike, str] | Iterable[PathLike]

DEFAULT_NAME_MAX = 255
PATH_MAX = 4096  # Linux: bytes of a whole path, terminating NUL included
# A temporary left by a writer on another host (or whose owner cannot be checked) counts as stale after this.
STALE_TEMP_AGE_S = 24 * 3600
LEGACY_TEMP_AGE_S = 3600
STALE_SEARCH_DEPTH = 4  # ancestors of a target's folder searched for its stale temporaries
_TEMP_PREFIX = ".csta-"
_TEMP_SUFFIX = ".part"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _current_umask() -> int:
    """The process umask (reading it requires setting it; restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def nearest_existing_dir(path: Path) -> Path:
    """The closest ancestor of ``path`` (itself excluded) that exists; raise if a component is not a folder."""
    for parent in (path.parent, *path.parent.parents):
        if os.path.islink(parent) and not os.path.exists(parent):
            raise CstaInputError(f"{path}: the folder {parent} is a broken symbolic link")
        if os.path.exists(parent):
            if not os.path.isdir(parent):
                raise CstaInputError(f"{path}: {parent} is a file, not a folder")
            return parent
    return Path(".")  # unreachable for absolute paths ('/' exists); relative ones end at '.'


def name_max(directory: Path) -> int:
    """The longest file name (bytes) the file system holding ``directory`` allows."""
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return DEFAULT_NAME_MAX


def _temp_key(target: Path) -> str:
    """A short, fixed-length name part identifying ``target`` (so stale temporaries can be found)."""
    return hashlib.sha256(os.fsencode(os.path.abspath(target))).hexdigest()[:16]


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def _temp_name(target: Path) -> str:
    """``.csta-<target hash>.<host>.<pid>.<random>.part``: about 50 bytes whatever the target's length."""
    return f"{_TEMP_PREFIX}{_temp_key(target)}.{owner_tag()}.{secrets.token_hex(4)}{_TEMP_SUFFIX}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def glob_escape(name: str) -> str:
    """``name`` with glob wildcards made literal."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _mtime(path: Path, default: float) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return default


def owner_tag() -> str:
    """``<host>.<pid>`` of this process: put into a scratch file's name so that a later process can tell
    whether the writer is gone (:func:`owner_gone`)."""
    return f"{_host_tag()}.{os.getpid()}"


def owner_gone(tag: str, age_s: float) -> bool:
    """Whether the writer named by ``tag`` (:func:`owner_tag`) is gone: on this host, its process is dead; on
    another host (or an unreadable tag), its file is older than a day."""
    host, _, pid = tag.partition(".")
    if host == _host_tag() and pid.isdigit():
        return not _pid_alive(int(pid)) or age_s > STALE_TEMP_AGE_S
    return age_s > STALE_TEMP_AGE_S


def _is_stale(temp: Path, now: float) -> bool:
    """A temporary is stale when its writer (same host) is dead, or it is older than a day."""
    parts = temp.name[len(_TEMP_PREFIX):-len(_TEMP_SUFFIX)].split(".")
    try:
        age = now - temp.lstat().st_mtime
    except OSError:
        return False
    return owner_gone(".".join(parts[1:3]) if len(parts) == 4 else "", age)


def remove_stale_temporaries(target: PathLike) -> list[Path]:
    """Delete temporaries of ``target`` left by killed writers (SIGKILL leaves them); return those removed.

    Temporaries of live writers (a concurrent run writing the same target) are kept.
    """
    target = Path(target)
    # A temporary lives in the target's folder or, while that did not exist, in an ancestor: look in a few.
    folders = [target.parent, *list(target.parent.parents)[:STALE_SEARCH_DEPTH]]
    removed = []
    now = time.time()
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        stale = [t for t in _glob(folder, f"{_TEMP_PREFIX}{_temp_key(target)}.*{_TEMP_SUFFIX}") if _is_stale(t, now)]
        if folder == target.parent:
            # Names used before the short hashed ones ('.<name>.XXXXXXXX.part'); no owner recorded, so age only.
            stale += [t for t in _glob(folder, f".{glob_escape(target.name)}.????????{_TEMP_SUFFIX}")
                      if now - _mtime(t, now) > LEGACY_TEMP_AGE_S]
        for temp in stale:
            with contextlib.suppress(FileNotFoundError, PermissionError):
                temp.unlink()
                removed.append(temp)
    return removed


def _glob(folder: Path, pattern: str) -> list[Path]:
    try:
        return list(folder.glob(pattern))
    except OSError:  # an unreadable folder: nothing to clean there
        return []


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) is a full disk or exceeded quota."""
    current: BaseException | None = exc
    seen = 0
    while current is not None and seen < 10:
        if isinstance(current, OSError) and current.errno in _DISK_FULL:
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def _nearly_no_space(folder: Path, margin: int = 1 << 20) -> bool:
    """Whether the file system holding ``folder`` has less than ``margin`` bytes left for this user."""
    try:
        info = os.statvfs(folder)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < margin


@contextlib.contextmanager
def atomic_path(target: PathLike) -> Iterator[Path]:
    """Yield a temporary path; rename it onto ``target`` only if the block succeeds.

    The temporary lives in ``target``'s folder, or while that folder does not exist yet in its
    nearest existing ancestor (same file system, so the final ``os.replace`` stays atomic); missing
    folders are created only at commit, so a failed write leaves no new empty directories. Its name
    is short and fixed-length, so any target name the file system accepts works. Temporaries of the
    same target left by a killed writer are removed first. On any exception the temporary is removed
    and ``target`` is left untouched; a full disk becomes a :class:`DiskFullError`.
    """
    target = Path(target)
    remove_stale_temporaries(target)
    folder = target.parent if os.path.isdir(target.parent) else nearest_existing_dir(target)
    tmp_path = folder / _temp_name(target)
    try:
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        yield tmp_path
        # The temporary was created 0600; give the result the permissions a plain open() would have.
        os.chmod(tmp_path, 0o666 & ~_current_umask())
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_path, target)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        # Writers that wrap I/O errors (torch.save, h5py) lose the errno: then look at the space left.
        if is_disk_full(exc) or (isinstance(exc, Exception) and _nearly_no_space(folder)):
            raise DiskFullError(f"disk full (or quota exceeded) while writing {target}; nothing was written") from exc
        renamed = _naming_target(exc, tmp_path, target)  # the temporary's name means nothing to the user
        if renamed is not None:
            raise renamed from exc
        raise


def _naming_target(exc: BaseException, tmp_path: Path, target: Path) -> BaseException | None:
    """``exc`` again, naming ``target`` where it names the temporary ``tmp_path`` (an :class:`OSError`'s file name,
    or a library's message such as h5py's ``name = '…/.csta-….part'``); None when it does not name it."""
    if not isinstance(exc, Exception) or isinstance(exc, CstaInputError):
        return None
    if isinstance(exc, OSError) and exc.errno is not None and exc.filename is not None:
        if os.fspath(exc.filename) == os.fspath(tmp_path):
            return type(exc)(exc.errno, exc.strerror, str(target))
        return None
    message = str(exc)
    if str(tmp_path) not in message:
        return None
    try:
        return type(exc)(message.replace(str(tmp_path), str(target)))
    except Exception:  # noqa: BLE001 - an exception type that cannot be rebuilt from a message: keep the original
        return None


def write_bytes_atomic(target: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically and return the path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_json_atomic(target: PathLike, obj: Any, *, indent: int | None = 1) -> Path:
    """Serialise ``obj`` as JSON (NaN allowed, keys kept in order) and write it atomically."""
    text = json.dumps(obj, indent=indent, allow_nan=True)
    return write_bytes_atomic(target, (text + "\n").encode())


def _scratch_pattern(label: str) -> str:
    return f"{_TEMP_PREFIX}{label}.*{_TEMP_SUFFIX}"


def remove_stale_scratch(folder: PathLike, label: str) -> list[Path]:
    """Delete the scratch folders (:func:`scratch_dir`) of ``label`` in ``folder`` whose process is dead (or that
    are older than a day), and the ``.csta-<label>-*`` folders of older versions after an hour; return them."""
    folder, now = Path(folder), time.time()
    if not os.path.isdir(folder):
        return []
    stale = [p for p in _glob(folder, _scratch_pattern(label)) if _is_stale(p, now)]
    stale += [p for p in _glob(folder, f"{_TEMP_PREFIX}{glob_escape(label)}-*")
              if now - _mtime(p, now) > LEGACY_TEMP_AGE_S]
    removed = []
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def scratch_dir(folder: PathLike, label: str) -> Iterator[Path]:
    """A private scratch folder ``.csta-<label>.<host>.<pid>.<random>.part`` in the existing ``folder`` (the same
    file system as the results moved out of it, so those renames are atomic), always removed afterwards; the
    stale ones of killed processes are removed first (:func:`remove_stale_scratch`)."""
    remove_stale_scratch(folder, label)
    path = Path(folder) / f"{_TEMP_PREFIX}{label}.{_host_tag()}.{os.getpid()}.{secrets.token_hex(4)}{_TEMP_SUFFIX}"
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def sigterm_cleanup() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`SystemExit` (code 143) in the main thread instead of ending the
    process on the spot, so that every ``finally`` (scratch folders, :func:`atomic_path`'s temporaries) runs first.

    Only where this is the main thread and SIGTERM has its default action (a host that handles SIGTERM itself
    keeps its handler)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def open_regular_file(path: PathLike, what: str = "file") -> io.BufferedReader:
    """``path`` opened for reading in binary, refused unless it is a regular file (a link to one is fine).

    Opened non-blocking first and checked before anything is read, so a FIFO without a writer is refused, not
    waited on; a device (``/dev/zero``), a socket or a folder is refused too, a dangling link or a link loop is named
    as such. Raises :class:`FileNotFoundError` when nothing is there, else :class:`CstaInputError` naming ``path``
    and ``what`` it should have been."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        if os.path.islink(path):
            raise CstaInputError(f"{path}: a symbolic link to nothing ({os.readlink(path)}), not a {what}") from None
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CstaInputError(f"{path}: a loop of symbolic links, not a {what}") from None
        raise CstaInputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                    else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
            raise CstaInputError(f"{path}: {kind}, not a {what}; not read")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    raw = io.FileIO(fd, "rb")
    raw.name = str(path)  # the file's name, not its descriptor: in messages (FFmpeg's too, and its format hint)
    return io.BufferedReader(raw)


def read_regular_file(path: PathLike, limit: int, what: str = "file") -> bytes:
    """The bytes of ``path``, a regular file (:func:`open_regular_file`) of at most ``limit`` bytes: one that holds
    or grows beyond ``limit`` is refused after reading at most ``limit + 1``."""
    with open_regular_file(path, what) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise CstaInputError(f"{path}: more than {limit:,} bytes, far larger than any {what}; not read")
    return data


def ensure_writable_dir(path: PathLike) -> Path:
    """Create ``path`` if needed and check that files can be created in it; raise a clear error if not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise PermissionError(f"directory {path} is not writable: {exc.strerror or exc}") from exc
    return path


def check_output_dir(path: PathLike, flag: str = "") -> Path:
    """Raise :class:`CstaInputError` unless ``path`` is (or could be created as) a writable folder; creates nothing."""
    path = Path(path)
    what = _describe(path, flag)
    if os.path.isdir(path):
        folder = path
    elif os.path.lexists(path):
        raise CstaInputError(f"{what} is not a directory")
    else:
        try:
            folder = nearest_existing_dir(path)
        except CstaInputError as exc:
            raise CstaInputError(f"{what} is not writable: {str(exc).split(': ', 1)[-1]}") from None
        limit = name_max(folder)
        missing = path.relative_to(folder).parts if path.is_relative_to(folder) else ()
        long = [p for p in missing if len(os.fsencode(p)) > limit]
        if long:
            raise CstaInputError(f"{what}: folder name {long[0][:40]}... is longer than the file system's "
                                 f"{limit} bytes")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CstaInputError(f"{what} is not writable: folder {folder} does not allow writing")
    return path


def _labelled(paths: PathSpec | None) -> list[tuple[Path, str]]:
    """``(path, label)`` pairs from a mapping path -> flag or a sequence of paths (``None`` entries skipped)."""
    if paths is None:
        return []
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    items = paths.items() if isinstance(paths, Mapping) else ((p, "") for p in paths)
    return [(Path(p), str(flag or "")) for p, flag in items if p is not None and str(p) != ""]


def _describe(path: Path, flag: str) -> str:
    return f"{flag} {path}" if flag else str(path)


def _same_file(a: Path, b: Path) -> bool:
    """Same resolved path, or (both existing) same device and inode: hard and symbolic links included."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def check_output(path: Path, flag: str = "") -> None:
    """Raise :class:`CstaInputError` if ``path`` cannot be written as a file; creates nothing."""
    what = _describe(path, flag)
    if str(path) == "" or path.name in ("", ".", ".."):
        raise CstaInputError(f"output {what} is not a file name")
    try:
        folder = nearest_existing_dir(path)
    except CstaInputError as exc:
        raise CstaInputError(f"output {what}: {str(exc).split(': ', 1)[-1]}") from None
    limit = name_max(folder)
    length = len(os.fsencode(path.name))
    if length > limit:
        raise CstaInputError(f"output {what}: file name is {length} bytes, longer than the file system's {limit}")
    full = len(os.fsencode(os.path.abspath(path)))
    if full >= PATH_MAX:
        raise CstaInputError(f"output {what}: the path is {full} bytes, longer than the system's {PATH_MAX - 1}")
    if os.path.isdir(path):
        raise CstaInputError(f"output {what} is a directory; give a file name")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CstaInputError(f"output {what}: folder {folder} is not writable")


def check_outputs(outputs: PathSpec, inputs: PathSpec | None = ()) -> None:
    """Check, before any work and creating nothing, that every output can be written without harm.

    ``outputs`` and ``inputs`` are mappings path -> flag name (used in the message) or sequences of
    paths. Raises :class:`CstaInputError` (one line, naming path and flag) when an output is the
    same file as an input or another output (resolved path or inode, links followed), is a
    directory, lies below a regular file, has a name over the file system's limit, or its nearest
    existing folder is not writable.
    """
    outs, ins = _labelled(outputs), _labelled(inputs)
    for index, (path, flag) in enumerate(outs):
        check_output(path, flag)
        for other, other_flag in ins:
            if _same_file(path, other):
                raise CstaInputError(
                    f"output {_describe(path, flag)} is the input {_describe(other, other_flag)}; "
                    "refusing to overwrite an input, choose another output path")
        for other, other_flag in outs[index + 1:]:
            if _same_file(path, other):
                raise CstaInputError(
                    f"outputs {_describe(path, flag)} and {_describe(other, other_flag)} are the same file")
