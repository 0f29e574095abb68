"""Speed of `csta data build` on the data mirror's CC-BY clips with the example annotations, as real time.

Runs the real command in a fresh process each time (start-up, imports and the MobileNet load included) with an
empty encoding cache, so every video is decoded, encoded and cut into shots; prints the videos' total duration,
the wall time, the real-time factor (video seconds per wall second) and the CPU it ran on. Target (issue 19): at
least 15x real time on a 2-core CPU with the MobileNet encoder. ``--jobs`` lists the worker counts to time
(default 1 and 2); the build's own in-process time (``seconds`` of its JSON line) is printed beside the wall time.

    python benchmarks/build_dataset.py                 # the five clips (about 76 s of video), jobs 1 and 2
    python benchmarks/build_dataset.py --short --jobs 1  # two short clips, a quick check
    python benchmarks/build_dataset.py --json          # the figures as one JSON line at the end
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from csta_lib.book.own_videos import EXAMPLE_ANNOTATIONS, example_videos  # noqa: E402
from csta_lib.runs import cost  # noqa: E402

#: The two shortest clips of the example, for --short.
SHORT = ("bikes.mp4", "carphone_pristine.mp4")


def cpu_kind() -> str:
    """The CPU's model name, core count and the vector ISA torch's kernels use."""
    machine = cost.machine_fingerprint()
    return f"{machine['cpu']}, {os.cpu_count()} cores, torch kernels {machine['isa']}"


def annotations_for(videos: list[Path], folder: Path) -> Path:
    """The example annotation file, cut to the rows of ``videos`` (a build refuses annotations of absent videos)."""
    names = {v.name for v in videos}
    lines = EXAMPLE_ANNOTATIONS.read_text().splitlines()
    kept = [lines[0], *(line for line in lines[1:] if line.split(",", 1)[0] in names)]
    path = folder / "annotations.csv"
    path.write_text("\n".join(kept) + "\n")
    return path


def time_build(videos: list[Path], annotations: Path, jobs: int, folder: Path) -> dict[str, float]:
    """One cold build in a fresh process: wall seconds and the build's JSON summary figures."""
    out = folder / f"built_jobs{jobs}.h5"
    command = [sys.executable, "-m", "csta_lib.cli", "data", "build", "--videos", *map(str, videos),
               "--annotations", str(annotations), "--out", str(out), "--jobs", str(jobs), "--no-progress",
               "--cache", str(folder / f"cache_jobs{jobs}")]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"csta data build failed ({done.returncode}): {done.stderr.strip()}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {"jobs": jobs, "videos": summary["videos"], "duration_s": summary["duration_s"], "wall_s": round(wall, 3),
            "build_s": summary["seconds"], "realtime_factor": round(summary["duration_s"] / wall, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="only the two short clips (a quick check)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="worker counts to time (default 1 2)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = parser.parse_args(argv)
    videos = example_videos()
    if args.short:
        videos = [v for v in videos if v.name in SHORT]
    print(f"CPU: {cpu_kind()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="csta-bench-build-") as tmp:
        folder = Path(tmp)
        annotations = annotations_for(videos, folder)
        for jobs in args.jobs:
            row = time_build(videos, annotations, jobs, folder)
            rows.append(row)
            print(f"jobs {jobs}: {row['videos']} videos, {row['duration_s']:.1f} s of video in {row['wall_s']:.2f} s "
                  f"wall ({row['build_s']:.2f} s in the build itself): {row['realtime_factor']:.1f}x real time "
                  "(target >= 15x)")
    if args.json:
        print(json.dumps({"cpu": cpu_kind(), "encoder": "mobilenet_v1_1024", "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
