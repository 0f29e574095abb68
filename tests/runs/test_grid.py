"""Experiment grids: reuse from the store, failures by key, engines (local in-process, local processes, Ray).

Most tests use a fake trainer (module-level functions below, importable by worker processes) that writes a
record atomically in a few milliseconds; the engine-equivalence test trains the real smoke grid.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import record_differences

from csta_lib.errors import CstaInputError
from csta_lib.runs import experiments, grid, store
from csta_lib.runs.io import owner_tag

TESTS_DIR = Path(__file__).resolve().parent


# ------------------------------------------------------------------------------------------------------------
# a fake trainer: importable functions (worker processes and Ray workers import this module by name)


def fake_identity(spec) -> dict:
    return {"variant": spec.variant, "dataset": spec.dataset, "split": spec.split, "seed": spec.seed,
            "epochs": spec.epochs, "policies": list(spec.policies), "val_fraction": spec.resolved_val_fraction(),
            "data": Path(spec.data_path).name if spec.data_path else None}


def fake_key(spec) -> str:
    return store.content_key(fake_identity(spec))


def fake_lookup(spec, store_dir):
    key = fake_key(spec)
    return key, store.find_record(store_dir, spec.dataset, spec.variant, key)


def fake_run(spec, store_dir):
    """Write a small record; die (os._exit) if a ``.kill-<key>`` file is in the store, fail if ``.fail-<key>``;
    with a ``.barrier`` file holding N, wait until N runs are running at once (or fail after a minute)."""
    key = fake_key(spec)
    if (Path(store_dir) / f".kill-{key}").exists():
        os._exit(7)  # a worker dying mid-run, without cleanup
    if (Path(store_dir) / f".fail-{key}").exists():
        raise RuntimeError(f"injected failure of {key}")
    barrier = Path(store_dir) / ".barrier"
    if barrier.exists():
        (Path(store_dir) / f".arrived-{key}").touch()
        deadline = time.monotonic() + 60
        while len(list(Path(store_dir).glob(".arrived-*"))) < int(barrier.read_text()):
            if time.monotonic() > deadline:
                raise RuntimeError("the runs did not run at the same time")
            time.sleep(0.05)
    import torch

    record = {"format": store.RECORD_FORMAT, "key": key, "identity": fake_identity(spec), "preset": spec.preset,
              "variant": spec.variant, "dataset": spec.dataset, "split": {"index": spec.split}, "seed": spec.seed,
              "n_epochs": spec.epochs, "device": spec.device, "threads": torch.get_num_threads(), "pid": os.getpid(),
              "visible_gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
              "data_exists": bool(spec.data_path) and Path(spec.data_path).is_file(),
              "selected": {"test-max": {"epoch": 1, "test_tau": 0.1, "test_rho": 0.2}}, "wall_time_s": 0.01}
    path = store.record_path(store_dir, spec.dataset, spec.variant, key)
    store.write_record(path, record)
    return {**record, "_path": str(path)}


def fake_check(spec):
    return fake_key(spec)


FAKE = {"run_fn": fake_run, "lookup_fn": fake_lookup, "check_fn": fake_check}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One surrogate cache for the module (the tiny smoke files are built once)."""
    return tmp_path_factory.mktemp("surrogate-cache")


def record_files(store_dir: Path) -> list[Path]:
    return store.iter_record_files(store_dir)


# ------------------------------------------------------------------------------------------------------------
# local engine


def test_in_process_grid_computes_then_reuses(tmp_path, cache):
    first = grid.run_grid("table2", "smoke", store=tmp_path, progress=False, cache_dir=cache, **FAKE)
    assert first["runs"] == len(experiments.EXPERIMENTS["table2"].variants) == 7
    assert (first["computed"], first["reused"], first["failed"]) == (7, 0, 0)
    assert len(record_files(tmp_path)) == 7
    assert len(set(first["keys"])) == 7
    second = grid.run_grid("table2", "smoke", store=tmp_path, progress=False, cache_dir=cache, **FAKE)
    assert (second["computed"], second["reused"], second["failed"]) == (0, 7, 0)
    assert second["keys"] == first["keys"]
    assert first["data"]["summe"]["surrogate"] is True


def test_shared_runs_are_reused_across_experiments(tmp_path, cache):
    """The CSTA row of table2 and deviations is the same run (same variant name and content)."""
    grid.run_grid("table2", "smoke", store=tmp_path, progress=False, cache_dir=cache, **FAKE)
    dev = grid.run_grid("deviations", "smoke", store=tmp_path, progress=False, cache_dir=cache, **FAKE)
    assert (dev["runs"], dev["reused"], dev["computed"]) == (3, 1, 2)


def test_failed_run_is_reported_by_key_and_rerun_alone(tmp_path, cache):
    specs = [p.spec() for p in experiments.plan("table2", "smoke", cache_dir=cache)]
    bad = fake_key(specs[2])
    (tmp_path / f".fail-{bad}").write_text("")
    out = grid.run_grid("table2", "smoke", store=tmp_path, progress=False, cache_dir=cache, **FAKE)
    assert (out["computed"], out["failed"]) == (6, 1)
    assert out["failed_runs"][0]["key"] == bad
    assert "injected failure" in out["failed_runs"][0]["error"]
    (tmp_path / f".fail-{bad}").unlink()
    again = grid.run_grid("table2", "smoke", store=tmp_path, progress=False, cache_dir=cache, **FAKE)
    assert (again["computed"], again["reused"], again["failed"]) == (1, 6, 0)


def test_worker_process_dying_mid_run(tmp_path, cache):
    """--jobs 2: a worker killed mid-run is reported by its key, the others finish, a rerun computes only it."""
    specs = [p.spec() for p in experiments.plan("deviations", "smoke", cache_dir=cache)]
    victim = fake_key(specs[1])
    (tmp_path / f".kill-{victim}").write_text("")
    out = grid.run_grid("deviations", "smoke", jobs=2, store=tmp_path, progress=False, cache_dir=cache, **FAKE)
    assert (out["runs"], out["computed"], out["failed"]) == (3, 2, 1)
    assert out["failed_runs"][0]["key"] == victim
    assert "died" in out["failed_runs"][0]["error"]
    records = [store.read_record(p) for p in record_files(tmp_path)]
    assert victim not in {r["key"] for r in records}
    assert os.getpid() not in {r["pid"] for r in records}  # trained in worker processes
    assert {r["threads"] for r in records} == {max(1, grid.machine_cores() // 2)}
    (tmp_path / f".kill-{victim}").unlink()
    again = grid.run_grid("deviations", "smoke", jobs=2, store=tmp_path, progress=False, cache_dir=cache, **FAKE)
    assert (again["computed"], again["reused"], again["failed"]) == (1, 2, 0)


def test_worker_processes_are_reused(tmp_path, cache):
    out = grid.run_grid("table2", "smoke", jobs=2, store=tmp_path, progress=False, cache_dir=cache, **FAKE)
    assert (out["computed"], out["failed"]) == (7, 0)
    pids = {store.read_record(p)["pid"] for p in record_files(tmp_path)}
    assert len(pids) <= 2 and os.getpid() not in pids


def test_threads_and_device_per_run(tmp_path, cache):
    out = grid.run_grid("table1", "smoke", store=tmp_path, progress=False, cache_dir=cache, cpus_per_run=1, **FAKE)
    assert out["threads_per_run"] == 1
    records = [store.read_record(p) for p in record_files(tmp_path)]
    assert len(records) == out["runs"] == 8  # official-protocol and held-out runs of both datasets, 2 seeds
    assert {r["threads"] for r in records} == {1}
    assert {r["device"] for r in records} == {"cpu"}
    assert {r["dataset"] for r in records} == {"summe", "tvsum"}


def test_records_for_returns_the_grid_records_with_labels(tmp_path, cache):
    grid.run_grid("deviations", "smoke", store=tmp_path, progress=False, cache_dir=cache, **FAKE)
    records = grid.records_for("deviations", "smoke", tmp_path, cache, lookup_fn=fake_lookup)
    assert [r["_label"] for r in records] == [v.label for v in experiments.EXPERIMENTS["deviations"].variants]
    assert all(Path(r["_path"]).is_file() for r in records)


def test_stored_experiment_records_without_profile_prefer_the_longest_runs(tmp_path, cache):
    grid.run_grid("deviations", "smoke", store=tmp_path, progress=False, cache_dir=cache, **FAKE)
    spec = [p.spec() for p in experiments.plan("deviations", "smoke", cache_dir=cache)][0]
    fake_run(dataclasses.replace(spec, epochs=100), str(tmp_path))  # a longer run of the first row
    fake_run(dataclasses.replace(spec, preset="fig4.resnet18"), str(tmp_path))  # not a row of this experiment
    records = grid.stored_experiment_records("deviations", tmp_path)
    by_variant = {r["variant"]: r for r in records}
    assert len(records) == 3 and set(by_variant) == {v.name for v in experiments.EXPERIMENTS["deviations"].variants}
    assert by_variant["paper"]["n_epochs"] == 100
    assert by_variant["paper+skip_norm=layernorm"]["_label"].startswith("paper Eq. 3")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CstaInputError, match="no records of experiment table2"):
        grid.stored_experiment_records("table2", tmp_path / "empty")


def test_progress_output(tmp_path, cache, capsys):
    grid.run_grid("table1", "smoke", store=tmp_path, progress=True, cache_dir=cache, **FAKE)
    err = capsys.readouterr().err
    assert err.count("done   ") == 8  # 2 datasets x 2 kinds of run x 2 seeds
    assert "Cut compared with the paper" in err
    assert "8/8" in err  # the overall bar reached the total


def test_plan_entries_list_the_runs_without_running_them(tmp_path, cache):
    entries = grid.plan_entries("table1", "smoke", tmp_path / "store", cache)
    assert not (tmp_path / "store").exists()  # the store is only read
    assert len(entries) == 8 and not any(e["in_store"] for e in entries)
    for e in entries:
        assert {"preset", "dataset", "split", "seed", "epochs", "val_fraction", "policies", "key"} <= set(e)
        assert (e["val_fraction"] == 0) == ("test-max" in e["policies"])
        assert e["n_train"] + e["n_val"] == len(experiments.TINY_SPLITS[e["dataset"]][0])
    grid.run_grid("table1", "smoke", store=tmp_path / "store", progress=False, cache_dir=cache, **FAKE)
    # the fake trainer's keys are not the training's content addresses: look them up through the real keys
    assert {e["key"] for e in entries} == {
        grid.train_lookup(p.spec(), str(tmp_path))[0] for p in experiments.plan("table1", "smoke", cache_dir=cache)}


def test_grid_restricted_to_one_dataset(tmp_path, cache):
    """A chapter rerun with one dataset trains and shows only that dataset."""
    out = grid.run_grid("table1", "smoke", store=tmp_path, progress=False, cache_dir=cache, datasets=["tvsum"], **FAKE)
    assert out["runs"] == 4 and set(out["data"]) == {"tvsum"}  # 2 kinds of run x 2 seeds
    records = grid.records_for("table1", "smoke", tmp_path, cache, lookup_fn=fake_lookup, datasets=["tvsum"])
    assert {r["dataset"] for r in records} == {"tvsum"} and len(records) == 4
    assert "summe" not in experiments.describe("table1", "smoke", ["tvsum"]).lower()
    with pytest.raises(CstaInputError, match="unknown dataset 'youtube'"):
        experiments.plan("table1", "smoke", cache_dir=cache, datasets=["youtube"])


def test_paper_plan_of_table1_is_the_official_protocol(cache):
    data = {d: experiments.DataSource(d, cache / f"{d}.h5", None) for d in ("summe", "tvsum")}
    entries = grid.plan_entries("table1", "paper", with_keys=False, data=data)
    assert len(entries) == 100 and {e["epochs"] for e in entries} == {100}
    official = [e for e in entries if "test-max" in e["policies"]]
    assert len(official) == 50 and {e["val_fraction"] for e in official} == {0.0}
    assert {tuple(e["policies"]) for e in entries if e not in official} == {("val",)}


# ------------------------------------------------------------------------------------------------------------
# bad input


def test_bad_input(tmp_path, cache):
    with pytest.raises(CstaInputError, match="unknown experiment 'table9'"):
        grid.run_grid("table9", "smoke", store=tmp_path, **FAKE)
    with pytest.raises(CstaInputError, match="unknown profile 'huge'"):
        grid.run_grid("table1", "huge", store=tmp_path, **FAKE)
    with pytest.raises(CstaInputError, match="unknown engine"):
        grid.run_grid("table1", "smoke", engine="slurm", store=tmp_path, **FAKE)
    with pytest.raises(CstaInputError, match="jobs"):
        grid.run_grid("table1", "smoke", jobs=0, store=tmp_path, **FAKE)
    for bad in (-1, float("nan"), float("inf"), -float("inf")):
        with pytest.raises(CstaInputError, match="gpus-per-run must be a finite number >= 0"):
            grid.run_grid("table1", "smoke", gpus_per_run=bad, store=tmp_path, **FAKE)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(CstaInputError, match="not a directory"):
        grid.run_grid("table1", "smoke", store=a_file, **FAKE)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_store_not_writable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(CstaInputError, match="not writable|not usable"):
            grid.run_grid("table1", "smoke", store=locked / "store", **FAKE)
    finally:
        locked.chmod(0o700)


def test_store_under_a_read_only_path_fails_clearly(tmp_path):
    with pytest.raises(CstaInputError, match="store"):
        grid.run_grid("table1", "smoke", store="/proc/csta-store", **FAKE)


def test_unreachable_address_fails_within_seconds(tmp_path):
    start = time.monotonic()
    with pytest.raises(CstaInputError, match="cannot reach the Ray cluster"):
        grid.run_grid("table1", "smoke", engine="ray", address="127.0.0.1:9", store=tmp_path, progress=False, **FAKE)
    with pytest.raises(CstaInputError, match="cannot reach the Ray cluster"):
        grid.check_reachable("192.0.2.1:6379", timeout=1.0)  # TEST-NET address: nothing answers
    assert time.monotonic() - start < 15


def test_parse_address():
    assert grid.parse_address("10.0.0.5:6380") == ("10.0.0.5", 6380)
    assert grid.parse_address("ray://head") == ("head", 10001)
    assert grid.parse_address("head") == ("head", 6379)
    assert grid.parse_address("auto") is None
    with pytest.raises(CstaInputError):
        grid.parse_address("head:port")


# ------------------------------------------------------------------------------------------------------------
# what a killed driver leaves, read-only stores


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_markers_of_killed_drivers_are_removed_by_the_next_grid(tmp_path, cache):
    """A SIGKILLed Ray driver leaves its .grid-*.marker: the next grid removes it, and keeps a live driver's."""
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    host = owner_tag().split(".")[0]  # this host's tag
    dead = store_dir / f"{grid.MARKER_PREFIX}{host}.{_dead_pid()}.0123456789ab{grid.MARKER_SUFFIX}"
    live = store_dir / grid.marker_name()  # this process: alive
    legacy_old = store_dir / ".grid-0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f.marker"  # today's names carry no owner
    legacy_new = store_dir / ".grid-1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e.marker"
    for marker in (dead, live, legacy_old, legacy_new):
        marker.write_text("csta grid\n")
    two_days_ago = time.time() - 2 * 86400
    os.utime(legacy_old, (two_days_ago, two_days_ago))
    grid.run_grid("deviations", "smoke", store=store_dir, progress=False, cache_dir=cache, **FAKE)
    assert sorted(p.name for p in store_dir.glob(".grid-*.marker")) == sorted([live.name, legacy_new.name])


def _deny_writes_under(monkeypatch, folder: Path) -> None:
    """Make ``folder`` read-only for this process: modes for a normal user, and os.access for root (who
    ignores modes)."""
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o555)
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        inside = Path(os.path.abspath(path)).is_relative_to(folder.resolve())
        return False if inside and mode & os.W_OK else real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def test_complete_grid_on_a_read_only_store_succeeds(tmp_path, cache, monkeypatch):
    """Nothing to compute: the store is only read. Something to compute: one line saying so (exit 2)."""
    store_dir = tmp_path / "store"
    first = grid.run_grid("deviations", "smoke", store=store_dir, progress=False, cache_dir=cache, **FAKE)
    assert first["computed"] == 3
    _deny_writes_under(monkeypatch, store_dir)
    try:
        again = grid.run_grid("deviations", "smoke", store=store_dir, progress=False, cache_dir=cache, **FAKE)
        assert (again["computed"], again["reused"], again["failed"]) == (0, 3, 0)
        with pytest.raises(CstaInputError, match=r"not writable and 6 run\(s\) of the grid are not in it yet"):
            grid.run_grid("table2", "smoke", store=store_dir, progress=False, cache_dir=cache, **FAKE)
    finally:
        for path in [store_dir, *store_dir.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)


# ------------------------------------------------------------------------------------------------------------
# GPUs: packing several runs on one (no GPU here: the device count is stubbed, the runs never touch CUDA)


def test_local_gpu_slots():
    assert grid.local_gpu_slots(4, 0.25, 1) == [0, 0, 0, 0]
    assert grid.local_gpu_slots(4, 0.5, 2) == [0, 0, 1, 1]
    assert grid.local_gpu_slots(3, 1, 4) == [0, 1, 2]
    assert grid.local_gpu_slots(3, 0.3, 1) == [0, 0, 0]  # 1/0.3: three runs fit
    with pytest.raises(CstaInputError, match=r"--jobs 3 with --gpus-per-run 0.5 \(2 run\(s\) per GPU\) needs 2 GPUs; "
                                             "this machine has 1"):
        grid.local_gpu_slots(3, 0.5, 1)
    with pytest.raises(CstaInputError, match="a run trains on one GPU"):
        grid.local_gpu_slots(1, 2, 4)
    with pytest.raises(CstaInputError, match="CUDA is not available"):
        grid.local_gpu_slots(1, 0.5, 0)


def test_local_engine_packs_two_runs_on_one_gpu(tmp_path, cache, monkeypatch):
    """--jobs 2 --gpus-per-run 0.5 on a one-GPU machine: two workers see GPU 0 and run at the same time."""
    monkeypatch.setattr(grid, "local_gpu_count", lambda: 1)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    (tmp_path / ".barrier").write_text("2")
    out = grid.run_grid("deviations", "smoke", jobs=2, gpus_per_run=0.5, cpus_per_run=1, store=tmp_path,
                        progress=False, cache_dir=cache, **FAKE)
    assert (out["computed"], out["failed"]) == (3, 0), out["failed_runs"]
    records = [store.read_record(p) for p in record_files(tmp_path)]
    assert {r["device"] for r in records} == {"cuda"} and {r["visible_gpus"] for r in records} == {"0"}
    assert len({r["pid"] for r in records}) == 2
    with pytest.raises(CstaInputError, match="needs 2 GPUs"):
        grid.run_grid("deviations", "smoke", jobs=3, gpus_per_run=0.5, store=tmp_path, cache_dir=cache, **FAKE)


def test_local_engine_gives_each_worker_its_own_gpu(tmp_path, cache, monkeypatch):
    """Two GPUs given as CUDA_VISIBLE_DEVICES=3,5 and --gpus-per-run 1: one worker on each, by name."""
    monkeypatch.setattr(grid, "local_gpu_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    (tmp_path / ".barrier").write_text("2")
    out = grid.run_grid("deviations", "smoke", jobs=2, gpus_per_run=1, cpus_per_run=1, store=tmp_path,
                        progress=False, cache_dir=cache, **FAKE)
    assert (out["computed"], out["failed"]) == (3, 0), out["failed_runs"]
    by_pid = {}
    for record in map(store.read_record, record_files(tmp_path)):
        by_pid.setdefault(record["pid"], set()).add(record["visible_gpus"])
    assert sorted(by_pid.values()) == [{"3"}, {"5"}]


# ------------------------------------------------------------------------------------------------------------
# Ray: node sizes and what a node must manage (the real multi-node cluster is tests/runs/test_ray_cluster.py)


def _node(node_id: str, cpus: float, gpus: float = 0, alive: bool = True) -> dict:
    resources = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    return {"NodeID": node_id * 8, "Alive": alive, "NodeManagerAddress": "10.0.0.1", "Resources": resources}


def test_fitting_nodes_checks_each_node_not_the_total():
    nodes = [_node("a", 1), _node("b", 1), _node("c", 8, alive=False)]
    refused = (r"can hold one run \(2 CPU\(s\) per run.*2 alive node\(s\) have 1 CPU, 1 CPU\. Start nodes with "
               r"at least 2 CPU\(s\) \(`ray start --num-cpus 2`\)")
    with pytest.raises(CstaInputError, match=refused):
        grid.fitting_nodes(nodes, 2, 0)
    assert [n["NodeID"] for n in grid.fitting_nodes(nodes, 1, 0)] == ["a" * 8, "b" * 8]
    mixed = [_node("a", 4), _node("b", 1, gpus=1)]  # CPUs on one node, the GPU on the other: no run fits
    with pytest.raises(CstaInputError, match=r"2 CPU\(s\) and 0.5 GPU.*4 CPU, 1 CPU \+ 1 GPU.*--num-gpus 1"):
        grid.fitting_nodes(mixed, 2, 0.5)
    assert grid.fitting_nodes([*mixed, _node("c", 2, gpus=1)], 2, 0.25)[0]["NodeID"] == "c" * 8


def test_node_problems_are_one_line_with_what_to_do():
    from csta_lib.errors import MissingDataError

    text = grid._node_problem(MissingDataError("data file 'tvsum.annotations' (TVSum) was not found.\n  looked ..."))
    assert text.startswith("MissingDataError: data file 'tvsum.annotations' (TVSum) was not found; put the data")
    text = grid._node_problem(RuntimeError("System error: No module named 'csta_lib'\ntraceback: ..."))
    assert text.startswith("No module named 'csta_lib'; install this project with its [ray] extra")
    assert "\n" not in text


def test_ray_task_refuses_a_run_whose_key_differs_on_its_node(tmp_path, cache):
    """A node with other code, data or settings computes another key: its record would not be the driver's run."""
    spec = experiments.plan("deviations", "smoke", cache_dir=cache)[0].spec()
    with pytest.raises(CstaInputError, match="computes the content key .* the driver not-this-key"):
        grid.ray_task_body(fake_run, fake_lookup, spec, "not-this-key", str(tmp_path), ".no-marker", 1, None, None)
    assert not record_files(tmp_path)


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster for the module, limited to this machine's cores (a few seconds to start)."""
    ray = pytest.importorskip("ray")
    # Ray workers (started by ray.init, inheriting this environment) must import this module (and support) by name.
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), str(TESTS_DIR.parent), before]))
    try:
        # one GPU declared (none is here): tasks asking for a fraction of it are scheduled, the runs never use it
        ray.init(num_cpus=grid.machine_cores(), num_gpus=1, include_dashboard=False, logging_level="warning")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Ray cannot start on this machine: {exc}")
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before
    yield ray
    ray.shutdown()


def test_ray_packs_two_runs_on_one_gpu(tmp_path, cache, ray_cluster):
    """--gpus-per-run 0.5: two tasks share the one GPU, at the same time; the runs' device is cuda."""
    (tmp_path / ".barrier").write_text("2")
    out = grid.run_grid("deviations", "smoke", engine="ray", gpus_per_run=0.5, cpus_per_run=1, store=tmp_path,
                        progress=False, cache_dir=cache, **FAKE)
    assert (out["computed"], out["failed"]) == (3, 0), out["failed_runs"]
    records = [store.read_record(p) for p in record_files(tmp_path)]
    assert {r["device"] for r in records} == {"cuda"} and {r["visible_gpus"] for r in records} == {"0"}


def test_ray_refuses_at_once_when_no_node_is_big_enough(tmp_path, cache, ray_cluster, monkeypatch):
    """Two 1-CPU nodes (2 CPUs in all) and --cpus-per-run 2: refused at once, not queued forever."""
    monkeypatch.setattr(ray_cluster, "nodes", lambda: [_node("a", 1), _node("b", 1)])
    monkeypatch.setattr(ray_cluster, "cluster_resources", lambda: {"CPU": 2.0})
    start = time.monotonic()
    with pytest.raises(CstaInputError, match=r"at least 2 CPU\(s\) \(`ray start --num-cpus 2`\)"):
        grid.run_grid("deviations", "smoke", engine="ray", cpus_per_run=2, store=tmp_path, progress=False,
                      cache_dir=cache, **FAKE)
    assert time.monotonic() - start < 60 and not record_files(tmp_path)


def test_ray_grid_with_a_dying_worker(tmp_path, cache, ray_cluster):
    specs = [p.spec() for p in experiments.plan("deviations", "smoke", cache_dir=cache)]
    victim = fake_key(specs[0])
    (tmp_path / f".kill-{victim}").write_text("")
    out = grid.run_grid("deviations", "smoke", engine="ray", store=tmp_path, progress=False, cache_dir=cache,
                        cpus_per_run=1, **FAKE)
    assert (out["computed"], out["failed"]) == (2, 1)
    assert out["failed_runs"][0]["key"] == victim
    records = [store.read_record(p) for p in record_files(tmp_path)]
    assert all(r["data_exists"] and r["threads"] == 1 for r in records)
    (tmp_path / f".kill-{victim}").unlink()
    again = grid.run_grid("deviations", "smoke", engine="ray", store=tmp_path, progress=False, cache_dir=cache,
                          cpus_per_run=1, **FAKE)
    assert (again["computed"], again["reused"], again["failed"]) == (1, 2, 0)
    assert not list(tmp_path.glob(".grid-*.marker"))


def test_ray_task_sends_files_back_when_the_store_is_not_shared(tmp_path, cache, ray_cluster):
    """A task whose node cannot see the store trains into scratch and the driver writes the files."""
    data = experiments.prepare_data("table1", "smoke", cache)
    spec = [p.spec() for p in experiments.plan("table1", "smoke", data)][0]
    shipped = grid.ship_file(data["summe"].features)
    moved = grid.ShippedFile(str(tmp_path / "elsewhere" / Path(shipped.path).name), shipped.sha256, shipped.size,
                             shipped.ref)
    result = grid.ray_task_body(fake_run, fake_lookup, spec, fake_key(spec), str(tmp_path / "store"), ".no-marker", 1,
                                moved, None)
    assert result["record"]["data_exists"]  # the bytes came from the object store into a node-local file
    assert list(result["files"])[-1].endswith(".json")  # record last
    grid.receive_files(tmp_path / "store", result["files"])
    assert fake_lookup(spec, str(tmp_path / "store"))[1]["key"] == result["record"]["key"]


# ------------------------------------------------------------------------------------------------------------
# real training: local and Ray give identical records


def test_local_and_ray_smoke_grids_give_identical_records(tmp_path, cache, ray_cluster):
    local = grid.run_grid("table1", "smoke", store=tmp_path / "local", progress=False, cache_dir=cache)
    assert (local["computed"], local["failed"]) == (local["runs"], 0), local["failed_runs"]
    on_ray = grid.run_grid("table1", "smoke", engine="ray", store=tmp_path / "ray", progress=False, cache_dir=cache)
    assert (on_ray["computed"], on_ray["failed"]) == (on_ray["runs"], 0), on_ray["failed_runs"]
    assert on_ray["keys"] == local["keys"]
    a = {r["key"]: r for r in map(store.read_record, record_files(tmp_path / "local"))}
    b = {r["key"]: r for r in map(store.read_record, record_files(tmp_path / "ray"))}
    assert sorted(a) == sorted(b)
    assert {key: record_differences(a[key], b[key]) for key in a} == {key: [] for key in a}
    rerun = grid.run_grid("table1", "smoke", engine="ray", store=tmp_path / "ray", progress=False, cache_dir=cache)
    assert (rerun["computed"], rerun["reused"]) == (0, rerun["runs"])


def test_csta_num_threads_and_cpus_per_run_must_agree(tmp_path, cache, monkeypatch):
    """Training obeys CSTA_NUM_THREADS: the grid takes it as the runs' thread count, and refuses a different flag."""
    monkeypatch.setenv("CSTA_NUM_THREADS", "1")
    out = grid.run_grid("deviations", "smoke", store=tmp_path, progress=False, cache_dir=cache, **FAKE)
    assert out["threads_per_run"] == 1
    assert grid.threads_per_run("local", 1, False, 1) == 1
    with pytest.raises(CstaInputError, match="--cpus-per-run 2 but CSTA_NUM_THREADS=1"):
        grid.run_grid("deviations", "smoke", store=tmp_path, progress=False, cache_dir=cache, cpus_per_run=2, **FAKE)
    monkeypatch.setenv("CSTA_NUM_THREADS", "many")
    with pytest.raises(CstaInputError, match="CSTA_NUM_THREADS must be a positive integer"):
        grid.threads_per_run("local", 1, False)
