"""Tests of ``csta evaluate`` on a small eccv16-layout file made from the real SumMe fields."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from csta_lib import evaluation as ev
from csta_lib.cli import main
from csta_lib.runs import locator
from csta_lib.runs.locator import find

pytestmark = pytest.mark.skipif(find("eccv16.fields") is None, reason="eccv16 fields file not found")
KEYS = ("video_8", "video_12", "video_18")  # three short SumMe videos


@pytest.fixture(scope="module")
def small_summe(tmp_path_factory):
    """An eccv16-layout h5 of three real SumMe videos (real fields, random 8-d features)."""
    import h5py

    refs = locator.fields_references("summe", with_user_scores=False)
    path = tmp_path_factory.mktemp("data") / "small_summe.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as h5:
        for key in KEYS:
            r = refs[key]
            g = h5.create_group(key)
            g["features"] = rng.random((r.n_steps, 8)).astype(np.float32)
            g["gtscore"] = r.gtscore
            g["user_summary"] = r.user_summary
            g["change_points"] = r.change_points
            g["n_frames"] = r.n_frames
            g["picks"] = r.picks
    return path, refs


def write_npz(path, scores):
    np.savez(path, **scores)
    return path


def test_table_and_json_agree_with_the_library(small_summe, tmp_path, capsys):
    data, refs = small_summe
    rng = np.random.default_rng(1)
    scores = {k: rng.random(refs[k].n_steps) for k in KEYS}
    preds = write_npz(tmp_path / "preds.npz", scores)
    assert main(["evaluate", str(preds), "--data", str(data), "--dataset", "summe"]) == 0
    table = capsys.readouterr().out
    assert "protocol csta_summe" in table and all(k in table for k in KEYS) and "mean over 3 videos" in table

    out_file = tmp_path / "result.json"
    assert main(["evaluate", str(preds), "--data", str(data), "--dataset", "summe", "--json",
                 "--out", str(out_file)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out_file.read_text()) == printed
    assert printed["protocol"] == "csta_summe" and printed["dataset"] == "summe"
    for k in KEYS:
        r = refs[k]
        summary = ev.generate_summary(scores[k], r.change_points, r.n_frames, r.picks)
        tau, rho = ev.rank_correlation("csta_summe", summary, r.user_summary)
        assert printed["videos"][k]["tau"] == pytest.approx(tau)
        assert printed["videos"][k]["rho"] == pytest.approx(rho)
        assert printed["videos"][k]["f1"] == pytest.approx(ev.f1_score(summary, r.user_summary, "max"))
    assert printed["overall"]["tau"] == pytest.approx(np.mean([printed["videos"][k]["tau"] for k in KEYS]))


def test_hdf5_predictions_splits_and_nan_counting(small_summe, tmp_path, capsys):
    import h5py

    data, refs = small_summe
    preds = tmp_path / "preds.h5"
    with h5py.File(preds, "w") as h5:
        h5["video_8"] = np.linspace(0, 1, refs["video_8"].n_steps)
        h5.create_group("video_12")["scores"] = np.ones(refs["video_12"].n_steps)  # constant: τ, ρ undefined
        h5["video_18"] = np.linspace(1, 0, refs["video_18"].n_steps)
    splits = tmp_path / "summe_splits.json"
    splits.write_text(json.dumps([{"train_keys": ["video_1"], "test_keys": ["video_8", "video_12"]},
                                  {"train_keys": ["video_1"], "test_keys": ["video_18"]}]))
    assert main(["evaluate", str(preds), "--data", str(data), "--dataset", "summe", "--protocol", "otani",
                 "--splits-file", str(splits), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["protocol"] == "otani" and [s["split"] for s in result["splits"]] == [0, 1]
    assert math.isnan(result["videos"]["video_12"]["tau"])
    assert result["splits"][0]["n_nan_tau"] == 1 and math.isnan(result["splits"][0]["tau"])
    assert result["overall"]["n_splits"] == 2 and result["overall"]["n_nan_tau"] == 1

    assert main(["evaluate", str(preds), "--data", str(data), "--dataset", "summe", "--protocol", "otani",
                 "--splits-file", str(splits), "--split", "1"]) == 0
    table = capsys.readouterr().out
    assert "split1" in table and "video_8" not in table and "mean over 1 splits" in table


@pytest.mark.parametrize(
    "args, scores, message",
    [
        (["--protocol", "kendall"], None, "valid protocols: csta_summe, casum_tvsum, otani"),
        ([], {"video_8": np.ones(3)}, "length mismatch"),
        ([], {"video_8": np.full(87, np.nan)}, "NaN"),
        ([], {"video_99": np.ones(3)}, "not in"),
        (["--split", "0", "--splits-file", "SPLITS"], None, "no predictions for test videos"),
        (["--split", "1", "--splits-file", "SPLITS"], None, "has splits 0..0"),
    ],
)
def test_bad_input_exits_2(small_summe, tmp_path, capsys, args, scores, message):
    data, refs = small_summe
    scores = scores or {"video_8": np.random.default_rng(0).random(refs["video_8"].n_steps)}
    preds = write_npz(tmp_path / "p.npz", scores)
    splits = tmp_path / "summe_splits.json"
    splits.write_text(json.dumps([{"train_keys": ["video_1"], "test_keys": ["video_8", "video_12"]}]))
    args = [str(splits) if a == "SPLITS" else a for a in args]
    assert main(["evaluate", str(preds), "--data", str(data), "--dataset", "summe", *args]) == 2
    assert message in capsys.readouterr().err


def test_missing_files_exit_2(small_summe, tmp_path, capsys):
    data, _ = small_summe
    assert main(["evaluate", str(tmp_path / "none.npz"), "--data", str(data)]) == 2
    assert "no such predictions file" in capsys.readouterr().err
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    assert main(["evaluate", str(bad), "--data", str(data)]) == 2
    assert "not an HDF5" in capsys.readouterr().err
