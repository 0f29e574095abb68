"""Seconds taken by KTS (``csta_lib.kts.change_points``) on n 2-fps steps of 1024-d features.

Runs the custom-video setting (``max_change_points = n - 1``, ``vmax = 1``) on L2-normalised
piecewise-constant features with noise. ``--short`` runs n = 100 and 500 only.

    python benchmarks/kts.py [--short] [--sizes 100 500 2000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from csta_lib.kts import change_points


def make_features(n: int, dim: int = 1024, seed: int = 0) -> np.ndarray:
    """Piecewise-constant unit vectors (a new segment every ~40 steps) plus noise, float32."""
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.choice(np.arange(1, n), size=max(1, n // 40), replace=False))
    labels = np.searchsorted(starts, np.arange(n), side="right")
    x = rng.normal(size=(labels.max() + 1, dim))[labels] + 0.5 * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="only n = 100 and 500")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per size (the best is printed)")
    args = parser.parse_args()
    sizes = [n for n in args.sizes if n <= 500] if args.short else args.sizes
    print(f"{'n steps':>8} {'seconds':>9} {'change points':>14}")
    for n in sizes:
        features = make_features(n)
        best = float("inf")
        for _ in range(max(1, args.repeat)):
            start = time.perf_counter()
            cps = change_points(features, n - 1, vmax=1.0)
            best = min(best, time.perf_counter() - start)
        print(f"{n:>8} {best:>9.3f} {len(cps):>14}")


if __name__ == "__main__":
    main()
