"""The CSTA model: shapes, attention maps, official numerics and state dicts, short videos, bad input."""

from __future__ import annotations

import json
from functools import lru_cache

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from csta_lib.config import BACKBONES, PRESETS, ModelConfig
from csta_lib.runs.locator import PROJECT_ROOT
from csta_lib.errors import CstaInputError, DataFormatError
from csta_lib.model import (
    CSTA,
    build_model,
    count_parameters,
    load_official_state_dict,
    pool_rows,
    to_official_state_dict,
)

OFFICIAL_KEYS = PROJECT_ROOT / "tests" / "fixtures" / "official" / "official_state_dict_keys.json"


def _quick_trunc_normal(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """A cheap stand-in for torchvision's truncated-normal init (slow on CPU); tests do not depend on it."""
    with torch.no_grad():
        return tensor.normal_(mean, std).clamp_(a, b)


@pytest.fixture(autouse=True)
def quick_init(monkeypatch):
    monkeypatch.setattr(torch.nn.init, "trunc_normal_", _quick_trunc_normal)


pytestmark = pytest.mark.usefixtures("one_thread")


@lru_cache(maxsize=None)
def eval_model(name: str) -> CSTA:
    torch.manual_seed(0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.nn.init, "trunc_normal_", _quick_trunc_normal)
        model = build_model(name).eval()
    randomise_state(model)
    return model


def randomise_state(model: CSTA, seed: int = 1) -> None:
    """Non-trivial CLS rows and BatchNorm statistics, so the eval-mode paths are really exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if model.cls_token is not None:
            model.cls_token.copy_(torch.randn(model.cls_token.shape, generator=g) * 0.5)
        for module in model.cnn.modules():
            if isinstance(module, nn.Conv2d):  # He-scaled, so activations stay O(1) through the trunk
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=g) + 0.5)


def features(steps: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(steps, 1024, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------
# A straightforward implementation of the method page (book/method.md) on the official state dict (key names, shapes),
# written step by step as the reference describes the official forward (modules built on the fly).


@lru_cache(maxsize=None)
def torchvision_net(backbone: str) -> nn.Module:
    from csta_lib.backbones import build_torchvision_model

    return build_torchvision_model(backbone).eval()


def trunk_rows(sd: dict, backbone: str, image: torch.Tensor) -> torch.Tensor:
    spec = BACKBONES[backbone]
    net = torchvision_net(backbone)
    prefix = spec.official_prefix + "."
    net.load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)})
    out = image
    for name in spec.trunk_layers:
        out = getattr(net, name)(out)
    n_frame = image.shape[2]
    out = nn.AdaptiveAvgPool2d((n_frame, 1))(out)
    return out[0, :, :, 0].permute(1, 0)


def reference_forward(sd: dict, config: ModelConfig, x: torch.Tensor) -> torch.Tensor:
    n_frame = x.shape[0]
    e = x.unsqueeze(0).expand(3, -1, -1).unsqueeze(0)
    if config.cls_token:
        e = torch.cat([sd["CLS"], e], dim=2)
    if config.value_source == "cnn":  # Figure 4 literal: S = mean_c A^2
        a = trunk_rows(sd, config.backbone, e)
        return nn.AdaptiveAvgPool1d(1)(a * a).squeeze(-1)
    key = F.linear(e, sd["key_embedding.weight"], sd["key_embedding.bias"]) if config.embeds_key else e
    x_att = trunk_rows(sd, config.backbone, key)
    if config.skip_connection == "KC":
        x_att = x_att + key.squeeze(0)[0]
        x_att = F.batch_norm(x_att[None, None], sd["layernorm1.running_mean"], sd["layernorm1.running_var"],
                             sd["layernorm1.weight"], sd["layernorm1.bias"], False, 0.1, 1e-5)[0, 0]
    if config.positional_encoding == "FPE":
        x_att = x_att + sd["Positional_encoding_op.pe"][: x_att.shape[0]]
    x0 = e.squeeze(0)[0]
    value = F.linear(x0, sd["value_embedding.weight"], sd["value_embedding.bias"]) if config.embeds_value else x0
    if config.softmax_axis == "TD":
        mixed = value * torch.softmax(x_att, dim=0) + value * torch.softmax(x_att, dim=1)
    else:
        mixed = value * torch.softmax(x_att, dim=0)
    mixed = nn.AdaptiveAvgPool2d((n_frame, mixed.shape[1]))(mixed.unsqueeze(0)).squeeze(0)
    hidden = F.layer_norm(F.relu(F.linear(mixed, sd["linear1.0.weight"], sd["linear1.0.bias"])), (mixed.shape[1],),
                          sd["linear1.3.weight"], sd["linear1.3.bias"], 1e-6)
    return torch.sigmoid(F.linear(hidden, sd["linear2.0.weight"], sd["linear2.0.bias"])).squeeze(-1)


def assert_close_scores(ours: torch.Tensor, ref: torch.Tensor) -> None:
    tol = 1e-5 * torch.clamp(ref.abs(), min=1.0)
    assert ours.shape == ref.shape
    assert bool(((ours - ref).abs() <= tol).all()), float((ours - ref).abs().max())


@pytest.mark.parametrize("name", [n for n in PRESETS if not n.startswith("fig4.") or n == "fig4.resnet18"])
def test_matches_a_straightforward_reference_implementation(name):
    model = eval_model(name)
    sd = to_official_state_dict(model)
    # the shortest lengths the official code accepts (T+1 = 15 rows with CLS, 15 without), and T = 1 elsewhere
    shortest = (14 if model.config.cls_token else 15) if model.config.backbone == "googlenet" else 1
    steps = (shortest, 17)
    with torch.no_grad():
        for t in steps:
            x = features(t, seed=t)
            assert_close_scores(model(x), reference_forward(sd, model.config, x))


def test_fast_forward_equals_the_literal_three_channel_forward():
    model = eval_model("paper")
    x = features(30)
    with torch.no_grad():
        fast, att_fast = model(x, return_attention=True)
        literal, att_literal = model.forward_as_specified(x, return_attention=True)
    assert torch.allclose(fast, literal, atol=1e-6)
    for key in att_fast:
        assert torch.allclose(att_fast[key], att_literal[key], atol=1e-5), key


# ---------------------------------------------------------------------------------------------------
# Shapes, attention maps, short videos


@pytest.mark.parametrize("name", list(PRESETS))
def test_shapes_for_every_preset(name):
    model = eval_model(name)
    with torch.no_grad():
        for t in (1, 2, 17, 293):
            scores = model(features(t))
            assert scores.shape == (t,) and bool(torch.isfinite(scores).all())


@pytest.mark.parametrize("name", list(PRESETS))
def test_short_videos_for_every_preset(name):
    model = eval_model(name)
    with torch.no_grad():
        for t in (1, 2, 8, 13, 14, 15):
            scores, attention = model(features(t, seed=t), return_attention=True)
            rows = t + 1 if model.config.cls_token else t
            assert scores.shape == (t,) and bool(torch.isfinite(scores).all()), t
            assert attention["attention_logits"].shape == (rows, model.config.dim)


def test_short_video_rule_pads_the_trunk_input_only():
    """Below 15 rows the trunk sees the last row replicated up to 15 and its output is cut back."""
    model = eval_model("paper")
    trunk = model.cnn
    image = torch.rand(1, 3, 9, 1024)
    padded = torch.cat([image, image[:, :, -1:].expand(-1, -1, 6, -1)], dim=2)
    with torch.no_grad():
        assert torch.equal(trunk(image), trunk(padded)[:9])
        with pytest.raises(RuntimeError):
            trunk.feature_map(image)  # the raw trunk, as in the official code, cannot run 9 rows


@pytest.mark.parametrize("name", ["paper", "table2.attention", "paper.resnet18"])
def test_attention_maps_are_normalised(name):
    model = eval_model(name)
    with torch.no_grad():
        _, att = model(features(20), return_attention=True)
    rows = 21 if model.config.cls_token else 20
    for key in ("attention_logits", "temporal_attention", "spatial_attention", "mixed_features"):
        assert att[key].shape == (rows, model.config.dim), key
    assert torch.allclose(att["temporal_attention"].sum(dim=0), torch.ones(model.config.dim), atol=1e-5)
    assert torch.allclose(att["spatial_attention"].sum(dim=1), torch.ones(rows), atol=1e-5)


def test_eval_is_deterministic_and_train_uses_dropout():
    model = eval_model("paper")
    x = features(20)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        try:
            torch.manual_seed(0)
            a = model(x)
            b = model(x)
        finally:
            model.eval()
    assert not torch.equal(a, b)


def test_batchnorm_skip_norm_train_vs_eval():
    torch.manual_seed(0)
    model = build_model("paper")
    model.attention_dropout = None  # isolate the norm
    pe = model.positional_encoding.table[:25]
    with torch.no_grad():
        _, att = model.train()(features(24), return_attention=True)
        # train: batch statistics of all (T+1) x D entries of this one video, gamma 1, beta 0
        normed = att["attention_logits"] - pe
        assert abs(float(normed.mean())) < 1e-4 and abs(float(normed.var(unbiased=False)) - 1) < 1e-3
        assert int(model.skip_norm.num_batches_tracked) == 1

        norm = model.skip_norm
        norm.reset_running_stats()
        y = torch.randn(11, 1024) * 3 + 2
        train_out = model._norm(y)
        assert torch.allclose(train_out, (y - y.mean()) / (y.var(unbiased=False) + 1e-5) ** 0.5, atol=1e-4)
        assert torch.allclose(norm.running_mean, 0.1 * y.mean().reshape(1), atol=1e-5)
        assert torch.allclose(norm.running_var, 0.9 + 0.1 * y.var().reshape(1), atol=1e-4)
        model.eval()
        eval_out = model._norm(y)
        # eval: the running statistics, a fixed affine map that does not standardise this video
        expected = (y - norm.running_mean) / (norm.running_var + 1e-5) ** 0.5
        assert torch.allclose(eval_out, expected, atol=1e-5)
        assert int(norm.num_batches_tracked) == 1


def test_layernorm_deviation_switch_normalises_each_row():
    torch.manual_seed(0)
    model = build_model(PRESETS["paper"].replace(skip_norm="layernorm", attention_dropout=False)).train()
    with torch.no_grad():
        _, att = model(features(10), return_attention=True)
    normed = att["attention_logits"] - model.positional_encoding.table[:11]
    assert torch.allclose(normed.mean(dim=1), torch.zeros(11), atol=1e-4)


def test_bilinear_deviation_switch_changes_the_trunk_head():
    torch.manual_seed(0)
    a = build_model("paper").eval()
    b = build_model(PRESETS["paper"].replace(cnn_resize="bilinear")).eval()
    b.load_state_dict(a.state_dict())
    image = torch.rand(1, 3, 120, 1024)
    with torch.no_grad():
        # train-mode BatchNorm: with random init and eval statistics the trunk output is ~1e-12
        rows_a, rows_b = a.cnn.train()(image), b.cnn.train()(image)
        a.eval(), b.eval()
        assert bool(torch.isfinite(b(features(40))).all())
    # the trunk map has 4 rows here: average pooling replicates them, bilinear interpolation blends them
    assert rows_a.shape == rows_b.shape == (120, 1024)
    assert float((rows_a - rows_b).abs().max()) > 1e-3 * float(rows_a.abs().max())


def test_cls_pooling_is_a_two_tap_average():
    m = torch.rand(6, 4)
    assert torch.allclose(pool_rows(m, 5), (m[:-1] + m[1:]) / 2)


def test_other_switches_build_and_run():
    x = features(20)
    variants = [
        dict(balance="BD"), dict(balance="T"), dict(scale="T_D"), dict(positional_encoding="LPE"),
        dict(positional_encoding="RPE"), dict(positional_encoding="CPE", positional_encoding_shape="T"),
        dict(positional_encoding_shape="T"), dict(cls_pool="CNN"), dict(cls_pool="SM"),
        dict(skip_connection="CF"), dict(skip_connection="IF"), dict(softmax_axis="D"), dict(softmax_axis=None),
        dict(positional_encoding_way="Transformer"), dict(classifier=False), dict(key_value_embedding="k"),
        dict(attention_dropout=False),
    ]
    for change in variants:
        model = build_model(PRESETS["paper"].replace(**change))
        for mode in (model.train, model.eval):
            mode()
            scores = model(x)
            assert scores.shape == (20,) and bool(torch.isfinite(scores).all()), change


# ---------------------------------------------------------------------------------------------------
# Parameters, state dicts


def test_parameter_counts_of_the_reference():
    expected = {
        "paper": 8_754_851,
        "paper.mobilenet_v2": 6_494_467,
        "paper.efficientnet_b0": 7_641_603,
        "paper.resnet18": 12_493_379,
        "table2.baseline": 5_599_904,
    }
    for name, count in expected.items():
        assert count_parameters(eval_model(name)) == count, name
    paper = eval_model("paper")
    assert count_parameters(paper, "all") == 9_779_851  # the unused GoogLeNet fc included
    counts = [count_parameters(eval_model(n)) for n in ("table2.attention", "table2.kv")]
    assert [round(c / 1e6, 2) for c in counts] == [6.65, 8.75]


def test_official_state_dict_keys_shapes_and_dtypes():
    if not OFFICIAL_KEYS.is_file():
        pytest.skip(f"reference file {OFFICIAL_KEYS.name} is not present")
    reference = json.loads(OFFICIAL_KEYS.read_text())["presets"]
    for name, entry in reference.items():
        exported = to_official_state_dict(eval_model(name))
        listed = {e["key"]: (tuple(e["shape"]), e["dtype"]) for e in entry["state_dict"]}
        ours = {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in exported.items()}
        assert ours == listed, name


def test_official_state_dict_round_trip():
    source = eval_model("paper")
    torch.manual_seed(5)
    target = build_model("paper").eval()
    load_official_state_dict(target, to_official_state_dict(source))
    x = features(33)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))


def test_official_checkpoint_file(tmp_path):
    """A file saved by the official code (``torch.save(model.state_dict())``) loads into the same preset only."""
    source = eval_model("paper.resnet18")
    path = tmp_path / "split0.pt"
    torch.save(to_official_state_dict(source), path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    loaded = load_official_state_dict(build_model("paper.resnet18"), state).eval()
    with torch.no_grad():
        assert torch.equal(loaded(features(9)), source(features(9)))
    with pytest.raises(DataFormatError):
        load_official_state_dict(build_model("paper.mobilenet_v2"), state)


def test_official_state_dict_is_strict():
    model = build_model("table2.kv")
    sd = to_official_state_dict(model)
    extra = dict(sd, **{"layernorm1.weight": torch.ones(1)})
    with pytest.raises(DataFormatError, match="unknown keys \\['layernorm1.weight'\\]"):
        load_official_state_dict(model, extra)
    missing = {k: v for k, v in sd.items() if k != "key_embedding.bias"}
    with pytest.raises(DataFormatError, match="missing keys \\['key_embedding.bias'\\]"):
        load_official_state_dict(model, missing)
    wrong = dict(sd, **{"linear2.0.weight": torch.zeros(2, 1024)})
    with pytest.raises(DataFormatError, match="linear2.0.weight: expected \\(1, 1024\\)"):
        load_official_state_dict(model, wrong)


# ---------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.zeros(1024), "2-D"),
        (torch.zeros(1, 5, 1024), "2-D"),
        (torch.zeros(5, 512), "1024 wide"),
        (torch.zeros(0, 1024), "T = 0"),
        (torch.full((5, 1024), float("nan")), "NaN"),
        (torch.zeros(5, 1024, dtype=torch.int64), "floating"),
        ([[0.0] * 1024], "torch.Tensor"),
    ],
)
def test_bad_input_is_rejected_before_any_layer(bad, message):
    model = eval_model("paper")
    ran = []
    handle = model.cnn.register_forward_pre_hook(lambda *_: ran.append(1))
    try:
        with pytest.raises(CstaInputError, match=message):
            model(bad)
    finally:
        handle.remove()
    assert not ran


def test_float64_input_is_accepted():
    model = eval_model("paper.resnet18")
    x = features(5)
    with torch.no_grad():
        assert torch.allclose(model(x.double()), model(x))
