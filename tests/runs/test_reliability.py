"""Hostile inputs (issue 14): no code runs from a store, no input is overwritten, one clear error (exit 2)
instead of a traceback, nothing partial and nothing new left behind when a command fails."""

from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from csta_lib.runs import checkpoint, store, training
from csta_lib.cli import build_parser, main
from csta_lib.cli import train as cli_train
from csta_lib.data import eccv16, splits
from csta_lib.errors import CstaInputError, DataFormatError
from support import spec_for, write_splits, write_tiny_eccv16


class Payload:
    """Unpickling this creates the folder ``marker``: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def one_clean_line(err: str) -> str:
    """The error output of a failed command: exactly one line, no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("rel")
    data = write_tiny_eccv16(folder / "eccv16_dataset_summe_tiny.h5")
    predictions = folder / "predictions.h5"
    ds = eccv16.load_eccv16(data)
    rng = np.random.default_rng(0)
    with h5py.File(predictions, "w") as h5:
        for key in ("video_5", "video_6"):
            h5[key] = rng.random(ds[key].n_steps).astype(np.float32)
    return {"data": data, "predictions": predictions,
            "splits": write_splits(folder / "SumMe_tiny_splits.txt", [([1, 2, 3, 4], [5, 6])])}


def train_args(files, store_dir: Path, *extra: str) -> list[str]:
    return ["train", "--preset", "paper", "--data", str(files["data"]), "--splits-file", str(files["splits"]),
            "--split", "0", "--seed", "0", "--epochs", "2", "--store", str(store_dir), "--device", "cpu",
            "--cnn-weights", "none", "--no-progress", *extra]


def run_dir(files, store_dir: Path, *extra: str) -> tuple[Path, Path]:
    """(record file, checkpoint folder) the training command of ``train_args`` uses."""
    specs = cli_train.build_specs(build_parser().parse_args(train_args(files, store_dir, *extra)))
    record = training.prepared_record_path(training.prepare(specs[0]), store_dir)
    return record, store.checkpoint_dir(record)


# ---------------------------------------------------------------------------------- 1. no code from a store


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickled_resume_snapshot_is_refused_without_running_it(files, tmp_path, capsys, stand_in, writer):
    marker = tmp_path / "PWNED"
    _, ckpt = run_dir(files, tmp_path / "store")
    ckpt.mkdir(parents=True)
    payload = {"format": checkpoint.RESUME_FORMAT, "model": Payload(marker)}
    if writer == "pickle":
        (ckpt / "resume.pt").write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, ckpt / "resume.pt")
    assert main(train_args(files, tmp_path / "store")) == 2
    line = one_clean_line(capsys.readouterr().err)
    assert "resume.pt" in line and "refused" in line and "delete it" in line
    assert not marker.exists()


def test_resume_snapshot_loads_with_weights_only_and_the_run_resumes_identically(files, tmp_path, stand_in):
    spec = spec_for(files, epochs=3, resume_every=1, seed=1, split=0)

    class Stop(Exception):
        pass

    def stop(epoch, metrics):
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        training.run(spec, tmp_path / "a", progress=False, on_epoch=stop)
    resume = store.checkpoint_dir(training.prepared_record_path(training.prepare(spec), tmp_path / "a")) / "resume.pt"
    snapshot = torch.load(resume, weights_only=True)  # tensors and plain data only
    assert snapshot["format"] == "csta-resume/2" and snapshot["epoch"] == 2
    assert isinstance(snapshot["rng"]["numpy"]["keys"], torch.Tensor)
    resumed = training.run(spec, tmp_path / "a", progress=False)
    reference = training.run(spec, tmp_path / "b", progress=False)
    assert resumed["resumed_from_epoch"] == 2
    assert [e["train_loss"] for e in resumed["epochs"]] == [e["train_loss"] for e in reference["epochs"]]
    assert [e["test_tau"] for e in resumed["epochs"]] == [e["test_tau"] for e in reference["epochs"]]


@pytest.mark.parametrize("damage", ["old-format", "wrong-type", "not-a-dict"])
def test_resume_snapshot_of_an_old_format_or_damaged_is_a_clear_error(files, tmp_path, capsys, stand_in, damage):
    _, ckpt = run_dir(files, tmp_path / "store")
    ckpt.mkdir(parents=True)
    prep = training.prepare(cli_train.build_specs(build_parser().parse_args(train_args(files, tmp_path / "store")))[0])
    payload = {"old-format": {"format": "csta-resume/1", "key": prep.key},
               "wrong-type": {"format": checkpoint.RESUME_FORMAT, "key": prep.key, "epoch": "2", "model": {},
                              "optimizer": {}, "rng": {}, "history": [], "per_video": [], "elapsed": 0.0,
                              "shuffle": torch.zeros(3)},
               "not-a-dict": [1, 2, 3]}[damage]
    torch.save(payload, ckpt / "resume.pt")
    assert main(train_args(files, tmp_path / "store")) == 2
    line = one_clean_line(capsys.readouterr().err)
    assert "resume.pt" in line and "delete it to restart the run" in line


def test_pickled_checkpoint_for_init_from_and_read_checkpoint_is_refused(files, tmp_path, capsys, stand_in):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.CHECKPOINT_FORMAT, "config": Payload(marker)}, evil)
    with pytest.raises(DataFormatError, match="refused unread"):
        checkpoint.read_checkpoint(evil)
    assert main(train_args(files, tmp_path / "store", "--init-from", str(evil))) == 2
    assert "evil.pt" in one_clean_line(capsys.readouterr().err)
    assert not marker.exists() and not (tmp_path / "store").exists()


def test_garbage_checkpoint_message_is_one_line(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataFormatError) as info:
        checkpoint.read_checkpoint(garbage)
    assert "\n" not in str(info.value) and "garbage.pt" in str(info.value)


# ----------------------------------------------------------------------------- 2. inputs are never overwritten


def evaluate_args(files, out: Path | str) -> list[str]:
    return ["evaluate", str(files["predictions"]), "--data", str(files["data"]), "--out", str(out)]


def test_evaluate_out_onto_an_input_is_refused_and_both_stay_identical(files, tmp_path, capsys):
    before = {name: files[name].read_bytes() for name in ("data", "predictions")}
    (tmp_path / "data-link.h5").symlink_to(files["data"])
    os.link(files["predictions"], tmp_path / "pred-hard.h5")
    for out in (files["data"], files["predictions"], tmp_path / "data-link.h5", tmp_path / "pred-hard.h5"):
        assert main(evaluate_args(files, out)) == 2
        assert "refusing to overwrite an input" in one_clean_line(capsys.readouterr().err)
    assert {name: files[name].read_bytes() for name in ("data", "predictions")} == before


def test_evaluate_out_writes_json_elsewhere(files, tmp_path, capsys):
    assert main(evaluate_args(files, tmp_path / "new" / "result.json")) == 0
    result = json.loads((tmp_path / "new" / "result.json").read_text())
    assert set(result["videos"]) == {"video_5", "video_6"}


def test_make_surrogate_out_onto_its_source_is_refused(tmp_path, capsys, monkeypatch):
    from csta_lib.runs import surrogate

    source = tmp_path / "eccv16_fields.h5"
    source.write_bytes(b"the real fields file")
    monkeypatch.setattr(surrogate, "find", lambda name: source if name == "eccv16.fields" else None)
    with pytest.raises(CstaInputError, match="refusing to overwrite an input"):
        surrogate.build_surrogate("summe", source)
    (tmp_path / "link.h5").symlink_to(source)
    assert main(["data", "make-surrogate", "--dataset", "summe", "--out", str(tmp_path / "link.h5")]) == 2
    assert "--out" in one_clean_line(capsys.readouterr().err)
    assert source.read_bytes() == b"the real fields file"
    with pytest.raises(CstaInputError, match="seed"):
        surrogate.build_surrogate("summe", tmp_path / "s.h5", seed=2**64)


# ------------------------------------------------------------------------------- 4. one clear error, exit 2


def test_output_names_at_and_over_the_limit(files, tmp_path, capsys):
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    ok = tmp_path / ("r" * (limit - 5) + ".json")
    assert main(evaluate_args(files, ok)) == 0 and ok.is_file()
    capsys.readouterr()
    too_long = tmp_path / ("r" * (limit + 1))
    assert main(evaluate_args(files, too_long)) == 2
    assert "longer than the file system's" in one_clean_line(capsys.readouterr().err)


def test_out_that_is_a_directory_or_under_a_file(files, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    before = tree(tmp_path)
    for out, message in ((tmp_path, "is a directory"), (tmp_path / "a-file" / "sub" / "r.json", "is a file")):
        assert main(evaluate_args(files, out)) == 2
        assert message in one_clean_line(capsys.readouterr().err)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("kind", ["external", "loop", "dangling-soft"])
def test_broken_links_in_the_data_reader(tmp_path, kind):
    path = tmp_path / "eccv16_dataset_summe_links.h5"
    with h5py.File(path, "w") as h5:
        if kind == "external":
            h5["video_1"] = h5py.ExternalLink(str(tmp_path / "absent.h5"), "/video_1")
        elif kind == "loop":
            h5["video_1"] = h5py.SoftLink("/video_2")
            h5["video_2"] = h5py.SoftLink("/video_1")
        else:
            g = h5.create_group("video_1")
            g["features"] = h5py.SoftLink("/nowhere")
    with pytest.raises(DataFormatError, match="broken .*link") as info:
        eccv16.load_eccv16(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["external", "loop"])
def test_broken_links_in_the_predictions_reader(files, tmp_path, capsys, kind):
    path = tmp_path / "pred.h5"
    with h5py.File(path, "w") as h5:
        if kind == "external":
            h5["video_5"] = h5py.ExternalLink(str(tmp_path / "absent.h5"), "/x")
        else:
            h5["video_5"] = h5py.SoftLink("/video_6")
            h5["video_6"] = h5py.SoftLink("/video_5")
    assert main(["evaluate", str(path), "--data", str(files["data"])]) == 2
    assert "broken" in one_clean_line(capsys.readouterr().err)


def test_predictions_declaring_a_trillion_values_are_refused_before_reading(files, tmp_path, capsys):
    h5_path = tmp_path / "huge.h5"
    with h5py.File(h5_path, "w") as h5:
        h5.create_dataset("video_5", shape=(10**12,), dtype="f4", chunks=(1024,))  # nothing stored: tiny file
    npz_path = tmp_path / "huge.npz"
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**12,)}
    with zipfile.ZipFile(npz_path, "w") as archive, archive.open("video_5.npy", "w") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(b"\0" * 64)
    for path in (h5_path, npz_path):
        assert main(["evaluate", str(path), "--data", str(files["data"])]) == 2
        assert "refusing to read it" in one_clean_line(capsys.readouterr().err)


def test_data_field_declaring_too_many_bytes_is_refused(tmp_path):
    path = tmp_path / "eccv16_dataset_summe_huge.h5"
    with h5py.File(path, "w") as h5:
        h5.create_group("video_1").create_dataset("features", shape=(10**9, 1024), dtype="f4", chunks=(1, 1024))
    with pytest.raises(DataFormatError, match="refusing to read it"):
        eccv16.load_eccv16(path)


@pytest.mark.parametrize("seed", [str(2**64), str(2**70), "-1"])
def test_seed_out_of_range_is_refused_before_the_store_exists(files, tmp_path, capsys, seed):
    args = train_args(files, tmp_path / "store")
    args[args.index("--seed") + 1] = seed
    assert main(args) == 2
    assert "seed must be an integer from 0 to 2**64-1" in one_clean_line(capsys.readouterr().err)
    assert not (tmp_path / "store").exists()


def test_seed_list_too_long_is_refused(files, tmp_path, capsys):
    args = train_args(files, tmp_path / "store")
    i = args.index("--seed")
    args[i:i + 2] = ["--seeds", f"0-{10**12}"]
    assert main(args) == 2
    assert "more than 10000 values" in one_clean_line(capsys.readouterr().err)


def damaged_records(record: dict) -> dict[str, dict]:
    no_seed = {k: v for k, v in record.items() if k != "seed"}
    wrong_split = {**record, "split": "0"}
    wrong_tau = json.loads(json.dumps(record))
    next(iter(wrong_tau["selected"].values()))["test_tau"] = "high"
    return {"missing seed": no_seed, "split as string": wrong_split, "tau as string": wrong_tau}


def test_record_missing_a_field_or_of_a_wrong_type_in_results_table(files, tmp_path, capsys, stand_in):
    assert main(train_args(files, tmp_path / "store")) == 0
    record_file = Path(capsys.readouterr().out.strip().splitlines()[-1])
    good = json.loads(record_file.read_text())
    for label, bad in damaged_records(good).items():
        record_file.write_text(json.dumps(bad))
        assert main(["results", "table", "--store", str(tmp_path / "store")]) == 2, label
        line = one_clean_line(capsys.readouterr().err)
        assert str(record_file) in line and "damaged csta run record" in line, label


def test_rerun_of_train_replaces_a_damaged_record(files, tmp_path, capsys, stand_in):
    assert main(train_args(files, tmp_path / "store")) == 0
    record_file = Path(capsys.readouterr().out.strip().splitlines()[-1])
    good = json.loads(record_file.read_text())
    record_file.write_text(json.dumps(damaged_records(good)["missing seed"]))
    spec = cli_train.build_specs(build_parser().parse_args(train_args(files, tmp_path / "store")))[0]
    with pytest.warns(RuntimeWarning, match="damaged csta run record"):
        assert training.lookup(spec, tmp_path / "store") is None  # grids schedule it again
    with pytest.warns(RuntimeWarning, match="damaged csta run record.*retraining"):
        assert main(train_args(files, tmp_path / "store")) == 0
    replaced = store.read_record(record_file)
    assert replaced["seed"] == 0 and replaced["created_utc"] >= good["created_utc"]
    assert [e["train_loss"] for e in replaced["epochs"]] == [e["train_loss"] for e in good["epochs"]]
    assert all(store.resolve_checkpoint({**replaced, "_path": str(record_file)}, p).is_file()
               for p in replaced["selected"])
    assert not [p for p in record_file.parent.iterdir() if p.name.startswith(".")]


def test_full_disk_while_writing_is_one_message_and_nothing_partial(files, tmp_path, capsys, monkeypatch):
    real_write = Path.write_bytes

    def full_disk(self, data):
        real_write(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    assert main(evaluate_args(files, tmp_path / "out" / "result.json")) == 2
    assert "disk full" in one_clean_line(capsys.readouterr().err)
    assert tree(tmp_path) == []


# ----------------------------------------------------------------------- 5. nothing lost, nothing left behind


def test_force_keeps_the_old_record_until_the_new_one_is_written(files, tmp_path, stand_in):
    spec = spec_for(files, epochs=2, seed=5)
    first = training.run(spec, tmp_path, progress=False)
    record_file = Path(first["_path"])
    before = record_file.read_bytes()

    class Dies(Exception):
        pass

    def die(epoch, metrics):
        raise Dies

    with pytest.raises(Dies):
        training.run(spec, tmp_path, progress=False, force=True, on_epoch=die)
    assert record_file.read_bytes() == before  # the old record stands, with its checkpoints
    assert all(store.resolve_checkpoint(first, p).is_file() for p in first["selected"])
    again = training.run(spec, tmp_path, progress=False, force=True)
    assert again["created_utc"] >= first["created_utc"] and again["key"] == first["key"]
    assert all(store.resolve_checkpoint(again, p).is_file() for p in again["selected"])
    assert not [p for p in record_file.parent.iterdir() if p.name.startswith(".")]  # no staging folders left


def test_failed_train_leaves_no_new_directories(files, tmp_path, capsys, stand_in, monkeypatch):
    def failing_scorer(prep):
        def score(predictions):
            raise CstaInputError("scoring failed (injected)")
        return score

    monkeypatch.setattr(training, "make_scorer", failing_scorer)
    assert main(train_args(files, tmp_path / "new" / "store")) == 2
    assert "injected" in one_clean_line(capsys.readouterr().err)
    assert tree(tmp_path) == []


def test_stale_temporary_of_a_killed_writer_is_removed_on_the_next_write(files, tmp_path, stand_in):
    spec = spec_for(files, epochs=1, seed=6)
    record_file = training.prepared_record_path(training.prepare(spec), tmp_path)
    code = ("import os, sys; from csta_lib.runs.io import atomic_path\n"
            "with atomic_path(sys.argv[1]) as t:\n    t.write_bytes(b'{'); os._exit(9)\n")
    subprocess.run([sys.executable, "-c", code, str(record_file)], check=False)
    assert [p.name for p in tmp_path.rglob("*.part")]  # the killed writer's temporary
    training.run(spec, tmp_path, progress=False)
    assert not list(tmp_path.rglob("*.part"))


# ------------------------------------------------------------------------------------- 6. stricter inputs


def test_duplicate_key_in_a_split_file_names_key_and_file(tmp_path):
    path = tmp_path / "SumMe_dup.json"
    path.write_text(json.dumps([{"train_keys": ["video_1", "video_2", "video_1"], "test_keys": ["video_3"]}]))
    with pytest.raises(DataFormatError, match=r"SumMe_dup\.json: split 0: key video_1 listed twice"):
        splits.load_splits(path)
    txt = tmp_path / "SumMe_dup.txt"
    txt.write_text("SumMe/split0/video_1,video_2/video_3,video_3\n")
    with pytest.raises(DataFormatError, match="video_3 listed twice in its test keys"):
        splits.load_splits(txt)


@pytest.mark.parametrize("key", ["video_1\n", "video_1 ", " video_1", "video_\u0661", 1])
def test_split_keys_must_match_exactly(tmp_path, key):
    path = tmp_path / "SumMe_keys.json"
    path.write_text(json.dumps([{"train_keys": [key, "video_2"], "test_keys": ["video_3"]}]))
    with pytest.raises(DataFormatError, match="video key"):
        splits.load_splits(path)


def test_h5_video_key_with_a_trailing_newline_is_not_a_video(tmp_path):
    from support import tiny_video, write_eccv16

    path = write_eccv16(tmp_path / "eccv16_dataset_summe_nl.h5",
                        {"video_1": tiny_video(), "video_2\n": tiny_video(seed=2)})
    assert eccv16.load_eccv16(path).keys() == ["video_1"]


def test_complex_predictions_are_refused(files, tmp_path, capsys):
    path = tmp_path / "complex.npz"
    np.savez(path, video_5=np.ones(4, dtype=np.complex64), video_6=np.ones(4))
    assert main(["evaluate", str(path), "--data", str(files["data"])]) == 2
    assert "real numbers" in one_clean_line(capsys.readouterr().err)


@pytest.mark.parametrize(("n_frames", "message"), [(np.uint64(2**63 + 7), "out of range"),
                                                   (np.float64(1e19), "out of range"),
                                                   (np.int64(-60), "must be >= 1")])
def test_n_frames_beyond_int64_or_negative_is_a_clear_error(tmp_path, n_frames, message):
    from support import tiny_video, write_eccv16

    video = tiny_video()
    video["n_frames"] = n_frames
    path = write_eccv16(tmp_path / "eccv16_dataset_summe_nf.h5", {"video_1": video})
    with pytest.raises(DataFormatError, match=message) as info:
        eccv16.load_eccv16(path)
    assert "-92233" not in str(info.value)  # never shown wrapped to a negative number


def test_complex_scores_are_refused_by_the_evaluation_functions():
    from csta_lib import evaluation as ev

    with pytest.raises(CstaInputError, match="real numbers"):
        ev.frame_scores(np.ones(2, dtype=np.complex128), np.array([0, 15]), 30)
    assert ev.frame_scores(np.ones(2), np.array([0, 15]), 30).shape == (30,)


@pytest.mark.parametrize("n_frames", [-5, 0, 1e19, float("nan")])
def test_summe_gt_frame_count_out_of_range_is_a_clear_error(tmp_path, n_frames):
    import scipy.io

    from csta_lib.data import annotations

    path = tmp_path / "Clip.mat"
    scipy.io.savemat(path, {"user_score": np.zeros((4, 2)), "gt_score": np.zeros((4, 1)), "nFrames": n_frames,
                            "FPS": 30.0, "video_duration": 1.0})
    with pytest.raises(DataFormatError, match=r"Clip\.mat: (nFrames|'nFrames')"):
        annotations.read_summe_gt(path)


def test_record_too_deep_or_not_utf8_is_a_clear_error(tmp_path):
    path = tmp_path / "summe" / "paper" / "k.json"
    path.parent.mkdir(parents=True)
    for content in (b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe{}"):
        path.write_bytes(content)
        with pytest.raises(DataFormatError, match="not a readable JSON run record"):
            store.read_record(path)


@pytest.mark.parametrize(("name", "content"), [("SumMe_deep.json", "[" * 100_000 + "]" * 100_000),
                                               ("SumMe_bad.yml", "- train_keys: [video_1\n  : ]\n")])
def test_split_file_too_deep_or_malformed_is_one_line(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataFormatError, match="not valid") as info:
        splits.load_splits(path)
    assert "\n" not in str(info.value)


def test_complex_kts_features_are_refused():
    from csta_lib import kts

    with pytest.raises(CstaInputError, match="real numbers"):
        kts.linear_kernel(np.ones((4, 3), dtype=np.complex64))


# ------------------------------------------------------------------ 7. --set values and the store's files (issue 22)


@pytest.mark.parametrize("value", ['!!python/object/apply:os.system ["true"]', "!!python/object/apply:os.mkdir [MARKER]",
                                   "[1, 2", "[1, 2]", "{a: 1}"])
def test_set_with_a_yaml_tag_or_malformed_or_not_a_plain_value_is_one_line(files, tmp_path, capsys, monkeypatch,
                                                                           value):
    monkeypatch.chdir(tmp_path)
    assert main(train_args(files, tmp_path / "store", "--set", f"skip_norm={value}")) == 2
    line = one_clean_line(capsys.readouterr().err)
    assert "--set" in line and "skip_norm" in line
    assert tree(tmp_path) == []  # nothing ran (no MARKER folder), nothing was written


def test_set_to_the_presets_own_value_is_the_preset_run(files, tmp_path, capsys, stand_in):
    from csta_lib.config import PRESETS

    paper = PRESETS["paper"]
    assert main(train_args(files, tmp_path / "store")) == 0
    plain = Path(capsys.readouterr().out.strip().splitlines()[-1])
    same = ("--set", f"skip_norm={paper.skip_norm}", "--set", f"attention_dropout_rate={paper.attention_dropout_rate}",
            "--set", f"cls_token={str(paper.cls_token).lower()}")
    assert main(train_args(files, tmp_path / "store", *same)) == 0
    assert Path(capsys.readouterr().out.strip().splitlines()[-1]) == plain  # the same run: found, not retrained
    assert [p.name for p in (tmp_path / "store" / "summe").iterdir()] == ["paper"]
    args = build_parser().parse_args(train_args(files, tmp_path / "store", "--set", "attention_dropout_rate=0",
                                                "--set", "skip_norm=layernorm", "--set", "skip_norm=batchnorm"))
    spec = cli_train.build_specs(args)[0]
    assert spec.overrides == (("attention_dropout_rate", 0.0),) and spec.variant == "paper+attention_dropout_rate=0.0"


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_results_table_with_a_fifo_or_an_endless_link_in_the_store_is_one_line(tmp_path, kind):
    folder = tmp_path / "store" / "summe" / "paper"
    folder.mkdir(parents=True)
    path = folder / "0123456789abcdef0123.json"
    os.mkfifo(path) if kind == "fifo" else path.symlink_to("/dev/zero")
    done = subprocess.run([sys.executable, "-m", "csta_lib.cli", "results", "table", "--store", str(tmp_path / "store")],
                          capture_output=True, text=True, timeout=120)  # before: waited forever / grew to GBs
    assert done.returncode == 2
    line = one_clean_line(done.stderr)
    assert str(path) in line and ("FIFO" in line or "device" in line)


@pytest.mark.parametrize("flag", ["--data", "--splits-file", "--init-from"])
def test_a_fifo_or_an_endless_link_given_as_an_input_file_is_refused_at_once(files, tmp_path, flag):
    fifo, zero = tmp_path / "eccv16_dataset_summe_fifo.h5", tmp_path / "eccv16_dataset_summe_zero.h5"
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    for path in (fifo, zero):
        done = subprocess.run([sys.executable, "-m", "csta_lib.cli", *train_args(files, tmp_path / "store"), flag,
                               str(path)], capture_output=True, text=True, timeout=120)  # the last flag wins; before:
        # --data waited forever
        assert done.returncode == 2, done.stderr
        line = one_clean_line(done.stderr)
        assert path.name in line or "/dev/zero" in line
