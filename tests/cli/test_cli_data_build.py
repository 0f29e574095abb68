"""``csta data build`` and ``csta data split``, and the way from a user's videos to a summary: the contract for
external checks (exit codes, the last line of JSON, the split format, training on the built file and summarizing
with its checkpoint without a feature mismatch), resuming after kill -9, one line for bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from video_support import make_own_clips, make_synthetic_video, write_own_annotations

from csta_lib.cli import main
from csta_lib.data import load_eccv16, load_splits


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli_own")
    clips = folder / "clips"
    make_own_clips(clips)
    return {"folder": folder, "clips": clips, "annotations": write_own_annotations(folder / "annotations.csv")}


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_build_split_train_summarize(own, tmp_path, capsys):
    out = tmp_path / "my_clips.h5"
    assert main(["data", "build", "--videos", str(own["clips"]), "--annotations", str(own["annotations"]),
                 "--out", str(out), "--no-progress"]) == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["out"] == str(out) and summary["videos"] == 3
    assert (summary["encoder"], summary["stride"], summary["dataset"]) == ("mobilenet_v1_1024", 15, "my_clips")
    data = load_eccv16(out)
    assert [v.video_name for v in data.values()] == ["alpha.mp4", "beta.mkv", "gamma.mp4"]

    splits_file = tmp_path / "splits.txt"
    assert main(["data", "split", str(out), "--folds", "3", "--seed", "0", "--out", str(splits_file)]) == 0
    lines = splits_file.read_text().splitlines()
    assert len(lines) == 3 and all(line.startswith(f"my_clips/split{k}/") and line.count("/") == 3
                                   for k, line in enumerate(lines))
    folds = load_splits(splits_file, "my_clips")
    assert sorted(k for f in folds for k in f.test_keys) == data.keys()
    assert "cannot make 4 folds of 3 videos" in bad_input(
        ["data", "split", str(out), "--folds", "4", "--out", str(tmp_path / "four.txt")], capsys)
    assert not (tmp_path / "four.txt").exists()

    store = tmp_path / "store"
    capsys.readouterr()
    assert main(["train", "--preset", "paper", "--data", str(out), "--splits-file", str(splits_file), "--split", "0",
                 "--seed", "0", "--epochs", "1", "--store", str(store), "--no-progress"]) == 0
    record_path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    record = json.loads(record_path.read_text())
    assert record["dataset"] == "my_clips" and record["protocol"]["rank"] == "casum_tvsum"
    provenance = record["provenance"]
    assert provenance["user_dataset"] is True and provenance["surrogate"] is False
    assert provenance["data_sha256"] == data.sha256 and provenance["encoder"] == "mobilenet_v1_1024"
    checkpoint = record_path.parent / record["selected"]["test-max"]["checkpoint"]
    assert checkpoint.is_file()

    assert main(["summarize", str(own["clips"] / "beta.mkv"), "-o", str(tmp_path / "summary.mp4"),
                 "--checkpoint", str(checkpoint), "--budget", "1", "--json", "--quiet"]) == 0
    sidecar = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sidecar["feature_mismatch"] is False and sidecar["warnings"] == []
    assert (tmp_path / "summary.mp4").stat().st_size > 0

    assert main(["results", "table", "--store", str(store), "--data", str(out)]) == 0
    table = capsys.readouterr().out
    assert "a user dataset" in table and "| my_clips | paper | test-max |" in table


def test_evaluate_takes_the_built_file(own, tmp_path, capsys):
    import numpy as np

    out = tmp_path / "clips.h5"
    assert main(["data", "build", "--videos", str(own["clips"]), "--annotations", str(own["annotations"]),
                 "--style", "tvsum", "--out", str(out), "--no-progress"]) == 0
    data = load_eccv16(out)
    predictions = tmp_path / "pred.npz"
    np.savez(predictions, **{k: np.linspace(0, 1, v.n_steps) for k, v in data.items()})
    capsys.readouterr()
    assert main(["evaluate", str(predictions), "--data", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["dataset"], result["protocol"], result["f1_aggregation"]) == ("clips", "casum_tvsum", "mean")
    assert main(["evaluate", str(predictions), "--data", str(out), "--split", "0"]) == 2
    assert "has no official splits" in capsys.readouterr().err


def bad_input(args: list[str], capsys) -> str:
    assert main(args) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_bad_input_is_one_line_and_writes_nothing(own, tmp_path, capsys):
    out = tmp_path / "o.h5"
    base = ["data", "build", "--videos", str(own["clips"]), "--out", str(out), "--no-progress"]
    unknown = tmp_path / "unknown.csv"
    unknown.write_text(own["annotations"].read_text() + "delta.mp4,ann,0,1,3\n")
    assert "delta.mp4" in bad_input([*base, "--annotations", str(unknown)], capsys)
    outside = tmp_path / "outside.csv"
    outside.write_text(own["annotations"].read_text() + "beta.mkv,carl,3.5,9,3\n")
    assert "outside the video" in bad_input([*base, "--annotations", str(outside)], capsys)
    assert "is the input --annotations" in bad_input(
        ["data", "build", "--videos", str(own["clips"]), "--annotations", str(own["annotations"]),
         "--out", str(own["annotations"])], capsys)
    assert "--scale" in bad_input([*base, "--annotations", str(own["annotations"]), "--scale", "5"], capsys)
    assert not out.exists()
    assert "no such file" in bad_input(["data", "split", str(tmp_path / "none.h5"), "--out", str(tmp_path / "s.txt")],
                                       capsys)
    assert not (tmp_path / "s.txt").exists()


def test_killed_build_resumes_with_the_same_bytes(tmp_path):
    """kill -9 at the moment the first video is cached; the same command finishes without redoing it, and the
    file is byte-identical to an uninterrupted build's."""
    clips = tmp_path / "clips"
    clips.mkdir()
    rows = ["video,annotator,start,end,score"]
    for k in range(6):  # six distinct videos (a copy would share its cache entry)
        name = f"clip{k}.mp4"
        make_synthetic_video(clips / name, [((40 * k, 90, 200 - 20 * k), 120), ((200, 40 * k, 60), 105)])
        rows += [f"{name},a,0,4.5,{1 + k % 5}", f"{name},a,4.5,9,{5 - k % 4}", f"{name},b,0,9,{2 + k % 3}"]
    ann = tmp_path / "ann.csv"
    ann.write_text("\n".join(rows) + "\n")
    command = [sys.executable, "-m", "csta_lib.cli", "data", "build", "--videos", str(clips), "--annotations",
               str(ann), "--no-progress"]
    out, cache = tmp_path / "resumed" / "set.h5", tmp_path / "cache"
    process = subprocess.Popen([*command, "--out", str(out), "--cache", str(cache)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(cache.glob("*.npz")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    cached = len(list(cache.glob("*.npz")))
    assert 1 <= cached < 6 and not out.exists()
    finished = subprocess.run([*command, "--out", str(out), "--cache", str(cache)], capture_output=True, text=True,
                              check=True)
    assert last_json(finished.stdout)["cache"]["reused"] >= cached
    fresh = tmp_path / "fresh" / "set.h5"
    subprocess.run([*command, "--out", str(fresh), "--cache", str(tmp_path / "cache2")], capture_output=True,
                   check=True)
    assert out.read_bytes() == fresh.read_bytes()


def test_help_shows_the_way_from_videos_to_a_summary(capsys):
    with pytest.raises(SystemExit):
        main(["data", "build", "--help"])
    text = capsys.readouterr().out
    for command in ("csta data build --videos", "csta data split", "csta train --preset paper --data",
                    "csta summarize"):
        assert command in text
    assert "video,annotator,start,end,score" in text and "--style summe" in text


def test_grid_runs_an_experiment_on_the_built_file(own, tmp_path, capsys, stand_in):
    out, splits_file = tmp_path / "clips.h5", tmp_path / "splits.txt"
    assert main(["data", "build", "--videos", str(own["clips"]), "--annotations", str(own["annotations"]),
                 "--out", str(out), "--no-progress"]) == 0
    assert main(["data", "split", str(out), "--folds", "3", "--out", str(splits_file)]) == 0
    capsys.readouterr()
    base = ["grid", "--experiment", "table1", "--profile", "smoke", "--data", str(out), "--splits-file",
            str(splits_file), "--store", str(tmp_path / "store")]
    assert main([*base, "--plan", "--json", "--no-calibrate"]) == 0
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()[:-1]]
    assert {e["dataset"] for e in entries} == {"clips"} and {e["split"] for e in entries} == {0}
    assert main([*base, "--no-progress"]) == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["runs"] == len(entries) and summary["failed"] == 0
    assert summary["data"]["clips"]["user_dataset"] is True and "the user dataset clips" in summary["cut"]
    assert main(["grid", "--experiment", "table1", "--data", str(out)]) == 2
    assert "--data and --splits-file go together" in capsys.readouterr().err
