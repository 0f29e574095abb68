"""Writing the summary video: the selected shots re-encoded to H.264, with their sound.

The selected shots are re-encoded to H.264 (libx264, :mod:`~csta_lib.runs.video.x264`: ``superfast`` preset by
default, CRF 23, yuv420p) at
the input's size. Each written frame keeps its real duration: its timestamp is its source time relative to
the start of its run of selected frames, runs concatenated one after the other, in the source's time base.
The writer seeks to the key frame before each run rather than decoding the whole video again (frames are
found by their timestamps from the sampling pass, :class:`~csta_lib.runs.video.sampling.CutPlan`). Audio,
when present, is cut at the same real instants (silence where the source has none, so sound and picture
stay in step) and encoded to AAC (more than two channels downmixed to stereo).
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.audio.fifo import AudioFifo

from csta_lib.errors import CstaInputError
from csta_lib.runs.video.decode import (
    VideoInputError,
    decoded_frames,
    frame_rate,
    is_variable_frame_rate,
    open_media,
    open_video,
    video_stream,
)
from csta_lib.runs.video.progress import Progress
from csta_lib.runs.video.sampling import CutPlan
from csta_lib.runs.video.x264 import X264_CRF, X264_PRESET

#: Width of the selected shots' thumbnails (contact sheet), pixels.
THUMB_WIDTH = 256
#: Output containers by suffix; the temporary file has no meaningful suffix, so the format is explicit.
OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


@dataclass(frozen=True)
class WrittenSummary:
    """What :func:`write_summary_video` wrote."""

    n_frames: int  # video frames written
    audio_kept: bool
    thumbnails: tuple[np.ndarray, ...]  # RGB middle frame of each selected shot, THUMB_WIDTH wide
    duration_s: float = 0.0  # the written video's duration: the sum of its frames' real durations


def output_format_for(path: Path) -> str:
    """The container format of an output path, from its suffix (:data:`OUTPUT_FORMATS`)."""
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
        self._frames = decoded_frames(self._container, self._stream, [0])

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
            before = int(np.searchsorted(self._plan.keyframes, start, "right")) - 1
            key = int(self._plan.keyframes[max(0, before)])
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


class _AudioChunk:
    """A decoded audio frame, converted to the output's layout the first time its samples are needed."""

    def __init__(self, begin: float, frame: Any, resampler: Any, channels: int) -> None:
        self.begin, self.frame = begin, frame
        self._resampler, self._channels = resampler, channels
        self._samples: np.ndarray | None = None

    def samples(self) -> np.ndarray:
        """``(channels, n)`` float32 samples (the resampler only changes the layout: no state across frames)."""
        if self._samples is None:
            parts = [converted.to_ndarray() for converted in self._resampler.resample(self.frame)]
            self._samples = np.concatenate(parts, axis=1) if parts else np.zeros((self._channels, 0), np.float32)
        return self._samples


class _AudioCutter:
    """Decodes the source audio in order and appends the sound of given time ranges to the output.

    Ranges are taken in increasing order (:meth:`take`); where the source has no sound inside a range
    (a gap, or audio that starts late or ends early) silence is written, so after every range the
    written audio is exactly as long as the video written so far. Kept samples are encoded to AAC (more
    than two channels are downmixed to stereo: browsers play stereo AAC everywhere, and a preview does
    not need 5.1).
    """

    def __init__(self, source: Path, out: Any) -> None:
        self._closing = contextlib.ExitStack()  # a second reader of the source: its own demuxing position
        self._src = self._closing.enter_context(open_video(source))
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
        self._carry: _AudioChunk | None = None  # a decoded frame reaching past the last range

    def _decoded(self) -> Iterator[_AudioChunk]:
        """The source audio's decoded frames, in order. Every frame is decoded (AAC frames overlap: a frame's
        sound needs the one before), but only those inside a range are converted (:meth:`_AudioChunk.samples`)."""
        for packet in self._src.demux(self._in):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue  # a broken audio packet: silence in its place
            for frame in frames:
                if frame.time is not None:
                    yield _AudioChunk(float(frame.time), frame, self._resampler, self._channels)

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
            begin = chunk.begin
            finish = begin + chunk.frame.samples / self._rate
            if finish <= position:
                continue  # sound before the range: never converted
            if begin >= end:
                self._carry = chunk  # sound of a later range
                break
            samples = chunk.samples()
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
            if chunk is None:  # cannot happen while samples are queued; the reader's type allows it
                break
            chunk.pts = self._written
            chunk.time_base = Fraction(1, self._rate)
            self._written += chunk.samples
            self._out.mux(self._stream.encode(chunk))

    def finish(self) -> None:
        self._drain(final=True)
        self._out.mux(self._stream.encode(None))
        self.close()

    def close(self) -> None:
        self._closing.close()


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
    bar = Progress(progress, "write", expected)
    cutter = None
    try:
        with (open_video(source) as src,
              open_media(target, "w", output_format or output_format_for(target)) as out):
            vin = video_stream(src, source)
            vin.thread_type = "AUTO"
            rate = frame_rate(vin)
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
    except OSError as exc:  # FFmpeg's or the file's; a full disk stays an OSError: the atomic writer reports it
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
