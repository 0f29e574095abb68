"""Opening, probing and decoding a video with PyAV, and the real time of every decoded frame.

- **Opening.** Every media file of the pipeline (the input, both decoding passes, the audio, the written
  summary) is opened by :func:`open_media`, the one place that calls ``av.open``.
- **Time.** Every decoded frame keeps its real presentation time (``pts x time_base``) and its end (the
  next frame's time; the container's duration of the last frame). Phone videos have a *variable* frame
  rate (VFR), so nothing assumes ``n_frames / fps`` (:func:`frame_timing`). Only a stream whose timestamps
  are missing or not increasing is re-timed at its constant nominal rate (recorded in the sidecar as
  ``timestamps: "constant-rate"``).
- **Corrupt data.** A packet the decoder rejects is skipped and counted (:func:`decoded_frames`); decoding
  goes on with the next one. Frame indices count the frames that could be decoded, and every decoding pass
  skips the same packets, so indices stay consistent.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np

from csta_lib.errors import CstaInputError
from csta_lib.runs.io import open_regular_file

#: The time base of re-timed frames (those whose stream timestamps were unusable): MPEG's 90 kHz clock.
RETIMED_TIME_BASE = Fraction(1, 90000)


class VideoInputError(CstaInputError):
    """A video that cannot be summarised: missing, not a video, no video stream, too short, corrupt."""


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

    @property
    def estimated_frames(self) -> int | None:
        """The frame count to expect (for progress bars): declared, else duration x rate, else unknown."""
        if self.declared_frames:
            return self.declared_frames
        return round(self.duration_s * self.fps) if self.duration_s else None


#: FFmpeg options for every file we read: ``protocol_whitelist`` names no protocol at all, so a demuxer that
#: follows references inside the file (an ``ffconcat`` script, a playlist) cannot open anything else.
READ_OPTIONS = {"protocol_whitelist": "none"}


def _regular_file(path: Path) -> io.BufferedReader:
    """``path`` opened for reading (:func:`csta_lib.runs.io.open_regular_file`: a FIFO or a device would hang or
    never end), a refusal as a :class:`VideoInputError`."""
    try:
        return open_regular_file(path, "video file")
    except CstaInputError as exc:
        raise VideoInputError(str(exc)) from None


@contextlib.contextmanager
def open_media(path: str | Path, mode: Literal["r", "w"] = "r", output_format: str | None = None) -> Iterator[Any]:
    """``av.open`` of the file at ``path`` for reading, or for writing in ``output_format``: the pipeline's one
    call of it.

    We open the file and give PyAV the file object, never the name: FFmpeg reads a name such as
    ``concat:a.mp4`` or ``pipe:0`` as a protocol URL (another file, standard input), and a file of that
    name must be read as itself. Files read must be regular files, and nothing they refer to is opened
    (:data:`READ_OPTIONS`). The container and the file are closed when the block ends.
    """
    path = Path(path)
    if mode == "r":
        with _regular_file(path) as file, av.open(file, "r", options=READ_OPTIONS) as container:
            yield container
    else:
        with open(path, "wb") as out, av.open(out, "w", format=output_format) as container:
            yield container


@contextlib.contextmanager
def open_video(path: str | Path) -> Iterator[Any]:
    """Open the video at ``path`` for reading (:func:`open_media`), turning every way it can fail into a
    :class:`VideoInputError` that names the file."""
    path = Path(path)
    if not path.exists():
        raise VideoInputError(f"video file {path} does not exist")
    if path.is_dir():
        raise VideoInputError(f"{path} is a directory, not a video file")
    with contextlib.ExitStack() as stack:
        try:  # only errors of the opening itself are about the file; those of the block pass through
            container = stack.enter_context(open_media(path))
        except av.error.FFmpegError as exc:
            raise VideoInputError(f"{path} is not a readable video file: {exc}") from exc
        except OSError as exc:  # unreadable (permissions), vanished since the check, ...
            raise VideoInputError(f"video file {path} cannot be opened: {exc.strerror or exc}") from exc
        yield container


def video_stream(container: Any, path: Path) -> Any:
    """The first video stream of ``container`` (raises :class:`VideoInputError` when it has none)."""
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoInputError(f"{path} has no video stream (streams: {', '.join(kinds)})")
    return container.streams.video[0]


def frame_rate(stream: Any) -> Fraction:
    """The stream's nominal frame rate, exact: average, else guessed, else base, else 25."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return Fraction(25)  # a stream that states no rate at all: FFmpeg's own fallback


def probe_video(path: str | Path) -> VideoInfo:
    """Container-level facts about the video at ``path`` (raises :class:`VideoInputError`)."""
    path = Path(path)
    with open_video(path) as container:
        stream = video_stream(container, path)
        ctx = stream.codec_context
        duration = container.duration / 1e6 if container.duration else None
        return VideoInfo(str(path), int(ctx.width), int(ctx.height), frame_rate(stream),
                         int(stream.frames or 0), duration, ctx.name, bool(container.streams.audio))


def decoded_frames(container: Any, stream: Any, errors: list[int]) -> Iterator[Any]:
    """Frames of ``stream`` in presentation order; packets the decoder rejects are skipped and counted
    in ``errors[0]``."""
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            errors[0] += 1
            continue
        yield from frames


def frame_time(frame: Any, index: int, fps: float, previous: float | None) -> float:
    """The start of ``frame`` in seconds: its own time, else one nominal interval after the previous frame."""
    if frame.time is not None:
        return float(frame.time)
    return (previous + 1.0 / fps) if previous is not None else index / fps


def frame_duration(frame: Any) -> float:
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
