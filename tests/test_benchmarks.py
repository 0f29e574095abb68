"""The benchmark scripts run and print the figures their contracts name (tiny sizes: speed is not asserted here,
benchmarks/README.md holds the measured figures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_model_step_json_names_seconds_median_and_the_speed_up(tmp_path: Path) -> None:
    out = tmp_path / "step.json"
    done = run_script("benchmarks/model_step.py", "--steps", "24", "--repeats", "1", "--rounds", "1", "--threads",
                      "1", "--no-layers", "--json", "--out", str(out))
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == printed
    rows = {row["variant"]: row for row in printed["rows"]}
    assert set(rows) == {"ours", "straightforward"} and {r["steps"] for r in rows.values()} == {24}
    assert rows["ours"]["seconds_median"] > 0 and rows["straightforward"]["speed_up"] is None
    expected = rows["straightforward"]["seconds_median"] / rows["ours"]["seconds_median"]
    assert rows["ours"]["speed_up"] == pytest.approx(expected, rel=1e-6)
    assert set(printed["variants"]) == {"ours", "straightforward"}


def test_gpu_benchmark_checks_itself_on_the_cpu_and_never_records(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = run_script("benchmarks/gpu.py", "--cpu", "--steps", "1", "--packed", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "NO GPU WAS USED" in done.stdout
    figures = json.loads(out.read_text())
    assert figures["gpu_used"] is False and set(figures["figures"]["step_s"]) == {"24", "40"}
    assert figures["figures"]["packed_throughput"] == {"1": 1.0}
    refused = run_script("benchmarks/gpu.py", "--cpu", "--record")
    assert refused.returncode != 0 and "--record takes GPU figures" in refused.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_benchmark_without_cuda_is_one_line() -> None:
    done = run_script("benchmarks/gpu.py")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "CUDA is not available; nothing measured" in done.stderr


def test_build_dataset_benchmark_prints_real_time_figures() -> None:
    from support import need

    from csta_lib.book.own_videos import EXAMPLE_VIDEOS

    need(*EXAMPLE_VIDEOS, "weights.coral.mobilenet_v1_embedding")
    done = run_script("benchmarks/build_dataset.py", "--short", "--jobs", "1", "--json")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("CPU: ") and "torch kernels" in lines[0]
    printed = json.loads(lines[-1])
    (row,) = printed["rows"]
    assert (row["jobs"], row["videos"]) == (1, 2) and row["wall_s"] >= row["build_s"] > 0
    assert row["realtime_factor"] == pytest.approx(row["duration_s"] / row["wall_s"], rel=0.01)
    assert "x real time (target >= 15x)" in lines[1]
