"""A real Ray cluster on loopback, under faults (issue 21), and the nodes that cannot run a grid.

Two ``ray start`` processes (a head and a second node, 1 CPU each, token authentication with a token of the
test's own) form the cluster; ``csta grid --engine ray --address`` runs the smoke grid of Table 1 on it:

1. a driver whose runs wait at a gate (:func:`gated_run`: the real training, held mid-run, after its epoch is
   trained and snapshotted, before its record) so that the test acts at known moments: it SIGKILLs the worker
   process of one run, lets another finish, and SIGKILLs the driver while two more runs are held;
2. ``csta grid`` again computes exactly the missing runs (the three interrupted ones resume from their
   snapshots), cleans the killed driver's marker, and its store equals a local grid's with the same
   ``--cpus-per-run`` (same keys, same per-epoch metrics, same records but timings);
3. ``--cpus-per-run 2`` on these 1-CPU nodes is refused at once, naming the node size needed;
4. two more nodes join, one without the data mirror and one whose Python lacks csta_lib: the grid refuses with
   one line naming both.

Nothing is left running: every node is its own process session, killed (and its leftovers by session id) in a
``finally``. ``ray stop`` is not used: it stops every Ray process on the machine, other people's included.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import record_differences

from csta_lib.runs import grid, store, training

pytestmark = pytest.mark.slow

TESTS_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = TESTS_DIR.parents[1]
BIN = Path(sys.executable).parent
GATE_ENV = "CSTA_TEST_GRID_GATE"
WAIT_S = 300.0  # for any one step on a busy 2-core machine (a quiet one needs a tenth of it)


# ------------------------------------------------------------------------------------------------------------
# the gated trainer (Ray workers import this module by name: the good nodes have this folder on PYTHONPATH)


def gated_run(spec: Any, store_dir: str) -> Any:
    """The real training run, held at a gate mid-run: after its last epoch is trained and its checkpoint and
    resume snapshot are written, before its record. It writes ``started-<key>`` (its pid) into the folder
    ``$CSTA_TEST_GRID_GATE`` and goes on when ``go-<key>`` appears there."""
    gate = Path(os.environ[GATE_ENV])
    key, _ = grid.train_lookup(spec, store_dir)

    def hold(epoch: int, metrics: Any) -> None:
        if epoch < spec.epochs:
            return
        (gate / f".started-{key}").write_text(str(os.getpid()))
        (gate / f".started-{key}").rename(gate / f"started-{key}")
        deadline = time.monotonic() + WAIT_S
        while not (gate / f"go-{key}").exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"nobody opened the gate of run {key}")
            time.sleep(0.1)

    return training.run(spec, store_dir, progress=False, on_epoch=hold)


GATED_DRIVER = """
import json, sys
from csta_lib.runs import grid
import test_ray_cluster
summary = grid.run_grid("table1", "smoke", engine="ray", address=sys.argv[1], store=sys.argv[2], cpus_per_run=1,
                        run_fn=test_ray_cluster.gated_run)
print(json.dumps(summary))
"""


# ------------------------------------------------------------------------------------------------------------
# the cluster


_TAKEN: set[int] = set()


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports, none handed out before by this module (all bound at once, then released: a
    port bound and closed one at a time can come back, and a node whose two servers get one port dies)."""
    sockets = []
    try:
        while len(sockets) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            if s.getsockname()[1] in _TAKEN:
                s.close()
                continue
            sockets.append(s)
        ports = [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
    _TAKEN.update(ports)
    return ports


def wait_for(what: str, probe: Callable[[], Any], timeout: float = WAIT_S, every: float = 0.2) -> Any:
    """``probe()``'s first true value, polled until ``timeout``; fails the test naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class LoopbackCluster:
    """Ray nodes on this machine, each a ``ray start --block`` process in a session of its own."""

    def __init__(self, root: Path, token: str):
        self.root, self.token = root, token
        self.port, self.dashboard_port = free_ports(2)
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen] = []

    def env(self, **extra: str) -> dict[str, str]:
        """This process's environment for Ray and csta: the cluster's token, nothing of another cluster, no thread
        or data-mirror settings (--cpus-per-run and each node's own data decide); tests/ and tests/runs on the path."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("RAY_") and k not in ("CSTA_DATA_MIRROR", "CSTA_NUM_THREADS")}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token, RAY_USAGE_STATS_ENABLED="0",
                   PYTHONPATH=os.pathsep.join([str(TESTS_DIR), str(TESTS_DIR.parent)]))
        env.update(extra)
        return env

    def _start(self, name: str, args: list[str], python: Path, env: dict[str, str]) -> subprocess.Popen:
        ports = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port"]
        chosen = [x for flag, port in zip(ports, free_ports(len(ports)), strict=True) for x in (flag, str(port))]
        command = [str(python), "-m", "ray.scripts.scripts", "start", "--block", "--node-ip-address", "127.0.0.1",
                   "--num-cpus", "1", "--object-store-memory", str(80 * 2**20), "--disable-usage-stats", *chosen, *args]
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(command, env=env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        self.nodes.append(proc)
        return proc

    def start_head(self, **env: str) -> None:
        head = self._start("head", ["--head", "--port", str(self.port), "--include-dashboard", "false",
                                    "--dashboard-port", str(self.dashboard_port), "--temp-dir", str(self.root / "ray")],
                           Path(sys.executable), self.env(**env))

        def listening() -> bool:
            assert head.poll() is None, (self.root / "head.log").read_text()[-2000:]
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for("the head node", listening)

    def add_node(self, name: str, python: Path | None = None, **env: str) -> None:
        self._start(name, ["--address", self.address], python or Path(sys.executable), self.env(**env))

    def wait_for_nodes(self, n: int) -> None:
        """Until the cluster has ``n`` alive nodes (asked by a short-lived driver of its own); fails at once, with
        the nodes' logs, when a node process dies."""
        script = ("import ray, sys, time\nray.init(address=sys.argv[1], logging_level='error')\n"
                  "while sum(x['Alive'] for x in ray.nodes()) < int(sys.argv[2]): time.sleep(0.5)\n")
        err = self.root / f"wait-{n}.err"
        with open(err, "wb") as sink:
            waiter = subprocess.Popen([sys.executable, "-c", script, self.address, str(n)], env=self.env(),
                                      cwd=self.root, stdout=subprocess.DEVNULL, stderr=sink)
        try:
            dead = wait_for(f"{n} alive nodes", lambda: waiter.poll() is not None
                            or [p for p in self.nodes if p.poll() is not None])
        finally:
            if waiter.poll() is None:
                waiter.kill()
            waiter.wait()
        if waiter.returncode != 0 or dead is not True:
            logs = "".join(f"\n--- {log.name}:\n{log.read_text(errors='replace')[-1500:]}"
                           for log in sorted(self.root.glob("*.log")))
            pytest.fail(f"the cluster did not come up with {n} nodes:\n{err.read_text()[-3000:]}{logs}")

    def stop(self) -> None:
        """Kill every node's session (its raylet, GCS, agents and workers), then anything left in it."""
        for proc in self.nodes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.nodes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        sessions = {proc.pid for proc in self.nodes}
        for pid in _pids_in_sessions(sessions):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.nodes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _pids_in_sessions(sessions: set[int]) -> list[int]:
    """Live (not zombie) processes whose session is one of ``sessions``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) in sessions:  # fields: state, ppid, pgrp, session, ...
            pids.append(int(entry.name))
    return pids


# ------------------------------------------------------------------------------------------------------------
# nodes that cannot run a grid


def project_without_data(folder: Path) -> Path:
    """A copy of csta_lib with no data/ beside it and no ../shared/data above it: a node without the mirror."""
    shutil.copytree(PROJECT_ROOT / "csta_lib", folder / "project" / "csta_lib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return folder / "project"


def python_without_csta_lib(folder: Path) -> Path:
    """A Python that has Ray, torch and everything else of this one's packages, but not csta_lib: a virtual
    environment whose .pth file names this environment's site-packages (a .pth there is not read in turn, so
    csta_lib's editable-install hook is not)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    site = next(folder.glob("lib/python*/site-packages"))
    (site / "csta-test-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return folder / "bin" / "python"


# ------------------------------------------------------------------------------------------------------------
# the test


def stored(store_dir: Path) -> dict[str, dict]:
    return {r["key"]: r for r in map(store.read_record, store.iter_record_files(store_dir))} \
        if store_dir.is_dir() else {}


def started(gate: Path) -> dict[str, int]:
    """Runs waiting at the gate (or let through): key -> pid of the worker process running it."""
    return {p.name[len("started-"):]: int(p.read_text()) for p in gate.glob("started-*")}


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_two_node_cluster_under_faults():
    pytest.importorskip("ray")
    root = Path(tempfile.mkdtemp(prefix="csta-ray-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    cluster = LoopbackCluster(root, token=os.urandom(16).hex())
    store_dir, local_dir = root / "store", root / "local-store"
    gate = root / "gate"
    gate.mkdir()
    driver = None

    def csta(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "csta"), *args], env=cluster.env(), cwd=root, capture_output=True,
                              text=True, timeout=2 * WAIT_S)

    smoke = ["grid", "--experiment", "table1", "--profile", "smoke", "--no-progress"]
    grid_args = [*smoke, "--cpus-per-run", "1"]
    try:
        cluster.start_head(**{GATE_ENV: str(gate)})
        cluster.add_node("second", **{GATE_ENV: str(gate)})
        cluster.wait_for_nodes(2)
        # (1) a driver whose runs wait at the gate; kill one run's worker, let one finish, kill the driver
        err_file = root / "driver.err"
        with open(err_file, "wb") as err:
            driver = subprocess.Popen([sys.executable, "-c", GATED_DRIVER, cluster.address, str(store_dir)],
                                      env=cluster.env(), cwd=root, stdout=subprocess.DEVNULL, stderr=err,
                                      start_new_session=True)
        first = wait_for("two runs in the cluster's two slots", lambda: len(started(gate)) >= 2 and started(gate))
        victim, survivor = sorted(first)[:2]
        os.kill(first[victim], signal.SIGKILL)  # a worker process dies mid-run (trained, its record not written)
        (gate / f"go-{survivor}").touch()
        wait_for("the driver to report the killed run",
                 lambda: f"[{victim}]" in err_file.read_text() and "FAILED" in err_file.read_text())
        wait_for("the released run's record", lambda: survivor in stored(store_dir))
        assert driver.poll() is None, err_file.read_text()[-3000:]
        wait_for("two more runs in the slots", lambda: len(started(gate)) >= 4)
        os.killpg(driver.pid, signal.SIGKILL)  # the driver dies mid-grid
        driver.wait(timeout=30)
        held = [pid for key, pid in started(gate).items() if key not in (victim, survivor)]
        wait_for("Ray to end the dead driver's runs", lambda: not any(map(pid_alive, held)), timeout=120)
        assert list(stored(store_dir)) == [survivor]
        assert len(list(store_dir.glob(".grid-*.marker"))) == 1  # left by the killed driver

        # (2) the real command computes exactly what is missing; its store equals a local grid's
        rerun = csta(*grid_args, "--engine", "ray", "--address", cluster.address, "--store", str(store_dir))
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        summary = json.loads(rerun.stdout.strip().splitlines()[-1])
        assert summary["runs"] >= 4
        runs = summary["runs"]
        assert (summary["computed"], summary["reused"], summary["failed"]) == (runs - 1, 1, 0)
        assert not list(store_dir.glob(".grid-*.marker"))  # the killed driver's marker is gone too
        local = csta(*grid_args, "--engine", "local", "--store", str(local_dir))
        assert local.returncode == 0, local.stderr[-3000:]
        local_summary = json.loads(local.stdout.strip().splitlines()[-1])
        assert local_summary["keys"] == summary["keys"] and local_summary["computed"] == runs
        on_ray, here = stored(store_dir), stored(local_dir)
        assert sorted(on_ray) == sorted(here) == sorted(set(summary["keys"]))
        interrupted = {victim, *[key for key in started(gate) if key not in (victim, survivor)]}
        assert {k for k, r in on_ray.items() if r["resumed_from_epoch"]} == interrupted  # resumed, not redone
        for key in here:
            assert [e["test_tau"] for e in on_ray[key]["epochs"]] == [e["test_tau"] for e in here[key]["epochs"]]
            assert not record_differences({**on_ray[key], "resumed_from_epoch": None}, here[key]), key

        # (3) no node is big enough for --cpus-per-run 2: refused at once, with the node size needed
        start = time.monotonic()
        big = csta(*smoke, "--cpus-per-run", "2", "--engine", "ray", "--address", cluster.address,
                   "--store", str(root / "store-2"))
        assert big.returncode == 2, big.stderr[-3000:]
        assert big.stderr.strip().splitlines()[-1].startswith("csta grid: error: no node of the Ray cluster")
        assert "1 CPU, 1 CPU" in big.stderr and "ray start --num-cpus 2" in big.stderr
        assert time.monotonic() - start < 120 and not stored(root / "store-2")

        # (4) a node without the data and a node whose Python lacks csta_lib: one line names both
        empty = root / "empty-mirror"
        empty.mkdir()
        without_csta_lib = python_without_csta_lib(root / "venv-without-csta")
        cluster.add_node("no-data", PYTHONPATH=str(project_without_data(root / "no-data")),
                         CSTA_DATA_MIRROR=str(empty))
        cluster.wait_for_nodes(3)  # one at a time: nodes starting together on one machine race for socket names
        cluster.add_node("no-csta-lib", python=without_csta_lib, PYTHONPATH="")
        cluster.wait_for_nodes(4)
        refused = csta(*grid_args, "--engine", "ray", "--address", cluster.address, "--store", str(root / "store-3"))
        assert refused.returncode == 2, refused.stderr[-3000:]
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("csta grid: error: 2 of 4 Ray node(s) cannot run this grid"), \
            refused.stderr[-3000:]
        assert "No module named 'csta_lib'; install this project with its [ray] extra" in lines[0]
        assert "data file 'tvsum.annotations'" in lines[0] and "put the data files on every node" in lines[0]
        assert not stored(root / "store-3")
    finally:
        if driver is not None and driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=30)
        cluster.stop()
        leftovers = _pids_in_sessions({proc.pid for proc in cluster.nodes})
        shutil.rmtree(root, ignore_errors=True)
    assert not leftovers, f"processes of the test cluster still running: {leftovers}"
