"""What a grid costs on the machines at hand, from measured times (``csta grid --plan``, the book's reproduce page).

A run's work is counted by :func:`csta_lib.runs.experiments.run_work`: per epoch, one optimiser step per training
video and one forward pass per test or validation video, at the dataset's mean video length. Its time is

    build + epochs x (train steps x step time + evaluations x evaluation time)

with the step and evaluation times **measured on this machine** (:func:`measure_step`: one warm-up and
:data:`CALIBRATION_STEPS` timed training steps of the run's model on random inputs of that length, then as many
forward passes in eval mode, with the run's torch threads). Measurements are cached per machine
(:func:`machine_fingerprint`: CPU model, the kernel ISA torch uses, torch and training-code versions, device) in
``.cache/grid-cost/``, so a machine measures each (model, length, threads) once. Where nothing is measured the
time is the fixed rate :data:`csta_lib.runs.experiments.STEP_SECONDS_AT_293` and every output says ``assumed``.
The scoring after each evaluation pass (knapsack, rank correlations) and checkpoint writing are not counted:
small beside the steps.

GPUs: the per-step time of CSTA on a GPU and the throughput of k runs packed on one GPU come from the figures
that ``benchmarks/gpu.py`` records on a GPU machine into :data:`GPU_FIGURES` (format in :func:`gpu_figures`);
until they exist, the GPU cost is "not measured". Every other variant is assumed to cost on a GPU what CSTA
costs, and the output says so.

Wall time: the runs are list-scheduled, longest first, onto parallel slots (:func:`makespan`): this machine's
cores divided by the threads per run, N Ray nodes like this machine, or G GPUs with k runs each. Ideal packing
and no start-up: a lower bound of what a real grid takes.
"""

from __future__ import annotations

import heapq
import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from csta_lib.config import INPUT_DIM, ModelConfig
from csta_lib.model import build_model
from csta_lib.runs import experiments, training
from csta_lib.runs.io import write_json_atomic
from csta_lib.runs.locator import PROJECT_ROOT
from csta_lib.runs.store import content_key
from csta_lib.train import PAPER_LR, PAPER_WEIGHT_DECAY, make_optimizer, training_step

DEFAULT_CACHE_DIR = PROJECT_ROOT / ".cache" / "grid-cost"
#: Timed training steps (and evaluation passes) per (model, length), after one warm-up of each.
CALIBRATION_STEPS = 2
#: Where ``benchmarks/gpu.py`` records the GPU figures the plan uses (absent: the GPU cost is not measured).
GPU_FIGURES = Path(__file__).with_name("gpu_figures.json")
#: Ray node counts and packed runs per GPU the plan shows.
NODE_COUNTS = (1, 2, 4, 8, 16)
PACKINGS = (1, 2, 4, 8)


# -------------------------------------------------------------------------------------------------------------
# measuring


@dataclass(frozen=True)
class StepTime:
    """Seconds of one training step (``step_s``), one evaluation forward pass (``eval_s``) and building the model
    and optimiser (``build_s``) at one video length, with ``threads`` torch threads; ``source`` is ``measured``
    (then ``load`` is the 1-minute load average and ``measured_utc`` the time of the measurement) or ``assumed``."""

    step_s: float
    eval_s: float
    build_s: float
    threads: int
    source: str
    load: float | None = None
    measured_utc: str | None = None


def assumed_step_time(length: float, threads: int) -> StepTime:
    """The fixed rate :data:`experiments.STEP_SECONDS_AT_293` (a 2-core CPU's CSTA step), labelled assumed."""
    step = experiments.STEP_SECONDS_AT_293 * length / 293.0
    return StepTime(step, step / 3.0, 0.0, threads, "assumed")


def machine_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def busy(load: float | None, cores: int | None = None) -> bool:
    """Whether a load average means the machine was busy (step times measured then are too long)."""
    return load is not None and load > 0.75 * (cores or machine_cores())


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_fingerprint(device: str = "cpu") -> dict[str, str]:
    """What makes a step time this machine's: CPU model, torch's kernel ISA, torch and training-code versions,
    and the device (a GPU's name)."""
    info = {"cpu": _cpu_model(), "isa": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "train_code": str(training.TRAIN_CODE_VERSION), "device": "cpu"}
    if torch.device(device).type == "cuda":
        info["device"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_step(config: ModelConfig, length: int, device: str = "cpu", steps: int = CALIBRATION_STEPS) -> StepTime:
    """Measure one training step and one evaluation pass of ``config`` on a random video of ``length`` steps, at
    the current torch thread count: the model is built (random weights: the time does not depend on them; the
    second build is timed), one warm-up step, then ``steps`` timed steps; the same for forward passes in eval
    mode."""
    dev = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(length, INPUT_DIM, generator=generator).to(dev)
    target = torch.rand(length, generator=generator).to(dev)
    build_model(config)  # the first build in a process also pays for imports and first calls, not a run's cost
    start = time.perf_counter()
    model = build_model(config).to(dev)
    optimizer = make_optimizer(model.parameters(), PAPER_LR, PAPER_WEIGHT_DECAY)
    build = time.perf_counter() - start
    model.train()
    training_step(model, optimizer, features, target)
    _sync(dev)
    start = time.perf_counter()
    for _ in range(steps):
        training_step(model, optimizer, features, target)
    _sync(dev)
    step = (time.perf_counter() - start) / steps
    model.eval()
    with torch.inference_mode():
        model(features)
        _sync(dev)
        start = time.perf_counter()
        for _ in range(steps):
            model(features)
        _sync(dev)
    evaluation = (time.perf_counter() - start) / steps
    return StepTime(step, evaluation, build, torch.get_num_threads(), "measured", round(os.getloadavg()[0], 2),
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def config_digest(config: ModelConfig) -> str:
    """A short name of a model configuration (its content address, shortened)."""
    return content_key(config.to_dict())[:16]


def _cache_file(cache_dir: Path, fingerprint: Mapping[str, str]) -> Path:
    return cache_dir / f"{content_key(dict(fingerprint))[:16]}.json"


def _entry(config: ModelConfig, length: int, threads: int) -> str:
    return f"{config_digest(config)}@T{length}@{threads}t"


def step_times(needs: Iterable[tuple[ModelConfig, int]], *, device: str = "cpu", measure: bool = True,
               refresh: bool = False, cache_dir: str | os.PathLike[str] | None = None,
               say: Callable[[str], None] = lambda text: None) -> dict[tuple[str, int], StepTime]:
    """The step time of each (model, length) in ``needs`` at the current torch thread count, keyed by
    ``(config_digest, length)``: from this machine's cache, else measured (and cached) when ``measure``, else
    assumed. ``refresh`` measures again what is cached; so does any call that finds the machine quiet where a
    cached time was measured while it was busy."""
    threads = torch.get_num_threads()
    fingerprint = machine_fingerprint(device)
    path = _cache_file(Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR, fingerprint)
    cached = _read_cache(path)
    wanted = {(config_digest(c), int(n)): (c, int(n)) for c, n in needs}
    quiet = not busy(os.getloadavg()[0])

    def outdated(entry: Mapping[str, Any] | None) -> bool:
        return entry is None or refresh or (quiet and busy(entry.get("load")))

    todo = [(c, n) for c, n in wanted.values() if outdated(cached.get(_entry(c, n, threads)))]
    if todo and measure:
        lengths = ", ".join(str(n) for n in sorted({n for _, n in todo}))
        say(f"measuring per-step times on this machine ({fingerprint['cpu']}, {fingerprint['device']}, {threads} "
            f"thread(s)): {CALIBRATION_STEPS} training steps and evaluation passes of {len({c for c, _ in todo})} "
            f"model(s) at T = {lengths}, once per machine (cached in {path.parent})")
        for config, length in todo:
            cached[_entry(config, length, threads)] = asdict(measure_step(config, length, device))
        _write_cache(path, fingerprint, cached)
    out = {}
    for key, (config, length) in wanted.items():
        entry = cached.get(_entry(config, length, threads))
        out[key] = StepTime(**entry) if entry else assumed_step_time(length, threads)
    return out


def _read_cache(path: Path) -> dict[str, dict[str, Any]]:
    """The cached entries of one machine ({} when absent or unreadable: they are measured again)."""
    try:
        data = json.loads(path.read_text())
        return {k: v for k, v in data["times"].items() if set(v) == set(StepTime.__dataclass_fields__)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _write_cache(path: Path, fingerprint: Mapping[str, str], entries: Mapping[str, Any]) -> None:
    merged = {**_read_cache(path), **entries}  # another process may have measured other models meanwhile
    write_json_atomic(path, {"machine": dict(fingerprint), "times": merged})


# -------------------------------------------------------------------------------------------------------------
# GPU figures (recorded by benchmarks/gpu.py on a GPU machine)


def gpu_figures(path: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The recorded GPU figures, or None when none are recorded (or the file is not in this format).

    Format (JSON): ``device`` (the GPU's name), ``measured_utc``, ``torch``, ``command`` (how it was measured),
    ``step_s`` and ``eval_s`` (CSTA's ``paper`` model alone on the GPU: seconds per training step and per
    evaluation pass, keyed by the video length, e.g. ``{"293": 0.011, "470": 0.019}``) and ``packed_throughput``
    (runs' combined throughput with k runs sharing the GPU, relative to one run alone: ``{"1": 1.0, "2": 1.8,
    ...}``).
    """
    try:
        data = json.loads(Path(path or GPU_FIGURES).read_text())
        float(next(iter(data["step_s"].values())))
        float(next(iter(data["eval_s"].values())))
        {int(k): float(v) for k, v in data["packed_throughput"].items()}  # noqa: B018 - validates the format
        str(data["device"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration):
        return None
    return data


def _nearest(table: Mapping[str, Any], length: float) -> float:
    """The figure of ``table`` (keyed by length) at the length nearest ``length``, scaled linearly to it."""
    known = min(table, key=lambda k: abs(int(k) - length))
    return float(table[known]) * length / int(known)


def gpu_run_seconds(work: experiments.RunWork, figures: Mapping[str, Any]) -> float:
    """Seconds of one run alone on the recorded GPU (CSTA's per-step figures, for every variant)."""
    step = _nearest(figures["step_s"], work.mean_steps)
    evaluation = _nearest(figures["eval_s"], work.mean_steps)
    return work.epochs * (work.train_steps * step + work.evaluations * evaluation)


# -------------------------------------------------------------------------------------------------------------
# runs and grids


def run_seconds(work: experiments.RunWork, t: StepTime) -> float:
    """Seconds of one run doing ``work`` at step time ``t``."""
    return t.build_s + work.epochs * (work.train_steps * t.step_s + work.evaluations * t.eval_s)


def makespan(durations: Sequence[float], slots: int) -> float:
    """Wall time of running ``durations`` on ``slots`` parallel slots, longest first onto the slot free first
    (list scheduling: within 4/3 of the best possible order)."""
    if not durations:
        return 0.0
    free = [0.0] * max(1, slots)
    for seconds in sorted(durations, reverse=True):
        heapq.heapreplace(free, free[0] + seconds)
    return max(free)


def plan_summary(durations: Sequence[float], sources: Iterable[str], works: Sequence[experiments.RunWork], *,
                 threads: int, cores: int, fingerprint: Mapping[str, str], figures: Mapping[str, Any] | None,
                 steps: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The cost of running ``durations`` (seconds, one per run to compute, doing ``works``): CPU seconds on this
    machine, wall time here and on N Ray nodes like it, and on one GPU with k runs packed on it when measured.
    ``steps``: the per-step times behind them (each a :class:`StepTime` as a dict, with ``variant`` and
    ``mean_steps``)."""
    kinds = sorted(set(sources))
    slots = max(1, cores // threads)
    loads = [t["load"] for t in steps if t.get("source") == "measured" and t.get("load") is not None]
    cpu = {
        "estimate": kinds[0] if len(kinds) == 1 else "partly measured" if kinds else "nothing to compute",
        "machine": dict(fingerprint),
        "cores": cores,
        "load_when_measured": max(loads) if loads else None,
        "step_times": [dict(t) for t in steps],
        "threads_per_run": threads,
        "runs_at_once_per_node": slots,
        "cpu_s": round(sum(durations), 1),
        "wall_s_by_ray_nodes": {str(n): round(makespan(durations, n * slots), 1) for n in NODE_COUNTS},
        "assumes": "identical nodes like this machine, ideal packing, no start-up (a lower bound)",
    }
    if figures is None:
        gpu: dict[str, Any] = {"measured": False, "note": "not measured: no GPU figures are recorded "
                                                          "(benchmarks/gpu.py records them on a GPU machine)"}
    else:
        alone = [gpu_run_seconds(w, figures) for w in works]
        throughput = {int(k): float(v) for k, v in figures["packed_throughput"].items()}
        gpu = {
            "measured": True, "device": figures["device"], "measured_utc": figures.get("measured_utc"),
            "gpu_s_alone": round(sum(alone), 1),
            "wall_s_one_gpu_by_runs_per_gpu": {
                str(k): round(makespan([s * k / throughput[k] for s in alone], k), 1)
                for k in PACKINGS if k in throughput},
            "assumes": "every variant costs CSTA's measured GPU step; packed runs slow down as measured; ideal "
                       "packing (N GPUs: divide by N)",
        }
    return {"cpu": cpu, "gpu": gpu}


def describe(summary: Mapping[str, Any], totals: bool = True) -> list[str]:
    """The cost summary in words, a few lines (the plan's table and the book page; ``totals=False`` leaves out
    the CPU line of totals, for a page that shows them in a table)."""
    cpu, gpu = summary["cpu"], summary["gpu"]
    machine = cpu["machine"]
    how = {"measured": "measured on this machine", "assumed": "ASSUMED (not measured here: a fixed 2-core rate)",
           "partly measured": "partly measured here, partly assumed"}.get(cpu["estimate"], cpu["estimate"])
    nodes = ", ".join(f"{n} -> {duration(s)}" for n, s in cpu["wall_s_by_ray_nodes"].items())
    lines = [f"cost per run {how} ({machine['cpu']}, {machine['isa']}, torch {machine['torch']}, "
             f"{cpu['threads_per_run']} thread(s) per run, {cpu['runs_at_once_per_node']} run(s) at once per node):"]
    by_length: dict[float, list[float]] = {}
    for t in cpu["step_times"]:
        by_length.setdefault(t["mean_steps"], []).append(t["step_s"])
    if by_length:
        spans = "; ".join(f"T = {n:g}: {_span(v)}" for n, v in sorted(by_length.items()))
        lines.append(f"  seconds per training step ({cpu['estimate']}): {spans}")
    load = cpu["load_when_measured"]
    if busy(load, cpu["cores"]):
        lines.append(f"  the machine was busy when measured (load average {load:g} on {cpu['cores']} cores): these "
                     "times are too long, and the next plan on a quiet machine measures them again")
    if totals:
        lines.append(f"  CPU: {duration(cpu['cpu_s'])} of runs; wall time with N Ray nodes like this one: {nodes} "
                     f"({cpu['assumes']})")
    if gpu["measured"]:
        packed = ", ".join(f"{k} -> {duration(s)}" for k, s in gpu["wall_s_one_gpu_by_runs_per_gpu"].items())
        lines.append(f"  GPU ({gpu['device']}, measured {gpu.get('measured_utc') or '?'}): one GPU, by runs packed on "
                     f"it (--gpus-per-run 1/k): {packed} ({gpu['assumes']})")
    else:
        lines.append(f"  GPU: {gpu['note']}")
    return lines


def _span(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.3g} s" if high - low < 0.005 * high else f"{low:.3g}-{high:.3g} s"


def duration(seconds: float) -> str:
    """Seconds in a readable unit: ``45 s``, ``12 min``, ``3.4 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
