"""Fixtures of the video tests (tests/runs/test_video_*.py): generated clips made once per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from video_support import BLUE, GREEN, RED, VFR_SEGMENTS, YELLOW, make_synthetic_video


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 solid-colour segments, cuts at frames 60, 135, 195 (multiples of the stride 15); 25 fps, audio."""
    path = tmp_path_factory.mktemp("videos") / "cuts.mp4"
    return make_synthetic_video(path, [(RED, 60), (GREEN, 75), (BLUE, 60), (YELLOW, 45)], audio_rate=16000)


@pytest.fixture(scope="module", params=["mkv", "mp4"])
def vfr_video(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vfr") / f"vfr.{request.param}"
    return make_synthetic_video(path, VFR_SEGMENTS, fps=30, audio_rate=16000)


@pytest.fixture(scope="module")
def checkpoints(random_checkpoints: dict[str, Path]) -> dict[str, Path]:
    return random_checkpoints

