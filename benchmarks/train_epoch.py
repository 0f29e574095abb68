"""Seconds per training epoch (training steps + the per-epoch evaluation) on a SumMe-like split.

Data: the SumMe features the data locator resolves (the real eccv16 file if present, else the cached surrogate
with the real SumMe shots, user summaries and lengths), official CSTA split 0: 20 training videos, 5 test
videos, mean ~293 steps. The run trains on all 20 (``--select test-max,last``, no validation subset), as the
official code, and evaluates the 5 test videos after every epoch under the paper's SumMe protocol.

Printed: per epoch, the training seconds, the evaluation seconds and their share, the wall time including
checkpoint and resume-snapshot writes, and the seconds per training step; then the comparison with the official
code's cost on these 2-core machines (0.6-0.9 s per step at 293 steps, 12-17 s of steps for a 20-video SumMe
epoch; the issue's figures). Then, on this machine, the same training videos are stepped once through the
straightforward implementation of the reference (``benchmarks/model_step.py``: modules built in ``forward``,
three key-embedding channels, NCHW trunk, torch's default Adam), and the epoch's speed-up over those steps
alone is printed (target >= 1.5x); ``--no-baseline`` skips it. ``--quick`` trains on 4 videos for 2 epochs
and extrapolates to 20 training videos from the measured per-step time. On a busy shared machine use
``--threads 1`` (threads waiting for each other at every operation lose their time slices).

    python benchmarks/train_epoch.py [--quick] [--epochs 2] [--preset paper] [--device cpu] [--threads N]
                                     [--no-baseline]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from csta_lib.data import load_eccv16
from csta_lib.model import build_model
from csta_lib.runs import training
from csta_lib.runs.locator import official_splits
from csta_lib.runs.spec import RunSpec
from csta_lib.runs.surrogate import resolve_features

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark script, for its baseline
from model_step import straightforward_forward  # noqa: E402

OFFICIAL_STEP_SECONDS = (0.6, 0.9)
OFFICIAL_EPOCH_STEP_SECONDS = (12.0, 17.0)
N_TRAIN_OFFICIAL = 20


def straightforward_step_seconds(preset: str, device_text: str, data, keys: list[str]) -> float:
    """Mean seconds per training step (forward, MSE backward, torch's default Adam) of the straightforward
    implementation over ``keys`` (after one warm-up step), on the device the run used."""
    device = "cuda" if device_text.startswith("cuda") else "cpu"
    torch.manual_seed(0)
    model = build_model(preset).to(device).train()
    model.cnn.net.to(memory_format=torch.contiguous_format)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-7)

    def step(key: str) -> None:
        features = torch.tensor(np.asarray(data[key].features, dtype=np.float32), device=device)
        target = torch.tensor(np.asarray(data[key].gtscore, dtype=np.float32), device=device)
        optimiser.zero_grad()
        torch.nn.functional.mse_loss(straightforward_forward(model, features), target).backward()
        optimiser.step()
        if device == "cuda":
            torch.cuda.synchronize()

    step(keys[0])  # warm-up
    start = time.perf_counter()
    for key in keys:
        step(key)
    return (time.perf_counter() - start) / len(keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 training videos, 2 epochs, extrapolated to 20")
    parser.add_argument("--epochs", type=int, default=None, help="epochs to time (default 3; quick: 2)")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--device", default=None, help="default: cuda if available")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-baseline", action="store_true", help="skip timing the straightforward steps here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data_path = resolve_features("summe")
    data = load_eccv16(data_path, "summe")
    split = official_splits("summe")[0]
    train_keys = list(split.train_keys[:4] if args.quick else split.train_keys)
    epochs = args.epochs or (2 if args.quick else 3)
    steps = [data[k].n_steps for k in split.keys]
    print(f"data: {data.label} ({Path(data_path).name}); split 0: {len(train_keys)} training videos timed, "
          f"{len(split.test_keys)} test videos; mean steps over the split's 25 videos {statistics.mean(steps):.0f}")

    with tempfile.TemporaryDirectory() as tmp:
        splits_file = Path(tmp) / "SumMe_bench_splits.json"
        splits_file.write_text(json.dumps([{"train_keys": train_keys, "test_keys": list(split.test_keys)}]))
        spec = RunSpec(preset=args.preset, dataset="summe", data_path=str(data_path),
                       splits_file=str(splits_file), split=0, seed=0, epochs=epochs,
                       policies=("test-max", "last"), device=args.device, cnn_weights=None)
        start, cpu_start = time.perf_counter(), time.process_time()
        record = training.run(spec, Path(tmp) / "store", progress=False)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start

    print(f"device: {record['device']}; preset {args.preset}; torch {record['versions']['torch']}")
    print(f"{'epoch':>5} {'train s':>8} {'eval s':>7} {'eval %':>7} {'s/step':>7}")
    for e in record["epochs"]:
        train_s = e["seconds"] - e["eval_seconds"]
        print(f"{e['epoch']:>5} {train_s:>8.2f} {e['eval_seconds']:>7.2f} {100 * e['eval_seconds'] / e['seconds']:>6.1f}% "
              f"{train_s / len(train_keys):>7.3f}")
    later = record["epochs"][1:] or record["epochs"]  # the first epoch includes warm-up
    step = statistics.mean((e["seconds"] - e["eval_seconds"]) / len(train_keys) for e in later)
    evaluation = statistics.mean(e["eval_seconds"] for e in later)
    epoch20 = step * N_TRAIN_OFFICIAL + evaluation
    overhead = (wall - sum(e["seconds"] for e in record["epochs"])) / epochs
    print(f"run wall {wall:.1f} s for {epochs} epochs (model build, data, checkpoints and snapshots: "
          f"{overhead:.2f} s per epoch beyond the timed epoch); process CPU time {cpu:.1f} s: "
          f"{cpu / wall:.2f} cores busy on average with {torch.get_num_threads()} threads"
          + (" (well below the thread count: other load on the machine)"
             if cpu / wall < 0.8 * torch.get_num_threads() else ""))
    label = "extrapolated" if args.quick else "measured"
    print(f"epoch of 20 training videos + evaluation of 5 ({label}): {epoch20:.2f} s; evaluation share "
          f"{100 * evaluation / epoch20:.1f}%; {step:.3f} s per training step")
    if not args.no_baseline:
        base_step = straightforward_step_seconds(args.preset, record["device"], data, train_keys)
        base_epoch = base_step * N_TRAIN_OFFICIAL
        print(f"straightforward reference steps on this machine: {base_step:.3f} s per step, {base_epoch:.2f} s "
              f"for 20 training videos: our full epoch is {base_epoch / epoch20:.2f}x faster (target >= 1.5x); "
              f"our training steps alone {base_step / step:.2f}x")
    lo, hi = OFFICIAL_EPOCH_STEP_SECONDS
    print(f"official training steps alone: {lo:.0f}-{hi:.0f} s per epoch ({OFFICIAL_STEP_SECONDS[0]}-"
          f"{OFFICIAL_STEP_SECONDS[1]} s/step, issue figures): speed-up {lo / epoch20:.2f}x-{hi / epoch20:.2f}x "
          f"(target >= 1.5x)")


if __name__ == "__main__":
    main()
