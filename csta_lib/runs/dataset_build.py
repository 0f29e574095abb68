"""A user's own videos and annotations → one eccv16 h5 file (``csta data build``).

The file has the layout of the published eccv16 files (:mod:`csta_lib.data.eccv16`), so this project's reader,
the official CSTA loader and DSNet-style readers read it unchanged. Per video ``video_N`` (in the order the
videos were given; a folder's in name order):

``features``, ``picks``, ``n_frames``, ``n_steps``
    the video decoded once, every 15th decoded frame (``data.eccv16.FRAME_STEP``, picks 0, 15, 30 …) encoded by
    the chosen encoder (:func:`csta_lib.runs.video.encode_video`, the same code ``csta summarize`` runs).
``change_points``, ``n_frame_per_seg``
    KTS shots on the sampled features (:func:`csta_lib.runs.video.video_shots`, with the same
    :class:`~csta_lib.runs.video.ShotSettings` as ``csta summarize``: about one shot per 5 s, none shorter than
    1 s by default), inclusive ``[start, end]`` frame rows covering every frame.
``user_summary``, ``gtscore``, ``gtsummary`` (and ``user_scores``)
    from the annotations (:mod:`csta_lib.data.user_annotations`; times in seconds follow each frame's real
    presentation time, so variable-frame-rate video is handled). Style ``tvsum``: each annotator's summary is
    the 0/1 knapsack over the KTS shots at the budget, as the eccv16 TVSum file was made, ``gtscore`` the mean
    score normalised by the scale, and the raw scores are kept as ``user_scores`` for the rank-correlation
    protocols. Style ``summe``: the selections are the summaries, ``gtscore`` the fraction of annotators who
    selected each sample. ``gtsummary``: the knapsack summary of ``gtscore`` at the samples.
``video_name``
    the video's file name without its folder.

File attributes say that it is a user dataset (``user_dataset``, its name ``dataset``, never ``summe``/``tvsum``),
the annotation ``style``, the ``encoder``, the ``stride``, the ``budget``, the ``shot_settings``, the tool and
its version, and the sha256 of every source file (``sources``, ``annotations``).

Long builds: the videos are checked first (every cheap check before any decoding, nothing created), then each
video's decoded, encoded and segmented form is cached (``cache_dir``, one file per video keyed by the sha256 of
its bytes and the settings, written atomically), so a build that is killed resumes without redoing finished
videos; the output is assembled from the cache only, so a resumed build writes the same bytes as an
uninterrupted one, and it appears atomically (:func:`csta_lib.runs.io.atomic_path`). ``jobs`` videos are encoded
at a time in worker processes.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from csta_lib import __version__
from csta_lib.data.eccv16 import DATASETS, FRAME_STEP, check_dataset_name, load_eccv16, sha256_file
from csta_lib.data.splits import Split, csta_split_text, seeded_folds
from csta_lib.data.user_annotations import AnnotationFile, load_annotations, user_frame_scores
from csta_lib.errors import ConfigError, CstaInputError
from csta_lib.evaluation import SUMMARY_BUDGET, check_budget, generate_summary
from csta_lib.runs.eccv16_writer import (
    VideoFields,
    knapsack_user_summaries,
    scaled_mean_gtscore,
    selected_fraction_gtscore,
    video_fields,
    write_eccv16,
)
from csta_lib.runs.io import atomic_path, check_outputs, write_bytes_atomic
from csta_lib.runs.video import (
    DEFAULT_SHOTS,
    ENCODERS,
    ShotSettings,
    VideoInfo,
    VideoInputError,
    build_encoder,
    encode_video,
    probe_video,
    video_shots,
)

#: Bump when a change alters what a build writes for the same inputs (it is recorded in every built file).
BUILDER_VERSION = "1"
#: Bump when the cached per-video form changes (older cache files are then ignored, never misread).
CACHE_VERSION = "1"
TOOL = "csta data build (csta_lib.runs.dataset_build)"
#: File suffixes taken as videos when ``--videos`` names a folder.
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".wmv",
                            ".flv", ".3gp", ".ogv"})
#: Suffixes of a list file (one video path per line).
LIST_SUFFIXES = frozenset({".txt", ".list", ".lst"})
CACHE_DIR_NAME = ".csta-build-cache"
DEFAULT_ENCODER = "mobilenet_v1_1024"


# ---------------------------------------------------------------------------------------------------------------
# the request: every check before any heavy work


def discover_videos(items: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The video files ``items`` name: one folder (its video files, by name), one list file (a path per line,
    relative to the list file; blank lines and ``#`` comments skipped) or video paths. Raises
    :class:`VideoInputError` for what does not exist or holds no video."""
    paths = [Path(item) for item in items]
    if not paths:
        raise VideoInputError("--videos: give a folder, a list file or video files")
    if len(paths) == 1 and paths[0].is_dir():
        found = sorted((p for p in paths[0].iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES),
                       key=lambda p: p.name)
        if not found:
            raise VideoInputError(f"--videos {paths[0]}: no video files in this folder (suffixes "
                                  f"{', '.join(sorted(VIDEO_SUFFIXES))})")
        return found
    if len(paths) == 1 and paths[0].suffix.lower() in LIST_SUFFIXES and paths[0].is_file():
        return _list_file(paths[0])
    for path in paths:
        if not path.is_file():
            raise VideoInputError(f"--videos: {path} is not a video file" + (" (a folder must be given alone)"
                                                                              if path.is_dir() else ""))
    return paths


def _list_file(path: Path) -> list[Path]:
    videos = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        video = Path(text) if Path(text).is_absolute() else path.parent / text
        if not video.is_file():
            raise VideoInputError(f"{path}: line {number}: {text} is not a video file")
        videos.append(video)
    if not videos:
        raise VideoInputError(f"{path}: the list file names no video")
    return videos


def check_names(videos: Sequence[Path]) -> list[str]:
    """The videos' names (file names without their folders): each must be unique, the annotations' key."""
    names = [p.name for p in videos]
    seen: dict[str, Path] = {}
    for path, name in zip(videos, names, strict=True):
        if name in seen:
            raise VideoInputError(f"two videos have the same name {name!r} ({seen[name]} and {path}); the name "
                                  "without its folder is what the annotations and video_name use, so it must be unique")
        seen[name] = path
    return names


def check_annotation_videos(annotations: AnnotationFile, names: Sequence[str]) -> None:
    """Every annotated video is one of ``names``, and every one of ``names`` is annotated."""
    unknown = [v for v in annotations.videos if v not in names]
    if unknown:
        stems = {Path(n).stem: n for n in names}
        hint = (f" (did you mean {stems[unknown[0]]!r}? use the file name with its suffix)" if unknown[0] in stems
                else "")
        raise CstaInputError(f"{annotations.path}: annotations name video {unknown[0]!r}, which is not among the "
                             f"{len(names)} videos given{hint}")
    missing = [n for n in names if n not in annotations.videos]
    if missing:
        raise CstaInputError(f"{annotations.path}: no annotations for video {missing[0]!r}"
                             + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))


def check_dataset_title(name: str) -> str:
    """A user dataset's name: a valid name that is not a benchmark's."""
    checked = check_dataset_name(name)
    if checked in DATASETS:
        raise ConfigError(f"--name {name!r}: a user dataset may not take a benchmark's name ({', '.join(DATASETS)})")
    return checked


@dataclass(frozen=True, eq=False)
class BuildRequest:
    """A checked build: the videos (with their names, sha256 and container facts), the annotations, the output."""

    videos: tuple[Path, ...]
    names: tuple[str, ...]
    sources: tuple[str, ...]  # sha256 of each video file
    infos: tuple[VideoInfo, ...]
    annotations: AnnotationFile
    annotations_sha256: str
    out: Path
    name: str
    encoder: str
    budget: float
    jobs: int
    cache_dir: Path
    shots: ShotSettings = DEFAULT_SHOTS


def prepare_build(videos: Sequence[str | os.PathLike[str]], annotations: str | os.PathLike[str],
                  out: str | os.PathLike[str], *, name: str | None = None, encoder: str | None = None,
                  style: str | None = None, unit: str | None = None, scale: tuple[float, float] | None = None,
                  budget: float = SUMMARY_BUDGET, jobs: int = 1, cache_dir: str | os.PathLike[str] | None = None,
                  shots: ShotSettings = DEFAULT_SHOTS) -> BuildRequest:
    """Check a build before any heavy work, creating nothing: arguments, the output path (never an input), the
    annotation file, the videos (readable, with a video stream, uniquely named, each annotated)."""
    out = Path(out)
    encoder = encoder or DEFAULT_ENCODER
    if encoder not in ENCODERS:
        raise ConfigError(f"--encoder {encoder!r}: choose one of {', '.join(ENCODERS)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"--jobs must be a whole number >= 1, got {jobs!r}")
    budget = check_budget(budget)
    title = check_dataset_title(name if name is not None else out.stem)
    paths = discover_videos(videos)
    names = check_names(paths)
    check_outputs({out: "--out"}, {**{p: "--videos" for p in paths}, Path(annotations): "--annotations"})
    parsed = load_annotations(annotations, style=style, unit=unit, scale=scale)
    check_annotation_videos(parsed, names)
    infos = tuple(probe_video(p) for p in paths)  # unreadable files and audio-only files fail here
    for path, info in zip(paths, infos, strict=True):
        if 0 < info.declared_frames < FRAME_STEP:
            raise VideoInputError(f"{path} has {info.declared_frames} frames, fewer than one {FRAME_STEP}-frame step")
    return BuildRequest(tuple(paths), tuple(names), tuple(sha256_file(p) for p in paths), infos, parsed,
                        sha256_file(annotations), out, title, encoder, budget, jobs,
                        Path(cache_dir) if cache_dir is not None else out.parent / CACHE_DIR_NAME, shots)


# ---------------------------------------------------------------------------------------------------------------
# one video: decoded, encoded, segmented (the cached part)


@dataclass(frozen=True, eq=False)
class EncodedSource:
    """What a video contributes before its annotations: its features, samples, timing and KTS shots."""

    features: np.ndarray  # (T, D) float32
    picks: np.ndarray  # (T,) int64
    frame_starts: np.ndarray  # (n_frames,) float64 seconds from the first frame
    duration: float  # seconds: the last frame's end minus the first frame's start
    shots: np.ndarray  # (S, 2) int64 inclusive frame rows covering every frame
    decode_errors: int
    encoder: dict[str, Any] = field(default_factory=dict)  # EncoderInfo.as_dict() of what made the features

    @property
    def n_frames(self) -> int:
        return len(self.frame_starts)


def source_settings(encoder: str, shots: ShotSettings = DEFAULT_SHOTS) -> dict[str, Any]:
    """Everything besides a video's bytes that its cached form depends on."""
    return {"cache": CACHE_VERSION, "builder": BUILDER_VERSION, "encoder": encoder, "stride": FRAME_STEP,
            "sampling": "frames", "shots": shots.as_dict()}


def cache_file(cache_dir: Path, sha256: str, encoder: str, shots: ShotSettings = DEFAULT_SHOTS) -> Path:
    """Where the cached form of the video with this sha256 lives, for these settings."""
    settings = hashlib.sha256(json.dumps(source_settings(encoder, shots), sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / f"{sha256[:32]}-{settings}.npz"


def encode_source(path: Path, encoder: Any, shots: ShotSettings = DEFAULT_SHOTS) -> EncodedSource:
    """Decode, sample and encode one video (:func:`~csta_lib.runs.video.encode_video`) and find its KTS shots
    (:func:`~csta_lib.runs.video.video_shots`)."""
    encoded = encode_video(path, encoder, stride=FRAME_STEP)
    sampled = encoded.sampled
    if sampled.n_frames < FRAME_STEP:
        raise VideoInputError(f"{path} has {sampled.n_frames} decodable frames, fewer than one {FRAME_STEP}-frame "
                              "step")
    shots = video_shots(encoded, shots)
    origin = float(sampled.frame_times[0])
    return EncodedSource(np.asarray(encoded.features, np.float32), np.asarray(sampled.picks, np.int64),
                         np.asarray(sampled.frame_times, np.float64) - origin, sampled.duration_s,
                         np.asarray(shots, np.int64), int(sampled.decode_errors), encoded.encoder.as_dict())


def write_cache(path: Path, source: EncodedSource, sha256: str) -> None:
    """Write a video's cached form atomically (a killed build leaves either the whole file or none)."""
    meta = json.dumps({"sha256": sha256, "encoder": source.encoder, "decode_errors": source.decode_errors,
                       "duration": source.duration})
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, features=source.features, picks=source.picks, frame_starts=source.frame_starts,
                 shots=source.shots, meta=np.array(meta))


def read_cache(path: Path, sha256: str) -> EncodedSource | None:
    """The cached form at ``path`` if it is there, readable and of this video; else None (it is rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            if meta.get("sha256") != sha256:
                return None
            return EncodedSource(npz["features"], npz["picks"], npz["frame_starts"], float(meta["duration"]),
                                 npz["shots"], int(meta["decode_errors"]), dict(meta["encoder"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


# worker processes: one encoder each, built once
_WORKER_ENCODER: Any = None


def _init_worker(encoder: str, threads: int) -> None:
    global _WORKER_ENCODER
    _WORKER_ENCODER = build_encoder(encoder, num_threads=threads)


def _encode_into_cache(path: Path, sha256: str, target: Path, shots: ShotSettings, encoder: Any = None) -> int:
    """Encode one video into its cache file; the number of frames (a worker's task)."""
    source = encode_source(path, encoder if encoder is not None else _WORKER_ENCODER, shots)
    write_cache(target, source, sha256)
    return source.n_frames


# ---------------------------------------------------------------------------------------------------------------
# one video's eccv16 fields


def annotated_fields(key: str, name: str, source: EncodedSource, annotations: AnnotationFile,
                     budget: float) -> VideoFields:
    """The eccv16 fields of one video from its encoded form and its annotations (the module docstring)."""
    scores = user_frame_scores(annotations, name, source.frame_starts, source.duration)
    n_frames, picks, shots = source.n_frames, source.picks, source.shots
    if annotations.style == "tvsum":
        user_summary = knapsack_user_summaries(scores, shots, n_frames, budget)
        gtscore = scaled_mean_gtscore(scores, picks, *annotations.scale)
        user_scores = scores
    else:
        user_summary = scores.astype(np.uint8)
        gtscore = selected_fraction_gtscore(user_summary, picks)
        user_scores = None
    gtsummary = generate_summary(gtscore, shots, n_frames, picks, budget)[picks]
    return video_fields(key, gtscore, user_summary, shots, n_frames, picks, name, gtsummary=gtsummary,
                        user_scores=user_scores)


# ---------------------------------------------------------------------------------------------------------------
# the build


def file_attributes(request: BuildRequest, encoder: dict[str, Any]) -> dict[str, Any]:
    """The built file's attributes, in the order they are written."""
    ann = request.annotations
    kind = encoder.get("feature_kind", request.encoder)
    return {
        "user_dataset": True,
        "dataset": request.name,
        "style": ann.style,
        "label": f"user dataset {request.name} ({kind} features)",
        "encoder": request.encoder,
        "feature_kind": kind,
        "encoder_weights": encoder.get("weights") or "",
        "stride": FRAME_STEP,
        "sampling": "frames",
        "budget": request.budget,
        "shot_settings": json.dumps(request.shots.as_dict()),
        "time_unit": ann.unit,
        "scale": json.dumps(list(ann.scale)),
        "tool": TOOL,
        "tool_version": f"csta_lib {__version__}, builder {BUILDER_VERSION}",
        "sources": json.dumps(dict(zip(request.names, request.sources, strict=True))),
        "annotations": json.dumps({"file": ann.path.name, "sha256": request.annotations_sha256}),
        "note": "built by `csta data build` from a user's own videos and annotations: not the paper's data and "
                "not a surrogate",
    }


class _Bar:
    """The build's progress bar on stderr: frames (estimated from the containers) with videos done and ETA."""

    def __init__(self, enabled: bool, total_frames: int | None, n_videos: int) -> None:
        self._bar = None
        self._n_videos, self._done = n_videos, 0
        if enabled:
            from tqdm import tqdm  # only when shown

            self._bar = tqdm(total=total_frames, unit="frame", file=sys.stderr, dynamic_ncols=True,
                             desc=self._desc(), mininterval=0.2, leave=False)

    def _desc(self) -> str:
        return f"build: {self._done}/{self._n_videos} videos"

    def video_done(self, frames: int) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.set_description(self._desc(), refresh=False)
            self._bar.update(frames)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _estimated_frames(info: VideoInfo) -> int:
    if info.declared_frames:
        return int(info.declared_frames)
    return round(info.duration_s * info.fps) if info.duration_s else 0


def encode_all(request: BuildRequest, *, progress: bool = False,
               on_video: Callable[[str], None] | None = None) -> tuple[list[Path], int]:
    """Make sure every video has its cached form; return the cache files (in video order) and how many were reused.

    ``on_video(name)`` is called after each video is encoded (tests use it to stop a build midway)."""
    targets = [cache_file(request.cache_dir, sha, request.encoder, request.shots) for sha in request.sources]
    todo = [i for i, (target, sha) in enumerate(zip(targets, request.sources, strict=True))
            if read_cache(target, sha) is None]
    estimates = [_estimated_frames(info) for info in request.infos]
    bar = _Bar(progress, sum(estimates) or None, len(targets))
    for i in range(len(targets)):
        if i not in todo:
            bar.video_done(estimates[i])
    try:
        if request.jobs == 1 or len(todo) <= 1:
            encoder = build_encoder(request.encoder) if todo else None
            for i in todo:
                _encode_into_cache(request.videos[i], request.sources[i], targets[i], request.shots, encoder)
                bar.video_done(estimates[i])
                if on_video is not None:
                    on_video(request.names[i])
        else:
            threads = max(1, (os.cpu_count() or 1) // request.jobs)
            # spawn: the parent may hold decoder and encoder threads, which fork does not copy safely
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(max_workers=min(request.jobs, len(todo)), mp_context=context,
                                                        initializer=_init_worker,
                                                        initargs=(request.encoder, threads)) as pool:
                futures = {pool.submit(_encode_into_cache, request.videos[i], request.sources[i], targets[i],
                                       request.shots): i for i in todo}
                for future in concurrent.futures.as_completed(futures):
                    future.result()  # re-raises the worker's error (a VideoInputError names the file)
                    bar.video_done(estimates[futures[future]])
                    if on_video is not None:
                        on_video(request.names[futures[future]])
    finally:
        bar.close()
    return targets, len(targets) - len(todo)


@dataclass(frozen=True)
class BuildResult:
    """What a build wrote: the file and the facts ``csta data build`` prints (JSON-able ``summary``)."""

    out: Path
    summary: dict[str, Any]
    videos: tuple[Path, ...]  # the source videos, in the order of the file's keys (video_1 ...)


def _sources(request: BuildRequest, targets: Sequence[Path]) -> Iterator[EncodedSource]:
    for target, sha, path in zip(targets, request.sources, request.videos, strict=True):
        source = read_cache(target, sha)
        if source is None:  # removed between encoding and assembling: a concurrent cleanup
            raise CstaInputError(f"the cached form of {path} ({target}) disappeared during the build; run it again")
        yield source


def build_dataset(videos: Sequence[str | os.PathLike[str]], annotations: str | os.PathLike[str],
                  out: str | os.PathLike[str], *, name: str | None = None, encoder: str | None = None,
                  style: str | None = None, unit: str | None = None, scale: tuple[float, float] | None = None,
                  budget: float = SUMMARY_BUDGET, jobs: int = 1, cache_dir: str | os.PathLike[str] | None = None,
                  shots: ShotSettings = DEFAULT_SHOTS, progress: bool = False,
                  on_video: Callable[[str], None] | None = None) -> BuildResult:
    """Build the eccv16 file ``out`` from ``videos`` and ``annotations`` (see the module docstring).

    ``name``: the dataset's name (default: ``out``'s stem); ``encoder``: ``mobilenet_v1_1024`` (default) or
    ``googlenet``; ``style``/``unit``/``scale``: of the annotations (:func:`~csta_lib.data.user_annotations.
    load_annotations`); ``budget``: the summary length of the TVSum-style user summaries and of ``gtsummary``;
    ``shots``: how KTS cuts the videos (the same settings as ``csta summarize``'s).
    Bad input raises :class:`~csta_lib.errors.CstaInputError` naming the file, video or row; ``out`` is then
    absent (or unchanged).
    """
    start = time.perf_counter()
    request = prepare_build(videos, annotations, out, name=name, encoder=encoder, style=style, unit=unit,
                            scale=scale, budget=budget, jobs=jobs, cache_dir=cache_dir, shots=shots)
    targets, reused = encode_all(request, progress=progress, on_video=on_video)
    sources = list(_sources(request, targets))
    fields = [annotated_fields(f"video_{k}", video, source, request.annotations, request.budget)
              for k, (video, source) in enumerate(zip(request.names, sources, strict=True), 1)]
    attrs = file_attributes(request, sources[0].encoder)
    with atomic_path(request.out) as tmp:
        write_eccv16(tmp, attrs, zip(fields, (s.features for s in sources), strict=True))
    data = load_eccv16(request.out)  # what every reader will see: the project's own checks, once
    seconds = time.perf_counter() - start
    duration = float(sum(s.duration for s in sources))
    warnings = [f"{v} has a single annotator: its F1 and rank correlations compare with one person's choices"
                for v in request.annotations.single_annotator_videos()]
    warnings += [f"{p}: {s.decode_errors} corrupt packet(s) skipped while decoding"
                 for p, s in zip(request.videos, sources, strict=True) if s.decode_errors]
    warnings += [f"{f.video_name}: {int((~f.user_summary.any(axis=1)).sum())} of {f.user_summary.shape[0]} user "
                 f"summaries are empty (no shot of its {len(f.change_points)} fits {request.budget:.0%} of the video, "
                 "or nothing was selected): F1 against them is 0; shorter shots (--max-shot-seconds, "
                 "--min-shot-seconds) or a larger --budget help"
                 for f in fields if not f.user_summary.any(axis=1).all()]
    summary = {
        "out": str(request.out), "dataset": request.name, "videos": len(fields), "encoder": request.encoder,
        "feature_kind": attrs["feature_kind"], "stride": FRAME_STEP, "style": request.annotations.style,
        "time_unit": request.annotations.unit, "scale": list(request.annotations.scale),
        "budget": request.budget, "shot_settings": request.shots.as_dict(), "sha256": data.sha256,
        "per_video": [{"key": f.key, "video_name": f.video_name, "n_frames": f.n_frames, "n_steps": len(f.picks),
                       "shots": len(f.change_points), "annotators": int(f.user_summary.shape[0]),
                       "duration_s": round(s.duration, 3)} for f, s in zip(fields, sources, strict=True)],
        "duration_s": round(duration, 3), "seconds": round(seconds, 3),
        "realtime_factor": round(duration / seconds, 2) if seconds > 0 else None,
        "cache": {"dir": str(request.cache_dir), "reused": reused, "encoded": len(fields) - reused},
        "warnings": warnings,
    }
    return BuildResult(request.out, summary, tuple(request.videos))


def split_dataset(data_file: str | os.PathLike[str], out: str | os.PathLike[str], folds: int, seed: int
                  ) -> list[Split]:
    """Write ``folds`` seeded, disjoint folds of the videos of the eccv16 file ``data_file`` to ``out`` in the
    official split-file format (what ``--splits-file`` reads), atomically; return them."""
    check_outputs({out: "--out"}, {data_file: "DATA.h5"})
    data = load_eccv16(data_file)
    chosen = seeded_folds(data.dataset, data.keys(), folds, seed)
    write_bytes_atomic(out, csta_split_text(data.dataset, chosen).encode())
    return chosen


__all__ = ["BUILDER_VERSION", "BuildRequest", "BuildResult", "EncodedSource", "annotated_fields", "build_dataset",
           "cache_file", "check_annotation_videos", "check_names", "discover_videos", "encode_all", "encode_source",
           "file_attributes", "prepare_build", "read_cache", "source_settings", "split_dataset", "write_cache"]
