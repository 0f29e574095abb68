"""`csta summarize`: the command-line contract (flags, --json last line, exit codes, no partial output)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from csta_lib.cli import main
from csta_lib.data.locator import PROJECT_ROOT
from csta_lib.video import make_synthetic_video

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
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


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
