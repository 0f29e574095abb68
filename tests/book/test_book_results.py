"""The results chapters' library: which tables may hold paper values, captions, levels, per-video tables, downloads."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from csta_lib import evaluation
from csta_lib.runs import experiments
from csta_lib.book import captions, figures, paper, results
from csta_lib.data import load_eccv16

PAPER_TABLE1_VALUES = ("0.246", "0.274", "0.194", "0.255")


def record(key="k1", dataset="summe", split=0, seed=0, policies=("test-max", "last"), surrogate=True,
           weights=None, n_train=20, n_val=0, test_keys=("video_1", "video_2"), tau=0.3, label="CSTA",
           data_file="x.h5", variant="paper", epochs=3):
    """A run record as :func:`csta_lib.runs.training.run` writes it (only the fields the book reads)."""
    per_video = {k: {"tau": tau + 0.01 * i, "rho": tau + 0.02 + 0.01 * i, "f1": 0.5} for i, k in enumerate(test_keys)}
    selected = {p: {"epoch": epochs, "test_tau": float(np.mean([v["tau"] for v in per_video.values()])),
                    "test_rho": float(np.mean([v["rho"] for v in per_video.values()])), "test_f1": 0.5,
                    "per_video": per_video} for p in policies}
    return {"key": key, "dataset": dataset, "variant": variant, "preset": variant, "seed": seed, "n_epochs": epochs,
            "split": {"index": split, "train_keys": [f"t{i}" for i in range(n_train)],
                      "val_keys": [f"v{i}" for i in range(n_val)], "test_keys": list(test_keys)},
            "selection": {"policies": list(policies), "val_fraction": 0.2 if n_val else 0.0},
            "protocol": {"rank": evaluation.PAPER_PROTOCOL[dataset]},
            "provenance": {"surrogate": surrogate, "imagenet_weights": weights, "data_file": data_file,
                           "data": {"signal": 0.5} if surrogate else {}},
            "selected": selected, "_label": label}


# ------------------------------------------------------------------------------------------------------------
# which tables may hold paper values


def test_comparable_only_with_real_features_and_imagenet_weights():
    assert not results.comparable_with_paper([])
    assert not results.comparable_with_paper([record(surrogate=True, weights="googlenet.pth")])
    assert not results.comparable_with_paper([record(surrogate=False, weights=None)])  # random CNN init
    user = record(surrogate=False, weights="googlenet.pth")
    user["provenance"].update(user_dataset=True, encoder="mobilenet_v1_1024")
    assert not results.comparable_with_paper([user])  # a user's own videos are never the paper's data
    text = captions.protocol_caption([user])
    assert "a user dataset built by csta data build (mobilenet_v1_1024 features" in text and "eccv16" not in text
    assert results.comparable_with_paper([record(surrogate=False, weights="googlenet.pth")])
    mixed = [record(surrogate=False, weights="googlenet.pth"), record(key="k2", surrogate=True)]
    assert not results.comparable_with_paper(mixed) and results.runs_on_surrogate(mixed)


def test_surrogate_results_never_share_a_table_with_paper_values():
    """The book's contract: no <table> holds "ours" (or any result of this build) beside the paper's Table 1 values."""
    runs = [record(), record(key="k2", dataset="tvsum", tau=0.2, test_keys=("video_3",))]
    run_rows = [("CSTA, test-max selection", "this build", {"summe": (0.385, 0.433), "tvsum": (0.281, 0.366)})]
    paper_rows = results.paper_rows(paper.TABLE1, ["summe", "tvsum"])
    tables = results.split_or_merge(run_rows, paper_rows, ["summe", "tvsum"], results.comparable_with_paper(runs))
    assert [title for title, _ in tables] == [results.PAPER_TABLE_TITLE, results.CHECK_TABLE_TITLE]
    assert "surrogate features" in results.CHECK_TABLE_TITLE and "pipeline check" in results.CHECK_TABLE_TITLE
    paper_html, check_html = (frame.style.set_caption(title).to_html() for title, frame in tables)
    assert all(v in paper_html for v in PAPER_TABLE1_VALUES) and "0.385" not in paper_html
    assert "0.385" in check_html and not any(v in check_html for v in PAPER_TABLE1_VALUES)
    for html in (paper_html, check_html):
        assert "ours" not in html.lower()
    # real features and ImageNet weights: one merged table
    merged = results.split_or_merge(run_rows, paper_rows, ["summe", "tvsum"], True, merged_title="Table 1")
    assert len(merged) == 1 and len(merged[0][1]) == len(run_rows) + len(paper_rows)


def test_check_table_title_names_what_makes_results_incomparable():
    assert "surrogate features" in results.check_table_title([record()])
    assert "random CNN init" in results.check_table_title([record(surrogate=False)])
    tables = results.split_or_merge([("x", "this build", {"summe": (0.1, 0.2)})], [], ["summe"], False,
                                    check_title=results.check_table_title([record(surrogate=False)]))
    assert [t for t, _ in tables] == [results.RANDOM_INIT_TABLE_TITLE]


def test_paper_rows_keep_only_datasets_shown():
    rows = results.paper_rows(paper.TABLE1, ["summe"])
    labels = [label for label, _, _ in rows]
    assert "VSS-Net" not in labels and "CSTA" in labels  # VSS-Net reports TVSum only
    frame = results.pairs_table(rows, ["summe"])
    assert list(frame.columns) == ["SumMe τ", "SumMe ρ", "source"]
    assert frame.loc["CSTA", "SumMe τ"] == "0.246"
    tvsum = results.pairs_table(results.paper_rows(paper.TABLE1, ["summe", "tvsum"]), ["summe", "tvsum"])
    assert tvsum.loc["VSS-Net", "SumMe τ"] == "–" and tvsum.loc["VSS-Net", "TVSum ρ"] == "0.249"
    assert results.pair_cell((float("nan"), 0.1), 0) == "–" and results.pair_cell(None, 1) == "–"
    assert results.pair_cell((-0.0001, 0.1), 0) == "0.000"  # no "-0.000" for a level that is zero


def test_data_warning_says_surrogate_and_what_it_cannot_show():
    text = results.data_warning([record()], "Table 1's rows")
    assert "surrogate" in text and "signal 0.5" in text and "not comparable with the paper" in text
    assert "differences between rows" in text and text.count("Table 1's rows") == 1
    real = results.data_warning([record(surrogate=False, weights="w.pth")], "Table 1's rows")
    assert "surrogate features" in real and "not on surrogate" in real
    assert "random" in results.data_warning([record(surrogate=False)], "the bars")


# ------------------------------------------------------------------------------------------------------------
# captions carry the full protocol


def test_protocol_caption_one_run_says_n_1_and_training_videos():
    runs = [record(), record(key="k2", dataset="tvsum", n_train=40, test_keys=("video_3",))]
    text = captions.protocol_caption(runs, "test-max")
    for part in ("SumMe + TVSum", "surrogate features", "random CNN init", "csta_summe (SumMe)",
                 "casum_tvsum (TVSum)", "test-max selection", "1 fold (fold 0) × 1 seed (seed 0)", "n = 1",
                 "3 epochs", "SumMe 20 training videos, TVSum 40 training videos"):
        assert part in text, part
    assert "mean over splits and seeds" not in text


def test_captions_count_runs_per_dataset_when_the_datasets_ran_different_seeds():
    runs = [record(key=f"s{seed}", seed=seed) for seed in (0, 1, 2)] + [
        record(key="t0", dataset="tvsum", n_train=40, test_keys=("video_3",))]
    text = captions.protocol_caption(runs, "test-max")
    assert ("SumMe: 1 fold (fold 0) × 3 seeds (0-2): mean over 3 runs; TVSum: 1 fold (fold 0) × 1 seed (seed 0): "
            "each number is one run (n = 1, no interval)") in text
    assert captions.record_caption(runs).endswith("SumMe: seeds 0-2, split 0; TVSum: seed 0, split 0, 3 epochs")
    same = [record(key=f"{d}{seed}", dataset=d, seed=seed) for d in ("summe", "tvsum") for seed in (0, 1)]
    assert "1 fold (fold 0) × 2 seeds (0-1): mean over 2 runs" in captions.protocol_caption(same)
    assert "SumMe:" not in captions.protocol_caption(same).split("τ/ρ")[1]


def test_protocol_caption_many_runs_and_hold_out():
    runs = [record(key=f"k{k}{s}", split=k, seed=s) for k in range(5) for s in range(2)]
    text = captions.protocol_caption(runs, "test-max")
    assert "5 folds (0-4) × 2 seeds (0-1): mean over 10 runs" in text and "n = 1" not in text
    held = [record(key="h", policies=("val",), n_train=16, n_val=4)]
    assert "16 training videos + 4 held out for validation" in captions.protocol_caption(held, "val")
    assert captions.protocol_caption(held, "test-max") == "no runs"  # the val runs do not report test-max
    both = captions.training_videos([*runs, *held])
    assert "20 training videos (official runs)" in both and "(held-out runs)" in both


def test_summary_display_formats_numbers_for_reading():
    from csta_lib.runs import store

    runs = [record(key=f"k{s}", seed=s, tau=0.3 + 0.1 * s) for s in range(2)]
    for r in runs:
        r["epochs"] = []
    frame = results.summary_display(store.summary_table(store.results_frame(runs)), {"paper": "CSTA"})
    row = frame.loc[("SumMe", "CSTA", "test-max")]
    assert row["mean selected epoch"] == "3.0" and row["runs (folds × seeds)"] == "2 (1 fold × 2 seeds)"
    # per-run τ 0.305 and 0.405: mean 0.355, sd 0.0707, interval 0.355 ± 12.706 * 0.0707 / sqrt(2)
    assert row["τ mean ± sd"] == "0.355 ± 0.071" and row["τ 95 % CI"] == "[-0.280, 0.990]"
    one = results.summary_display(store.summary_table(store.results_frame(runs[:1])))
    assert "±" not in one.iloc[0]["τ mean ± sd"] and one.iloc[0]["τ mean ± sd"] == "0.305"
    assert one.iloc[0]["τ 95 % CI"] == "n = 1, no interval"
    per_fold = results.split_display(store.results_frame(runs), {"paper": "CSTA"})
    assert per_fold.loc[("SumMe", "test-max", "0"), "τ 95 % CI"] == "[-0.280, 0.990]"  # one row: no row level
    two = results.split_display(store.results_frame([*runs, record(key="b", variant="table2.kv")]))
    assert two.index.names == ["dataset", "row", "policy", "fold"]


# ------------------------------------------------------------------------------------------------------------
# reference levels come from the evaluation library, on the runs' own test videos


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return experiments.tiny_surrogate("summe", tmp_path_factory.mktemp("surrogate"))


def test_protocol_levels_are_the_evaluation_librarys_on_the_runs_test_videos(tiny):
    keys = ("video_19", "video_12")
    runs = [record(test_keys=keys, data_file=str(tiny.features))]
    levels = results.protocol_levels(runs, n_draws=5, seed=3)["summe"]
    data = load_eccv16(tiny.features, "summe")
    full = evaluation.DatasetEvaluator(data, protocol="csta_summe")
    sub = evaluation.DatasetEvaluator(references={k: full.references[k] for k in keys}, dataset_name="summe",
                                      protocol="csta_summe")
    rnd = evaluation.random_baseline(sub, n_draws=5, seed=3)
    gt = evaluation.upper_bound(sub)
    assert levels["random"] == pytest.approx((rnd["tau"], rnd["rho"]))
    assert levels["gt"] == pytest.approx((gt["tau"], gt["rho"]))
    assert set(levels["gt_per_video"]) == set(keys) and levels["n_test_videos"] == 2
    assert levels["protocol"] == "csta_summe" and levels["folds"] == [0]
    marks = results.level_marks({"summe": levels}, ["summe"])
    assert marks == {"Random, SumMe": levels["random"][0], "ground-truth score, SumMe": levels["gt"][0]}
    rows = results.level_rows({"summe": levels}, ["summe"])
    assert [label.split(" (")[0] for label, _, _ in rows] == ["Random", "ground-truth score"]


def test_human_levels_recompute_the_papers_human_row():
    human = results.human_levels(["summe"])["summe"]
    assert human["n_videos"] == 25
    assert human["pair"] == pytest.approx(paper.TABLE1["Human"]["summe"], abs=6e-4)


# ------------------------------------------------------------------------------------------------------------
# per-video results and downloads


def test_per_video_frame_and_display():
    runs = [record(key="a", policies=("test-max", "last")), record(key="b", policies=("val",), n_val=4, tau=0.1)]
    long = results.per_video_frame(runs)
    assert len(long) == 2 * 2 + 1 * 2  # (runs x policies x test videos)
    assert set(long["policy"]) == {"test-max", "last", "val"}
    levels = {"summe": {"gt_per_video": {"video_1": {"tau": 0.5}, "video_2": {"tau": 0.6}}}}
    table = results.per_video_display(long, levels)
    assert table.loc[("SumMe", "0", "video_2", "test-max"), "τ"] == "0.310"
    row = table.loc[("SumMe", "0", "video_2", "val")]
    assert row["τ"] == "0.110" and row["ground-truth score τ"] == "0.600" and row["seeds"] == "1"
    assert list(table.index.get_level_values("policy")[:3]) == ["test-max", "val", "last"]
    named = results.per_video_display(long, levels, {"summe": {"video_2": "Base jumping"}})
    assert named.loc[("SumMe", "0", "video_2", "last"), "name"] == "Base jumping"


def test_per_video_display_averages_seeds_and_says_how_many():
    runs = [record(key=f"s{seed}", seed=seed, tau=0.2 + 0.1 * seed) for seed in range(3)]
    table = results.per_video_display(results.per_video_frame(runs, ["test-max"]))
    row = table.loc[("SumMe", "0", "video_1", "test-max")]
    assert row["seeds"] == "3" and row["τ"] == "0.300"  # mean of 0.2, 0.3, 0.4


def test_run_sources_name_the_run_behind_each_policy():
    runs = [record(key="a"), record(key="b", policies=("val",), n_train=16, n_val=4)]
    table = results.run_sources(runs)
    assert table.loc[("test-max", "SumMe"), "training videos"] == "20"
    assert table.loc[("val", "SumMe"), "validation videos"] == "4"
    assert "official protocol" in table.loc[("last", "SumMe"), "runs"]
    assert "held out" in table.loc[("val", "SumMe"), "runs"]


def test_write_run_downloads(tmp_path):
    shared = record(key="csta", label="CSTA")
    by_experiment = {"table1": [shared, record(key="held", policies=("val",), n_val=4)],
                     "table2": [dict(shared, _label="(+) Skip Connection (CSTA)")]}
    paths = results.write_run_downloads(by_experiment, tmp_path / "dl", "all", "smoke")
    payload = json.loads(paths["json"].read_text())
    assert payload["n_runs"] == 2 and payload["profile"] == "smoke"
    csta = next(r for r in payload["runs"] if r["key"] == "csta")
    assert [e["experiment"] for e in csta["experiments"]] == ["table1", "table2"]
    assert not any(k.startswith("_") for k in csta)
    rows = list(csv.DictReader(paths["csv"].open()))
    assert len(rows) == 3  # csta: test-max + last; held: val
    assert {r["policy"] for r in rows} == {"test-max", "last", "val"}
    csta_row = next(r for r in rows if r["key"] == "csta")
    assert csta_row["experiments"] == "table1: CSTA; table2: (+) Skip Connection (CSTA)"
    assert next(r for r in rows if r["key"] == "held")["n_val_videos"] == "4"
    videos = list(csv.DictReader(paths["per_video"].open()))
    assert len(videos) == 3 * 2 and math.isclose(float(videos[0]["tau"]), 0.3)


# ------------------------------------------------------------------------------------------------------------
# texts and figures


def test_repeated_values_text_counts_rows_with_equal_tau():
    long = results.per_video_frame([record(key="a", label="A"), record(key="b", label="B"),
                                    record(key="c", label="C", tau=0.1)], ["test-max"])
    text = results.repeated_values_text(long)
    assert text.startswith("On SumMe, 2 of the 3 rows share their mean τ with another row, and on 2 of the 2 test")
    assert "binary 15 % summary" in text
    apart = results.per_video_frame([record(key="a", label="A"), record(key="c", label="C", tau=0.1)], ["test-max"])
    assert results.repeated_values_text(apart).startswith("No two rows reach exactly the same SumMe τ")
    table = results.per_video_by_row(long)
    assert list(table.columns) == ["video_1", "video_2"] and table.loc["C", "video_1"] == "0.100"


def test_bar_figure_writes_the_note_into_the_image():
    import pandas as pd

    frame = pd.DataFrame({"CNN": ["a", "b"], "τ": [0.1, 0.2], "dataset": ["SumMe", "SumMe"]})
    fig = figures.bar_figure(frame, x="CNN", y="τ", hue="dataset", caption="cap",
                             levels={"Random, SumMe": 0.09}, note="surrogate features — pipeline check")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "surrogate features — pipeline check" in texts
    assert fig.axes[0].get_ylabel() == "Kendall τ"
    assert any("Random, SumMe = 0.090" in t.get_text() for t in fig.axes[0].get_legend().get_texts())


def test_omitted_methods_are_named():
    text = results.omitted_methods_text(paper.TABLE1, ["CSTA", "GoogleNet (Baseline)", "Human", "Random"])
    for name in ("DMASum", "RR-STG", "MSVA", "SSPVS", "VASNet", "VSS-Net", "MAAM"):
        assert name in text
    assert "CSTA," not in text.split(";")[1]


def test_rescore_under_the_runs_own_protocol_gives_the_records_numbers(tmp_path):
    """A stored checkpoint scored again under the run's protocol reproduces the record's per-video τ/ρ; under
    Otani's protocol it gives other numbers (it reads the scores, not the binary summary)."""
    from csta_lib.runs import training

    official = experiments.plan("table1", "smoke", cache_dir=tmp_path / "cache", datasets=["summe"])[0]
    record_ = training.run(official.spec(), tmp_path / "store", progress=False)
    stored = record_["selected"]["test-max"]["per_video"]
    again = results.rescore(record_, "test-max", "csta_summe")
    assert set(again) == set(stored)
    for key, metrics in stored.items():
        assert again[key]["tau"] == pytest.approx(metrics["tau"], abs=1e-9)
        assert again[key]["rho"] == pytest.approx(metrics["rho"], abs=1e-9)
    otani = results.rescore(record_, "test-max", "otani")
    assert all(v["protocol"] == "otani" for v in otani.values())


@pytest.mark.parametrize("order", [1, -1])
def test_video_chapter_checkpoint_is_chosen_by_policy_not_by_key_order(monkeypatch, order):
    """Split 0 / seed 0 has an official run (test-max, last) and a held-out run (val): the chapter takes the run
    that selected the asked policy, whatever order (content keys) the store lists them in."""
    official = {"key": "b", "split": {"index": 0}, "seed": 0, "_path": "/store/b/record.json",
                "selected": {"test-max": {"checkpoint": "b/epoch_002.pt"}, "last": {"checkpoint": "b/epoch_003.pt"}}}
    held_out = {"key": "a", "split": {"index": 0}, "seed": 0, "_path": "/store/a/record.json",
                "selected": {"val": {"checkpoint": "a/epoch_001.pt"}}}
    later = {"key": "c", "split": {"index": 1}, "seed": 0, "_path": "/store/c/record.json",
             "selected": {"last": {"checkpoint": "c/epoch_003.pt"}}}
    records = [held_out, official, later][::order]
    monkeypatch.setattr(results, "run_experiment", lambda *args: (records, {}))
    path, record = results.experiment_checkpoint("table1", "smoke", dataset="tvsum", policy="last")
    assert record is official and str(path) == "/store/b/b/epoch_003.pt"
    path, record = results.experiment_checkpoint("table1", "smoke", dataset="tvsum", policy="val")
    assert record is held_out and str(path) == "/store/a/a/epoch_001.pt"


# ------------------------------------------------------------------------------------------------------------
# spread in the tables, paired tests, the selection's optimism, the distance to the paper


def test_build_rows_carry_spread_runs_and_a_surrogate_label():
    from csta_lib.runs import statistics, store

    runs = [record(key=f"k{s}", seed=s, tau=t) for s, t in enumerate((0.3, 0.32, 0.34))]
    summary = store.summary_table(store.results_frame(runs))
    spreads = results.summary_spreads(summary, "test-max")["paper"]["summe"]
    expected = statistics.spread([0.305, 0.325, 0.345])  # the per-video means of record()
    assert (spreads[0].n, spreads[0].mean, spreads[0].sd, spreads[0].ci_low) == (
        3, pytest.approx(expected.mean), pytest.approx(expected.sd), pytest.approx(expected.ci_low))
    label = results.build_label("CSTA, test-max selection", runs)
    assert label == "CSTA, test-max selection (surrogate features)"
    assert results.build_label("x", [record(surrogate=False)]) == "x (random CNN init)"
    assert results.build_label("x", [record(surrogate=False, weights="w.pth")]) == "x"
    table = results.pairs_table([(label, "this build", {"summe": spreads}),
                                 ("CSTA", "paper (as printed)", {"summe": (0.246, 0.274), "tvsum": None})],
                                ["summe", "tvsum"])
    assert list(table.columns) == ["τ", "ρ", "runs (n)", "source"]  # one row per (dataset, row): spreads are long
    assert table.loc[("SumMe", label), "τ"] == "0.325 ± 0.020 [0.275, 0.375]"
    assert table.loc[("SumMe", label), "runs (n)"] == "3"
    assert table.loc[("SumMe", "CSTA"), "τ"] == "0.246" and table.loc[("SumMe", "CSTA"), "runs (n)"] == "–"
    assert "TVSum" not in set(table.index.get_level_values("dataset"))  # no value on TVSum: no row
    one = results.summary_spreads(store.summary_table(store.results_frame(runs[:1])), "test-max")["paper"]
    assert results.pair_cell(one["summe"], 0) == "0.305 (n = 1, no interval)"
    assert results.summary_pairs(summary, "test-max")["paper"]["summe"][0] == pytest.approx(0.325)


def test_level_rows_say_which_videos():
    levels = {"summe": {"random": (0.05, 0.06), "gt": (0.4, 0.45), "n_test_videos": 5, "folds": [0]},
              "tvsum": {"random": (0.0, 0.0), "gt": (0.3, 0.4), "n_test_videos": 10, "folds": [0, 1]}}
    (random_row, gt_row) = results.level_rows(levels, ["summe", "tvsum"])
    assert random_row[0] == "Random (this protocol, the runs' test videos: SumMe 5 of fold 0, TVSum 10 of folds 0-1)"
    assert gt_row[0].startswith("ground-truth score (this protocol, the runs' test videos")


def test_paired_tables_compare_rows_on_shared_folds_and_seeds():
    base = [record(key=f"b{s}", seed=s, variant="table2.baseline", label="GoogleNet (Baseline)", tau=0.2)
            for s in range(3)]
    att = [record(key=f"a{s}", seed=s, variant="table2.attention", label="(+) Attention Module", tau=t)
           for s, t in enumerate((0.3, 0.32, 0.28))]
    kv = [record(key=f"k{s}", seed=s, variant="table2.kv", label="(+) Key, Value Embedding", tau=t)
          for s, t in enumerate((0.25, 0.35, 0.31))]
    comparisons = results.ablation_comparisons(["table2.baseline", "table2.attention", "table2.kv"])
    assert comparisons == [(("table2.attention", "test-max"), ("table2.baseline", "test-max")),
                           (("table2.kv", "test-max"), ("table2.attention", "test-max")),
                           (("table2.kv", "test-max"), ("table2.baseline", "test-max"))]
    table = results.paired_tables([*base, *att, *kv], comparisons)
    row = table.loc[("SumMe", "τ", "(+) Attention Module (surrogate features)",
                     "GoogleNet (Baseline) (surrogate features)")]
    assert row["pairs (n)"] == "3" and row["difference mean ± sd"] == "0.100 ± 0.020"
    assert row["reading"] == "larger than seed noise (higher)"
    previous = table.loc[("SumMe", "τ", "(+) Key, Value Embedding (surrogate features)",
                          "(+) Attention Module (surrogate features)")]
    # differences -0.05, 0.03, 0.03: mean 0.0033, sd sqrt((0.0533² + 2 · 0.0267²) / 2) = 0.046
    assert previous["difference mean ± sd"] == "0.003 ± 0.046" and previous["reading"] == "within seed noise"
    one = results.paired_tables([base[0], att[0]], comparisons[:1])
    assert one.iloc[0]["95 % CI"] == "n = 1, no interval"
    assert one.iloc[0]["reading"] == "n = 1, no interval: cannot be told from seed noise"
    assert results.reference_comparisons(["g", "m"], "g") == [(("m", "test-max"), ("g", "test-max"))]
    policies = results.paired_tables([record(key="o", policies=("test-max", "last"))],
                                     results.policy_comparisons("paper"))
    assert set(policies.index.get_level_values("row")) == {"test-max selection"}  # no val runs: one comparison
    assert set(policies.index.get_level_values("compared with")) == {"last selection"}


def test_selection_optimism_uses_the_test_max_epoch_of_the_same_run():
    runs = []
    for seed, taus in enumerate(([0.1, 0.3, 0.2], [0.2, 0.25, 0.4], [0.1, 0.35, 0.3])):
        r = record(key=f"h{seed}", seed=seed, policies=("val",), n_train=16, n_val=4)
        r["epochs"] = [{"epoch": e + 1, "train_loss": 0.1, "test_tau": t, "test_rho": t + 0.01,
                        "val_tau": 0.1, "val_rho": 0.1} for e, t in enumerate(taus)]
        r["selected"]["val"]["epoch"] = 1  # chosen on the validation videos
        runs.append(r)
    runs.append(record(key="official"))  # no val selection: not a held-out run
    optimism = results.selection_optimism(runs)
    assert list(optimism["test-max epoch"]) == [2, 3, 2]  # the official rule on each run's test scores
    assert list(optimism["tau optimism"]) == pytest.approx([0.2, 0.2, 0.25])
    summary = results.optimism_display(optimism)
    row = summary.loc[("SumMe", "τ")]
    assert row["runs (n)"] == "3" and row["test-max − val, mean ± sd"] == "0.217 ± 0.029"
    assert row["reading"] == "larger than seed noise (higher)"
    shown = results.optimism_runs_display(optimism)
    assert shown.loc[("SumMe", "0", "0"), "τ optimism"] == "0.200"
    assert results.optimism_display(results.selection_optimism([record()])).empty


def test_paper_comparison_compares_nothing_on_surrogate_features():
    runs = [record(key=f"s{s}", seed=s, tau=0.3 + 0.01 * s) for s in range(3)]
    runs.append(record(key="held", policies=("val",), n_val=4))
    comparison = results.paper_comparison(runs)
    assert comparison["surrogate"] and "compare nothing" in comparison["note"]
    (tau, rho) = comparison["rows"]
    assert (tau["dataset"], tau["coefficient"], tau["n"], tau["policy"]) == ("summe", "tau", 3, "test-max")
    assert tau["paper"] == 0.246 and tau["public_retrain"] == 0.227 and rho["paper"] == 0.274
    assert tau["paper_inside_ci"] is None and tau["paper_distance_sd"] is None and tau["surrogate"] is True
    assert tau["ci_low"] < tau["mean"] < tau["ci_high"]
    tables = results.distance_tables(comparison)
    assert len(tables) == 2
    build_html, reference_html = (frame.style.set_caption(caption).to_html() for caption, frame in tables)
    assert "0.246" not in build_html and "0.227" not in build_html and "not compared" in build_html
    assert "0.246" in reference_html and "0.227" in reference_html and "0.315" not in reference_html


def test_paper_comparison_on_real_features_says_whether_the_paper_is_inside():
    runs = [record(key=f"r{s}", seed=s, surrogate=False, weights="g.pth", tau=t)
            for s, t in enumerate((0.24, 0.245, 0.25))]  # per-run τ 0.245, 0.25, 0.255: [0.2376, 0.2624]
    comparison = results.paper_comparison(runs)
    tau = comparison["rows"][0]
    assert not comparison["surrogate"] and tau["comparable_with_paper"]
    assert tau["paper_inside_ci"] is True and tau["public_retrain_inside_ci"] is False
    assert tau["paper_distance_sd"] == pytest.approx((0.246 - 0.25) / 0.005)
    assert tau["reading"] == "the paper's value lies inside this build's 95 % interval (-0.8 sd from this build's mean)"
    ((caption, frame),) = results.distance_tables(comparison)
    assert frame.loc[("SumMe", "τ"), "paper inside the CI?"] == "yes" and "t interval" in caption
    one = results.paper_comparison(runs[:1])["rows"][0]
    assert one["paper_inside_ci"] is None and "cannot be placed" in one["reading"]


def test_f1_caption_names_the_shots():
    tvsum = record(dataset="tvsum")
    tvsum["provenance"]["data"] = {"sources": {"change_points": "uniform 2-second shots (fps = ...)",
                                               "user_summary": "each user's 15% knapsack over the uniform shots"}}
    text = captions.f1_caption([record(), tvsum])
    assert text.startswith("F1: SumMe: 15% knapsack summary over the eccv16 KTS shots vs the eccv16 user summaries")
    assert "TVSum: 15% knapsack summary over uniform 2-second shots" in text and "mean over users" in text


def test_runs_figure_and_learning_curves_draw_every_run():
    runs = [record(key=f"k{s}", seed=s, tau=0.3 + 0.01 * s) for s in range(3)]
    for r in runs:
        r["epochs"] = [{"epoch": e, "train_loss": 0.1 / e, "test_tau": 0.1 * e, "test_rho": 0.1 * e}
                       for e in (1, 2, 3)]
    points = results.run_points(runs, ("test-max", "last"), by="policy")
    assert set(points["row"]) == {"test-max selection", "last selection"} and len(points) == 6
    fig = figures.runs_figure(points, "cap", note="surrogate features — pipeline check")
    assert len(fig.axes) == 2  # one dataset x (τ, ρ)
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == 6  # every run is a dot
    assert "surrogate features — pipeline check" in [t.get_text() for t in fig.axes[1].texts]
    curves = figures.learning_curves(runs, "cap")
    assert len(curves.axes[0].lines) == 3 and len(curves.axes[1].lines) == 3  # loss and test τ of each run
    assert not curves.axes[2].lines  # no validation curve without a hold-out
