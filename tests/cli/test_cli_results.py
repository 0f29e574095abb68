"""``csta results table --json`` and ``csta results compare``: the contract keys, the surrogate rule, bad input."""

from __future__ import annotations

import json

import pytest

from csta_lib.cli import main
from csta_lib.runs import store
from support import make_record

SPREAD_KEYS = {"mean", "std", "n", "ci_low", "ci_high"}


def write(folder, records):
    for r in records:
        store.write_record(store.record_path(folder, r["dataset"], r["variant"], r["key"]), r)
    return folder


def csta_runs(surrogate: bool = True, seeds: int = 3) -> list[dict]:
    runs = [make_record(d, 0, s, 0.24 + 0.005 * s if d == "summe" else 0.19, 0.27, surrogate=surrogate)
            for d in ("summe", "tvsum") for s in range(seeds)]
    for r in runs:
        r["provenance"]["imagenet_weights"] = None if surrogate else "googlenet-1378be20.pth"
    return runs


def test_table_json_rows_carry_spread_per_coefficient(tmp_path, capsys):
    write(tmp_path, [*csta_runs(), make_record("summe", 0, 0, 0.1, 0.2, variant="table2.kv")])
    assert main(["results", "table", "--store", str(tmp_path), "--experiment", "table1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "t interval" in out["interval"] and out["experiment"] == "table1"
    rows = out["rows"]
    assert {(r["dataset"], r["policy"]) for r in rows} == {(d, p) for d in ("summe", "tvsum")
                                                           for p in ("test-max", "val", "last")}
    assert all(r["variant"] == "paper" for r in rows)  # table2.kv is not a Table 1 row
    for r in rows:
        for coefficient in ("tau", "rho", "f1"):
            assert SPREAD_KEYS <= set(r[coefficient])
    summe = next(r for r in rows if r["dataset"] == "summe" and r["policy"] == "test-max")
    assert summe["tau"]["n"] == 3 and summe["tau"]["mean"] == pytest.approx(0.245)
    assert summe["tau"]["ci_low"] < 0.245 < summe["tau"]["ci_high"] and summe["surrogate"] is True
    # one run: no interval, null bounds
    write(tmp_path / "one", csta_runs(seeds=1))
    assert main(["results", "table", "--store", str(tmp_path / "one"), "--json", "--select", "test-max"]) == 0
    one = json.loads(capsys.readouterr().out)["rows"][0]
    assert one["tau"]["n"] == 1 and one["tau"]["ci_low"] is None and one["tau"]["ci_high"] is None
    assert one["tau"]["std"] is None
    # the markdown table shows the same
    assert main(["results", "table", "--store", str(tmp_path / "one"), "--select", "test-max"]) == 0
    assert "n = 1, no interval" in capsys.readouterr().out
    assert main(["results", "table", "--store", str(tmp_path), "--json", "--per-split"]) == 2


def test_compare_on_surrogate_runs_compares_nothing(tmp_path, capsys):
    write(tmp_path, csta_runs())
    assert main(["results", "compare", "--experiment", "table1", "--store", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["surrogate"] is True and out["policy"] == "test-max" and "compare nothing" in out["note"]
    by = {(r["dataset"], r["coefficient"]): r for r in out["rows"]}
    assert set(by) == {("summe", "tau"), ("summe", "rho"), ("tvsum", "tau"), ("tvsum", "rho")}
    for r in by.values():
        assert {"mean", "ci_low", "ci_high", "paper", "surrogate", "paper_inside_ci"} <= set(r)
        assert r["surrogate"] is True and r["paper_inside_ci"] is None
    assert by[("summe", "tau")]["paper"] == 0.246 and by[("tvsum", "rho")]["public_retrain"] == 0.248
    assert main(["results", "compare", "--experiment", "table1", "--store", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "not compared (surrogate)" in text and "0.246" not in text.split("\n\n", 1)[1]


def test_compare_on_real_runs_says_whether_the_paper_is_inside(tmp_path, capsys):
    write(tmp_path, csta_runs(surrogate=False))
    assert main(["results", "compare", "--experiment", "table1", "--store", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    by = {(r["dataset"], r["coefficient"]): r for r in out["rows"]}
    summe_tau = by[("summe", "tau")]  # runs 0.240, 0.245, 0.250: [0.2326, 0.2574] holds the paper's 0.246
    assert summe_tau["paper_inside_ci"] is True and summe_tau["surrogate"] is False
    assert summe_tau["public_retrain_inside_ci"] is False  # 0.227
    assert by[("tvsum", "tau")]["paper_inside_ci"] is False  # all three runs 0.19: [0.19, 0.19] misses 0.194
    assert main(["results", "compare", "--experiment", "table1", "--store", str(tmp_path)]) == 0
    assert "| summe | tau | 3 | 0.245 |" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--experiment", "table2"], "table1 only"),
    (["--experiment", "table1", "--select", "test-max,val"], "one policy"),
    (["--experiment", "table1", "--select", "best"], "unknown policy"),
])
def test_compare_bad_input(tmp_path, capsys, args, message):
    write(tmp_path, csta_runs())
    assert main(["results", "compare", "--store", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_contract_forms_on_a_real_smoke_grid(tmp_path, capsys):
    """The exact external-check command lines, on the smoke grid's real records (Table 1 runs two seeds there)."""
    assert main(["grid", "--experiment", "table1", "--profile", "smoke", "--store", str(tmp_path), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["results", "table", "--experiment", "table1", "--profile", "smoke", "--store", str(tmp_path),
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert len(rows) == 6 and all(r["tau"]["n"] == 2 and r["tau"]["ci_low"] is not None for r in rows
                                  if r["tau"]["std"] is not None)
    assert all(SPREAD_KEYS <= set(r[c]) for r in rows for c in ("tau", "rho"))
    assert main(["results", "compare", "--experiment", "table1", "--profile", "smoke", "--store", str(tmp_path),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["rows"]) == 4 and all(r["surrogate"] and r["paper_inside_ci"] is None for r in out["rows"])
