"""Running an experiment grid: every run of (experiment, profile), skipping the runs already in the store.

Two engines execute the missing runs:

``local``
    ``jobs=1`` trains in this process; ``jobs=N`` runs N spawned worker processes, each training one run at a
    time; a worker that dies fails only the run it was training and is replaced. With ``gpus_per_run = 1/k``,
    k workers share each GPU (each worker sees only its GPU through ``CUDA_VISIBLE_DEVICES``).
``ray``
    one Ray task per run (``num_cpus=cpus_per_run``, ``num_gpus=gpus_per_run``; 0.25 packs four runs on a GPU).
    ``address`` (or ``RAY_ADDRESS``) joins an existing cluster; otherwise a local cluster limited to this
    machine's cores is started and shut down afterwards. Before submitting, the grid refuses at once when no
    alive node can hold one run (:func:`fitting_nodes`) and, on a joined cluster, when a node cannot prepare one
    run of each dataset (:func:`check_nodes`: csta_lib or its extras missing there, data missing, another
    content key). The feature and split files go into the object store once per grid; a task reads the
    driver's path when its node can see it and otherwise writes the bytes once to a node-local cache. When the
    task's node sees the store directory (a marker file the driver writes, same machine or a shared file
    system) the task writes its record there itself; otherwise it trains into a scratch store and sends the
    record and its checkpoints back, and the driver writes them (atomically, record last). A marker left by a
    killed driver is removed by the next grid (:func:`remove_stale_markers`).

Records are the training records of :func:`csta_lib.runs.training.run`, content-addressed, written atomically: a killed
run leaves no record (only its resume checkpoint), so the next grid call recomputes exactly the missing runs; a
grid with nothing to compute only reads the store. Every run gets the same number of torch threads
(``cpus_per_run``) in every engine (the content keys are computed with it too), so on CPU the records of
``local`` and ``ray`` with the same ``cpus_per_run`` are identical apart from timings and host names. What a
grid would run and cost: :func:`plan_entries`, :func:`plan_summary` (``csta grid --plan``; :mod:`runs.cost`).

The notebooks call::

    summary = grid.run_grid("table1", profile, store=store_dir)
    records = grid.records_for("table1", profile, store_dir)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import math
import multiprocessing as mp
import os
import re
import socket
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from csta_lib.data.eccv16 import load_eccv16
from csta_lib.errors import CstaInputError, MissingDataError
from csta_lib.runs import cost, experiments, training
from csta_lib.runs import store as results_store
from csta_lib.runs.cost import machine_cores
from csta_lib.runs.io import ensure_writable_dir, owner_gone, owner_tag, write_bytes_atomic
from csta_lib.runs.locator import sha256_file

# Ray is the optional [ray] extra: only the ray engine's functions import it (``import ray`` in each).

ENGINES = ("local", "ray")
CONNECT_TIMEOUT_S = 5.0
DEFAULT_RAY_PORT = 6379
DEFAULT_RAY_CLIENT_PORT = 10001

#: ``run(spec, store_dir) -> record``, ``lookup(spec, store_dir) -> (key, record or None)`` and ``check(spec) -> key``
#: (everything a run reads found and loaded, nothing trained): what a grid needs from training. Injectable (tests
#: use a fake); must be importable module-level functions for worker processes.
RunFn = Callable[[Any, str], Mapping[str, Any]]
LookupFn = Callable[[Any, str], tuple[str, Mapping[str, Any] | None]]
CheckFn = Callable[[Any], str]


# -------------------------------------------------------------------------------------------------------------
# the default trainer: csta_lib.runs.training


def train_run(spec: Any, store_dir: str) -> Mapping[str, Any]:
    """Train one run into the store (:func:`csta_lib.runs.training.run`, without its per-epoch bar)."""
    return training.run(spec, store_dir, progress=False)


def train_lookup(spec: Any, store_dir: str) -> tuple[str, Mapping[str, Any] | None]:
    """The content address of ``spec`` and its stored record (None when not computed yet)."""
    prep = training.prepare(spec)
    return prep.key, results_store.find_record(store_dir, prep.data.dataset, prep.spec.variant, prep.key)


def train_check(spec: Any) -> str:
    """The content address of ``spec`` once everything its training reads is found and loaded (data, splits,
    weights and the annotations its evaluation needs): what a Ray node must manage before it gets runs."""
    prep = training.prepare(spec)
    training.make_scorer(prep)
    return prep.key


# -------------------------------------------------------------------------------------------------------------
# small pieces


def open_store(store: str | os.PathLike[str] | None) -> Path:
    """The store directory (None: the project's ``results/store``), created if it does not exist yet;
    :class:`CstaInputError` if it is not a directory or cannot be created. An existing store may be read-only:
    a grid with nothing left to compute only reads it (:func:`check_store_writable` when there is)."""
    path = Path(store) if store not in (None, "") else results_store.DEFAULT_STORE_DIR
    if path.exists() and not path.is_dir():
        raise CstaInputError(f"results store {path} exists and is not a directory")
    if not path.is_dir():
        check_store_writable(path)
    return path


def check_store_writable(path: Path, missing: int | None = None) -> None:
    """Create ``path`` if needed and raise :class:`CstaInputError` unless records can be written into it
    (``missing``: how many runs wait to be written, for the message)."""
    why = "" if missing is None else f" and {missing} run(s) of the grid are not in it yet"
    try:
        ensure_writable_dir(path)
    except PermissionError as exc:
        raise CstaInputError(f"results store is not usable: {exc}{why}") from exc
    if not os.access(path, os.W_OK | os.X_OK):  # root ignores modes in ensure_writable_dir's test; be explicit
        raise CstaInputError(f"results store {path} is not writable{why}")


MARKER_PREFIX, MARKER_SUFFIX = ".grid-", ".marker"


def marker_name() -> str:
    """``.grid-<host>.<pid>.<random>.marker``: a Ray driver's marker names the driver (:func:`io.owner_tag`), so
    that a later grid can tell the marker of a killed driver (:func:`remove_stale_markers`)."""
    return f"{MARKER_PREFIX}{owner_tag()}.{uuid.uuid4().hex[:12]}{MARKER_SUFFIX}"


def remove_stale_markers(store_dir: Path) -> list[Path]:
    """Delete the markers of Ray drivers that are gone (a SIGKILLed driver leaves its marker), as the atomic
    writers do for their temporaries (:func:`csta_lib.runs.io.owner_gone`); markers of live drivers stay."""
    removed: list[Path] = []
    now = time.time()
    try:
        markers = list(store_dir.glob(f"{MARKER_PREFIX}*{MARKER_SUFFIX}"))
    except OSError:
        return removed
    for path in markers:
        parts = path.name[len(MARKER_PREFIX):-len(MARKER_SUFFIX)].split(".")
        try:
            age = now - path.lstat().st_mtime
        except OSError:
            continue
        if owner_gone(".".join(parts[:2]) if len(parts) == 3 else "", age):  # older names carry no owner: age
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass  # gone already, or a read-only store: nothing to clean there
    return removed


def check_options(engine: str, jobs: int, gpus_per_run: float, cpus_per_run: int | None) -> None:
    """Raise :class:`CstaInputError` for an unknown engine or impossible resource numbers."""
    if engine not in ENGINES:
        raise CstaInputError(f"unknown engine {engine!r}; use one of: {', '.join(ENGINES)}")
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise CstaInputError(f"jobs must be a positive integer, got {jobs!r}")
    if (not isinstance(gpus_per_run, (int, float)) or isinstance(gpus_per_run, bool)
            or not math.isfinite(gpus_per_run) or gpus_per_run < 0):
        raise CstaInputError(f"--gpus-per-run must be a finite number >= 0 (e.g. 0.25 or 1), got {gpus_per_run!r}")
    if gpus_per_run > 1 and gpus_per_run != int(gpus_per_run):
        raise CstaInputError(f"--gpus-per-run above 1 must be a whole number, got {gpus_per_run}")
    if cpus_per_run is not None and (not isinstance(cpus_per_run, int) or cpus_per_run < 1):
        raise CstaInputError(f"--cpus-per-run must be a positive integer, got {cpus_per_run!r}")


def default_cpus_per_run(engine: str, jobs: int, joins_cluster: bool) -> int:
    """Torch threads (and Ray CPUs) per run: this machine's cores shared by ``jobs`` runs; 1 on a joined cluster.

    Local and a local Ray cluster get the same number, so their CPU records are identical.
    """
    if engine == "ray" and joins_cluster:
        return 1
    return max(1, machine_cores() // jobs)


def threads_per_run(engine: str, jobs: int, joins_cluster: bool, cpus_per_run: int | None = None) -> int:
    """The torch threads (and Ray CPUs) of each run: ``cpus_per_run``; else ``$CSTA_NUM_THREADS``, which training
    obeys in any case (so the grid's keys and its runs agree); else :func:`default_cpus_per_run`. Both given and
    different: :class:`CstaInputError`, since the variable would silently override the flag inside every run."""
    value = training.env_threads()
    if value is None:
        return cpus_per_run or default_cpus_per_run(engine, jobs, joins_cluster)
    if cpus_per_run is not None and cpus_per_run != value:
        raise CstaInputError(f"--cpus-per-run {cpus_per_run} but {training.THREADS_ENV}={value}: every run would "
                             f"train with {value} thread(s); give one of them (or the same number)")
    return value


def run_device(gpus_per_run: float, device: str | None) -> str | None:
    """The training device: explicit, else ``cuda`` when GPUs are requested, else CPU."""
    if device is not None:
        return device
    return "cuda" if gpus_per_run > 0 else "cpu"


def summary_line(record: Mapping[str, Any]) -> str:
    """A one-line result of a run: the test-max and val τ/ρ of its record."""
    parts = []
    for policy in results_store.POLICIES:
        sel = record.get("selected", {}).get(policy)
        if sel:
            parts.append(f"{policy} ep {sel.get('epoch')}: tau {_num(sel.get('test_tau'))} "
                         f"rho {_num(sel.get('test_rho'))}")
    seconds = record.get("wall_time_s")
    head = f"{seconds:.1f}s" if isinstance(seconds, (int, float)) else ""
    return " ".join([head, "; ".join(parts)]).strip()


def _num(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "?"


@dataclass
class Outcome:
    """What came back from one run: its record (when it succeeded) or the error."""

    index: int
    record: Mapping[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class Job:
    """One run to compute: the plan, its training spec and its content address."""

    index: int
    plan: experiments.RunPlan
    spec: Any
    key: str


def _with_threads(threads: int, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with torch limited to ``threads`` intra-op threads (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def execute(run_fn: RunFn, spec: Any, store_dir: str, threads: int) -> dict[str, Any]:
    """Train one run with ``threads`` torch threads; return its record without the in-memory ``_path`` key."""
    record = _with_threads(threads, lambda: run_fn(spec, store_dir))
    return {k: v for k, v in dict(record).items() if k != "_path"}


# -------------------------------------------------------------------------------------------------------------
# local engine


def local_gpu_count() -> int:
    """CUDA devices this process sees (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def local_gpu_slots(jobs: int, gpus_per_run: float, n_gpus: int) -> list[int]:
    """The GPU (index among the visible ones) of each of ``jobs`` local worker slots: ``1 / gpus_per_run`` runs
    share a GPU (``--jobs 4 --gpus-per-run 0.25``: four runs on GPU 0); :class:`CstaInputError` when this
    machine has too few GPUs for that, so that nothing waits or oversubscribes a GPU silently."""
    if gpus_per_run > 1:
        raise CstaInputError(f"--gpus-per-run {gpus_per_run:g} with the local engine: a run trains on one GPU; use 1 "
                             "(one run per GPU) or a fraction (0.25: four runs share a GPU)")
    if n_gpus == 0:
        raise CstaInputError("--gpus-per-run > 0 with the local engine, but CUDA is not available here")
    per_gpu = max(1, int(1 / gpus_per_run + 1e-9))
    needed = math.ceil(jobs / per_gpu)
    if needed > n_gpus:
        raise CstaInputError(f"--jobs {jobs} with --gpus-per-run {gpus_per_run:g} ({per_gpu} run(s) per GPU) needs "
                             f"{needed} GPUs; this machine has {n_gpus}: lower --jobs or --gpus-per-run")
    return [slot // per_gpu for slot in range(jobs)]


def _visible_gpus() -> list[str]:
    """The CUDA device names this process was given (``CUDA_VISIBLE_DEVICES``), else ``0 … n-1``."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given:
        return [g.strip() for g in given.split(",") if g.strip()]
    return [str(i) for i in range(local_gpu_count())]


def _worker_main(conn: Any, run_fn: RunFn, store_dir: str, threads: int, gpu: str | None = None) -> None:
    """Worker process body: run the specs it is sent, one at a time, until it is sent None.

    ``gpu`` (a CUDA device name) becomes the worker's only visible GPU before anything touches CUDA, so the
    runs' ``cuda`` device is that GPU. Each result goes back as ("ok", record) or ("error", text); a worker that
    dies sends nothing, which the driver notices on its process sentinel.
    """
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    while True:
        try:
            spec = conn.recv()
        except EOFError:  # the driver went away
            return
        if spec is None:
            return
        message: tuple[str, Any]
        try:
            message = ("ok", execute(run_fn, spec, store_dir, threads))
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the driver
            message = ("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")
        conn.send(message)


def run_local(jobs_list: Sequence[Job], store_dir: str, *, jobs: int, threads: int, run_fn: RunFn,
              gpus: Sequence[str] | None = None) -> Iterator[Outcome]:
    """Yield the outcome of each job as it finishes: in this process (``jobs=1``) or in spawned workers
    (``gpus``: the CUDA device of each worker slot, None on CPU)."""
    if jobs == 1:
        for job in jobs_list:
            try:
                yield Outcome(job.index, record=execute(run_fn, job.spec, store_dir, threads))
            except Exception as exc:  # noqa: BLE001 - one failed run must not stop the grid
                yield Outcome(job.index, error=f"{type(exc).__name__}: {exc}")
        return
    yield from _run_processes(jobs_list, store_dir, jobs=jobs, threads=threads, run_fn=run_fn, gpus=gpus)


@dataclass
class _Worker:
    """A spawned worker process, its end of the pipe, its slot (which fixes its GPU) and the job it is running
    (None when idle)."""

    process: Any
    conn: Any
    slot: int
    job: Job | None = None


def _run_processes(jobs_list: Sequence[Job], store_dir: str, *, jobs: int, threads: int, run_fn: RunFn,
                   gpus: Sequence[str] | None = None) -> Iterator[Outcome]:
    """At most ``jobs`` spawned workers, each reused for several runs (start-up and imports paid once per
    worker); a worker that dies fails only its current run and is replaced, on the same GPU, if runs are left."""
    ctx = mp.get_context("spawn")
    pending = list(jobs_list)
    workers: list[_Worker] = []

    def start_worker(slot: int) -> _Worker:
        ours, theirs = ctx.Pipe(duplex=True)
        gpu = gpus[slot] if gpus else None
        proc = ctx.Process(target=_worker_main, args=(theirs, run_fn, store_dir, threads, gpu), daemon=True,
                           name="csta-grid-worker")
        proc.start()
        theirs.close()
        return _Worker(proc, ours, slot)

    def assign(worker: _Worker) -> None:
        worker.job = pending.pop(0) if pending else None
        with contextlib.suppress(BrokenPipeError, OSError):  # the worker died between runs: its sentinel says so next
            worker.conn.send(worker.job.spec if worker.job else None)

    try:
        for slot in range(min(jobs, len(pending))):
            worker = start_worker(slot)
            workers.append(worker)
            assign(worker)
        while any(w.job is not None for w in workers):
            busy = [w for w in workers if w.job is not None]
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for worker in busy:
                if worker.conn not in ready and worker.process.sentinel not in ready:
                    continue
                job, message = worker.job, None
                assert job is not None  # busy workers have a job
                try:
                    if worker.conn.poll():
                        message = worker.conn.recv()
                except (EOFError, OSError):
                    message = None
                if message is None:
                    if worker.process.is_alive():
                        continue  # spurious wake-up
                    worker.process.join()
                    yield Outcome(job.index, error=f"worker process died (exit code {worker.process.exitcode})")
                    worker.conn.close()
                    workers.remove(worker)
                    if pending:
                        replacement = start_worker(worker.slot)
                        workers.append(replacement)
                        assign(replacement)
                    continue
                if message[0] == "ok":
                    yield Outcome(job.index, record=message[1])
                else:
                    yield Outcome(job.index, error=message[1])
                assign(worker)
    finally:
        for worker in workers:  # normal end: they were sent None; interrupted: stop them
            if worker.job is not None and worker.process.is_alive():
                worker.process.terminate()
            worker.process.join(timeout=10)
            worker.conn.close()


# -------------------------------------------------------------------------------------------------------------
# ray engine


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a Ray address to probe, or None for ``auto``/``local`` (Ray resolves those itself)."""
    text = address.strip()
    if text in ("auto", "local"):
        return None
    client = text.startswith("ray://")
    hostport = text[len("ray://"):] if client else text
    hostport = hostport.split("/", 1)[0]
    host, sep, port = hostport.rpartition(":")
    if not sep:
        host, port = hostport, str(DEFAULT_RAY_CLIENT_PORT if client else DEFAULT_RAY_PORT)
    host = host.strip("[]")
    try:
        return host, int(port)
    except ValueError:
        raise CstaInputError(f"cannot read the Ray address {address!r}; expected HOST:PORT or "
                             "ray://HOST:PORT") from None


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise :class:`CstaInputError` within ``timeout`` seconds if nothing listens at a Ray address."""
    target = parse_address(address)
    if target is None:
        return
    host, port = target
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise CstaInputError(
            f"cannot reach the Ray cluster at {address!r} ({host}:{port}: {exc.strerror or exc}); start one with "
            "`ray start --head` and pass the address it prints, or leave --address out for a local cluster"
        ) from exc


def connect_ray(address: str | None, num_cpus: int) -> bool:
    """Connect to (``address`` / ``RAY_ADDRESS``) or start a local Ray cluster; True if we started it.

    An already initialised Ray (e.g. in a notebook) is used as it is.
    """
    import ray  # the optional [ray] extra (see the imports above)

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    # The workers' and raylets' own output stays in the cluster's session logs: on the driver it would bury the
    # grid's lines (and a refusal's one line) under tracebacks the grid already reports by run.
    quiet: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "warning"}
    if address:
        check_reachable(address)
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            raise CstaInputError(
                f"cannot join the Ray cluster at {address!r}: {exc}. If the cluster uses token authentication "
                "(the default in recent Ray), this machine needs the cluster's token: RAY_AUTH_TOKEN or the file "
                "~/.ray/auth_token (see `ray get-auth-token`)") from exc
        return False
    ray.init(num_cpus=num_cpus, **quiet)
    return True


def node_name(node: Mapping[str, Any]) -> str:
    """A Ray node as a user can find it: its address and the start of its node id."""
    return f"{node.get('NodeManagerAddress', '?')} (node {str(node.get('NodeID', '?'))[:8]})"


def _node_size(node: Mapping[str, Any]) -> str:
    res = node.get("Resources", {})
    gpus = res.get("GPU", 0)
    return f"{res.get('CPU', 0):g} CPU" + (f" + {gpus:g} GPU" if gpus else "")


def fitting_nodes(nodes: Sequence[Mapping[str, Any]], cpus_per_run: int, gpus_per_run: float
                  ) -> list[Mapping[str, Any]]:
    """The alive nodes (of ``ray.nodes()``) that can hold one run of ``cpus_per_run`` CPUs and ``gpus_per_run``
    GPUs. :class:`CstaInputError` at once when none can: Ray would queue such tasks forever without a word (the
    cluster's total is not enough: one task runs on one node)."""
    alive = [n for n in nodes if n.get("Alive")]
    fit = [n for n in alive if n.get("Resources", {}).get("CPU", 0) >= cpus_per_run
           and n.get("Resources", {}).get("GPU", 0) >= gpus_per_run]
    if not fit:
        need = f"{cpus_per_run} CPU(s)" + (f" and {gpus_per_run:g} GPU" if gpus_per_run > 0 else "")
        flags = f"--num-cpus {cpus_per_run}" + (f" --num-gpus {math.ceil(gpus_per_run)}" if gpus_per_run > 0 else "")
        sizes = ", ".join(_node_size(n) for n in alive) or "nothing"
        raise CstaInputError(
            f"no node of the Ray cluster can hold one run ({need} per run: --cpus-per-run/--gpus-per-run); its "
            f"{len(alive)} alive node(s) have {sizes}. Start nodes with at least {need} (`ray start {flags}`) or "
            "ask for less per run")
    return fit


#: How long the nodes of a joined cluster get to show that they can run the grid (start a worker, import
#: csta_lib and torch, load a run's data): generous, for busy nodes.
PROBE_TIMEOUT_S = 180.0


def _node_problem(exc: BaseException) -> str:
    """One line saying why a node failed a probe, with what to do about the common causes."""
    cause = getattr(exc, "cause", None) or exc
    lines = [line for line in str(cause).splitlines() if line.strip()]
    text = f"{type(cause).__name__}: {lines[0] if lines else ''}".strip().rstrip(".")
    missing = re.search(r"No module named '[^']+'", str(cause))  # Ray wraps unpickling errors in its own text
    if missing:
        text = missing.group(0)
    if missing or isinstance(cause, ImportError):
        return (f"{text}; install this project with its [ray] extra (pip install '.[ray]') in the Python that runs "
                "`ray start` there")
    if isinstance(cause, MissingDataError) or "was not found" in text:
        return f"{text}; put the data files on every node (its data/ folder or $CSTA_DATA_MIRROR; `csta data check`)"
    return text


def probe_task(check_fn: CheckFn, spec: Any, threads: int, data: ShippedFile | None, splits: ShippedFile | None
               ) -> str:
    """On one node: the content key it computes for ``spec`` (with the run's ``threads`` torch threads, as the
    key holds them) once everything the run reads is found there."""
    spec = _on_this_node(spec, data, splits)
    return _with_threads(threads, functools.partial(check_fn, spec))


def check_nodes(nodes: Sequence[Mapping[str, Any]], probes: Sequence[tuple[Job, ShippedFile | None,
                ShippedFile | None]], check_fn: CheckFn, threads: int, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Ask every node to prepare one run of each dataset before any run is submitted; one
    :class:`CstaInputError` naming each node that cannot (csta_lib or torch missing, data missing, another
    content key than this machine's: other code, data or settings), instead of one failure per run."""
    import ray  # the optional [ray] extra (see the imports above)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(probe_task)
    refs = {}
    for node in nodes:
        pinned = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        for job, data, splits in probes:
            options = remote.options(num_cpus=0, max_retries=0, scheduling_strategy=pinned)
            refs[options.remote(check_fn, job.spec, threads, data, splits)] = (node, job)
    ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
    problems: dict[str, str] = {}
    for ref, (node, job) in refs.items():
        name = node_name(node)
        if name in problems:
            continue
        if ref not in ready:
            problems[name] = f"did not answer within {timeout:.0f} s"
            continue
        try:
            key = ray.get(ref)
        except ray.exceptions.RayError as exc:
            problems[name] = _node_problem(exc)
            continue
        if key != job.key:
            problems[name] = (f"computes the content key {key} for run {job.plan.label}, this machine {job.key} (its "
                              "csta_lib, data files or settings differ from this machine's)")
    for ref in late:
        ray.cancel(ref, force=True)
    if problems:
        raise CstaInputError(f"{len(problems)} of {len(nodes)} Ray node(s) cannot run this grid: "
                             + "; ".join(f"node {name}: {why}" for name, why in problems.items()))


@dataclass(frozen=True)
class ShippedFile:
    """A data file of the grid: the driver's path, its checksum and (in a list, so Ray does not fetch it
    eagerly) the object-store reference of its bytes."""

    path: str
    sha256: str
    size: int
    ref: list[Any]


def ship_file(path: str | os.PathLike[str]) -> ShippedFile:
    """Put a file's bytes into the Ray object store (once per grid)."""
    import ray  # the optional [ray] extra (see the imports above)


    path = Path(path)
    data = path.read_bytes()
    return ShippedFile(str(path), sha256_file(path), len(data), [ray.put(data)])


_VERIFIED: dict[tuple[str, int, int], str] = {}


def materialise(shipped: ShippedFile) -> str:
    """A local path holding the shipped file: the driver's path when this node sees the same file, else a
    node-local copy written once (atomically) from the object store."""
    import ray  # the optional [ray] extra (see the imports above)


    here = Path(shipped.path)
    if here.is_file() and here.stat().st_size == shipped.size:
        stamp = (str(here), here.stat().st_mtime_ns, shipped.size)
        if stamp not in _VERIFIED:  # hash a file once per worker process, not once per run
            _VERIFIED[stamp] = sha256_file(here)
        if _VERIFIED[stamp] == shipped.sha256:
            return str(here)
    cached = Path(tempfile.gettempdir()) / "csta-grid-data" / shipped.sha256 / here.name
    if not cached.is_file():
        write_bytes_atomic(cached, ray.get(shipped.ref[0]))
    return str(cached)


def _store_files(store_dir: Path, record_path: Path) -> dict[str, bytes]:
    """The record and its checkpoint files, relative to the store, to send back to the driver."""
    files = {}
    ckpt_dir = results_store.checkpoint_dir(record_path)
    if ckpt_dir.is_dir():
        for path in sorted(ckpt_dir.rglob("*")):
            if path.is_file() and path.name != "resume.pt":
                files[str(path.relative_to(store_dir))] = path.read_bytes()
    files[str(record_path.relative_to(store_dir))] = record_path.read_bytes()  # last: written last
    return files


def _on_this_node(spec: Any, data: ShippedFile | None, splits: ShippedFile | None) -> Any:
    """``spec`` reading this node's copies of the shipped data and split files."""
    changes = {}
    if data is not None:
        changes["data_path"] = materialise(data)
    if splits is not None:
        changes["splits_file"] = materialise(splits)
    if changes and dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        spec = dataclasses.replace(spec, **changes)
    return spec


def ray_task_body(run_fn: RunFn, lookup_fn: LookupFn, spec: Any, key: str, store_dir: str, marker: str,
                  threads: int, data: ShippedFile | None, splits: ShippedFile | None) -> dict[str, Any]:
    """What one Ray task does: find the data, check that this node computes the run the driver asked for (its
    content ``key``), train, and write (or send back) the record."""
    spec = _on_this_node(spec, data, splits)
    here, _ = _with_threads(threads, lambda: lookup_fn(spec, store_dir))
    if here != key:  # other code, data or settings on this node: its record would not be the driver's run
        raise CstaInputError(f"node {socket.gethostname()} computes the content key {here} for this run, the driver "
                             f"{key}: its csta_lib, data files or settings differ from the driver's")
    if (Path(store_dir) / marker).is_file():  # this node sees the driver's store: write there directly
        return {"record": execute(run_fn, spec, store_dir, threads), "files": None, "host": socket.gethostname()}
    with tempfile.TemporaryDirectory(prefix="csta-grid-store-") as scratch:
        record = _with_threads(threads, lambda: run_fn(spec, scratch))
        path = Path(record["_path"]) if "_path" in record else None
        files = _store_files(Path(scratch), path) if path is not None else None
        clean = {k: v for k, v in dict(record).items() if k != "_path"}
        return {"record": clean, "files": files, "host": socket.gethostname()}


def receive_files(store_dir: Path, files: Mapping[str, bytes]) -> None:
    """Write files sent back by a task into the store, atomically, in the order given (record last)."""
    root = store_dir.resolve()
    for rel, data in files.items():
        target = (store_dir / rel).resolve()
        if root not in target.parents:
            raise CstaInputError(f"a task sent back a file outside the store: {rel}")
        write_bytes_atomic(target, data)


def run_ray(jobs_list: Sequence[Job], store_dir: str, *, address: str | None, threads: int, gpus_per_run: float,
            data: Mapping[str, experiments.DataSource], run_fn: RunFn, lookup_fn: LookupFn, check_fn: CheckFn,
            started_cpus: int, say: Callable[[str], None] = lambda text: None) -> Iterator[Outcome]:
    """Connect, check the cluster and submit one Ray task per job; return the outcomes as the tasks finish.

    Everything that can refuse the grid happens here, before anything runs: no node big enough for a run
    (:func:`fitting_nodes`), or, on a joined cluster, a node that cannot prepare one run of each dataset
    (:func:`check_nodes`)."""
    import ray  # the optional [ray] extra (see the imports above)

    started = connect_ray(address, started_cpus)
    try:
        nodes = fitting_nodes(ray.nodes(), threads, gpus_per_run)
        shipped = {d: (ship_file(src.features), ship_file(src.splits_file) if src.splits_file else None)
                   for d, src in data.items()}
        if not started:  # a joined cluster's nodes may lack what this machine has
            firsts = {job.plan.dataset: job for job in reversed(jobs_list)}.values()
            say(f"checking {len(nodes)} Ray node(s): each prepares one run of each dataset")
            check_nodes(nodes, [(job, *shipped[job.plan.dataset]) for job in firsts], check_fn, threads)
        marker = marker_name()
        marker_path = Path(store_dir) / marker
        marker_path.write_text("csta grid: a task that sees this file writes its record into this store\n")
    except BaseException:
        if started:
            ray.shutdown()
        raise
    remote = ray.remote(ray_task_body).options(num_cpus=threads, num_gpus=gpus_per_run, max_retries=0,
                                               retry_exceptions=False)
    refs = {remote.remote(run_fn, lookup_fn, job.spec, job.key, str(store_dir), marker, threads,
                          *shipped[job.plan.dataset]): job
            for job in jobs_list}
    return _ray_outcomes(refs, Path(store_dir), marker_path, started)


def _ray_outcomes(refs: dict[Any, Job], store_dir: Path, marker_path: Path, started: bool) -> Iterator[Outcome]:
    """The outcome of each submitted task as it finishes; the marker goes (and a cluster we started stops) at
    the end or when the caller stops listening."""
    import ray  # the optional [ray] extra (see the imports above)

    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                job = refs.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    yield Outcome(job.index, error=f"{type(cause).__name__}: {cause}")
                    continue
                except ray.exceptions.RayError as exc:  # worker crashed, node died, ...
                    yield Outcome(job.index, error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
                    continue
                if result["files"]:
                    receive_files(store_dir, result["files"])
                yield Outcome(job.index, record=result["record"])
    finally:
        marker_path.unlink(missing_ok=True)
        if started:
            ray.shutdown()


# -------------------------------------------------------------------------------------------------------------
# the grid


def _progress_bar(total: int, initial: int, desc: str, enabled: bool) -> Any:
    return tqdm(total=total, initial=initial, desc=desc, unit="run", disable=not enabled, file=sys.stderr,
                dynamic_ncols=True)


def _say(text: str, enabled: bool) -> None:
    """A progress line on standard error (above the bar, when there is one)."""
    if enabled:
        tqdm.write(text, file=sys.stderr)


def run_grid(
    experiment: str,
    profile: str,
    engine: str = "local",
    jobs: int = 1,
    address: str | None = None,
    gpus_per_run: float = 0,
    store: str | os.PathLike[str] | None = None,
    progress: bool = True,
    *,
    cpus_per_run: int | None = None,
    device: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    run_fn: RunFn = train_run,
    lookup_fn: LookupFn = train_lookup,
    check_fn: CheckFn = train_check,
    datasets: Sequence[str] | None = None,
    user: experiments.DataSource | None = None,
) -> dict[str, Any]:
    """Compute every missing run of ``experiment`` at ``profile`` into ``store``; return a summary.

    The summary holds ``runs`` (in the grid), ``computed``, ``reused`` (found in the store), ``failed``,
    ``failed_runs`` (``key``, ``run``, ``error`` of each failure), ``keys`` (every run's content address),
    ``data`` (per dataset: file, sha256, whether surrogate), ``cut`` (what the profile leaves out of the paper's
    protocol), ``wall_s`` and ``run_s`` (summed run times). A failed run does not stop the others; calling again
    computes only what is still missing. ``cpus_per_run`` (torch threads and Ray CPUs of each run) defaults to
    the machine's cores / ``jobs`` (1 per run on a joined Ray cluster); ``device`` defaults to ``cuda`` when
    ``gpus_per_run > 0``, else CPU. With the local engine, ``1 / gpus_per_run`` of the ``jobs`` workers share
    each GPU. ``run_fn``/``lookup_fn``/``check_fn`` replace training (tests). ``datasets`` runs only those of the
    profile's datasets; ``user`` (:func:`csta_lib.runs.experiments.user_data`) runs the experiment on a user's own
    dataset instead. A store with every run in it is only read (it may be read-only).
    """
    experiments.check_experiment(experiment)
    experiments.check_profile(profile)
    check_options(engine, jobs, gpus_per_run, cpus_per_run)
    if engine == "ray" and importlib.util.find_spec("ray") is None:
        raise ModuleNotFoundError("No module named 'ray'", name="ray")  # now, not after the data is prepared
    store_dir = open_store(store)
    joins = engine == "ray" and bool(address or os.environ.get("RAY_ADDRESS"))
    if joins:
        check_reachable(address or os.environ["RAY_ADDRESS"])  # seconds, before any data is prepared
    threads = threads_per_run(engine, jobs, joins, cpus_per_run)
    gpus = None
    if engine == "local" and gpus_per_run > 0:
        visible = _visible_gpus()
        gpus = [visible[i] for i in local_gpu_slots(jobs, gpus_per_run, len(visible))]
    start = time.perf_counter()

    # surrogates are built here, once per grid
    data = experiments.prepare_data(experiment, profile, cache_dir, datasets, user)
    plans = experiments.plan(experiment, profile, data, datasets=datasets, user=user)
    dev = run_device(gpus_per_run, device)
    specs = [dataclasses.replace(p.spec(), device=dev) for p in plans]

    keys: list[str] = []
    todo: list[Job] = []
    seen: set[str] = set()
    reused = 0
    for i, (p, spec) in enumerate(zip(plans, specs, strict=True)):
        key, record = _with_threads(threads, functools.partial(lookup_fn, spec, str(store_dir)))  # as the run will
        keys.append(key)
        if record is not None or key in seen:
            reused += 1
        else:
            todo.append(Job(i, p, spec, key))
        seen.add(key)

    if todo:
        check_store_writable(store_dir, missing=len(todo))
    remove_stale_markers(store_dir)  # of killed Ray drivers (a read-only store keeps its own)
    _say(experiments.describe(experiment, profile, user=user), progress)
    _say(f"{len(plans)} runs: {reused} found in {store_dir}, {len(todo)} to compute with engine {engine}"
         f" ({threads} thread(s) per run)", progress)
    by_index = {job.index: job for job in todo}
    failed: list[dict[str, Any]] = []
    computed, run_seconds = 0, 0.0
    if todo:
        if engine == "local":
            outcomes = run_local(todo, str(store_dir), jobs=jobs, threads=threads, run_fn=run_fn, gpus=gpus)
        else:  # connects and checks the cluster now: a refusal comes before any progress bar
            outcomes = run_ray(todo, str(store_dir), address=address, threads=threads, gpus_per_run=gpus_per_run,
                               data=data, run_fn=run_fn, lookup_fn=lookup_fn, check_fn=check_fn,
                               started_cpus=machine_cores(), say=lambda text: _say(text, progress))
        bar = _progress_bar(len(plans), reused, f"{experiment}/{profile}", progress)
        try:
            for outcome in outcomes:
                job = by_index[outcome.index]
                if outcome.record is not None:
                    computed += 1
                    seconds = outcome.record.get("wall_time_s")
                    run_seconds += float(seconds) if isinstance(seconds, (int, float)) else 0.0
                    _say(f"done   {job.plan.label} [{job.key}] {summary_line(outcome.record)}", progress)
                else:
                    failed.append({"key": job.key, "run": job.plan.label, "error": outcome.error})
                    first = (outcome.error or "").splitlines()[0] if outcome.error else ""
                    _say(f"FAILED {job.plan.label} [{job.key}]: {first}", progress)
                bar.update(1)
        finally:
            bar.close()
    return {
        "experiment": experiment,
        "profile": profile,
        "engine": engine,
        "runs": len(plans),
        "computed": computed,
        "reused": reused,
        "failed": len(failed),
        "failed_runs": failed,
        "keys": keys,
        "store": str(store_dir),
        "threads_per_run": threads,
        "gpus_per_run": gpus_per_run,
        "data": {d: _data_summary(src) for d, src in data.items()},
        "cut": experiments.describe(experiment, profile, user=user),
        "wall_s": round(time.perf_counter() - start, 3),
        "run_s": round(run_seconds, 3),
    }


def _data_summary(src: experiments.DataSource) -> dict[str, Any]:
    ds = load_eccv16(src.features, src.dataset)
    return {"file": str(src.features), "sha256": ds.sha256, "surrogate": bool(ds.is_surrogate),
            "user_dataset": ds.is_user,
            "splits_file": str(src.splits_file) if src.splits_file else "official CSTA splits"}


def plan_entries(experiment: str, profile: str, store: str | os.PathLike[str] | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, *, with_keys: bool = True,
                 data: Mapping[str, experiments.DataSource] | None = None, threads: int | None = None,
                 times: Mapping[tuple[str, int], cost.StepTime] | None = None,
                 user: experiments.DataSource | None = None) -> list[dict[str, Any]]:
    """What a grid would run (on ``user``'s dataset, when given), one JSON-able dict per run, without training
    anything.

    Each entry: ``experiment``, ``label`` (the experiment's row), ``preset``, ``variant``, ``overrides``,
    ``dataset``, ``split`` (0-based), ``seed``, ``epochs``, ``val_fraction``, ``policies``, ``selection`` (the kind
    of run), ``data`` (``tiny`` or ``full``), ``features`` (the feature file), ``estimated_cpu_s`` (seconds of the
    run on this machine's CPU with ``threads`` torch threads, :func:`csta_lib.runs.cost.run_seconds`), ``estimate``
    (``measured`` when ``times``, from :func:`plan_step_times`, has a measurement for the run's model and length,
    else ``assumed``: the fixed 2-core rate) and, with ``with_keys`` (reads each run's data and split to compute
    its content address, with ``threads`` torch threads as the run will): ``n_train``, ``n_val``, ``n_test``
    (videos), ``surrogate`` (whether the features are surrogate), ``key``, ``numerics`` (what besides the run's
    settings its key holds: :func:`csta_lib.runs.training.numerics_identity`) and ``in_store`` (its record is
    already in ``store``; the store is only read, never created). ``data`` (from
    :func:`csta_lib.runs.experiments.prepare_data`) avoids resolving the data files again.
    """
    experiments.check_experiment(experiment)
    size = experiments.size(experiment, profile, user)
    store_dir = Path(store) if store not in (None, "") else results_store.DEFAULT_STORE_DIR
    data = data if data is not None else experiments.prepare_data(experiment, profile, cache_dir, user=user)
    threads = threads or torch.get_num_threads()
    entries = []
    for p in experiments.plan(experiment, profile, data, user=user):
        work = experiments.run_work(p.dataset, size, p.selection)
        length = round(work.mean_steps)
        step = (times or {}).get((cost.config_digest(p.variant.config), length)) \
            or cost.assumed_step_time(length, threads)
        entry: dict[str, Any] = {
            "experiment": experiment, "label": p.variant.label, "preset": p.variant.preset,
            "variant": p.variant.name, "overrides": [list(o) for o in p.variant.overrides], "dataset": p.dataset,
            "split": p.split, "seed": p.seed, "epochs": p.epochs, "val_fraction": p.selection.val_fraction,
            "policies": list(p.selection.policies), "selection": p.selection.name, "data": size.data,
            "features": str(p.data.features),
            "estimated_cpu_s": round(cost.run_seconds(work, step), 1), "estimate": step.source,
        }
        if with_keys:
            prep = _with_threads(threads, functools.partial(training.prepare,
                                                            dataclasses.replace(p.spec(), device="cpu")))
            stored = store_dir.is_dir() and results_store.find_record(
                store_dir, p.dataset, p.variant.name, prep.key) is not None
            entry.update(n_train=len(prep.train_keys), n_val=len(prep.val_keys), n_test=len(prep.test_keys),
                         surrogate=bool(prep.data.is_surrogate), key=prep.key, in_store=stored,
                         numerics=prep.identity["numerics"])
        entries.append(entry)
    return entries


def plan_step_times(experiment: str, profile: str, threads: int, *, measure: bool = True, refresh: bool = False,
                    cache_dir: str | os.PathLike[str] | None = None, say: Callable[[str], None] = lambda text: None,
                    user: experiments.DataSource | None = None) -> dict[tuple[str, int], cost.StepTime]:
    """The per-step time of every model of the grid at each of its datasets' mean lengths, with ``threads``
    torch threads: measured once per machine (:func:`csta_lib.runs.cost.step_times`; ``measure=False`` uses only
    what this machine measured before, ``refresh`` measures again; ``user``: on that user dataset)."""
    size = experiments.size(experiment, profile, user)
    exp = experiments.check_experiment(experiment)
    lengths = {round(experiments.run_work(d, size).mean_steps) for d in size.datasets}
    needs = [(v.config, n) for v in exp.variants for n in sorted(lengths)]
    return _with_threads(threads, lambda: cost.step_times(needs, measure=measure, refresh=refresh,
                                                          cache_dir=cache_dir, say=say))


def plan_summary(entries: Sequence[Mapping[str, Any]], experiment: str, profile: str, threads: int,
                 times: Mapping[tuple[str, int], cost.StepTime] | None = None,
                 figures: Mapping[str, Any] | None = None, user: experiments.DataSource | None = None
                 ) -> dict[str, Any]:
    """The last line of ``csta grid --plan --json``: how many runs, how many are stored, the total estimated
    seconds of those to compute (``estimated_cpu_s_total``) and of all (``estimated_cpu_s_all``), and what they
    cost in wall time (:func:`csta_lib.runs.cost.plan_summary`: this CPU, N Ray nodes, GPUs when measured;
    ``times`` from :func:`plan_step_times`, ``figures`` the GPU figures, by default the recorded ones)."""
    size = experiments.size(experiment, profile, user)
    todo = [e for e in entries if not e.get("in_store")]
    works = [experiments.run_work(e["dataset"], size, _selection(e)) for e in todo]
    names = {cost.config_digest(v.config): v.name for v in experiments.check_experiment(experiment).variants}
    steps = [{"variant": names.get(digest, digest), "mean_steps": length, **dataclasses.asdict(t)}
             for (digest, length), t in (times or {}).items()]
    summary = cost.plan_summary([e["estimated_cpu_s"] for e in todo], [e["estimate"] for e in todo], works,
                                threads=threads, cores=machine_cores(), fingerprint=cost.machine_fingerprint(),
                                figures=cost.gpu_figures() if figures is None else figures, steps=steps)
    known = all("in_store" in e for e in entries)
    return {"summary": "plan", "experiment": experiment, "profile": profile, "runs": len(entries),
            "in_store": sum(bool(e.get("in_store")) for e in entries) if known else None, "to_compute": len(todo),
            "estimated_cpu_s_total": round(sum(e["estimated_cpu_s"] for e in todo), 1),
            "estimated_cpu_s_all": round(sum(e["estimated_cpu_s"] for e in entries), 1), **summary}


def profile_cost(names: Sequence[str], profile: str, threads: int, *, measure: bool = True,
                 cache_dir: str | os.PathLike[str] | None = None, say: Callable[[str], None] = lambda text: None
                 ) -> dict[str, dict[str, Any]]:
    """What the whole grid of each experiment in ``names`` costs at ``profile`` with nothing stored yet, and of
    all of them together (``"all"``: a run shared by two experiments counts once), on this machine with
    ``threads`` torch threads per run: ``runs`` and :func:`csta_lib.runs.cost.plan_summary` of each (per-step
    times measured once per machine, or assumed when ``measure`` is False and nothing was measured here)."""
    groups = {name: experiments.distinct_runs([name], profile) for name in names}
    groups["all"] = experiments.distinct_runs(names, profile)
    works = {name: [experiments.run_work(d, s, sel) for _, d, s, sel in runs] for name, runs in groups.items()}
    needs = {(config, round(w.mean_steps)) for config, w in
             zip([r[0] for r in groups["all"]], works["all"], strict=True)}
    ordered = sorted(needs, key=lambda need: (cost.config_digest(need[0]), need[1]))
    times = _with_threads(threads, lambda: cost.step_times(ordered, measure=measure, cache_dir=cache_dir, say=say))
    labels = {cost.config_digest(v.config): v.name for n in names for v in experiments.EXPERIMENTS[n].variants}
    steps = [{"variant": labels.get(digest, digest), "mean_steps": length, **dataclasses.asdict(t)}
             for (digest, length), t in times.items()]
    fingerprint, figures, cores = cost.machine_fingerprint(), cost.gpu_figures(), machine_cores()
    out = {}
    for name, runs in groups.items():
        chosen = [times[(cost.config_digest(config), round(w.mean_steps))]
                  for (config, *_), w in zip(runs, works[name], strict=True)]
        durations = [cost.run_seconds(w, t) for w, t in zip(works[name], chosen, strict=True)]
        out[name] = {"runs": len(runs), **cost.plan_summary(
            durations, [t.source for t in chosen], works[name], threads=threads, cores=cores,
            fingerprint=fingerprint, figures=figures, steps=steps)}
    return out


def _selection(entry: Mapping[str, Any]) -> experiments.Selection:
    return next(s for s in (experiments.OFFICIAL, experiments.HELD_OUT) if s.name == entry["selection"])


def records_for(experiment: str, profile: str, store: str | os.PathLike[str] | None = None,
                cache_dir: str | os.PathLike[str] | None = None, *, lookup_fn: LookupFn = train_lookup,
                datasets: Sequence[str] | None = None,
                user: experiments.DataSource | None = None) -> list[dict[str, Any]]:
    """The stored records of every run of ``experiment`` at ``profile`` (in grid order; missing runs skipped;
    ``datasets``: only those of the profile's datasets; ``user``: the runs on that user dataset).

    Each record gets ``_path`` (its file) and ``_label`` (the experiment's row label for its variant).
    """
    experiments.check_experiment(experiment)
    experiments.check_profile(profile)
    store_dir = Path(store) if store is not None else results_store.DEFAULT_STORE_DIR
    if not store_dir.is_dir():
        raise CstaInputError(f"results store {store_dir} does not exist; run the grid first")
    data = experiments.prepare_data(experiment, profile, cache_dir, datasets, user)
    out = []
    for p in experiments.plan(experiment, profile, data, datasets=datasets, user=user):
        key, record = lookup_fn(p.spec(), str(store_dir))
        if record is None:
            continue
        record = dict(record)
        record.setdefault("_path", str(results_store.record_path(store_dir, p.dataset, p.variant.name, key)))
        record["_label"] = p.variant.label
        out.append(record)
    return out


def stored_experiment_records(experiment: str, store: str | os.PathLike[str], profile: str | None = None,
                              cache_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """The records of an experiment already in a store, for tables (``csta results table --experiment``);
    nothing is trained (the book's :func:`csta_lib.book.results.run_experiment` trains what is missing).

    With ``profile``: exactly that grid's runs (:func:`records_for`). Without: every stored record of the
    experiment's variants, keeping for each (variant, dataset) only the records with the most epochs (the
    most complete protocol in the store), so a store holding both quick and paper runs shows the paper ones.
    """
    if profile is not None:
        return records_for(experiment, profile, store, cache_dir)
    exp = experiments.check_experiment(experiment)
    labels = {v.name: v.label for v in exp.variants}
    records = results_store.load_records(Path(store), variant=list(labels))
    most: dict[tuple[Any, Any], int] = {}
    for r in records:
        group = (r.get("variant"), r.get("dataset"))
        most[group] = max(most.get(group, 0), int(r.get("n_epochs") or 0))
    out = [dict(r, _label=labels[r["variant"]]) for r in records
           if int(r.get("n_epochs") or 0) == most[(r.get("variant"), r.get("dataset"))]]
    if not out:
        raise CstaInputError(f"no records of experiment {experiment} in {store}; run `csta grid --experiment "
                             f"{experiment} --store {store}` first")
    return out
