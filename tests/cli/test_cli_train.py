"""``csta train`` and ``csta results table``: help, the contract form end to end, tables, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from csta_lib.cli import main
from csta_lib.runs import store
from support import make_record, write_splits, write_tiny_eccv16

CSTA = [sys.executable, "-m", "csta_lib.cli"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli")
    return {
        "data": write_tiny_eccv16(folder / "eccv16_dataset_summe_tiny.h5"),
        "splits": write_splits(folder / "SumMe_tiny_splits.txt", [([1, 2, 3, 4], [5, 6]), ([3, 4, 5, 6], [1, 2])]),
    }


def test_help_of_train_and_results_table():
    out = subprocess.run([*CSTA, "train", "--help"], capture_output=True, text=True, check=True).stdout
    for flag in ("--preset", "--data", "--splits-file", "--split", "--seed", "--seeds", "--epochs", "--store",
                 "--select", "--val-fraction", "ON THE TEST SPLIT"):
        assert flag in out
    out = subprocess.run([*CSTA, "results", "table", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--store" in out and "--per-split" in out and "--select" in out


def contract_args(files, store_dir: Path, **extra) -> list[str]:
    args = {"--preset": "paper", "--data": str(files["data"]), "--splits-file": str(files["splits"]),
            "--split": "1", "--seed": "0", "--epochs": "2", "--store": str(store_dir)}
    args.update(extra)
    return ["train", *[x for kv in args.items() for x in kv], "--no-progress"]


def test_contract_form_prints_the_record_path_last(files, tmp_path, capsys, stand_in):
    assert main(contract_args(files, tmp_path / "store")) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    record_path = Path(lines[-1])
    assert record_path.is_file() and record_path.suffix == ".json"
    record = json.loads(record_path.read_text())
    assert record["split"]["index"] == 1 and record["split"]["test_keys"] == ["video_1", "video_2"]
    assert record["provenance"]["surrogate"] is True and len(record["epochs"]) == 2
    for policy in ("test-max", "val", "last"):
        chosen = record["selected"][policy]
        assert {"epoch", "test_tau", "test_rho", "checkpoint"} <= set(chosen)
        assert (record_path.parent / chosen["checkpoint"]).is_file()

    # a second invocation finds the stored run; the table shows it with its labels
    assert main(contract_args(files, tmp_path / "store")) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(record_path)
    assert main(["results", "table", "--store", str(tmp_path / "store"), "--format", "text"]) == 0
    table = capsys.readouterr().out
    assert "csta_summe" in table and "SURROGATE" in table and "ON THE TEST SPLIT" in table
    assert main(["results", "table", "--store", str(tmp_path / "store"), "--seeds", "5"]) == 0
    assert "(no runs)" in capsys.readouterr().out


def test_multi_run_form(files, tmp_path, capsys, stand_in):
    code = main(["train", "--preset", "paper", "--data", str(files["data"]), "--splits-file", str(files["splits"]),
                 "--splits", "all", "--seeds", "0-1", "--epochs", "1", "--select", "test-max,last",
                 "--store", str(tmp_path), "--no-progress"])
    assert code == 0
    paths = [line for line in capsys.readouterr().out.splitlines() if line.endswith(".json")]
    assert len(set(paths)) == 4
    records = [json.loads(Path(p).read_text()) for p in paths]
    assert {(r["split"]["index"], r["seed"]) for r in records} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert all(set(r["selected"]) == {"test-max", "last"} and r["split"]["val_keys"] == [] for r in records)
    assert main(["results", "table", "--store", str(tmp_path), "--per-split", "--select", "test-max"]) == 0
    assert capsys.readouterr().out.count("| summe | paper | test-max |") == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--preset": "nope"}, "unknown model preset"),
        ({"--split": "7"}, "split 7 does not exist"),
        ({"--epochs": "0"}, "--epochs must be a positive integer"),
        ({"--select": "test-max,best"}, "unknown policy 'best'"),
        ({"--data": "/nonexistent/file.h5"}, "no such file"),
        ({"--numerics": "bf16"}, "unknown numerics 'bf16'; use one of: exact, fast"),
    ],
)
def test_bad_input_is_exit_code_2_before_training(files, tmp_path, capsys, change, message):
    assert main(contract_args(files, tmp_path / "store", **change)) == 2
    assert message in capsys.readouterr().err
    assert not any((tmp_path / "store").rglob("*.json"))


def test_numerics_switch_is_in_the_record_and_its_key(files, tmp_path, capsys, stand_in):
    assert main(contract_args(files, tmp_path / "store", **{"--epochs": "1"})) == 0
    exact = json.loads(Path(capsys.readouterr().out.strip().splitlines()[-1]).read_text())
    assert main(contract_args(files, tmp_path / "store", **{"--epochs": "1", "--numerics": "fast"})) == 0
    fast = json.loads(Path(capsys.readouterr().out.strip().splitlines()[-1]).read_text())
    assert exact["identity"]["numerics"]["numerics"] == "exact" and fast["identity"]["numerics"]["numerics"] == "fast"
    assert exact["key"] != fast["key"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line_before_training(files, tmp_path, capsys):
    assert main(contract_args(files, tmp_path / "store", **{"--device": "cuda"})) == 2
    err = capsys.readouterr().err.strip()
    assert "CUDA is not available" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "store").exists()


def test_split_keys_missing_from_the_data_file(files, tmp_path, capsys):
    bad = write_splits(tmp_path / "SumMe_bad.txt", [([1, 2, 3, 8], [5, 6])])
    assert main(contract_args(files, tmp_path / "store", **{"--splits-file": str(bad), "--split": "0"})) == 2
    assert "video_8" in capsys.readouterr().err


def test_store_that_is_not_writable(files, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(contract_args(files, blocker / "store")) == 2
    assert "not writable" in capsys.readouterr().err


@pytest.mark.slow
def test_contract_form_in_a_subprocess_with_the_real_model(files, tmp_path):
    """The exact external-check command line, real ``paper`` model, one epoch."""
    args = contract_args(files, tmp_path / "store", **{"--epochs": "1", "--split": "0"})
    done = subprocess.run([*CSTA, *args, "--device", "cpu", "--cnn-weights", "none"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    record = json.loads(Path(done.stdout.strip().splitlines()[-1]).read_text())
    assert record["preset"] == "paper" and set(record["selected"]) == {"test-max", "val", "last"}


def test_results_table_of_an_experiment(tmp_path, capsys):
    for variant, tau in (("paper", 0.25), ("table2.kv", 0.1)):
        rec = make_record("summe", 0, 0, tau, 0.3, variant=variant)
        store.write_record(store.record_path(tmp_path, "summe", variant, rec["key"]), rec)
    assert main(["results", "table", "--store", str(tmp_path), "--experiment", "table1", "--select", "test-max"]) == 0
    out = capsys.readouterr().out
    assert "| summe | paper | test-max |" in out and "table2.kv" not in out and "0.250" in out
    assert main(["results", "table", "--store", str(tmp_path), "--experiment", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["results", "table", "--store", str(tmp_path), "--profile", "quick"]) == 2
