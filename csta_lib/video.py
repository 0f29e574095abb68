"""Summarise a real video: decode and sample with PyAV, encode frames, KTS shots, CSTA scores,
knapsack, and write the summary video with a JSON sidecar (reference §3, §4.1, §6.6 item 9).

How this differs from the official custom-video path (video_helper.py), and why:

- **Sampling.** Every ``stride``-th frame (default 15, the official ``--sample_rate``) is converted and
  resized to 224x224 while decoding; the other frames are decoded (H.264 needs them as references) but
  never converted, and no frame is kept beyond its sample. The stride is in **frames** whatever the frame
  rate, as in the official code and the eccv16 files (15 frames: 0.5 s at 30 fps, i.e. 2 fps; 0.6 s at
  25 fps; 0.25 s at 60 fps). ``sample_fps`` picks the stride from the frame rate instead
  (``stride = round(fps / sample_fps)``); the stride used is recorded in the sidecar.
- **Features.** Only the sampled frames are encoded (the official code runs GoogLeNet on every frame
  and then keeps every 15th), in batches; see :mod:`csta_lib.encoders`.
- **Shots.** KTS runs on the sampled features (the official code runs it on every frame: O(n²)
  memory, O(n³) time), on L2-normalised features so that the linear kernel is a cosine similarity on the
  scale its ``vmax=1`` penalty assumes, with the penalty of the full-length video (``desc_rate`` =
  stride, as if every frame had been segmented; on the samples alone the per-cut penalty is ``stride``
  times larger and short videos get no cut at all). Change points are mapped back to frames with the
  stride, and the shots cover every frame of the video.
- **Scores and selection.** The checkpoint's CSTA model scores the (unnormalised) step features, and the
  official summary generation (reference §4.1: scores spread over frames, mean score per shot, 0/1
  knapsack at ``floor(budget * n_frames)`` frames) picks the shots.
- **Corrupt data.** A packet the decoder rejects is skipped and counted; decoding goes on with the next
  one. Frame indices count the frames that could be decoded; the sidecar records ``decode_errors`` and a
  warning is printed. Both decoding passes skip the same packets, so indices stay consistent.
- **Writing.** The selected shots are re-encoded to H.264 (libx264, ``veryfast`` preset by default,
  CRF 23, yuv420p) at the input's size and frame rate. The writer seeks to the key frame before each
  run of selected frames rather than decoding the whole video again (frames are found by their
  timestamps from the sampling pass). Audio, when present, is cut at the same instants and encoded to
  AAC (more than two channels downmixed to stereo). Every output (video, sidecar, PNGs) is written to a
  temporary file and renamed only when all succeeded.
- **A budget smaller than every shot.** If no shot fits, that is an error asking for a larger budget,
  not an empty video. Videos of fewer than 2 decodable frames are errors; short videos (fewer steps
  than the GoogLeNet trunk needs) are handled by the model itself (see :mod:`csta_lib.model`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from csta_lib.errors import CstaInputError

DEFAULT_STRIDE = 15
DEFAULT_BUDGET = 0.15
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
    import av

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


def stride_for(fps: float, sample_fps: float | None = None, stride: int = DEFAULT_STRIDE) -> int:
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
    import av

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
    picks: np.ndarray  # (T,) int64: 0, stride, 2*stride, ...
    n_frames: int  # frames decoded (the video's length)
    frame_times: np.ndarray  # (n_frames,) float64 presentation time in seconds of every frame
    decode_errors: int  # packets skipped because the decoder rejected them
    frame_pts: np.ndarray  # (n_frames,) int64 stream timestamps, -1 where the decoder gave none
    keyframes: np.ndarray  # (K,) int64 indices of the key frames

    @property
    def cut_plan(self) -> CutPlan:
        """What :func:`write_summary_video` needs to find frames again."""
        return CutPlan(self.frame_times, self.frame_pts, self.keyframes, seekable=self.decode_errors == 0)


def _frame_time(frame: Any, index: int, fps: float, previous: float | None) -> float:
    if frame.time is not None:
        return float(frame.time)
    return (previous + 1.0 / fps) if previous is not None else index / fps


def sample_frames(path: str | Path, stride: int = DEFAULT_STRIDE, size: int = 224,
                  progress: bool = False) -> SampledVideo:
    """Decode ``path`` once and keep every ``stride``-th frame resized to ``size`` x ``size`` RGB.

    Frames are decoded in presentation order; only the sampled ones are converted (area interpolation,
    which averages like an anti-aliasing filter when shrinking). Raises :class:`VideoInputError` for a
    file that is missing, not a video, has no video stream, or yields fewer than 2 frames.
    """
    import av

    path = Path(path)
    info = probe_video(path)
    stride = stride_for(info.fps, stride=stride)
    samples: list[np.ndarray] = []
    times: list[float] = []
    pts: list[int] = []
    keyframes: list[int] = []
    errors = [0]
    bar = _Progress(progress, "decode", info.declared_frames or _estimate_frames(info))
    try:
        with _open(path) as container:
            stream = _video_stream(container, path)
            stream.thread_type = "AUTO"
            previous = None
            for index, frame in enumerate(_decoded_frames(container, stream, errors)):
                previous = _frame_time(frame, index, info.fps, previous)
                times.append(previous)
                pts.append(-1 if frame.pts is None else int(frame.pts))
                if frame.key_frame:
                    keyframes.append(index)
                if index % stride == 0:
                    samples.append(frame.to_ndarray(width=size, height=size, format="rgb24",
                                                    interpolation="AREA"))
                bar.update()
    except av.error.FFmpegError as exc:  # a demuxer failure after the header: the file is broken
        raise VideoInputError(f"{path}: decoding failed after {len(times)} frames: {exc}") from exc
    finally:
        bar.close()
    n_frames = len(times)
    if n_frames < 2:
        detail = f" ({errors[0]} corrupt packets skipped)" if errors[0] else ""
        raise VideoInputError(f"{path} has {n_frames} decodable video frame(s){detail}; a summary needs at least 2")
    frames = np.stack(samples) if samples else np.zeros((0, size, size, 3), np.uint8)
    picks = np.arange(0, n_frames, stride, dtype=np.int64)
    return SampledVideo(info, stride, frames, picks, n_frames, np.asarray(times, np.float64), errors[0],
                        np.asarray(pts, np.int64), np.asarray(keyframes, np.int64))


def load_image(path: str | Path, size: int = 224) -> np.ndarray:
    """A still image (JPEG, BMP, PNG, ...) as (size, size, 3) uint8 RGB, resized exactly as video samples are."""
    path = Path(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        for frame in container.decode(stream):
            return frame.to_ndarray(width=size, height=size, format="rgb24", interpolation="AREA")
    raise VideoInputError(f"{path} holds no image")


def _estimate_frames(info: VideoInfo) -> int | None:
    return round(info.duration_s * info.fps) if info.duration_s else None


# --------------------------------------------------------------------------------------------------
# shots, scores, selection


def shots_from_features(features: np.ndarray, stride: int, n_frames: int,
                        max_change_points: int | None = None) -> np.ndarray:
    """KTS shots (S, 2): inclusive frame ranges covering ``0 .. n_frames-1``, from the step features.

    KTS sees the L2-normalised features (a cosine kernel, on the scale its ``vmax=1`` penalty assumes,
    as DSNet and the official helper normalise theirs); at most ``max_change_points`` boundaries
    (default one fewer than the number of steps, DSNet's custom-video setting), with the penalty of a
    video of ``n_frames`` frames. Step change point ``c`` starts a shot at frame ``c * stride``.
    """
    from csta_lib import kts

    features = np.asarray(features, np.float64)
    if len(features) < 2:
        return np.array([[0, n_frames - 1]], np.int64)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = features / np.where(norms > 0, norms, 1.0)
    max_cp = len(features) - 1 if max_change_points is None else int(max_change_points)
    # desc_rate: the penalty counts the video's frames, not its samples, as if KTS ran on every frame
    # (the official custom-video path does; on n/stride samples the per-cut penalty would be stride
    # times larger and short videos would get no cut at all).
    step_cps = kts.change_points(unit, max_cp, vmax=1.0, desc_rate=stride)
    return kts.shots_from_change_points(step_cps, n_frames, stride).astype(np.int64)


def score_steps(model: Any, features: np.ndarray) -> np.ndarray:
    """CSTA importance scores (T,) of the step features (any T >= 1: the model pads short videos itself)."""
    import torch

    with torch.inference_mode():
        scores = model(torch.from_numpy(np.ascontiguousarray(features, np.float32)))
    scores = scores.detach().float().reshape(-1).numpy()
    if scores.shape != (len(features),) or not np.isfinite(scores).all():
        raise RuntimeError(f"model returned scores of shape {scores.shape} (finite: {np.isfinite(scores).all()}) "
                           f"for {len(features)} steps")
    return scores.astype(np.float64)


def selected_shot_mask(scores: np.ndarray, shots: np.ndarray, picks: np.ndarray, n_frames: int,
                       budget: float) -> np.ndarray:
    """Which shots the official 0/1 knapsack keeps at ``budget`` (reference §4.1), as a bool mask (S,)."""
    from csta_lib.evaluation import generate_summary

    summary = generate_summary(scores, shots, n_frames, picks, budget=budget)
    return summary[shots[:, 0]].astype(bool)


def check_budget(budget: Any) -> float:
    """``budget`` as a float in (0, 1], or a :class:`CstaInputError`."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not (0.0 < float(budget) <= 1.0):
        raise CstaInputError(f"budget must be a fraction in (0, 1], got {budget!r}")
    return float(budget)


# --------------------------------------------------------------------------------------------------
# writing the summary video


@dataclass(frozen=True)
class CutPlan:
    """Where every frame of a video is, from the sampling pass, so that the writing pass can seek."""

    frame_times: np.ndarray  # (n_frames,) seconds
    frame_pts: np.ndarray  # (n_frames,) stream timestamps, -1 where the decoder gave none
    keyframes: np.ndarray  # sorted indices of key frames
    seekable: bool = True  # False: decode sequentially (e.g. after corrupt packets, to skip the same ones)

    @property
    def n_frames(self) -> int:
        return len(self.frame_times)

    def can_seek(self) -> bool:
        pts = self.frame_pts
        return (self.seekable and len(pts) == self.n_frames and len(self.keyframes) > 0 and bool((pts >= 0).all())
                and bool((np.diff(pts) > 0).all()))

    def frame_ends(self) -> np.ndarray:
        """End time of every frame (the next frame's start; the median frame duration for the last)."""
        t = self.frame_times
        step = float(np.median(np.diff(t))) if len(t) > 1 else 0.04
        return np.append(t[1:], t[-1] + step)


@dataclass(frozen=True)
class WrittenSummary:
    """What :func:`write_summary_video` wrote."""

    n_frames: int  # video frames written
    audio_kept: bool
    thumbnails: tuple[np.ndarray, ...]  # RGB middle frame of each selected shot, THUMB_WIDTH wide


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
    """Decodes the source audio in order and keeps the samples inside the selected time ranges.

    Kept samples are encoded to AAC (more than two channels are downmixed to stereo: browsers play
    stereo AAC everywhere, and a preview does not need 5.1).
    """

    def __init__(self, source: Path, out: Any, ranges: np.ndarray) -> None:
        import av
        from av.audio.fifo import AudioFifo

        self._src = _open(source)
        self._in = self._src.streams.audio[0]
        ctx = self._in.codec_context
        self._rate = int(ctx.sample_rate)
        self._layout = ctx.layout.name if ctx.layout.nb_channels <= 2 else "stereo"
        self._stream = out.add_stream("aac", rate=self._rate)
        self._stream.codec_context.layout = self._layout
        self._stream.codec_context.format = "fltp"
        self._out, self._ranges = out, ranges
        self._resampler = av.AudioResampler(format="fltp", layout=self._layout, rate=self._rate)
        self._fifo = AudioFifo()
        self._written = 0
        self._frames = self._decoded()
        self._done = False

    def _decoded(self) -> Iterator[Any]:
        import av

        for packet in self._src.demux(self._in):
            try:
                yield from packet.decode()
            except av.error.FFmpegError:
                continue  # a broken audio packet: a short gap in the summary's sound

    def advance_to(self, until: float) -> None:
        """Consume the source audio up to time ``until`` (seconds)."""
        while not self._done:
            frame = next(self._frames, None)
            if frame is None:
                self._done = True
                return
            if frame.time is None:
                continue
            start = float(frame.time)
            for converted in self._resampler.resample(frame):
                self._cut(converted, start)
                start += converted.samples / self._rate
            if start >= until:
                return

    def _cut(self, frame: Any, start: float) -> None:
        import av

        samples = frame.to_ndarray()  # (channels, n) float32, planar
        end = start + samples.shape[1] / self._rate
        for a, b in self._ranges:
            if b <= start or a >= end:
                continue
            i0 = max(0, round((a - start) * self._rate))
            i1 = min(samples.shape[1], round((b - start) * self._rate))
            if i1 > i0:
                piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i0:i1]), format="fltp",
                                                   layout=self._layout)
                piece.sample_rate = self._rate
                self._fifo.write(piece)
        self._drain(final=False)

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
    cuts the audio at the same instants. ``target`` is written in place: callers wanting atomicity
    pass a temporary path (as :func:`summarize` does).
    """
    import av

    source, target = Path(source), Path(target)
    shots = np.asarray(shots, np.int64).reshape(-1, 2)
    if len(shots) and (shots.min() < 0 or shots.max() >= plan.n_frames or (shots[:, 1] < shots[:, 0]).any()):
        raise CstaInputError(f"shots must be inclusive ranges inside 0..{plan.n_frames - 1}")
    runs = _runs(shots)
    middles = {int((s + e) // 2) for s, e in shots}
    ends = plan.frame_ends()
    ranges = np.array([[plan.frame_times[s], ends[e]] for s, e in runs], np.float64).reshape(-1, 2)
    thumbnails: list[np.ndarray] = []
    expected = sum(e - s + 1 for s, e in runs)
    written = 0
    bar = _Progress(progress, "write", expected)
    cutter = None
    try:
        with _open(source) as src, av.open(str(target), "w", format=output_format or _output_format(target)) as out:
            vin = _video_stream(src, source)
            vin.thread_type = "AUTO"
            rate = _frame_rate(vin)
            width, height = _even(vin.codec_context.width), _even(vin.codec_context.height)
            vout = out.add_stream("libx264", rate=rate)
            vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
            vout.options = {"preset": preset, "crf": X264_CRF}
            vout.thread_type = "AUTO"
            if keep_audio and src.streams.audio and len(runs):
                cutter = _AudioCutter(source, out, ranges)
            reader = _FrameReader(src, vin, plan)
            for (start, end), (_, until) in zip(runs, ranges, strict=True):
                for index, frame in reader.frames(start, end):
                    if index in middles:
                        thumbnails.append(frame.to_ndarray(
                            width=THUMB_WIDTH, height=_even(round(THUMB_WIDTH * height / width)),
                            format="rgb24", interpolation="AREA"))
                    out_frame = frame.reformat(width=width, height=height, format="yuv420p")
                    out_frame.pts = written
                    out_frame.time_base = 1 / rate
                    out.mux(vout.encode(out_frame))
                    written += 1
                    bar.update()
                if cutter is not None:  # interleave: the audio of this run right after its frames
                    cutter.advance_to(until)
            out.mux(vout.encode(None))
            if cutter is not None:
                cutter.finish()
    finally:
        if cutter is not None:
            cutter.close()
        bar.close()
    if written != expected:
        raise RuntimeError(f"wrote {written} frames of {source}, expected {expected}: the video decoded "
                           "differently the second time")
    return WrittenSummary(written, cutter is not None, tuple(thumbnails))


def make_synthetic_video(path: str | Path, segments: Sequence[tuple[tuple[int, int, int], int]], *,
                         fps: int = 25, size: tuple[int, int] = (96, 64), audio_rate: int | None = None,
                         gop: int = 12) -> Path:
    """Write a test video of solid-colour segments ``[(rgb, n_frames), ...]`` (known cuts) with PyAV.

    A moving white bar keeps consecutive frames distinct. With ``audio_rate`` a mono sine track
    (pitch changing per segment) of the same length is added. The container follows the suffix.
    """
    import av

    path = Path(path)
    width, height = size
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"preset": "ultrafast", "g": str(gop)}
        aus = None
        if audio_rate:
            aus = out.add_stream("aac", rate=audio_rate)
            aus.codec_context.layout = "mono"
        index, sample = 0, 0
        per_frame = (audio_rate or 0) // fps
        for k, (rgb, count) in enumerate(segments):
            for _ in range(count):
                image = np.empty((height, width, 3), np.uint8)
                image[:] = rgb
                image[:, (index * 3) % width] = 255
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = index
                out.mux(vs.encode(frame))
                if aus is not None:
                    t = (sample + np.arange(per_frame)) / audio_rate
                    tone = (0.2 * np.sin(2 * np.pi * (220 * (k + 1)) * t)).astype(np.float32)[None]
                    chunk = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
                    chunk.sample_rate, chunk.pts = audio_rate, sample
                    out.mux(aus.encode(chunk))
                    sample += per_frame
                index += 1
        out.mux(vs.encode(None))
        if aus is not None:
            out.mux(aus.encode(None))
    return path


# --------------------------------------------------------------------------------------------------
# pictures: contact sheet and score timeline


def _clock(seconds: float) -> str:
    minutes, secs = divmod(max(0.0, seconds), 60.0)
    return f"{int(minutes)}:{secs:04.1f}"


def contact_sheet(thumbnails: Sequence[np.ndarray], sidecar: dict[str, Any], columns: int = 4) -> Any:
    """A PIL image: the middle frame of each selected shot, labelled with its time range and score."""
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


def frame_level_scores(sidecar: dict[str, Any]) -> np.ndarray:
    """The step scores spread over frames as the summary generation does (reference §4.1 step 1)."""
    from csta_lib.evaluation import frame_scores

    return np.asarray(frame_scores(np.asarray(sidecar["scores"]), np.asarray(sidecar["picks"]),
                                   sidecar["n_frames"]), np.float64)


def timeline_figure(sidecar: dict[str, Any], title: str | None = None) -> Any:
    """A matplotlib Figure: frame scores over time, shot boundaries, and the selected shots shaded."""
    from matplotlib.figure import Figure

    fps = sidecar["fps"]
    scores = frame_level_scores(sidecar)
    t = np.arange(len(scores)) / fps
    fig = Figure(figsize=(10, 2.8), layout="constrained")
    ax = fig.add_subplot()
    for shot in sidecar["selected_shots"]:
        ax.axvspan(shot["start_time"], shot["end_time"], color="tab:orange", alpha=0.3, lw=0)
    for start, _ in sidecar["shots"][1:]:
        ax.axvline(start / fps, color="0.5", lw=0.6, ls=":")
    ax.plot(t, scores, color="tab:blue", lw=1.2, label="CSTA score (per frame)")
    ax.set_xlim(0, len(scores) / fps)
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
    from csta_lib.data.eccv16 import SURROGATE_LABEL

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


def _check_output(path: Path, source: Path, what: str) -> Path:
    from csta_lib.io import ensure_writable_dir

    path = Path(path)
    if path.exists() and path.is_dir():
        raise CstaInputError(f"{what} {path} is a directory")
    if path.resolve() == source.resolve():
        raise CstaInputError(f"{what} {path} would overwrite the input video")
    try:
        ensure_writable_dir(path.parent)
    except PermissionError as exc:
        raise CstaInputError(f"cannot write {what} {path}: {exc}") from exc
    return path


def _warn(message: str, warnings: list[str]) -> None:
    warnings.append(message)
    print(f"csta: WARNING: {message}", file=sys.stderr)


def _load_checkpoint(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """The checkpoint's model (eval mode) and dict; also imports the scoring modules.

    Run in a background thread by :func:`summarize` while the video decodes: importing torch, scipy
    (through the evaluation module) and building the model take about as long as decoding.
    """
    from csta_lib.train import load_checkpoint

    path = Path(path)
    model, payload = load_checkpoint(path, map_location="cpu")
    import csta_lib.evaluation  # noqa: F401  (imported here, off the critical path)

    return model, payload


def _batches(frames: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(frames), size):
        yield frames[start:start + size]


def _sample_and_encode(video: Path, stride: int, encoder: Any, batch_size: int,
                       progress: bool) -> tuple[SampledVideo, np.ndarray]:
    from csta_lib.encoders import INPUT_SIZE, encode_batches

    sampled = sample_frames(video, stride=stride, size=INPUT_SIZE, progress=progress)
    bar = _Progress(progress, "encode", len(sampled.frames))
    try:
        features = encode_batches(encoder, _batches(sampled.frames, batch_size), bar.update)
    finally:
        bar.close()
    return sampled, features


def summarize(
    video: str | Path,
    output: str | Path,
    checkpoint: str | Path,
    *,
    encoder: str | None = None,
    budget: float = DEFAULT_BUDGET,
    stride: int = DEFAULT_STRIDE,
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

    Stages: decode + sample every ``stride``-th frame, encode the samples (``encoder``: see
    :mod:`csta_lib.encoders`; None = googlenet where its weights exist, else mobilenet_v1_1024), KTS
    shots, CSTA scores, knapsack at ``budget``, write the selected shots. The sidecar JSON (default
    ``output`` with ``.json``) and the optional PNGs are written atomically together with the video:
    on any error none of them is left behind. Bad input raises :class:`CstaInputError`.

    Sidecar keys (``format`` ``csta-summary/1``): ``n_frames``, ``fps``, ``frame_rate`` (exact),
    ``duration_s``, ``width``, ``height``, ``stride``, ``n_samples``, ``picks``; ``encoder`` and
    ``encoder_info`` (weights file, ``random_weights``); ``checkpoint``, ``checkpoint_preset``,
    ``checkpoint_features``, ``feature_mismatch`` (+ ``feature_mismatch_reason``); ``budget``; ``shots``
    (inclusive ``[start, end]`` frames covering the video), ``scores`` (one per sample), ``shot_scores``;
    ``selected_shots`` (``start_frame``/``end_frame`` inclusive, ``start_time``/``end_time`` in seconds
    from the first frame, ``end_time`` exclusive, ``score``); ``summary_n_frames``, ``summary_duration_s``,
    ``has_audio``, ``audio_kept``, ``decode_errors``, ``warnings``, ``timings_s`` (per stage), and the
    paths written.
    """
    from csta_lib import encoders as enc

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    warnings: list[str] = []

    def lap(stage: str, since: float) -> float:
        now = time.perf_counter()
        timings[stage] = round(now - since, 4)
        return now

    # ---- validate everything cheap before any heavy work
    video, output = Path(video), Path(output)
    budget = check_budget(budget)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise CstaInputError(f"batch_size must be >= 1, got {batch_size!r}")
    out_format = _output_format(output)
    info = probe_video(video)
    stride = stride_for(info.fps, sample_fps, stride)
    _check_output(output, video, "output video")
    sidecar = _check_output(Path(sidecar) if sidecar else sidecar_path_for(output), video, "sidecar")
    pngs = {key: _check_output(Path(p), video, f"{key} PNG")
            for key, p in (("contact_sheet", contact_sheet_png), ("timeline", timeline_png)) if p}
    destinations = [output, sidecar, *pngs.values()]
    if len({p.resolve() for p in destinations}) != len(destinations):
        raise CstaInputError(f"output paths must differ: {', '.join(map(str, destinations))}")
    t = lap("validate", t_start)

    if not Path(checkpoint).is_file():
        raise CstaInputError(f"checkpoint {checkpoint} does not exist")
    frame_encoder = enc.build_encoder(encoder, random_weights=random_weights)
    t = lap("load_encoder", t)
    # The model loads in a background thread while the video decodes (both take about a second).
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="csta-load") as pool:
        loading = pool.submit(_load_checkpoint, checkpoint)
        try:
            sampled, features = _sample_and_encode(video, stride, frame_encoder, batch_size, progress)
        except BaseException:
            concurrent.futures.wait([loading])  # the video's error is reported; the thread just ends
            raise
        t = lap("decode_encode", t)
        model, ckpt = loading.result()  # re-raises a loading error (not a checkpoint, unreadable, ...)
    t = lap("wait_model", t)
    mismatch = enc.feature_mismatch(frame_encoder.info, ckpt.get("features"))
    if mismatch and not allow_feature_mismatch:
        raise CstaInputError(f"feature mismatch: {mismatch}. The scores would not mean what the checkpoint "
                             "learned; pass --allow-feature-mismatch to summarise anyway (recorded in the sidecar)")
    if mismatch:
        _warn(f"feature mismatch allowed: {mismatch}", warnings)
    if sampled.decode_errors:
        _warn(f"{video}: {sampled.decode_errors} corrupt packet(s) skipped while decoding; "
              f"{sampled.n_frames} frames could be decoded", warnings)

    # ---- shots, scores, selection
    shots = shots_from_features(features, stride, sampled.n_frames)
    t = lap("kts", t)
    scores = score_steps(model, features)
    t = lap("score", t)
    from csta_lib.evaluation import frame_scores, shot_scores

    values = shot_scores(frame_scores(scores, sampled.picks, sampled.n_frames), shots)
    chosen = selected_shot_mask(scores, shots, sampled.picks, sampled.n_frames, budget)
    if not chosen.any():
        lengths = shots[:, 1] - shots[:, 0] + 1
        raise CstaInputError(
            f"no shot fits the budget: {budget:.0%} of {sampled.n_frames} frames is "
            f"{int(sampled.n_frames * budget)} frames, the shortest of the {len(shots)} shots has "
            f"{int(lengths.min())} frames"
            + (" (or every score is 0)" if int(lengths.min()) <= int(sampled.n_frames * budget) else "")
            + "; raise --budget")
    t = lap("select", t)

    fps = info.fps
    origin = float(sampled.frame_times[0])
    step = 1.0 / fps
    selected = [
        {"start_frame": int(s), "end_frame": int(e),
         "start_time": round(float(sampled.frame_times[s]) - origin, 4),
         "end_time": round(float(sampled.frame_times[e]) - origin + step, 4),
         "score": float(v)}
        for (s, e), v, c in zip(shots, values, chosen, strict=True) if c
    ]
    summary_frames = int(sum(s["end_frame"] - s["start_frame"] + 1 for s in selected))
    record: dict[str, Any] = {
        "format": SIDECAR_FORMAT,
        "input": str(video),
        "output": str(output),
        "n_frames": sampled.n_frames,
        "fps": fps,
        "frame_rate": f"{info.frame_rate.numerator}/{info.frame_rate.denominator}",
        "duration_s": round(sampled.n_frames / fps, 4),
        "width": info.width,
        "height": info.height,
        "stride": stride,
        "n_samples": int(len(sampled.picks)),
        "picks": sampled.picks.tolist(),
        "encoder": frame_encoder.info.name,
        "encoder_info": frame_encoder.info.as_dict(),
        "random_weights": frame_encoder.info.random_weights,
        "checkpoint": str(checkpoint),
        "checkpoint_preset": ckpt.get("preset"),
        "checkpoint_features": ckpt.get("features"),
        "feature_mismatch": bool(mismatch),
        "feature_mismatch_reason": mismatch,
        "budget": budget,
        "shots": shots.tolist(),
        "scores": [float(s) for s in scores],
        "shot_scores": [float(v) for v in values],
        "selected_shots": selected,
        "summary_n_frames": summary_frames,
        "summary_duration_s": round(summary_frames / fps, 4),
        "has_audio": info.has_audio,
        "audio_kept": False,
        "decode_errors": sampled.decode_errors,
        "warnings": warnings,
        "timings_s": timings,
    }

    # ---- write everything to temporaries; rename all only if all succeeded
    from csta_lib.io import atomic_path

    with contextlib.ExitStack() as stack:
        temporaries = [stack.enter_context(atomic_path(output))]
        selected_shots = np.array([[s["start_frame"], s["end_frame"]] for s in selected], np.int64).reshape(-1, 2)
        written = write_summary_video(video, temporaries[0], selected_shots, sampled.cut_plan,
                                      keep_audio=keep_audio, output_format=out_format, preset=preset,
                                      progress=progress)
        record["audio_kept"] = written.audio_kept
        t = lap("write", t)
        if "contact_sheet" in pngs:
            temporaries.append(stack.enter_context(atomic_path(pngs["contact_sheet"])))
            contact_sheet(written.thumbnails, record).save(temporaries[-1], format="PNG")
            record["contact_sheet"] = str(pngs["contact_sheet"])
        if "timeline" in pngs:
            temporaries.append(stack.enter_context(atomic_path(pngs["timeline"])))
            timeline_figure(record).savefig(temporaries[-1], format="png", dpi=110)
            record["timeline"] = str(pngs["timeline"])
        if pngs:
            t = lap("pictures", t)
        record["sidecar"] = str(sidecar)
        timings["total"] = round(time.perf_counter() - t_start, 4)
        temporaries.append(stack.enter_context(atomic_path(sidecar)))
        temporaries[-1].write_text(json.dumps(record, indent=1) + "\n")
    return SummaryResult(record, written.thumbnails, features)

