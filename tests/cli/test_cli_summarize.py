"""`csta summarize`: the command-line contract (flags, --json last line, exit codes, no partial output)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest

from csta_lib.cli import main
from csta_lib.runs.locator import PROJECT_ROOT
from video_support import make_synthetic_video

SEGMENTS = [((230, 20, 20), 45), ((20, 200, 40), 60), ((20, 40, 220), 45)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_video(tmp_path_factory.mktemp("clip") / "clip.mp4", SEGMENTS, audio_rate=16000)


@pytest.fixture(scope="module")
def checkpoints(random_checkpoints: dict[str, Path]) -> dict[str, Path]:
    return random_checkpoints


def test_json_last_line_is_the_sidecar(clip: Path, checkpoints: dict[str, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "summary.mp4"
    code = main(["summarize", str(clip), "-o", str(out), "--checkpoint", str(checkpoints["mobilenet"]),
                 "--encoder", "mobilenet_v1_1024", "--budget", "0.35", "--json", "--quiet",
                 "--contact-sheet", str(tmp_path / "sheet.png"), "--timeline", str(tmp_path / "timeline.png")])
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    record = json.loads(last)
    assert record == json.loads((tmp_path / "summary.json").read_text())
    assert record["n_frames"] == 150 and record["fps"] == 25.0 and record["encoder"] == "mobilenet_v1_1024"
    for shot in record["selected_shots"]:
        assert isinstance(shot["start_frame"], int) and isinstance(shot["end_frame"], int)
        assert 0 <= shot["start_frame"] <= shot["end_frame"] < 150
    assert record["selected_shots"] and record["budget"] == 0.35
    assert {p.name for p in tmp_path.iterdir()} == {"summary.mp4", "summary.json", "sheet.png", "timeline.png"}


def test_feature_mismatch_exit_code_and_flag(clip: Path, checkpoints: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.mp4"
    args = ["summarize", str(clip), "-o", str(out), "--checkpoint", str(checkpoints["surrogate"]),
            "--budget", "0.35", "--quiet"]
    assert main(args) == 2
    assert "allow-feature-mismatch" in capsys.readouterr().err
    assert not out.exists()
    assert main([*args, "--allow-feature-mismatch", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["feature_mismatch"] is True
    assert "WARNING" in captured.err


@pytest.mark.parametrize("extra,message", [
    (["--budget", "0"], "budget"), (["--budget", "1.01"], "budget"), (["--stride", "0"], "stride"),
    (["--encoder", "mobilenet_v1_1024", "--random-weights"], "random-weights"),
])
def test_bad_arguments_exit_2(clip: Path, checkpoints: dict[str, Path], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    code = main(["summarize", str(clip), "-o", str(tmp_path / "s.mp4"), "--checkpoint",
                 str(checkpoints["mobilenet"]), "--quiet", *extra])
    assert code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_bad_files_exit_2(clip: Path, checkpoints: dict[str, Path], tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    not_ckpt = tmp_path / "not_a_checkpoint.pt"
    not_ckpt.write_bytes(b"\x00" * 100)
    cases = [
        ([str(tmp_path / "missing.mp4"), "--checkpoint", str(checkpoints["mobilenet"])], "does not exist"),
        ([str(clip), "--checkpoint", str(tmp_path / "missing.pt")], "checkpoint"),
        ([str(clip), "--checkpoint", str(not_ckpt)], "not a csta checkpoint"),
    ]
    for args, message in cases:
        assert main(["summarize", *args, "-o", str(tmp_path / "out" / "s.mp4"), "--quiet"]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # the output folder is created only when all was written


def test_console_script_contract(clip: Path, checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """The real process: exit code 0, the JSON sidecar as the last stdout line, progress on stderr only."""
    out = tmp_path / "summary.mp4"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "csta_lib.cli", "summarize", str(clip), "-o", str(out),
         "--checkpoint", str(checkpoints["mobilenet"]), "--budget", "0.35", "--json"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"n_frames", "fps", "shots", "selected_shots", "encoder"} <= set(record)
    assert out.is_file() and record["output"] == str(out)


# ---------------------------------------------------------------------------------------------- issue 14

VFR_SEGMENTS = [((230, 20, 20), 30, 1 / 60), ((20, 200, 40), 30, 1 / 5), ((20, 40, 220), 45, 1 / 30),
                ((240, 230, 30), 15, 1 / 4)]
VFR_DURATION = 30 / 60 + 30 / 5 + 45 / 30 + 15 / 4  # 11.75 s; 120 frames, i.e. 4.0 s at the declared 30 fps


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["summarize", *args, "--quiet"])
    return code, capsys.readouterr().err


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("csta summarize: error: "), err
    return lines[0]


def _stream_durations(path: Path) -> tuple[float, float]:
    """(video, audio) durations of a written file as a player sees them: its streams' own durations."""
    with av.open(str(path)) as c:
        video, audio = c.streams.video[0], c.streams.audio[0]
        return float(video.duration * video.time_base), float(audio.duration * audio.time_base)


@pytest.mark.parametrize("suffix", ["mkv", "mp4"])
def test_variable_frame_rate_contract(checkpoints: dict[str, Path], tmp_path: Path, suffix: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    clip = make_synthetic_video(tmp_path / f"vfr.{suffix}", VFR_SEGMENTS, fps=30, audio_rate=16000)
    out = tmp_path / "out.mp4"
    code = main(["summarize", str(clip), "-o", str(out), "--checkpoint", str(checkpoints["mobilenet"]),
                 "--budget", "0.3", "--json", "--quiet"])
    assert code == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["duration_s"] == pytest.approx(VFR_DURATION, abs=0.01)
    video_s, audio_s = _stream_durations(out)
    assert record["summary_duration_s"] == pytest.approx(video_s, abs=0.01)  # what ffprobe reports too
    assert abs(audio_s - video_s) < 0.1 and 0.5 < video_s <= 0.3 * VFR_DURATION + 0.01
    assert record["variable_frame_rate"] is True and record["sampling"] == "frames"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any frame is decoded: output checks must come first."""
    from csta_lib.runs.video import pipeline

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoding started before the outputs were checked")

    monkeypatch.setattr(pipeline, "encode_video", forbidden)


def test_outputs_never_overwrite_inputs(clip: Path, checkpoints: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str], no_decoding: None) -> None:
    video = tmp_path / "video.mp4"
    video.write_bytes(clip.read_bytes())
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(checkpoints["mobilenet"].read_bytes())
    (tmp_path / "video_link.mp4").symlink_to(video)
    os.link(ckpt, tmp_path / "ckpt_hardlink.png")
    before = {p: _digest(p) for p in (video, ckpt)}
    base = [str(video), "--checkpoint", str(ckpt)]
    cases = [
        ["-o", str(ckpt.with_suffix(".mp4")), "--sidecar", str(ckpt)],
        ["-o", str(tmp_path / "video_link.mp4")],  # a symbolic link to the input video
        ["-o", str(tmp_path / "s.mp4"), "--sidecar", str(tmp_path / "sub" / ".." / "video.mp4")],
        ["-o", str(tmp_path / "s.mp4"), "--timeline", str(tmp_path / "ckpt_hardlink.png")],  # same inode
        ["-o", str(tmp_path / "s.mp4"), "--contact-sheet", str(video)],
    ]
    for extra in cases:
        code, err = _run([*base, *extra], capsys)
        assert code == 2 and "refusing to overwrite an input" in _one_line_error(err), extra
    assert {p: _digest(p) for p in (video, ckpt)} == before
    assert not (tmp_path / "s.mp4").exists() and not (tmp_path / "sub").exists()


def test_bad_output_paths_exit_2_before_decoding(clip: Path, checkpoints: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str], no_decoding: None) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    (tmp_path / "folder.mp4").mkdir()
    cases = {
        "longer than the file system": ["-o", str(tmp_path / ("n" * 252 + ".mp4"))],  # 256 bytes
        "sidecar": ["-o", str(tmp_path / ("n" * 251 + ".mp4"))],  # 255 bytes, but its .json would be 256
        "is a directory": ["-o", str(tmp_path / "folder.mp4")],
        "is a file, not a folder": ["-o", str(blocker / "s.mp4")],
        "--timeline": ["-o", str(tmp_path / "s.mp4"), "--timeline", str(blocker / "deeper" / "t.png")],
    }
    for message, extra in cases.items():
        code, err = _run([str(clip), "--checkpoint", str(checkpoints["mobilenet"]), *extra], capsys)
        assert code == 2 and message in _one_line_error(err), (message, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "folder.mp4"]


@pytest.mark.parametrize("length", [241, 255])
def test_long_output_names_work(clip: Path, checkpoints: dict[str, Path], tmp_path: Path, length: int,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """Names up to the file system's limit (255 bytes here) are written; temporaries stay short."""
    out = tmp_path / ("x" * (length - 4) + ".mp4")
    code, err = _run([str(clip), "-o", str(out), "--checkpoint", str(checkpoints["mobilenet"]), "--budget", "0.35",
                      "--sidecar", str(tmp_path / "s.json")], capsys)
    assert code == 0, err
    assert {p.name for p in tmp_path.iterdir()} == {out.name, "s.json"}


def test_disk_full_while_writing(clip: Path, checkpoints: dict[str, Path], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The real writer, pointed at /dev/full: FFmpeg's ENOSPC becomes one message, nothing is left."""
    from csta_lib.runs.video import pipeline

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    real_writer = pipeline.write_summary_video

    def onto_full_disk(source: Path, target: Path, *args: object, **kwargs: object) -> object:
        Path(target).write_bytes(b"partial")  # what a writer leaves before the disk fills up
        return real_writer(source, "/dev/full", *args, **{**kwargs, "output_format": "mp4"})

    monkeypatch.setattr(pipeline, "write_summary_video", onto_full_disk)
    out = tmp_path / "new" / "folder" / "s.mp4"
    code, err = _run([str(clip), "-o", str(out), "--checkpoint", str(checkpoints["mobilenet"]), "--budget", "0.35",
                      "--timeline", str(tmp_path / "t.png")], capsys)
    assert code == 2 and "disk full" in _one_line_error(err)
    assert list(tmp_path.iterdir()) == []  # no video, no temporary, no new empty folders


def test_failed_run_creates_no_folders(clip: Path, checkpoints: dict[str, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a" / "b" / "s.mp4"
    code, _ = _run([str(clip), "-o", str(out), "--checkpoint", str(checkpoints["surrogate"]), "--budget", "0.35"],
                   capsys)
    assert code == 2 and not (tmp_path / "a").exists()
    code, _ = _run([str(clip), "-o", str(out), "--checkpoint", str(checkpoints["mobilenet"]), "--budget", "0.35"],
                   capsys)
    assert code == 0 and out.is_file() and out.with_suffix(".json").is_file()


def test_error_messages_are_one_line(clip: Path, checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """A real process: no TFLite INFO line, no traceback, no page of torch text: one line on stderr."""
    evil = tmp_path / "evil.pt"
    evil.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)  # a truncated pickle
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    for checkpoint, message in ((checkpoints["surrogate"], "allow-feature-mismatch"), (evil, "evil.pt")):
        proc = subprocess.run(
            [sys.executable, "-m", "csta_lib.cli", "summarize", str(clip), "-o", str(tmp_path / "s.mp4"),
             "--checkpoint", str(checkpoint), "--encoder", "mobilenet_v1_1024", "--quiet"],
            capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 2
        line = _one_line_error(proc.stderr)
        assert message in line and len(line) < 600, line
    assert not (tmp_path / "s.mp4").exists()


# ---------------------------------------------------------------------------------------------- issue 22: names

def _summarize_in(folder: Path, name: str, checkpoint: Path, **run: object) -> subprocess.CompletedProcess[str]:
    """`csta summarize NAME` as a real process whose working directory is ``folder``."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "csta_lib.cli", "summarize", name, "-o", "summary.mp4", "--checkpoint",
         str(checkpoint), "--encoder", "mobilenet_v1_1024", "--budget", "0.5", "--json", "--quiet"],
        capture_output=True, text=True, env=env, cwd=folder, **run)


def test_protocol_like_file_names_are_files(checkpoints: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A file literally named ``concat:normal.mp4`` is summarised, not ``normal.mp4`` (what FFmpeg's concat
    protocol would read), and so is a summary written to such a name."""
    make_synthetic_video(tmp_path / "normal.mp4", SEGMENTS)  # 150 frames
    make_synthetic_video(tmp_path / "concat:normal.mp4", [((240, 230, 30), 30), ((20, 40, 220), 30)])  # 60
    monkeypatch.chdir(tmp_path)
    code = main(["summarize", "concat:normal.mp4", "-o", "concat:summary.mp4", "--checkpoint",
                 str(checkpoints["mobilenet"]), "--budget", "0.5", "--json", "--quiet"])
    assert code == 0, capsys.readouterr().err
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["n_frames"] == 60 and record["input"] == "concat:normal.mp4"
    with av.open(str(tmp_path / "concat:summary.mp4")) as written:  # an absolute name: FFmpeg reads it as a file
        assert sum(1 for _ in written.decode(video=0)) == record["summary_n_frames"]


def test_pipe_name_is_a_file_not_standard_input(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """``pipe:0`` in the working directory is that file; FFmpeg's pipe protocol would wait on standard input
    (kept open here, so the old behaviour hangs into the timeout)."""
    clip = make_synthetic_video(tmp_path / "clip.mp4", [((20, 200, 40), 40), ((230, 20, 20), 40)])
    clip.rename(tmp_path / "pipe:0")
    proc = _summarize_in(tmp_path, "pipe:0", checkpoints["mobilenet"], stdin=subprocess.PIPE, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["n_frames"] == 80


def test_inputs_that_are_not_plain_video_files(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """A FIFO is refused at once (not waited on), and a script that names other files is not followed."""
    make_synthetic_video(tmp_path / "normal.mp4", SEGMENTS)
    (tmp_path / "list.mp4").write_text("ffconcat version 1.0\nfile normal.mp4\n")  # FFmpeg's concat demuxer
    os.mkfifo(tmp_path / "fifo.mp4")
    for name, message in (("fifo.mp4", "fifo.mp4: a FIFO (named pipe), not a video file"),
                          ("list.mp4", "list.mp4 is not a readable video file")):
        proc = _summarize_in(tmp_path, name, checkpoints["mobilenet"], stdin=subprocess.DEVNULL, timeout=120)
        assert proc.returncode == 2 and message in _one_line_error(proc.stderr), proc.stderr
    assert not (tmp_path / "summary.mp4").exists()


# ---------------------------------------------------------------------------------------------- shots, device

def test_shot_options_reach_the_sidecar(clip: Path, checkpoints: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(clip), "-o", str(tmp_path / "s.mp4"), "--checkpoint", str(checkpoints["mobilenet"]), "--budget",
            "0.35"]
    code, err = _run([*args, "--json", "--min-shot-seconds", "0.5", "--max-shot-seconds", "4", "--shot-penalty",
                      "2"], capsys)
    assert code == 0, err
    sidecar = json.loads((tmp_path / "s.json").read_text())
    assert sidecar["shot_settings"] == {"vmax": 2.0, "min_shot_seconds": 0.5, "max_shot_seconds": 4.0}
    assert sidecar["device"] == "cpu"
    for path in (tmp_path / "s.mp4", tmp_path / "s.json"):
        path.unlink()
    for extra, message in ((["--min-shot-seconds", "-1"], "min_shot_seconds"),
                           (["--max-shot-seconds", "0.5"], "max_shot_seconds (0.5) must be at least"),
                           (["--shot-penalty", "0"], "vmax")):
        code, err = _run([*args, *extra], capsys)
        assert code == 2 and message in _one_line_error(err), (extra, err)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit):
        _run([*args, "--min-shot-seconds", "one"], capsys)
    assert "expected seconds >= 0, got 'one'" in capsys.readouterr().err


def test_device_that_cannot_score_is_one_line_before_decoding(clip: Path, checkpoints: dict[str, Path],
                                                             tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             no_decoding: None) -> None:
    import torch

    cases = [("tpu9", "unknown device")]
    if not torch.cuda.is_available():  # on a GPU machine cuda is a working device, tested by the device check
        cases.append(("cuda", "CUDA is not available"))
    for device, message in cases:
        code, err = _run([str(clip), "-o", str(tmp_path / "s.mp4"), "--checkpoint", str(checkpoints["mobilenet"]),
                          "--device", device], capsys)
        assert code == 2 and message in _one_line_error(err), err
    assert list(tmp_path.iterdir()) == []
