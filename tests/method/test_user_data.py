"""The data layer's side of a user's own dataset: annotation files (csta_lib.data.user_annotations), seeded folds
written in CSTA's split format (csta_lib.data.splits) and eccv16 files that name themselves a user dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support import tiny_video, write_eccv16

from csta_lib.data import eccv16, splits
from csta_lib.data.user_annotations import AnnotationError, frame_ranges, load_annotations, user_frame_scores
from csta_lib.errors import ConfigError, DataFormatError, MissingDataError

HEADER = "video,annotator,start,end,score\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def times(n_frames: int, fps: float = 10.0) -> tuple[np.ndarray, float]:
    """Constant-rate frame start times and the duration."""
    return np.arange(n_frames) / fps, n_frames / fps


# ----------------------------------------------------------------------------------------------------------------
# reading


def test_tvsum_csv_scores_per_frame_and_scale(tmp_path):
    path = write(tmp_path / "a.csv", HEADER + "clip.mp4,ann1,0,1.0,2\nclip.mp4,ann1,1.0,2.0,5\n"
                                              "clip.mp4,ann2,0.5,2.0,4\n")
    ann = load_annotations(path)
    assert (ann.style, ann.unit, ann.scale, ann.scale_declared) == ("tvsum", "seconds", (2.0, 5.0), False)
    assert ann["clip.mp4"].annotators == ("ann1", "ann2")
    starts, duration = times(20)
    scores = user_frame_scores(ann, "clip.mp4", starts, duration)
    assert scores.shape == (2, 20)
    assert scores[0].tolist() == [2.0] * 10 + [5.0] * 10
    # frames before ann2's first range get the scale's low end (here the file's lowest score, 2)
    assert scores[1].tolist() == [2.0] * 5 + [4.0] * 15


def test_columns_in_any_order_and_json_rows_agree(tmp_path):
    csv_path = write(tmp_path / "a.csv", "score,end,start,annotator,video\n3,1,0,u,v.mp4\n1,2,1,u,v.mp4\n")
    rows = [{"video": "v.mp4", "annotator": "u", "start": 0, "end": 1, "score": 3},
            {"video": "v.mp4", "annotator": "u", "start": 1, "end": 2, "score": 1}]
    listed = write(tmp_path / "b.json", json.dumps(rows))
    declared = write(tmp_path / "c.json", json.dumps({"style": "tvsum", "unit": "seconds", "annotations": rows}))
    starts, duration = times(20)
    results = [user_frame_scores(load_annotations(p), "v.mp4", starts, duration) for p in (csv_path, listed, declared)]
    assert all(np.array_equal(results[0], r) for r in results[1:])


def test_summe_style_marks_selected_intervals(tmp_path):
    path = write(tmp_path / "a.csv", HEADER + "v.mp4,u1,0.2,0.5,1\nv.mp4,u1,0.4,0.8,1\nv.mp4,u2,0,1.5,0\n")
    ann = load_annotations(path, style="summe")
    assert ann.scale == (0.0, 1.0)
    starts, duration = times(20)
    selected = user_frame_scores(ann, "v.mp4", starts, duration)
    assert selected[0].nonzero()[0].tolist() == [2, 3, 4, 5, 6, 7]  # overlapping selections are a union
    assert not selected[1].any()  # score 0: explicitly not selected


def test_frames_unit_and_variable_frame_rate_seconds(tmp_path):
    path = write(tmp_path / "a.json", json.dumps({"unit": "frames", "annotations": [
        {"video": "v.mp4", "annotator": "u", "start": 3, "end": 7, "score": 1}]}))
    ann = load_annotations(path, style="summe")
    starts, duration = times(10)
    assert user_frame_scores(ann, "v.mp4", starts, duration)[0].nonzero()[0].tolist() == [3, 4, 5, 6]
    # seconds follow the real frame times: on a variable-rate video frames are not index / fps
    vfr = np.array([0.0, 0.1, 0.2, 1.0, 1.5, 1.6])
    seconds = load_annotations(write(tmp_path / "b.csv", HEADER + "v.mp4,u,0.15,1.2,1\n"), style="summe")
    assert frame_ranges(seconds, "v.mp4", vfr, 1.7) == {"u": [(2, 4, 1.0)]}


@pytest.mark.parametrize("body, message", [
    ("v.mp4,u,0,1,nan\n", "NaN"),
    ("v.mp4,u,0,1,-1\n", "negative"),
    ("v.mp4,u,-0.5,1,1\n", "before the video's beginning"),
    ("v.mp4,u,2,1,1\n", "must be after start"),
    ("v.mp4,u,0,1,x\n", "not a number"),
    ("dir/v.mp4,u,0,1,1\n", "without its folder"),
    (",u,0,1,1\n", "video is empty"),
    ("v.mp4,u,0,1\n", "4 fields"),
    ("v.mp4,u,0,1,2\nv.mp4,u,0.5,2,3\n", "overlaps"),
    ("", "no annotation rows"),
    ("v.mp4,u,0,1,3\nv.mp4,w,1,2,3\n", "every score is 3"),
])
def test_bad_rows_name_the_file_and_line(tmp_path, body, message):
    path = write(tmp_path / "a.csv", HEADER + body)
    with pytest.raises(AnnotationError, match=message) as info:
        load_annotations(path)
    assert str(path) in str(info.value)
    if body.count("\n") == 1 and message not in ("no annotation rows",):
        assert "line 2" in str(info.value)


def test_file_level_errors(tmp_path):
    with pytest.raises(MissingDataError, match="no such annotation file"):
        load_annotations(tmp_path / "none.csv")
    with pytest.raises(AnnotationError, match="header"):
        load_annotations(write(tmp_path / "a.csv", "video,start,end,score\nv,0,1,1\n"))
    with pytest.raises(AnnotationError, match="expected .csv or .json"):
        load_annotations(write(tmp_path / "a.tsv", HEADER))
    with pytest.raises(AnnotationError, match="summe a row marks"):
        load_annotations(write(tmp_path / "b.csv", HEADER + "v,u,0,1,3\n"), style="summe")
    declared = write(tmp_path / "c.json", json.dumps({"style": "summe", "annotations": [
        {"video": "v", "annotator": "u", "start": 0, "end": 1, "score": 1}]}))
    with pytest.raises(AnnotationError, match="declares style 'summe' but 'tvsum'"):
        load_annotations(declared, style="tvsum")
    with pytest.raises(AnnotationError, match="outside the declared scale"):
        load_annotations(write(tmp_path / "d.csv", HEADER + "v,u,0,1,7\nv,u,1,2,1\n"), scale=(1, 5))
    with pytest.raises(AnnotationError, match="exactly"):
        load_annotations(write(tmp_path / "e.json", json.dumps([{"video": "v", "start": 0}])))
    with pytest.raises(AnnotationError, match="not valid JSON"):
        load_annotations(write(tmp_path / "f.json", "{"))
    with pytest.raises(AnnotationError, match="whole numbers"):
        load_annotations(write(tmp_path / "g.json", json.dumps({"unit": "frames", "annotations": [
            {"video": "v", "annotator": "u", "start": 0.5, "end": 3, "score": 1}]})), style="summe")


def test_ranges_outside_the_video(tmp_path):
    starts, duration = times(20)  # 2.0 s
    ann = load_annotations(write(tmp_path / "a.csv", HEADER + "v.mp4,u,1.0,2.5,1\n"), style="summe")
    with pytest.raises(AnnotationError, match=r"outside the video, which lasts 2.000 s"):
        frame_ranges(ann, "v.mp4", starts, duration)
    within_a_frame = load_annotations(write(tmp_path / "b.csv", HEADER + "v.mp4,u,1.0,2.05,1\n"), style="summe")
    assert frame_ranges(within_a_frame, "v.mp4", starts, duration) == {"u": [(10, 20, 1.0)]}
    frames = load_annotations(write(tmp_path / "c.json", json.dumps({"unit": "frames", "annotations": [
        {"video": "v.mp4", "annotator": "u", "start": 5, "end": 21, "score": 1}]})), style="summe")
    with pytest.raises(AnnotationError, match="has 20 frames"):
        frame_ranges(frames, "v.mp4", starts, duration)


def test_single_annotator_videos_are_listed(tmp_path):
    ann = load_annotations(write(tmp_path / "a.csv", HEADER + "a.mp4,u,0,1,1\nb.mp4,u,0,1,2\nb.mp4,w,0,1,3\n"))
    assert ann.single_annotator_videos() == ["a.mp4"]


# ----------------------------------------------------------------------------------------------------------------
# folds


def test_seeded_folds_are_disjoint_cover_every_video_and_round_trip(tmp_path):
    keys = [f"video_{i}" for i in range(1, 8)]
    folds = splits.seeded_folds("my_clips", keys, 3, seed=5)
    tests = [set(f.test_keys) for f in folds]
    assert set().union(*tests) == set(keys) and sum(map(len, tests)) == len(keys)
    assert sorted(map(len, tests)) == [2, 2, 3]
    for fold in folds:
        assert set(fold.train_keys) == set(keys) - set(fold.test_keys)
    assert folds == splits.seeded_folds("my_clips", reversed(keys), 3, seed=5)  # seeded, order-free
    assert folds != splits.seeded_folds("my_clips", keys, 3, seed=6)
    path = write(tmp_path / "splits.txt", splits.csta_split_text("my_clips", folds))
    assert path.read_text().splitlines()[0].startswith("my_clips/split0/")
    back = splits.load_splits(path, "my_clips")
    assert [(s.train_keys, s.test_keys) for s in back] == [(s.train_keys, s.test_keys) for s in folds]


def test_seeded_folds_bad_counts():
    keys = ["video_1", "video_2", "video_3"]
    for bad in (1, 4, True, "2"):
        with pytest.raises(ConfigError, match="folds"):
            splits.seeded_folds("x", keys, bad, seed=0)
    with pytest.raises(ConfigError, match="seed"):
        splits.seeded_folds("x", keys, 2, seed=-1)


def test_user_split_files_keep_their_checks(tmp_path):
    overlapping = write(tmp_path / "s.txt", "clips/split0/video_1,video_2/video_2\n")
    with pytest.raises(DataFormatError, match="both train and test"):
        splits.load_splits(overlapping, "clips")
    many = write(tmp_path / "t.txt", "clips/split0/video_1,video_60/video_2\n")  # no benchmark bound on keys
    assert splits.load_splits(many, "clips")[0].train_keys == ("video_1", "video_60")
    with pytest.raises(ConfigError, match="neither summe nor tvsum"):
        splits.load_splits(many, "no spaces allowed")


# ----------------------------------------------------------------------------------------------------------------
# eccv16 files of a user dataset


def user_attrs(**changes) -> dict:
    attrs = {"user_dataset": True, "dataset": "my_clips", "style": "tvsum", "encoder": "mobilenet_v1_1024",
             "feature_kind": "mobilenet_v1_1024", "label": "user dataset my_clips (mobilenet_v1_1024 features)"}
    attrs.update(changes)
    return attrs


def test_user_dataset_names_itself_and_its_style(tmp_path):
    video = tiny_video()
    video["user_scores"] = np.ones((3, 60), np.float32)
    path = write_eccv16(tmp_path / "any_name.h5", {"video_1": video}, user_attrs())
    data = eccv16.load_eccv16(path)
    assert (data.dataset, data.style, data.is_user, data.is_surrogate) == ("my_clips", "tvsum", True, False)
    assert data.provenance["kind"] == "user" and data.provenance["encoder"] == "mobilenet_v1_1024"
    assert data.label == "user dataset my_clips (mobilenet_v1_1024 features)"
    assert data["video_1"].user_scores.shape == (3, 60)
    assert eccv16.declared_dataset(path) == "my_clips"
    assert eccv16.load_eccv16(path, "my_clips").dataset == "my_clips"
    with pytest.raises(DataFormatError, match="holds the user dataset my_clips, not summe"):
        eccv16.load_eccv16(path, "summe")


@pytest.mark.parametrize("attrs, message", [
    (user_attrs(dataset="tvsum"), "may not be called"),
    (user_attrs(dataset="a b"), "user dataset attribute 'dataset'"),
    (user_attrs(style="other"), "'style'"),
])
def test_user_dataset_attributes_are_checked(tmp_path, attrs, message):
    path = write_eccv16(tmp_path / "u.h5", {"video_1": tiny_video()}, attrs)
    with pytest.raises(DataFormatError, match=message):
        eccv16.load_eccv16(path)


def test_user_scores_shape_is_checked(tmp_path):
    video = tiny_video()
    video["user_scores"] = np.ones((3, 59), np.float32)
    with pytest.raises(DataFormatError, match="user_scores"):
        eccv16.load_eccv16(write_eccv16(tmp_path / "u.h5", {"video_1": video}, user_attrs()))


def test_benchmark_files_keep_their_style():
    data = eccv16.Eccv16Dataset(path=Path("x.h5"), dataset="summe", videos={}, is_surrogate=True)
    assert data.style == "summe" and not data.is_user
