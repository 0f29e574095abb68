"""Test videos and images for the video pipeline's tests (runs and cli): generated clips with known cuts (and the
fixtures that make them once per module), still images resized exactly as the pipeline resizes video samples, and
readers of what a written summary holds."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from csta_lib.runs.video import open_media

VFR_TIME_BASE = Fraction(1, 90000)


def make_synthetic_video(path: str | Path, segments: Sequence[tuple[Any, ...]], *,
                         fps: int = 25, size: tuple[int, int] = (96, 64), audio_rate: int | None = None,
                         gop: int = 12) -> Path:
    """Write a test video of solid-colour segments ``[(rgb, n_frames), ...]`` (known cuts) with PyAV.

    A moving white bar keeps consecutive frames distinct. A segment given as ``(rgb, n_frames,
    interval_s)`` shows its frames ``interval_s`` seconds apart instead of ``1 / fps``: any such
    segment makes a variable-frame-rate video (timestamps in 1/90000 s, every frame's duration stored,
    ``fps`` only the declared nominal rate). With ``audio_rate`` a mono sine track (pitch changing per
    segment) of the same real length is added. The container follows the suffix.
    """
    path = Path(path)
    width, height = size
    variable = any(len(segment) > 2 for segment in segments)
    base = VFR_TIME_BASE if variable else Fraction(1, fps)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.time_base = vs.time_base = base
        vs.options = {"preset": "ultrafast", "g": str(gop)}
        aus = None
        if audio_rate:
            aus = out.add_stream("aac", rate=audio_rate)
            aus.codec_context.layout = "mono"
        durations: dict[int, int] = {}

        def mux(packets: Sequence[Any]) -> None:
            for packet in packets:
                packet.duration = durations.pop(packet.pts, packet.duration)
                out.mux(packet)

        index, sample, tick = 0, 0, 0
        for k, (rgb, count, *interval) in enumerate(segments):
            step = round(Fraction(interval[0]) / base) if interval else 1
            for _ in range(count):
                image = np.empty((height, width, 3), np.uint8)
                image[:] = rgb
                image[:, (index * 3) % width] = 255
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts, frame.time_base = tick, base
                durations[tick] = step
                mux(vs.encode(frame))
                tick += step
                if aus is not None:
                    until = round(tick * base * audio_rate)
                    t = (sample + np.arange(until - sample)) / audio_rate
                    tone = (0.2 * np.sin(2 * np.pi * (220 * (k + 1)) * t)).astype(np.float32)[None]
                    chunk = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
                    chunk.sample_rate, chunk.pts = audio_rate, sample
                    out.mux(aus.encode(chunk))
                    sample = until
                index += 1
        mux(vs.encode(None))
        if aus is not None:
            out.mux(aus.encode(None))
    return path


def load_image(path: str | Path, size: int = 224) -> np.ndarray:
    """A still image (JPEG, BMP, PNG, ...) as (size, size, 3) uint8 RGB, resized as the pipeline resizes video
    samples (whole frame, area interpolation)."""
    with open_media(path) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(width=size, height=size, format="rgb24", interpolation="AREA")


#: Three short clips of known cuts (``csta data build`` tests): name -> (segments, fps).
OWN_CLIPS = {
    "alpha.mp4": ([((200, 30, 30), 40), ((30, 30, 200), 35)], 25),  # 75 frames, 3.0 s
    "beta.mkv": ([((30, 160, 30), 30), ((220, 220, 40), 30), ((240, 240, 240), 30)], 25),  # 90 frames, 3.6 s
    "gamma.mp4": ([((120, 40, 160), 60)], 20),  # 60 frames, 3.0 s
}


def make_own_clips(folder: str | Path) -> dict[str, Path]:
    """The :data:`OWN_CLIPS` written into ``folder`` (a user's folder of videos)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {name: make_synthetic_video(folder / name, segments, fps=fps)
            for name, (segments, fps) in OWN_CLIPS.items()}


def write_own_annotations(path: str | Path, style: str = "tvsum") -> Path:
    """An annotation CSV for :data:`OWN_CLIPS`: two annotators per clip (seconds; TVSum scores 1..5, or SumMe
    selections)."""
    rows = ["video,annotator,start,end,score"]
    if style == "tvsum":
        rows += ["alpha.mp4,ann,0,1.6,1", "alpha.mp4,ann,1.6,3.0,5", "alpha.mp4,bob,0,3.0,3",
                 "beta.mkv,ann,0,1.2,2", "beta.mkv,ann,1.2,2.4,4", "beta.mkv,ann,2.4,3.6,1",
                 "beta.mkv,bob,0,2.4,5", "beta.mkv,bob,2.4,3.6,2",
                 "gamma.mp4,ann,0,1.5,4", "gamma.mp4,ann,1.5,3.0,2", "gamma.mp4,bob,0,3.0,3"]
    else:
        rows += ["alpha.mp4,ann,1.6,2.2,1", "alpha.mp4,bob,0,0.4,1", "alpha.mp4,bob,2.0,2.4,1",
                 "beta.mkv,ann,1.2,1.8,1", "beta.mkv,bob,0.2,0.6,1",
                 "gamma.mp4,ann,0,0.4,1", "gamma.mp4,bob,2.5,3.0,1"]
    Path(path).write_text("\n".join(rows) + "\n")
    return Path(path)


# ---------------------------------------------------------------------------------------------- shared clips

RED, GREEN, BLUE, YELLOW = (230, 20, 20), (20, 200, 40), (20, 40, 220), (240, 230, 30)


def count_frames(path: Path) -> tuple[int, float, float | None]:
    """(decoded video frames, video stream duration s, audio stream duration s or None)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        n = sum(1 for _ in c.decode(v))
        vdur = float(v.duration * v.time_base) if v.duration else n / float(v.average_rate)
    with av.open(str(path)) as c:
        adur = None
        if c.streams.audio:
            a = c.streams.audio[0]
            samples = sum(f.samples for f in c.decode(a))
            adur = samples / a.codec_context.sample_rate
    return n, vdur, adur


# Frames 1/60 s ... 1/4 s apart (a phone in bright light, then in the dark), cuts at frames 30, 60, 90,
# 105 (multiples of the stride 15, so the cuts are sample boundaries); declared 30 fps.
VFR_SEGMENTS = [(RED, 30, 1 / 60), (GREEN, 30, 1 / 5), (BLUE, 30, 1 / 30), (YELLOW, 15, 1 / 4), (RED, 30, 1 / 20)]
VFR_STARTS = np.concatenate([[0.0], np.cumsum([n * dt for _, n, dt in VFR_SEGMENTS])])  # cut times (s)
VFR_DURATION = float(VFR_STARTS[-1])  # 0.5 + 6 + 1 + 3.75 + 1.5 = 12.75 s
VFR_CUT_FRAMES = np.cumsum([n for _, n, _ in VFR_SEGMENTS])[:-1]


def expected_vfr_times() -> np.ndarray:
    """The presentation time of every frame of a :data:`VFR_SEGMENTS` clip, from its first frame."""
    return np.concatenate([start + np.arange(n) * dt
                           for start, (_, n, dt) in zip(VFR_STARTS[:-1], VFR_SEGMENTS, strict=True)])


def written_durations(path: Path) -> tuple[np.ndarray, float, float]:
    """(every frame's duration, video duration, audio duration) of a written file, from its own timestamps."""
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
        times = np.array([float(f.time) for f in frames])
        last = float(frames[-1].duration * frames[-1].time_base)
    _, _, adur = count_frames(path)
    return np.append(np.diff(times), last), float(times[-1] + last - times[0]), adur

