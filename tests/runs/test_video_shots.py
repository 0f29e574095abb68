"""KTS shots of videos (csta_lib.runs.video.shots): the cuts of generated clips, shot lengths a person would call
shots on the real clips, the settings (one home, checked, recorded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support import need
from video_support import VFR_CUT_FRAMES, VFR_DURATION, VFR_STARTS

from csta_lib.errors import ConfigError
from csta_lib.runs import video as V

OFFICIAL = V.ShotSettings(vmax=1.0, min_shot_seconds=0, max_shot_seconds=None)  # the official custom-video setting


def test_shots_found_at_the_known_cuts(cut_video: Path) -> None:
    sampled = V.sample_frames(cut_video, stride=15)
    features = V.build_encoder("mobilenet_v1_1024").encode(sampled.frames)
    assert features.shape == (16, 1024)
    shots = V.shots_from_features(features, sampled.picks, sampled.n_frames, 15, fps=25.0)
    # whole video covered by contiguous inclusive shots
    assert shots[0, 0] == 0 and shots[-1, 1] == 239
    np.testing.assert_array_equal(shots[1:, 0], shots[:-1, 1] + 1)
    assert shots[1:, 0].tolist() == [60, 135, 195]  # the three cuts, and no cut inside a solid segment
    with pytest.raises(ValueError, match="fps"):  # seconds cannot become frames without the frame rate
        V.shots_from_features(features, sampled.picks, sampled.n_frames, 15)


@pytest.fixture(scope="module")
def trailer() -> V.EncodedVideo:
    """The Big Buck Bunny trailer (32.5 s, 812 frames at 25 fps, 55 steps) with MobileNet features."""
    return V.encode_video(need("videos.bbb_trailer"), V.build_encoder("mobilenet_v1_1024"))


def _lengths_s(encoded: V.EncodedVideo, shots: np.ndarray) -> np.ndarray:
    sampled = encoded.sampled
    return sampled.frame_ends[shots[:, 1]] - sampled.frame_times[shots[:, 0]]


def test_trailer_shots_are_shots_not_flashes(trailer: V.EncodedVideo) -> None:
    """The official setting cuts the trailer into flashes (issue 19: 29 shots, six of the seven selected 0.6 s
    long); the defaults cut where the content changes, no shot under a second or over ten."""
    official = _lengths_s(trailer, V.video_shots(trailer, OFFICIAL))
    shots = V.video_shots(trailer)
    lengths = _lengths_s(trailer, shots)
    assert official.mean() < 1.5 and official.min() < 1.0  # what the issue saw
    assert lengths.min() >= 1.0 and lengths.max() <= 10.0 and lengths.mean() >= 2 * official.mean()
    assert shots[0, 0] == 0 and shots[-1, 1] == trailer.n_frames - 1
    np.testing.assert_array_equal(shots[1:, 0], shots[:-1, 1] + 1)
    # every boundary is a change of content: the features on either side differ more than 90 % of the
    # neighbouring samples inside shots do
    unit = trailer.features / np.linalg.norm(trailer.features, axis=1, keepdims=True)
    change = 1 - (unit[1:] * unit[:-1]).sum(axis=1)  # between step k and k + 1
    at_cuts = np.searchsorted(trailer.picks, shots[1:, 0]) - 1
    assert change[at_cuts].min() > np.percentile(np.delete(change, at_cuts), 90)


@pytest.mark.parametrize("min_s,max_s", [(2.0, 6.0), (0.5, None)])
def test_shot_length_limits_hold(trailer: V.EncodedVideo, min_s: float, max_s: float | None) -> None:
    lengths = _lengths_s(trailer, V.video_shots(trailer, V.ShotSettings(min_shot_seconds=min_s,
                                                                        max_shot_seconds=max_s)))
    assert lengths.min() >= min_s - 1e-9 and (max_s is None or lengths.max() <= max_s + 1e-9)


def test_shot_settings_are_checked_and_converted() -> None:
    settings = V.ShotSettings(vmax=2.5, min_shot_seconds=1.0, max_shot_seconds=10.0)
    assert V.ShotSettings(**settings.as_dict()) == settings
    # 25 fps, a sample every 15 frames: 1 s = 25 frames = 2 steps (rounded up), 10 s = 16 steps (rounded down)
    assert settings.limits(55, 25.0, 15) == (26, 2, 16, 25)
    assert settings.limits(3, 25.0, 15)[0] == 0  # 1.8 s: no room for two shots of two steps
    # 1 to 1.5 s: 2 steps (1.2 s) to 2 steps cannot tile an odd number of steps; the minimum gives way
    assert V.ShotSettings(min_shot_seconds=1.0, max_shot_seconds=1.5).limits(55, 25.0, 15) == (54, 1, 2, 15)
    for bad in ({"vmax": 0}, {"vmax": float("nan")}, {"min_shot_seconds": -1}, {"min_shot_seconds": True},
                {"max_shot_seconds": 0}, {"min_shot_seconds": 3.0, "max_shot_seconds": 2.0}):
        with pytest.raises(ConfigError, match="shot setting"):
            V.ShotSettings(**bad)


def test_shot_settings_read_back_and_said_in_words() -> None:
    settings = V.ShotSettings(vmax=2.5, min_shot_seconds=0.5, max_shot_seconds=None)
    assert V.ShotSettings.from_dict(settings.as_dict()) == settings
    assert settings.text() == "KTS penalty weight 2.5, shots at least 0.5 s and no maximum"
    assert V.ShotSettings().text() == "KTS penalty weight 5, shots at least 1 s and at most 10 s"
    with pytest.raises(ConfigError, match="unknown shot setting.*mean_shot_seconds; known: vmax"):
        V.ShotSettings.from_dict({"mean_shot_seconds": 5.0})
    # what a summary's legend says: the shots and the settings that made them
    sidecar = {"shots": [[0, 9], [10, 29]], "shot_times": [[0.0, 0.4], [0.4, 1.2]],
               "shot_settings": V.ShotSettings().as_dict()}
    assert V.shots_text(sidecar) == ("2 KTS shots, 0.6 s on average (KTS penalty weight 5, shots at least 1 s and "
                                     "at most 10 s)")


def test_settings_fitting_a_budget() -> None:
    settings = V.ShotSettings()
    assert settings.fitting(30.0) == V.ShotSettings(max_shot_seconds=10.0)  # the budget holds any shot already
    assert settings.fitting(3.0) == V.ShotSettings(min_shot_seconds=1.0, max_shot_seconds=3.0)
    assert settings.fitting(1.5) == V.ShotSettings(min_shot_seconds=0.75, max_shot_seconds=1.5)
    assert settings.fitting(0.6) is None  # shorter than the shortest shot allowed


def test_short_shots_merge_into_their_shorter_neighbour() -> None:
    shots = np.array([[0, 9], [10, 12], [13, 40], [41, 42]])
    np.testing.assert_array_equal(V.merge_short_shots(shots, 5), [[0, 12], [13, 42]])
    np.testing.assert_array_equal(V.merge_short_shots(shots, 0), shots)
    np.testing.assert_array_equal(V.merge_short_shots(np.array([[0, 3]]), 10), [[0, 3]])  # one shot stays


def test_vfr_shots_at_the_real_cut_times(vfr_video: Path, checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """Shot times are the frames' real times. The official setting, which cuts at all four colour changes of
    this 9-step clip (the default penalty keeps its single-step and two-step segments together)."""
    record = V.summarize(vfr_video, tmp_path / "s.mp4", checkpoints["mobilenet"], budget=0.3,
                         shot_settings=OFFICIAL).sidecar
    assert record["shot_settings"] == OFFICIAL.as_dict()
    starts = {s for s, _ in record["shots"][1:]}
    assert set(VFR_CUT_FRAMES.tolist()) <= starts, record["shots"]
    times = dict(zip((s for s, _ in record["shots"]), (t for t, _ in record["shot_times"]), strict=True))
    for frame, when in zip(VFR_CUT_FRAMES, VFR_STARTS[1:-1], strict=True):
        assert times[int(frame)] == pytest.approx(when, abs=2e-3)  # e.g. frame 60 at 6.5 s, not 60 / 30 = 2 s
    assert record["shot_times"][-1][1] == pytest.approx(VFR_DURATION, abs=2e-3)
    assert record["variable_frame_rate"] is True and record["timestamps"] == "source"
    assert record["pick_times"][2] == pytest.approx(0.5, abs=2e-3)  # frame 30: the first green one
    axis = V.timeline_figure(record).axes[0]  # drawn over real time, not frames / fps
    assert axis.get_xlim()[1] == pytest.approx(VFR_DURATION, abs=2e-3)
