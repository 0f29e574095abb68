"""Readers of the original TVSum and SumMe annotations.

* TVSum ``ydata-tvsum50.mat`` is MATLAB v7.3, i.e. HDF5: a struct ``tvsum50`` whose fields are
  (50, 1) arrays of object references into ``#refs#``. Entry *k* is h5 ``video_{k+1}`` (the order
  of the eccv16 files and of CSTA's ``ydata-anno.tsv``; book method page, method-input).
* SumMe ``GT/<name>.mat`` (classic MATLAB, scipy.io.loadmat): ``user_score`` (n_frames, n_users;
  > 0 = selected), ``gt_score``, ``FPS``, ``nFrames``, ``video_duration``. The h5 order is the ASCII
  sort of the names, which is the order of ``nameVid`` in ``SumMe_data_vsLSTM.mat``.

Both return ``{"video_1": ..., ...}`` in h5 order, with plain numpy arrays.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from csta_lib.errors import DataFormatError, MissingDataError

TVSUM_USERS = 20


@dataclass(frozen=True, eq=False)
class TVSumVideo:
    """One TVSum video: 20 annotators' per-frame importance scores (1..5, constant over 2-s shots)."""

    key: str
    video_id: str  # YouTube id, = eccv16 ``video_name``
    title: str
    category: str  # two-letter TVSum category code (VT, VU, GA, ...)
    n_frames: int
    user_scores: np.ndarray  # (20, n_frames) float64, values 1..5
    duration: float  # seconds (``length`` in the .mat)

    @property
    def fps(self) -> float:
        """Frame rate implied by the annotation: n_frames / duration."""
        return self.n_frames / self.duration


@dataclass(frozen=True, eq=False)
class SumMeVideo:
    """One SumMe video: each annotator's selection (user_score > 0 means selected)."""

    key: str
    name: str
    fps: float
    n_frames: int
    user_scores: np.ndarray  # (n_users, n_frames), raw ``user_score``ᵀ
    gt_score: np.ndarray  # (n_frames,) float64 = mean over users of user_score > 0
    duration: float  # seconds

    @property
    def user_summary(self) -> np.ndarray:
        """Binary (n_users, n_frames) uint8 summaries, as in the eccv16 files."""
        return (self.user_scores > 0).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# TVSum


def _deref(h5: Any, ref: Any, path: Path, what: str) -> np.ndarray:
    try:
        return np.asarray(h5[ref][()])
    except Exception as exc:  # a broken reference: h5py raises ValueError / KeyError
        raise DataFormatError(f"{path}: tvsum50/{what}: unreadable object reference ({exc})") from exc


def _frame_count(value: Any, where: str) -> int:
    """A frame count read from a file: one whole number from 1 to 2**63 - 1, else :class:`DataFormatError`."""
    arr = np.asarray(value).ravel()
    if arr.size != 1 or arr.dtype.kind not in "iuf":
        raise DataFormatError(f"{where}: expected one number, got shape {arr.shape} of {arr.dtype}")
    number = arr[0].item()  # a Python int or float: exact for every integer dtype, no wrap-around
    if isinstance(number, float) and not (math.isfinite(number) and number == int(number)):
        raise DataFormatError(f"{where}: {number} is not a whole number of frames")
    if not 1 <= int(number) <= 2**63 - 1:
        raise DataFormatError(f"{where}: {int(number)} frames is out of range (1 to 2**63 - 1)")
    return int(number)


def _chars(arr: np.ndarray) -> str:
    """A MATLAB char array (uint16 codes) as a Python string."""
    return "".join(map(chr, np.asarray(arr).ravel().tolist()))


def load_tvsum(path: str | os.PathLike[str]) -> dict[str, TVSumVideo]:
    """Read ``ydata-tvsum50.mat`` (:func:`csta_lib.runs.locator.load_tvsum` finds the project's)."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path}: no such file (TVSum ydata-tvsum50.mat was expected)")
    if not h5py.is_hdf5(path):
        raise DataFormatError(f"{path}: not a MATLAB v7.3 (HDF5) file; TVSum ydata-tvsum50.mat was expected")
    fields = ("video", "title", "category", "nframes", "length", "user_anno")
    videos: dict[str, TVSumVideo] = {}
    with h5py.File(path, "r") as h5:
        if "tvsum50" not in h5:
            raise DataFormatError(f"{path}: missing struct 'tvsum50' (keys: {', '.join(h5.keys())})")
        struct = h5["tvsum50"]
        for name in fields:
            if name not in struct:
                raise DataFormatError(f"{path}: tvsum50 has no field {name!r}")
        refs = {name: np.asarray(struct[name][()]).ravel() for name in fields}
        counts = {len(r) for r in refs.values()}
        if len(counts) != 1:
            raise DataFormatError(f"{path}: tvsum50 fields have different lengths {sorted(counts)}")
        for i in range(counts.pop()):
            key = f"video_{i + 1}"
            value = {name: _deref(h5, refs[name][i], path, f"{name}[{i}]") for name in fields}
            n_frames = _frame_count(value["nframes"], f"{path}: {key} nframes")
            anno = value["user_anno"].astype(np.float64)
            # h5py shows MATLAB's (n_frames, 20) column-major array as (20, n_frames).
            if anno.shape != (TVSUM_USERS, n_frames):
                raise DataFormatError(f"{path}: {key} user_anno: shape {anno.shape}, expected "
                                      f"({TVSUM_USERS}, nframes={n_frames})")
            if not np.all(np.isfinite(anno)):
                raise DataFormatError(f"{path}: {key} user_anno: non-finite values")
            duration = float(value["length"].ravel()[0])
            if not (duration > 0 and math.isfinite(duration)):
                raise DataFormatError(f"{path}: {key} length: {duration} seconds is not a positive duration")
            anno.setflags(write=False)
            videos[key] = TVSumVideo(key=key, video_id=_chars(value["video"]), title=_chars(value["title"]),
                                     category=_chars(value["category"]), n_frames=n_frames,
                                     user_scores=anno, duration=duration)
    return videos


# --------------------------------------------------------------------------------------------
# SumMe


def _loadmat(path: Path) -> dict[str, Any]:
    import scipy.io  # imported here: ~0.16 s at import, and only SumMe's GT files need it

    try:
        return scipy.io.loadmat(path)
    except NotImplementedError as exc:  # a v7.3 file: HDF5, not what the SumMe GT files are
        raise DataFormatError(f"{path}: MATLAB v7.3 file; a classic SumMe GT .mat was expected") from exc
    except Exception as exc:  # scipy raises ValueError / MatReadError / TypeError on garbage
        raise DataFormatError(f"{path}: not a readable .mat file ({type(exc).__name__}: {exc})") from exc


def _scalar(mat: dict[str, Any], name: str, path: Path) -> float:
    if name not in mat:
        raise DataFormatError(f"{path}: missing key {name!r}")
    arr = np.asarray(mat[name], dtype=np.float64)
    if arr.size != 1 or not np.isfinite(arr).all():
        raise DataFormatError(f"{path}: {name!r} must be one finite number, got shape {arr.shape}")
    return float(arr.ravel()[0])


def read_summe_gt(path: str | os.PathLike[str], key: str = "") -> SumMeVideo:
    """Read one SumMe ``GT/<name>.mat`` file."""
    path = Path(path)
    mat = _loadmat(path)
    for name in ("user_score", "gt_score"):
        if name not in mat:
            raise DataFormatError(f"{path}: missing key {name!r}")
    n_frames = _frame_count(_scalar(mat, "nFrames", path), f"{path}: nFrames")
    scores = np.asarray(mat["user_score"])
    if scores.ndim != 2 or scores.shape[0] != n_frames or scores.shape[1] < 1:
        raise DataFormatError(f"{path}: user_score: shape {scores.shape}, expected (nFrames={n_frames}, n_users)")
    gt = np.asarray(mat["gt_score"], dtype=np.float64).reshape(-1)
    if gt.shape[0] != n_frames:
        raise DataFormatError(f"{path}: gt_score: length {gt.shape[0]}, expected nFrames={n_frames}")
    if not (np.isfinite(gt).all() and np.isfinite(scores.astype(np.float64)).all()):
        raise DataFormatError(f"{path}: user_score or gt_score: non-finite values")
    user_scores, gt = np.ascontiguousarray(scores.T), np.ascontiguousarray(gt)
    user_scores.setflags(write=False)
    gt.setflags(write=False)
    return SumMeVideo(key=key, name=path.stem, fps=_scalar(mat, "FPS", path), n_frames=n_frames,
                      user_scores=user_scores, gt_score=gt, duration=_scalar(mat, "video_duration", path))


def summe_video_order(path: str | os.PathLike[str]) -> list[str]:
    """The ``nameVid`` list of ``SumMe_data_vsLSTM.mat`` (MATLAB v7.3): the h5 video order."""
    path = Path(path)
    if not h5py.is_hdf5(path):
        raise DataFormatError(f"{path}: not a MATLAB v7.3 (HDF5) file; SumMe_data_vsLSTM.mat was expected")
    with h5py.File(path, "r") as h5:
        if "nameVid" not in h5:
            raise DataFormatError(f"{path}: missing key 'nameVid'")
        return [_chars(h5[ref][()]) for ref in np.asarray(h5["nameVid"][()]).ravel()]


def load_summe(gt_dir: str | os.PathLike[str],
               video_list: str | os.PathLike[str] | None = None) -> dict[str, SumMeVideo]:
    """Read every ``GT/*.mat`` of SumMe (:func:`csta_lib.runs.locator.load_summe` finds the project's).

    Keys ``video_k`` follow the ASCII sort of the file names; when ``video_list`` (``SumMe_data_vsLSTM.mat``)
    is given and lists the same videos, its order is checked to agree.
    """
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise MissingDataError(f"{gt_dir}: no such folder (SumMe GT/ with one .mat per video was expected)")
    files = sorted(gt_dir.glob("*.mat"), key=lambda p: p.stem)  # str sort = ASCII order
    if not files:
        raise DataFormatError(f"{gt_dir}: no .mat files (SumMe GT/ was expected)")
    names = [p.stem for p in files]
    if video_list is not None:
        order = summe_video_order(video_list)
        if sorted(order) == names and order != names:
            raise DataFormatError(f"{gt_dir}: the ASCII order of the GT files differs from nameVid of {video_list}")
    return {f"video_{i + 1}": read_summe_gt(p, key=f"video_{i + 1}") for i, p in enumerate(files)}
