"""Reader of the eccv16 feature files (``eccv16_dataset_{summe,tvsum}_google_pool5.h5``).

The layout (KaiyangZhou/eccv16, documented in the PGL-SUM README and the book's method page,
method-input): one group per video, ``video_1 … video_N``, each holding

==================  ==================  ===============================================
key                 shape               meaning
==================  ==================  ===============================================
``features``        (T, D) float        frame features at the 15-frame samples (D = 1024)
``gtscore``         (T,) float          training target in [0, 1]
``user_summary``    (U, n_frames) 0/1   one binary summary per annotator
``change_points``   (S, 2) int          KTS shots, inclusive ``[start, end]``
``n_frame_per_seg`` (S,) int            shot lengths (optional; derived if absent)
``n_frames``        scalar int          frames of the original video
``picks``           (T,) int            frame index of each sample (0, 15, 30, …)
``gtsummary``       (T,) float          optional, unused by CSTA
``video_name``      scalar str          optional
``user_scores``     (U, n_frames) float optional: raw per-frame annotator scores (user datasets
                                        with importance scores, :mod:`csta_lib.runs.dataset_build`)
==================  ==================  ===============================================

:func:`load_eccv16` checks all of that when the file is opened, loads every video into memory
once (read-only arrays, cached per file so repeated loads are free) and records the file's
sha256. A surrogate file (see :mod:`csta_lib.runs.surrogate`) says so in its attributes; so does a
*user dataset* built from someone's own videos (``csta data build``, :mod:`csta_lib.runs.dataset_build`),
which also names itself (``dataset``: its own name, never ``summe``/``tvsum``) and its annotation ``style``
(``summe``: selected intervals, ``tvsum``: importance scores; the style picks the evaluation protocol). A file
without these attributes is taken to be the real one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from csta_lib.errors import ConfigError, DataFormatError, MissingDataError, first_line

DATASETS = ("summe", "tvsum")
N_VIDEOS = {"summe": 25, "tvsum": 50}
#: Mean over a dataset's videos of its number of 15-frame steps ⌈n_frames / 15⌉, from the real annotations (the T
#: of Table 3; the paper's FE column is this times one GoogLeNet frame).
MEAN_STEPS = {"summe": 293.44, "tvsum": 470.20}
#: Frames between two sampled frames (``picks``): the 15-frame step of the eccv16 files, the official code's
#: ``--sample_rate`` and CA-SUM's ``[::15]``. The one home of this number.
FRAME_STEP = 15
REQUIRED_KEYS = ("features", "gtscore", "user_summary", "change_points", "n_frames", "picks")
OPTIONAL_KEYS = ("n_frame_per_seg", "gtsummary", "video_name", "n_steps", "user_scores")
REAL_LABEL = "eccv16 GoogLeNet pool5 features"
SURROGATE_LABEL = "surrogate features"
#: The file attribute that marks a user dataset (``csta data build``); its ``dataset`` attribute is then its name.
USER_DATASET_ATTR = "user_dataset"
#: A user dataset's name: a file-system-safe word (it names the results store's folder of its runs).
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# fullmatch with ASCII digits only: "$" would also accept a trailing newline ("video_1\n"), "\d" other scripts' digits.
_VIDEO_KEY = re.compile(r"video_([0-9]+)")
#: The most bytes one field of a file may declare before it is read (real fields are a few MB; a file that
#: declares more is refused instead of exhausting memory).
MAX_FIELD_BYTES = 1 << 30


def check_dataset(name: str) -> str:
    """Normalise a dataset name (``SumMe`` → ``summe``); raise :class:`ConfigError` if unknown."""
    normal = str(name).strip().lower()
    if normal not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; expected one of: {', '.join(DATASETS)}")
    return normal


def check_dataset_name(name: str) -> str:
    """A benchmark name normalised as :func:`check_dataset` does, or a user dataset's name (checked: letters,
    digits, ``_.-``, at most 64 characters); anything else raises :class:`ConfigError`."""
    normal = str(name).strip().lower()
    if normal in DATASETS:
        return normal
    if not _USER_NAME.fullmatch(str(name)):
        raise ConfigError(f"dataset name {name!r} is neither {' nor '.join(DATASETS)} nor a user dataset name "
                          "(letters, digits, '_', '.', '-'; at most 64 characters)")
    return str(name)


def n_steps(n_frames: int) -> int:
    """Number of 15-frame samples of a video of ``n_frames`` frames: ⌈n_frames / 15⌉ (picks 0, 15, 30, …)."""
    return -(-int(n_frames) // FRAME_STEP)


def video_sort_key(key: str) -> tuple[int, str]:
    """Sort ``video_2`` before ``video_10`` (h5 stores keys in ASCII order)."""
    match = _VIDEO_KEY.fullmatch(key)
    return (int(match.group(1)), key) if match else (1 << 30, key)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (the ``sha256`` a loaded dataset records)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class VideoData:
    """One video of an eccv16 file, validated; arrays are read-only."""

    key: str
    features: np.ndarray  # (T, D) float32
    gtscore: np.ndarray  # (T,) float32
    user_summary: np.ndarray | None  # (U, n_frames) uint8
    change_points: np.ndarray  # (S, 2) int64, inclusive
    n_frame_per_seg: np.ndarray  # (S,) int64
    n_frames: int
    picks: np.ndarray  # (T,) int64
    video_name: str
    gtsummary: np.ndarray | None = None
    user_scores: np.ndarray | None = None  # (U, n_frames) float32: raw annotator scores, when the file has them

    @property
    def n_steps(self) -> int:
        """Number of 15-frame samples T."""
        return int(self.features.shape[0])


@dataclass(frozen=True, eq=False)
class Eccv16Dataset:
    """All videos of one eccv16 file, in ``video_1 … video_N`` order.

    ``dataset`` is ``summe``/``tvsum`` or a user dataset's own name; ``style`` the kind of annotation
    (``summe`` or ``tvsum``), which decides the default evaluation protocol (for the benchmarks, the dataset).
    """

    path: Path
    dataset: str
    videos: dict[str, VideoData]
    is_surrogate: bool
    provenance: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    style: str = ""

    def __post_init__(self) -> None:
        if not self.style:
            object.__setattr__(self, "style", self.dataset)

    def __getitem__(self, key: str) -> VideoData:
        try:
            return self.videos[key]
        except KeyError:
            raise KeyError(f"{self.path}: no video {key!r} (has {len(self.videos)}: "
                           f"{', '.join(list(self.videos)[:5])}, ...)") from None

    def __contains__(self, key: object) -> bool:
        return key in self.videos

    def __iter__(self) -> Iterator[str]:
        return iter(self.videos)

    def __len__(self) -> int:
        return len(self.videos)

    def keys(self) -> list[str]:
        """Video keys in ``video_1 … video_N`` order."""
        return list(self.videos)

    def values(self) -> list[VideoData]:
        return list(self.videos.values())

    def items(self) -> list[tuple[str, VideoData]]:
        return list(self.videos.items())

    @property
    def is_user(self) -> bool:
        """Whether this is a user dataset (``csta data build``): neither the paper's data nor a surrogate."""
        return self.provenance.get("kind") == "user"

    @property
    def label(self) -> str:
        """What the features are, for any table or figure computed on them."""
        return str(self.provenance.get("label", SURROGATE_LABEL if self.is_surrogate else REAL_LABEL))


# --------------------------------------------------------------------------------------------
# validation helpers: each raises DataFormatError naming file, video and key


def _where(path: Path, key: str, name: str | None = None) -> str:
    return f"{path}: {key}" + (f"/{name}" if name else "")


def h5_member(container: Any, name: str, where: str) -> Any:
    """``container[name]`` with broken links reported: a dangling soft or external link, or a link loop,
    raises :class:`DataFormatError` naming ``where`` (h5py would raise KeyError or RuntimeError)."""
    try:
        link = container.get(name, getlink=True)
    except Exception:  # noqa: BLE001 - h5py raises several kinds on damaged link tables
        link = None
    if link is None:
        raise DataFormatError(f"{where}: missing")
    try:
        return container[name]
    except (KeyError, RuntimeError, OSError, ValueError) as exc:
        kind = type(link).__name__.replace("Link", "").lower() or "hard"
        first = first_line(exc)
        raise DataFormatError(f"{where}: broken {kind} link (dangling or a loop: {first})") from None


def check_declared_size(dataset: Any, where: str, max_bytes: int = MAX_FIELD_BYTES) -> None:
    """Refuse an h5 dataset whose declared shape is larger than ``max_bytes``, before reading a byte of it."""
    try:
        size = int(np.prod(dataset.shape, dtype=object)) if dataset.shape is not None else 0
        nbytes = size * int(dataset.dtype.itemsize)
    except Exception as exc:  # noqa: BLE001 - unreadable type or dataspace
        raise DataFormatError(f"{where}: cannot read its shape or type ({type(exc).__name__})") from None
    if nbytes > max_bytes:
        raise DataFormatError(f"{where}: declares shape {tuple(dataset.shape)} ({nbytes:,} bytes), more than the "
                              f"{max_bytes:,} bytes accepted; refusing to read it")


def _read(group: Any, path: Path, key: str, name: str) -> np.ndarray:
    item = h5_member(group, name, _where(path, key, name))
    if not hasattr(item, "dtype"):
        raise DataFormatError(f"{_where(path, key, name)}: expected a dataset, found a group")
    check_declared_size(item, _where(path, key, name))
    try:
        return np.asarray(item[()])
    except Exception as exc:  # h5py raises OSError/TypeError on unreadable datasets
        first = first_line(exc)
        raise DataFormatError(f"{_where(path, key, name)}: cannot be read ({first})") from None


def _numeric(arr: np.ndarray, path: Path, key: str, name: str) -> np.ndarray:
    if arr.dtype.kind not in "biuf":
        raise DataFormatError(f"{_where(path, key, name)}: expected numbers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise DataFormatError(f"{_where(path, key, name)}: {bad} non-finite value(s) (NaN or inf)")
    return arr


_INT64 = np.iinfo(np.int64)


def _integers(arr: np.ndarray, path: Path, key: str, name: str) -> np.ndarray:
    """Integer values as int64; values outside int64 (which a cast would wrap to negatives) are refused."""
    arr = _numeric(arr, path, key, name)
    if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
        raise DataFormatError(f"{_where(path, key, name)}: expected integer values")
    if arr.size:
        if arr.dtype.kind == "f":
            # 2**63 is exactly representable as a float; anything >= it does not fit int64
            outside = (arr >= 2.0**63) | (arr < -(2.0**63))
        elif arr.dtype.kind == "u":
            outside = arr > np.uint64(_INT64.max)
        else:
            outside = np.zeros(arr.shape, dtype=bool)
        if np.any(outside):
            bad = arr[outside].ravel()[0]
            raise DataFormatError(f"{_where(path, key, name)}: value {bad} is out of range (more than 2**63 - 1)")
    return arr.astype(np.int64)


def _shape_error(path: Path, key: str, name: str, got: tuple, expected: str) -> DataFormatError:
    return DataFormatError(f"{_where(path, key, name)}: shape {got} does not match the expected {expected}")


def _text(value: Any) -> str:
    value = value.item() if isinstance(value, np.ndarray) and value.size == 1 else value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu":  # MATLAB-style char codes
        return "".join(map(chr, value.ravel()))
    return str(value)


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(arr)
    arr.setflags(write=False)
    return arr


def validate_video(path: Path, key: str, raw: dict[str, np.ndarray]) -> VideoData:
    """Check one video's fields against each other and build its :class:`VideoData`.

    ``raw`` maps field names to arrays as read from the file; missing optional fields may be absent.
    """
    for name in REQUIRED_KEYS:
        if name not in raw:
            raise DataFormatError(f"{_where(path, key)}: missing key {name!r}")
    features = _numeric(raw["features"], path, key, "features")
    if features.ndim != 2:
        raise _shape_error(path, key, "features", features.shape, "(T, D)")
    n_steps = features.shape[0]
    if n_steps < 1:
        raise DataFormatError(f"{_where(path, key, 'features')}: empty video (0 steps)")
    if features.shape[1] < 1:
        raise _shape_error(path, key, "features", features.shape, "(T, D) with D >= 1")

    gtscore = _numeric(raw["gtscore"], path, key, "gtscore")
    if gtscore.ndim != 1 or gtscore.shape[0] != n_steps:
        raise _shape_error(path, key, "gtscore", gtscore.shape, f"({n_steps},) = len(features)")

    n_frames_arr = _integers(raw["n_frames"], path, key, "n_frames")
    if n_frames_arr.size != 1:
        raise _shape_error(path, key, "n_frames", n_frames_arr.shape, "a scalar")
    n_frames = int(n_frames_arr.reshape(()))
    if n_frames < 1:
        raise DataFormatError(f"{_where(path, key, 'n_frames')}: n_frames = {n_frames} (must be >= 1)")

    picks = _integers(raw["picks"], path, key, "picks").reshape(-1)
    if picks.shape[0] != n_steps:
        raise _shape_error(path, key, "picks", raw["picks"].shape, f"({n_steps},) = len(features)")
    if picks[0] < 0 or picks[-1] >= n_frames or np.any(np.diff(picks) <= 0):
        raise DataFormatError(f"{_where(path, key, 'picks')}: picks must increase strictly within "
                              f"[0, n_frames={n_frames}); got {picks[0]} … {picks[-1]}")

    user_summary = _numeric(raw["user_summary"], path, key, "user_summary")
    if user_summary.ndim != 2 or user_summary.shape[1] != n_frames or user_summary.shape[0] < 1:
        raise _shape_error(path, key, "user_summary", user_summary.shape, f"(n_users, n_frames={n_frames})")
    if not np.all((user_summary == 0) | (user_summary == 1)):
        raise DataFormatError(f"{_where(path, key, 'user_summary')}: values must be 0 or 1")

    change_points = _integers(raw["change_points"], path, key, "change_points")
    if change_points.ndim != 2 or change_points.shape[1] != 2 or change_points.shape[0] < 1:
        raise _shape_error(path, key, "change_points", change_points.shape, "(n_shots, 2)")
    starts, ends = change_points[:, 0], change_points[:, 1]
    if (starts[0] != 0 or ends[-1] != n_frames - 1 or np.any(ends < starts)
            or np.any(starts[1:] != ends[:-1] + 1)):
        raise DataFormatError(f"{_where(path, key, 'change_points')}: shots must be inclusive [start, end] "
                              f"rows that tile frames 0 … n_frames-1 = {n_frames - 1} without gaps")
    lengths = ends - starts + 1
    if "n_frame_per_seg" in raw:
        per_seg = _integers(raw["n_frame_per_seg"], path, key, "n_frame_per_seg").reshape(-1)
        if not np.array_equal(per_seg, lengths):
            raise DataFormatError(f"{_where(path, key, 'n_frame_per_seg')}: does not equal the shot lengths "
                                  "end - start + 1 of change_points")

    if "n_steps" in raw and int(_integers(raw["n_steps"], path, key, "n_steps").reshape(-1)[0]) != n_steps:
        raise DataFormatError(f"{_where(path, key, 'n_steps')}: does not equal len(features) = {n_steps}")

    gtsummary = None
    if "gtsummary" in raw:
        gtsummary = _numeric(raw["gtsummary"], path, key, "gtsummary").reshape(-1).astype(np.float32)
    user_scores = None
    if "user_scores" in raw:
        user_scores = _numeric(raw["user_scores"], path, key, "user_scores")
        if user_scores.ndim != 2 or user_scores.shape[1] != n_frames or user_scores.shape[0] < 1:
            raise _shape_error(path, key, "user_scores", user_scores.shape, f"(n_users, n_frames={n_frames})")

    return VideoData(
        key=key,
        features=_readonly(features.astype(np.float32, copy=False)),
        gtscore=_readonly(gtscore.astype(np.float32, copy=False)),
        user_summary=_readonly(user_summary.astype(np.uint8, copy=False)),
        change_points=_readonly(change_points),
        n_frame_per_seg=_readonly(lengths),
        n_frames=n_frames,
        picks=_readonly(picks),
        video_name=_text(raw["video_name"]) if "video_name" in raw else key,
        gtsummary=None if gtsummary is None else _readonly(gtsummary),
        user_scores=None if user_scores is None else _readonly(user_scores.astype(np.float32, copy=False)),
    )


# --------------------------------------------------------------------------------------------
# the file


def _open_h5(path: Path) -> h5py.File:
    if not path.is_file():
        if path.exists():  # a FIFO, a device or a folder: never opened (it would block or never end)
            raise DataFormatError(f"{path}: not a regular file (an eccv16 h5 dataset was expected)")
        raise MissingDataError(f"{path}: no such file (an eccv16 h5 dataset was expected)")
    if not h5py.is_hdf5(path):
        raise DataFormatError(f"{path}: not an HDF5 file (an eccv16 h5 dataset was expected)")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot be opened as HDF5 ({exc})") from exc


def _attr(value: Any) -> Any:
    """An h5 attribute as plain Python (JSON strings decoded)."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _guess_dataset(path: Path, attrs: dict[str, Any], n_videos: int) -> str:
    if attrs.get(USER_DATASET_ATTR):
        return _user_name(path, attrs)
    if attrs.get("dataset"):
        return check_dataset(attrs["dataset"])
    lowered = path.name.lower()
    named = [d for d in DATASETS if d in lowered]
    if len(named) == 1:
        return named[0]
    by_count = [d for d, n in N_VIDEOS.items() if n == n_videos]
    if len(by_count) == 1:
        return by_count[0]
    raise DataFormatError(f"{path}: cannot tell whether this is SumMe or TVSum; pass dataset='summe' or 'tvsum'")


def _user_name(path: Path, attrs: dict[str, Any]) -> str:
    """The name a user dataset's attributes give it (never a benchmark's), and its annotation style, checked."""
    name = str(attrs.get("dataset", ""))
    try:
        checked = check_dataset_name(name)
    except ConfigError as exc:
        raise DataFormatError(f"{path}: user dataset attribute 'dataset': {exc}") from None
    if checked in DATASETS:
        raise DataFormatError(f"{path}: a user dataset may not be called {name!r} (a benchmark's name)")
    if attrs.get("style") not in DATASETS:
        raise DataFormatError(f"{path}: user dataset attribute 'style' is {attrs.get('style')!r}, expected "
                              f"{' or '.join(DATASETS)}")
    return checked


#: Attributes of a user dataset copied into its provenance (what made it: ``csta data build``).
USER_PROVENANCE_ATTRS = ("style", "encoder", "feature_kind", "encoder_weights", "stride", "sampling", "budget",
                         "shot_settings", "time_unit", "scale", "tool", "tool_version", "sources", "annotations",
                         "note")


def declared_dataset(path: str | os.PathLike[str]) -> str | None:
    """The dataset an eccv16 file's attributes name (a benchmark or a user dataset), or None when they name none
    or the file cannot be read (:func:`load_eccv16` then says why)."""
    if not Path(path).is_file():  # a FIFO would block HDF5's open, a device never end: load_eccv16 refuses them
        return None
    try:
        with h5py.File(path, "r") as h5:
            attrs = {k: _attr(v) for k, v in h5.attrs.items()}
    except (OSError, ValueError):
        return None
    if attrs.get(USER_DATASET_ATTR):
        return _user_name(Path(path), attrs)
    return check_dataset(attrs["dataset"]) if attrs.get("dataset") else None


def _provenance(path: Path, dataset: str, attrs: dict[str, Any], sha256: str) -> tuple[bool, dict[str, Any]]:
    prov: dict[str, Any]
    if attrs.get(USER_DATASET_ATTR):
        prov = {"kind": "user", "label": str(attrs.get("label") or f"user dataset {dataset}"), "dataset": dataset,
                "file": path.name, "sha256": sha256}
        prov.update({name: attrs[name] for name in USER_PROVENANCE_ATTRS if name in attrs})
        return False, prov
    is_surrogate = bool(attrs.get("surrogate", False))
    prov = {
        "kind": "surrogate" if is_surrogate else "real",
        "label": SURROGATE_LABEL if is_surrogate else REAL_LABEL,
        "dataset": dataset,
        "file": path.name,
        "sha256": sha256,
    }
    if is_surrogate:
        for name in ("real", "derived", "synthetic", "seed", "signal", "builder_version", "sources", "note"):
            if name in attrs:
                prov[name] = attrs[name]
    else:
        prov.update(real=list(REQUIRED_KEYS) + ["n_frame_per_seg", "video_name"], derived=[], synthetic=[])
    return is_surrogate, prov


def _load(path: Path, dataset: str | None) -> Eccv16Dataset:
    with _open_h5(path) as h5:
        attrs = {k: _attr(v) for k, v in h5.attrs.items()}
        keys = sorted((k for k in h5 if _VIDEO_KEY.fullmatch(k)), key=video_sort_key)
        if not keys:
            raise DataFormatError(f"{path}: no video_<k> groups found (keys: {', '.join(list(h5.keys())[:8])})")
        if attrs.get(USER_DATASET_ATTR):
            ds_name = _guess_dataset(path, attrs, len(keys))
            if dataset is not None and dataset != ds_name:
                raise DataFormatError(f"{path}: this file holds the user dataset {ds_name}, not {dataset}")
        else:
            ds_name = check_dataset(dataset) if dataset is not None else _guess_dataset(path, attrs, len(keys))
            if attrs.get("dataset") and check_dataset(attrs["dataset"]) != ds_name:
                raise DataFormatError(f"{path}: this file holds {attrs['dataset']}, not {ds_name}")
        videos: dict[str, VideoData] = {}
        width = None
        for key in keys:
            group = h5_member(h5, key, _where(path, key))
            if not hasattr(group, "keys"):
                raise DataFormatError(f"{_where(path, key)}: expected a group of fields, found a dataset")
            raw = {name: _read(group, path, key, name) for name in group
                   if name in REQUIRED_KEYS or name in OPTIONAL_KEYS}
            video = validate_video(path, key, raw)
            if width is None:
                width = video.features.shape[1]
            elif video.features.shape[1] != width:
                raise _shape_error(path, key, "features", video.features.shape, f"(T, {width}) like the other videos")
            videos[key] = video
    digest = sha256_file(path)
    is_surrogate, prov = _provenance(path, ds_name, attrs, digest)
    style = str(attrs["style"]) if attrs.get(USER_DATASET_ATTR) else ds_name
    return Eccv16Dataset(path=path, dataset=ds_name, videos=videos, is_surrogate=is_surrogate,
                         provenance=prov, sha256=digest, style=style)


_CACHE: dict[tuple[str, str | None], tuple[tuple[int, int], Eccv16Dataset]] = {}
_CACHE_SIZE = 4  # a TVSum file is ~100 MB in memory: keep only the few most recent


def load_eccv16(path: str | os.PathLike[str], dataset: str | None = None) -> Eccv16Dataset:
    """Open, validate and load an eccv16 h5 file (cached per file while it is unchanged).

    ``dataset`` ("summe" | "tvsum", or a user dataset's name) is taken from the file's attributes, its name or
    its number of videos when not given. Raises :class:`MissingDataError` / :class:`DataFormatError` (both
    :class:`~csta_lib.errors.CstaInputError`) naming the file, video and key at fault.
    """
    path = Path(os.path.realpath(Path(path).expanduser()))  # realpath: a symlink loop is reported below, not raised
    if dataset is not None:
        dataset = check_dataset_name(dataset)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise MissingDataError(f"{path}: no such file (an eccv16 h5 dataset was expected)") from None
    except OSError as exc:  # a symbolic link loop, a name too long, ...
        raise MissingDataError(f"{path}: cannot be opened ({exc.strerror or exc})") from None
    stamp = (stat.st_mtime_ns, stat.st_size)
    cache_key = (str(path), dataset)
    hit = _CACHE.get(cache_key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    loaded = _load(path, dataset)
    _CACHE.pop(cache_key, None)
    _CACHE[cache_key] = (stamp, loaded)
    while len(_CACHE) > _CACHE_SIZE:
        del _CACHE[next(iter(_CACHE))]
    return loaded
