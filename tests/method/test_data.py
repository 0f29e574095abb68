"""Readers: eccv16 h5 files, TVSum/SumMe annotations, split files; and their bad-input errors."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from csta_lib.data import annotations, eccv16, splits
from csta_lib.runs.locator import find
from csta_lib.errors import ConfigError, DataFormatError, MissingDataError
from support import need, tiny_video, write_eccv16



# --------------------------------------------------------------------------------------------
# hand-made eccv16 files



def test_eccv16_reader_loads_a_valid_file(tmp_path):
    videos = {f"video_{k}": tiny_video(seed=k) for k in (1, 2, 10)}
    path = write_eccv16(tmp_path / "eccv16_dataset_summe_google_pool5.h5", videos)
    ds = eccv16.load_eccv16(path)
    assert ds.dataset == "summe" and not ds.is_surrogate
    assert ds.keys() == ["video_1", "video_2", "video_10"]  # numeric, not ASCII order
    assert ds.provenance["kind"] == "real" and ds.provenance["synthetic"] == []
    assert len(ds.sha256) == 64
    v = ds["video_10"]
    assert v.features.dtype == np.float32 and v.features.shape == (4, 8)
    np.testing.assert_array_equal(v.features, videos["video_10"]["features"])
    assert v.user_summary.dtype == np.uint8 and v.user_summary.shape == (3, 60)
    assert v.n_frames == 60 and v.n_steps == 4 and v.video_name == "tiny"
    assert v.change_points.tolist() == [[0, 29], [30, 59]]
    assert not v.features.flags.writeable  # shared, cached arrays must not be modified
    assert eccv16.load_eccv16(path) is ds  # loaded once
    with pytest.raises(KeyError, match="video_3"):
        ds["video_3"]


def test_eccv16_reader_reads_surrogate_attributes(tmp_path):
    attrs = {"surrogate": True, "dataset": "tvsum", "seed": 7, "real": json.dumps(["gtscore"]),
             "synthetic": json.dumps(["features"])}
    path = write_eccv16(tmp_path / "anything.h5", {"video_1": tiny_video()}, attrs)
    ds = eccv16.load_eccv16(path)
    assert ds.is_surrogate and ds.dataset == "tvsum"
    assert ds.provenance["label"] == "surrogate features" == ds.label
    assert ds.provenance["seed"] == 7 and ds.provenance["real"] == ["gtscore"]
    with pytest.raises(DataFormatError, match="holds tvsum, not summe"):
        eccv16.load_eccv16(path, dataset="summe")


def test_dataset_names_are_checked():
    assert eccv16.check_dataset("SumMe") == "summe" and eccv16.check_dataset("TVSum") == "tvsum"
    with pytest.raises(ConfigError, match="unknown dataset 'ovp'"):
        eccv16.check_dataset("ovp")


def _corrupt(**changes) -> dict:
    video = tiny_video()
    for name, value in changes.items():
        if value is None:
            del video[name]
        else:
            video[name] = value
    return video


BAD_VIDEOS = {
    "missing features": (_corrupt(features=None), "missing key 'features'"),
    "missing user_summary": (_corrupt(user_summary=None), "missing key 'user_summary'"),
    "gtscore length": (_corrupt(gtscore=np.zeros(5, np.float32)), "video_1/gtscore: shape"),
    "picks length": (_corrupt(picks=np.arange(3) * 15), "video_1/picks: shape"),
    "user_summary width": (_corrupt(user_summary=np.zeros((3, 59), np.uint8)), "video_1/user_summary: shape"),
    "NaN features": (_corrupt(features=np.full((4, 8), np.nan, np.float32)), "video_1/features: 32 non-finite"),
    "inf gtscore": (_corrupt(gtscore=np.array([0, np.inf, 0, 0], np.float32)), "video_1/gtscore: 1 non-finite"),
    "empty video": (_corrupt(features=np.zeros((0, 8), np.float32), gtscore=np.zeros(0, np.float32),
                             picks=np.zeros(0, np.int32)), "empty video"),
    "shot gap": (_corrupt(change_points=np.array([[0, 20], [30, 59]])), "change_points"),
    "shots short of n_frames": (_corrupt(change_points=np.array([[0, 29], [30, 50]])), "change_points"),
    "n_frame_per_seg": (_corrupt(n_frame_per_seg=np.array([29, 31])), "n_frame_per_seg"),
    "picks beyond video": (_corrupt(picks=np.array([0, 15, 30, 60])), "picks"),
    "non-binary summary": (_corrupt(user_summary=np.full((3, 60), 2, np.uint8)), "0 or 1"),
    "text features": (_corrupt(features=np.array([["a"] * 8] * 4, dtype="S1")), "expected numbers"),
}


@pytest.mark.parametrize("case", sorted(BAD_VIDEOS))
def test_eccv16_reader_rejects_bad_videos(tmp_path, case):
    video, expected = BAD_VIDEOS[case]
    path = write_eccv16(tmp_path / "summe.h5", {"video_1": video})
    with pytest.raises(DataFormatError) as info:
        eccv16.load_eccv16(path)
    message = str(info.value)
    assert expected in message
    assert str(path) in message and "video_1" in message


def test_eccv16_reader_rejects_non_hdf5_and_missing_files(tmp_path):
    bogus = tmp_path / "eccv16_dataset_summe_google_pool5.h5"
    bogus.write_text("this is not HDF5\n")
    with pytest.raises(DataFormatError, match="not an HDF5 file"):
        eccv16.load_eccv16(bogus)
    with pytest.raises(MissingDataError, match="no such file"):
        eccv16.load_eccv16(tmp_path / "absent.h5")
    empty = write_eccv16(tmp_path / "summe_empty.h5", {})
    with pytest.raises(DataFormatError, match="no video_<k> groups"):
        eccv16.load_eccv16(empty)


def test_eccv16_reader_wants_a_dataset_it_can_name(tmp_path):
    path = write_eccv16(tmp_path / "features.h5", {"video_1": tiny_video()})
    with pytest.raises(DataFormatError, match="pass dataset"):
        eccv16.load_eccv16(path)
    assert eccv16.load_eccv16(path, dataset="TVSum").dataset == "tvsum"
    with pytest.raises(ConfigError):
        eccv16.load_eccv16(path, dataset="youtube")


def test_eccv16_reader_rejects_inconsistent_feature_widths(tmp_path):
    path = write_eccv16(tmp_path / "summe.h5", {"video_1": tiny_video(dim=8), "video_2": tiny_video(dim=9)})
    with pytest.raises(DataFormatError, match="video_2/features"):
        eccv16.load_eccv16(path)


# --------------------------------------------------------------------------------------------
# TVSum and SumMe annotations (real files)


def test_tvsum_annotations():
    path = need("tvsum.annotations")
    videos = annotations.load_tvsum(path)
    assert list(videos) == [f"video_{k}" for k in range(1, 51)]
    first = videos["video_1"]
    assert first.video_id == "AwmHb44_ouw" and first.category == "VT" and first.n_frames == 10597
    assert "change tires" in first.title
    for v in videos.values():
        assert v.user_scores.shape == (20, v.n_frames)
        assert v.user_scores.min() >= 1 and v.user_scores.max() <= 5
        assert 20 < v.fps < 35
    assert len({v.video_id for v in videos.values()}) == 50
    fields = find("eccv16.fields")
    if fields is not None:  # order = the eccv16 h5 order
        with h5py.File(fields, "r") as h5:
            for key, v in videos.items():
                assert h5["tvsum"][key]["video_name"][()].decode() == v.video_id
                assert int(h5["tvsum"][key]["n_frames"][()]) == v.n_frames


def test_summe_annotations_in_vslstm_order():
    gt = need("summe.gt")
    videos = annotations.load_summe(gt, video_list=need("summe.video_list"))  # its order is checked too
    names = [v.name for v in videos.values()]
    assert list(videos) == [f"video_{k}" for k in range(1, 26)]
    assert names == sorted(names) and names[0] == "Air_Force_One" and names[-1] == "playing_ball"
    assert names == annotations.summe_video_order(need("summe.video_list"))
    total_users = 0
    for v in videos.values():
        assert v.user_scores.shape[1] == v.n_frames and 15 <= v.user_scores.shape[0] <= 18
        np.testing.assert_allclose(v.gt_score, (v.user_scores > 0).mean(axis=0), atol=1e-12)
        assert 14 < v.fps < 31
        total_users += v.user_scores.shape[0]
    assert total_users == 390


def test_steps_of_a_video():
    assert eccv16.n_steps(4494) == 300 and eccv16.n_steps(15) == 1 and eccv16.n_steps(16) == 2


def test_summe_order_disagreeing_with_the_video_list_is_refused(tmp_path):
    gt = need("summe.gt")
    video_list = tmp_path / "SumMe_data_vsLSTM.mat"
    names = annotations.summe_video_order(need("summe.video_list"))
    with h5py.File(video_list, "w") as h5:  # the same names, two swapped, as MATLAB v7.3 char arrays
        swapped = [names[1], names[0], *names[2:]]
        refs = [h5.create_dataset(f"#refs#/{i}", data=np.array([ord(c) for c in n], dtype=np.uint16)).ref
                for i, n in enumerate(swapped)]
        h5.create_dataset("nameVid", data=np.array(refs, dtype=h5py.ref_dtype))
    with pytest.raises(DataFormatError, match="differs from nameVid"):
        annotations.load_summe(gt, video_list=video_list)


def test_annotation_readers_reject_bad_files(tmp_path):
    garbage = tmp_path / "ydata-tvsum50.mat"
    garbage.write_bytes(b"\x00not a mat file" * 10)
    with pytest.raises(DataFormatError, match="not a MATLAB v7.3"):
        annotations.load_tvsum(garbage)
    wrong = tmp_path / "wrong.mat"
    with h5py.File(wrong, "w") as h5:
        h5["something"] = np.zeros(3)
    with pytest.raises(DataFormatError, match="missing struct 'tvsum50'"):
        annotations.load_tvsum(wrong)
    with pytest.raises(MissingDataError):
        annotations.load_tvsum(tmp_path / "absent.mat")

    gt = tmp_path / "GT"
    gt.mkdir()
    (gt / "Broken.mat").write_bytes(b"garbage, not MATLAB")
    with pytest.raises(DataFormatError, match="Broken.mat"):
        annotations.load_summe(gt)


def test_summe_reader_names_missing_keys_and_shape_errors(tmp_path):
    import scipy.io

    gt = tmp_path / "GT"
    gt.mkdir()
    scipy.io.savemat(gt / "A.mat", {"user_score": np.zeros((10, 2), np.uint8), "nFrames": 10, "FPS": 30,
                                    "video_duration": 0.33})
    with pytest.raises(DataFormatError, match="A.mat: missing key 'gt_score'"):
        annotations.load_summe(gt)
    scipy.io.savemat(gt / "A.mat", {"user_score": np.zeros((9, 2), np.uint8), "gt_score": np.zeros((10, 1)),
                                    "nFrames": 10, "FPS": 30, "video_duration": 0.33})
    with pytest.raises(DataFormatError, match="user_score: shape"):
        annotations.load_summe(gt)
    scipy.io.savemat(gt / "A.mat", {"user_score": np.zeros((10, 2), np.uint8), "gt_score": np.full((10, 1), np.nan),
                                    "nFrames": 10, "FPS": 30, "video_duration": 0.33})
    with pytest.raises(DataFormatError, match="non-finite"):
        annotations.load_summe(gt)
    empty = tmp_path / "GT_empty"
    empty.mkdir()
    with pytest.raises(DataFormatError, match="no .mat files"):
        annotations.load_summe(empty)


# --------------------------------------------------------------------------------------------
# split files


REFERENCE_TEST_FOLDS = {  # the official CSTA split files
    "summe": [{2, 11, 13, 14, 24}, {9, 10, 12, 21, 23}, {5, 7, 8, 20, 25}, {1, 4, 15, 17, 18}, {3, 6, 16, 19, 22}],
    "tvsum": [{7, 12, 21, 24, 31, 34, 38, 44, 48, 49}, {1, 4, 15, 17, 19, 20, 36, 41, 43, 46},
              {2, 8, 9, 18, 27, 29, 35, 39, 40, 47}, {5, 6, 16, 22, 23, 25, 28, 33, 45, 50},
              {3, 10, 11, 13, 14, 26, 30, 32, 37, 42}],
}


@pytest.mark.parametrize("dataset", ["summe", "tvsum"])
def test_official_csta_splits_are_a_true_five_fold(dataset):
    folds = splits.load_splits(need(f"splits.csta.{dataset}"), dataset)
    n = eccv16.N_VIDEOS[dataset]
    everything = {f"video_{k}" for k in range(1, n + 1)}
    assert [s.index for s in folds] == [0, 1, 2, 3, 4]
    tests = [set(s.test_keys) for s in folds]
    assert set().union(*tests) == everything and sum(map(len, tests)) == n  # disjoint and covering
    for s in folds:
        assert s.dataset == dataset and "csta" in s.source
        assert set(s.train_keys) == everything - set(s.test_keys)
    assert [{int(k.split("_")[1]) for k in t} for t in tests] == REFERENCE_TEST_FOLDS[dataset]


@pytest.mark.parametrize("name", ["splits.pglsum.summe", "splits.vasnet.tvsum", "splits.dsnet.summe",
                                  "splits.dsnet.tvsum", "splits.msva.summe"])
def test_other_split_families(name):
    path = need(name)
    folds = splits.load_splits(path)
    dataset = name.rsplit(".", 1)[1]
    n = eccv16.N_VIDEOS[dataset]
    assert len(folds) == 5
    for s in folds:
        assert s.dataset == dataset
        assert all(k.startswith("video_") and 1 <= int(k[6:]) <= n for k in s.keys)
        assert len(s.train_keys) + len(s.test_keys) == n and not set(s.train_keys) & set(s.test_keys)


def test_dsnet_keys_are_normalised(tmp_path):
    yml = tmp_path / "summe.yml"
    yml.write_text("- train_keys:\n  - ../datasets/eccv16_dataset_summe_google_pool5.h5/video_1\n"
                   "  - ../datasets/eccv16_dataset_tvsum_google_pool5.h5/video_7\n"
                   "  test_keys:\n  - ../datasets/eccv16_dataset_summe_google_pool5.h5/video_22\n")
    (split,) = splits.load_splits(yml)
    assert split.train_keys == ("video_1", "tvsum/video_7") and split.test_keys == ("video_22",)
    assert split.source.endswith("summe.yml (dsnet)")
    split.validate(["video_1", "video_22"])  # other datasets' videos are not this dataset's keys


def test_split_keys_must_exist_in_the_dataset(tmp_path):
    txt = tmp_path / "SumMe_splits.txt"
    txt.write_text("SumMe/split0/video_1,video_2,video_30/video_3\n")
    with pytest.raises(DataFormatError, match="video_30"):
        splits.load_splits(txt)
    txt.write_text("SumMe/split0/video_1,video_2,video_4/video_3\n")
    (split,) = splits.load_splits(txt)
    with pytest.raises(DataFormatError, match=r"key\(s\) video_3, video_4 not in") as info:
        split.validate(["video_1", "video_2"], where="tiny.h5")
    assert "tiny.h5" in str(info.value)
    with pytest.raises(DataFormatError, match="for summe, not tvsum"):
        splits.load_splits(txt, dataset="tvsum")
    txt.write_text("SumMe/split0/video_1,video_2/video_2\n")
    with pytest.raises(DataFormatError, match="both train and test: video_2"):
        splits.load_splits(txt)


def test_split_files_bad_input(tmp_path):
    bad_json = tmp_path / "summe_splits.json"
    bad_json.write_text("[{\"train_keys\": [\"video_1\"]")
    with pytest.raises(DataFormatError, match="not valid JSON"):
        splits.load_splits(bad_json)
    bad_json.write_text(json.dumps([{"train": ["video_1"]}]))
    with pytest.raises(DataFormatError, match="'train_keys' and 'test_keys'"):
        splits.load_splits(bad_json)
    other = tmp_path / "splits.csv"
    other.write_text("a,b\n")
    with pytest.raises(DataFormatError, match="unknown split file type"):
        splits.load_splits(other)
    unnamed = tmp_path / "folds.json"
    unnamed.write_text(json.dumps([{"train_keys": ["video_1"], "test_keys": ["video_2"]}]))
    with pytest.raises(DataFormatError, match="cannot tell the dataset"):
        splits.load_splits(unnamed)
    assert splits.load_splits(unnamed, dataset="tvsum")[0].dataset == "tvsum"
    with pytest.raises(ConfigError, match="neither summe nor tvsum nor a user dataset name"):
        splits.load_splits(unnamed, dataset="not a name")
    assert splits.load_splits(unnamed, dataset="ovp")[0].dataset == "ovp"  # a user dataset's own name
    with pytest.raises(MissingDataError):
        splits.load_splits(tmp_path / "absent.txt")
    malformed = tmp_path / "TVSum_splits.txt"
    malformed.write_text("TVSum/split0/video_1\n")
    with pytest.raises(DataFormatError, match="line 1"):
        splits.load_splits(malformed)
