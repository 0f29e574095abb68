"""Grid engines: wall time of a grid with ``local --jobs 1``, ``local --jobs 2`` and ``ray``, and the scheduling
overhead per run.

    python benchmarks/grid.py --short          # smoke grid of table1 (tiny data, 1 epoch): a minute or two
    python benchmarks/grid.py                  # quick grid of table1 (the issue's figure): ~10+ min on 2 cores
    python benchmarks/grid.py --gpu            # GPU machine: table1 at the paper's sizes with k = 1, 2, 4, 8 runs
                                               # packed per GPU (--gpus-per-run 1/k; reduced by --gpu-epochs and
                                               # --gpu-seeds, extrapolated), local engine (--jobs k) or --engine ray

The GPU figures that `csta grid --plan` reads are recorded by one script, ``benchmarks/gpu.py --record``; this one
only times whole grids.

Every engine starts from an empty store, so every run is computed. The overhead per run is measured with a
null trainer (writes a record at once), so it is what the engine itself costs: process start-up and imports for
``local --jobs N``, task submission and worker start-up for Ray. Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from csta_lib.runs import cost, experiments, grid, store


def null_identity(spec) -> dict:
    """What defines a null run: the spec's fields only (no data loading)."""
    return {"variant": spec.variant, "dataset": spec.dataset, "split": spec.split, "seed": spec.seed,
            "epochs": spec.epochs}


def null_lookup(spec, store_dir):
    """The null trainer's lookup: the content key of :func:`null_identity`."""
    key = store.content_key(null_identity(spec))
    return key, store.find_record(store_dir, spec.dataset, spec.variant, key)


def null_run(spec, store_dir):
    """Write a minimal record immediately (measures the engine, not training)."""
    key, _ = null_lookup(spec, store_dir)
    record = {"format": store.RECORD_FORMAT, "key": key, "identity": null_identity(spec), "preset": spec.preset,
              "variant": spec.variant,
              "dataset": spec.dataset, "split": {"index": spec.split}, "seed": spec.seed, "n_epochs": spec.epochs,
              "selected": {}, "wall_time_s": 0.0}
    path = store.record_path(store_dir, spec.dataset, spec.variant, key)
    store.write_record(path, record)
    return {**record, "_path": str(path)}


ENGINES = (("local --jobs 1", {"engine": "local", "jobs": 1}),
           ("local --jobs 2", {"engine": "local", "jobs": 2}),
           ("ray", {"engine": "ray"}))


def time_grid(experiment: str, profile: str, options: dict, **extra) -> dict:
    """Run one grid into a fresh store and return its summary with the measured wall time."""
    with tempfile.TemporaryDirectory(prefix="csta-bench-grid-") as tmp:
        start = time.perf_counter()
        summary = grid.run_grid(experiment, profile, store=tmp, progress=False, **options, **extra)
        summary["bench_wall_s"] = time.perf_counter() - start
    return summary


def engine_table(experiment: str, profile: str) -> list[dict]:
    """Wall time of the real grid and the null-trainer overhead per run, for each engine."""
    rows = []
    for name, options in ENGINES:
        null = time_grid("table2", "smoke", options, run_fn=null_run, lookup_fn=null_lookup)
        real = time_grid(experiment, profile, options)
        rows.append({"engine": name, "runs": real["runs"], "failed": real["failed"],
                     "wall_s": round(real["bench_wall_s"], 1), "sum_of_run_s": round(real["run_s"], 1),
                     "overhead_per_run_s": round(null["bench_wall_s"] / null["runs"], 2),
                     "threads_per_run": real["threads_per_run"]})
        print(f"{name:15s} {experiment}/{profile}: {real['runs']} runs in {real['bench_wall_s']:7.1f} s "
              f"(runs themselves {real['run_s']:.1f} s, {real['threads_per_run']} thread(s) each, "
              f"{real['failed']} failed); engine overhead {null['bench_wall_s'] / null['runs']:.2f} s/run "
              f"(null trainer, {null['runs']} runs, start-up included)", flush=True)
    return rows


PACKINGS = cost.PACKINGS  # runs per GPU


def gpu_table(epochs: int, seeds: int, engine: str) -> list[dict]:
    """table1 at the paper's folds on both datasets, reduced to ``epochs``/``seeds``, with k runs packed on the
    GPU (``--gpus-per-run 1/k``; the local engine runs ``--jobs k``)."""
    paper = experiments.PROFILE_SIZES["paper"]["table1"]
    full_runs = experiments.unique_runs(["table1"], "paper")  # official-protocol and held-out val runs
    reduced = dataclasses.replace(paper, epochs=epochs, seeds=tuple(range(seeds)))
    experiments.PROFILE_SIZES["paper"]["table1"] = reduced  # this process only: the benchmark's own sizes
    rows = []
    try:
        cores = grid.machine_cores()
        for per_gpu in PACKINGS:
            gpus = 1.0 / per_gpu
            options = {"engine": engine, "gpus_per_run": gpus, "cpus_per_run": max(1, cores // (2 * per_gpu)),
                       **({"jobs": per_gpu} if engine == "local" else {})}
            summary = time_grid("table1", "paper", options)
            wall = summary["bench_wall_s"]
            scale = (paper.epochs / epochs) * (full_runs / summary["runs"])
            rows.append({"runs_per_gpu": per_gpu, "gpus_per_run": gpus, "runs": summary["runs"], "epochs": epochs,
                         "wall_s": round(wall, 1), "runs_per_hour": round(summary["runs"] / wall * 3600, 1),
                         "failed": summary["failed"], "paper_table1_estimate_h": round(wall * scale / 3600, 2)})
            print(f"{engine} --gpus-per-run {gpus:<5.3g}: {summary['runs']} runs x {epochs} epochs in {wall:7.1f} s "
                  f"({summary['failed']} failed) -> paper table1 ({full_runs} runs x {paper.epochs} epochs) "
                  f"~ {wall * scale / 3600:.2f} h on this GPU", flush=True)
    finally:
        experiments.PROFILE_SIZES["paper"]["table1"] = paper
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="smoke grid instead of the quick grid")
    parser.add_argument("--gpu", action="store_true", help="GPU: paper-size table1 with 1, 0.5, 0.25 GPU per run")
    parser.add_argument("--gpu-epochs", type=int, default=5, help="epochs per run in --gpu mode (default 5)")
    parser.add_argument("--gpu-seeds", type=int, default=1, help="seeds in --gpu mode (default 1)")
    parser.add_argument("--engine", choices=grid.ENGINES, default="local",
                        help="--gpu mode: the engine that packs the runs (default local: --jobs k)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    out = {"machine": {"cores": grid.machine_cores(), "load_avg": os.getloadavg()}}
    print(f"{grid.machine_cores()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    if args.gpu:
        if not torch.cuda.is_available():
            print("--gpu: no CUDA GPU here; nothing measured", file=sys.stderr)
            return 2
        out["gpu"] = gpu_table(args.gpu_epochs, args.gpu_seeds, args.engine)
    else:
        profile = "smoke" if args.short else "quick"
        out["engines"] = engine_table("table1", profile)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
