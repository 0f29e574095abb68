"""The results store: content addresses, record files, filters and the tables built from hand-made records."""

from __future__ import annotations

import math

import pytest

from csta_lib.runs import store
from csta_lib.errors import CstaInputError, DataFormatError
from support import make_record



def test_content_key_depends_on_content_not_key_order():
    a = store.content_key({"seed": 1, "config": {"x": 1, "y": [1, 2]}})
    b = store.content_key({"config": {"y": [1, 2], "x": 1}, "seed": 1})
    assert a == b and len(a) == store.KEY_LENGTH
    assert store.content_key({"seed": 2, "config": {"x": 1, "y": [1, 2]}}) != a
    assert store.content_key({"seed": 1, "config": {"x": 1, "y": [2, 1]}}) != a


def test_write_find_and_filter_records(tmp_path):
    for split in range(2):
        for seed in range(2):
            rec = make_record("summe", split, seed, 0.2, 0.3)
            store.write_record(store.record_path(tmp_path, "summe", "paper", rec["key"]), rec)
    other = make_record("tvsum", 0, 0, 0.1, 0.2, variant="paper+skip_norm=layernorm")
    path = store.record_path(tmp_path, "tvsum", other["variant"], other["key"])
    store.write_record(path, other)
    assert "+" in path.parent.name and "=" in path.parent.name  # readable, safe folder name

    assert store.find_record(tmp_path, "summe", "paper", "summe01paper")["seed"] == 1
    assert store.find_record(tmp_path, "summe", "paper", "nope") is None
    assert len(store.load_records(tmp_path)) == 5
    assert len(store.load_records(tmp_path, dataset="summe")) == 4
    assert len(store.load_records(tmp_path, dataset="summe", seeds=[1], splits=[0, 1])) == 2
    assert [r["key"] for r in store.load_records(tmp_path, keys={"summe00paper"})] == ["summe00paper"]
    assert len(store.load_records(tmp_path, variant="paper+skip_norm=layernorm")) == 1
    assert len(store.load_records(tmp_path, preset="paper")) == 5
    loaded = store.load_records(tmp_path, keys=["summe00paper"])[0]
    assert store.resolve_checkpoint(loaded, "val") == tmp_path / "summe" / "paper" / "k" / "epoch_005.pt"


def test_bad_store_and_bad_record(tmp_path):
    with pytest.raises(CstaInputError, match="does not exist"):
        store.load_records(tmp_path / "missing")
    bad = tmp_path / "summe" / "paper" / "x.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{\"format\": \"something-else\"}")
    with pytest.raises(DataFormatError, match="x.json"):
        store.load_records(tmp_path)
    bad.write_text("not json")
    with pytest.raises(DataFormatError, match="not a readable JSON"):
        store.read_record(bad)


def test_summary_table_mean_and_stds():
    # split means over seeds: split0 -> 0.2, split1 -> 0.4; seed means over splits: seed0 -> 0.25, seed1 -> 0.35
    taus = {(0, 0): 0.1, (0, 1): 0.3, (1, 0): 0.4, (1, 1): 0.4}
    records = [make_record("summe", k, s, t, t + 0.1) for (k, s), t in taus.items()]
    frame = store.results_frame(records)
    assert set(frame["policy"]) == {"test-max", "val", "last"} and len(frame) == 12
    summary = store.summary_table(frame).set_index("policy")
    row = summary.loc["test-max"]
    assert row["tau"] == pytest.approx(0.3)
    assert row["rho"] == pytest.approx(0.4)
    assert row["tau_std_splits"] == pytest.approx(math.sqrt(2) * 0.1)  # std of [0.2, 0.4]
    assert row["tau_std_seeds"] == pytest.approx(math.sqrt(2) * 0.05)  # std of [0.25, 0.35]
    assert (row["n_splits"], row["n_seeds"], row["n_runs"]) == (2, 2, 4)
    assert summary.loc["last", "tau"] == pytest.approx(0.2)
    assert math.isnan(summary.loc["val", "f1"])  # a missing F1 stays NaN, it is not dropped

    per_split = store.split_table(frame)
    tm = per_split[per_split.policy == "test-max"].set_index("split")
    assert tm.loc[0, "tau"] == pytest.approx(0.2) and tm.loc[1, "tau"] == pytest.approx(0.4)
    assert tm.loc[1, "tau_std_seeds"] == pytest.approx(0.0)


def test_single_seed_has_no_seed_std_and_policies_filter():
    records = [make_record("tvsum", k, 0, 0.1 * (k + 1), 0.2, val=False) for k in range(3)]
    frame = store.results_frame(records, policies=["test-max", "val"])
    assert set(frame["policy"]) == {"test-max"}  # val absent from these records
    row = store.summary_table(frame).iloc[0]
    assert math.isnan(row["tau_std_seeds"]) and row["tau_std_splits"] == pytest.approx(0.1)


def test_rendered_tables_carry_protocol_policy_and_provenance():
    records = [make_record("summe", k, s, 0.2 + 0.01 * k, 0.3) for k in range(2) for s in range(2)]
    records.append(make_record("tvsum", 0, 0, 0.15, 0.2, surrogate=False))
    text = store.records_table(records, fmt="markdown")
    assert "csta_summe" in text and "casum_tvsum" in text
    assert "ON THE TEST SPLIT" in text and "validation subset" in text
    assert "summe: tau/rho protocol csta_summe; selection test-max" in text
    assert "SURROGATE" in text.split("tvsum")[0] and "tvsum: tau/rho protocol casum_tvsum" in text
    tvsum_lines = [line for line in text.splitlines() if line.startswith("tvsum:")]
    assert all("real features" in line for line in tvsum_lines)
    table_lines = [line for line in text.splitlines() if line.startswith("| summe")]
    assert len(table_lines) == 3 and "0.205 ± 0.000" in table_lines[1]  # test-max sorts after last
    per_split = store.records_table(records, per_split=True, fmt="text", policies=["test-max"])
    assert "per split" in per_split and len([x for x in per_split.splitlines() if x.startswith("summe ")]) == 2
    csv = store.records_table(records, fmt="csv")
    assert csv.splitlines()[0].startswith("dataset,variant,policy")
    with pytest.raises(CstaInputError, match="policy"):
        store.records_table(records, policies=["best"])
    with pytest.raises(CstaInputError, match="format"):
        store.records_table(records, fmt="html")
    assert store.records_table([]) == "(no runs)"
