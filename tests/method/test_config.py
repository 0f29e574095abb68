"""ModelConfig validation, the preset registry and the official flags of every preset."""

from __future__ import annotations

import json

import pytest

from csta_lib.config import (
    PRESETS,
    TABLE2_ORDER,
    ModelConfig,
    direct_cnn_config,
    get_config,
    official_flags,
    official_model_name,
)
from csta_lib.runs.locator import PROJECT_ROOT
from csta_lib.errors import ConfigError, CstaInputError

OFFICIAL_KEYS = PROJECT_ROOT / "tests" / "fixtures" / "official" / "official_state_dict_keys.json"

EXPECTED_PRESETS = [
    "paper", "table2.baseline", "table2.attention", "table2.att_d", "table2.kv", "table2.pe", "table2.cls",
    "fig4.googlenet", "fig4.mobilenet_v2", "fig4.efficientnet_b0", "fig4.resnet18",
    "paper.mobilenet_v2", "paper.efficientnet_b0", "paper.resnet18",
]


def official_presets() -> dict:
    if not OFFICIAL_KEYS.is_file():
        pytest.skip(f"reference file {OFFICIAL_KEYS.name} is not present")
    return json.loads(OFFICIAL_KEYS.read_text())["presets"]


def test_preset_names_exactly_as_the_issue_lists():
    assert sorted(PRESETS) == sorted(EXPECTED_PRESETS)
    assert all(isinstance(c, ModelConfig) for c in PRESETS.values())


def test_fig4_googlenet_is_the_table2_baseline():
    assert PRESETS["fig4.googlenet"] == PRESETS["table2.baseline"]


def test_official_flags_match_the_reference_for_every_listed_preset():
    for name, entry in official_presets().items():
        config = PRESETS[name]
        assert official_model_name(config) == entry["official_model_name"], name
        assert official_flags(config) == entry["official_flags"], name


def test_table2_rows_differ_exactly_by_the_added_component():
    added = [
        None,
        {"value_source", "softmax_axis", "classifier"},  # (+) attention module on the direct CNN
        {"softmax_axis"},  # (+) Att_D
        {"key_value_embedding"},  # (+) key, value embedding
        {"positional_encoding"},  # (+) positional encoding
        {"cls_token"},  # (+) X_CLS
        {"skip_connection"},  # (+) skip connection = paper
    ]
    for previous, current, fields in zip(TABLE2_ORDER, TABLE2_ORDER[1:], added[1:]):
        before, after = PRESETS[previous].to_dict(), PRESETS[current].to_dict()
        assert {k for k in before if before[k] != after[k]} == fields, (previous, current)
    assert (PRESETS["table2.att_d"].key_value_embedding, PRESETS["table2.kv"].key_value_embedding) == (None, "kv")


def test_conflicting_switches_are_rejected_naming_them():
    with pytest.raises(ConfigError, match="skip_connection='KC'.*key_value_embedding"):
        ModelConfig(backbone="mobilenet_v2", key_value_embedding=None)
    with pytest.raises(ConfigError, match="balance"):
        ModelConfig(softmax_axis="T", balance="T")
    with pytest.raises(ConfigError, match="value_source='cnn'"):
        ModelConfig(value_source="cnn", key_value_embedding="kv", skip_connection=None)
    with pytest.raises(ConfigError, match="softmax_axis"):
        ModelConfig(softmax_axis="X")
    with pytest.raises(ConfigError, match="attention_dropout_rate"):
        ModelConfig(attention_dropout_rate=1.5)
    # a ConfigError is a CstaInputError: the CLI reports it as bad input
    assert issubclass(ConfigError, CstaInputError)


def test_deviation_switches_default_to_the_code():
    paper = PRESETS["paper"]
    assert paper.skip_norm == "batchnorm" and paper.cnn_resize == "adaptive_avg"
    assert paper.replace(skip_norm="layernorm").skip_norm == "layernorm"
    with pytest.raises(ConfigError):
        official_flags(paper.replace(cnn_resize="bilinear"))


def test_fig4_readings():
    assert direct_cnn_config("resnet18").softmax_axis is None  # literal mean(A^2)
    assert direct_cnn_config("resnet18", "softmax_t").softmax_axis == "T"
    with pytest.raises(ConfigError, match="literal"):
        direct_cnn_config("resnet18", "other")


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ConfigError, match="paper.resnet18"):
        get_config("paper.vgg")
    assert get_config(PRESETS["paper"]) is PRESETS["paper"]


def test_dict_round_trip():
    for config in PRESETS.values():
        assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match="unknown"):
        ModelConfig.from_dict({"nope": 1})
