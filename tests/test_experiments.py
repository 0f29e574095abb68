"""Named experiments and profiles: what each grid contains, the sizes, the smoke data, the quick budget."""

from __future__ import annotations

import dataclasses

import pytest

from csta_lib import experiments
from csta_lib.config import PRESETS, TABLE2_ORDER
from csta_lib.data import load_eccv16, load_splits
from csta_lib.data.locator import sha256_file
from csta_lib.errors import ConfigError, CstaInputError


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("surrogate-cache")


def test_every_profile_sizes_every_experiment():
    assert set(experiments.EXPERIMENTS) == {"table1", "table2", "fig4", "deviations"}
    assert experiments.PROFILES == ("smoke", "quick", "paper")
    for profile in experiments.PROFILES:
        assert set(experiments.PROFILE_SIZES[profile]) == set(experiments.EXPERIMENTS)


def test_paper_profile_is_the_papers_protocol():
    for name in experiments.EXPERIMENTS:
        s = experiments.size(name, "paper")
        assert set(s.datasets) == {"summe", "tvsum"}
        assert s.splits == (0, 1, 2, 3, 4)
        assert len(s.seeds) >= 5
        assert s.epochs == 100
        assert s.data == "full"
        assert experiments.describe(name, "paper").endswith("the paper's full protocol.")


def test_experiment_rows():
    assert [v.preset for v in experiments.EXPERIMENTS["table2"].variants] == list(TABLE2_ORDER)
    fig4 = experiments.EXPERIMENTS["fig4"].variants
    assert [v.config for v in fig4] == [PRESETS[f"fig4.{b}"] for b in
                                        ("googlenet", "mobilenet_v2", "efficientnet_b0", "resnet18")]
    # GoogLeNet's bar is the Table 2 baseline model: the two experiments share those runs in the store.
    table2_baseline = experiments.EXPERIMENTS["table2"].variants[0]
    assert fig4[0].name == table2_baseline.name == "table2.baseline"
    base, layernorm, bilinear = experiments.EXPERIMENTS["deviations"].variants
    assert base.config == PRESETS["paper"]
    assert experiments.EXPERIMENTS["table1"].variants[0].config == PRESETS["paper"]
    assert layernorm.config == PRESETS["paper"].replace(skip_norm="layernorm")
    assert bilinear.config == PRESETS["paper"].replace(cnn_resize="bilinear")
    assert layernorm.name == "paper+skip_norm=layernorm"
    with pytest.raises(ConfigError):
        _ = experiments.Variant("bad", "paper", (("skip_norm", "groupnorm"),)).config


def test_expand_gives_training_specs(cache):
    from csta_lib import train

    for name in experiments.EXPERIMENTS:
        specs = experiments.expand(name, "smoke", cache_dir=cache)
        s = experiments.size(name, "smoke")
        exp = experiments.EXPERIMENTS[name]
        assert len(specs) == len(exp.variants) * len(s.datasets) * len(s.splits) * len(s.seeds)
        assert all(isinstance(spec, train.RunSpec) and spec.epochs == s.epochs for spec in specs)
        assert {spec.variant for spec in specs} == {v.name for v in exp.variants}
    dev = experiments.expand("deviations", "smoke", cache_dir=cache)
    assert [spec.overrides for spec in dev] == [(), (("skip_norm", "layernorm"),), (("cnn_resize", "bilinear"),)]
    paper = experiments.plan("table1", "paper", data={d: experiments.DataSource(d, cache / f"{d}.h5", None)
                                                      for d in ("summe", "tvsum")})
    assert len(paper) == 2 * 5 * 5
    assert {(p.dataset, p.split, p.seed) for p in paper} == {
        (d, k, s) for d in ("summe", "tvsum") for k in range(5) for s in range(5)}
    assert all(p.spec().splits_file is None for p in paper)  # the official CSTA splits


def test_smoke_data_is_tiny_real_layout_and_deterministic(cache, tmp_path):
    data = experiments.prepare_data("table1", "smoke", cache)
    for dataset, src in data.items():
        ds = load_eccv16(src.features, dataset)
        assert ds.is_surrogate
        (split,) = load_splits(src.splits_file, dataset)
        train_keys, test_keys = experiments.TINY_SPLITS[dataset]
        assert split.train_keys == train_keys and split.test_keys == test_keys
        split.validate(ds.keys())
        assert max(ds[k].n_steps for k in ds.keys()) < 260
        again = experiments.tiny_surrogate(dataset, tmp_path)  # built again elsewhere: the same bytes
        assert sha256_file(again.features) == sha256_file(src.features)


def test_quick_profile_fits_the_book_budget():
    names = list(experiments.EXPERIMENTS)
    seconds = experiments.estimate_profile_seconds(names, "quick")
    assert seconds <= 12 * 60, seconds
    # the CSTA run of table1 (SumMe), table2's last row and deviations' first row is one run
    separate = sum(experiments.unique_runs([n], "quick") for n in names)
    assert experiments.unique_runs(names, "quick") == separate - 2
    text = experiments.describe("table2", "quick")
    assert "fold(s) 0 of 5" in text and "instead of 100" in text and "summe only" in text


def test_unknown_names():
    with pytest.raises(CstaInputError, match="known experiments: table1, table2, fig4, deviations"):
        experiments.plan("table3", "smoke")
    with pytest.raises(CstaInputError, match="known profiles: smoke, quick, paper"):
        experiments.size("table1", "full")
    with pytest.raises(CstaInputError, match="no data given"):
        experiments.plan("table1", "smoke", data={})


def test_runplan_spec_matches_plan(cache):
    (p, *_) = experiments.plan("deviations", "smoke", cache_dir=cache)
    spec = p.spec()
    assert (spec.preset, spec.dataset, spec.split, spec.seed) == (p.variant.preset, p.dataset, p.split, p.seed)
    assert spec.data_path == str(p.data.features)
    assert dataclasses.replace(spec, device="cpu").variant == p.variant.name
