"""Training runs: the record, checkpoints and selections end to end; seeds; resume; the store lookup; bad input.

The data is a tiny eccv16-layout file written here (6 SumMe-like videos of 16-20 steps, labelled surrogate).
One end-to-end test trains the real ``paper`` model; the determinism and resume tests swap in a small stand-in
model (a linear scorer with BatchNorm and dropout, so RNG and running statistics matter) to stay fast.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from csta_lib.config import get_config
from csta_lib.data import load_eccv16
from csta_lib.errors import ConfigError, CstaInputError, DataFormatError
from csta_lib.evaluation import DatasetEvaluator, mean_metrics
from csta_lib.runs import checkpoint, selection, store, training
from csta_lib.runs.spec import RunSpec
from csta_lib.runs.surrogate import build_surrogate
from support import spec_for, write_splits


def comparable(record: dict) -> dict:
    """A record without what legitimately differs between equal runs (timings, dates, paths)."""
    out = {k: v for k, v in record.items() if k not in ("wall_time_s", "train_time_s", "created_utc", "_path",
                                                        "resumed_from_epoch")}
    out["epochs"] = [{k: v for k, v in e.items() if "seconds" not in k} for e in record["epochs"]]
    return json.loads(json.dumps(out))


# ------------------------------------------------------------------------------------------------ pure pieces


def test_joint_improvement_rule_is_strict_on_both_and_ignores_nan():
    taus = [0.1, 0.2, 0.3, 0.25, float("nan"), 0.4, 0.4]
    rhos = [0.1, 0.3, 0.2, 0.4, 0.9, 0.5, 0.6]
    # epoch 2 improves both; 3 improves tau only; 4 rho only; 5 NaN; 6 both; 7 tau ties (not strict)
    assert selection.select_joint_improvement(taus, rhos) == 6
    assert selection.select_joint_improvement([float("nan")] * 3, [0.1] * 3) is None
    assert selection.select_joint_improvement([-1.0], [0.5]) is None  # the bests start at -1, strictly
    history = [{"test_tau": t, "test_rho": r, "val_tau": r, "val_rho": t} for t, r in zip(taus, rhos, strict=True)]
    assert selection.select_epochs(history, ["test-max", "val", "last"]) == {"test-max": 6, "val": 6, "last": 7}


def test_checkpoints_kept_are_the_selected_epochs_and_finally_the_last():
    assert selection.epochs_to_keep({"test-max": 2, "val": 3, "last": 4}, 4, final=False) == {2, 3}
    assert selection.epochs_to_keep({"test-max": 2, "val": 3, "last": 5}, 5, final=True) == {2, 3, 5}
    # a policy that never selected an epoch reports the last one, so its file is kept even without "last"
    assert selection.epochs_to_keep({"test-max": None}, 5, final=True) == {5}
    assert selection.epochs_to_keep({"test-max": 1}, 5, final=True) == {1}


def test_validation_carving_is_deterministic_per_seed_and_disjoint():
    keys = [f"video_{i}" for i in range(1, 21)]
    keep, val = selection.carve_validation(keys, 0.2, seed=5)
    assert len(val) == 4 and len(keep) == 16 and not set(keep) & set(val) and set(keep) | set(val) == set(keys)
    assert selection.carve_validation(keys, 0.2, seed=5) == (keep, val)
    assert selection.carve_validation(keys, 0.2, seed=6)[1] != val
    assert selection.carve_validation(keys, 0.0, seed=5) == (tuple(keys), ())
    assert len(selection.carve_validation(keys[:3], 0.1, seed=0)[1]) == 1  # at least one validation video
    with pytest.raises(ConfigError):
        selection.carve_validation(keys[:1], 0.5, seed=0)
    with pytest.raises(ConfigError):
        selection.carve_validation(keys, 1.0, seed=0)


def test_parse_int_list():
    assert training.parse_int_list("0-4", name="--seeds") == [0, 1, 2, 3, 4]
    assert training.parse_int_list("1,3-4", name="--seeds") == [1, 3, 4]
    assert training.parse_int_list("all", name="--splits", all_values=range(3)) == [0, 1, 2]
    for bad in ("x", "3-1", "all"):
        with pytest.raises(CstaInputError):
            training.parse_int_list(bad, name="--seeds")


def test_seed_everything_controls_python_numpy_torch():
    training.seed_everything(7)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    training.seed_everything(7)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


# ------------------------------------------------------------------------------------------------ end to end


def test_two_epoch_run_end_to_end_with_the_paper_model(tiny, tmp_path):
    spec = spec_for(tiny, split=2, val_fraction=0.25)  # 2 training videos, 1 validation, 1 test: fast
    record = training.run(spec, tmp_path / "store", progress=False)
    path = Path(record["_path"])
    assert path.is_file() and path.parent.parent.parent == tmp_path / "store"
    on_disk = json.loads(path.read_text())
    assert comparable(on_disk) == comparable(record)

    # contract keys
    assert on_disk["config"] == get_config("paper").to_dict()
    assert on_disk["provenance"]["surrogate"] is True and on_disk["provenance"]["imagenet_weights"] is None
    assert len(on_disk["epochs"]) == 2
    for entry in on_disk["epochs"]:
        assert {"train_loss", "test_tau", "test_rho", "test_f1", "val_tau", "val_rho"} <= set(entry)
        assert entry["train_loss"] > 0 and -1 <= entry["test_rho"] <= 1
    assert set(on_disk["selected"]) == {"test-max", "val", "last"}
    split = on_disk["split"]
    assert split["test_keys"] == ["video_6"] and len(split["val_keys"]) == 1 and len(split["train_keys"]) == 2
    assert sorted(split["train_keys"] + split["val_keys"]) == sorted(split["official_train_keys"])
    assert on_disk["protocol"]["rank"] == "csta_summe"
    assert {"torch", "numpy", "python", "csta_lib"} <= set(on_disk["versions"]) and on_disk["device"].startswith("cpu")

    taus = [e["test_tau"] for e in on_disk["epochs"]]
    rhos = [e["test_rho"] for e in on_disk["epochs"]]
    expected = {"test-max": selection.select_joint_improvement(taus, rhos), "last": 2}
    for policy, chosen in on_disk["selected"].items():
        if policy in expected:
            assert chosen["epoch"] == (expected[policy] or 2)
        entry = on_disk["epochs"][chosen["epoch"] - 1]
        assert chosen["test_tau"] == entry["test_tau"] and chosen["test_rho"] == entry["test_rho"]
        assert set(chosen["per_video"]) == {"video_6"}
        ckpt = store.resolve_checkpoint({**on_disk, "_path": str(path)}, policy)
        assert ckpt.is_file() and ckpt.name == f"epoch_{chosen['epoch']:03d}.pt"
        payload = checkpoint.read_checkpoint(ckpt)
        assert payload["preset"] == "paper" and payload["features"]["surrogate"] is True
        assert payload["meta"]["epoch"] == chosen["epoch"] and payload["config"] == on_disk["config"]
    # only the selected epochs' files remain, and no resume file
    ckpt_dir = store.checkpoint_dir(path)
    assert sorted(p.name for p in ckpt_dir.iterdir()) == sorted(
        {f"epoch_{s['epoch']:03d}.pt" for s in on_disk["selected"].values()})

    # the last checkpoint rebuilds the model (eval mode) and reproduces the last epoch's test metrics
    model, _ = checkpoint.load_checkpoint(ckpt_dir / "epoch_002.pt")
    assert not model.training
    data = load_eccv16(tiny["data"])
    with torch.no_grad():
        scores = {"video_6": model(torch.tensor(data["video_6"].features)).numpy()}
    again = mean_metrics(DatasetEvaluator(data).evaluate(scores))
    assert again["tau"] == pytest.approx(on_disk["epochs"][1]["test_tau"], abs=1e-12, nan_ok=True)

    # the content-addressed store finds the run instead of recomputing it
    assert training.lookup(spec, tmp_path / "store")["key"] == on_disk["key"]
    calls = []
    again_record = training.run(spec, tmp_path / "store", progress=False, on_epoch=lambda e, m: calls.append(e))
    assert calls == [] and again_record["created_utc"] == on_disk["created_utc"]
    assert training.lookup(spec_for(tiny, split=2, val_fraction=0.25, seed=4), tmp_path / "store") is None


def test_same_seed_is_bit_identical_on_cpu_and_another_seed_differs(tiny, tmp_path, stand_in):
    a = training.run(spec_for(tiny, epochs=3), tmp_path / "a", progress=False)
    b = training.run(spec_for(tiny, epochs=3), tmp_path / "b", progress=False)
    assert comparable(a) == comparable(b)
    c = training.run(spec_for(tiny, epochs=3, seed=4), tmp_path / "a", progress=False)
    assert c["key"] != a["key"]
    assert [e["train_loss"] for e in c["epochs"]] != [e["train_loss"] for e in a["epochs"]]
    wa = torch.load(store.resolve_checkpoint(a, "last"), weights_only=True)["state_dict"]
    wb = torch.load(store.resolve_checkpoint(b, "last"), weights_only=True)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_content_key_determines_its_results_whatever_the_thread_count(tiny, tmp_path, monkeypatch):
    # issue 22: the same key gave other metrics on a grid with 2 torch threads per run than on one with 1 (the
    # thread count changes the summation order of the trunk's reductions). Every key computed under both counts
    # must have identical per-epoch metrics; one count computed twice reproduces bit for bit.
    monkeypatch.delenv(training.THREADS_ENV, raising=False)
    spec = spec_for(tiny, epochs=1, policies=("test-max", "last"))
    records = {}
    for name, threads in (("one", 1), ("two", 2), ("one_again", 1)):
        with training.torch_threads(threads):
            records[name] = training.run(spec, tmp_path / name, progress=False)
        assert records[name]["identity"]["numerics"]["threads"] == threads
    by_key: dict[str, list[dict]] = {}
    for record in records.values():
        by_key.setdefault(record["key"], []).append(comparable(record)["epochs"])
    for key, epochs in by_key.items():
        assert all(e == epochs[0] for e in epochs), f"key {key}: the same key, other metrics"
    assert records["one"]["key"] == records["one_again"]["key"] != records["two"]["key"]


def test_the_key_holds_the_numerics_of_the_machine_and_the_switch(tiny, monkeypatch):
    monkeypatch.delenv(training.THREADS_ENV, raising=False)
    with training.torch_threads(1):
        exact = training.prepare(spec_for(tiny))
    numerics = exact.identity["numerics"]
    assert numerics == {"torch": torch.__version__, "device": "cpu", "numerics": "exact", "threads": 1,
                        "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    assert exact.threads == 1
    with training.torch_threads(1):
        assert training.prepare(spec_for(tiny, numerics="fast")).key != exact.key
    monkeypatch.setenv(training.THREADS_ENV, "3")  # the environment's count wins, as the run will train with it
    assert training.prepare(spec_for(tiny)).identity["numerics"]["threads"] == 3
    with pytest.raises(ConfigError, match="unknown numerics 'bf16'; use one of: exact, fast"):
        training.prepare(spec_for(tiny, numerics="bf16"))


def test_interrupted_run_resumes_to_the_uninterrupted_result(tiny, tmp_path, stand_in):
    spec = spec_for(tiny, epochs=4, resume_every=2)
    reference = training.run(spec, tmp_path / "ref", progress=False)

    class Interrupt(Exception):
        pass

    def stop_after_three(epoch: int, metrics: dict) -> None:
        if epoch == 3:  # the last snapshot is epoch 2: epoch 3 is redone after the restart
            raise Interrupt

    with pytest.raises(Interrupt):
        training.run(spec, tmp_path / "store", progress=False, on_epoch=stop_after_three)
    prep = training.prepare(spec)
    record_file = training.prepared_record_path(prep, tmp_path / "store")
    assert not record_file.exists() and (store.checkpoint_dir(record_file) / "resume.pt").is_file()

    epochs_seen = []
    resumed = training.run(spec, tmp_path / "store", progress=False, on_epoch=lambda e, m: epochs_seen.append(e))
    assert epochs_seen == [3, 4] and resumed["resumed_from_epoch"] == 2
    assert comparable(resumed) == comparable(reference)
    w_ref = torch.load(store.resolve_checkpoint(reference, "last"), weights_only=True)["state_dict"]
    w_res = torch.load(store.resolve_checkpoint(resumed, "last"), weights_only=True)["state_dict"]
    assert all(torch.equal(w_ref[k], w_res[k]) for k in w_ref)
    assert not (store.checkpoint_dir(record_file) / "resume.pt").exists()


def test_official_training_set_without_val_policy(tiny, tmp_path, stand_in):
    record = training.run(spec_for(tiny, policies=("test-max", "last")), tmp_path, progress=False)
    assert set(record["selected"]) == {"test-max", "last"}
    assert record["selection"]["val_fraction"] == 0.0 and record["split"]["val_keys"] == []
    assert record["split"]["train_keys"] == ["video_1", "video_2", "video_3", "video_4"]
    assert "val_tau" not in record["epochs"][0]


# ------------------------------------------------------------------------------------------------ bad input


def test_bad_input_fails_before_training(tiny, tmp_path, stand_in):
    with pytest.raises(ConfigError, match="unknown model preset"):
        training.prepare(spec_for(tiny, preset="nope"))
    with pytest.raises(ConfigError, match="split 5 does not exist"):
        training.prepare(spec_for(tiny, split=5))
    with pytest.raises(ConfigError, match="epochs"):
        training.prepare(spec_for(tiny, epochs=0))
    with pytest.raises(ConfigError, match="policy"):
        training.prepare(spec_for(tiny, policies=("best",)))
    with pytest.raises(ConfigError, match="val_fraction"):
        training.prepare(spec_for(tiny, val_fraction=0.0))
    with pytest.raises(ConfigError, match="unknown dataset"):
        training.prepare(RunSpec(dataset="ovp", epochs=1))
    missing_keys = write_splits(tmp_path / "SumMe_bad.txt", [([1, 2, 3, 9], [5, 6])])
    with pytest.raises(DataFormatError, match="video_9"):
        training.prepare(spec_for(tiny, splits_file=str(missing_keys)))
    with pytest.raises(CstaInputError, match="no such file"):
        training.prepare(spec_for(tiny, data_path=str(tmp_path / "absent.h5")))
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    with pytest.raises(CstaInputError, match="not writable"):  # a store under a file cannot be created
        training.run(spec_for(tiny), a_file / "store", progress=False)


def test_checkpoint_of_another_preset_is_refused(tiny, tmp_path, stand_in):
    record = training.run(spec_for(tiny, epochs=1, preset="table2.kv"), tmp_path, progress=False)
    ckpt = store.resolve_checkpoint(record, "last")
    with pytest.raises(ConfigError, match="table2.kv"):
        training.prepare(spec_for(tiny, init_checkpoint=str(ckpt)))
    # the same preset is accepted and changes the content address
    same = training.prepare(spec_for(tiny, preset="table2.kv", init_checkpoint=str(ckpt)))
    assert same.key != training.prepare(spec_for(tiny, preset="table2.kv")).key
    not_a_checkpoint = tmp_path / "x.pt"
    torch.save({"weights": 1}, not_a_checkpoint)
    with pytest.raises(DataFormatError, match="not a csta checkpoint"):
        checkpoint.read_checkpoint(not_a_checkpoint)


def test_tvsum_run_uses_the_casum_protocol_on_a_surrogate(tmp_path, stand_in):
    keys = ["video_45", "video_38", "video_26", "video_5", "video_13"]
    data = build_surrogate("tvsum", tmp_path / "eccv16_dataset_tvsum_tiny.h5", keys=keys)
    splits = tmp_path / "tvsum_tiny.json"
    splits.write_text(json.dumps([{"train_keys": keys[:3], "test_keys": keys[3:]}]))
    spec = RunSpec(preset="paper", dataset="tvsum", data_path=str(data), splits_file=str(splits), epochs=2,
                   seed=0, device="cpu", cnn_weights=None)
    record = training.run(spec, tmp_path / "store", progress=False)
    assert record["dataset"] == "tvsum" and record["protocol"]["rank"] == "casum_tvsum"
    assert record["provenance"]["surrogate"] is True and len(record["split"]["val_keys"]) == 1
    assert all(np.isfinite(e["test_tau"]) and np.isfinite(e["val_rho"]) for e in record["epochs"])


def test_policy_that_never_improves_reports_the_last_epoch_with_its_file(tiny, tmp_path, stand_in, monkeypatch):
    # Undefined correlations everywhere (e.g. constant predictions): no epoch improves, as the official selection rule does (book method page, method-selection).
    nan = float("nan")
    monkeypatch.setattr(training, "make_scorer",
                        lambda prep: lambda preds: {k: {"tau": nan, "rho": nan, "f1": nan} for k in preds})
    record = training.run(spec_for(tiny, policies=("test-max", "val")), tmp_path, progress=False)
    for policy in ("test-max", "val"):
        chosen = record["selected"][policy]
        assert chosen["epoch"] == 2 and "no epoch improved" in chosen["note"]
        assert store.resolve_checkpoint(record, policy).is_file()
