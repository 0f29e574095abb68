"""The project's data by name (csta_lib.runs.locator): CSTA's splits, the annotations, the real annotation
fields, backbone weights; each found, then read by the method's readers."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from csta_lib.data import eccv16
from csta_lib.errors import MissingDataError
from csta_lib.runs import locator, surrogate
from support import need



@pytest.mark.parametrize("dataset", ["summe", "tvsum"])
def test_official_splits_are_csta_files(dataset):
    need(f"splits.csta.{dataset}")
    folds = locator.official_splits(dataset)
    assert [s.index for s in folds] == [0, 1, 2, 3, 4] and all("csta" in s.source for s in folds)


def test_mean_steps_are_those_of_the_real_annotations():
    """eccv16.MEAN_STEPS (the T of Table 3) is the mean of the videos' steps in the real annotation files."""
    for dataset in ("summe", "tvsum"):
        need("summe.gt" if dataset == "summe" else "tvsum.annotations")
        steps = locator.video_steps(dataset)
        assert len(steps) == eccv16.N_VIDEOS[dataset]
        assert np.mean(steps) == pytest.approx(eccv16.MEAN_STEPS[dataset], abs=1e-9)


def test_dataset_evaluator_gives_tvsum_its_raw_user_scores():
    """TVSum's protocols need the raw 1..5 scores; the evaluator of a loaded TVSum file gets them by name."""
    need("tvsum.annotations")
    video = SimpleNamespace(n_frames=30, picks=np.array([0, 15]), change_points=np.array([[0, 29]]),
                            user_summary=np.zeros((1, 30), np.uint8), gtscore=np.zeros(2))
    data = SimpleNamespace(dataset="tvsum", style="tvsum", items=lambda: [("video_1", video)])
    ref = locator.dataset_evaluator(data).references["video_1"]
    assert ref.user_scores is not None and ref.user_scores.min() >= 1 and ref.user_scores.max() <= 5
    assert locator.dataset_evaluator(data, protocol="csta_summe").references["video_1"].user_scores is None


# --------------------------------------------------------------------------------------------
# where the real annotation fields come from: the fields file, else the real feature file


def _only_in(tmp_path: Path, monkeypatch, files: dict[str, Path]) -> None:
    """Make ``files`` (logical name -> file) the only data the locator finds."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setattr(locator, "PROJECT_ROOT", project)
    monkeypatch.delenv(locator.MIRROR_ENV, raising=False)
    for name, source in files.items():
        target = project / "data" / locator.entry(name).path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source)


def test_fields_come_from_the_real_feature_file_when_the_fields_file_is_absent(tmp_path, monkeypatch):
    """A user with the real eccv16 feature file needs no separate fields file: references and fields are the same."""
    fields_file = need("eccv16.fields")
    expected_refs = locator.fields_references("summe")
    expected_fields = surrogate.read_real_fields("summe")
    # a feature file in the eccv16 layout: the real fields at the root, plus features
    feature_file = tmp_path / "eccv16_dataset_summe_google_pool5.h5"
    with h5py.File(fields_file, "r") as src, h5py.File(feature_file, "w") as dst:
        for key in src["summe"]:
            src.copy(src["summe"][key], dst, name=key)
            dst[key]["features"] = np.zeros((len(src["summe"][key]["picks"]), 1024), dtype=np.float32)
    _only_in(tmp_path, monkeypatch, {"eccv16.summe": feature_file})
    assert locator.fields_source("summe") == (tmp_path / "project" / "data" / "eccv16" / feature_file.name, "/")

    refs = locator.fields_references("summe")
    assert list(refs) == list(expected_refs)
    for key, ref in refs.items():
        np.testing.assert_array_equal(ref.change_points, expected_refs[key].change_points)
        np.testing.assert_array_equal(ref.user_summary, expected_refs[key].user_summary)
        np.testing.assert_array_equal(ref.gtscore, expected_refs[key].gtscore)
        assert ref.n_frames == expected_refs[key].n_frames
    fields = surrogate.read_real_fields("summe")
    assert "features" not in fields["video_1"]
    assert set(fields["video_1"]) == set(expected_fields["video_1"])
    np.testing.assert_array_equal(fields["video_3"]["change_points"], expected_fields["video_3"]["change_points"])


def test_fields_missing_everywhere_names_both_ways_to_get_them(tmp_path, monkeypatch):
    _only_in(tmp_path, monkeypatch, {})
    both = r"(?s)eccv16_fields_from_tib_results\.h5.*or: place the real eccv16\.tvsum feature file"
    with pytest.raises(MissingDataError, match=both):
        locator.fields_source("tvsum")
