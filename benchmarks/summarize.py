"""Speed of `csta summarize` on the Big Buck Bunny trailer (812 frames, 25 fps), stage by stage.

Runs the real command in a fresh process (start-up and imports included), prints each stage's
time from the sidecar, the end-to-end wall time and the real-time factor (video duration / wall
time). With ``--official`` it also times the official custom-video pipeline's costs (the book's
method page, method-kts) rebuilt from our parts: GoogLeNet (random weights, as the official path has without the
ImageNet file) on **every** frame, L2-normalised features, KTS over **all** frames, then the model on
every 15th frame; its summary is written by our writer (the same x264 preset as ours), so the writing
costs the same on both sides. The official side is timed in-process, its start-up not counted; ours
counts everything, so the ratio is conservative. Target (issue 21): ours at least 15x faster than the
official-style pipeline on every CPU kind the project runs on (AVX2 and AVX-512 EPYCs), with margin.
The stages of ours: ``decode_encode`` (decoding, sampling and MobileNet encoding, overlapped, while the
model loads in a background thread), ``wait_model`` (what of the load was left when they ended), ``kts``,
``score``, ``select``, ``write`` (summary video and audio). The CPU line says which kind of CPU ran it.

    python benchmarks/summarize.py              # ours, 3 runs on the trailer (the best is compared)
    python benchmarks/summarize.py --short      # ours on a 10-second clip (bikes), quick check
    python benchmarks/summarize.py --official   # also the official-style pipeline (1-2 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from csta_lib import kts  # noqa: E402
from csta_lib.evaluation import generate_summary  # noqa: E402
from csta_lib.model import build_model  # noqa: E402
from csta_lib.runs import cost  # noqa: E402
from csta_lib.runs.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from csta_lib.runs.locator import locate  # noqa: E402
from csta_lib.runs.video import GoogLeNetEncoder, sample_frames, score_steps, write_summary_video  # noqa: E402


def cpu_kind() -> str:
    """The CPU's model name, core count and the vector ISA torch's kernels use (the fingerprint grid costs use)."""
    machine = cost.machine_fingerprint()
    return f"{machine['cpu']}, {os.cpu_count()} cores, torch kernels {machine['isa']}"


def make_checkpoint(path: Path) -> Path:
    """A clearly untrained `paper` CSTA checkpoint (speed does not depend on the weights)."""
    torch.manual_seed(0)
    return save_checkpoint(path, build_model("paper").eval(),
                           {"encoder": "untrained", "surrogate": False, "imagenet_weights": None},
                           {"note": "RANDOM weights, for timing only (benchmarks/summarize.py)"}, preset="paper")


def time_ours(video: Path, checkpoint: Path, out_dir: Path, encoder: str) -> tuple[float, dict]:
    """Wall time of one `csta summarize` process and its sidecar."""
    out = out_dir / f"summary_{encoder}.mp4"
    cmd = [sys.executable, "-m", "csta_lib.cli", "summarize", str(video), "-o", str(out), "--checkpoint",
           str(checkpoint), "--encoder", encoder, "--allow-feature-mismatch", "--json", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"csta summarize failed ({proc.returncode}):\n{proc.stderr}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def official_style(video: Path, checkpoint: Path, out_dir: Path) -> dict[str, float]:
    """The official custom-video costs: GoogLeNet on every frame, KTS on every frame (in-process timings)."""
    times: dict[str, float] = {}
    t = time.perf_counter()
    encoder = GoogLeNetEncoder(random_weights=True)
    model, _ = load_checkpoint(checkpoint)
    times["load"] = time.perf_counter() - t
    t = time.perf_counter()
    features = []
    with av.open(str(video)) as container:
        batch = []
        for frame in container.decode(video=0):
            batch.append(frame.to_ndarray(width=224, height=224, format="rgb24"))
            if len(batch) == 32:
                features.append(encoder.encode(np.stack(batch)))
                batch = []
        if batch:
            features.append(encoder.encode(np.stack(batch)))
    all_features = np.concatenate(features)
    all_features /= np.maximum(np.linalg.norm(all_features, axis=1, keepdims=True), 1e-12)
    times["decode+googlenet (every frame)"] = time.perf_counter() - t
    t = time.perf_counter()
    n = len(all_features)
    cps = kts.change_points(all_features, n - 1, vmax=1.0)
    bounds = np.concatenate([[0], cps, [n]])
    shots = np.stack([bounds[:-1], bounds[1:] - 1], axis=1)
    times["kts (every frame)"] = time.perf_counter() - t
    t = time.perf_counter()
    picks = np.arange(0, n, 15)
    scores = score_steps(model, all_features[picks])
    summary = generate_summary(scores, shots, n, picks)
    times["score+select"] = time.perf_counter() - t
    t = time.perf_counter()
    chosen = shots[summary[shots[:, 0]] == 1]
    plan = sample_frames(video, stride=n).cut_plan
    write_summary_video(video, out_dir / "official_style.mp4", chosen, plan)
    times["write"] = time.perf_counter() - t
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="time a 10-second clip (videos.bikes) instead")
    parser.add_argument("--official", action="store_true", help="also time the official-style pipeline")
    parser.add_argument("--encoder", default="mobilenet_v1_1024", choices=("mobilenet_v1_1024", "googlenet"))
    parser.add_argument("--repeat", type=int, default=3, help="runs of ours (the best is reported)")
    args = parser.parse_args()

    video = locate("videos.bikes" if args.short else "videos.bbb_trailer")
    with tempfile.TemporaryDirectory(prefix="csta-bench-") as tmp:
        tmp_dir = Path(tmp)
        checkpoint = make_checkpoint(tmp_dir / "untrained_paper.pt")
        runs = [time_ours(video, checkpoint, tmp_dir, args.encoder) for _ in range(max(1, args.repeat))]
        wall, record = min(runs, key=lambda r: r[0])
        duration = record["duration_s"]
        print(f"video: {video.name}  {record['n_frames']} frames, {record['fps']:g} fps, {duration:.1f} s; "
              f"encoder {record['encoder']}")
        print(f"CPU: {cpu_kind()}")
        print("ours, stages inside the process (s):")
        for stage, seconds in record["timings_s"].items():
            print(f"  {stage:<16} {seconds:7.3f}")
        print(f"ours, end to end incl. process start-up: {wall:.2f} s (runs: "
              f"{', '.join(f'{w:.2f}' for w, _ in runs)}); real-time factor {duration / wall:.1f}x")
        if args.official:
            start = time.perf_counter()
            stages = official_style(video, checkpoint, tmp_dir)
            official = time.perf_counter() - start
            print("official-style pipeline (s):")
            for stage, seconds in stages.items():
                print(f"  {stage:<32} {seconds:7.3f}")
            print(f"official-style total (in-process, start-up not included): {official:.2f} s; "
                  f"real-time factor {duration / official:.2f}x; ours is {official / wall:.1f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
