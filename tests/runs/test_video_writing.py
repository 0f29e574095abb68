"""Writing summary videos (csta_lib.runs.video.writing): the right frames with their real durations, and the sound
cut at the same instants."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import numpy as np
import pytest

from csta_lib.runs import video as V
from support import need
from video_support import BLUE, RED, YELLOW, count_frames, written_durations


@pytest.mark.parametrize("seekable", [True, False])
def test_written_duration_matches_selected_shots(cut_video: Path, tmp_path: Path, seekable: bool) -> None:
    sampled = V.sample_frames(cut_video, stride=15)
    plan = sampled.cut_plan if seekable else dataclasses.replace(sampled.cut_plan, seekable=False)
    shots = np.array([[10, 39], [140, 160], [200, 239]])
    out = tmp_path / "summary.mp4"
    written = V.write_summary_video(cut_video, out, shots, plan)
    total = int((shots[:, 1] - shots[:, 0] + 1).sum())
    assert written.n_frames == total and written.audio_kept and len(written.thumbnails) == 3
    n, vdur, adur = count_frames(out)
    assert n == total
    assert abs(vdur - total / 25) <= 1 / 25 + 1e-9
    assert adur is not None and abs(adur - total / 25) < 0.1  # AAC frame padding only
    # the right frames in the right order: red (10-39), blue (140-160), yellow (200-239)
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert np.abs(np.median(frames[0][20:40, 40:60].reshape(-1, 3), axis=0) - RED).max() < 25
    assert np.abs(np.median(frames[35][20:40, 40:60].reshape(-1, 3), axis=0) - BLUE).max() < 25
    assert np.abs(np.median(frames[-1][20:40, 40:60].reshape(-1, 3), axis=0) - YELLOW).max() < 25


def test_write_real_trailer_excerpt_with_audio(tmp_path: Path) -> None:
    path = need("videos.bigbuckbunny")  # 1280x720, 25 fps, 5.1 AAC
    sampled = V.sample_frames(path, stride=15)
    shots = np.array([[5, 30], [90, 120]])
    out = tmp_path / "s.mp4"
    written = V.write_summary_video(path, out, shots, sampled.cut_plan)
    n, vdur, adur = count_frames(out)
    assert n == written.n_frames == 57
    assert abs(vdur - 57 / 25) <= 1 / 25 + 1e-9 and abs(adur - 57 / 25) < 0.1


def test_vfr_audio_is_cut_at_the_real_times(vfr_video: Path, tmp_path: Path) -> None:
    """Shots 60-74 (blue, 6.5-7.0 s, 1/30-s frames) and 90-104 (yellow, 7.5-11.25 s, 1/4-s frames): 4.25 s."""
    sampled = V.sample_frames(vfr_video, stride=15)
    out = tmp_path / "s.mp4"
    written = V.write_summary_video(vfr_video, out, np.array([[60, 74], [90, 104]]), sampled.cut_plan)
    assert written.duration_s == pytest.approx(4.25, abs=1e-3)
    with av.open(str(out)) as c:
        video = c.streams.video[0]  # the container's own figure, as players and ffprobe show it
        assert float(video.duration * video.time_base) == pytest.approx(4.25, abs=1e-3)
        rate = c.streams.audio[0].codec_context.sample_rate
        sound = np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])
    assert abs(len(sound) / rate - 4.25) < 0.1

    def pitch(piece: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft(piece * np.hanning(len(piece))))
        return float(np.fft.rfftfreq(len(piece), 1 / rate)[np.argmax(spectrum)])

    assert pitch(sound[int(0.1 * rate):int(0.4 * rate)]) == pytest.approx(660, abs=15)  # blue: segment 3
    assert pitch(sound[int(1.0 * rate):int(4.0 * rate)]) == pytest.approx(880, abs=15)  # yellow: segment 4


def test_audio_cut_ending_between_samples(vfr_video: Path, tmp_path: Path) -> None:
    """A run ending a third of a sample into an audio frame (6.5333 s x 16 kHz) used to loop forever."""
    sampled = V.sample_frames(vfr_video, stride=15)
    out = tmp_path / "s.mp4"
    written = V.write_summary_video(vfr_video, out, np.array([[60, 60], [62, 64]]), sampled.cut_plan)
    _, vdur, adur = written_durations(out)
    assert written.duration_s == pytest.approx(4 / 30, abs=1e-3) and vdur == pytest.approx(4 / 30, abs=1e-3)
    assert adur is not None and abs(adur - vdur) < 0.1
