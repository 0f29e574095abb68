"""From a video file to step features: decoding, sampling and encoding in one call.

:func:`encode_video` is the one way the project turns a video into CSTA's input: ``csta summarize``
and ``csta data build`` both call it. Only the sampled frames are encoded (the official code runs
GoogLeNet on every frame and then keeps every 15th), in batches; see
:mod:`csta_lib.runs.video.encoders`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from csta_lib.data.eccv16 import FRAME_STEP
from csta_lib.runs.video.encoders import INPUT_SIZE, EncoderInfo, FrameEncoder, encode_batches
from csta_lib.runs.video.progress import Progress
from csta_lib.runs.video.sampling import SampledVideo, decode_samples

#: Frames per encoder call: TFLite re-plans its graph per batch size, and 32 keeps that rare.
ENCODE_BATCH = 32


@dataclass(frozen=True)
class EncodedVideo:
    """A video's step features with its sampling and timing: where summarizing and building a dataset start."""

    sampled: SampledVideo  # picks, n_frames, the time of every frame, the cut plan
    features: np.ndarray = field(repr=False)  # (T, 1024) float32, row k = frame sampled.picks[k]
    encoder: EncoderInfo

    @property
    def picks(self) -> np.ndarray:
        return self.sampled.picks

    @property
    def n_frames(self) -> int:
        return self.sampled.n_frames


def encode_video(path: str | Path, encoder: FrameEncoder, *, stride: int = FRAME_STEP,
                 interval_s: float | None = None, batch_size: int = ENCODE_BATCH,
                 progress: bool = False) -> EncodedVideo:
    """Decode ``path`` once, sample it (every ``stride``-th frame, or one frame per ``interval_s`` seconds:
    :func:`~csta_lib.runs.video.sampling.decode_samples`) and encode the samples in batches of
    ``batch_size`` with ``encoder``. Raises :class:`~csta_lib.runs.video.decode.VideoInputError` for a
    video that cannot be read."""
    samples: list[np.ndarray] = []
    sampled = decode_samples(path, lambda _, frame: samples.append(frame), stride=stride, size=INPUT_SIZE,
                             progress=progress, interval_s=interval_s)
    bar = Progress(progress, "encode", len(samples))
    try:
        features = encode_batches(encoder, (np.stack(samples[i:i + batch_size])
                                            for i in range(0, len(samples), batch_size)), bar.update)
    finally:
        bar.close()
    return EncodedVideo(sampled, features, encoder.info)
