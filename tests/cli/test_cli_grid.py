"""``csta grid``: the contract (exit 0, last stdout line is the JSON summary), --list, bad input."""

from __future__ import annotations

import json
import time

import pytest

from csta_lib.cli import main
from csta_lib.runs import store


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["grid", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--experiment", "--profile", "--engine", "--jobs", "--address", "--gpus-per-run", "--store"):
        assert flag in out


def test_list(capsys):
    assert main(["grid", "--list"]) == 0
    out = capsys.readouterr().out
    assert "profile quick" in out and "deviations" in out and "distinct runs" in out


def test_smoke_grid_contract(tmp_path, capsys, fake_measure):
    """The contract: exit 0, last line JSON with runs/computed/reused/failed; the records are training records."""
    args = ["grid", "--experiment", "table1", "--profile", "smoke", "--engine", "local", "--store", str(tmp_path)]
    assert main(args) == 0
    summary = last_json(capsys.readouterr().out)
    assert (summary["runs"], summary["computed"], summary["reused"], summary["failed"]) == (8, 8, 0, 0)
    records = [store.read_record(p) for p in store.iter_record_files(tmp_path)]
    assert sorted(r["key"] for r in records) == sorted(summary["keys"])
    for r in records:
        assert r["provenance"]["surrogate"] is True
        assert {"config", "epochs", "selected"} <= set(r)
        assert all({"train_loss", "test_tau", "test_rho"} <= set(e) for e in r["epochs"])
    # test-max and last from runs on all training videos; val from separate runs with a hold-out
    official = [r for r in records if set(r["selected"]) == {"test-max", "last"}]
    held_out = [r for r in records if set(r["selected"]) == {"val"}]
    assert len(official) == len(held_out) == 4  # 2 datasets x 2 seeds
    assert all(r["selection"]["val_fraction"] == 0 and not r["split"]["val_keys"] for r in official)
    assert all(r["selection"]["val_fraction"] == 0.2 and r["split"]["val_keys"] for r in held_out)
    assert main(args + ["--no-progress"]) == 0
    again = last_json(capsys.readouterr().out)
    assert (again["computed"], again["reused"]) == (0, 8)
    # --plan --json: one object per run, the same runs, now all in the store, then the summary; nothing is trained
    assert main(["grid", "--experiment", "table1", "--profile", "smoke", "--plan", "--json", "--store",
                 str(tmp_path)]) == 0
    *planned, totals = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert sorted(p["key"] for p in planned) == sorted(summary["keys"])
    assert totals["summary"] == "plan" and (totals["runs"], totals["in_store"], totals["to_compute"]) == (8, 8, 0)
    assert totals["estimated_cpu_s_total"] == 0
    assert totals["estimated_cpu_s_all"] == pytest.approx(sum(p["estimated_cpu_s"] for p in planned), abs=0.5)
    assert {p["estimate"] for p in planned} == {"measured"} and fake_measure
    assert all(p["in_store"] for p in planned)
    for p in planned:
        assert {"preset", "dataset", "split", "seed", "epochs", "val_fraction", "policies"} <= set(p)
        if "test-max" in p["policies"]:
            assert p["val_fraction"] == 0
    assert main(["grid", "--experiment", "table1", "--profile", "smoke", "--plan", "--store", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "8 run(s)" in text and "0 not in the store" in text and "test-max,last" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--experiment", "table7"], "unknown experiment"),
        (["--experiment", "table1", "--profile", "huge"], "unknown profile"),
        (["--experiment", "table1", "--engine", "dask"], "unknown engine"),
        (["--profile", "smoke"], "--experiment is required"),
        (["--experiment", "table1", "--gpus-per-run", "nan"], "--gpus-per-run must be a finite number >= 0"),
        (["--experiment", "table1", "--gpus-per-run", "inf"], "--gpus-per-run must be a finite number >= 0"),
        (["--experiment", "table1", "--gpus-per-run", "-0.5"], "--gpus-per-run must be a finite number >= 0"),
        (["--experiment", "table1", "--plan", "--gpus-per-run", "nan"], "--gpus-per-run must be a finite number"),
        (["--experiment", "table1", "--json"], "--json goes with --plan"),
    ],
)
def test_bad_input_exits_2(tmp_path, capsys, extra, message):
    assert main(["grid", *extra, "--store", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_unreachable_address_exits_2_quickly(tmp_path, capsys):
    start = time.monotonic()
    code = main(["grid", "--experiment", "table1", "--profile", "smoke", "--engine", "ray",
                 "--address", "127.0.0.1:9", "--store", str(tmp_path)])
    assert code == 2
    assert "cannot reach the Ray cluster" in capsys.readouterr().err
    assert time.monotonic() - start < 30  # includes building the smoke data on a cold cache


def test_plan_without_the_data_still_lists_the_runs(monkeypatch, capsys, fake_measure):
    """A user can see what a profile costs before fetching any data: the runs, without content keys."""
    from csta_lib.errors import MissingDataError
    from csta_lib.runs import experiments

    def no_data(*args, **kwargs):
        raise MissingDataError("eccv16.fields: not found (put it in data/eccv16/)")

    monkeypatch.setattr(experiments, "prepare_data", no_data)
    assert main(["grid", "--experiment", "table1", "--profile", "paper", "--plan", "--json"]) == 0
    captured = capsys.readouterr()
    *planned, totals = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert len(planned) == 100 and "data not available" in captured.err
    assert all(p["val_fraction"] == 0 for p in planned if "test-max" in p["policies"])
    assert "key" not in planned[0] and planned[0]["epochs"] == 100
    # the contract: each run keeps estimated_cpu_s, the summary line gives the total
    assert all(p["estimated_cpu_s"] > 0 for p in planned)
    assert totals["estimated_cpu_s_total"] == pytest.approx(sum(p["estimated_cpu_s"] for p in planned), abs=1)
    assert totals["in_store"] is None and totals["to_compute"] == 100


def test_plan_cost_measures_once_then_reuses(capsys, fake_measure):
    """The paper profile's cost from per-step times measured here: measured on the first plan (said on stderr),
    reused by the next, measured again with --calibrate; --no-calibrate on a machine never measured says
    'assumed'. The table says how the wall time falls with Ray nodes and that the GPU is not measured."""
    plan = ["grid", "--experiment", "table1", "--profile", "paper", "--plan", "--cpus-per-run", "1"]
    assert main([*plan, "--no-calibrate", "--json"]) == 0
    assert {json.loads(line)["estimate"] for line in capsys.readouterr().out.splitlines()[:-1]} == {"assumed"}
    assert not fake_measure
    assert main(plan) == 0
    captured = capsys.readouterr()
    assert len(fake_measure) == 2 and "measuring per-step times on this machine" in captured.err
    assert "cost per run measured on this machine" in captured.out
    assert "wall time with N Ray nodes like this one: 1 -> " in captured.out and "16 -> " in captured.out
    assert "GPU: not measured" in captured.out
    assert "T = 293: 0.293 s; T = 470: 0.47 s" in captured.out
    assert main(plan) == 0 and len(fake_measure) == 2
    assert main([*plan, "--calibrate"]) == 0 and len(fake_measure) == 4
    capsys.readouterr()
    assert main([*plan, "--calibrate", "--no-calibrate"]) == 2
    assert main(["grid", "--experiment", "table1", "--calibrate"]) == 2
    assert "--calibrate goes with --plan" in capsys.readouterr().err
