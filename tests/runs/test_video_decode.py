"""Opening, probing, decoding and sampling videos (csta_lib.runs.video.decode, .sampling): indices, colours, real
clips, strides, the real time of every frame of variable-frame-rate video, sampling by time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from csta_lib.errors import CstaInputError
from csta_lib.runs import video as V
from support import need
from video_support import BLUE, GREEN, RED, VFR_DURATION, YELLOW, expected_vfr_times, make_synthetic_video


def test_sampling_indices_and_colours(cut_video: Path) -> None:
    sampled = V.sample_frames(cut_video, stride=15)
    assert sampled.n_frames == 240
    np.testing.assert_array_equal(sampled.picks, np.arange(0, 240, 15))
    assert sampled.frames.shape == (16, 224, 224, 3) and sampled.frames.dtype == np.uint8
    # every sample shows the colour of the segment its pick falls in: frames come in presentation order
    bounds = np.array([60, 135, 195])
    colours = np.array([RED, GREEN, BLUE, YELLOW])
    expected = colours[np.searchsorted(bounds, sampled.picks, side="right")]
    observed = np.median(sampled.frames[:, 100:120, 150:200].reshape(16, -1, 3), axis=1)
    assert np.abs(observed - expected).max() < 25
    assert sampled.frame_times.shape == (240,) and np.all(np.diff(sampled.frame_times) > 0)
    assert sampled.cut_plan.can_seek()


@pytest.mark.parametrize("name", ["videos.bikes", "videos.carphone", "videos.bigbuckbunny"])
def test_sampling_real_clips(name: str) -> None:
    path = need(name)
    info = V.probe_video(path)
    sampled = V.sample_frames(path, stride=15)
    assert sampled.n_frames == info.declared_frames  # these mp4s state their frame count
    assert len(sampled.picks) == len(sampled.frames) == -(-sampled.n_frames // 15)
    assert sampled.frames.shape[1:] == (224, 224, 3)
    assert sampled.decode_errors == 0


def test_stride_for_frame_rates() -> None:
    assert V.stride_for(25.0) == 15  # stride stays in frames by default
    assert V.stride_for(29.97, sample_fps=2) == 15
    assert V.stride_for(60.0, sample_fps=2) == 30
    assert V.stride_for(25.0, sample_fps=2) == 12
    assert V.stride_for(5.0, sample_fps=10) == 1
    for bad in (0, -3, 1.5):
        with pytest.raises(CstaInputError, match="stride"):
            V.stride_for(25.0, stride=bad)
    with pytest.raises(CstaInputError, match="sample_fps"):
        V.stride_for(25.0, sample_fps=0)


def test_vfr_timestamps_are_the_real_ones(vfr_video: Path) -> None:
    sampled = V.sample_frames(vfr_video, stride=15)
    assert sampled.n_frames == 135 and sampled.source_timestamps and sampled.variable_frame_rate
    np.testing.assert_allclose(sampled.frame_times - sampled.frame_times[0], expected_vfr_times(), atol=1e-3)
    assert sampled.duration_s == pytest.approx(VFR_DURATION, abs=1e-3)  # not n_frames / fps = 4.5 s
    np.testing.assert_array_equal(sampled.picks, np.arange(0, 135, 15))  # by stride: frames, whatever the times
    constant = V.sample_frames(make_synthetic_video(vfr_video.with_name("cfr.mp4"), [(RED, 30)]))
    assert not constant.variable_frame_rate and constant.duration_s == pytest.approx(30 / 25)


def test_sampling_by_time(vfr_video: Path, cut_video: Path) -> None:
    sampled = V.sample_frames(vfr_video, interval_s=0.5)
    times = sampled.pick_times
    # the first frame at or after every half second that has one: gaps only where frames are sparse
    expected = expected_vfr_times()
    due = np.arange(0, VFR_DURATION, 0.5)
    firsts = np.unique([np.argmax(expected >= d - 1e-3) for d in due if (expected >= d - 1e-3).any()])
    np.testing.assert_array_equal(sampled.picks, firsts)
    assert len(times) == len(firsts) and sampled.interval_s == 0.5
    assert np.allclose(times[13:], np.arange(6.5, VFR_DURATION, 0.5), atol=1e-3)  # even steps where frames are dense
    # a constant-rate video: exactly every k-th frame, as sampling with stride k
    np.testing.assert_array_equal(V.sample_frames(cut_video, interval_s=12 / 25).picks, np.arange(0, 240, 12))
    with pytest.raises(CstaInputError, match="interval"):
        V.sample_frames(cut_video, interval_s=0.0)
