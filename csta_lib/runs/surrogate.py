"""Surrogate eccv16 files: real annotation fields, synthetic features.

The real ``eccv16_dataset_{summe,tvsum}_google_pool5.h5`` files are not available everywhere. A
surrogate file has exactly their layout; every field except ``features`` is real or derived from
the real annotations by the documented eccv16 formulas, and ``features`` are synthetic:

SumMe (all 25 videos)
    ``gtscore``, ``user_summary``, ``change_points`` (the real KTS shots), ``n_frame_per_seg``,
    ``n_frames``, ``picks``, ``video_name`` are copied from the real eccv16 fields file
    (``eccv16.fields``). They can also be derived from the GT ``.mat`` files
    (:func:`summe_fields_from_gt`): ``user_summary = (user_score > 0)ᵀ``,
    ``gtscore = gt_score[::15]`` (float32), ``picks = arange(0, n_frames, 15)`` — equal to the real
    fields — but the KTS shots are not derivable, so that route uses uniform 2-second shots.
TVSum (all 50 videos)
    ``gtscore``, ``n_frames``, ``picks``, ``video_name`` are real (fields file), or derived as
    ``gtscore = (mean over the 20 users of user_anno at picks − 1) / 4``. The real KTS shots and
    user summaries are not available: ``change_points`` are uniform 2-second shots
    (fps = nframes / length of the .mat) and ``user_summary`` is each user's 15 % knapsack over them.
``features`` (synthetic)
    float32 (T, 1024), deterministic from the seed: each shot has a random prototype vector, each
    step adds noise to its shot's prototype, and a ``signal`` ∈ [0, 1] mixes in the per-video
    standardised ``gtscore`` along one fixed direction (shared by all videos), so a model can learn
    something: ``x = √(1−s²)·(prototype + 0.5·noise)/√1.25 + s·z(gtscore)·direction``.

The file's attributes say all of this (``surrogate``, ``real``, ``derived``, ``synthetic``,
``sources``, ``seed``, ``signal``, ``builder_version``); :func:`csta_lib.data.eccv16.load_eccv16`
exposes them as ``is_surrogate`` and ``provenance`` (label "surrogate features").
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from csta_lib.data.eccv16 import FRAME_STEP, SURROGATE_LABEL, check_dataset, video_sort_key
from csta_lib.errors import CstaInputError, DataFormatError
from csta_lib.runs.eccv16_writer import (
    VideoFields,
    knapsack_user_summaries,
    scaled_mean_gtscore,
    video_fields,
    write_eccv16,
)
from csta_lib.runs.io import atomic_path, check_outputs
from csta_lib.runs.locator import PROJECT_ROOT, fields_source, find, load_summe, load_tvsum, locate

BUILDER_VERSION = "1"
DEFAULT_SEED = 0
MAX_SEED = 2**63 - 1  # stored as an int64 h5 attribute
DEFAULT_SIGNAL = 0.5
FEATURE_DIM = 1024
SHOT_SECONDS = 2.0
NOISE = 0.5  # per-step noise relative to the shot prototype
DEFAULT_CACHE_DIR = PROJECT_ROOT / ".cache" / "surrogate"
_DATASET_ID = {"summe": 1, "tvsum": 2}
FIELD_NAMES = ("gtscore", "user_summary", "change_points", "n_frame_per_seg", "n_frames", "picks", "video_name")
TVSUM_SCALE = (1.0, 5.0)  # TVSum's user_anno scores


# --------------------------------------------------------------------------------------------
# formulas


def sample_picks(n_frames: int) -> np.ndarray:
    """Frame index of each 15-frame sample: 0, 15, 30, … < n_frames."""
    return np.arange(0, int(n_frames), FRAME_STEP, dtype=np.int32)


def uniform_shots(n_frames: int, fps: float, seconds: float = SHOT_SECONDS) -> np.ndarray:
    """Inclusive ``[start, end]`` rows of consecutive shots of ``round(seconds·fps)`` frames."""
    length = max(1, int(round(seconds * fps)))
    starts = np.arange(0, int(n_frames), length)
    ends = np.minimum(starts + length - 1, int(n_frames) - 1)
    return np.stack([starts, ends], axis=1).astype(np.int32)


def tvsum_gtscore(user_scores: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """eccv16 TVSum target: (mean over users of the 1..5 scores at ``picks`` − 1) / 4, float32."""
    return scaled_mean_gtscore(user_scores, picks, *TVSUM_SCALE)


# --------------------------------------------------------------------------------------------
# field sources


def read_real_fields(dataset: str, path: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """The real eccv16 fields of ``dataset``: ``{video_k: {field: value}}``, from ``path`` (a fields file) or
    where :func:`~csta_lib.runs.locator.fields_source` finds them (the fields file, else the real feature file,
    whose ``features`` are not read)."""
    dataset = check_dataset(dataset)
    path, group_name = (Path(path), dataset) if path is not None else fields_source(dataset)
    if not h5py.is_hdf5(path):
        raise DataFormatError(f"{path}: not an HDF5 file (the eccv16 fields file was expected)")
    out: dict[str, dict[str, object]] = {}
    with h5py.File(path, "r") as h5:
        if group_name not in h5:
            raise DataFormatError(f"{path}: missing group {dataset!r}")
        videos = h5[group_name]
        for key in sorted(videos.keys(), key=video_sort_key):
            group = videos[key]
            fields: dict[str, Any] = {}
            for name in group:
                if name == "features":
                    continue
                value = group[name][()]
                fields[name] = value.decode() if isinstance(value, bytes) else np.asarray(value)
            out[key] = fields
    return out


def summe_fields_from_real(path: str | os.PathLike[str] | None = None) -> dict[str, VideoFields]:
    """SumMe fields copied from the real eccv16 fields file."""
    out = {}
    for key, f in read_real_fields("summe", path).items():
        try:
            out[key] = video_fields(key, f["gtscore"], f["user_summary"], f["change_points"],
                                     int(f["n_frames"]), f["picks"], str(f.get("video_name", key)))
        except KeyError as exc:
            raise DataFormatError(f"eccv16 fields file: summe/{key}: missing key {exc.args[0]!r}") from None
    return out


def summe_fields_from_gt(gt_dir: str | os.PathLike[str] | None = None) -> dict[str, VideoFields]:
    """SumMe fields derived from the GT ``.mat`` files (shots: uniform 2 s, KTS is not derivable)."""
    out = {}
    for key, v in load_summe(gt_dir).items():
        picks = sample_picks(v.n_frames)
        out[key] = video_fields(key, v.gt_score[picks], v.user_summary, uniform_shots(v.n_frames, v.fps),
                                 v.n_frames, picks, v.name)
    return out


def tvsum_fields(annotations: str | os.PathLike[str] | None = None,
                 real_fields: str | os.PathLike[str] | None | bool = None,
                 keys: Sequence[str] | None = None) -> tuple[dict[str, VideoFields], bool]:
    """TVSum fields; ``gtscore``/``n_frames``/``picks``/``video_name`` from the real fields file when
    it is found (``real_fields=False`` forces the derivation), shots and user summaries derived.

    Returns the fields and whether the real fields file was used.
    """
    videos = load_tvsum(annotations)
    if real_fields is False:
        real = None
    else:
        real_path = find("eccv16.fields") if real_fields is None or real_fields is True else real_fields
        real = read_real_fields("tvsum", real_path) if real_path is not None else None
    out = {}
    for key, v in videos.items():
        if keys is not None and key not in keys:
            continue
        if real is not None:
            f = real.get(key)
            if f is None or int(f["n_frames"]) != v.n_frames or str(f["video_name"]) != v.video_id:
                raise DataFormatError(f"eccv16 fields file: tvsum/{key} does not match the annotations "
                                      f"({v.video_id}, {v.n_frames} frames)")
            gtscore, picks, name = f["gtscore"], f["picks"], str(f["video_name"])
        else:
            picks = sample_picks(v.n_frames)
            gtscore, name = tvsum_gtscore(v.user_scores, picks), v.video_id
        shots = uniform_shots(v.n_frames, v.fps)
        summaries = knapsack_user_summaries(v.user_scores, shots, v.n_frames)
        out[key] = video_fields(key, gtscore, summaries, shots, v.n_frames, picks, name)
    return out, real is not None


# --------------------------------------------------------------------------------------------
# synthetic features


def _direction(seed: int, dataset: str, dim: int) -> np.ndarray:
    """The fixed direction that carries the gtscore signal (same for every video of a file)."""
    vec = np.random.default_rng([seed, _DATASET_ID[dataset], 0]).standard_normal(dim)
    return vec * (math.sqrt(dim) / np.linalg.norm(vec))  # unit variance per coordinate


def synthetic_features(fields: VideoFields, video_index: int, dataset: str, seed: int, signal: float,
                       dim: int = FEATURE_DIM) -> np.ndarray:
    """(T, dim) float32 features with shot structure and ``signal`` about ``gtscore`` (module doc)."""
    rng = np.random.default_rng([seed, _DATASET_ID[dataset], video_index])
    shot_of_step = np.searchsorted(fields.change_points[:, 1], fields.picks)  # first shot ending at/after the pick
    prototypes = rng.standard_normal((len(fields.change_points), dim))
    noise = rng.standard_normal((len(fields.picks), dim))
    base = (prototypes[shot_of_step] + NOISE * noise) / math.sqrt(1.0 + NOISE**2)
    score = fields.gtscore.astype(np.float64)
    spread = score.std()
    z = (score - score.mean()) / spread if spread > 0 else np.zeros_like(score)
    mixed = math.sqrt(1.0 - signal**2) * base + signal * z[:, None] * _direction(seed, dataset, dim)[None, :]
    return mixed.astype(np.float32)


# --------------------------------------------------------------------------------------------
# building


def _check_knobs(seed: int, signal: float) -> None:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise CstaInputError(f"seed must be an integer from 0 to 2**63-1, got {seed!r}")
    if not (0.0 <= float(signal) <= 1.0):
        raise CstaInputError(f"signal must be in [0, 1], got {signal!r}")


def _collect_fields(dataset: str, source: str, keys: Sequence[str] | None
                    ) -> tuple[dict[str, VideoFields], list[str], list[str], dict[str, str]]:
    """Fields, the names that are real, the names that are derived, and where each came from."""
    if dataset == "summe":
        if source == "auto":
            source = "fields" if find("eccv16.fields") is not None else "annotations"
        if source == "fields":
            fields = summe_fields_from_real()
            src = "eccv16.fields (eccv16_fields_from_tib_results.h5, summe/video_k)"
            return fields, list(FIELD_NAMES), [], {name: src for name in FIELD_NAMES}
        if source != "annotations":
            raise CstaInputError(f"unknown surrogate source {source!r} (auto, fields or annotations)")
        fields = summe_fields_from_gt()
        sources = {
            "gtscore": "summe.gt: gt_score[picks] (float32)",
            "user_summary": "summe.gt: (user_score > 0).T",
            "n_frames": "summe.gt: nFrames", "picks": "arange(0, n_frames, 15)", "video_name": "summe.gt: file name",
            "change_points": "uniform 2-second shots (FPS of the GT file); the real KTS shots are not derivable",
            "n_frame_per_seg": "change_points end - start + 1",
        }
        return fields, [], list(FIELD_NAMES), sources
    if source not in ("auto", "fields", "annotations"):
        raise CstaInputError(f"unknown surrogate source {source!r} (auto, fields or annotations)")
    fields, used_real = tvsum_fields(real_fields=False if source == "annotations" else None, keys=keys)
    if source == "fields" and not used_real:
        locate("eccv16.fields")  # raises MissingDataError with instructions
    head = ["gtscore", "n_frames", "picks", "video_name"]
    if used_real:
        real, derived = head, ["change_points", "n_frame_per_seg", "user_summary"]
        sources = {n: "eccv16.fields (eccv16_fields_from_tib_results.h5, tvsum/video_k)" for n in head}
    else:
        real, derived = [], list(FIELD_NAMES)
        sources = {"gtscore": "tvsum.annotations: (mean over users of user_anno at picks - 1) / 4",
                   "n_frames": "tvsum.annotations: nframes", "picks": "arange(0, n_frames, 15)",
                   "video_name": "tvsum.annotations: video (YouTube id)"}
    sources.update({
        "change_points": "uniform 2-second shots (fps = nframes / length); the real KTS shots are not available",
        "n_frame_per_seg": "change_points end - start + 1",
        "user_summary": "each user's 15% knapsack over the uniform shots (value = mean user_anno in the shot)",
    })
    return fields, real, derived, sources


def _write_h5(path: Path, dataset: str, fields: dict[str, VideoFields], seed: int, signal: float,
              real: list[str], derived: list[str], sources: dict[str, str], dim: int) -> None:
    attrs = {
        "surrogate": True, "dataset": dataset, "label": SURROGATE_LABEL, "seed": int(seed),
        "signal": float(signal), "builder_version": BUILDER_VERSION, "real": json.dumps(real),
        "derived": json.dumps(derived), "synthetic": json.dumps(["features"]), "sources": json.dumps(sources),
        "note": "surrogate eccv16 file: annotation fields real or derived from real annotations, "
                "features synthetic (csta_lib.runs.surrogate); results on it are labelled 'surrogate features'",
    }
    write_eccv16(path, attrs, ((f, synthetic_features(f, video_sort_key(key)[0], dataset, seed, signal, dim))
                               for key, f in fields.items()))


#: Data files a surrogate may be built from (any of them found is an input the output must not replace).
SOURCE_NAMES = ("eccv16.fields", "tvsum.annotations", "summe.gt", "summe.video_list", "eccv16.summe", "eccv16.tvsum")


def source_files(dataset: str) -> list[Path]:
    """The located files a surrogate of ``dataset`` may read (folders expanded to their files)."""
    files: list[Path] = []
    for name in SOURCE_NAMES:
        found = find(name)
        if found is None:
            continue
        files.extend(sorted(p for p in found.iterdir() if p.is_file()) if found.is_dir() else [found])
    return files


def build_surrogate(dataset: str, out: str | os.PathLike[str], seed: int = DEFAULT_SEED,
                    signal: float = DEFAULT_SIGNAL, *, source: str = "auto",
                    keys: Sequence[str] | None = None, dim: int = FEATURE_DIM, out_flag: str = "--out") -> Path:
    """Write a surrogate eccv16 file for ``dataset`` to ``out`` atomically and return its path.

    ``source``: ``"fields"`` (copy the real eccv16 fields), ``"annotations"`` (derive them from
    the GT/annotation files) or ``"auto"`` (fields when found). ``keys`` keeps only some videos
    (keeping their ``video_k`` names, for small test files); ``dim`` the feature width.
    """
    dataset = check_dataset(dataset)
    _check_knobs(seed, signal)
    out = Path(out)
    # Before any work, creating nothing: the output may not be any file the surrogate is built from.
    check_outputs({out: out_flag}, source_files(dataset))
    fields, real, derived, sources = _collect_fields(dataset, source, keys)
    if keys is not None:
        unknown = [k for k in keys if k not in fields]
        if unknown:
            raise CstaInputError(f"{dataset}: no video(s) {', '.join(unknown)}")
        fields = {k: fields[k] for k in fields if k in set(keys)}
    # Seeds are per video index (video_k → k), so a subset file has the same features as the full one.
    ordered = {k: fields[k] for k in sorted(fields, key=video_sort_key)}
    with atomic_path(out) as tmp:
        _write_h5(tmp, dataset, ordered, seed, signal, real, derived, sources, dim)
    return out


# --------------------------------------------------------------------------------------------
# cache


def surrogate_cache_path(dataset: str, cache_dir: str | os.PathLike[str] | None = None,
                         seed: int = DEFAULT_SEED, signal: float = DEFAULT_SIGNAL) -> Path:
    """Where :func:`resolve_features` keeps the surrogate file for these settings."""
    dataset = check_dataset(dataset)
    folder = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    return folder / f"eccv16_dataset_{dataset}_surrogate_seed{seed}_signal{signal:g}_v{BUILDER_VERSION}.h5"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock beside ``path`` (so two processes build the cache once)."""
    lock = path.with_name(f".{path.name}.lock")
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def resolve_features(dataset: str, cache_dir: str | os.PathLike[str] | None = None, *,
                     seed: int = DEFAULT_SEED, signal: float = DEFAULT_SIGNAL) -> Path:
    """The real eccv16 feature file of ``dataset`` if located, else a cached surrogate (built once).

    Load the result with :func:`csta_lib.data.eccv16.load_eccv16`; its ``is_surrogate`` and
    ``provenance["label"]`` say which it is.
    """
    dataset = check_dataset(dataset)
    real = find(f"eccv16.{dataset}")
    if real is not None:
        return real
    _check_knobs(seed, signal)
    target = surrogate_cache_path(dataset, cache_dir, seed, signal)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target):
        if not target.is_file():  # another process may have built it while we waited
            build_surrogate(dataset, target, seed, signal)
    return target
