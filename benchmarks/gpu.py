"""GPU figures: CSTA's training step at T = 293 and 470, several runs packed on one GPU, and what the paper profile
costs on that GPU (under 5 minutes on one GPU).

Printed, for the ``paper`` model on one GPU:

1. seconds per training step (forward, MSE backward, Adam) and per evaluation pass at T = 293 and 470 (the SumMe
   and TVSum mean lengths), with ``--numerics exact`` (IEEE float32, deterministic) and ``fast`` (TF32), and the
   straightforward reference implementation's step (``benchmarks/model_step.py``) for the speed-up;
2. the combined throughput of 1, 2, 4 and 8 runs packed on the GPU, as the grid packs them
   (``--gpus-per-run 1/k``): k separate processes, each training its own model on its own video, timed together
   after every process has warmed up; relative to one run alone;
3. the estimated wall time of the whole paper profile (every experiment's distinct runs,
   :func:`csta_lib.runs.experiments.distinct_runs`) on this GPU with k runs packed on it
   (:func:`csta_lib.runs.cost.plan_summary` from these figures).

``--record`` writes the figures where ``csta grid --plan`` and the book's reproduce page read them
(:data:`csta_lib.runs.cost.GPU_FIGURES`, format :func:`csta_lib.runs.cost.gpu_figures`); paste the printed block
into ``benchmarks/README.md``. ``--cpu`` runs the same measurements on the CPU at small sizes, in seconds (a test
checks that the script works): NO GPU IS USED then, it says so, and it never records.

    python benchmarks/gpu.py [--device cuda:0] [--steps 20] [--packed 1 2 4 8] [--record] [--out FILE]
    python benchmarks/gpu.py --cpu [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from csta_lib.config import INPUT_DIM, get_config
from csta_lib.errors import ConfigError
from csta_lib.model import build_model
from csta_lib.runs import cost, experiments, training
from csta_lib.runs.io import write_json_atomic
from csta_lib.runs.spec import NUMERICS
from csta_lib.train import PAPER_LR, PAPER_WEIGHT_DECAY, make_optimizer, training_step

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark script, for its reference
from model_step import straightforward_forward  # noqa: E402

PRESET = "paper"
GPU_LENGTHS = (293, 470)
CPU_LENGTHS = (24, 40)  # --cpu: small videos, so that the whole script runs in seconds
PACKED = (1, 2, 4, 8)
NO_GPU = "NO GPU WAS USED: --cpu runs the measurements on the CPU at small sizes, to check the script only"


def sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(torch.device(device))


def reference_step_seconds(length: int, device: str, steps: int) -> float:
    """Mean seconds per training step of the straightforward reference (model_step.py) after one warm-up."""
    torch.manual_seed(0)
    model = build_model(PRESET).to(device).train()
    model.cnn.net.to(memory_format=torch.contiguous_format)
    optimiser = torch.optim.Adam(model.parameters(), lr=PAPER_LR, weight_decay=PAPER_WEIGHT_DECAY)
    features = torch.randn(length, INPUT_DIM, device=device)
    target = torch.rand(length, device=device)

    def step() -> None:
        optimiser.zero_grad()
        torch.nn.functional.mse_loss(straightforward_forward(model, features), target).backward()
        optimiser.step()

    step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - start) / steps


def per_step(lengths: tuple[int, ...], device: str, steps: int) -> dict[str, Any]:
    """Our step and evaluation seconds per numerics setting and length (on the CPU ``exact`` only: ``fast``
    changes nothing there), and the reference step (exact)."""
    out: dict[str, Any] = {}
    settings = NUMERICS if torch.device(device).type == "cuda" else ("exact",)  # the CPU computes both alike
    for name in settings:
        training.apply_numerics(name, device)
        for length in lengths:
            t = cost.measure_step(get_config(PRESET), length, device, steps=steps)
            out.setdefault(name, {})[str(length)] = {"step_s": t.step_s, "eval_s": t.eval_s}
    training.apply_numerics("exact", device)
    for length in lengths:
        base = reference_step_seconds(length, device, max(1, steps // 2))
        entry = out["exact"][str(length)]
        entry.update(reference_step_s=base, speed_up=base / entry["step_s"])
    return out


def packed_worker(device: str, numerics: str, length: int, steps: int, seed: int, threads: int,
                  ready: Any, start: Any, results: Any) -> None:
    """One packed run: its own model and video, warmed up, then ``steps`` timed steps once all are ready."""
    torch.set_num_threads(threads)
    training.apply_numerics(numerics, device)
    torch.manual_seed(seed)
    model = build_model(PRESET).to(device).train()
    optimizer = make_optimizer(model.parameters(), PAPER_LR, PAPER_WEIGHT_DECAY)
    features = torch.randn(length, INPUT_DIM, device=device)
    target = torch.rand(length, device=device)
    for _ in range(3):
        training_step(model, optimizer, features, target)
    sync(device)
    ready.release()
    start.wait()
    begin = time.perf_counter()
    for _ in range(steps):
        training_step(model, optimizer, features, target)
    sync(device)
    results.put((begin, time.perf_counter()))


def packed_throughput(counts: tuple[int, ...], device: str, numerics: str, length: int, steps: int,
                      threads: int) -> dict[str, Any]:
    """Steps per second of k runs sharing the device (k processes, started together), for each k in ``counts``."""
    ctx = mp.get_context("spawn")  # CUDA cannot be used in forked children
    out: dict[str, Any] = {}
    for k in counts:
        ready, start, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=packed_worker, args=(device, numerics, length, steps, i, threads, ready,
                                                         start, results), daemon=True) for i in range(k)]
        for proc in procs:
            proc.start()
        for _ in procs:
            ready.acquire()
        start.set()
        spans = [results.get(timeout=600) for _ in procs]
        for proc in procs:
            proc.join()
            if proc.exitcode != 0:
                raise SystemExit(f"packed run failed (exit code {proc.exitcode}) with {k} runs on {device}")
        wall = max(end for _, end in spans) - min(begin for begin, _ in spans)
        out[str(k)] = {"steps_per_s": k * steps / wall, "seconds_per_step_per_run":
                       statistics.mean((end - begin) / steps for begin, end in spans)}
    alone = out[str(counts[0])]["steps_per_s"] if counts[0] == 1 else None
    for entry in out.values():
        entry["throughput_vs_one_run"] = entry["steps_per_s"] / alone if alone else None
    return out


def figures_of(name: str, steps: dict[str, Any], packed: dict[str, Any], command: str) -> dict[str, Any]:
    """The figures in the format :func:`csta_lib.runs.cost.gpu_figures` reads."""
    exact = steps["exact"]
    return {
        "device": name, "measured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__, "command": command, "numerics": "exact",
        "step_s": {n: round(v["step_s"], 6) for n, v in exact.items()},
        "eval_s": {n: round(v["eval_s"], 6) for n, v in exact.items()},
        "packed_throughput": {k: round(v["throughput_vs_one_run"], 3) for k, v in packed.items()
                              if v["throughput_vs_one_run"] is not None},
    }


def paper_profile(figures: dict[str, Any]) -> dict[str, Any]:
    """Wall time of every distinct run of the paper profile on one such GPU, by runs packed on it."""
    runs = experiments.distinct_runs(list(experiments.EXPERIMENTS), "paper")
    works = [experiments.run_work(dataset, size, selection) for _, dataset, size, selection in runs]
    # plan_summary's GPU half from these figures; its CPU half (zero CPU seconds given) is not used here
    gpu = cost.plan_summary([0.0] * len(works), ["measured"] * len(works), works, threads=1, cores=1,
                            fingerprint=cost.machine_fingerprint(), figures=figures)["gpu"]
    return {"runs": len(runs), **gpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="the GPU (default cuda)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU at small sizes (checks the script; no GPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default 20; --cpu 1)")
    parser.add_argument("--packed", type=int, nargs="+", default=None, help="runs per GPU (default 1 2 4 8; --cpu 1 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of each packed run (default 1)")
    parser.add_argument("--record", action="store_true", help="write the figures for csta grid --plan and the book")
    parser.add_argument("--out", default=None, help="also write every figure as JSON to this file")
    args = parser.parse_args()
    device = "cpu" if args.cpu else args.device
    if args.cpu and args.record:
        raise SystemExit("--record takes GPU figures; --cpu measures no GPU")
    if not args.cpu:
        try:
            training.resolve_device(device)
        except ConfigError as exc:  # one clear line without CUDA, no traceback
            raise SystemExit(f"benchmarks/gpu.py: {exc}; nothing measured (--cpu checks the script on the CPU)"
                             ) from None
    lengths = CPU_LENGTHS if args.cpu else GPU_LENGTHS
    steps = args.steps or (1 if args.cpu else 20)
    counts = tuple(args.packed or ((1, 2) if args.cpu else PACKED))
    name = "CPU (no GPU)" if args.cpu else torch.cuda.get_device_name(torch.device(device))
    began = time.perf_counter()
    if args.cpu:
        print(NO_GPU)
    print(f"device: {name}; torch {torch.__version__}; preset {PRESET}; {steps} timed steps per figure")

    timings = per_step(lengths, device, steps)
    print(f"{'T':>5} {'numerics':>8} {'step s':>9} {'eval s':>9} {'reference step s':>17} {'speed-up':>9}")
    for setting, rows in timings.items():
        for length, row in rows.items():
            reference = f"{row['reference_step_s']:>17.4f} {row['speed_up']:>8.2f}x" if "speed_up" in row else ""
            print(f"{length:>5} {setting:>8} {row['step_s']:>9.4f} {row['eval_s']:>9.4f} {reference}")

    packed = packed_throughput(counts, device, "exact", lengths[0], max(steps, 2 if args.cpu else 30), args.threads)
    print(f"runs packed on one {'CPU' if args.cpu else 'GPU'} (T = {lengths[0]}, separate processes, "
          f"{args.threads} CPU thread(s) each):")
    for k, row in packed.items():
        print(f"  {k} run(s): {row['steps_per_s']:.2f} steps/s in all, {row['seconds_per_step_per_run']:.4f} s per "
              f"step of each run; throughput x{row['throughput_vs_one_run']:.2f} of one run alone")

    command = "python benchmarks/gpu.py " + " ".join(sys.argv[1:])
    figures = figures_of(name, timings, packed, command.strip())
    profile = paper_profile(figures)
    walls = ", ".join(f"{k} -> {cost.duration(s)}" for k, s in profile["wall_s_one_gpu_by_runs_per_gpu"].items())
    print(f"paper profile, every experiment ({profile['runs']} distinct runs): {cost.duration(profile['gpu_s_alone'])}"
          f" of runs one at a time; one GPU by runs packed on it: {walls} ({profile['assumes']})"
          + (" [CPU figures at small sizes: meaningless as a GPU estimate]" if args.cpu else ""))
    seconds = time.perf_counter() - began
    print(f"measured in {seconds:.0f} s")
    if args.cpu:
        print(NO_GPU)
    result = {"gpu_used": not args.cpu, "note": NO_GPU if args.cpu else None, "device": name,
              "per_step": timings, "packed": packed, "figures": figures, "paper_profile": profile,
              "seconds": seconds}
    if args.out:
        write_json_atomic(args.out, result)
        print(f"wrote {args.out}")
    if args.record:
        write_json_atomic(cost.GPU_FIGURES, figures)
        print(f"recorded the figures in {cost.GPU_FIGURES} (csta grid --plan and the book's reproduce page read them)")
    print(json.dumps({"gpu_used": result["gpu_used"], "device": name, "figures": figures}))


if __name__ == "__main__":
    main()
