"""Which frames of a video become steps: every ``stride``-th frame, or one per interval of real time.

- **By frames** (default): every ``stride``-th decoded frame (default 15, the official ``--sample_rate``)
  is converted and resized to 224x224 while decoding; the other frames are decoded (H.264 needs them as
  references) but never converted. The stride is in **frames** whatever the frame rate, as in the
  official code and the eccv16 files (15 frames: 0.5 s at 30 fps, i.e. 2 fps; 0.6 s at 25 fps; 0.25 s at
  60 fps); on a VFR video the samples are therefore denser in time where the frame rate is higher.
- **By time** (``sample_fps``): one sample every ``round(fps / sample_fps) / fps`` seconds of presentation
  time (the first frame at or after each instant; ``fps`` = the stream's nominal rate), which on a
  constant-rate video is exactly every ``round(fps / sample_fps)``-th frame and on a VFR video keeps the
  steps even in time (``--sample-fps 2`` is the official 2-fps step).

One decoding pass (:func:`decode_samples`) records the time of every frame and hands each sample to a
callback; :func:`sample_frames` keeps them, :func:`csta_lib.runs.video.features.encode_video` encodes them
as they come. The result (:class:`SampledVideo`) also carries what the writer needs to find frames again
(:class:`CutPlan`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from csta_lib.data.eccv16 import FRAME_STEP
from csta_lib.errors import CstaInputError
from csta_lib.runs.video.decode import (
    VideoInfo,
    VideoInputError,
    decoded_frames,
    frame_duration,
    frame_time,
    frame_timing,
    is_variable_frame_rate,
    open_video,
    probe_video,
    video_stream,
)
from csta_lib.runs.video.progress import Progress


def stride_for(fps: float, sample_fps: float | None = None, stride: int = FRAME_STEP) -> int:
    """The sampling stride in frames: ``stride`` as given, or ``round(fps / sample_fps)`` (at least 1)."""
    if sample_fps is None:
        if not (isinstance(stride, (int, np.integer)) and stride >= 1):
            raise CstaInputError(f"stride must be a whole number of frames >= 1, got {stride!r}")
        return int(stride)
    if not (isinstance(sample_fps, (int, float)) and math.isfinite(sample_fps) and sample_fps > 0):
        raise CstaInputError(f"sample_fps must be a positive number, got {sample_fps!r}")
    return max(1, round(fps / sample_fps))


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
class SampledVideo:
    """The samples of a video and the facts needed to cut it later.

    ``frames`` holds the sampled frames (from :func:`sample_frames`), or is None where each sample went
    straight to an encoder and was not kept (:func:`csta_lib.runs.video.features.encode_video`).
    """

    info: VideoInfo
    stride: int
    frames: np.ndarray | None  # (T, size, size, 3) uint8, frame k = frame picks[k] of the video; None: not kept
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
        """What :func:`~csta_lib.runs.video.writing.write_summary_video` needs to find frames again."""
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


#: What :func:`decode_samples` hands over per sample: ``(step index, RGB frame (size, size, 3) uint8)``.
SampleSink = Callable[[int, np.ndarray], None]


def decode_samples(path: str | Path, on_sample: SampleSink, *, stride: int = FRAME_STEP, size: int = 224,
                   progress: bool = False, interval_s: float | None = None) -> SampledVideo:
    """Decode ``path`` once, pass every sample resized to ``size`` x ``size`` RGB to ``on_sample``.

    Samples: every ``stride``-th decoded frame, or with ``interval_s`` the first frame at or after each
    multiple of ``interval_s`` seconds of presentation time from the first frame (1 % of the interval of
    tolerance for rounded timestamps, so that on a constant-rate video ``interval_s = k / fps`` picks
    exactly every k-th frame).
    Frames are decoded in presentation order and their timestamps recorded (see
    :func:`~csta_lib.runs.video.decode.frame_timing`); only the sampled ones are converted (area
    interpolation, which averages like an anti-aliasing filter when shrinking). The result's ``frames`` is
    None (the samples went to ``on_sample``). Raises :class:`VideoInputError` for a file that is missing,
    not a video, has no video stream, or yields fewer than 2 frames.
    """
    path = Path(path)
    info = probe_video(path)
    stride = stride_for(info.fps, stride=stride)
    if interval_s is not None and not (math.isfinite(interval_s) and interval_s > 0):
        raise CstaInputError(f"sampling interval must be a positive number of seconds, got {interval_s!r}")
    tolerance = 0.0 if interval_s is None else 0.01 * interval_s
    picks: list[int] = []
    raw_times: list[float] = []  # the decoder's times (NaN where none): the recorded timing
    pts: list[int] = []
    keyframes: list[int] = []
    errors = [0]
    last_frame, time_base = None, None
    bar = Progress(progress, "decode", info.estimated_frames)
    try:
        with open_video(path) as container:
            stream = video_stream(container, path)
            stream.thread_type = "AUTO"
            time_base = stream.time_base
            previous = None
            origin = due = 0.0
            for index, frame in enumerate(decoded_frames(container, stream, errors)):
                previous = frame_time(frame, index, info.fps, previous)
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
                    on_sample(len(picks), frame.to_ndarray(width=size, height=size, format="rgb24",
                                                           interpolation="AREA"))
                    picks.append(index)
                bar.update()
    except av.error.FFmpegError as exc:  # a demuxer failure after the header: the file is broken
        raise VideoInputError(f"{path}: decoding failed after {len(raw_times)} frames: {exc}") from exc
    finally:
        bar.close()
    n_frames = len(raw_times)
    if n_frames < 2:
        detail = f" ({errors[0]} corrupt packets skipped)" if errors[0] else ""
        raise VideoInputError(f"{path} has {n_frames} decodable video frame(s){detail}; a summary needs at least 2")
    last_duration = frame_duration(last_frame) if last_frame is not None else math.nan
    starts, ends, base, from_source = frame_timing(raw_times, last_duration, info.fps, time_base)
    return SampledVideo(info, stride, None, np.asarray(picks, np.int64), n_frames, starts, errors[0],
                        np.asarray(pts, np.int64), np.asarray(keyframes, np.int64), ends, base, from_source,
                        interval_s)


def sample_frames(path: str | Path, stride: int = FRAME_STEP, size: int = 224,
                  progress: bool = False, interval_s: float | None = None) -> SampledVideo:
    """Decode ``path`` once and keep the sampled frames resized to ``size`` x ``size`` RGB in ``frames``
    (the samples of :func:`decode_samples`)."""
    samples: list[np.ndarray] = []
    sampled = decode_samples(path, lambda _, frame: samples.append(frame), stride=stride, size=size,
                             progress=progress, interval_s=interval_s)
    frames = np.stack(samples) if samples else np.zeros((0, size, size, 3), np.uint8)
    return dataclasses.replace(sampled, frames=frames)
