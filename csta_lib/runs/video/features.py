"""From a video file to step features: decoding, sampling and encoding in one call, overlapped.

:func:`encode_video` is the one way the project turns a video into CSTA's input: ``csta summarize``
and ``csta data build`` both call it. Only the sampled frames are encoded (the official code runs
GoogLeNet on every frame and then keeps every 15th), in batches; see
:mod:`csta_lib.runs.video.encoders`.

Decoding and encoding overlap: a thread decodes and samples (FFmpeg and the resize release the GIL)
and hands each sample over a bounded queue, while the calling thread encodes them batch by batch (TFLite
and torch release the GIL too). The first batch is encoded while the rest of the video is still being
decoded, and at most a few batches of samples are held at any time, whatever the video's length.
Features do not depend on how the samples are batched (the MobileNet embedding is 8-bit: exact; GoogLeNet
runs in eval mode, each frame on its own).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from csta_lib.data.eccv16 import FRAME_STEP
from csta_lib.runs.video.encoders import INPUT_SIZE, EncoderInfo, FrameEncoder, encode_batches
from csta_lib.runs.video.progress import Progress
from csta_lib.runs.video.sampling import SampledVideo, decode_samples

#: Frames per encoder call: small, so that encoding starts early and little is left when decoding ends
#: (TFLite's time per frame hardly depends on the batch size; it re-plans only when the size changes).
ENCODE_BATCH = 8
#: Batches of samples the decoder may run ahead of the encoder (bounded memory on long videos).
QUEUED_BATCHES = 4


@dataclass(frozen=True)
class EncodedVideo:
    """A video's step features with its sampling and timing: where summarizing and building a dataset start."""

    sampled: SampledVideo  # picks, n_frames, the time of every frame, the cut plan (frames not kept: None)
    features: np.ndarray = field(repr=False)  # (T, 1024) float32, row k = frame sampled.picks[k]
    encoder: EncoderInfo

    @property
    def picks(self) -> np.ndarray:
        return self.sampled.picks

    @property
    def n_frames(self) -> int:
        return self.sampled.n_frames


class _Stopped(Exception):
    """Raised inside the decoding thread when the encoding side gave up (its error is the one reported)."""


class _Decoder(threading.Thread):
    """Decodes and samples a video in the background, putting every sample on :attr:`samples` (then None)."""

    def __init__(self, path: str | Path, *, stride: int, interval_s: float | None, capacity: int,
                 progress: bool) -> None:
        super().__init__(name="csta-decode", daemon=True)
        self.samples: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=capacity)
        self.result: SampledVideo | None = None
        self.error: BaseException | None = None
        self._stop_event = threading.Event()
        self._args = (path, stride, interval_s, progress)

    def _put(self, _: int, frame: np.ndarray) -> None:
        while not self._stop_event.is_set():
            try:
                self.samples.put(frame, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def run(self) -> None:
        path, stride, interval_s, progress = self._args
        try:
            self.result = decode_samples(path, self._put, stride=stride, size=INPUT_SIZE, progress=progress,
                                         interval_s=interval_s)
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread, which raises it
            self.error = exc
        finally:
            self._finish()

    def _finish(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.samples.put(None, timeout=0.1)
                return
            except queue.Full:
                continue

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _batches(decoder: _Decoder, size: int) -> Iterator[np.ndarray]:
    """Batches (n, 224, 224, 3) of the decoder's samples as they come."""
    batch: list[np.ndarray] = []
    while (frame := decoder.samples.get()) is not None:
        batch.append(frame)
        if len(batch) == size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def encode_video(path: str | Path, encoder: FrameEncoder, *, stride: int = FRAME_STEP,
                 interval_s: float | None = None, batch_size: int = ENCODE_BATCH,
                 progress: bool = False) -> EncodedVideo:
    """Decode ``path`` once, sample it (every ``stride``-th frame, or one frame per ``interval_s`` seconds:
    :func:`~csta_lib.runs.video.sampling.decode_samples`) and encode the samples in batches of
    ``batch_size`` with ``encoder`` while the decoding goes on. Raises
    :class:`~csta_lib.runs.video.decode.VideoInputError` for a video that cannot be read."""
    decoder = _Decoder(path, stride=stride, interval_s=interval_s, capacity=QUEUED_BATCHES * batch_size,
                       progress=progress)
    bar = Progress(progress, "encode", None)
    decoder.start()
    try:
        features = encode_batches(encoder, _batches(decoder, batch_size), bar.update)
    finally:
        bar.close()
        decoder.stop()
    if decoder.error is not None:
        raise decoder.error
    if decoder.result is None or len(features) != len(decoder.result.picks):
        raise RuntimeError(f"{len(features)} features for the samples of {path}: decoding ended early")
    return EncodedVideo(decoder.result, features, encoder.info)
