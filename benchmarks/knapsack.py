"""Milliseconds taken by the 15 % knapsack summary (``csta_lib.evaluation.generate_summary``).

Real-sized videos: n_frames frames cut into shots of 30..300 frames, 2-fps step scores.
``--short`` runs the two smaller sizes only.

    python benchmarks/knapsack.py [--short] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from csta_lib.evaluation import SUMMARY_BUDGET, generate_summary

SIZES = (4_494, 20_000, 60_000)  # SumMe video_1, a long TVSum video, a 40-minute 25-fps video


def make_video(n_frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(step scores, inclusive shots, picks) of a synthetic video of ``n_frames`` frames."""
    rng = np.random.default_rng(seed)
    lengths = []
    while sum(lengths) < n_frames:
        lengths.append(int(rng.integers(30, 300)))
    lengths[-1] -= sum(lengths) - n_frames
    ends = np.cumsum(lengths) - 1
    shots = np.stack([ends - np.array(lengths) + 1, ends], axis=1)
    picks = np.arange(0, n_frames, 15)
    return rng.random(picks.size), shots, picks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="only the two smaller videos")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per size (the best is printed)")
    args = parser.parse_args()
    print(f"{'n_frames':>9} {'shots':>6} {'budget':>7} {'ms':>8}")
    for n_frames in SIZES[:2] if args.short else SIZES:
        scores, shots, picks = make_video(n_frames)
        best = float("inf")
        for _ in range(max(1, args.repeat)):
            start = time.perf_counter()
            generate_summary(scores, shots, n_frames, picks)
            best = min(best, time.perf_counter() - start)
        print(f"{n_frames:>9} {len(shots):>6} {int(n_frames * SUMMARY_BUDGET):>7} {best * 1e3:>8.2f}")


if __name__ == "__main__":
    main()
