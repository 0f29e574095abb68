"""MAC counts (Table 3): a hand-computed small case, the reference figures and the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from csta_lib import macs
from csta_lib.backbones import Trunk
from csta_lib.cli import main
from csta_lib.runs import locator

D = 1024


def conv_macs_by_hand(trunk: Trunk, image: torch.Tensor) -> int:
    """Sum over the trunk's convolutions of output elements x (C_in / groups) x kernel area."""
    total = 0

    def hook(module: nn.Conv2d, _inputs, output):
        nonlocal total
        kh, kw = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in trunk.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        trunk.feature_map(image)
    for handle in handles:
        handle.remove()
    return total


def test_small_case_by_hand():
    steps = 20
    parts = macs.score_prediction_breakdown("paper", steps)
    rows = steps + 1
    assert parts["key_embedding"] == 3 * rows * D * D  # three replicated channels, as specified
    assert parts["value_embedding"] == rows * D * D
    assert parts["classifier"] == steps * D * D + steps * D  # Linear(D, D) and Linear(D, 1) on T rows
    with torch.device("meta"):
        trunk = Trunk("googlenet")
    assert parts["cnn"] == conv_macs_by_hand(trunk, torch.empty(1, 3, rows, D, device="meta"))
    assert macs.score_prediction_macs("paper", steps) == sum(parts.values())


def test_direct_cnn_counts_only_the_trunk_on_t_rows():
    with torch.device("meta"):
        trunk = Trunk("resnet18")
    expected = conv_macs_by_hand(trunk, torch.empty(1, 3, 17, D, device="meta"))
    assert macs.score_prediction_macs("fig4.resnet18", 17) == expected


def test_feature_extraction_per_frame():
    with torch.device("meta"):
        trunk = Trunk("googlenet")
    per_frame = macs.feature_extraction_macs_per_frame()
    assert per_frame == conv_macs_by_hand(trunk, torch.empty(1, 3, 224, 224, device="meta"))
    assert per_frame == pytest.approx(1.4974e9, rel=1e-3)  # the common counters' ~1.5 G
    assert macs.paper_convention_factor() == pytest.approx(0.9400, abs=1e-4)


def test_reference_figures_at_the_mean_lengths():
    assert macs.score_prediction_macs("paper", 293) / 1e9 == pytest.approx(10.39, abs=0.01)
    assert macs.score_prediction_macs("paper", 470) / 1e9 == pytest.approx(16.83, abs=0.01)
    parts = macs.score_prediction_breakdown("paper", 293)
    assert parts["cnn"] / 1e9 == pytest.approx(8.845, abs=1e-3)


def test_table3_per_video_mean_over_real_lengths():
    for name in ("summe.gt", "tvsum.annotations"):
        if locator.find(name) is None:
            pytest.skip(f"annotation data {name!r} not present")
    summe, tvsum = (macs.table3_row(d, locator.video_steps(d)) for d in ("summe", "tvsum"))
    assert summe["mean_steps"] == pytest.approx(293.44) and tvsum["mean_steps"] == pytest.approx(470.20)
    # the paper's SP is 0.9381x / 0.9384x of FlopCounterMode's per-video mean (method page, method-cost)
    assert summe["paper_sp_over_raw_per_video_mean"] == pytest.approx(0.9381, abs=2e-4)
    assert tvsum["paper_sp_over_raw_per_video_mean"] == pytest.approx(0.9384, abs=2e-4)
    # FE in the paper convention reproduces the printed figures; SP within 0.3 %
    assert summe["fe_paper_convention_per_video_mean"] / 1e9 == pytest.approx(413.03, abs=0.01)
    assert tvsum["fe_paper_convention_per_video_mean"] / 1e9 == pytest.approx(661.83, abs=0.01)
    assert summe["sp_paper_convention_per_video_mean"] / 1e9 == pytest.approx(9.78, rel=3e-3)
    assert tvsum["sp_paper_convention_per_video_mean"] / 1e9 == pytest.approx(15.73, rel=3e-3)


def test_cli_macs_and_info_json(capsys):
    assert main(["model", "macs", "paper", "--steps", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out["score_prediction_macs"], float)
    assert out["score_prediction_macs_paper_convention"] == pytest.approx(
        out["score_prediction_macs"] * macs.paper_convention_factor())
    assert main(["model", "info", "paper", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parameters"] == 8_754_851
    assert main(["model", "macs", "paper", "--steps", "0", "--json"]) == 2
    assert main(["model", "info", "no.such.preset"]) == 2
    assert "valid presets" in capsys.readouterr().err
