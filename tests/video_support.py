"""Test videos and images for the video pipeline's tests (runs and cli): generated clips with known cuts, and still
images resized exactly as the pipeline resizes video samples."""

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
