"""csta_lib.book.own_videos and the chapter's figure: the example's inputs, build-and-split into one folder that
a second run reuses byte for byte, the tables and the timeline of what was built."""

from __future__ import annotations

from pathlib import Path

import pytest
from video_support import OWN_CLIPS, make_own_clips, write_own_annotations

from csta_lib.book import figures, own_videos
from csta_lib.data.splits import load_splits
from csta_lib.errors import MissingDataError
from csta_lib.runs import locator


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> own_videos.BuiltDataset:
    folder = tmp_path_factory.mktemp("own_videos")
    make_own_clips(folder / "clips")
    annotations = write_own_annotations(folder / "annotations.csv")
    return own_videos.build_and_split([folder / "clips"], annotations, folder / "work", name="clips", folds=3, seed=1)


def test_build_and_split_writes_the_file_its_folds_and_a_grid_source(built):
    assert built.h5 == built.h5.parent / "clips.h5" and built.h5.is_file()
    assert built.splits_file.read_text().count("\n") == 3
    folds = load_splits(built.splits_file, "clips")
    assert sorted(k for f in folds for k in f.test_keys) == ["video_1", "video_2", "video_3"]
    assert [f.test_keys for f in folds] == [f.test_keys for f in built.folds]
    assert (built.source.dataset, built.source.features, built.source.user.n_folds) == ("clips", built.h5, 3)
    # the file's keys follow the folder's videos in name order, and each key maps back to its source video
    assert [built.video_path(f"video_{k}").name for k in (1, 2, 3)] == sorted(OWN_CLIPS)
    assert set(built.durations()) == {"video_1", "video_2", "video_3"}
    assert all(2.5 < seconds < 4.0 for seconds in built.durations().values())


def test_a_second_build_reuses_every_encoded_video_and_writes_the_same_bytes(built):
    again = own_videos.build_and_split(built.videos, built.h5.parent.parent / "annotations.csv", built.h5.parent,
                                       name="clips", folds=3, seed=1)
    assert again.summary["cache"] == {**built.summary["cache"], "reused": 3, "encoded": 0}
    assert again.summary["sha256"] == built.summary["sha256"]
    assert again.splits_file.read_text() == built.splits_file.read_text()


def test_tables_and_words_describe_the_build(built):
    videos = own_videos.per_video_frame(built)
    assert list(videos["video"]) == sorted(OWN_CLIPS) and (videos["KTS shots"] >= 1).all()
    assert (videos["annotators"] == 2).all()
    folds = own_videos.folds_frame(built)
    assert list(folds["fold"]) == [0, 1, 2] and set(folds["training videos"]) == {2}
    assert all("(video_" in text for text in folds["test videos"])
    text = own_videos.provenance_text(built)
    assert "3 videos" in text and "annotations annotations.csv, tvsum style" in text
    assert "not SumMe or TVSum and not surrogate" in text and "worked example" not in text  # not the shipped file
    assert own_videos.shot_settings_text(built.summary) == ("KTS penalty weight 5, shots at least 1 s and at "
                                                             "most 10 s")


def test_build_time_and_warnings_in_words(built):
    cold = own_videos.build_time_text(built.summary)
    assert "video(s) encoded now" in cold and "× real time" in cold
    warm = {**built.summary, "cache": {**built.summary["cache"], "encoded": 0, "reused": 3}}
    assert "reused every video's encoded form" in own_videos.build_time_text(warm)
    assert "real time" not in own_videos.build_time_text(warm).split(";")[0]
    text = own_videos.warnings_text({"warnings": ["a.mp4: empty; shorter shots (--max-shot-seconds) help"]})
    assert text.startswith("**What the build warned about:**") and "(`--max-shot-seconds`)" in text
    assert own_videos.warnings_text({"warnings": []}) == ""


def test_the_timeline_has_a_panel_per_video_with_shots_scores_and_user_summaries(built):
    fig = figures.built_videos_figure(built.data(), built.durations(), "settings in words")
    panels = [ax for ax in fig.axes if ax.get_title(loc="left")]
    assert len(panels) == 3
    for ax, name in zip(panels, sorted(OWN_CLIPS), strict=True):
        assert ax.get_title(loc="left").startswith(f"{name} (video_") and "2 annotators" in ax.get_title(loc="left")
        assert ax.get_xlim()[1] == pytest.approx(built.durations()[ax.get_title(loc="left").split("(")[1].split(")")[0]])
        assert len(ax.lines) >= 1 and ax.collections  # the score line; the user-summary bars
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("settings in words" in t for t in legend)


def test_the_example_names_its_missing_clips(monkeypatch):
    assert own_videos.EXAMPLE_ANNOTATIONS.is_file()
    monkeypatch.setattr(locator, "find", lambda name: None if name == "videos.bikes" else Path(f"/x/{name}"))
    with pytest.raises(MissingDataError, match=r"videos\.bikes were not found.*csta data check"):
        own_videos.example_videos()
    monkeypatch.setattr(locator, "find", lambda name: Path(f"/x/{name}"))
    assert [p.name for p in own_videos.example_videos()] == list(own_videos.EXAMPLE_VIDEOS)


def test_the_work_folder_sits_beside_the_store(tmp_path):
    assert own_videos.default_work_dir(tmp_path / "store") == tmp_path / "own_videos"
    assert own_videos.default_work_dir(None).parts[-2:] == ("results", "own_videos")
