"""What a grid costs: per-step times measured (once per machine, cached), per-run estimates, wall time on CPUs,
Ray nodes and packed GPUs, and the plan's summary line."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from csta_lib.config import get_config
from csta_lib.runs import cost, experiments, grid


def test_measure_step_times_a_real_model():
    config = get_config("paper")
    t = cost.measure_step(config, 24, steps=1)
    assert t.source == "measured" and t.threads == torch.get_num_threads()
    assert t.step_s > 0 and t.eval_s > 0 and t.build_s > 0 and t.measured_utc.endswith("Z")


def test_step_times_are_measured_once_per_machine_and_thread_count(fake_measure):
    paper, base = get_config("paper"), get_config("table2.baseline")
    needs = [(paper, 293), (paper, 470), (base, 293)]
    first = cost.step_times(needs)
    assert len(fake_measure) == 3 and {t.source for t in first.values()} == {"measured"}
    assert first[(cost.config_digest(paper), 470)].step_s == pytest.approx(0.47)
    again = cost.step_times(needs)
    assert len(fake_measure) == 3 and again == first  # from the cache
    cost.step_times(needs[:1], refresh=True)
    assert len(fake_measure) == 4
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        other = cost.step_times(needs[:1], measure=False)  # another thread count: not measured yet
    finally:
        torch.set_num_threads(threads)
    assert len(fake_measure) == 4
    (assumed,) = other.values()
    assert assumed.source == "assumed" and assumed.step_s == pytest.approx(experiments.STEP_SECONDS_AT_293)


def test_a_damaged_cache_is_measured_again(fake_measure):
    cost.step_times([(get_config("paper"), 100)])
    (path,) = list(cost.DEFAULT_CACHE_DIR.glob("*.json"))
    path.write_text("{not json")
    cost.step_times([(get_config("paper"), 100)])
    assert len(fake_measure) == 2 and json.loads(path.read_text())["times"]


def test_makespan():
    assert cost.makespan([], 4) == 0
    assert cost.makespan([1, 1, 1, 1], 2) == 2
    assert cost.makespan([5, 1, 1], 2) == 5
    durations = [7, 6, 5, 4, 3, 3, 2]
    for slots in (1, 2, 3, 8):
        span = cost.makespan(durations, slots)
        assert max(max(durations), sum(durations) / slots) <= span <= sum(durations) / slots + max(durations)


def test_run_seconds_counts_steps_evaluations_and_the_build():
    work = experiments.RunWork("summe", 293.0, train_steps=20, evaluations=5, epochs=3)
    t = cost.StepTime(step_s=0.5, eval_s=0.1, build_s=2.0, threads=1, source="measured")
    assert cost.run_seconds(work, t) == pytest.approx(2.0 + 3 * (20 * 0.5 + 5 * 0.1))


def _figures(tmp_path, **changes):
    figures = {"device": "Test GPU", "measured_utc": "2026-01-01T00:00:00Z", "torch": "2.13.0", "command": "test",
               "step_s": {"293": 0.01, "470": 0.02}, "eval_s": {"293": 0.002, "470": 0.004},
               "packed_throughput": {"1": 1.0, "2": 1.8, "4": 3.0, "8": 3.2}, **changes}
    path = tmp_path / "gpu_figures.json"
    path.write_text(json.dumps(figures))
    return path


def test_gpu_figures_are_read_only_in_their_format(tmp_path):
    assert cost.gpu_figures(tmp_path / "absent.json") is None
    assert cost.gpu_figures(_figures(tmp_path))["device"] == "Test GPU"
    assert cost.gpu_figures(_figures(tmp_path, step_s={})) is None
    assert cost.gpu_figures(_figures(tmp_path, packed_throughput="fast")) is None


def test_plan_summary_cpu_nodes_and_packed_gpu(tmp_path):
    works = [experiments.RunWork("tvsum", 470.2, 40, 10, 100)] * 8
    durations = [1000.0] * 8
    fingerprint = cost.machine_fingerprint()
    alone = cost.plan_summary(durations, ["measured"] * 8, works, threads=1, cores=2, fingerprint=fingerprint,
                              figures=None)
    cpu = alone["cpu"]
    assert cpu["cpu_s"] == 8000 and cpu["runs_at_once_per_node"] == 2
    assert [cpu["wall_s_by_ray_nodes"][str(n)] for n in (1, 2, 4)] == [4000, 2000, 1000]
    assert alone["gpu"]["measured"] is False and "not measured" in alone["gpu"]["note"]
    lines = cost.describe(alone)
    assert lines[0].startswith("cost per run measured on this machine") and "GPU: not measured" in lines[-1]
    figures = cost.gpu_figures(_figures(tmp_path))
    packed = cost.plan_summary(durations, ["measured"] * 8, works, threads=1, cores=2, fingerprint=fingerprint,
                               figures=figures)["gpu"]
    one = cost.gpu_run_seconds(works[0], figures)
    assert one == pytest.approx(100 * (40 * 0.02 * 470.2 / 470 + 10 * 0.004 * 470.2 / 470))
    walls = packed["wall_s_one_gpu_by_runs_per_gpu"]
    assert walls["1"] == pytest.approx(8 * one, rel=1e-3)
    assert walls["2"] == pytest.approx(8 * one / 1.8, rel=1e-3) and walls["8"] < walls["4"] < walls["2"]
    assumed = cost.plan_summary(durations, ["assumed"] * 8, works, threads=1, cores=2, fingerprint=fingerprint,
                                figures=None)
    assert "ASSUMED" in cost.describe(assumed)[0]


def test_busy_measurements_are_said_to_be_too_long():
    steps = [{"variant": "paper", "mean_steps": 293, "step_s": 1.5, "eval_s": 0.3, "build_s": 0.2, "threads": 1,
              "source": "measured", "load": 3.9, "measured_utc": "x"}]
    summary = cost.plan_summary([10.0], ["measured"], [experiments.RunWork("summe", 293.4, 20, 5, 1)], threads=1,
                                cores=2, fingerprint=cost.machine_fingerprint(), figures=None, steps=steps)
    text = "\n".join(cost.describe(summary))
    assert "T = 293: 1.5 s" in text and "busy when measured (load average 3.9 on 2 cores)" in text


def test_plan_entries_and_summary_use_the_measured_times(fake_measure):
    data = {d: experiments.DataSource(d, cost.DEFAULT_CACHE_DIR / f"{d}.h5", None) for d in ("summe", "tvsum")}
    times = grid.plan_step_times("table1", "paper", 1)
    assert {n for _, n in times} == {293, 470}
    entries = grid.plan_entries("table1", "paper", with_keys=False, data=data, threads=1, times=times)
    assert {e["estimate"] for e in entries} == {"measured"}
    work = experiments.run_work("tvsum", experiments.size("table1", "paper"), experiments.OFFICIAL)
    tvsum = next(e for e in entries if e["dataset"] == "tvsum" and e["selection"] == "official")
    assert tvsum["estimated_cpu_s"] == pytest.approx(
        round(cost.run_seconds(work, times[(cost.config_digest(get_config("paper")), 470)]), 1))
    summary = grid.plan_summary(entries, "table1", "paper", 1, times)
    assert summary["summary"] == "plan" and summary["runs"] == summary["to_compute"] == 100
    assert summary["in_store"] is None  # no keys: the store was not looked at
    assert summary["estimated_cpu_s_total"] == pytest.approx(sum(e["estimated_cpu_s"] for e in entries), abs=0.5)
    assert {t["variant"] for t in summary["cpu"]["step_times"]} == {"paper"}
    unmeasured = grid.plan_entries("table1", "paper", with_keys=False, data=data, threads=1)
    assert {e["estimate"] for e in unmeasured} == {"assumed"}


def test_times_measured_on_a_busy_machine_are_measured_again_when_it_is_quiet(fake_measure, monkeypatch):
    monkeypatch.setattr(cost.os, "getloadavg", lambda: (50.0, 50.0, 50.0))
    original = cost.measure_step

    def busy_measure(config, length, device="cpu", steps=cost.CALIBRATION_STEPS):
        return dataclasses.replace(original(config, length, device, steps), load=50.0)

    monkeypatch.setattr(cost, "measure_step", busy_measure)
    needs = [(get_config("paper"), 293)]
    cost.step_times(needs)
    cost.step_times(needs)  # still busy: the busy measurement stands
    assert len(fake_measure) == 1
    monkeypatch.setattr(cost.os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    cost.step_times(needs)
    assert len(fake_measure) == 2
