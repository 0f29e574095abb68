"""Speed of one CSTA forward (eval, no grad) and one training step (forward, MSE backward, Adam step), with where
the step's time goes.

For T in {200, 293, 470} (the SumMe / TVSum mean lengths are 293 / 470 steps) it prints, for our model and
for a straightforward implementation of the reference (modules built in ``forward``, the key embedding on all
three replicated channels, the trunk module by module in the default NCHW layout, torch's default Adam; same
weights, same results): seconds (median and best of ``--repeats`` after a warm-up, over ``--rounds``
alternating rounds), the peak memory of the measuring process (peak RSS on CPU, ``max_memory_allocated`` on
CUDA), the achieved GFLOP/s from the FLOP count of the model *as specified* (``torch.utils.flop_counter`` on
the literal three-channel forward and its backward; both variants are credited with the same work), and our
speed-up (ratio of medians; of bests in brackets).

Then, per layer of the CNN trunk (each stage of :meth:`csta_lib.backbones.Trunk.fast_stages`, e.g.
``conv3+maxpool2`` or ``inception4a``), the seconds of its forward and backward pass alone on the input it
gets in the step, for both variants side by side, its FLOPs as specified, the achieved GFLOP/s and the fraction
of the machine's fp32 peak; the rest of the step (embeddings, attention, classifier, loss, Adam) by difference.

The peak: threads x clock x fp32 FLOP per cycle and core (two FMA pipes x vector lanes x 2: 32 for AVX2, 64 for
AVX-512 on Intel and on AMD from Zen 5; AMD's Zen 4 runs AVX-512 on 256-bit pipes, so 32), with the clock
/proc/cpuinfo reports (on a virtual machine often the base clock, below the turbo clock the cores run at); and,
because the clock is uncertain, a measured ceiling: a 2048^3 float32 matrix product at the same thread count.

"Ours" is :class:`csta_lib.model.CSTA` (key embedding once for the three channels, GoogLeNet's stem on one of
the three equal channels, channels-last trunk, each inception block's three 1x1 convolutions as one, the 3x3
convolutions' weight gradients as shifted matrix products, the trunk's (h x w) -> (T' x 1) resize as a small
matrix product) trained with :func:`csta_lib.train.make_optimizer` (torch's fused Adam kernel).

Timing runs both variants in one fresh subprocess per round, alternating call by call, so that a change in
the machine's load hits both; peak memory is measured in a separate fresh subprocess per variant, so that it
belongs to that variant alone. On a busy shared machine use ``--threads 1``: threads waiting for each other
at every operation lose their time slices.

    python benchmarks/model_step.py [--quick] [--steps 200 293 470] [--repeats 5] [--rounds 2] [--threads N]
                                    [--device cpu|cuda] [--preset paper] [--no-layers] [--json] [--out FILE]

``--quick``: T = 293 only, 3 timed repeats, one round. ``--json`` prints every figure as one JSON object (the
last line of standard output; the tables go to standard error); ``--out`` writes it to a file (atomically).
Each row (one per variant and T) has ``variant``, ``steps``, ``seconds_median`` and ``seconds_best`` (the
training step), ``speed_up`` (ours over the straightforward reference, ratio of the medians; None for the
reference itself), the forward figures, GFLOP/s, peak memory and ``layers``; ``variants`` repeats the rows of
the last T by variant name.
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

from csta_lib.backbones import EqualChannels
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
    """CPU model, vector extensions, clock and an fp32 peak estimate for the threads torch uses (module docstring),
    and the measured ceiling of a large float32 matrix product at that thread count."""
    info: dict[str, Any] = {"model": platform.processor() or "unknown", "flags": [], "mhz": None, "vendor": None,
                            "family": None}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name":
            info["model"] = value
        elif key == "vendor_id" and info["vendor"] is None:
            info["vendor"] = value
        elif key == "cpu family" and info["family"] is None:
            info["family"] = int(value)
        elif key == "flags" and not info["flags"]:
            info["flags"] = [f for f in ("avx512f", "avx2", "fma") if f in value.split()]
        elif key == "cpu MHz" and info["mhz"] is None:
            info["mhz"] = float(value)
    wide = "avx512f" in info["flags"] and not (info["vendor"] == "AuthenticAMD" and (info["family"] or 0) < 26)
    per_cycle = 64 if wide else 32 if {"avx2", "fma"} <= set(info["flags"]) else 8
    threads = torch.get_num_threads()
    info.update(
        threads=threads,
        logical_cpus=os.cpu_count(),
        isa=torch.backends.cpu.get_cpu_capability(),
        fp32_flop_per_cycle_per_core=per_cycle,
        fp32_peak_gflops_estimate=(threads * (info["mhz"] or 0) / 1000 * per_cycle) or None,
        matmul_gflops_measured=matmul_ceiling_gflops(),
    )
    return info


def matmul_ceiling_gflops(size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of the best of ``repeats`` float32 (size x size) matrix products on the CPU (after a warm-up)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


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


def trunk_stages(variant: str, model: CSTA) -> list[tuple[str, Callable[[Any], torch.Tensor]]]:
    """The trunk's stages as the variant runs them: ours by :meth:`~csta_lib.backbones.Trunk.fast_stages`, the
    straightforward reference as the same layers called module by module."""
    stages = model.cnn.fast_stages()
    if variant == "ours":
        return stages
    modules = dict(model.cnn.net.named_children())
    return [(name, nn.Sequential(*(modules[part] for part in name.split("+")))) for name, _ in stages]


def stage_inputs(variant: str, model: CSTA, features: torch.Tensor) -> list[Any]:
    """The input of every trunk stage in a training forward pass, as leaves that need a gradient (as in a step)."""
    with torch.no_grad():
        if variant == "ours":
            image = model._key_image_fast(features)[0]  # the key image as our forward pass builds it
            first: Any = EqualChannels(image.rows.clone().requires_grad_(),
                                       None if image.first_rows is None else image.first_rows.clone().requires_grad_())
        else:
            x = features.unsqueeze(0).expand(3, -1, -1).unsqueeze(0)
            x = torch.cat([model.cls_token.reshape(1, 3, 1, -1), x], dim=2) if model.cls_token is not None else x
            first = (model.key_embedding(x) if model.key_embedding is not None else x).requires_grad_()
        inputs, out = [first], first
        for _, stage in trunk_stages(variant, model)[:-1]:
            out = stage(out).detach().requires_grad_()
            inputs.append(out)
    return inputs


def _leaves(x: Any) -> list[torch.Tensor]:
    return [t for t in ((x.rows, x.first_rows) if isinstance(x, EqualChannels) else (x,)) if t is not None]


def layer_times(variants: tuple[str, ...], preset: str, steps: int, repeats: int, device: str) -> dict[str, Any]:
    """Seconds of each trunk stage's forward and backward pass alone, the variants alternating stage by stage,
    and each stage's FLOPs as specified (the reference's stage under the FLOP counter)."""
    torch.manual_seed(0)
    features = torch.rand(steps, 1024, device=device)
    models = {}
    for variant in variants:
        torch.manual_seed(0)
        models[variant] = build_model(preset).to(device).train()
        if variant == "straightforward":
            models[variant].cnn.net.to(memory_format=torch.contiguous_format)
    plans = {v: list(zip(trunk_stages(v, models[v]), stage_inputs(v, models[v], features), strict=True))
             for v in variants}
    grads = {v: [torch.randn_like(stage(x).detach()) for (_, stage), x in plans[v]] for v in variants}

    def once(variant: str, index: int) -> float:
        (_, stage), x = plans[variant][index]
        models[variant].zero_grad(set_to_none=True)
        for leaf in _leaves(x):
            leaf.grad = None
        start = time.perf_counter()
        out = stage(x)
        out.backward(grads[variant][index])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    reference = "straightforward" if "straightforward" in variants else variants[0]
    rows = []
    for index, ((name, _), x) in enumerate(plans[reference]):
        counter = FlopCounterMode(display=False)
        with counter:
            out = plans[reference][index][0][1](x)
            out.backward(grads[reference][index])
        row: dict[str, Any] = {"layer": name, "flops": float(counter.get_total_flops())}
        for variant in variants:
            once(variant, index)  # warm-up
        samples: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(repeats):
            for variant in variants:
                samples[variant].append(once(variant, index))
        for variant in variants:
            row[f"{variant}_s"] = statistics.median(samples[variant])
        rows.append(row)
    return {"rows": rows}


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
    """Run one measurement in a fresh process: ``worker`` is ``time:v1,v2``, ``layers:v1,v2`` or
    ``memory:variant``."""
    cmd = [sys.executable, __file__, "--worker", worker, "--steps", str(steps), "--repeats", str(args.repeats),
           "--preset", args.preset, "--device", args.device]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measurement {worker} T={steps} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def print_layers(layers: dict[str, Any], row_of: dict[str, dict[str, Any]], machine: dict[str, Any],
                 say: Callable[[str], None]) -> None:
    """The per-layer table of one T: seconds of each variant, FLOPs as specified, GFLOP/s and share of the peak."""
    variants = list(row_of)
    peak = machine["cpu"]["fp32_peak_gflops_estimate"] if machine["device"] == "cpu" else None
    ceiling = machine["cpu"]["matmul_gflops_measured"] if machine["device"] == "cpu" else None
    head = "".join(f" {v[:8] + ' s':>10} {'GF/s':>6}" for v in variants)
    say(f"  {'layer (forward + backward alone)':<34} {'GFLOP':>6}{head}"
        + (f" {'ours/peak':>9} {'ours/matmul':>11}" if peak else ""))
    totals = dict.fromkeys(variants, 0.0)
    for row in layers["rows"]:
        cells = ""
        for v in variants:
            seconds = row[f"{v}_s"]
            totals[v] += seconds
            row[f"{v}_gflops_per_s"] = row["flops"] / seconds / 1e9
            cells += f" {seconds:>10.4f} {row[f'{v}_gflops_per_s']:>6.1f}"
        extra = ""
        if peak and "ours" in variants:
            row["ours_fraction_of_peak"] = row["ours_gflops_per_s"] / peak
            row["ours_fraction_of_matmul"] = row["ours_gflops_per_s"] / ceiling
            extra = f" {row['ours_fraction_of_peak']:>9.0%} {row['ours_fraction_of_matmul']:>11.0%}"
        say(f"  {row['layer']:<34} {row['flops'] / 1e9:>6.2f}{cells}{extra}")
    rest = {v: row_of[v]["train_step_s"] - totals[v] for v in variants}
    layers["trunk_s"], layers["rest_s"] = totals, rest
    say(f"  {'trunk, sum of the layers':<34} {'':>6}" + "".join(f" {totals[v]:>10.4f} {'':>6}" for v in variants))
    say(f"  {'rest of the step (by difference)':<34} {'':>6}" + "".join(f" {rest[v]:>10.4f} {'':>6}" for v in variants)
        + "   (key/value embeddings, attention, classifier, loss, Adam)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="T = 293 only, 3 timed repeats, one round")
    parser.add_argument("--steps", type=int, nargs="+", default=None, help="lengths T (default 200 293 470)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per round (default 5; quick 3)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds of all variants (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--no-straightforward", action="store_true", help="time our model only")
    parser.add_argument("--no-layers", action="store_true", help="skip the per-layer table")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON (last line; tables to stderr)")
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
        elif kind == "layers":
            result = layer_times(tuple(names.split(",")), args.preset, steps, args.repeats or 1, args.device)
        else:
            result = peak_memory(names, args.preset, steps, args.device)
        print(json.dumps(result))
        return

    def say(text: str) -> None:
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)

    args.steps = args.steps or ([293] if args.quick else [200, 293, 470])
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.rounds = args.rounds or (1 if args.quick else 2)
    variants = ("ours",) if args.no_straightforward else VARIANTS
    machine: dict[str, Any] = {"cpu": cpu_description(), "device": args.device, "torch": torch.__version__,
                               "load_average": os.getloadavg()}
    cpu = machine["cpu"]
    if args.device.startswith("cuda"):
        machine["gpu"] = torch.cuda.get_device_name(0)
    say(f"CPU: {cpu['model']} ({', '.join(cpu['flags']) or 'no AVX2/AVX-512'}; torch kernels {cpu['isa']}), "
        f"{cpu['threads']} torch threads of {cpu['logical_cpus']} logical CPUs; load average "
        f"{machine['load_average'][0]:.2f} at the start")
    peak = cpu["fp32_peak_gflops_estimate"]
    say((f"fp32 peak estimate for those threads: {peak:.0f} GFLOP/s ({cpu['threads']} x {cpu['mhz']:.0f} MHz as "
         f"/proc/cpuinfo reports x {cpu['fp32_flop_per_cycle_per_core']} FLOP/cycle); " if peak else
         "fp32 peak: unknown clock; ")
        + f"measured ceiling (2048^3 float32 matrix product): {cpu['matmul_gflops_measured']:.0f} GFLOP/s")
    if "gpu" in machine:
        say(f"GPU: {machine['gpu']}")
    say(f"preset {args.preset}, device {args.device}, {args.repeats} timed repeats x {args.rounds} rounds, "
        f"variants alternating call by call; seconds: median (best)")
    rows = []
    for steps in args.steps:
        flops = flop_counts(args.preset, steps)
        rounds = [run_worker(args, "time:" + ",".join(variants), steps) for _ in range(args.rounds)]
        say(f"{'T':>5} {'variant':>16} {'fwd s':>15} {'fwd GF/s':>9} {'train s':>15} {'train GF/s':>10} "
            f"{'peak MB':>8}")
        row_of: dict[str, dict[str, Any]] = {}
        for variant in variants:
            row = {**combine_rounds([r[variant] for r in rounds]), **run_worker(args, f"memory:{variant}", steps),
                   **flops}
            row["seconds_median"], row["seconds_best"] = row["train_step_s"], row["train_step_best_s"]
            row["forward_gflops_per_s"] = flops["forward_flops"] / row["forward_eval_s"] / 1e9
            row["train_gflops_per_s"] = flops["train_step_flops"] / row["train_step_s"] / 1e9
            row["speed_up"] = None
            rows.append(row)
            row_of[variant] = row
            say(f"{steps:>5} {variant:>16} {row['forward_eval_s']:>7.3f} ({row['forward_eval_best_s']:.3f}) "
                f"{row['forward_gflops_per_s']:>9.1f} {row['train_step_s']:>7.3f} ({row['train_step_best_s']:.3f}) "
                f"{row['train_gflops_per_s']:>10.1f} {row['peak_memory_mb']:>8.0f}")
        say(f"{'':>5} {'(as specified)':>16} forward {flops['forward_flops'] / 1e9:.1f} GFLOP, "
            f"train step {flops['train_step_flops'] / 1e9:.1f} GFLOP")
        if len(variants) == 2:
            ours, base = row_of["ours"], row_of["straightforward"]
            up = {
                "forward_eval": base["forward_eval_s"] / ours["forward_eval_s"],
                "train_step": base["train_step_s"] / ours["train_step_s"],
                "forward_eval_best": base["forward_eval_best_s"] / ours["forward_eval_best_s"],
                "train_step_best": base["train_step_best_s"] / ours["train_step_best_s"],
            }
            ours["speed_up_vs_straightforward"], base["speed_up_vs_straightforward"] = up, None
            ours["speed_up"] = up["train_step"]
            say(f"{'':>5} {'speed-up':>16} forward x{up['forward_eval']:.2f} (best x{up['forward_eval_best']:.2f}), "
                f"train step x{up['train_step']:.2f} (best x{up['train_step_best']:.2f}); target x2.0 for the "
                "train step")
        if not args.no_layers:
            layers = run_worker(args, "layers:" + ",".join(variants), steps)
            print_layers(layers, row_of, machine, say)
            for variant, row in row_of.items():
                row["layers"] = [{"layer": r["layer"], "flops": r["flops"], "seconds": r[f"{variant}_s"],
                                  "gflops_per_s": r[f"{variant}_gflops_per_s"]} for r in layers["rows"]]
                row["trunk_s"], row["rest_s"] = layers["trunk_s"][variant], layers["rest_s"][variant]
    result = {"machine": machine, "preset": args.preset, "rows": rows,
              "variants": {r["variant"]: r for r in rows if r["steps"] == args.steps[-1]}}
    if args.out:
        write_json_atomic(args.out, result)
        say(f"wrote {args.out}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
