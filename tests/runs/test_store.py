"""The results store: content addresses, record files, filters and the tables built from hand-made records."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from csta_lib.runs import statistics, store
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

    key01, key00 = make_record("summe", 0, 1, 0.2, 0.3)["key"], make_record("summe", 0, 0, 0.2, 0.3)["key"]
    assert store.find_record(tmp_path, "summe", "paper", key01)["seed"] == 1
    assert store.find_record(tmp_path, "summe", "paper", "nope") is None
    assert len(store.load_records(tmp_path)) == 5
    assert len(store.load_records(tmp_path, dataset="summe")) == 4
    assert len(store.load_records(tmp_path, dataset="summe", seeds=[1], splits=[0, 1])) == 2
    assert [r["key"] for r in store.load_records(tmp_path, keys={key00})] == [key00]
    assert len(store.load_records(tmp_path, variant="paper+skip_norm=layernorm")) == 1
    assert len(store.load_records(tmp_path, preset="paper")) == 5
    loaded = store.load_records(tmp_path, keys=[key00])[0]
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


def stored(folder: Path, record: dict) -> Path:
    return store.write_record(store.record_path(folder, record["dataset"], record["variant"], record["key"]), record)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "link-loop", "dangling"])
def test_only_regular_files_are_read_and_each_other_kind_is_named(tmp_path, kind):
    folder = tmp_path / "summe" / "paper"
    folder.mkdir(parents=True)
    path = folder / "0123456789abcdef0123.json"
    if kind == "fifo":
        os.mkfifo(path)  # reading it would wait forever for a writer
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")  # reading it would never end (its size says 0)
    elif kind == "link-loop":
        path.symlink_to(path)
    else:
        path.symlink_to(folder / "gone.json")
    expected = {"fifo": "a FIFO", "dev-zero": "a device", "link-loop": "a loop of symbolic links",
                "dangling": "a symbolic link to nothing"}[kind]
    with pytest.raises(DataFormatError, match=expected) as info:
        store.load_records(tmp_path)
    assert str(path) in str(info.value) and "No such file" not in str(info.value)


def test_a_record_larger_than_any_run_record_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "MAX_RECORD_BYTES", 1000)
    path = stored(tmp_path, {**make_record("summe", 0, 0, 0.2, 0.3), "padding": "x" * 2000})
    with pytest.raises(DataFormatError, match="more than 1,000 bytes"):
        store.read_record(path)


@pytest.mark.parametrize("value", [42.0, 1e308, float("inf"), -1.5])
def test_metrics_out_of_their_range_are_refused(tmp_path, value):
    record = make_record("summe", 0, 0, 0.2, 0.3)
    record["selected"]["test-max"]["test_tau"] = value
    path = stored(tmp_path, record)
    with pytest.raises(DataFormatError, match=r"'selected\.test-max\.test_tau' is .*, outside \[-1, 1\]"):
        store.load_records(tmp_path)
    record["selected"]["test-max"]["test_tau"] = float("nan")  # undefined is fine
    stored(tmp_path, record)
    assert math.isnan(store.read_record(path)["selected"]["test-max"]["test_tau"])
    record["epochs"] = [{"epoch": 1, "test_f1": 1.5}]
    stored(tmp_path, record)
    with pytest.raises(DataFormatError, match=r"'epochs\[0\]\.test_f1' is 1\.5, outside \[0, 1\]"):
        store.read_record(path)


def test_a_key_must_be_the_content_address_and_the_file_its_key(tmp_path):
    record = make_record("summe", 0, 0, 0.2, 0.3)
    path = stored(tmp_path, record)
    assert store.load_records(tmp_path)[0]["key"] == record["key"]
    copy = path.with_name("0123456789abcdef0123.json")  # a copy under another name
    copy.write_bytes(path.read_bytes())
    with pytest.raises(DataFormatError, match="is not its file name"):
        store.load_records(tmp_path)
    copy.unlink()
    elsewhere = tmp_path / "summe" / "paper+skip_norm=layernorm" / path.name  # a copy in another variant's folder
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(path.read_bytes())
    with pytest.raises(DataFormatError, match=r"not in summe/paper/"):
        store.find_record(tmp_path, "summe", "paper+skip_norm=layernorm", record["key"])
    elsewhere.unlink()
    stored(tmp_path, {**record, "seed": 3})  # the content edited, the key kept
    with pytest.raises(DataFormatError, match="'seed' disagrees with its identity"):
        store.load_records(tmp_path)
    stored(tmp_path, {**record, "identity": {**record["identity"], "seed": 3}, "seed": 3})  # identity edited too
    with pytest.raises(DataFormatError, match="is not the content address of its identity"):
        store.load_records(tmp_path)
    stored(tmp_path, {k: v for k, v in record.items() if k != "identity"})
    with pytest.raises(DataFormatError, match="no 'identity'"):
        store.load_records(tmp_path)


def test_summary_table_mean_sd_and_interval_over_runs():
    taus = {(0, 0): 0.1, (0, 1): 0.3, (1, 0): 0.4, (1, 1): 0.4}
    records = [make_record("summe", k, s, t, t + 0.1) for (k, s), t in taus.items()]
    frame = store.results_frame(records)
    assert set(frame["policy"]) == {"test-max", "val", "last"} and len(frame) == 12
    summary = store.summary_table(frame).set_index("policy")
    row = summary.loc["test-max"]
    assert row["tau"] == pytest.approx(0.3)
    assert row["rho"] == pytest.approx(0.4)
    sd = math.sqrt((0.2**2 + 0 + 0.1**2 + 0.1**2) / 3)  # the four runs' deviations from 0.3, n - 1 = 3
    assert row["tau_sd"] == pytest.approx(sd) and row["tau_n"] == 4
    half = 3.182446305284263 * sd / 2  # t(0.975, 3) * sd / sqrt(4)
    assert (row["tau_ci_low"], row["tau_ci_high"]) == (pytest.approx(0.3 - half), pytest.approx(0.3 + half))
    assert store.row_spread(row, "tau") == statistics.spread(list(taus.values()))
    assert (row["n_splits"], row["n_seeds"], row["n_runs"]) == (2, 2, 4)
    assert summary.loc["last", "tau"] == pytest.approx(0.2)
    assert math.isnan(summary.loc["val", "f1"]) and summary.loc["val", "f1_n"] == 0  # missing F1: NaN, not dropped

    per_split = store.split_table(frame)
    tm = per_split[per_split.policy == "test-max"].set_index("split")
    assert tm.loc[0, "tau"] == pytest.approx(0.2) and tm.loc[1, "tau"] == pytest.approx(0.4)
    assert tm.loc[1, "tau_std_seeds"] == pytest.approx(0.0)


def test_one_run_has_no_interval_and_policies_filter():
    records = [make_record("tvsum", k, 0, 0.1 * (k + 1), 0.2, val=False) for k in range(3)]
    frame = store.results_frame(records, policies=["test-max", "val"])
    assert set(frame["policy"]) == {"test-max"}  # val absent from these records
    row = store.summary_table(frame).iloc[0]
    assert row["tau_sd"] == pytest.approx(0.1) and row["tau_n"] == 3
    one = store.summary_table(store.results_frame(records[:1])).iloc[0]
    assert one["tau_n"] == 1 and math.isnan(one["tau_sd"]) and math.isnan(one["tau_ci_low"])


def test_summary_rows_carry_mean_std_n_and_interval_per_coefficient():
    records = [make_record("summe", 0, s, t, t + 0.1) for s, t in enumerate((0.1, 0.2, 0.3))]
    records.append(make_record("tvsum", 0, 0, 0.2, 0.3))
    rows = store.summary_rows(store.results_frame(records, ["test-max"]))
    summe, tvsum = rows
    assert (summe["dataset"], summe["policy"], summe["n_runs"], summe["surrogate"]) == ("summe", "test-max", 3, True)
    for metric in ("tau", "rho", "f1"):
        assert set(summe[metric]) == {"mean", "std", "n", "ci_low", "ci_high"}
    assert summe["tau"]["std"] == pytest.approx(0.1) and summe["tau"]["ci_low"] < 0.2 < summe["tau"]["ci_high"]
    assert tvsum["tau"] == {"mean": 0.2, "std": None, "n": 1, "ci_low": None, "ci_high": None}
    assert json.loads(json.dumps(rows)) == rows  # JSON-ready: no NaN
    assert store.summary_rows(store.results_frame([])) == []


def test_paired_table_pairs_runs_of_the_same_fold_and_seed():
    a = [make_record("summe", 0, s, t, 0.5, variant="A") for s, t in enumerate((0.50, 0.52, 0.48))]
    b = [make_record("summe", 0, s, 0.40, 0.5, variant="B") for s in range(4)]  # seed 3: no partner in A
    frame = store.results_frame([*a, *b], ["test-max", "last"])
    table = store.paired_table(frame, [(("A", "test-max"), ("B", "test-max")), (("A", "test-max"), ("A", "last")),
                                       (("A", "test-max"), ("C", "test-max"))])
    tau = table[(table.metric == "tau") & (table.variant_b == "B")].iloc[0]
    assert (tau["n"], tau["n_only_a"], tau["n_only_b"]) == (3, 0, 1)
    assert tau["mean"] == pytest.approx(0.10) and tau["sd"] == pytest.approx(0.02)
    assert tau["reading"] == "larger than seed noise (higher)"
    rho = table[(table.metric == "rho") & (table.variant_b == "B")].iloc[0]
    assert rho["mean"] == pytest.approx(0.0) and rho["reading"] == "within seed noise"
    policies = table[(table.metric == "tau") & (table.policy_b == "last")].iloc[0]
    assert policies["mean"] == pytest.approx(0.1)  # make_record's last is test-max - 0.1
    assert "C" not in set(table.variant_b)  # no runs of C: no row


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
    assert len(table_lines) == 3  # last, test-max, val
    cells = [c.strip() for c in table_lines[1].split("|")[1:-1]]  # test-max sorts after last
    assert cells[3] == "4 (2 folds x 2 seeds)" and cells[5] == "0.205"  # mean of 0.20, 0.20, 0.21, 0.21
    assert cells[6] == "0.006" and cells[7] == "[0.196, 0.214]"  # sd, 0.205 ± 3.182 * 0.00577 / 2
    tvsum_cells = [c.strip() for c in next(x for x in text.splitlines() if x.startswith("| tvsum")).split("|")[1:-1]]
    assert tvsum_cells[7] == "n = 1, no interval" and tvsum_cells[6] == "–"
    assert "t interval" in text and "sd: standard deviation over runs" in text
    per_split = store.records_table(records, per_split=True, fmt="text", policies=["test-max"])
    assert "per split" in per_split and len([x for x in per_split.splitlines() if x.startswith("summe ")]) == 2
    csv = store.records_table(records, fmt="csv")
    assert csv.splitlines()[0].startswith("dataset,variant,policy")
    with pytest.raises(CstaInputError, match="policy"):
        store.records_table(records, policies=["best"])
    with pytest.raises(CstaInputError, match="format"):
        store.records_table(records, fmt="html")
    assert store.records_table([]) == "(no runs)"
