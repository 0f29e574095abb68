"""Surrogate eccv16 files: real fields exact, derivations exact, synthetic features deterministic."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from csta_lib.data import annotations, load_eccv16
from csta_lib.runs.locator import find
from csta_lib.runs.surrogate import resolve_features
from csta_lib.runs import surrogate
from csta_lib.errors import ConfigError, CstaInputError, DataFormatError
from csta_lib.evaluation import shot_scores
from support import need



@pytest.fixture(scope="module")
def summe_file(tmp_path_factory) -> Path:
    need("eccv16.fields")
    return surrogate.build_surrogate("summe", tmp_path_factory.mktemp("sur") / "summe.h5", seed=0, signal=0.5)


@pytest.fixture(scope="module")
def tvsum_file(tmp_path_factory) -> Path:
    need("tvsum.annotations")
    return surrogate.build_surrogate("tvsum", tmp_path_factory.mktemp("sur") / "tvsum.h5", seed=0, signal=0.5,
                                     keys=["video_1", "video_2", "video_17"])


def test_summe_surrogate_equals_the_real_fields_exactly(summe_file):
    ds = load_eccv16(summe_file)
    assert ds.dataset == "summe" and ds.is_surrogate and len(ds) == 25
    assert ds.provenance["label"] == "surrogate features"
    assert ds.provenance["synthetic"] == ["features"] and ds.provenance["derived"] == []
    with h5py.File(need("eccv16.fields"), "r") as h5:
        for key, v in ds.items():
            real = h5["summe"][key]
            for name in ("gtscore", "user_summary", "change_points", "n_frame_per_seg", "picks"):
                np.testing.assert_array_equal(getattr(v, name), real[name][()], err_msg=f"{key}/{name}")
            assert v.gtscore.dtype == real["gtscore"].dtype == np.float32
            assert v.n_frames == int(real["n_frames"][()])
            assert v.video_name == real["video_name"][()].decode()
            assert v.features.shape == (len(v.picks), 1024) and v.features.dtype == np.float32


def test_summe_fields_derived_from_gt_equal_the_real_fields():
    need("summe.gt")
    need("eccv16.fields")
    derived = surrogate.summe_fields_from_gt()
    real = surrogate.summe_fields_from_real()
    assert list(derived) == list(real)
    for key in real:
        d, r = derived[key], real[key]
        np.testing.assert_array_equal(d.user_summary, r.user_summary)  # (user_score > 0).T
        np.testing.assert_array_equal(d.gtscore, r.gtscore)  # gt_score[::15] as float32
        assert d.gtscore.dtype == r.gtscore.dtype == np.float32
        np.testing.assert_array_equal(d.picks, r.picks)
        assert d.n_frames == r.n_frames and d.video_name == r.video_name
        # the KTS shots are not derivable: uniform shots tile the same frames
        assert d.change_points[0, 0] == 0 and d.change_points[-1, 1] == r.n_frames - 1


def test_tvsum_gtscore_formula_matches_the_real_field():
    videos = annotations.load_tvsum(need("tvsum.annotations"))
    real = surrogate.read_real_fields("tvsum", need("eccv16.fields"))
    worst = 0.0
    for key, v in videos.items():
        picks = surrogate.sample_picks(v.n_frames)
        np.testing.assert_array_equal(picks, real[key]["picks"])
        worst = max(worst, float(np.abs(surrogate.tvsum_gtscore(v.user_scores, picks) - real[key]["gtscore"]).max()))
    assert worst < 1e-6


def test_tvsum_surrogate_shots_and_knapsack_summaries(tvsum_file):
    ds = load_eccv16(tvsum_file)
    assert ds.keys() == ["video_1", "video_2", "video_17"] and ds.dataset == "tvsum"
    prov = ds.provenance
    assert set(prov["derived"]) == {"change_points", "n_frame_per_seg", "user_summary"}
    assert "uniform 2-second" in prov["sources"]["change_points"]
    videos = annotations.load_tvsum(need("tvsum.annotations"))
    for key, v in ds.items():
        anno = videos[key]
        assert v.n_frames == anno.n_frames and v.video_name == anno.video_id
        lengths = v.n_frame_per_seg
        assert np.all(lengths[:-1] == round(2 * anno.fps)) and lengths[-1] <= lengths[0]
        assert v.user_summary.shape == (20, v.n_frames)
        budget = int(0.15 * v.n_frames)
        for user, summary in enumerate(v.user_summary):
            assert 0 < summary.sum() <= budget
            for start, end in v.change_points:  # whole shots only
                assert len(set(summary[start:end + 1].tolist())) == 1
            # optimal: worth at least the feasible pick of the best full-length shots
            means = shot_scores(anno.user_scores[user], v.change_points)
            chosen = summary[v.change_points[:, 0]].astype(bool)
            full_length = np.sort(means[:-1])[::-1][: budget // int(lengths[0])]
            assert means[chosen].sum() >= full_length.sum() - 1e-9


def test_features_are_deterministic_and_seeded(tmp_path, summe_file):
    need("eccv16.fields")
    again = surrogate.build_surrogate("summe", tmp_path / "again.h5", seed=0, signal=0.5, keys=["video_3"])
    other = surrogate.build_surrogate("summe", tmp_path / "other.h5", seed=1, signal=0.5, keys=["video_3"])
    full = load_eccv16(summe_file)["video_3"].features
    np.testing.assert_array_equal(load_eccv16(again)["video_3"].features, full)  # subset file = same features
    assert not np.allclose(load_eccv16(other)["video_3"].features, full)
    assert abs(float(full.mean())) < 0.05 and 0.8 < float(full.std()) < 1.2


def _signal_strength(path: Path) -> float:
    """Mean over videos of |corr(features projected on the file's signal direction, gtscore)|."""
    ds = load_eccv16(path)
    direction = surrogate._direction(ds.provenance["seed"], ds.dataset, 1024)
    return float(np.mean([abs(np.corrcoef(v.features @ direction, v.gtscore)[0, 1]) for v in ds.values()]))


def test_signal_knob_controls_what_features_say_about_gtscore(tmp_path):
    need("eccv16.fields")
    keys = ["video_1", "video_5"]
    none = surrogate.build_surrogate("summe", tmp_path / "s0.h5", signal=0.0, keys=keys)
    full = surrogate.build_surrogate("summe", tmp_path / "s1.h5", signal=1.0, keys=keys)
    ds1 = load_eccv16(full)
    for v in ds1.values():  # signal 1: every step is z(gtscore) times one fixed direction
        z = (v.gtscore - v.gtscore.mean()) / v.gtscore.std()
        direction = v.features[np.argmax(z)] / z.max()
        np.testing.assert_allclose(v.features, np.outer(z, direction), atol=1e-4)
    # signal 0: features carry shot structure only (steps of one shot are more alike than across shots)
    v0 = load_eccv16(none)["video_1"]
    shot = np.searchsorted(v0.change_points[:, 1], v0.picks)
    neighbours = [(np.corrcoef(v0.features[i], v0.features[i + 1])[0, 1], shot[i] == shot[i + 1])
                  for i in range(len(shot) - 1)]
    same = [c for c, within in neighbours if within]
    cross = [c for c, within in neighbours if not within]
    assert np.mean(same) > 0.7 and abs(np.mean(cross)) < 0.1
    half = surrogate.build_surrogate("summe", tmp_path / "s05.h5", signal=0.5, keys=keys)
    assert _signal_strength(none) < _signal_strength(half) < _signal_strength(full) + 1e-9


def test_file_attributes_record_provenance(summe_file):
    with h5py.File(summe_file, "r") as h5:
        attrs = dict(h5.attrs)
    assert bool(attrs["surrogate"]) and attrs["dataset"] == "summe" and attrs["seed"] == 0
    assert attrs["signal"] == 0.5 and attrs["builder_version"] == surrogate.BUILDER_VERSION
    for name in ("real", "derived", "synthetic", "sources"):
        assert name in attrs


def test_bad_knobs_and_names(tmp_path):
    with pytest.raises(ConfigError):
        surrogate.build_surrogate("youtube", tmp_path / "x.h5")
    with pytest.raises(CstaInputError, match="signal"):
        surrogate.build_surrogate("summe", tmp_path / "x.h5", signal=1.5)
    with pytest.raises(CstaInputError, match="seed"):
        surrogate.build_surrogate("summe", tmp_path / "x.h5", seed=-1)
    with pytest.raises(CstaInputError, match="video_99"):
        surrogate.build_surrogate("summe", tmp_path / "x.h5", keys=["video_99"])
    assert not list(tmp_path.iterdir())


def test_unwritable_destination_leaves_nothing(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(CstaInputError, match="a_file is a file, not a folder"):
        surrogate.build_surrogate("summe", blocker / "sub" / "summe.h5")
    assert [p.name for p in tmp_path.iterdir()] == ["a_file"]


def test_failure_mid_build_leaves_nothing(tmp_path, monkeypatch):
    need("eccv16.fields")
    calls = []

    def failing(fields, *args, **kwargs):
        calls.append(fields.key)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return np.zeros((len(fields.picks), 1024), np.float32)

    monkeypatch.setattr(surrogate, "synthetic_features", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        surrogate.build_surrogate("summe", tmp_path / "summe.h5", keys=["video_1", "video_2", "video_3"])
    assert not list(tmp_path.iterdir())


def test_resolve_features_builds_once_and_caches(tmp_path):
    need("eccv16.fields")
    if find("eccv16.summe") is not None:
        pytest.skip("the real SumMe feature file is present, resolve_features returns it")
    path = resolve_features("summe", cache_dir=tmp_path)
    assert path.parent == tmp_path and path.is_file()
    stamp = path.stat().st_mtime_ns
    assert resolve_features("SumMe", cache_dir=tmp_path) == path and path.stat().st_mtime_ns == stamp
    ds = load_eccv16(path)
    assert ds.is_surrogate and ds.provenance["seed"] == surrogate.DEFAULT_SEED
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_resolve_features_prefers_the_real_file(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    real = mirror / "eccv16" / "eccv16_dataset_tvsum_google_pool5.h5"
    real.parent.mkdir(parents=True)
    real.write_bytes(b"stand-in")
    monkeypatch.setenv("CSTA_DATA_MIRROR", str(mirror))
    if find("eccv16.tvsum") != real:
        pytest.skip("another data root with precedence already holds the TVSum feature file")
    assert resolve_features("tvsum", cache_dir=tmp_path / "cache") == real
    assert not (tmp_path / "cache").exists()


def _resolve_in_child(cache_dir: str) -> str:
    return str(resolve_features("summe", cache_dir=cache_dir, seed=5))


def test_two_processes_build_one_file(tmp_path):
    need("eccv16.fields")
    if find("eccv16.summe") is not None:
        pytest.skip("the real SumMe feature file is present")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        paths = pool.map(_resolve_in_child, [str(tmp_path)] * 2)
    assert paths[0] == paths[1]
    files = [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert files == [Path(paths[0]).name]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert load_eccv16(paths[0]).provenance["seed"] == 5


def test_surrogate_can_be_derived_without_the_fields_file(tmp_path):
    need("summe.gt")
    path = surrogate.build_surrogate("summe", tmp_path / "gt.h5", source="annotations", keys=["video_4"])
    ds = load_eccv16(path)
    assert ds.provenance["real"] == [] and "features" not in ds.provenance["derived"]
    with pytest.raises(CstaInputError, match="unknown surrogate source"):
        surrogate.build_surrogate("summe", tmp_path / "x.h5", source="youtube")
    with pytest.raises(DataFormatError):
        surrogate.read_real_fields("summe", path)  # a surrogate is not a fields file (no 'summe' group)
    assert os.path.exists(path)
