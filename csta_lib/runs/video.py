"""Summarise a real video: decode and sample with PyAV, encode frames, KTS shots, CSTA scores,
knapsack, and write the summary video with a JSON sidecar (the book's method page,
sections method-input, method-kts and method-summary).

How this differs from the official custom-video path (video_helper.py), and why:

- **Time.** Every decoded frame keeps its real presentation time (``pts x time_base``) and its end
  (the next frame's time; the container's duration of the last frame). Phone videos have a *variable*
  frame rate (VFR), so nothing assumes ``n_frames / fps``: shot times, the sidecar's ``duration_s``,
  the written summary's frame timing and the audio cuts all follow these timestamps. Only a stream whose
  timestamps are missing or not increasing is re-timed at its constant nominal rate (recorded in the
  sidecar as ``timestamps: "constant-rate"``).
- **Sampling.** By default every ``stride``-th decoded frame (default 15, the official ``--sample_rate``)
  is converted and resized to 224x224 while decoding; the other frames are decoded (H.264 needs them as
  references) but never converted, and no frame is kept beyond its sample. This stride is in **frames**
  whatever the frame rate, as in the official code and the eccv16 files (15 frames: 0.5 s at 30 fps, i.e.
  2 fps; 0.6 s at 25 fps; 0.25 s at 60 fps); on a VFR video the samples are therefore denser in time where
  the frame rate is higher. ``sample_fps`` samples by **time** instead: one sample every
  ``round(fps / sample_fps) / fps`` seconds of presentation time (the first frame at or after each
  instant; ``fps`` = the stream's nominal rate), which on a constant-rate video is exactly every
  ``round(fps / sample_fps)``-th frame and on a VFR video keeps the steps even in time (``--sample-fps 2``
  is the official 2-fps step). The sidecar records the mode (``sampling``), the stride, the interval and
  the time of every sample (``pick_times``).
- **Features.** Only the sampled frames are encoded (the official code runs GoogLeNet on every frame
  and then keeps every 15th), in batches; see :mod:`csta_lib.runs.encoders`.
- **Shots.** KTS runs on the sampled features (the official code runs it on every frame: O(n²)
  memory, O(n³) time), on L2-normalised features so that the linear kernel is a cosine similarity on the
  scale its ``vmax=1`` penalty assumes, with the penalty of the full-length video (``desc_rate`` =
  stride, as if every frame had been segmented; on the samples alone the per-cut penalty is ``stride``
  times larger and short videos get no cut at all). Change points are mapped back to the frames of the
  samples (``picks``), and the shots cover every frame of the video; their times (``shot_times``) are the
  frames' real presentation times.
- **Scores and selection.** The checkpoint's CSTA model scores the (unnormalised) step features, and the
  official summary generation (method page, method-summary: scores spread over frames, mean score per shot, 0/1
  knapsack at ``floor(budget * n_frames)`` frames) picks the shots. On a VFR video a shot's knapsack
  weight is its real duration in units of the mean frame duration (on a constant-rate video that is its
  frame count, the official weight), so that the budget is a fraction of the video's *time*.
- **Corrupt data.** A packet the decoder rejects is skipped and counted; decoding goes on with the next
  one. Frame indices count the frames that could be decoded; the sidecar records ``decode_errors`` and a
  warning is printed. Both decoding passes skip the same packets, so indices stay consistent.
- **Writing.** The selected shots are re-encoded to H.264 (libx264, ``veryfast`` preset by default,
  CRF 23, yuv420p) at the input's size. Each written frame keeps its real duration: its timestamp is its
  source time relative to the start of its run of selected frames, runs concatenated one after the
  other, in the source's time base. The writer seeks to the key frame before each run rather than
  decoding the whole video again (frames are found by their timestamps from the sampling pass). Audio,
  when present, is cut at the same real instants (silence where the source has none, so sound and
  picture stay in step) and encoded to AAC (more than two channels downmixed to stereo). Every output
  (video, sidecar, PNGs) is written to a temporary file and renamed only when all succeeded; every output
  path is checked before any work (not an input, not a directory, a valid name in a writable folder).
- **A budget smaller than every shot.** If no shot fits, that is an error asking for a larger budget,
  not an empty video. Videos of fewer than 2 decodable frames are errors; short videos (fewer steps
  than the GoogLeNet trunk needs) are handled by the model itself (see :mod:`csta_lib.model`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.audio.fifo import AudioFifo

from csta_lib import kts
from csta_lib.data.eccv16 import FRAME_STEP, SURROGATE_LABEL
from csta_lib.errors import CstaInputError
from csta_lib.evaluation import SUMMARY_BUDGET, check_budget, frame_scores, generate_summary, shot_scores
from csta_lib.runs.encoders import (INPUT_SIZE, EncoderInfo, FrameEncoder, build_encoder, encode_batches,
                                    feature_mismatch)
from csta_lib.runs.io import atomic_path, check_outputs

ENCODE_BATCH = 32
THUMB_WIDTH = 256
SIDECAR_FORMAT = "csta-summary/1"
# Output containers by suffix; the temporary file has no meaningful suffix, so the format is explicit.
OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
# A fast x264 preset: re-encoding is one of the largest stages; CRF 23 is x264's default quality.
X264_PRESET = "veryfast"
X264_CRF = "23"


class VideoInputError(CstaInputError):
    """A video that cannot be summarised: missing, not a video, no video stream, too short, corrupt."""


# --------------------------------------------------------------------------------------------------
# progress


class _Progress:
    """A tqdm bar on stderr per stage (or nothing); ``total`` may be unknown."""

    def __init__(self, enabled: bool, desc: str, total: int | None, unit: str = "frame") -> None:
        self._bar = None
        if enabled:
            # Imported only when bars are shown: --quiet and library callers skip its start-up cost.
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                             dynamic_ncols=True, mininterval=0.2)

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# --------------------------------------------------------------------------------------------------
# opening and probing


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video (before decoding)."""

    path: str
    width: int
    height: int
    frame_rate: Fraction  # exact, from the stream (average, else guessed, else 25)
    declared_frames: int  # the container's frame count; 0 when it does not say (e.g. Matroska)
    duration_s: float | None
    codec: str
    has_audio: bool

    @property
    def fps(self) -> float:
        return float(self.frame_rate)


def _open(path: Path) -> Any:
    """Open ``path`` with PyAV, turning every way it can fail into a :class:`VideoInputError`."""
    path = Path(path)
    if not path.exists():
        raise VideoInputError(f"video file {path} does not exist")
    if path.is_dir():
        raise VideoInputError(f"{path} is a directory, not a video file")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as exc:
        raise VideoInputError(f"{path} is not a readable video file: {exc}") from exc


def _video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoInputError(f"{path} has no video stream (streams: {', '.join(kinds)})")
    return container.streams.video[0]


def _frame_rate(stream: Any) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return Fraction(25)  # a stream that states no rate at all: FFmpeg's own fallback


def probe_video(path: str | Path) -> VideoInfo:
    """Container-level facts about the video at ``path`` (raises :class:`VideoInputError`)."""
    path = Path(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        ctx = stream.codec_context
        duration = container.duration / 1e6 if container.duration else None
        return VideoInfo(str(path), int(ctx.width), int(ctx.height), _frame_rate(stream),
                         int(stream.frames or 0), duration, ctx.name, bool(container.streams.audio))


def stride_for(fps: float, sample_fps: float | None = None, stride: int = FRAME_STEP) -> int:
    """The sampling stride in frames: ``stride`` as given, or ``round(fps / sample_fps)`` (at least 1)."""
    if sample_fps is None:
        if not (isinstance(stride, (int, np.integer)) and stride >= 1):
            raise CstaInputError(f"stride must be a whole number of frames >= 1, got {stride!r}")
        return int(stride)
    if not (isinstance(sample_fps, (int, float)) and math.isfinite(sample_fps) and sample_fps > 0):
        raise CstaInputError(f"sample_fps must be a positive number, got {sample_fps!r}")
    return max(1, round(fps / sample_fps))


# --------------------------------------------------------------------------------------------------
# decoding


def _decoded_frames(container: Any, stream: Any, errors: list[int]) -> Iterator[Any]:
    """Frames of ``stream`` in presentation order; packets the decoder rejects are skipped and counted."""
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            errors[0] += 1
            continue
        yield from frames


@dataclass(frozen=True)
class SampledVideo:
    """The sampled frames of a video and the facts needed to cut it later. Frames only at the picks."""

    info: VideoInfo
    stride: int
    frames: np.ndarray  # (T, size, size, 3) uint8, frame k = frame picks[k] of the video
    picks: np.ndarray  # (T,) int64 frame indices: 0, stride, 2*stride, ... (or by time, see interval_s)
    n_frames: int  # frames decoded (the video's length)
    frame_times: np.ndarray  # (n_frames,) float64 presentation time in seconds of every frame
    decode_errors: int  # packets skipped because the decoder rejected them
    frame_pts: np.ndarray  # (n_frames,) int64 stream timestamps, -1 where the decoder gave none
    keyframes: np.ndarray  # (K,) int64 indices of the key frames
    frame_ends: np.ndarray  # (n_frames,) float64 end of every frame in seconds (the next one's start)
    time_base: Fraction  # unit of the timestamps above (the stream's, or 1/90000 when re-timed)
    source_timestamps: bool  # False: the stream's timestamps were unusable and frames were re-timed
    interval_s: float | None = None  # sampling by time: one sample per interval_s seconds; None: by stride

    @property
    def cut_plan(self) -> CutPlan:
        """What :func:`write_summary_video` needs to find frames again."""
        return CutPlan(self.frame_times, self.frame_ends, self.frame_pts, self.keyframes, self.time_base,
                       seekable=self.decode_errors == 0)

    @property
    def duration_s(self) -> float:
        """The video's real duration: end of the last frame minus start of the first."""
        return float(self.frame_ends[-1] - self.frame_times[0])

    @property
    def variable_frame_rate(self) -> bool:
        return is_variable_frame_rate(self.frame_times, self.time_base)

    @property
    def pick_times(self) -> np.ndarray:
        """Seconds from the first frame of every sample."""
        return self.frame_times[self.picks] - self.frame_times[0]


RETIMED_TIME_BASE = Fraction(1, 90000)


def _frame_time(frame: Any, index: int, fps: float, previous: float | None) -> float:
    if frame.time is not None:
        return float(frame.time)
    return (previous + 1.0 / fps) if previous is not None else index / fps


def _frame_duration(frame: Any) -> float:
    """The decoder's duration of ``frame`` in seconds, NaN when it gives none."""
    duration, base = getattr(frame, "duration", None), frame.time_base
    if not duration or base is None or duration <= 0:
        return math.nan
    return float(duration * base)


def frame_timing(times: Sequence[float], last_duration: float, fps: float,
                 time_base: Fraction | None) -> tuple[np.ndarray, np.ndarray, Fraction, bool]:
    """``(starts, ends, time_base, from_source)`` of every decoded frame, in seconds.

    ``times`` are the decoded frames' presentation times (NaN where the decoder gave none) and
    ``last_duration`` the last frame's duration in seconds (NaN if unknown: the previous interval is
    used). A frame ends where the next one starts. When the times are missing or not strictly increasing
    the frames are re-timed at the constant nominal rate ``fps`` from the first known time, and
    ``from_source`` is False.
    """
    t = np.asarray(times, np.float64)
    if len(t) >= 1 and np.isfinite(t).all() and bool((np.diff(t) > 0).all()) and time_base:
        if not (math.isfinite(last_duration) and last_duration > 0):
            last_duration = float(t[-1] - t[-2]) if len(t) > 1 else 1.0 / fps
        return t, np.append(t[1:], t[-1] + last_duration), Fraction(time_base), True
    known = t[np.isfinite(t)]
    origin = float(known[0]) if len(known) else 0.0
    starts = origin + np.arange(len(t)) / fps
    return starts, starts + 1.0 / fps, RETIMED_TIME_BASE, False


def is_variable_frame_rate(times: np.ndarray, time_base: Fraction | None = None) -> bool:
    """Whether frame intervals vary by more than timestamp rounding (1.5 ticks) plus 1 % of the median."""
    intervals = np.diff(np.asarray(times, np.float64))
    if len(intervals) < 2:
        return False
    median = float(np.median(intervals))
    tick = float(time_base) if time_base else 0.0
    return bool(np.abs(intervals - median).max() > 1.5 * tick + 0.01 * median)


def sample_frames(path: str | Path, stride: int = FRAME_STEP, size: int = 224,
                  progress: bool = False, interval_s: float | None = None) -> SampledVideo:
    """Decode ``path`` once and keep the sampled frames resized to ``size`` x ``size`` RGB.

    Samples: every ``stride``-th decoded frame, or with ``interval_s`` the first frame at or after each
    multiple of ``interval_s`` seconds of presentation time from the first frame (1 % of the interval of
    tolerance for rounded timestamps, so that on a constant-rate video ``interval_s = k / fps`` picks
    exactly every k-th frame).
    Frames are decoded in presentation order and their timestamps recorded (see :func:`frame_timing`);
    only the sampled ones are converted (area interpolation, which averages like an anti-aliasing filter
    when shrinking). Raises :class:`VideoInputError` for a file that is missing, not a video, has no
    video stream, or yields fewer than 2 frames.
    """
    path = Path(path)
    info = probe_video(path)
    stride = stride_for(info.fps, stride=stride)
    if interval_s is not None and not (math.isfinite(interval_s) and interval_s > 0):
        raise CstaInputError(f"sampling interval must be a positive number of seconds, got {interval_s!r}")
    tolerance = 0.0 if interval_s is None else 0.01 * interval_s
    samples: list[np.ndarray] = []
    picks: list[int] = []
    raw_times: list[float] = []  # the decoder's times (NaN where none): the recorded timing
    pts: list[int] = []
    keyframes: list[int] = []
    errors = [0]
    last_frame, time_base = None, None
    bar = _Progress(progress, "decode", info.declared_frames or _estimate_frames(info))
    try:
        with _open(path) as container:
            stream = _video_stream(container, path)
            stream.thread_type = "AUTO"
            time_base = stream.time_base
            previous = None
            origin = due = 0.0
            for index, frame in enumerate(_decoded_frames(container, stream, errors)):
                previous = _frame_time(frame, index, info.fps, previous)
                raw_times.append(math.nan if frame.time is None else float(frame.time))
                last_frame = frame
                pts.append(-1 if frame.pts is None else int(frame.pts))
                if frame.key_frame:
                    keyframes.append(index)
                if index == 0:
                    origin = previous
                if interval_s is None:
                    sampled = index % stride == 0
                else:  # by time: the first frame at (or within the tolerance before) the next due instant
                    elapsed = previous - origin
                    sampled = index == 0 or elapsed >= due - tolerance
                    if sampled:
                        due = (math.floor((elapsed + tolerance) / interval_s) + 1) * interval_s
                if sampled:
                    picks.append(index)
                    samples.append(frame.to_ndarray(width=size, height=size, format="rgb24",
                                                    interpolation="AREA"))
                bar.update()
    except av.error.FFmpegError as exc:  # a demuxer failure after the header: the file is broken
        raise VideoInputError(f"{path}: decoding failed after {len(raw_times)} frames: {exc}") from exc
    finally:
        bar.close()
    n_frames = len(raw_times)
    if n_frames < 2:
        detail = f" ({errors[0]} corrupt packets skipped)" if errors[0] else ""
        raise VideoInputError(f"{path} has {n_frames} decodable video frame(s){detail}; a summary needs at least 2")
    last_duration = _frame_duration(last_frame) if last_frame is not None else math.nan
    starts, ends, base, from_source = frame_timing(raw_times, last_duration, info.fps, time_base)
    frames = np.stack(samples) if samples else np.zeros((0, size, size, 3), np.uint8)
    return SampledVideo(info, stride, frames, np.asarray(picks, np.int64), n_frames, starts, errors[0],
                        np.asarray(pts, np.int64), np.asarray(keyframes, np.int64), ends, base, from_source,
                        interval_s)


def _estimate_frames(info: VideoInfo) -> int | None:
    return round(info.duration_s * info.fps) if info.duration_s else None


# --------------------------------------------------------------------------------------------------
# shots, scores, selection


def shots_from_features(features: np.ndarray, picks: np.ndarray, n_frames: int, stride: int) -> np.ndarray:
    """KTS shots (S, 2): inclusive frame ranges covering ``0 .. n_frames-1``, from the sampled frames' features.

    KTS sees the L2-normalised features (a cosine kernel, on the scale its ``vmax=1`` penalty assumes,
    as DSNet and the official helper normalise theirs), with at most one boundary per step (DSNet's
    custom-video setting) and the penalty of a video of ``n_frames`` frames sampled every ``stride``
    frames. A change point at step ``c`` starts a shot at frame ``picks[c]``.
    """
    features = np.asarray(features, np.float64)
    picks = np.asarray(picks, np.int64)
    if len(picks) != len(features):
        raise ValueError(f"{len(picks)} picks for {len(features)} step features")
    if len(features) < 2:
        return np.array([[0, n_frames - 1]], np.int64)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = features / np.where(norms > 0, norms, 1.0)
    # desc_rate: the penalty counts the video's frames, not its samples, as if KTS ran on every frame
    # (the official custom-video path does; on n/stride samples the per-cut penalty would be stride
    # times larger and short videos would get no cut at all).
    step_cps = kts.change_points(unit, len(features) - 1, vmax=1.0, desc_rate=stride)
    starts = picks[np.asarray(step_cps, np.int64)]  # the frames where the shots after the first start
    return kts.shots_from_change_points(starts, n_frames, frame_step=1).astype(np.int64)


def score_steps(model: Any, features: np.ndarray) -> np.ndarray:
    """CSTA importance scores (T,) of the step features (any T >= 1: the model pads short videos itself)."""
    # torch is first imported by the model's loading thread (see _load_checkpoint); importing it with this
    # module would hold up decoding at start-up.
    import torch

    with torch.inference_mode():
        scores = model(torch.from_numpy(np.ascontiguousarray(features, np.float32)))
    scores = scores.detach().float().reshape(-1).numpy()
    if scores.shape != (len(features),):
        raise RuntimeError(f"model returned scores of shape {scores.shape} for {len(features)} steps")
    if not np.isfinite(scores).all():  # a checkpoint with NaN/inf weights: the user's file, not a bug
        raise CstaInputError("the checkpoint's model gives non-finite scores (NaN or inf) on this video: "
                             "its weights are not usable")
    return scores.astype(np.float64)


def shot_weights(shots: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Knapsack weights (S,) of inclusive frame ``shots``: real duration in mean frame durations (>= 1).

    On a constant-rate video this is each shot's frame count; on a variable-rate one it makes the
    budget a fraction of the video's time rather than of its frames.
    """
    shots = np.asarray(shots, np.int64).reshape(-1, 2)
    mean = (float(ends[-1]) - float(starts[0])) / len(starts)
    durations = ends[shots[:, 1]] - starts[shots[:, 0]]
    return np.maximum(1, np.round(durations / mean)).astype(np.int64)


def select_shots(scores: np.ndarray, shots: np.ndarray, sampled: SampledVideo,
                 budget: float) -> tuple[np.ndarray, np.ndarray]:
    """``(shot scores (S,), kept (S,) bool)``: the official summary generation at ``budget`` (method page,
    method-summary). On a variable-rate video the knapsack weighs each shot by its real duration
    (:func:`shot_weights`), so that the budget is a fraction of the video's time. Keeping no shot is an error.
    """
    n_frames, picks = sampled.n_frames, sampled.picks
    values = shot_scores(frame_scores(scores, picks, n_frames), shots)
    weights = shot_weights(shots, sampled.frame_times, sampled.frame_ends) if sampled.variable_frame_rate else None
    kept = generate_summary(scores, shots, n_frames, picks, budget, weights=weights)[shots[:, 0]].astype(bool)
    if not kept.any():
        raise CstaInputError(_no_shot_fits(budget, shots, sampled, weights))
    return values, kept


def _no_shot_fits(budget: float, shots: np.ndarray, sampled: SampledVideo, weights: np.ndarray | None) -> str:
    """The error message when the knapsack keeps nothing: the budget and the shortest shot."""
    n = sampled.n_frames
    lengths = shots[:, 1] - shots[:, 0] + 1 if weights is None else weights
    zero = " (or every score is 0)" if int(lengths.min()) <= int(n * budget) else ""
    if weights is None:
        size = f"{budget:.0%} of {n} frames is {int(n * budget)} frames, the shortest of the {len(shots)} shots " \
               f"has {int(lengths.min())} frames"
    else:
        durations = sampled.frame_ends[shots[:, 1]] - sampled.frame_times[shots[:, 0]]
        size = f"{budget:.0%} of {sampled.duration_s:.1f} s is {budget * sampled.duration_s:.2f} s, the shortest " \
               f"of the {len(shots)} shots lasts {float(durations.min()):.2f} s"
    return f"no shot fits the budget: {size}{zero}; raise --budget"


# --------------------------------------------------------------------------------------------------
# writing the summary video


@dataclass(frozen=True)
class CutPlan:
    """Where every frame of a video is, from the sampling pass, so that the writing pass can seek."""

    frame_times: np.ndarray  # (n_frames,) seconds each frame starts
    frame_ends: np.ndarray  # (n_frames,) seconds each frame ends (the next one's start)
    frame_pts: np.ndarray  # (n_frames,) stream timestamps, -1 where the decoder gave none
    keyframes: np.ndarray  # sorted indices of key frames
    time_base: Fraction  # unit of the written timestamps
    seekable: bool  # False: decode sequentially (e.g. after corrupt packets, to skip the same ones)

    @property
    def n_frames(self) -> int:
        return len(self.frame_times)

    def can_seek(self) -> bool:
        pts = self.frame_pts
        return (self.seekable and len(pts) == self.n_frames and len(self.keyframes) > 0 and bool((pts >= 0).all())
                and bool((np.diff(pts) > 0).all()))

    def ticks(self) -> tuple[np.ndarray, np.ndarray]:
        """``(starts, ends)``: every frame's start and end as integers in ``time_base``."""
        base = float(self.time_base)
        starts = np.round(np.asarray(self.frame_times, np.float64) / base).astype(np.int64)
        ends = np.round(np.asarray(self.frame_ends, np.float64) / base).astype(np.int64)
        return starts, np.maximum(ends, starts + 1)


@dataclass(frozen=True)
class WrittenSummary:
    """What :func:`write_summary_video` wrote."""

    n_frames: int  # video frames written
    audio_kept: bool
    thumbnails: tuple[np.ndarray, ...]  # RGB middle frame of each selected shot, THUMB_WIDTH wide
    duration_s: float = 0.0  # the written video's duration: the sum of its frames' real durations


def _output_format(path: Path) -> str:
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise CstaInputError(f"output {path}: unsupported extension {path.suffix!r}; "
                             f"use one of {', '.join(OUTPUT_FORMATS)}")
    return fmt


def _runs(shots: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive shots merged into maximal runs of consecutive frames, in order."""
    runs: list[tuple[int, int]] = []
    for s, e in sorted((int(a), int(b)) for a, b in shots):
        if runs and s <= runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], max(e, runs[-1][1]))
        else:
            runs.append((s, e))
    return runs


class _FrameReader:
    """Yields the frames of inclusive index ranges in increasing order, seeking over long gaps.

    Frames are identified by their timestamp when the plan allows seeking (a seek lands on the key frame
    before the wanted one, and decoding goes on from there); otherwise by counting, decoding everything
    from the start and skipping the same corrupt packets as the sampling pass.
    """

    def __init__(self, container: Any, stream: Any, plan: CutPlan) -> None:
        self._container, self._stream, self._plan = container, stream, plan
        self._seek = plan.can_seek()
        self._index_of = {int(p): i for i, p in enumerate(plan.frame_pts)} if self._seek else {}
        self._frames: Iterator[Any] = iter(())
        self._next = 0  # index of the next frame the current decoder position yields
        self._pending: tuple[int, Any] | None = None
        self._restart(None)

    def _restart(self, key: int | None) -> None:
        if key is not None:
            self._container.seek(int(self._plan.frame_pts[key]), stream=self._stream, backward=True,
                                 any_frame=False)
            self._next = key
        self._frames = _decoded_frames(self._container, self._stream, [0])

    def _indexed(self) -> Iterator[tuple[int, Any]]:
        for frame in self._frames:
            if self._seek:
                index = self._index_of.get(int(frame.pts)) if frame.pts is not None else None
                if index is None:
                    continue  # a frame the sampling pass did not see (cannot happen without corrupt data)
            else:
                index = self._next
            self._next = index + 1
            yield index, frame

    def frames(self, start: int, end: int) -> Iterator[tuple[int, Any]]:
        if self._seek:
            key = int(self._plan.keyframes[max(0, np.searchsorted(self._plan.keyframes, start, "right") - 1)])
            if key > self._next or start < self._next:
                self._pending = None
                self._restart(key)
        if self._pending is not None:
            index, frame = self._pending
            self._pending = None
            if start <= index <= end:
                yield index, frame
            if index >= end:
                return
        for index, frame in self._indexed():
            if index < start:
                continue
            if index > end:
                self._pending = (index, frame)
                return
            yield index, frame
            if index == end:
                return


class _AudioCutter:
    """Decodes the source audio in order and appends the sound of given time ranges to the output.

    Ranges are taken in increasing order (:meth:`take`); where the source has no sound inside a range
    (a gap, or audio that starts late or ends early) silence is written, so after every range the
    written audio is exactly as long as the video written so far. Kept samples are encoded to AAC (more
    than two channels are downmixed to stereo: browsers play stereo AAC everywhere, and a preview does
    not need 5.1).
    """

    def __init__(self, source: Path, out: Any) -> None:
        self._src = _open(source)
        self._in = self._src.streams.audio[0]
        ctx = self._in.codec_context
        self._rate = int(ctx.sample_rate)
        self._layout = ctx.layout.name if ctx.layout.nb_channels <= 2 else "stereo"
        self._channels = int(av.AudioLayout(self._layout).nb_channels)
        self._stream = out.add_stream("aac", rate=self._rate)
        self._stream.codec_context.layout = self._layout
        self._stream.codec_context.format = "fltp"
        self._out = out
        self._resampler = av.AudioResampler(format="fltp", layout=self._layout, rate=self._rate)
        self._fifo = AudioFifo()
        self._written = 0  # samples encoded
        self._kept = 0  # samples queued (written + in the fifo)
        self._target_s = 0.0  # summary time covered by the ranges taken so far
        self._chunks = self._decoded()
        self._carry: tuple[float, np.ndarray] | None = None  # a chunk reaching past the last range

    def _decoded(self) -> Iterator[tuple[float, np.ndarray]]:
        """``(start seconds, (channels, n) float32 samples)`` of the source audio, in order."""
        for packet in self._src.demux(self._in):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue  # a broken audio packet: silence in its place
            for frame in frames:
                if frame.time is None:
                    continue
                start = float(frame.time)
                for converted in self._resampler.resample(frame):
                    samples = converted.to_ndarray()
                    yield start, samples
                    start += samples.shape[1] / self._rate

    def _queue(self, samples: np.ndarray) -> None:
        if samples.shape[1] == 0:
            return
        piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, np.float32), format="fltp",
                                           layout=self._layout)
        piece.sample_rate = self._rate
        self._fifo.write(piece)
        self._kept += samples.shape[1]
        self._drain(final=False)

    def _silence(self, seconds: float) -> None:
        n = round(seconds * self._rate)
        if n > 0:
            self._queue(np.zeros((self._channels, n), np.float32))

    def take(self, start: float, end: float) -> None:
        """Append the source sound between ``start`` and ``end`` (seconds, source time)."""
        position = start  # source time up to which this range is covered
        while position < end:
            chunk, self._carry = (self._carry or next(self._chunks, None)), None
            if chunk is None:
                break
            begin, samples = chunk
            finish = begin + samples.shape[1] / self._rate
            if finish <= position:
                continue  # sound before the range
            if begin >= end:
                self._carry = chunk  # sound of a later range
                break
            if begin > position:
                self._silence(begin - position)  # a gap in the source's sound
                position = begin
            i0 = max(0, round((position - begin) * self._rate))
            i1 = min(samples.shape[1], round((end - begin) * self._rate))
            self._queue(samples[:, i0:i1])
            if finish > end:  # the rest belongs to later ranges (or to none)
                self._carry = chunk
                break
            position = finish
        self._target_s += end - start
        missing = round(self._target_s * self._rate) - self._kept
        if missing > 0:  # the source's sound ended early, or rounding: keep sound and picture in step
            self._queue(np.zeros((self._channels, missing), np.float32))

    def _drain(self, final: bool) -> None:
        size = self._stream.codec_context.frame_size or 1024
        while self._fifo.samples >= size or (final and self._fifo.samples):
            chunk = self._fifo.read(min(size, self._fifo.samples))
            chunk.pts = self._written
            chunk.time_base = Fraction(1, self._rate)
            self._written += chunk.samples
            self._out.mux(self._stream.encode(chunk))

    def finish(self) -> None:
        self._drain(final=True)
        self._out.mux(self._stream.encode(None))
        self._src.close()

    def close(self) -> None:
        self._src.close()


def _even(n: int) -> int:
    return max(2, n - n % 2)  # yuv420p needs even sizes


def write_summary_video(source: str | Path, target: str | Path, shots: np.ndarray, plan: CutPlan,
                        *, keep_audio: bool = True, output_format: str | None = None,
                        preset: str = X264_PRESET, progress: bool = False) -> WrittenSummary:
    """Re-encode the frames of ``shots`` ((K, 2) inclusive frame ranges) of ``source`` into ``target``.

    ``plan`` (from :attr:`SampledVideo.cut_plan`) maps frame indices to timestamps, so the writer seeks
    to the key frame before each run of selected frames instead of decoding the whole video again, and
    cuts the audio at the same instants. Every written frame keeps its real duration (timestamps in the
    plan's time base: source time minus the start of its run, runs concatenated), so a variable-rate
    video stays variable-rate. ``target`` is written in place: callers wanting atomicity pass a
    temporary path (as :func:`summarize` does).
    """
    source, target = Path(source), Path(target)
    shots = np.asarray(shots, np.int64).reshape(-1, 2)
    if len(shots) and (shots.min() < 0 or shots.max() >= plan.n_frames or (shots[:, 1] < shots[:, 0]).any()):
        raise CstaInputError(f"shots must be inclusive ranges inside 0..{plan.n_frames - 1}")
    runs = _runs(shots)
    middles = {int((s + e) // 2) for s, e in shots}
    ranges = np.array([[plan.frame_times[s], plan.frame_ends[e]] for s, e in runs], np.float64).reshape(-1, 2)
    start_ticks, end_ticks = plan.ticks()
    base = plan.time_base
    thumbnails: list[np.ndarray] = []
    expected = sum(e - s + 1 for s, e in runs)
    written = 0
    offset = 0  # ticks of summary written before the current run
    bar = _Progress(progress, "write", expected)
    cutter = None
    try:
        with _open(source) as src, av.open(str(target), "w", format=output_format or _output_format(target)) as out:
            vin = _video_stream(src, source)
            vin.thread_type = "AUTO"
            rate = _frame_rate(vin)
            width, height = _even(vin.codec_context.width), _even(vin.codec_context.height)
            vout = out.add_stream("libx264", rate=rate)  # the nominal rate; timing is in the timestamps
            vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
            vout.codec_context.time_base = vout.time_base = base
            vout.options = {"preset": preset, "crf": X264_CRF}
            if is_variable_frame_rate(plan.frame_times, plan.time_base):
                # No B-frames: with reordering, MP4 counts a stream's length from decoding timestamps,
                # which on uneven frame durations is off by the reorder delay (up to two long frames).
                vout.options = {**vout.options, "bf": "0"}
            vout.thread_type = "AUTO"
            if keep_audio and src.streams.audio and len(runs):
                cutter = _AudioCutter(source, out)
            reader = _FrameReader(src, vin, plan)
            durations: dict[int, int] = {}  # output pts -> the frame's duration in ticks

            def mux(packets: Sequence[Any]) -> None:
                for packet in packets:  # the last frame's duration decides the file's length
                    if packet.pts is not None and packet.pts in durations:
                        packet.duration = durations.pop(packet.pts)
                    out.mux(packet)

            for (start, end), (begin, until) in zip(runs, ranges, strict=True):
                for index, frame in reader.frames(start, end):
                    if index in middles:
                        thumbnails.append(frame.to_ndarray(
                            width=THUMB_WIDTH, height=_even(round(THUMB_WIDTH * height / width)),
                            format="rgb24", interpolation="AREA"))
                    out_frame = frame.reformat(width=width, height=height, format="yuv420p")
                    out_frame.pts = int(offset + start_ticks[index] - start_ticks[start])
                    out_frame.time_base = base
                    durations[out_frame.pts] = int(end_ticks[index] - start_ticks[index])
                    mux(vout.encode(out_frame))
                    written += 1
                    bar.update()
                offset += int(end_ticks[end] - start_ticks[start])
                if cutter is not None:  # interleave: the audio of this run right after its frames
                    cutter.take(begin, until)
            mux(vout.encode(None))
            if cutter is not None:
                cutter.finish()
    except av.error.OSError as exc:  # a full disk stays an OSError (ENOSPC): the atomic writer reports it
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise VideoInputError(f"writing the summary of {source} failed: {exc}") from exc
    finally:
        if cutter is not None:
            cutter.close()
        bar.close()
    if written != expected:
        raise VideoInputError(f"{source} decoded differently the second time ({written} of {expected} selected "
                              "frames found); the file may be damaged")
    return WrittenSummary(written, cutter is not None, tuple(thumbnails), float(offset * base))


# --------------------------------------------------------------------------------------------------
# pictures: contact sheet and score timeline


def _clock(seconds: float) -> str:
    minutes, secs = divmod(max(0.0, seconds), 60.0)
    return f"{int(minutes)}:{secs:04.1f}"


def contact_sheet(thumbnails: Sequence[np.ndarray], sidecar: dict[str, Any], columns: int = 4) -> Any:
    """A PIL image: the middle frame of each selected shot, labelled with its time range and score."""
    # Imported only when a contact sheet is asked for (start-up).
    from PIL import Image, ImageDraw

    shots = sidecar["selected_shots"]
    if not thumbnails:
        image = Image.new("RGB", (THUMB_WIDTH * 2, 40), "white")
        ImageDraw.Draw(image).text((8, 12), "no shot selected", fill="black")
        return image
    h, w = thumbnails[0].shape[:2]
    label_h = 18
    columns = max(1, min(columns, len(thumbnails)))
    rows = math.ceil(len(thumbnails) / columns)
    sheet = Image.new("RGB", (columns * (w + 4) + 4, rows * (h + label_h + 4) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (thumb, shot) in enumerate(zip(thumbnails, shots, strict=False)):
        x = 4 + (k % columns) * (w + 4)
        y = 4 + (k // columns) * (h + label_h + 4)
        sheet.paste(Image.fromarray(thumb[:h, :w]), (x, y))
        label = (f"{_clock(shot['start_time'])}-{_clock(shot['end_time'])}  "
                 f"frames {shot['start_frame']}-{shot['end_frame']}  score {shot['score']:.2f}")
        draw.text((x + 2, y + h + 3), label, fill="black")
    return sheet


def timeline_figure(sidecar: dict[str, Any], title: str | None = None) -> Any:
    """A matplotlib Figure: sample scores over real time, shot boundaries, and the selected shots shaded.

    Times come from the sidecar's ``pick_times``/``shot_times``/``duration_s`` (real presentation times);
    sidecars without them (older ones) fall back to frame indices over ``fps``.
    """
    # matplotlib (the optional [book] extra, half a second to import) only when a timeline is asked for.
    from matplotlib.figure import Figure

    fps = sidecar["fps"]
    scores = np.asarray(sidecar["scores"], np.float64)
    if "pick_times" in sidecar:
        starts = np.asarray(sidecar["pick_times"], np.float64)
        boundaries = [start for start, _ in sidecar["shot_times"][1:]]
        duration = float(sidecar["duration_s"])
    else:
        starts = np.asarray(sidecar["picks"], np.float64) / fps
        boundaries = [start / fps for start, _ in sidecar["shots"][1:]]
        duration = sidecar["n_frames"] / fps
    fig = Figure(figsize=(10, 2.8), layout="constrained")
    ax = fig.add_subplot()
    for shot in sidecar["selected_shots"]:
        ax.axvspan(shot["start_time"], shot["end_time"], color="tab:orange", alpha=0.3, lw=0)
    for start in boundaries:
        ax.axvline(start, color="0.5", lw=0.6, ls=":")
    # each sample's score holds until the next sample, as the frame-level scores do
    ax.step(np.append(starts, duration), np.append(scores, scores[-1:]), where="post", color="tab:blue", lw=1.2,
            label="CSTA score (per frame)")
    ax.set_xlim(0, duration)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("score")
    ax.plot([], [], color="0.5", lw=0.6, ls=":", label="KTS shot boundary")
    ax.fill_between([], [], color="tab:orange", alpha=0.3, label=f"selected ({sidecar['budget']:.0%} budget)")
    ax.legend(loc="upper right", fontsize=8, ncol=3)
    labels = [f"encoder {sidecar['encoder']}"]
    if sidecar.get("random_weights"):
        labels.append("RANDOM encoder weights")
    if sidecar.get("feature_mismatch"):
        labels.append("feature mismatch with the checkpoint")
    ax.set_title(title or f"{Path(sidecar['input']).name}: " + ", ".join(labels), fontsize=9)
    return fig


# --------------------------------------------------------------------------------------------------
# the pipeline


@dataclass(frozen=True)
class SummaryResult:
    """The sidecar (JSON-able dict, also written next to the video) and the selected shots' thumbnails."""

    sidecar: dict[str, Any]
    thumbnails: tuple[np.ndarray, ...] = field(repr=False)
    features: np.ndarray = field(repr=False)


def caption_text(sidecar: dict[str, Any]) -> str:
    """A one-line figure caption: video, encoder, what the checkpoint was trained on, mismatch."""
    features = sidecar.get("checkpoint_features") or {}
    trained_on = SURROGATE_LABEL if features.get("surrogate") else f"{features.get('encoder', 'unknown')} features"
    random = " (RANDOM weights)" if (sidecar.get("encoder_info") or {}).get("random_weights") else ""
    mismatch = "; features do NOT match the checkpoint's" if sidecar.get("feature_mismatch") else ""
    return (f"{Path(sidecar['input']).name}: encoder {sidecar['encoder']}{random}, CSTA checkpoint trained on "
            f"{trained_on}{mismatch}; budget {sidecar['budget']:.0%}.")


def provenance_text(sidecar: dict[str, Any]) -> str:
    """In plain words: which encoder and which checkpoint made this summary, and what that means."""
    info = sidecar.get("encoder_info") or {}
    features = sidecar.get("checkpoint_features") or {}
    encoder = {"mobilenet_v1_1024": "the ImageNet-pretrained MobileNetV1 embedding (1024-d, 8-bit TFLite)",
               "googlenet": "torchvision GoogLeNet pool5 (1024-d)"}.get(sidecar["encoder"], sidecar["encoder"])
    if info.get("random_weights"):
        encoder += " with RANDOM weights"
    trained_on = ("surrogate (synthetic) features" if features.get("surrogate")
                  else f"{features.get('encoder', 'unknown')} features")
    text = (f"Frames encoded with {encoder}; scores from the CSTA checkpoint `{Path(sidecar['checkpoint']).name}` "
            f"(preset {sidecar.get('checkpoint_preset')}), trained on {trained_on}.")
    if sidecar.get("feature_mismatch"):
        reason = sidecar["feature_mismatch_reason"]
        text += (f" **The features do not match what the model was trained on** ({reason}): "
                 "the shots are real KTS cuts of this video, but the scores, and so the selection, carry no "
                 "learned notion of importance. It shows the pipeline working, not the quality of CSTA.")
    return text


def sidecar_path_for(output: str | Path) -> Path:
    """Where the JSON sidecar of ``output`` goes: the same name with ``.json``."""
    return Path(output).with_suffix(".json")


@dataclass(frozen=True)
class _Request:
    """A checked :func:`summarize` request: where to read and write, the budget and how to sample."""

    video: Path
    output: Path
    output_format: str
    checkpoint: str | Path  # as given (recorded so in the sidecar)
    sidecar: Path
    pictures: dict[str, Path]  # the PNGs asked for: "contact_sheet" and/or "timeline"
    budget: float
    info: VideoInfo
    stride: int
    interval_s: float | None  # sampling by time, one sample per interval_s seconds (see sample_frames); None: by stride


class _Stopwatch:
    """Seconds per stage, in the order run: the sidecar's ``timings_s``."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._start = self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = round(now - self._last, 4)
        self._last = now

    def stop(self) -> None:
        self.timings["total"] = round(time.perf_counter() - self._start, 4)


def _warn(message: str, warnings: list[str]) -> None:
    warnings.append(message)
    print(f"csta: WARNING: {message}", file=sys.stderr)


def _check_request(video: str | Path, output: str | Path, checkpoint: str | Path, *, budget: Any, stride: int,
                   sample_fps: float | None, batch_size: Any, sidecar: str | Path | None,
                   pictures: dict[str, str | Path | None]) -> _Request:
    """Every cheap check before any heavy work, nothing created: arguments, output paths
    (:func:`~csta_lib.runs.io.check_outputs`), the video's container and the checkpoint's existence."""
    video, output = Path(video), Path(output)
    budget = check_budget(budget)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise CstaInputError(f"batch_size must be >= 1, got {batch_size!r}")
    output_format = _output_format(output)
    sidecar = Path(sidecar) if sidecar else sidecar_path_for(output)
    pngs = {key: Path(path) for key, path in pictures.items() if path}
    check_outputs({output: "-o/--output", sidecar: "--sidecar",
                   **{path: f"--{key.replace('_', '-')}" for key, path in pngs.items()}},
                  {video: "video", checkpoint: "--checkpoint"})
    info = probe_video(video)
    stride = stride_for(info.fps, sample_fps, stride)
    if not Path(checkpoint).is_file():
        raise CstaInputError(f"checkpoint {checkpoint} does not exist")
    interval_s = None if sample_fps is None else stride / info.fps
    return _Request(video, output, output_format, checkpoint, sidecar, pngs, budget, info, stride, interval_s)


def _load_checkpoint(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """The checkpoint's model (eval mode) and dict.

    Run in a background thread by :func:`summarize` while the video decodes: importing torch and
    torchvision and building the model take longer than decoding.
    """
    # Imported here, in the loading thread: the checkpoint module imports torch, which would otherwise
    # hold up the decoding at start-up.
    from csta_lib.runs.checkpoint import load_checkpoint

    return load_checkpoint(Path(path), map_location="cpu")


def _batches(frames: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(frames), size):
        yield frames[start:start + size]


def _sample_and_encode(request: _Request, encoder: FrameEncoder, batch_size: int,
                       progress: bool) -> tuple[SampledVideo, np.ndarray]:
    """Decode the video once, keeping the sampled frames, and encode them in batches."""
    sampled = sample_frames(request.video, stride=request.stride, size=INPUT_SIZE, progress=progress,
                            interval_s=request.interval_s)
    bar = _Progress(progress, "encode", len(sampled.frames))
    try:
        features = encode_batches(encoder, _batches(sampled.frames, batch_size), bar.update)
    finally:
        bar.close()
    return sampled, features


def _check_features(encoder: EncoderInfo, checkpoint: dict[str, Any], allow: bool, warnings: list[str]) -> str | None:
    """Why the encoder's features are not what the checkpoint was trained on (None if they are): an error
    unless ``allow``, then a warning."""
    mismatch = feature_mismatch(encoder, checkpoint.get("features"))
    if mismatch and not allow:
        raise CstaInputError(f"feature mismatch: {mismatch}. The scores would not mean what the checkpoint "
                             "learned; pass --allow-feature-mismatch to summarise anyway (recorded in the sidecar)")
    if mismatch:
        _warn(f"feature mismatch allowed: {mismatch}", warnings)
    return mismatch


def _video_fields(request: _Request, sampled: SampledVideo) -> dict[str, Any]:
    """The sidecar's facts about the input video, its timing and its sampling."""
    rate = request.info.frame_rate
    return {
        "input": str(request.video),
        "output": str(request.output),
        "n_frames": sampled.n_frames,
        "fps": request.info.fps,
        "frame_rate": f"{rate.numerator}/{rate.denominator}",
        "mean_fps": round(sampled.n_frames / sampled.duration_s, 4),
        "variable_frame_rate": sampled.variable_frame_rate,
        "timestamps": "source" if sampled.source_timestamps else "constant-rate",
        "duration_s": round(sampled.duration_s, 4),
        "width": request.info.width,
        "height": request.info.height,
        "sampling": "frames" if request.interval_s is None else "time",
        "stride": request.stride,
        "sample_interval_s": None if request.interval_s is None else round(request.interval_s, 6),
        "n_samples": int(len(sampled.picks)),
        "picks": sampled.picks.tolist(),
        "pick_times": [round(float(x), 4) for x in sampled.pick_times],
    }


def _model_fields(request: _Request, encoder: EncoderInfo, checkpoint: dict[str, Any],
                  mismatch: str | None) -> dict[str, Any]:
    """The sidecar's provenance of the scores: the encoder and the checkpoint."""
    return {
        "encoder": encoder.name,
        "encoder_info": encoder.as_dict(),
        "random_weights": encoder.random_weights,
        "checkpoint": str(request.checkpoint),
        "checkpoint_preset": checkpoint.get("preset"),
        "checkpoint_features": checkpoint.get("features"),
        "feature_mismatch": bool(mismatch),
        "feature_mismatch_reason": mismatch,
    }


def _selection_fields(budget: float, sampled: SampledVideo, shots: np.ndarray, scores: np.ndarray,
                      values: np.ndarray, kept: np.ndarray) -> dict[str, Any]:
    """The sidecar's shots, scores and selected shots, with times in seconds from the first frame."""
    origin = float(sampled.frame_times[0])
    starts_s, ends_s = sampled.frame_times - origin, sampled.frame_ends - origin
    selected = [
        {"start_frame": int(s), "end_frame": int(e),
         "start_time": round(float(starts_s[s]), 4), "end_time": round(float(ends_s[e]), 4),
         "score": float(v)}
        for (s, e), v, k in zip(shots, values, kept, strict=True) if k
    ]
    return {
        "budget": budget,
        "shots": shots.tolist(),
        "shot_times": [[round(float(starts_s[s]), 4), round(float(ends_s[e]), 4)] for s, e in shots],
        "scores": [float(s) for s in scores],
        "shot_scores": [float(v) for v in values],
        "selected_shots": selected,
        "summary_n_frames": int(sum(s["end_frame"] - s["start_frame"] + 1 for s in selected)),
    }


def _write_pictures(pictures: dict[str, Path], thumbnails: tuple[np.ndarray, ...], record: dict[str, Any],
                    temporary: Callable[[Path], Path]) -> None:
    """The PNGs asked for (contact sheet, timeline), each to ``temporary(path)``; their paths go in ``record``."""
    if "contact_sheet" in pictures:
        contact_sheet(thumbnails, record).save(temporary(pictures["contact_sheet"]), format="PNG")
        record["contact_sheet"] = str(pictures["contact_sheet"])
    if "timeline" in pictures:
        timeline_figure(record).savefig(temporary(pictures["timeline"]), format="png", dpi=110)
        record["timeline"] = str(pictures["timeline"])


def _write_outputs(request: _Request, sampled: SampledVideo, selected: np.ndarray, record: dict[str, Any], *,
                   keep_audio: bool, preset: str, progress: bool, watch: _Stopwatch) -> tuple[np.ndarray, ...]:
    """Write the summary video (with its audio), the PNGs and the sidecar; return the selected shots' thumbnails.

    Every file goes to a temporary that is renamed only when all of them were written: on any error none
    is left behind. ``record`` gets the written video's facts, the paths and the timings.
    """
    with contextlib.ExitStack() as stack:
        def temporary(path: Path) -> Path:
            return stack.enter_context(atomic_path(path))

        written = write_summary_video(request.video, temporary(request.output), selected, sampled.cut_plan,
                                      keep_audio=keep_audio, output_format=request.output_format, preset=preset,
                                      progress=progress)
        record["audio_kept"] = written.audio_kept
        record["summary_duration_s"] = round(written.duration_s, 4)
        watch.lap("write")
        if request.pictures:
            _write_pictures(request.pictures, written.thumbnails, record, temporary)
            watch.lap("pictures")
        record["sidecar"] = str(request.sidecar)
        watch.stop()
        temporary(request.sidecar).write_text(json.dumps(record, indent=1) + "\n")
    return written.thumbnails


def summarize(
    video: str | Path,
    output: str | Path,
    checkpoint: str | Path,
    *,
    encoder: str | None = None,
    budget: float = SUMMARY_BUDGET,
    stride: int = FRAME_STEP,
    sample_fps: float | None = None,
    allow_feature_mismatch: bool = False,
    random_weights: bool = False,
    sidecar: str | Path | None = None,
    contact_sheet_png: str | Path | None = None,
    timeline_png: str | Path | None = None,
    keep_audio: bool = True,
    preset: str = X264_PRESET,
    progress: bool = False,
    batch_size: int = ENCODE_BATCH,
) -> SummaryResult:
    """Summarise ``video`` into ``output`` (H.264) with the CSTA model in ``checkpoint``.

    Stages: decode + sample every ``stride``-th frame (or, with ``sample_fps``, one frame every
    ``round(fps / sample_fps) / fps`` seconds of presentation time), encode the samples (``encoder``: see
    :mod:`csta_lib.runs.encoders`; None = googlenet where its weights exist, else mobilenet_v1_1024), KTS
    shots, CSTA scores, knapsack at ``budget``, write the selected shots. The sidecar JSON (default
    ``output`` with ``.json``) and the optional PNGs are written atomically together with the video:
    on any error none of them is left behind. Bad input raises :class:`CstaInputError`.

    All output paths are checked first (:func:`csta_lib.runs.io.check_outputs`: none may be the video, the
    checkpoint or another output, a directory, below a file, or have an over-long name), before any
    decoding, and no folder is created unless everything was written.

    Sidecar keys (``format`` ``csta-summary/1``): ``n_frames``, ``fps`` and ``frame_rate`` (the stream's
    nominal rate, exact), ``mean_fps`` (frames per real second), ``variable_frame_rate``, ``timestamps``
    (``"source"``, or ``"constant-rate"`` when the stream's were unusable), ``duration_s`` (real: end of
    the last frame minus start of the first), ``width``, ``height``, ``sampling`` (``"frames"`` or
    ``"time"``), ``stride``, ``sample_interval_s``, ``n_samples``, ``picks``, ``pick_times``; ``encoder`` and
    ``encoder_info`` (weights file, ``random_weights``); ``checkpoint``, ``checkpoint_preset``,
    ``checkpoint_features``, ``feature_mismatch`` (+ ``feature_mismatch_reason``); ``budget``; ``shots``
    (inclusive ``[start, end]`` frames covering the video), ``shot_times`` (their ``[start, end)`` in
    seconds from the first frame), ``scores`` (one per sample), ``shot_scores``; ``selected_shots``
    (``start_frame``/``end_frame`` inclusive, ``start_time``/``end_time`` in seconds from the first frame,
    ``end_time`` exclusive, ``score``); ``summary_n_frames``, ``summary_duration_s`` (the written video's),
    ``has_audio``, ``audio_kept``, ``decode_errors``, ``warnings``, ``timings_s`` (per stage), and the
    paths written.
    """
    watch = _Stopwatch()
    request = _check_request(video, output, checkpoint, budget=budget, stride=stride, sample_fps=sample_fps,
                             batch_size=batch_size, sidecar=sidecar,
                             pictures={"contact_sheet": contact_sheet_png, "timeline": timeline_png})
    watch.lap("validate")
    frame_encoder = build_encoder(encoder, random_weights=random_weights)
    watch.lap("load_encoder")
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="csta-load") as pool:
        loading = pool.submit(_load_checkpoint, request.checkpoint)  # the model loads while the video decodes
        sampled, features = _sample_and_encode(request, frame_encoder, batch_size, progress)
        watch.lap("decode_encode")
        model, ckpt = loading.result()  # re-raises a loading error (not a checkpoint, unreadable, ...)
    watch.lap("wait_model")
    warnings: list[str] = []
    mismatch = _check_features(frame_encoder.info, ckpt, allow_feature_mismatch, warnings)
    if sampled.decode_errors:
        _warn(f"{request.video}: {sampled.decode_errors} corrupt packet(s) skipped while decoding; "
              f"{sampled.n_frames} frames could be decoded", warnings)
    shots = shots_from_features(features, sampled.picks, sampled.n_frames, request.stride)
    watch.lap("kts")
    scores = score_steps(model, features)
    watch.lap("score")
    values, kept = select_shots(scores, shots, sampled, request.budget)
    watch.lap("select")
    record = {
        "format": SIDECAR_FORMAT,
        **_video_fields(request, sampled),
        **_model_fields(request, frame_encoder.info, ckpt, mismatch),
        **_selection_fields(request.budget, sampled, shots, scores, values, kept),
        "summary_duration_s": None,  # the written video's, set when it is written
        "has_audio": request.info.has_audio,
        "audio_kept": False,
        "decode_errors": sampled.decode_errors,
        "warnings": warnings,
        "timings_s": watch.timings,
    }
    thumbnails = _write_outputs(request, sampled, shots[kept], record, keep_audio=keep_audio, preset=preset,
                                progress=progress, watch=watch)
    return SummaryResult(record, thumbnails, features)
