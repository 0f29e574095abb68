"""Run an experiment grid from a notebook and shape its records for the book's tables.

Notebooks call :func:`experiment_records` (the local grid engine: only missing runs are trained, the rest
come from the results store), then the table helpers of :mod:`csta_lib.store` and the pair helpers here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from csta_lib.errors import CstaInputError

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

    ``device`` None trains on CUDA when available, else on the CPU. ``datasets``/``seeds`` restrict the records shown (the grid itself always runs the profile's runs).
    Failed runs raise: a book page must not silently show a partial table.
    """
    from csta_lib import grid, store
    from csta_lib.train import resolve_device

    store_dir = Path(store_dir) if store_dir else store.default_store_dir()
    summary = grid.run_grid(experiment, profile, engine="local", store=store_dir, progress=False,
                            device=resolve_device(device or None))
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


def experiment_checkpoint(experiment: str, profile: str, store_dir: str | Path | None = None, dataset: str = "tvsum",
                          policy: str = "last", device: str | None = None) -> tuple[Path, dict[str, Any]]:
    """The checkpoint (and record) of an experiment's first run on ``dataset`` (lowest split, then seed).

    The run comes from :func:`experiment_records`, so it is trained once and then found in the store: the
    video chapter summarises with the very model the Table 1 chapter evaluates. ``policy`` falls back to
    the first policy the run selected if it was not run.
    """
    from csta_lib import store

    records, _ = experiment_records(experiment, profile, store_dir, [dataset], None, device)
    if not records:
        raise CstaInputError(f"{experiment} at profile {profile!r} has no {dataset} run")
    record = min(records, key=lambda r: (r["split"]["index"], r["seed"]))
    for name in (policy, *store.POLICIES):
        path = store.resolve_checkpoint(record, name)
        if path is not None:
            return path, record
    raise CstaInputError(f"run {record.get('key')} selected no checkpoint")


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


def protocol_notes(frame: Any) -> str:
    """The store's per-(dataset, policy) provenance lines as a Markdown bullet list."""
    from csta_lib import store

    return "\n".join(f"- {line}" for line in store.table_header(frame).splitlines())


def summary_display(summary: Any, labels: Mapping[str, str] | None = None) -> Any:
    """A :func:`csta_lib.store.summary_table` frame for reading: ``mean ± std over seeds`` cells, counts."""
    rows = []
    for _, r in summary.iterrows():
        rows.append({
            "dataset": r["dataset"], "row": (labels or {}).get(r["variant"], r["variant"]), "policy": r["policy"],
            "τ": pm(r["tau"], r["tau_std_seeds"]), "ρ": pm(r["rho"], r["rho_std_seeds"]), "F1": pm(r["f1"], r["f1_std_seeds"]),
            "τ sd over splits": pm(r["tau_std_splits"], float("nan")), "splits": int(r["n_splits"]),
            "seeds": int(r["n_seeds"]), "mean selected epoch": round(float(r["epoch_mean"]), 1),
        })
    import pandas as pd

    return pd.DataFrame(rows).set_index(["dataset", "row", "policy"])


def split_display(frame: Any, labels: Mapping[str, str] | None = None) -> Any:
    """One row per (dataset, row, policy, split): mean ± std over seeds."""
    from csta_lib import store

    table = store.split_table(frame)
    table["row"] = table["variant"].map(lambda v: (labels or {}).get(v, v))
    for m in ("tau", "rho", "f1"):
        table[m] = [pm(a, b) for a, b in zip(table[m], table[f"{m}_std_seeds"])]
    return table.set_index(["dataset", "row", "policy", "split"])[["tau", "rho", "f1", "n_seeds", "epoch_mean"]]
