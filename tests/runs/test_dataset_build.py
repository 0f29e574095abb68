"""csta_lib.runs.dataset_build: a user's videos and annotations -> one eccv16 file that every reader takes; the
cache that makes a stopped build resume with the same bytes; one clear error for every kind of bad input."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
from video_support import OWN_CLIPS, make_own_clips, make_synthetic_video, write_own_annotations

from csta_lib.data.eccv16 import FRAME_STEP, load_eccv16, sha256_file
from csta_lib.data.user_annotations import AnnotationError, load_annotations, user_frame_scores
from csta_lib.errors import ConfigError, CstaInputError, DiskFullError
from csta_lib.evaluation import DatasetEvaluator, generate_summary, knapsack, shot_scores
from csta_lib.runs import dataset_build
from csta_lib.runs.video import ShotSettings, VideoInputError, probe_video

#: Shots of at most two seconds: the 3-s clips then have several, and each annotator's 15 % knapsack picks some.
SHORT_SHOTS = ShotSettings(min_shot_seconds=0.4, max_shot_seconds=2.0)
BUDGET = 0.5  # of a 3-s clip: a 15 % summary would be shorter than one 15-frame step


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("own") / "clips"
    make_own_clips(folder)
    return folder


@pytest.fixture(scope="module")
def built(clips, tmp_path_factory) -> dict:
    """One TVSum-style and one SumMe-style build of the three clips."""
    out = tmp_path_factory.mktemp("built")
    result = {}
    for style in ("tvsum", "summe"):
        ann = write_own_annotations(out / f"{style}.csv", style)
        result[style] = dataset_build.build_dataset([clips], ann, out / f"own_{style}.h5", style=style,
                                                    cache_dir=out / "cache", shots=SHORT_SHOTS, budget=BUDGET)
        result[f"{style}_annotations"] = ann
    return result


def test_every_field_in_the_eccv16_layout(built, clips):
    result = built["tvsum"]
    data = load_eccv16(result.out)
    assert (data.dataset, data.style, data.is_user, data.is_surrogate) == ("own_tvsum", "tvsum", True, False)
    assert data.keys() == ["video_1", "video_2", "video_3"]  # the folder's videos in name order
    with h5py.File(result.out, "r") as h5:
        for k, name in enumerate(sorted(OWN_CLIPS), 1):
            g = h5[f"video_{k}"]
            n_frames = int(g["n_frames"][()])
            assert n_frames == probe_video(clips / name).declared_frames or n_frames == sum(
                n for _, n in OWN_CLIPS[name][0])
            n_steps = -(-n_frames // FRAME_STEP)
            assert g["features"].dtype == np.float32 and g["features"].shape == (n_steps, 1024)
            assert g["gtscore"].dtype == np.float32 and g["gtscore"].shape == (n_steps,)
            assert g["user_summary"].dtype == np.uint8 and g["user_summary"].shape == (2, n_frames)
            assert g["picks"].dtype == np.int32 and g["picks"][()].tolist() == list(range(0, n_frames, FRAME_STEP))
            cps = g["change_points"][()]
            assert cps.dtype == np.int32 and cps[0, 0] == 0 and cps[-1, 1] == n_frames - 1
            assert (cps[1:, 0] == cps[:-1, 1] + 1).all()  # no gaps, no overlaps
            assert g["n_frame_per_seg"][()].tolist() == (cps[:, 1] - cps[:, 0] + 1).tolist()
            assert int(g["n_steps"][()]) == n_steps and g["gtsummary"].shape == (n_steps,)
            assert g["video_name"][()].decode() == name
            assert g["user_scores"].shape == (2, n_frames)
        attrs = dict(h5.attrs)
    assert attrs["encoder"] == "mobilenet_v1_1024" and attrs["stride"] == FRAME_STEP and attrs["style"] == "tvsum"
    assert "csta_lib" in attrs["tool_version"]
    assert json.loads(attrs["sources"]) == {n: sha256_file(clips / n) for n in sorted(OWN_CLIPS)}
    assert json.loads(attrs["annotations"])["sha256"] == sha256_file(built["tvsum_annotations"])


def test_official_and_dsnet_style_readers_read_it_unchanged(built):
    """The keys and shapes CSTA's loader (features, gtscore; user_summary, change_points, n_frames, picks for
    evaluation) and DSNet's (also n_frame_per_seg) read, as plain h5py arrays."""
    with h5py.File(built["summe"].out, "r") as h5:
        for key in h5:
            g = h5[key]
            features, gtscore = np.array(g["features"]), np.array(g["gtscore"])
            cps, nfps, picks = np.array(g["change_points"]), np.array(g["n_frame_per_seg"]), np.array(g["picks"])
            users, n_frames = np.array(g["user_summary"]), int(np.array(g["n_frames"]))
            assert features.shape[0] == gtscore.shape[0] == picks.shape[0]
            assert users.shape[1] == n_frames == nfps.sum() == cps[-1, 1] + 1
            assert gtscore.min() >= 0.0 and gtscore.max() <= 1.0


def test_tvsum_style_fields_follow_the_eccv16_formulas(built):
    result = built["tvsum"]
    data = load_eccv16(result.out)
    ann = load_annotations(built["tvsum_annotations"])
    assert ann.scale == (1.0, 5.0)
    with h5py.File(result.out, "r") as h5:
        sources = json.loads(h5.attrs["sources"])
    for video in data.values():
        sha = sources[video.video_name]
        cache = dataset_build.read_cache(dataset_build.cache_file(result.out.parent / "cache", sha,
                                                                  "mobilenet_v1_1024", SHORT_SHOTS), sha)
        assert len(video.change_points) > 1 and video.user_summary.any(axis=1).all()
        scores = user_frame_scores(ann, video.video_name, cache.frame_starts, cache.duration)
        np.testing.assert_array_equal(video.user_scores, scores.astype(np.float32))
        expected = ((scores[:, video.picks].mean(axis=0) - 1.0) / 4.0).astype(np.float32)
        np.testing.assert_array_equal(video.gtscore, expected)
        lengths = video.n_frame_per_seg
        for user, row in enumerate(scores):  # each annotator's knapsack over the KTS shots at the budget
            chosen = knapsack(shot_scores(row, video.change_points), lengths, int(video.n_frames * BUDGET))
            np.testing.assert_array_equal(video.user_summary[user], np.repeat(chosen, lengths).astype(np.uint8))
        summary = generate_summary(video.gtscore, video.change_points, video.n_frames, video.picks, BUDGET)
        np.testing.assert_array_equal(video.gtsummary, summary[video.picks].astype(np.float32))


def test_summe_style_selections_are_the_user_summaries(built):
    data = load_eccv16(built["summe"].out)
    alpha = data["video_1"]  # alpha.mp4, 25 fps: ann selects [1.6, 2.2) s = frames 40..54
    assert alpha.video_name == "alpha.mp4" and alpha.user_scores is None
    assert alpha.user_summary[0].nonzero()[0].tolist() == list(range(40, 55))
    assert alpha.user_summary[1].nonzero()[0].tolist() == list(range(0, 10)) + list(range(50, 60))
    np.testing.assert_array_equal(alpha.gtscore, alpha.user_summary[:, alpha.picks].mean(axis=0).astype(np.float32))


def test_the_style_picks_the_evaluation_protocol(built):
    tvsum, summe = load_eccv16(built["tvsum"].out), load_eccv16(built["summe"].out)
    a, b = DatasetEvaluator(tvsum), DatasetEvaluator(summe)
    assert (a.protocol, a.f1_aggregation) == ("casum_tvsum", "mean")
    assert (b.protocol, b.f1_aggregation) == ("csta_summe", "max")
    scores = {k: np.linspace(0, 1, v.n_steps) for k, v in tvsum.items()}
    assert set(a.evaluate(scores)) == set(tvsum.keys())  # the raw scores come with the file
    otani = DatasetEvaluator(tvsum, protocol="otani").evaluate(scores)
    assert np.isfinite(otani["video_2"]["rho"])  # beta.mkv: both annotators' scores vary (bob's on alpha do not)
    assert np.isnan(otani["video_1"]["rho"])


def test_a_stopped_build_resumes_from_its_cache_with_the_same_bytes(clips, tmp_path):
    ann = write_own_annotations(tmp_path / "a.csv")
    fresh = dataset_build.build_dataset([clips], ann, tmp_path / "fresh" / "own.h5", cache_dir=tmp_path / "c1")

    def stop_after_first(name: str) -> None:
        raise KeyboardInterrupt  # as a user would, or a kill: the first video is in the cache, nothing else

    out = tmp_path / "resumed" / "own.h5"
    with pytest.raises(KeyboardInterrupt):
        dataset_build.build_dataset([clips], ann, out, cache_dir=tmp_path / "c2", on_video=stop_after_first)
    assert not out.exists() and not out.parent.exists()
    assert len(list((tmp_path / "c2").glob("*.npz"))) == 1
    resumed = dataset_build.build_dataset([clips], ann, out, cache_dir=tmp_path / "c2")
    assert resumed.summary["cache"] == {"dir": str(tmp_path / "c2"), "reused": 1, "encoded": 2}
    assert out.read_bytes() == fresh.out.read_bytes()


def test_changed_annotations_reuse_every_encoded_video(built, clips, tmp_path):
    """The cache holds what depends on the video only: new annotations rebuild in seconds."""
    ann = write_own_annotations(tmp_path / "b.csv", "summe")
    again = dataset_build.build_dataset([clips], ann, tmp_path / "again.h5", style="summe",
                                        cache_dir=built["tvsum"].out.parent / "cache", shots=SHORT_SHOTS,
                                        budget=BUDGET)
    assert again.summary["cache"]["reused"] == 3
    assert again.out.read_bytes() != built["summe"].out.read_bytes()  # its name differs: the dataset's name
    assert load_eccv16(again.out)["video_2"].user_summary.tolist() == \
        load_eccv16(built["summe"].out)["video_2"].user_summary.tolist()


def test_jobs_give_the_same_file(clips, tmp_path):
    ann = write_own_annotations(tmp_path / "a.csv")
    one = dataset_build.build_dataset([clips], ann, tmp_path / "one" / "own.h5", cache_dir=tmp_path / "c1")
    two = dataset_build.build_dataset([clips], ann, tmp_path / "two" / "own.h5", cache_dir=tmp_path / "c2", jobs=2)
    assert two.out.read_bytes() == one.out.read_bytes()


def test_a_list_file_and_paths_keep_their_order(clips, tmp_path):
    listed = tmp_path / "videos.txt"  # absolute, blank, comment and relative (to the list file) lines
    listed.write_text(f"# my clips\n{clips / 'gamma.mp4'}\n\n{os.path.relpath(clips / 'alpha.mp4', tmp_path)}\n")
    assert [p.name for p in dataset_build.discover_videos([listed])] == ["gamma.mp4", "alpha.mp4"]
    paths = [clips / "beta.mkv", clips / "alpha.mp4"]
    assert dataset_build.discover_videos(paths) == paths


# ----------------------------------------------------------------------------------------------------------------
# bad input: one clear error, nothing written


def build(clips_or_paths, ann, out, **kw):
    return dataset_build.build_dataset(clips_or_paths if isinstance(clips_or_paths, list) else [clips_or_paths],
                                       ann, out, **kw)


def test_unknown_and_unannotated_videos(clips, tmp_path):
    ann = tmp_path / "a.csv"
    ann.write_text(write_own_annotations(tmp_path / "x.csv").read_text() + "delta.mp4,ann,0,1,3\n")
    with pytest.raises(CstaInputError, match="annotations name video 'delta.mp4', which is not among the 3 videos"):
        build(clips, ann, tmp_path / "o.h5")
    ann.write_text("\n".join(line for line in (tmp_path / "x.csv").read_text().splitlines()
                             if not line.startswith("gamma")) + "\n")
    with pytest.raises(CstaInputError, match="no annotations for video 'gamma.mp4'"):
        build(clips, ann, tmp_path / "o.h5")
    ann.write_text((tmp_path / "x.csv").read_text().replace("alpha.mp4", "alpha"))
    with pytest.raises(CstaInputError, match="did you mean 'alpha.mp4'"):
        build(clips, ann, tmp_path / "o.h5")
    assert not (tmp_path / "o.h5").exists() and not (tmp_path / dataset_build.CACHE_DIR_NAME).exists()


def test_range_outside_a_video(clips, tmp_path):
    ann = tmp_path / "a.csv"
    ann.write_text(write_own_annotations(tmp_path / "x.csv").read_text() + "gamma.mp4,carl,2.0,4.5,3\n")
    with pytest.raises(AnnotationError, match=r"\[2 s, 4.5 s\) of gamma.mp4 is outside the video, which lasts 3.000 s"):
        build(clips, ann, tmp_path / "o.h5", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "o.h5").exists()


def test_bad_scores_name_the_row(clips, tmp_path):
    for bad, message in (("nan", "NaN"), ("-2", "negative")):
        ann = tmp_path / "a.csv"
        ann.write_text(write_own_annotations(tmp_path / "x.csv").read_text() + f"beta.mkv,carl,0,1,{bad}\n")
        with pytest.raises(AnnotationError, match=rf"a.csv: line 13: .*{message}"):
            build(clips, ann, tmp_path / "o.h5")


def test_a_single_annotator_is_allowed_and_said(clips, tmp_path):
    ann = tmp_path / "a.csv"
    ann.write_text("\n".join(line for line in write_own_annotations(tmp_path / "x.csv").read_text().splitlines()
                             if ",bob," not in line or not line.startswith("gamma")) + "\n")
    result = build(clips, ann, tmp_path / "o.h5", cache_dir=tmp_path / "cache")
    assert result.summary["warnings"][0] == ("gamma.mp4 has a single annotator: its F1 and rank correlations "
                                             "compare with one person's choices")
    # with the default shots (about 5 s) a 3-s clip is one shot, longer than any 15 % summary: said, not hidden
    assert "alpha.mp4: 2 of 2 user summaries are empty (no shot of its 1 fits 15% of the video" in \
        result.summary["warnings"][1]
    assert load_eccv16(result.out)["video_3"].user_summary.shape[0] == 1


def test_unreadable_audio_only_and_too_short_videos(clips, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    ann = tmp_path / "a.csv"
    (folder / "broken.mp4").write_text("not a video")
    ann.write_text("video,annotator,start,end,score\nbroken.mp4,a,0,1,1\n")
    with pytest.raises(VideoInputError, match="broken.mp4"):
        build(folder, ann, tmp_path / "o.h5", style="summe")
    (folder / "broken.mp4").unlink()
    with av.open(str(folder / "sound.m4a"), "w", format="mp4") as out:  # an audio-only file
        stream = out.add_stream("aac", rate=8000)
        stream.codec_context.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    shutil.move(folder / "sound.m4a", folder / "sound.mp4")
    ann.write_text("video,annotator,start,end,score\nsound.mp4,a,0,1,1\n")
    with pytest.raises(VideoInputError, match="sound.mp4 has no video stream"):
        build(folder, ann, tmp_path / "o.h5", style="summe")
    (folder / "sound.mp4").unlink()
    make_synthetic_video(folder / "short.mp4", [((10, 200, 10), 10)])
    ann.write_text("video,annotator,start,end,score\nshort.mp4,a,0,0.2,1\n")
    with pytest.raises(VideoInputError, match="10 frames, fewer than one 15-frame step"):
        build(folder, ann, tmp_path / "o.h5", style="summe", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "o.h5").exists()


def test_duplicate_names_and_outputs_that_are_inputs(clips, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(clips / "alpha.mp4", other / "alpha.mp4")
    ann = write_own_annotations(tmp_path / "a.csv")
    with pytest.raises(VideoInputError, match="two videos have the same name 'alpha.mp4'"):
        build([clips / "alpha.mp4", other / "alpha.mp4"], ann, tmp_path / "o.h5")
    with pytest.raises(CstaInputError, match="is the input --annotations"):
        build(clips, ann, ann)
    with pytest.raises(CstaInputError, match="is the input --videos"):
        build(clips, ann, clips / "alpha.mp4")
    assert (clips / "alpha.mp4").stat().st_size > 1000 and ann.read_text().startswith("video,")
    with pytest.raises(ConfigError, match="benchmark's name"):
        build(clips, ann, tmp_path / "tvsum.h5")
    with pytest.raises(ConfigError, match="--jobs"):
        build(clips, ann, tmp_path / "o.h5", jobs=0)
    with pytest.raises(VideoInputError, match="no video files in this folder"):
        build(tmp_path, ann, tmp_path / "o.h5")


def test_a_full_disk_leaves_nothing(built, clips, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dataset_build, "write_eccv16", full)
    out = tmp_path / "o.h5"
    with pytest.raises(DiskFullError, match="disk full"):
        build(clips, built["tvsum_annotations"], out, cache_dir=built["tvsum"].out.parent / "cache",
              shots=SHORT_SHOTS)
    assert not out.exists() and list(tmp_path.iterdir()) == []
