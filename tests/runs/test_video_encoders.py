"""Frame encoders: shapes, real pretrained weights (checked by classifying test photos), honest fallbacks."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from ai_edge_litert.interpreter import Interpreter
from support import need
from video_support import load_image

from csta_lib.errors import ConfigError, CstaInputError
from csta_lib.runs.locator import find
from csta_lib.runs.video import encoders as E

TEST_IMAGES = {  # expected top-1 ImageNet label of each standard test photo
    "test_images.cat": "Egyptian cat",
    "test_images.grace_hopper": "military uniform",
    "test_images.parrot": "macaw",
    "test_images.hot_dog": "hotdog",
}



def imagenet_labels() -> list[str]:
    """The 1001 Coral ImageNet labels (index 0 = background), short names (before the first comma)."""
    return [line.split(",")[0].strip() for line in find("weights.coral.imagenet_labels").read_text().splitlines()]


def mobilenet_top1(encoder: E.MobileNetV1Encoder, frames: np.ndarray) -> list[str]:
    """Top-1 label of each frame: the raw uint8 embedding through the Coral classifier head (1024 -> 1001)."""
    head = Interpreter(model_path=str(find("weights.coral.mobilenet_v1_head")), num_threads=1)
    head.allocate_tensors()
    head_in, head_out = head.get_input_details()[0], head.get_output_details()[0]
    labels = imagenet_labels()
    top1 = []
    for embedding in encoder.encode_quantized(frames):
        head.set_tensor(head_in["index"], embedding.reshape(head_in["shape"]))
        head.invoke()
        top1.append(labels[int(np.argmax(head.get_tensor(head_out["index"])))])
    return top1


def googlenet_top1(encoder: E.GoogLeNetEncoder, frames: np.ndarray) -> list[str]:
    """Top-1 label of each frame: pool5 through the classifier of the weights file (torchvision's 1000 classes are
    Coral's 1..1000)."""
    state = torch.load(find("weights.torchvision.googlenet"), map_location="cpu", weights_only=True)
    logits = torch.from_numpy(encoder.encode(frames)) @ state["fc.weight"].T + state["fc.bias"]
    labels = imagenet_labels()
    return [labels[int(i) + 1] for i in logits.argmax(dim=1)]


@pytest.fixture(scope="module")
def test_photos() -> np.ndarray:
    need(*TEST_IMAGES)
    return np.stack([load_image(find(name)) for name in TEST_IMAGES])


@pytest.fixture(scope="module")
def mobilenet() -> E.MobileNetV1Encoder:
    need("weights.coral.mobilenet_v1_embedding")
    return E.MobileNetV1Encoder()


def test_mobilenet_weights_classify_test_images(mobilenet: E.MobileNetV1Encoder, test_photos: np.ndarray) -> None:
    need("weights.coral.mobilenet_v1_head", "weights.coral.imagenet_labels")
    assert mobilenet_top1(mobilenet, test_photos) == list(TEST_IMAGES.values())


def test_mobilenet_features(mobilenet: E.MobileNetV1Encoder, test_photos: np.ndarray) -> None:
    features = mobilenet.encode(test_photos)
    assert features.shape == (4, 1024) and features.dtype == np.float32
    assert np.isfinite(features).all() and features.min() >= 0  # an average pool of ReLU6 outputs
    # batching changes nothing: one frame at a time gives the same features
    one_by_one = np.concatenate([mobilenet.encode(test_photos[i:i + 1]) for i in range(4)])
    np.testing.assert_allclose(features, one_by_one, atol=1e-6)
    # different photos give clearly different features
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    assert (unit @ unit.T)[~np.eye(4, dtype=bool)].max() < 0.9
    assert mobilenet.encode(np.zeros((0, 224, 224, 3), np.uint8)).shape == (0, 1024)
    assert mobilenet.info.name == "mobilenet_v1_1024" and not mobilenet.info.random_weights


def test_encode_batches_and_frame_checks(mobilenet: E.MobileNetV1Encoder, test_photos: np.ndarray) -> None:
    seen: list[int] = []
    features = E.encode_batches(mobilenet, [test_photos[:3], test_photos[3:]], seen.append)
    assert features.shape == (4, 1024) and seen == [3, 1]
    with pytest.raises(CstaInputError, match="uint8"):
        mobilenet.encode(test_photos.astype(np.float32))
    with pytest.raises(CstaInputError, match="224"):
        mobilenet.encode(np.zeros((1, 100, 100, 3), np.uint8))


def test_default_encoder_follows_the_googlenet_weights() -> None:
    expected = "googlenet" if find("weights.torchvision.googlenet") else "mobilenet_v1_1024"
    assert E.default_encoder_name() == expected


def test_googlenet_without_weights_fails_with_instructions() -> None:
    if find("weights.torchvision.googlenet") is not None:
        pytest.skip("GoogLeNet ImageNet weights are present here")
    with pytest.raises(CstaInputError, match="googlenet-1378be20.pth") as info:
        E.build_encoder("googlenet")
    assert "--random-weights" in str(info.value) and "mobilenet_v1_1024" in str(info.value)


def test_googlenet_random_weights_are_loud_and_labelled(test_photos: np.ndarray,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    encoder = E.build_encoder("googlenet", random_weights=True)
    assert "RANDOM" in capsys.readouterr().err
    assert encoder.info.random_weights and encoder.info.weights is None
    features = encoder.encode(test_photos[:2])
    assert features.shape == (2, 1024) and features.dtype == np.float32 and np.isfinite(features).all()
    assert E.feature_mismatch(encoder.info, {"encoder": "eccv16_googlenet_pool5", "surrogate": False})


def test_googlenet_imagenet_weights_classify_test_images(test_photos: np.ndarray) -> None:
    need("weights.torchvision.googlenet", "weights.coral.imagenet_labels")
    encoder = E.GoogLeNetEncoder()
    assert not encoder.info.random_weights
    assert googlenet_top1(encoder, test_photos) == list(TEST_IMAGES.values())
    assert encoder.encode(test_photos).shape == (4, 1024)


def test_build_encoder_rejects_bad_requests() -> None:
    with pytest.raises(ConfigError, match="unknown encoder"):
        E.build_encoder("resnet9000")
    with pytest.raises(ConfigError, match="random-weights"):
        E.build_encoder("mobilenet_v1_1024", random_weights=True)


def test_feature_mismatch_rules() -> None:
    mobile = E.EncoderInfo("mobilenet_v1_1024", "mobilenet_v1_1024", "x.tflite", False)
    google = E.EncoderInfo("googlenet", "googlenet_pool5", "googlenet-1378be20.pth", False)
    real_h5 = {"encoder": "eccv16_googlenet_pool5", "surrogate": False, "imagenet_weights": None}
    assert E.feature_mismatch(google, real_h5) is None
    assert "eccv16_googlenet_pool5" in E.feature_mismatch(mobile, real_h5)
    assert E.feature_mismatch(mobile, {"encoder": "mobilenet_v1_1024", "surrogate": False}) is None
    assert "surrogate" in E.feature_mismatch(google, {"encoder": "surrogate", "surrogate": True})
    assert "does not record" in E.feature_mismatch(google, None)


def test_tflite_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    """TFLite's C++ 'INFO: Created TensorFlow Lite XNNPACK delegate' line would precede any later error message."""
    need("weights.coral.mobilenet_v1_embedding")
    capfd.readouterr()
    encoder = E.MobileNetV1Encoder()
    encoder.encode(np.zeros((3, E.INPUT_SIZE, E.INPUT_SIZE, 3), np.uint8))
    encoder.encode(np.zeros((1, E.INPUT_SIZE, E.INPUT_SIZE, 3), np.uint8))
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    print("stderr still works", file=sys.stderr)  # the file descriptor was restored
    assert "stderr still works" in capfd.readouterr().err
