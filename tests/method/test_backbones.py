"""The four trunks: official head replacement, minimum input heights, ImageNet weight loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from csta_lib.backbones import (
    Trunk,
    build_torchvision_model,
    load_weights_into,
    resize_rows,
)
from csta_lib.config import BACKBONES
from csta_lib.runs import locator
from csta_lib.errors import DataFormatError, MissingDataError
from csta_lib.model import build_model
from support import need


pytestmark = pytest.mark.usefixtures("one_thread")



@pytest.mark.parametrize("name", list(BACKBONES))
def test_trunk_width_and_minimum_height(name):
    spec = BACKBONES[name]
    trunk = Trunk(name).eval()
    with torch.no_grad():
        out = trunk.feature_map(torch.rand(1, 3, spec.min_height, 64))
        assert out.shape[1] == spec.dim
        if spec.min_height > 1:  # one row fewer crashes, as in the official code
            with pytest.raises(RuntimeError):
                trunk.feature_map(torch.rand(1, 3, spec.min_height - 1, 64))
        rows = trunk(torch.rand(1, 3, 3, 64))  # padded below the minimum, then cut back
        assert rows.shape == (3, spec.dim)


def test_resize_rows_average_pool_versus_bilinear():
    fmap = torch.tensor([0.0, 1.0, 2.0]).reshape(1, 1, 3, 1).expand(1, 1, 3, 4)
    # adaptive average pooling 3 -> 10 rows: replicated rows, neighbours averaged at bin edges (method page, method-cnn)
    pooled = resize_rows(fmap, 10, "adaptive_avg")[:, 0]
    assert pooled.tolist() == [0, 0, 0, 0.5, 1, 1, 1.5, 2, 2, 2]
    bilinear = resize_rows(fmap, 10, "bilinear")[:, 0]
    assert bilinear.shape == (10,) and bilinear[0] == 0 and bilinear[-1] == 2
    assert not torch.allclose(pooled, bilinear)


def test_googlenet_has_no_aux_heads_and_keeps_fc():
    net = build_torchvision_model("googlenet")
    keys = net.state_dict().keys()
    assert not any(k.startswith(("aux1", "aux2")) for k in keys) and "fc.weight" in keys
    assert net.transform_input is False


def test_missing_imagenet_weights_say_what_and_where():
    if locator.find("weights.torchvision.resnet18") is not None:
        pytest.skip("the torchvision resnet18 weights are present here")
    with pytest.raises(MissingDataError, match="resnet18-f37072fd.pth"):
        locator.backbone_weights("resnet18", "imagenet")


def test_wrong_state_dict_is_rejected_listing_keys(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    net = build_torchvision_model("resnet18")
    with pytest.raises(DataFormatError, match="missing .*unknown|mis-shaped"):
        load_weights_into(net, "resnet18", bad)
    with pytest.raises(MissingDataError, match="no such file"):
        load_weights_into(net, "resnet18", tmp_path / "absent.pth")
    with pytest.raises(MissingDataError, match=r"locator.backbone_weights\('resnet18', 'imagenet'\)"):
        load_weights_into(net, "resnet18", "imagenet")  # a name, not a file: says where names are resolved
    with pytest.raises(DataFormatError, match="not a file"):
        locator.backbone_weights("resnet18", tmp_path / "absent.pth")


def _photo(path) -> torch.Tensor:
    from PIL import Image

    image = Image.open(path).convert("RGB").resize((224, 224), Image.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0  # the converted model's input range [-1, 1]
    return torch.from_numpy(array).permute(2, 0, 1)


def imagenet_classifier(backbone: str, weights) -> torch.nn.Module:
    """The full torchvision classifier (trunk + its ImageNet head) with the weights of a file, in eval mode."""
    net = build_torchvision_model(backbone)
    load_weights_into(net, backbone, weights)
    return net.eval()


def test_converted_mobilenet_v2_classifies_the_test_photos():
    """End-to-end proof that backbone weights load: the converted ImageNet MobileNet-V2 gets the top-1s."""
    weights = "weights.converted.mobilenet_v2_coral"
    need(weights)
    labels = need("weights.coral.imagenet_labels").read_text().splitlines()
    expected = {"test_images.cat": "Egyptian cat", "test_images.grace_hopper": "military uniform",
                "test_images.parrot": "macaw", "test_images.hot_dog": "hotdog"}
    photos = torch.stack([_photo(need(name)) for name in expected])
    model = imagenet_classifier("mobilenet_v2", locator.backbone_weights("mobilenet_v2", weights))
    with torch.no_grad():
        top1 = model(photos).argmax(dim=1)
    # the converted model dropped the background class: label index = output index + 1
    got = [labels[int(i) + 1].split(",")[0] for i in top1]
    assert got == list(expected.values())


def test_converted_weights_load_into_a_csta_model():
    weights = locator.backbone_weights("mobilenet_v2", need("weights.converted.mobilenet_v2_coral"))
    model = build_model("paper.mobilenet_v2", weights=weights)
    reference = imagenet_classifier("mobilenet_v2", weights)
    assert torch.equal(model.cnn.net.features[0][0].weight, reference.features[0][0].weight)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_registry_preprocessing_is_that_of_torchvisions_imagenet_weights(name):
    """Each registry entry's preprocessing is what torchvision attaches to the ImageNet file the manifest names."""
    from csta_lib._torchvision import import_torchvision

    weights = import_torchvision().models.get_model_weights(name).IMAGENET1K_V1
    assert Path(weights.url).name == Path(locator.entry(f"weights.torchvision.{name}").path).name
    transform, expected = weights.transforms(), BACKBONES[name].preprocessing
    assert transform.resize_size == [expected.resize] and transform.crop_size == [expected.crop]
    assert transform.interpolation.value == expected.interpolation
    assert tuple(transform.mean) == expected.mean and tuple(transform.std) == expected.std
