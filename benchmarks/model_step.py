"""Speed of one CSTA forward (eval, no grad) and one training step (forward, MSE backward, Adam step).

For T in {200, 293, 470} (the SumMe / TVSum mean lengths are 293 / 470 steps) it prints, for our model and
for a straightforward implementation of the reference (modules built in ``forward``, the key embedding on all
three replicated channels, the trunk module by module in the default NCHW layout, torch's default Adam; same
weights, same results): seconds (median and best of ``--repeats`` after a warm-up, over ``--rounds``
alternating rounds), the peak memory of the measuring process (peak RSS on CPU, ``max_memory_allocated`` on
CUDA), the achieved GFLOP/s from the FLOP count of the model *as specified* (``torch.utils.flop_counter`` on
the literal three-channel forward and its backward), and our speed-up (ratio of medians; of bests in
brackets). Beside them: the CPU model from /proc/cpuinfo and an fp32 peak estimate (threads x clock x
FLOP/cycle for its vector units).

"Ours" is :class:`csta_lib.model.CSTA` (key embedding once for the three channels, channels-last trunk,
each GoogLeNet inception block's three 1x1 convolutions as one, the trunk's (h x w) -> (T' x 1) resize as
a small matrix product) trained with :func:`csta_lib.train.make_optimizer` (torch's fused Adam kernel).

Timing runs both variants in one fresh subprocess per round, alternating call by call, so that a change in
the machine's load hits both; peak memory is measured in a separate fresh subprocess per variant, so that it
belongs to that variant alone. On a busy shared machine use ``--threads 1``: threads waiting for each other
at every operation lose their time slices.

    python benchmarks/model_step.py [--quick] [--steps 200 293 470] [--repeats 5] [--rounds 2] [--threads N]
                                    [--device cpu|cuda] [--preset paper] [--out results.json]

``--quick``: T = 200 only, 3 timed repeats, one round. ``--out`` writes every figure as JSON (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from csta_lib.config import get_config
from csta_lib.macs import AsSpecified
from csta_lib.model import CSTA, build_model
from csta_lib.runs.io import write_json_atomic
from csta_lib.train import make_optimizer

VARIANTS = ("ours", "straightforward")


# ---------------------------------------------------------------------------------------------------
# The straightforward implementation (the comparison)


def straightforward_forward(model, features):
    """The reference forward written as the official code does it (book method page), on ``model``'s weights."""
    cfg = model.config
    n_frame = features.shape[0]
    x = features.unsqueeze(0).expand(3, -1, -1).unsqueeze(0)
    if model.cls_token is not None:
        x = torch.cat([model.cls_token.reshape(1, 3, 1, -1), x], dim=2)
    ct_adjust = nn.AdaptiveAvgPool2d((n_frame, cfg.dim))  # built in forward, as the official code does
    key = model.key_embedding(x) if model.key_embedding is not None else x
    out = key
    for name in model.cnn.spec.trunk_layers:
        out = getattr(model.cnn.net, name)(out)
    out = nn.AdaptiveAvgPool2d((key.shape[2], 1))(out)
    x_att = out.squeeze(0).squeeze(-1).permute(1, 0)
    if cfg.skip_connection == "KC":
        x_att = x_att + key.squeeze(0)[0]
        x_att = model.skip_norm(x_att.unsqueeze(0).unsqueeze(0)).squeeze(0).squeeze(0)
    if model.positional_encoding is not None:
        x_att = model.positional_encoding(x_att)
    x0 = x.squeeze(0)[0]
    a_t = model.attention_dropout(torch.softmax(x_att, dim=0))
    a_d = model.attention_dropout(torch.softmax(x_att, dim=1))
    value = model.value_embedding(x0)
    mixed = value * a_t + value * a_d
    mixed = ct_adjust(mixed.unsqueeze(0)).squeeze(0)
    return model.classifier(mixed)


# ---------------------------------------------------------------------------------------------------
# Machine description


def cpu_description() -> dict[str, Any]:
    """CPU model, vector extensions, clock and an fp32 peak estimate for the threads torch uses."""
    info: dict[str, Any] = {"model": platform.processor() or "unknown", "flags": [], "mhz": None}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name":
            info["model"] = value
        elif key == "flags" and not info["flags"]:
            info["flags"] = [f for f in ("avx512f", "avx2", "fma") if f in value.split()]
        elif key == "cpu MHz" and info["mhz"] is None:
            info["mhz"] = float(value)
    # FLOP per cycle per core: 2 FMA units x lanes x 2 (an estimate; clock = the reported, not turbo)
    per_cycle = 64 if "avx512f" in info["flags"] else 32 if {"avx2", "fma"} <= set(info["flags"]) else 8
    threads = torch.get_num_threads()
    info.update(
        threads=threads,
        logical_cpus=os.cpu_count(),
        fp32_flop_per_cycle_per_core=per_cycle,
        fp32_peak_gflops_estimate=(threads * (info["mhz"] or 0) / 1000 * per_cycle) or None,
    )
    return info


def flop_counts(preset: str, steps: int) -> dict[str, float]:
    """FLOPs of the model as specified: forward, and forward + backward of the MSE loss (meta device)."""
    with torch.device("meta"):
        model = AsSpecified(CSTA(get_config(preset)).train())
    features = torch.empty(steps, 1024, device="meta")
    target = torch.empty(steps, device="meta")
    counter = FlopCounterMode(display=False)
    with counter:
        loss = torch.nn.functional.mse_loss(model(features), target)
        forward = counter.get_total_flops()
        loss.backward()
    return {"forward_flops": float(forward), "train_step_flops": float(counter.get_total_flops())}


# ---------------------------------------------------------------------------------------------------
# One measurement (subprocess)


def setup(variant: str, preset: str, steps: int, device: str) -> dict[str, Callable[[], None]]:
    """The two timed operations of one variant on its own model copy (same seed, same weights)."""
    torch.manual_seed(0)
    model = build_model(preset).to(device)
    if variant == "straightforward":
        model.cnn.net.to(memory_format=torch.contiguous_format)
        run = lambda x: straightforward_forward(model, x)  # noqa: E731
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-7)
    else:
        run = model
        optimiser = make_optimizer(model.parameters(), lr=1e-3, weight_decay=1e-7)
    features = torch.rand(steps, 1024, device=device)
    target = torch.rand(steps, device=device)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def forward_eval() -> None:
        model.eval()
        with torch.no_grad():
            run(features)
        sync()

    def train_step() -> None:
        model.train()
        optimiser.zero_grad()
        torch.nn.functional.mse_loss(run(features), target).backward()
        optimiser.step()
        sync()

    return {"forward_eval": forward_eval, "train_step": train_step}


def time_variants(variants: tuple[str, ...], preset: str, steps: int, repeats: int, device: str) -> dict[str, Any]:
    """Seconds per operation, the variants alternating call by call in this process (after a warm-up each),
    so that a change in the machine's load hits all of them: {variant: {op_s: median, op_best_s: best}}."""
    ops = {variant: setup(variant, preset, steps, device) for variant in variants}
    times: dict[tuple[str, str], list[float]] = {}
    for variant in variants:
        for name, fn in ops[variant].items():
            fn()  # warm-up
            times[(variant, name)] = []
    for _ in range(repeats):
        for name in ("forward_eval", "train_step"):
            for variant in variants:
                start = time.perf_counter()
                ops[variant][name]()
                times[(variant, name)].append(time.perf_counter() - start)
    out: dict[str, Any] = {}
    for (variant, name), values in times.items():
        out.setdefault(variant, {"variant": variant, "steps": steps})
        out[variant][f"{name}_s"] = statistics.median(values)
        out[variant][f"{name}_best_s"] = min(values)
    return out


def peak_memory(variant: str, preset: str, steps: int, device: str) -> dict[str, Any]:
    """Peak memory of a process that runs one variant's forward and training step (twice each)."""
    for fn in setup(variant, preset, steps, device).values():
        fn()
        fn()
    if device.startswith("cuda"):
        return {"peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20,
                "peak_memory_kind": "torch.cuda.max_memory_allocated"}
    return {"peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_memory_kind": "peak RSS of the measuring process (model, optimiser state, Python)"}


def combine_rounds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from a variant's rounds: the median of the rounds' medians, the best of their bests."""
    out = dict(results[0])
    for name in ("forward_eval", "train_step"):
        out[f"{name}_s"] = statistics.median(r[f"{name}_s"] for r in results)
        out[f"{name}_best_s"] = min(r[f"{name}_best_s"] for r in results)
    out["rounds"] = len(results)
    return out


def run_worker(args: argparse.Namespace, worker: str, steps: int) -> dict[str, Any]:
    """Run one measurement in a fresh process: ``worker`` is ``time:v1,v2`` or ``memory:variant``."""
    cmd = [sys.executable, __file__, "--worker", worker, "--steps", str(steps), "--repeats", str(args.repeats),
           "--preset", args.preset, "--device", args.device]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measurement {worker} T={steps} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="T = 200 only, one timed repeat")
    parser.add_argument("--steps", type=int, nargs="+", default=None, help="lengths T (default 200 293 470)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per round (default 5; quick 3)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds of all variants (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--no-straightforward", action="store_true", help="time our model only")
    parser.add_argument("--out", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        kind, _, names = args.worker.partition(":")
        steps = args.steps[0]
        if kind == "time":
            result = time_variants(tuple(names.split(",")), args.preset, steps, args.repeats or 1, args.device)
        else:
            result = peak_memory(names, args.preset, steps, args.device)
        print(json.dumps(result))
        return

    args.steps = args.steps or ([200] if args.quick else [200, 293, 470])
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.rounds = args.rounds or (1 if args.quick else 2)
    variants = ("ours",) if args.no_straightforward else VARIANTS
    machine: dict[str, Any] = {"cpu": cpu_description(), "device": args.device}
    if args.device.startswith("cuda"):
        machine["gpu"] = torch.cuda.get_device_name(0)
    print(f"CPU: {machine['cpu']['model']} ({', '.join(machine['cpu']['flags']) or 'no AVX2/AVX-512'}), "
          f"{machine['cpu']['threads']} torch threads of {machine['cpu']['logical_cpus']} logical CPUs")
    peak = machine["cpu"]["fp32_peak_gflops_estimate"]
    print(f"fp32 peak estimate for those threads: {peak:.0f} GFLOP/s" if peak else "fp32 peak: unknown clock")
    if "gpu" in machine:
        print(f"GPU: {machine['gpu']}")
    print(f"preset {args.preset}, device {args.device}, {args.repeats} timed repeats x {args.rounds} rounds, "
          f"variants alternating call by call; seconds: median (best)")
    header = (f"{'T':>5} {'variant':>16} {'fwd s':>15} {'fwd GF/s':>9} {'train s':>15} {'train GF/s':>10} "
              f"{'peak MB':>8}")
    print(header)
    rows = []
    for steps in args.steps:
        flops = flop_counts(args.preset, steps)
        rounds = [run_worker(args, "time:" + ",".join(variants), steps) for _ in range(args.rounds)]
        for variant in variants:
            row = {**combine_rounds([r[variant] for r in rounds]), **run_worker(args, f"memory:{variant}", steps),
                   **flops}
            row["forward_gflops_per_s"] = flops["forward_flops"] / row["forward_eval_s"] / 1e9
            row["train_gflops_per_s"] = flops["train_step_flops"] / row["train_step_s"] / 1e9
            rows.append(row)
            print(f"{steps:>5} {variant:>16} {row['forward_eval_s']:>7.3f} ({row['forward_eval_best_s']:.3f}) "
                  f"{row['forward_gflops_per_s']:>9.1f} {row['train_step_s']:>7.3f} ({row['train_step_best_s']:.3f}) "
                  f"{row['train_gflops_per_s']:>10.1f} {row['peak_memory_mb']:>8.0f}")
        print(f"{'':>5} {'(as specified)':>16} forward {flops['forward_flops'] / 1e9:.1f} GFLOP, "
              f"train step {flops['train_step_flops'] / 1e9:.1f} GFLOP")
        if len(variants) == 2:
            ours, base = rows[-2], rows[-1]
            for row, key in ((ours, "ours"), (base, "straightforward")):
                row["speed_up_vs_straightforward"] = None if key == "straightforward" else {
                    "forward_eval": base["forward_eval_s"] / ours["forward_eval_s"],
                    "train_step": base["train_step_s"] / ours["train_step_s"],
                    "forward_eval_best": base["forward_eval_best_s"] / ours["forward_eval_best_s"],
                    "train_step_best": base["train_step_best_s"] / ours["train_step_best_s"],
                }
            up = ours["speed_up_vs_straightforward"]
            print(f"{'':>5} {'speed-up':>16} forward x{up['forward_eval']:.2f} (best x{up['forward_eval_best']:.2f}), "
                  f"train step x{up['train_step']:.2f} (best x{up['train_step_best']:.2f}); target x1.5")
    if args.out:
        write_json_atomic(args.out, {"machine": machine, "preset": args.preset, "rows": rows})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
