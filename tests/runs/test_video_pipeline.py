"""The summarize pipeline (csta_lib.runs.video.pipeline) end to end: sidecar, outputs written atomically together,
bad inputs and budgets, corrupt streams, variable frame rates, pictures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import pytest

from csta_lib.errors import CstaInputError
from csta_lib.runs import video as V
from csta_lib.runs.video import pipeline
from support import need
from video_support import (BLUE, RED, VFR_DURATION, count_frames, expected_vfr_times, make_synthetic_video,
                           written_durations)


@pytest.fixture(scope="module")
def summary_run(cut_video: Path, checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
                ) -> tuple[V.SummaryResult, Path]:
    folder = tmp_path_factory.mktemp("summary")
    result = V.summarize(cut_video, folder / "summary.mp4", checkpoints["mobilenet"],
                         contact_sheet_png=folder / "sheet.png", timeline_png=folder / "timeline.png", budget=0.3)
    return result, folder


def test_summarize_end_to_end(summary_run: tuple[V.SummaryResult, Path]) -> None:
    result, tmp_path = summary_run
    out = tmp_path / "summary.mp4"
    record = result.sidecar
    assert json.loads((tmp_path / "summary.json").read_text()) == record
    assert record["n_frames"] == 240 and record["fps"] == 25.0 and record["encoder"] == "mobilenet_v1_1024"
    assert record["feature_mismatch"] is False and record["budget"] == 0.3
    assert len(record["scores"]) == record["n_samples"] == 16
    shots = np.array(record["shots"])
    assert shots[0, 0] == 0 and shots[-1, 1] == 239
    chosen = record["selected_shots"]
    assert chosen and all(set(s) >= {"start_frame", "end_frame", "start_time", "end_time"} for s in chosen)
    assert [[s["start_frame"], s["end_frame"]] for s in chosen] == [sh for sh in record["shots"]
                                                                   if any(sh[0] == s["start_frame"] for s in chosen)]
    total = sum(s["end_frame"] - s["start_frame"] + 1 for s in chosen)
    assert total <= int(0.3 * 240) and total == record["summary_n_frames"]
    assert chosen[0]["start_time"] == pytest.approx(chosen[0]["start_frame"] / 25, abs=1e-3)
    n, vdur, _ = count_frames(out)
    assert n == total and abs(vdur - total / 25) <= 1 / 25 + 1e-9
    assert record["audio_kept"] is True
    for png in ("sheet.png", "timeline.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sheet.png", "summary.json", "summary.mp4",
                                                         "timeline.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert all((p.stat().st_mode & 0o777) == 0o666 & ~umask for p in tmp_path.iterdir())  # not mkstemp's 0600


def test_summarize_short_real_clip(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """carphone: 120 frames at 29.97 fps, 8 samples (fewer than the GoogLeNet trunk's 15 rows), no audio."""
    path = need("videos.carphone")
    # one static shot (KTS finds no cut): only a budget of the whole video can hold it
    with pytest.raises(CstaInputError, match="no shot fits the budget"):
        V.summarize(path, tmp_path / "s.mp4", checkpoints["mobilenet"])
    record = V.summarize(path, tmp_path / "s.mp4", checkpoints["mobilenet"], budget=1.0).sidecar
    assert record["n_frames"] == 120 and record["n_samples"] == 8 and record["audio_kept"] is False
    assert record["summary_n_frames"] == 120 and len(record["scores"]) == 8
    assert record["fps"] == pytest.approx(30000 / 1001)
    n, vdur, adur = count_frames(tmp_path / "s.mp4")
    assert n == record["summary_n_frames"] and adur is None
    assert abs(vdur - n * 1001 / 30000) <= 1001 / 30000


def test_feature_mismatch_is_an_error_unless_allowed(cut_video: Path, checkpoints: dict[str, Path],
                                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.mp4"
    with pytest.raises(CstaInputError, match="allow-feature-mismatch"):
        V.summarize(cut_video, out, checkpoints["surrogate"], budget=0.3)
    assert not list(tmp_path.iterdir())
    record = V.summarize(cut_video, out, checkpoints["surrogate"], allow_feature_mismatch=True, budget=0.3).sidecar
    assert record["feature_mismatch"] is True and "surrogate" in record["feature_mismatch_reason"]
    assert "feature mismatch" in capsys.readouterr().err


def _assert_clean(folder: Path) -> None:
    leftovers = [p.name for p in folder.iterdir() if p.suffix in {".mp4", ".json", ".part", ".png"}]
    assert not leftovers, leftovers


def _write_silence(container: av.container.OutputContainer) -> None:
    stream = container.add_stream("aac", rate=16000)
    stream.codec_context.layout = "mono"
    for i in range(10):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, i * 1024
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


@pytest.fixture
def bad_inputs(tmp_path: Path) -> dict[str, Path]:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    audio = tmp_path / "audio.m4a"
    with av.open(str(audio), "w") as c:
        _write_silence(c)
    one = make_synthetic_video(tmp_path / "one.mp4", [(RED, 1)])
    zero = tmp_path / "zero.mkv"  # a video stream without a single frame, beside some sound
    with av.open(str(zero), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        _write_silence(c)
        c.mux(vs.encode(None))
    return {"missing": tmp_path / "nope.mp4", "text": text, "audio": audio, "one": one, "zero": zero}


@pytest.mark.parametrize("case,message", [
    ("missing", "does not exist"), ("text", "not a readable video"), ("audio", "no video stream"),
    ("one", "1 decodable video frame"), ("zero", "0 decodable video frame"),
])
def test_bad_videos(bad_inputs: dict[str, Path], checkpoints: dict[str, Path], tmp_path: Path,
                    case: str, message: str) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(CstaInputError, match=message):
        V.summarize(bad_inputs[case], out_dir / "s.mp4", checkpoints["mobilenet"])
    _assert_clean(out_dir)


def test_corrupt_stream_is_decoded_around(tmp_path: Path, checkpoints: dict[str, Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    good = make_synthetic_video(tmp_path / "good.mp4", [(RED, 100), (BLUE, 100)], gop=10)
    data = bytearray(good.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 3000] = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    sampled = V.sample_frames(broken, stride=15)
    assert sampled.decode_errors > 0 and 2 <= sampled.n_frames < 200
    assert not sampled.cut_plan.can_seek()  # written by counting, skipping the same packets
    out = tmp_path / "out" / "s.mp4"
    record = V.summarize(broken, out, checkpoints["mobilenet"], budget=0.6).sidecar
    assert record["decode_errors"] == sampled.decode_errors and record["n_frames"] == sampled.n_frames
    assert "corrupt packet" in capsys.readouterr().err
    assert count_frames(out)[0] == record["summary_n_frames"]


@pytest.mark.parametrize("budget", [0, -0.1, 1.5, float("nan"), True])
def test_budget_outside_unit_interval(cut_video: Path, checkpoints: dict[str, Path], tmp_path: Path,
                                      budget: float) -> None:
    with pytest.raises(CstaInputError, match="budget"):
        V.summarize(cut_video, tmp_path / "s.mp4", checkpoints["mobilenet"], budget=budget)
    _assert_clean(tmp_path)


def test_budget_smaller_than_every_shot(cut_video: Path, checkpoints: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(CstaInputError, match="no shot fits the budget"):
        V.summarize(cut_video, tmp_path / "s.mp4", checkpoints["mobilenet"], budget=0.05)  # 12 frames
    _assert_clean(tmp_path)


def test_unwritable_and_bad_outputs(cut_video: Path, checkpoints: dict[str, Path], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(CstaInputError, match="is a file, not a folder"):
        V.summarize(cut_video, blocker / "s.mp4", checkpoints["mobilenet"])
    with pytest.raises(CstaInputError, match="extension"):
        V.summarize(cut_video, tmp_path / "s.avi", checkpoints["mobilenet"])
    with pytest.raises(CstaInputError, match="refusing to overwrite an input"):
        V.summarize(cut_video, cut_video, checkpoints["mobilenet"])
    with pytest.raises(CstaInputError, match="--timeline .* is the input --checkpoint"):
        V.summarize(cut_video, tmp_path / "s.mp4", checkpoints["mobilenet"], timeline_png=checkpoints["mobilenet"])
    with pytest.raises(CstaInputError, match="is a directory"):
        V.summarize(cut_video, tmp_path / "s.mp4", checkpoints["mobilenet"], sidecar=tmp_path)
    with pytest.raises(CstaInputError, match="checkpoint"):
        V.summarize(cut_video, tmp_path / "s.mp4", tmp_path / "missing.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_no_partial_output_when_a_late_stage_fails(cut_video: Path, checkpoints: dict[str, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_sheet(*args: object, **kwargs: object) -> None:
        raise RuntimeError("contact sheet failed")

    monkeypatch.setattr(pipeline, "contact_sheet", broken_sheet)
    with pytest.raises(RuntimeError, match="contact sheet failed"):
        V.summarize(cut_video, tmp_path / "s.mp4", checkpoints["mobilenet"], contact_sheet_png=tmp_path / "c.png",
                    budget=0.3)
    assert list(tmp_path.iterdir()) == []  # the finished video was a temporary and went with the rest


def test_timeline_and_contact_sheet_render(summary_run: tuple[V.SummaryResult, Path]) -> None:
    result, _ = summary_run
    sheet = V.contact_sheet(result.thumbnails, result.sidecar)
    assert sheet.size[0] > 0 and len(result.thumbnails) == len(result.sidecar["selected_shots"])
    fig = V.timeline_figure(result.sidecar)
    assert len(fig.axes) == 1 and fig.axes[0].get_xlim()[1] == pytest.approx(240 / 25)


def test_vfr_summary_keeps_real_durations_and_audio(vfr_video: Path, checkpoints: dict[str, Path],
                                                    tmp_path: Path) -> None:
    """The issue-14 contract: sidecar durations are the real ones; video and audio of the summary agree."""
    out = tmp_path / "s.mp4"
    record = V.summarize(vfr_video, out, checkpoints["mobilenet"], budget=0.3).sidecar
    assert record["duration_s"] == pytest.approx(VFR_DURATION, abs=0.01)
    durations, vdur, adur = written_durations(out)
    assert record["summary_duration_s"] == pytest.approx(vdur, abs=0.01)
    assert adur is not None and abs(adur - vdur) < 0.1  # AAC frame padding only
    # every written frame lasts as long as it did in the source
    source = np.diff(np.append(expected_vfr_times(), VFR_DURATION))
    kept = np.concatenate([source[s["start_frame"]:s["end_frame"] + 1] for s in record["selected_shots"]])
    assert len(durations) == len(kept) == record["summary_n_frames"]
    np.testing.assert_allclose(durations, kept, atol=2e-3)
    # the selected shots' times add up to the summary; the budget is a fraction of the real time
    spans = sum(s["end_time"] - s["start_time"] for s in record["selected_shots"])
    assert spans == pytest.approx(vdur, abs=0.01) and vdur <= 0.3 * VFR_DURATION + 0.01


def _phone_like_clip(path: Path) -> float:
    """30 fps with +-3 ms jitter and a 15-fps (low light) stretch; 48 kHz stereo sound that starts 0.3 s
    before the first frame. Returns the video's real duration."""
    from fractions import Fraction

    rng = np.random.default_rng(0)
    base = Fraction(1, 90000)
    low_light = (np.arange(240) >= 90) & (np.arange(240) < 160)
    intervals = np.where(low_light, 1 / 15, 1 / 30) + rng.uniform(-3e-3, 3e-3, 240)
    starts = 0.3 + np.concatenate([[0.0], np.cumsum(intervals)[:-1]])
    end = float(starts[-1] + intervals[-1])
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=30)
        vs.width, vs.height, vs.pix_fmt = 96, 64, "yuv420p"
        vs.codec_context.time_base = vs.time_base = base
        vs.options = {"preset": "ultrafast"}
        aus = out.add_stream("aac", rate=48000)
        aus.codec_context.layout = "stereo"
        sample = 0
        for i, start in enumerate(starts):
            image = np.full((64, 96, 3), (i // 60) * 60, np.uint8)
            image[:, (i * 3) % 96] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = round(start / base), base
            out.mux(vs.encode(frame))
            until = round((starts[i + 1] if i + 1 < len(starts) else end) * 48000)
            tone = (0.1 * np.sin(2 * np.pi * 440 * (sample + np.arange(until - sample)) / 48000)).astype(np.float32)
            chunk = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
            chunk.sample_rate, chunk.pts = 48000, sample
            out.mux(aus.encode(chunk))
            sample = until
        out.mux(vs.encode(None))
        out.mux(aus.encode(None))
    return end - 0.3


def test_phone_like_clip_sampled_by_time(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    clip = tmp_path / "phone.mp4"
    duration = _phone_like_clip(clip)
    out = tmp_path / "s.mp4"
    record = V.summarize(clip, out, checkpoints["mobilenet"], sample_fps=2, budget=0.3,
                         allow_feature_mismatch=True).sidecar
    assert record["sampling"] == "time" and record["variable_frame_rate"] is True
    assert record["duration_s"] == pytest.approx(duration, abs=0.01)  # the last frame: as the muxer stored it
    steps = np.diff(record["pick_times"])
    assert np.all(np.abs(steps - record["sample_interval_s"]) < 1 / 15 + 4e-3)  # even in time, within a frame
    with av.open(str(out)) as c:
        video, audio = c.streams.video[0], c.streams.audio[0]
        video_s, audio_s = float(video.duration * video.time_base), float(audio.duration * audio.time_base)
        assert audio.codec_context.layout.name == "stereo"
    assert record["summary_duration_s"] == pytest.approx(video_s, abs=1e-3) and abs(audio_s - video_s) < 0.1


def test_checkpoint_with_nan_weights_is_an_input_error(cut_video: Path, tmp_path: Path) -> None:
    import torch

    from csta_lib.model import build_model
    from csta_lib.runs.checkpoint import save_checkpoint

    model = build_model("paper").eval()
    with torch.no_grad():
        next(iter(model.parameters())).fill_(float("nan"))
    broken = save_checkpoint(tmp_path / "nan.pt", model, {"encoder": "mobilenet_v1_1024", "surrogate": False,
                                                         "imagenet_weights": None}, {}, preset="paper")
    out_dir = tmp_path / "out"
    with pytest.raises(CstaInputError, match="non-finite scores"):
        V.summarize(cut_video, out_dir / "s.mp4", broken, budget=0.3)
    assert not out_dir.exists()


def test_shots_longer_than_the_budget_are_cut_again(checkpoints: dict[str, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Two 7.8-s shots and a 15 % budget (2.34 s): rather than "no shot fits", the video is cut again into shots
    of at most 2.34 s, said in a warning and in the sidecar."""
    clip = make_synthetic_video(tmp_path / "long.mp4", [(RED, 195), (BLUE, 195)])  # cut at a sample (15 x 13)
    record = V.summarize(clip, tmp_path / "s.mp4", checkpoints["mobilenet"]).sidecar
    budget_s = 0.15 * 390 / 25
    assert "cut again" in capsys.readouterr().err and record["shot_settings"] == V.DEFAULT_SHOTS.as_dict()
    assert record["shots_recut_for_budget"] == V.ShotSettings(max_shot_seconds=budget_s).as_dict()
    lengths = np.diff(np.asarray(record["shot_times"]), axis=1)
    assert lengths.max() <= budget_s + 1e-6 and record["summary_duration_s"] <= budget_s + 1e-6
    assert record["selected_shots"] and any(s == 195 for s, _ in record["shots"])  # the real cut is still one
    plain = V.summarize(clip, tmp_path / "t.mp4", checkpoints["mobilenet"], budget=0.6).sidecar
    assert plain["shots_recut_for_budget"] is None and plain["shots"] == [[0, 194], [195, 389]]


def test_loading_a_googlenet_trunk_checkpoint_skips_torchvisions_package(checkpoints: dict[str, Path]) -> None:
    """A fresh process: the model's GoogLeNet trunk comes from its torchvision module alone, so loading the
    checkpoint imports neither torchvision.ops nor torch._dynamo (about 1.4 s of a 2-core CPU); the whole
    package still imports afterwards, and the model scores the same."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from csta_lib.runs.video.pipeline import load_model\n"
        f"model, _ = load_model({str(checkpoints['mobilenet'])!r})\n"
        "light = [m for m in ('torchvision', 'torchvision.ops', 'torch._dynamo') if m in sys.modules]\n"
        "x = torch.linspace(-1, 1, 20 * 1024).reshape(20, 1024)\n"
        "with torch.inference_mode():\n"
        "    a = model(x)\n"
        "from csta_lib._torchvision import import_torchvision\n"
        "import_torchvision().models.resnet18(weights=None)\n"
        "again, _ = load_model(" + repr(str(checkpoints["mobilenet"])) + ")\n"
        "with torch.inference_mode():\n"
        "    print(light, torch.equal(a, again(x)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[] True", out
