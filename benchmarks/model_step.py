"""Speed of one CSTA forward (eval, no grad) and one training step (forward, MSE backward, Adam step).

For T in {200, 293, 470} (the SumMe / TVSum mean lengths are 293 / 470 steps) it prints, for our model and
for a straightforward implementation of the reference (modules built in ``forward``, the key embedding on all
three replicated channels, the trunk in the default NCHW layout; same weights, same results):
seconds (best of ``--repeats`` after a warm-up), the peak memory of the measuring process (peak RSS on CPU,
``max_memory_allocated`` on CUDA), and the achieved GFLOP/s from the FLOP count of the model *as specified*
(``torch.utils.flop_counter`` on the literal three-channel forward and its backward). Beside them: the CPU
model from /proc/cpuinfo and an fp32 peak estimate (threads x clock x FLOP/cycle for its vector units).

Each measurement runs in a fresh subprocess so that peak memory belongs to that measurement alone.

    python benchmarks/model_step.py [--quick] [--steps 200 293 470] [--repeats 3] [--threads N]
                                    [--device cpu|cuda] [--preset paper] [--out results.json]

``--quick``: T = 200 only, one timed repeat. ``--out`` writes every figure as JSON (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

VARIANTS = ("ours", "straightforward")


# ---------------------------------------------------------------------------------------------------
# The straightforward implementation (the comparison)


def straightforward_forward(model, features):
    """The reference forward written as the official code does it (reference §1.2), on ``model``'s weights."""
    import torch
    from torch import nn

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
    import torch

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
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from csta_lib.config import get_config
    from csta_lib.macs import AsSpecified
    from csta_lib.model import CSTA

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


def measure(variant: str, preset: str, steps: int, repeats: int, device: str) -> dict[str, Any]:
    import torch

    from csta_lib.model import build_model

    torch.manual_seed(0)
    model = build_model(preset).to(device)
    if variant == "straightforward":
        model.cnn.net.to(memory_format=torch.contiguous_format)
        run = lambda x: straightforward_forward(model, x)  # noqa: E731
    else:
        run = model
    features = torch.rand(steps, 1024, device=device)
    target = torch.rand(steps, device=device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-7)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def forward_eval() -> None:
        model.eval()
        with torch.no_grad():
            run(features)

    def train_step() -> None:
        model.train()
        optimiser.zero_grad()
        torch.nn.functional.mse_loss(run(features), target).backward()
        optimiser.step()

    out: dict[str, Any] = {"variant": variant, "steps": steps}
    for name, fn in (("forward_eval_s", forward_eval), ("train_step_s", train_step)):
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        out[name] = min(times)
    if device.startswith("cuda"):
        out["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["peak_memory_kind"] = "torch.cuda.max_memory_allocated"
    else:
        out["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["peak_memory_kind"] = "peak RSS of the measuring process (model, optimiser state, Python)"
    return out


def run_worker(args: argparse.Namespace, variant: str, steps: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", variant, "--steps", str(steps), "--repeats", str(args.repeats),
           "--preset", args.preset, "--device", args.device]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measurement {variant} T={steps} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="T = 200 only, one timed repeat")
    parser.add_argument("--steps", type=int, nargs="+", default=None, help="lengths T (default 200 293 470)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats, best taken (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--no-straightforward", action="store_true", help="time our model only")
    parser.add_argument("--out", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--worker", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.worker:
        steps = args.steps[0]
        print(json.dumps(measure(args.worker, args.preset, steps, args.repeats or 1, args.device)))
        return

    args.steps = args.steps or ([200] if args.quick else [200, 293, 470])
    args.repeats = args.repeats or (1 if args.quick else 3)
    variants = ("ours",) if args.no_straightforward else VARIANTS
    machine: dict[str, Any] = {"cpu": cpu_description(), "device": args.device}
    if args.device.startswith("cuda"):
        import torch

        machine["gpu"] = torch.cuda.get_device_name(0)
    print(f"CPU: {machine['cpu']['model']} ({', '.join(machine['cpu']['flags']) or 'no AVX2/AVX-512'}), "
          f"{machine['cpu']['threads']} torch threads of {machine['cpu']['logical_cpus']} logical CPUs")
    peak = machine["cpu"]["fp32_peak_gflops_estimate"]
    print(f"fp32 peak estimate for those threads: {peak:.0f} GFLOP/s" if peak else "fp32 peak: unknown clock")
    if "gpu" in machine:
        print(f"GPU: {machine['gpu']}")
    print(f"preset {args.preset}, device {args.device}, best of {args.repeats}")
    header = f"{'T':>5} {'variant':>16} {'fwd s':>8} {'fwd GF/s':>9} {'train s':>8} {'train GF/s':>10} {'peak MB':>8}"
    print(header)
    rows = []
    for steps in args.steps:
        flops = flop_counts(args.preset, steps)
        for variant in variants:
            row = {**run_worker(args, variant, steps), **flops}
            row["forward_gflops_per_s"] = flops["forward_flops"] / row["forward_eval_s"] / 1e9
            row["train_gflops_per_s"] = flops["train_step_flops"] / row["train_step_s"] / 1e9
            rows.append(row)
            print(f"{steps:>5} {variant:>16} {row['forward_eval_s']:>8.3f} {row['forward_gflops_per_s']:>9.1f} "
                  f"{row['train_step_s']:>8.3f} {row['train_gflops_per_s']:>10.1f} {row['peak_memory_mb']:>8.0f}")
        print(f"{'':>5} {'(as specified)':>16} forward {flops['forward_flops'] / 1e9:.1f} GFLOP, "
              f"train step {flops['train_step_flops'] / 1e9:.1f} GFLOP")
        if len(variants) == 2:
            ours, base = rows[-2], rows[-1]
            print(f"{'':>5} {'speed-up':>16} forward x{base['forward_eval_s'] / ours['forward_eval_s']:.2f}, "
                  f"train step x{base['train_step_s'] / ours['train_step_s']:.2f}")
    if args.out:
        from csta_lib.io import write_json_atomic

        write_json_atomic(args.out, {"machine": machine, "preset": args.preset, "rows": rows})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
