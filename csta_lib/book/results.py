"""Run an experiment grid from a notebook and shape its records for the book's tables.

Notebooks call :func:`experiment_records` (the local grid engine: only missing runs are trained, the rest
come from the results store), then the table helpers of :mod:`csta_lib.store` and the pair helpers here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PAIR = tuple[float, float]


def experiment_records(
    experiment: str,
    profile: str,
    store_dir: str | Path | None = None,
    datasets: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    device: str | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Compute what is missing of ``experiment`` at ``profile``; return its records and the grid summary.

    ``datasets``/``seeds`` restrict the records shown (the grid itself always runs the profile's runs).
    Failed runs raise: a book page must not silently show a partial table.
    """
    from csta_lib import grid, store

    store_dir = Path(store_dir) if store_dir else store.default_store_dir()
    summary = grid.run_grid(experiment, profile, engine="local", store=store_dir, progress=False,
                            device=None if device in (None, "", "cpu") else device)
    if summary["failed"]:
        first = summary["failed_runs"][0]
        raise RuntimeError(f"{summary['failed']} run(s) of {experiment}/{profile} failed; first: "
                           f"{first['run']}: {first['error']}")
    records = grid.records_for(experiment, profile, store_dir)
    records = [r for r in records
               if (not datasets or r["dataset"] in datasets) and (seeds is None or r["seed"] in seeds)]
    return records, summary


def summary_pairs(summary: Any, policy: str, label_of: Mapping[str, str] | None = None) -> dict[str, dict[str, PAIR]]:
    """``{row label: {dataset: (τ, ρ)}}`` from a :func:`csta_lib.store.summary_table` frame for one policy."""
    out: dict[str, dict[str, PAIR]] = {}
    part = summary[summary["policy"] == policy]
    for _, row in part.iterrows():
        label = (label_of or {}).get(row["variant"], row["variant"])
        out.setdefault(label, {})[row["dataset"]] = (float(row["tau"]), float(row["rho"]))
    return out


def variant_labels(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """``{variant name: the experiment's row label}`` from :func:`csta_lib.grid.records_for` records."""
    return {(r.get("variant") or r.get("preset")): r.get("_label", r.get("variant")) for r in records}


def pm(mean: float, std: float) -> str:
    """``"0.123 ± 0.004"`` (the std omitted when undefined, e.g. one seed)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {std:.3f}"
