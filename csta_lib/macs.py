"""Multiply-accumulate counts (Table 3) with ``torch.utils.flop_counter.FlopCounterMode`` (MACs = FLOPs / 2).

* **Score prediction (SP)**: one CSTA forward at T steps, counted on
  :meth:`csta_lib.model.CSTA.forward_as_specified`, i.e. the architecture as specified: the three
  replicated input channels go through the key embedding and the trunk (our fast forward computes the
  identical channels once; the count describes the model, not that shortcut).
* **Feature extraction (FE)**: the GoogLeNet trunk up to pool5 on one 224×224 frame, times the number
  of 15-frame steps.

Counting runs on the ``meta`` device (shapes only, no arithmetic), so a count takes milliseconds.

**Paper convention.** Table 3's FE column is exactly ``mean steps × 1.40755 G`` on both datasets
(book method page, method-cost), while ``FlopCounterMode`` reads 1.49735 G for the same GoogLeNet frame: the paper's
counter reads :func:`paper_convention_factor` = 0.9400× of ours on plain GoogLeNet convolutions. The
"paper convention" count is our raw count times that factor, taken from the FE column alone (no fit to
SP). Applied to SP averaged per video over the real lengths it gives 9.80 G (SumMe) and 15.76 G (TVSum)
against the paper's 9.78 G / 15.73 G (0.2 % off), so Table 3 is a per-video mean read by a counter about
6 % below ours. The other candidate, the key embedding counted on one channel instead of three, removes
a similar amount from SP (≈0.62 G at T=293) but cannot explain the same 6 % on FE, where there is no key
embedding; :func:`score_prediction_breakdown` gives the per-module figures to compare.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from csta_lib.backbones import Trunk
from csta_lib.config import INPUT_DIM, ModelConfig, backbone_spec, get_config
from csta_lib.errors import CstaInputError
from csta_lib.model import CSTA

#: Table 3 as printed (G MACs): score prediction and feature extraction.
PAPER_TABLE3 = {"summe": {"sp": 9.78e9, "fe": 413.03e9}, "tvsum": {"sp": 15.73e9, "fe": 661.83e9}}
#: The paper's FE per frame: 413.03 G / 293.44 steps = 661.83 G / 470.20 steps (data.eccv16.MEAN_STEPS).
PAPER_FE_MACS_PER_FRAME = 1.40755e9
#: The frame the feature extractor sees: GoogLeNet's ImageNet crop (224).
FE_FRAME_SIZE = backbone_spec("googlenet").preprocessing.crop


def _count(fn: Callable[[], Any]) -> tuple[float, dict[str, float]]:
    """Run ``fn`` under FlopCounterMode; (total MACs, MACs per top-level module)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn()
    per_module: dict[str, float] = {}
    for name, ops in counter.get_flop_counts().items():
        parts = name.split(".")
        if len(parts) == 3 and parts[:2] == ["AsSpecified", "model"]:
            per_module[parts[2]] = sum(ops.values()) / 2.0
    return counter.get_total_flops() / 2.0, per_module


class AsSpecified(torch.nn.Module):
    """Runs a CSTA model's literal three-channel forward through ``__call__`` (so the counter sees
    the module tree: ``AsSpecified.model.cnn``, ``AsSpecified.model.key_embedding``, ...)."""

    def __init__(self, model: CSTA) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.forward_as_specified(features)


@lru_cache(maxsize=64)
def _meta_model(config: ModelConfig) -> AsSpecified:
    with torch.device("meta"):
        return AsSpecified(CSTA(config).eval())


@lru_cache(maxsize=4096)
def _sp_counts(config: ModelConfig, steps: int) -> tuple[float, tuple[tuple[str, float], ...]]:
    if steps < 1:
        raise CstaInputError(f"steps must be >= 1, got {steps}")
    model = _meta_model(config)
    features = torch.empty(steps, INPUT_DIM, device="meta")
    total, per_module = _count(lambda: model(features))
    return total, tuple(sorted(per_module.items()))


def score_prediction_macs(config: str | ModelConfig = "paper", steps: int = 293) -> float:
    """Raw ``FlopCounterMode`` MACs of one forward at ``steps`` steps, as specified (3 channels)."""
    return _sp_counts(get_config(config), int(steps))[0]


def score_prediction_breakdown(config: str | ModelConfig = "paper", steps: int = 293) -> dict[str, float]:
    """Raw MACs per top-level module (``cnn``, ``key_embedding``, ``value_embedding``, ``classifier``, ...)."""
    return dict(_sp_counts(get_config(config), int(steps))[1])


@lru_cache(maxsize=1)
def feature_extraction_macs_per_frame() -> float:
    """Raw MACs of the GoogLeNet trunk (to pool5) on one 3×224×224 frame."""
    with torch.device("meta"):
        trunk = Trunk("googlenet").eval()
    image = torch.empty(1, 3, FE_FRAME_SIZE, FE_FRAME_SIZE, device="meta")
    return _count(lambda: trunk.feature_map(image))[0]


def feature_extraction_macs(steps: float) -> float:
    """Raw FE MACs for a video of ``steps`` 15-frame steps (one GoogLeNet frame per step)."""
    return feature_extraction_macs_per_frame() * steps


def paper_convention_factor() -> float:
    """Paper's counter / FlopCounterMode, from the FE column: 1.40755 G / our GoogLeNet-frame count."""
    return PAPER_FE_MACS_PER_FRAME / feature_extraction_macs_per_frame()


def macs_summary(config: str | ModelConfig = "paper", steps: int = 293) -> dict[str, Any]:
    """Raw and paper-convention SP and FE counts at one length (the CLI's ``csta model macs`` output)."""
    factor = paper_convention_factor()
    sp = score_prediction_macs(config, steps)
    fe = feature_extraction_macs(steps)
    return {
        "steps": int(steps),
        "score_prediction_macs": sp,
        "score_prediction_macs_paper_convention": sp * factor,
        "feature_extraction_macs": fe,
        "feature_extraction_macs_paper_convention": fe * factor,
        "paper_convention_factor": factor,
        "paper_convention": "FlopCounterMode MACs x (1.40755 G / FlopCounterMode GoogLeNet 224x224 frame), "
        "i.e. the paper's counter as calibrated on Table 3's FE column",
        "score_prediction_breakdown": score_prediction_breakdown(config, steps),
    }


def table3_row(dataset: str, steps: Sequence[int], config: str | ModelConfig = "paper") -> dict[str, Any]:
    """Table 3 for one dataset: SP and FE, raw and paper convention, at the mean length and as the
    per-video mean over the videos' ``steps`` (the real lengths: :func:`csta_lib.runs.locator.video_steps`),
    beside the paper's figures."""
    if not steps:
        raise CstaInputError(f"{dataset}: no video lengths given")
    factor = paper_convention_factor()
    mean_steps = sum(steps) / len(steps)
    sp_per_video = [score_prediction_macs(config, s) for s in steps]
    sp_mean_video = sum(sp_per_video) / len(sp_per_video)
    sp_at_mean = score_prediction_macs(config, round(mean_steps))
    fe_mean_video = feature_extraction_macs(mean_steps)  # linear in steps: per-video mean = at the mean
    paper = PAPER_TABLE3.get(dataset, {})
    row = {
        "dataset": dataset,
        "videos": len(steps),
        "mean_steps": mean_steps,
        "sp_raw_at_mean_steps": sp_at_mean,
        "sp_paper_convention_at_mean_steps": sp_at_mean * factor,
        "sp_raw_per_video_mean": sp_mean_video,
        "sp_paper_convention_per_video_mean": sp_mean_video * factor,
        "fe_raw_per_video_mean": fe_mean_video,
        "fe_paper_convention_per_video_mean": fe_mean_video * factor,
        "paper_convention_factor": factor,
    }
    if paper:
        row.update(
            paper_sp=paper["sp"],
            paper_fe=paper["fe"],
            paper_sp_over_raw_per_video_mean=paper["sp"] / sp_mean_video,
            paper_sp_over_raw_at_mean_steps=paper["sp"] / sp_at_mean,
        )
    return row
