"""Frame encoders: 224x224 RGB frames -> 1024-d features, the input width of CSTA.

Two encoders, chosen by name (:data:`ENCODERS`):

- ``googlenet``: torchvision GoogLeNet, the 1024-d global average pool ("pool5") before the classifier,
  the network behind the eccv16 features the paper trains on. ImageNet weights come from the local
  file ``weights.torchvision.googlenet`` (data locator). Preprocessing: ImageNet mean/std, then the
  model's own ``transform_input`` (these weights were ported from TensorFlow and expect it; the official
  custom-video path skips it; book method page, method-kts). Features are **not** L2-normalised: the eccv16
  pool5 features a checkpoint is trained on are raw averages of ReLU outputs, and the official path's
  L2 normalisation is a domain shift we do not copy. Without the weights file this encoder fails with
  instructions, unless ``random_weights=True`` is passed explicitly: then it uses a fixed-seed random
  initialisation, says so loudly on stderr, and its features are labelled random everywhere.
- ``mobilenet_v1_1024``: the real ImageNet-pretrained 8-bit MobileNetV1 embedding extractor
  (``weights.coral.mobilenet_v1_embedding``, TFLite, run with ``ai-edge-litert``): uint8 frames in,
  the dequantised 1024-d average pool out. The default where the GoogLeNet weights are missing.

Video frames are resized to 224x224 whole (no centre crop) so that nothing at the frame edges is lost;
the tests check both encoders' weights by classifying the standard test photos, resized the same way.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from csta_lib.config import IMAGENET_MEAN, IMAGENET_STD
from csta_lib.errors import ConfigError, CstaInputError
from csta_lib.runs.locator import find, locate, missing_message, verify

ENCODERS = ("googlenet", "mobilenet_v1_1024")
#: The data file (locator name) of each encoder's weights: what the encoders load and the book's preflight checks.
ENCODER_WEIGHTS = {"googlenet": "weights.torchvision.googlenet",
                   "mobilenet_v1_1024": "weights.coral.mobilenet_v1_embedding"}
FEATURE_DIM = 1024
INPUT_SIZE = 224

# What each encoder's features are, as recorded in checkpoints ("features"."encoder") and sidecars.
FEATURE_KIND = {"googlenet": "googlenet_pool5", "mobilenet_v1_1024": "mobilenet_v1_1024"}
# Checkpoint feature names each encoder can feed: the eccv16 h5 features are GoogLeNet pool5 too.
COMPATIBLE_CHECKPOINT_FEATURES = {
    "googlenet": frozenset({"eccv16_googlenet_pool5", "googlenet_pool5", "googlenet"}),
    "mobilenet_v1_1024": frozenset({"mobilenet_v1_1024"}),
}
RANDOM_SEED = 0


@dataclass(frozen=True)
class EncoderInfo:
    """What produced a set of features: recorded in the sidecar."""

    name: str  # one of ENCODERS
    feature_kind: str  # FEATURE_KIND[name]
    weights: str | None  # weights file name, or None for random weights
    random_weights: bool

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "feature_kind": self.feature_kind, "weights": self.weights,
                "random_weights": self.random_weights}


class FrameEncoder(Protocol):
    """Anything that turns uint8 frames (N, 224, 224, 3) into float32 features (N, 1024)."""

    info: EncoderInfo

    def encode(self, frames: np.ndarray) -> np.ndarray: ...


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
        raise CstaInputError(
            f"frames must be uint8 (N, {INPUT_SIZE}, {INPUT_SIZE}, 3), got {frames.dtype} {frames.shape}")
    return np.ascontiguousarray(frames)


def _num_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


# --------------------------------------------------------------------------------------------------
# MobileNetV1 (TFLite)


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block (native libraries write there directly).

    TFLite prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` from C++ when the
    delegate is first applied; no environment variable or Python API turns it off, and it would appear
    on the line before any later error message. Used only around single-threaded set-up calls.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _tflite_interpreter(path: str, num_threads: int) -> Any:
    """A TFLite interpreter with its tensors allocated, created without its INFO line on stderr."""
    # The optional [video] extra, needed by this encoder only: the googlenet encoder works without it.
    from ai_edge_litert.interpreter import Interpreter

    with _native_stderr_silenced():
        interpreter = Interpreter(model_path=path, num_threads=num_threads)
        interpreter.allocate_tensors()  # applies the XNNPACK delegate now, while stderr is silenced
    return interpreter


def _dequantize(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if not scale:  # a float model output: nothing to undo
        return values.astype(np.float32)
    return (values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


class MobileNetV1Encoder:
    """The Coral 8-bit MobileNetV1 embedding extractor: (N, 224, 224, 3) uint8 -> (N, 1024) float32."""

    def __init__(self, num_threads: int | None = None) -> None:
        path = locate(ENCODER_WEIGHTS["mobilenet_v1_1024"])
        verify(ENCODER_WEIGHTS["mobilenet_v1_1024"])
        self._interpreter = _tflite_interpreter(str(path), num_threads or _num_threads())
        self._input = self._interpreter.get_input_details()[0]
        self._batch = int(self._input["shape"][0])  # allocated at creation for the declared batch
        self.info = EncoderInfo("mobilenet_v1_1024", FEATURE_KIND["mobilenet_v1_1024"], path.name, False)

    def _resize(self, batch: int) -> None:
        # The file declares batch 1; TFLite re-plans the graph for a larger batch, which is much faster
        # than invoking once per frame. Re-plan only when the batch size changes.
        if batch != self._batch:
            self._interpreter.resize_tensor_input(self._input["index"], [batch, INPUT_SIZE, INPUT_SIZE, 3])
            self._interpreter.allocate_tensors()
            self._batch = batch

    def encode_quantized(self, frames: np.ndarray) -> np.ndarray:
        """The raw uint8 embedding (N, 1024), as the Coral classifier head expects it."""
        frames = _check_frames(frames)
        if len(frames) == 0:
            return np.zeros((0, FEATURE_DIM), np.uint8)
        self._resize(len(frames))
        self._interpreter.set_tensor(self._input["index"], frames)
        self._interpreter.invoke()
        out = self._interpreter.get_output_details()[0]
        return self._interpreter.get_tensor(out["index"]).reshape(len(frames), -1)

    def encode(self, frames: np.ndarray) -> np.ndarray:
        quantized = self.encode_quantized(frames)
        if len(quantized) == 0:
            return np.zeros((0, FEATURE_DIM), np.float32)
        return _dequantize(quantized, self._interpreter.get_output_details()[0])


# --------------------------------------------------------------------------------------------------
# GoogLeNet (torchvision)


def googlenet_weights_path() -> Path | None:
    """Path of the torchvision GoogLeNet ImageNet weights, or None when absent."""
    return find(ENCODER_WEIGHTS["googlenet"])


class GoogLeNetEncoder:
    """torchvision GoogLeNet pool5: (N, 224, 224, 3) uint8 -> (N, 1024) float32 (not L2-normalised)."""

    def __init__(self, random_weights: bool = False, num_threads: int | None = None) -> None:
        path = googlenet_weights_path()
        if path is None and not random_weights:
            raise CstaInputError(
                "the googlenet encoder needs torchvision's ImageNet GoogLeNet weights.\n"
                + missing_message(ENCODER_WEIGHTS["googlenet"])
                + "\n  or use --encoder mobilenet_v1_1024 (real pretrained weights, available offline), or pass "
                "--random-weights to run GoogLeNet with RANDOM weights (meaningless features, for testing only)")
        # torch and torchvision for this encoder only: the mobilenet path leaves torch to the model's loading
        # thread (csta_lib.runs.video.pipeline), which imports it while the video decodes.
        import torch

        from csta_lib._torchvision import model_builder

        googlenet = model_builder("googlenet")
        if num_threads:
            torch.set_num_threads(num_threads)
        if path is not None and not random_weights:
            verify(ENCODER_WEIGHTS["googlenet"])
            model = googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=False)
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
            weights_name: str | None = path.name
        else:
            print("csta: WARNING: the googlenet encoder runs with RANDOM weights (seed "
                  f"{RANDOM_SEED}): its features are random, and so is any summary made from them.",
                  file=sys.stderr)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_SEED)
                model = googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=True)
            weights_name = None
        # Keep the 1024-d pool5 output: drop the auxiliary heads, the dropout and the classifier.
        model.aux_logits, model.aux1, model.aux2 = False, None, None
        model.dropout, model.fc = torch.nn.Identity(), torch.nn.Identity()
        self._model = model.eval()
        self._mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.info = EncoderInfo("googlenet", FEATURE_KIND["googlenet"], weights_name, weights_name is None)

    def encode(self, frames: np.ndarray) -> np.ndarray:
        if len(frames) == 0:
            return np.zeros((0, FEATURE_DIM), np.float32)
        import torch  # already imported by __init__ (see there)

        x = torch.from_numpy(_check_frames(frames)).permute(0, 3, 1, 2).float().div_(255.0)
        with torch.inference_mode():
            features = self._model((x - self._mean) / self._std)
        return features.numpy().astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------------
# choosing and running an encoder


def default_encoder_name() -> str:
    """``googlenet`` (the paper's extractor) where its ImageNet weights exist, else ``mobilenet_v1_1024``."""
    return "googlenet" if googlenet_weights_path() is not None else "mobilenet_v1_1024"


def build_encoder(name: str | None = None, *, random_weights: bool = False,
                  num_threads: int | None = None) -> FrameEncoder:
    """The encoder called ``name`` (None = :func:`default_encoder_name`).

    ``random_weights`` is only meaningful for ``googlenet``; asking for it with the MobileNet encoder
    (whose real weights always ship with the data) is a configuration error rather than silently ignored.
    """
    name = name or default_encoder_name()
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    if name == "googlenet":
        return GoogLeNetEncoder(random_weights=random_weights, num_threads=num_threads)
    if random_weights:
        raise ConfigError("--random-weights applies to the googlenet encoder only; "
                          "mobilenet_v1_1024 always uses its real pretrained weights")
    return MobileNetV1Encoder(num_threads=num_threads)


def encode_batches(encoder: FrameEncoder, batches: Iterable[np.ndarray],
                   on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Features (N, 1024) float32 of all frames in ``batches``; ``on_batch(n)`` reports progress."""
    parts = []
    for batch in batches:
        parts.append(encoder.encode(batch))
        if on_batch is not None:
            on_batch(len(batch))
    if not parts:
        return np.zeros((0, FEATURE_DIM), np.float32)
    features = np.concatenate(parts).astype(np.float32, copy=False)
    if not np.isfinite(features).all():
        raise RuntimeError(f"encoder {encoder.info.name} produced non-finite features")
    return features


def feature_mismatch(info: EncoderInfo, checkpoint_features: dict[str, Any] | None) -> str | None:
    """Why features from ``info`` do not match what a checkpoint was trained on, or None if they do."""
    if not checkpoint_features:
        return "the checkpoint does not record which features it was trained on"
    trained_on = str(checkpoint_features.get("encoder"))
    if trained_on == "untrained":
        return "the checkpoint is untrained (random model weights): its scores are meaningless"
    if checkpoint_features.get("surrogate"):
        return ("the checkpoint was trained on surrogate (synthetic) features, not on features of any real "
                f"encoder; its scores on {info.name} features are not meaningful")
    if info.random_weights:
        return f"the {info.name} encoder runs with random weights; the checkpoint was trained on {trained_on}"
    if trained_on not in COMPATIBLE_CHECKPOINT_FEATURES[info.name]:
        return f"the checkpoint was trained on {trained_on} features, the video is encoded with {info.name}"
    return None
