"""Run an experiment grid from a notebook and shape its records for the book's results chapters.

Notebooks call :func:`run_experiment` (the local grid engine: only missing runs are trained, the rest
come from the results store), then the helpers here:

- what the runs can be compared with: :func:`comparable_with_paper` (real features and ImageNet weights) and
  :func:`split_or_merge`, the rule that keeps this build's training results out of any table holding the paper's
  values unless they are comparable; :func:`data_warning`, the text every results chapter opens with;
- reference levels under the runs' own protocol on their own test videos (:func:`protocol_levels`: Random and
  the ground-truth score, from :mod:`csta_lib.evaluation`) and the Human row recomputed (:func:`human_levels`);
- per-video results (:func:`per_video_frame`, :func:`per_video_display`), which run each row comes from
  (:func:`run_sources`), checkpoints re-scored under another protocol (:func:`rescore`);
- downloadable run records (:func:`write_run_downloads`: JSON and CSV beside the executed notebook).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from csta_lib.book import captions, paper
from csta_lib.data.eccv16 import DATASETS, load_eccv16, video_sort_key
from csta_lib.errors import CstaInputError
from csta_lib.evaluation import DatasetEvaluator, dataset_human_baseline, random_baseline, upper_bound
from csta_lib.runs import grid, statistics, store, training
from csta_lib.runs.checkpoint import load_checkpoint
from csta_lib.runs.experiments import EXPERIMENTS, HELD_OUT, DataSource
from csta_lib.runs.io import write_bytes_atomic
from csta_lib.runs.locator import PROJECT_ROOT, annotation_user_scores, dataset_evaluator
from csta_lib.runs.selection import select_epochs

PAIR = tuple[float, float]
#: The metrics of a run as the tables name them.
METRIC_NAMES = {"tau": "τ", "rho": "ρ", "f1": "F1"}


def run_experiment(
    experiment: str,
    profile: str,
    store_dir: str | Path | None = None,
    datasets: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    device: str | None = None,
    user: DataSource | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Compute what is missing of ``experiment`` at ``profile``; return its records and the grid summary.

    ``device`` None trains on CUDA when available, else on the CPU. ``datasets`` restricts the grid to those of the
    profile's datasets (only they are trained and shown); ``seeds`` restricts the records shown (the grid runs
    every seed of the profile); ``user``: run it on a user's own dataset (:func:`csta_lib.runs.experiments.
    user_data`) instead. Failed runs raise: a book page must not silently show a partial table.
    """
    store_dir = Path(store_dir) if store_dir else store.DEFAULT_STORE_DIR
    chosen = list(datasets) if datasets else None
    summary = grid.run_grid(experiment, profile, engine="local", store=store_dir, progress=False,
                            device=training.resolve_device(device or None), datasets=chosen, user=user)
    if summary["failed"]:
        first = summary["failed_runs"][0]
        raise RuntimeError(f"{summary['failed']} run(s) of {experiment}/{profile} failed; first: "
                           f"{first['run']}: {first['error']}")
    records = grid.records_for(experiment, profile, store_dir, datasets=chosen, user=user)
    records = [r for r in records if seeds is None or r["seed"] in seeds]
    return records, summary


def summary_spreads(summary: Any, policy: str, label_of: Mapping[str, str] | None = None
                    ) -> dict[str, dict[str, tuple[statistics.Spread, statistics.Spread]]]:
    """``{row label: {dataset: (τ spread, ρ spread)}}`` from a :func:`csta_lib.runs.store.summary_table` frame for
    one policy (mean, sd, n and 95 % t interval over runs: what a results table shows for this build)."""
    out: dict[str, dict[str, tuple[statistics.Spread, statistics.Spread]]] = {}
    for row in summary[summary["policy"] == policy].to_dict("records"):
        label = (label_of or {}).get(row["variant"], row["variant"])
        out.setdefault(label, {})[row["dataset"]] = (store.row_spread(row, "tau"), store.row_spread(row, "rho"))
    return out


def summary_pairs(summary: Any, policy: str, label_of: Mapping[str, str] | None = None) -> dict[str, dict[str, PAIR]]:
    """``{row label: {dataset: (τ, ρ)}}``: the means over runs of :func:`summary_spreads` (for glued numbers)."""
    return {label: {d: tuple(float("nan") if s.mean is None else s.mean for s in pair)  # type: ignore[misc]
                    for d, pair in by_dataset.items()}
            for label, by_dataset in summary_spreads(summary, policy, label_of).items()}


def experiment_checkpoint(experiment: str, profile: str, store_dir: str | Path | None = None, dataset: str = "tvsum",
                          policy: str = "last", device: str | None = None,
                          user: DataSource | None = None) -> tuple[Path, dict[str, Any]]:
    """The checkpoint (and record) of an experiment's first run on ``dataset`` (lowest split, then seed; of the
    runs of that split and seed, one that selected ``policy``).

    The run comes from :func:`run_experiment`, so it is trained once and then found in the store: the
    video chapter summarises with the very model the Table 1 chapter evaluates. ``policy`` falls back to
    the first policy the run selected if it was not run. ``user``: the runs on a user's own dataset (then
    ``dataset`` is its name).
    """
    records, _ = run_experiment(experiment, profile, store_dir, [dataset], None, device, user)
    if not records:
        raise CstaInputError(f"{experiment} at profile {profile!r} has no {dataset} run")
    # Table 1 trains two runs per split and seed (official selection, held-out validation): choose by what they
    # are, never by their content keys, which depend on the data files' bytes.
    record = min(records, key=lambda r: (r["split"]["index"], r["seed"], policy not in r.get("selected", {})))
    for name in (policy, *store.POLICIES):
        path = store.resolve_checkpoint(record, name)
        if path is not None:
            return path, record
    raise CstaInputError(f"run {record.get('key')} selected no checkpoint")


def variant_labels(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """``{variant name: the experiment's row label}`` from :func:`csta_lib.runs.grid.records_for` records."""
    return {str(r.get("variant") or r.get("preset")): r.get("_label", r.get("variant")) for r in records}


def num3(value: float) -> str:
    """A number with three decimals for reading (``-0.000`` is written ``0.000``)."""
    return statistics.number_text(value)


#: The words of every spread a results page shows (captions say them once per table).
SPREAD_WORDS = ("mean ± sd over runs (folds × seeds), then the " + statistics.INTERVAL_METHOD
                + "; with one run: n = 1, no interval")


def runs_text(n_runs: int, n_splits: int, n_seeds: int) -> str:
    """``"3 (1 fold × 3 seeds)"``: the number of runs behind a mean."""
    return (f"{n_runs} ({n_splits} fold{'s' if n_splits != 1 else ''} × "
            f"{n_seeds} seed{'s' if n_seeds != 1 else ''})")


def summary_display(summary: Any, labels: Mapping[str, str] | None = None) -> Any:
    """A :func:`csta_lib.runs.store.summary_table` frame for reading, one row per (dataset, row, policy): the
    runs (folds × seeds), per metric ``mean ± sd`` over runs and the 95 % t interval (``n = 1, no interval`` with
    one run), and the mean selected epoch."""
    rows = []
    for r in summary.to_dict("records"):
        row = {"dataset": captions.dataset_name(r["dataset"]), "row": (labels or {}).get(r["variant"], r["variant"]),
               "policy": r["policy"], "runs (folds × seeds)": runs_text(r["n_runs"], r["n_splits"], r["n_seeds"])}
        for metric, name in METRIC_NAMES.items():
            s = store.row_spread(r, metric)
            row[f"{name} mean ± sd"] = statistics.mean_sd_text(s)
            row[f"{name} 95 % CI"] = statistics.interval_text(s)
        row["mean selected epoch"] = f"{float(r['epoch_mean']):.1f}"
        rows.append(row)
    return pd.DataFrame(rows).set_index(["dataset", "row", "policy"])


def split_display(frame: Any, labels: Mapping[str, str] | None = None) -> Any:
    """One row per (dataset, row, policy, fold): :func:`summary_display` of that fold's runs (its seeds). With a
    single row (Table 1's CSTA) the ``row`` level is left out: the caption names it, and the table stays narrow."""
    parts = []
    for fold, part in frame.groupby("split", sort=True):
        shown = summary_display(store.summary_table(part), labels).reset_index()
        shown.insert(3, "fold", str(fold))
        parts.append(shown)
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts)
    index = ["dataset", "row", "policy", "fold"] if table["row"].nunique() > 1 else ["dataset", "policy", "fold"]
    return table.drop(columns=[] if "row" in index else ["row"]).set_index(index).sort_index()


# -------------------------------------------------------------------------------------------------------------
# what the data can show: surrogate or real, and the tables that may (not) hold paper values

PAPER_TABLE_TITLE = "the paper's values"
CHECK_TABLE_TITLE = "this build: surrogate features — pipeline check, not comparable with the paper"
RANDOM_INIT_TABLE_TITLE = "this build: random CNN init — not comparable with the paper"


def runs_on_surrogate(records: Sequence[Mapping[str, Any]]) -> bool:
    """Whether any run trained on surrogate features."""
    return any(bool(r.get("provenance", {}).get("surrogate")) for r in records)


def comparable_with_paper(records: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the runs measure what the paper measured: real features and an ImageNet-initialised CNN in every
    run (a profile may still cut folds, seeds or epochs; the captions say so). Only then may a table hold this
    build's numbers beside the paper's. A user's own dataset (``csta data build``) is never the paper's data."""
    return bool(records) and all(
        not r.get("provenance", {}).get("surrogate") and not r.get("provenance", {}).get("user_dataset")
        and r.get("provenance", {}).get("imagenet_weights")
        for r in records)


def check_table_title(records: Sequence[Mapping[str, Any]]) -> str:
    """The title of the table holding this build's results when they are not comparable with the paper."""
    return CHECK_TABLE_TITLE if runs_on_surrogate(records) or not records else RANDOM_INIT_TABLE_TITLE


def surrogate_signal(records: Sequence[Mapping[str, Any]]) -> float | None:
    """The surrogate features' ``signal`` (how strongly a fixed feature direction carries the ground truth)."""
    for r in records:
        data = r.get("provenance", {}).get("data") or {}
        if r.get("provenance", {}).get("surrogate") and data.get("signal") is not None:
            return float(data["signal"])
    return None


def data_warning(records: Sequence[Mapping[str, Any]], what: str) -> str:
    """The text of the admonition a results chapter opens with: what its numbers ran on and what they can show.

    ``what`` names the chapter's numbers (e.g. "Table 1's rows from training").
    """
    if not records:
        return f"No training run of this chapter is in the store for the chosen datasets; {what} are not shown."
    if runs_on_surrogate(records):
        signal = surrogate_signal(records)
        knob = f" (signal {signal:g})" if signal is not None else ""
        return (f"This build ran on surrogate features{knob}: synthetic features built around the real annotations, "
                "in which a fixed direction of every step's features carries that step's ground-truth score. A "
                "model that can read its input finds the answer there within an epoch or two. "
                f"{what[0].upper() + what[1:]} show that the pipeline trains, selects and evaluates end to end; "
                "they say nothing about how well CSTA or any variant summarizes videos, differences between rows "
                "mean nothing, and they are not comparable with the paper. The paper's values are shown in a "
                "table of their own. Place the real eccv16 feature files (and the ImageNet weights) to reproduce "
                "the paper: `csta data check` lists what is missing and where each file is published.")
    if not comparable_with_paper(records):
        return (f"This build ran on the real features but with a randomly initialised CNN (no ImageNet weights), so "
                f"{what} are not comparable with the paper's; they are shown apart from the paper's values.")
    return (f"This build ran on the real eccv16 GoogLeNet features with ImageNet-initialised CNNs: {what} are "
            "measured under the paper's protocol, within the cuts of the profile stated in each caption, and are "
            "shown beside the paper's values (not on surrogate features).")


def pair_cell(pair: tuple[Any, Any] | None, index: int) -> str:
    """τ (index 0) or ρ (index 1) of a pair, three decimals; "–" when absent or undefined. A value that is a
    :class:`~csta_lib.runs.statistics.Spread` (this build's runs) reads ``mean ± sd [95 % interval]``, or
    ``mean (n = 1, no interval)`` with one run."""
    if pair is None:
        return "–"
    value = pair[index]
    if isinstance(value, statistics.Spread):
        return statistics.spread_text(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return num3(value)


def _runs_cell(pairs: Mapping[str, Any], datasets: Sequence[str]) -> str | None:
    """The number of runs behind a row's spreads on ``datasets`` (``"3"``, or ``"SumMe 3, TVSum 1"`` when they
    differ); None for a row without spreads (the paper's, a level)."""
    counts = {d: pair[0].n for d in datasets if (pair := pairs.get(d)) is not None
              and isinstance(pair[0], statistics.Spread)}
    if not counts:
        return None
    if len(set(counts.values())) == 1:
        return str(next(iter(counts.values())))
    return ", ".join(f"{captions.dataset_name(d)} {n}" for d, n in counts.items())


def _has_spread(pairs: Mapping[str, Any]) -> bool:
    return any(pair is not None and isinstance(pair[0], statistics.Spread) for pair in pairs.values())


def pairs_table(rows: Sequence[tuple[str, str, Mapping[str, tuple[Any, Any] | None]]],
                datasets: Sequence[str]) -> Any:
    """One row per ``(label, source, {dataset: (τ, ρ)})``; columns ``SumMe τ``, ``SumMe ρ``, …, ``source``.

    Values are numbers (the paper's, a level) or :class:`~csta_lib.runs.statistics.Spread` s (this build's runs,
    :func:`summary_spreads`). A table holding spreads has one row per (dataset, row) instead, with columns ``τ``,
    ``ρ``, ``runs (n)`` (– on rows without spreads) and ``source``: a spread cell is long, and four of them side by
    side do not fit the page.
    """
    if any(_has_spread(pairs) for _, _, pairs in rows):
        out = [{"dataset": captions.dataset_name(d), "row": label, "τ": pair_cell(pairs.get(d), 0),
                "ρ": pair_cell(pairs.get(d), 1), "runs (n)": _runs_cell(pairs, [d]) or "–", "source": source}
               for d in datasets for label, source, pairs in rows if pairs.get(d) is not None]
        return pd.DataFrame(out, columns=["dataset", "row", "τ", "ρ", "runs (n)", "source"]).set_index(
            ["dataset", "row"])
    wide = []
    for label, source, pairs in rows:
        row: dict[str, str] = {"row": label}
        for d in datasets:
            for i, metric in enumerate(("τ", "ρ")):
                row[f"{captions.dataset_name(d)} {metric}"] = pair_cell(pairs.get(d), i)
        row["source"] = source
        wide.append(row)
    columns = ["row", *(f"{captions.dataset_name(d)} {m}" for d in datasets for m in ("τ", "ρ")), "source"]
    return pd.DataFrame(wide, columns=columns).set_index("row")


def build_label(label: str, records: Sequence[Mapping[str, Any]]) -> str:
    """A row label of this build's results that says, when they are not comparable with the paper, why:
    ``"CSTA, test-max selection (surrogate features)"`` or ``"... (random CNN init)"``."""
    if runs_on_surrogate(records) or not records:
        return f"{label} ({captions.features_label(True)})"
    if not comparable_with_paper(records):
        return f"{label} (random CNN init)"
    return label


def split_or_merge(build_rows: Sequence[tuple[str, str, Mapping[str, Any]]],
                   paper_rows: Sequence[tuple[str, str, Mapping[str, Any]]],
                   datasets: Sequence[str], comparable: bool,
                   merged_title: str = "this build beside the paper", check_title: str = CHECK_TABLE_TITLE
                   ) -> list[tuple[str, Any]]:
    """The tables a results chapter shows, as ``[(title, frame), ...]``.

    The rule: a table never holds a number trained on surrogate features (or with a random CNN) beside a paper
    value. When the runs are ``comparable`` (:func:`comparable_with_paper`) one merged table holds both; otherwise
    the paper's values (and numbers computed from the annotations alone, which are comparable) get their own table
    and this build's training results another, titled ``check_title`` (:func:`check_table_title`: a pipeline
    check on surrogate features).
    """
    if comparable:
        return [(merged_title, pairs_table([*build_rows, *paper_rows], datasets))]
    tables = []
    if paper_rows:
        tables.append((PAPER_TABLE_TITLE, pairs_table(paper_rows, datasets)))
    if build_rows:
        tables.append((check_title, pairs_table(build_rows, datasets)))
    return tables


def paper_rows(table: Mapping[str, Mapping[str, tuple[float, float] | None]], datasets: Sequence[str],
               source: str = "paper (as printed)") -> list[tuple[str, str, dict[str, Any]]]:
    """The paper's rows that report a number for at least one of ``datasets``."""
    return [(label, source, {d: pairs.get(d) for d in datasets}) for label, pairs in table.items()
            if any(pairs.get(d) is not None for d in datasets)]


# -------------------------------------------------------------------------------------------------------------
# reference levels under the runs' own protocol: Random, the ground-truth score, Human


def _run_evaluator(record: Mapping[str, Any]) -> Any:
    """The evaluator a run was scored with (its data file, its protocol): the training's own scorer."""
    data = load_eccv16(record["provenance"]["data_file"], record["dataset"])
    return dataset_evaluator(data, protocol=record.get("protocol", {}).get("rank"))


def protocol_levels(records: Sequence[Mapping[str, Any]], n_draws: int = 100, seed: int = 0
                    ) -> dict[str, dict[str, Any]]:
    """Per dataset: the Random and ground-truth-score levels on the runs' test videos, under the runs' protocol.

    For every fold the runs tested on, :func:`csta_lib.evaluation.random_baseline` (``n_draws`` uniform random
    score draws) and :func:`csta_lib.evaluation.upper_bound` (the annotated ``gtscore`` scored as a prediction)
    are computed on that fold's test videos with the evaluator the training used; like the runs, the dataset's
    level is the mean over folds. Returns ``{dataset: {"protocol", "folds", "n_test_videos", "random": (τ, ρ),
    "random_std_tau", "gt": (τ, ρ), "gt_f1", "gt_per_video": {key: {...}}}}``.
    """
    out: dict[str, dict[str, Any]] = {}
    for dataset in sorted({r["dataset"] for r in records}):
        mine = [r for r in records if r["dataset"] == dataset]
        evaluator = _run_evaluator(mine[0])
        folds = {r["split"]["index"]: tuple(r["split"]["test_keys"]) for r in mine}
        rnd, gt, gt_videos = [], [], {}
        for _, keys in sorted(folds.items()):
            sub = DatasetEvaluator(references={k: evaluator.references[k] for k in keys}, dataset_name=dataset,
                                   protocol=evaluator.protocol)
            rnd.append(random_baseline(sub, n_draws=n_draws, seed=seed))
            bound = upper_bound(sub)
            gt.append(bound)
            gt_videos.update(bound["per_video"])
        mean = lambda xs, k: float(np.mean([x[k] for x in xs]))  # noqa: E731
        out[dataset] = {
            "protocol": evaluator.protocol, "folds": sorted(folds), "n_test_videos": sum(map(len, folds.values())),
            "n_draws": n_draws, "random": (mean(rnd, "tau"), mean(rnd, "rho")),
            "random_std_tau": float(np.mean([x["tau_std"] for x in rnd])),
            "gt": (mean(gt, "tau"), mean(gt, "rho")), "gt_f1": mean(gt, "f1"), "gt_per_video": gt_videos,
        }
    return out


def human_levels(datasets: Sequence[str], protocol: str = "otani") -> dict[str, dict[str, Any]]:
    """The Human row recomputed from the annotations (every video, Otani's protocol as the paper's Table 1):
    ``{dataset: {"pair": (τ, ρ), "n_videos", "protocol"}}`` (:func:`csta_lib.evaluation.dataset_human_baseline`)."""
    out = {}
    for d in datasets:
        r = dataset_human_baseline(d, protocol, user_scores=annotation_user_scores(d))
        out[d] = {"pair": (r["tau"], r["rho"]), "n_videos": r["n_videos"], "protocol": protocol}
    return out


# -------------------------------------------------------------------------------------------------------------
# per-video results and downloadable run records


def per_video_frame(records: Sequence[Mapping[str, Any]], policies: Sequence[str] | None = None) -> Any:
    """One row per (run, selection policy, test video): τ, ρ, F1 of the selected epoch (long format)."""


    rows = []
    for r in records:
        for policy in policies or store.POLICIES:
            sel = r.get("selected", {}).get(policy)
            if not sel:
                continue
            for video, m in (sel.get("per_video") or {}).items():
                rows.append({
                    "key": r.get("key"), "variant": r.get("variant"), "row": r.get("_label", r.get("variant")),
                    "dataset": r["dataset"], "fold": r["split"]["index"], "seed": r["seed"], "policy": policy,
                    "epoch": sel.get("epoch"), "video": video, "tau": _float(m.get("tau")),
                    "rho": _float(m.get("rho")), "f1": _float(m.get("f1")),
                    "surrogate": bool(r.get("provenance", {}).get("surrogate")),
                })
    columns = ["key", "variant", "row", "dataset", "fold", "seed", "policy", "epoch", "video", "tau", "rho", "f1",
               "surrogate"]
    return pd.DataFrame(rows, columns=columns)


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


def video_names(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """``{dataset: {key: the video's name}}`` from the runs' data files (SumMe titles, TVSum YouTube ids)."""
    out: dict[str, dict[str, str]] = {}
    for r in records:
        if r["dataset"] not in out:
            data = load_eccv16(r["provenance"]["data_file"], r["dataset"])
            out[r["dataset"]] = {k: str(data[k].video_name) for k in data}
    return out


def per_video_display(long: Any, levels: Mapping[str, Mapping[str, Any]] | None = None,
                      names: Mapping[str, Mapping[str, str]] | None = None) -> Any:
    """Per test video and selection policy: τ / ρ / F1 (the mean over seeds when there are several, with their
    number in ``seeds``), beside the ground-truth score's τ under the same protocol (from ``levels``); ``names``
    (:func:`video_names`) adds each video's name. One row per (dataset, fold, video, policy), so that the table
    stays narrow whatever the number of policies."""
    if long.empty:
        return pd.DataFrame()
    rows = []
    for (dataset, fold, video, policy), part in long.groupby(["dataset", "fold", "video", "policy"], sort=False):
        row: dict[str, Any] = {"dataset": captions.dataset_name(dataset), "fold": str(fold), "video": video,
                               "policy": policy}
        if names is not None:
            row["name"] = (names.get(dataset) or {}).get(video, "")
        for m, name in METRIC_NAMES.items():
            row[name] = _fmt(part[m].mean())
        row["seeds"] = str(part["seed"].nunique())
        gt = ((levels or {}).get(dataset, {}).get("gt_per_video") or {}).get(video)
        if gt is not None:
            row["ground-truth score τ"] = _fmt(gt["tau"])
        rows.append(row)
    frame = pd.DataFrame(rows)
    order = {p: i for i, p in enumerate(store.POLICIES)}
    frame = frame.sort_values(["dataset", "video", "policy"], key=lambda c: c.map(video_sort_key) if c.name == "video"
                              else c.map(order) if c.name == "policy" else c)
    return frame.set_index(["dataset", "fold", "video", "policy"]).fillna("–")


def _fmt(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else num3(value)


def run_rows(records_by_experiment: Mapping[str, Sequence[Mapping[str, Any]]]) -> Any:
    """One row per (distinct run, selection policy) over several experiments: the run's protocol and result.

    A run shared by experiments (e.g. CSTA in Table 1, Table 2 and the deviations) is one row whose
    ``experiments`` and ``rows`` columns list them all.
    """
    runs: dict[str, dict[str, Any]] = {}
    where: dict[str, list[str]] = {}
    for experiment, records in records_by_experiment.items():
        for r in records:
            runs.setdefault(r["key"], dict(r))
            where.setdefault(r["key"], []).append(f"{experiment}: {r.get('_label', r.get('variant'))}")
    rows = []
    for key, r in runs.items():
        prov, split = r.get("provenance", {}), r.get("split", {})
        for policy, sel in r.get("selected", {}).items():
            rows.append({
                "key": key, "experiments": "; ".join(where[key]), "variant": r.get("variant"),
                "preset": r.get("preset"), "dataset": r["dataset"], "fold": split.get("index"), "seed": r.get("seed"),
                "epochs": r.get("n_epochs"), "val_fraction": r.get("selection", {}).get("val_fraction"),
                "n_train_videos": len(split.get("train_keys", ())), "n_val_videos": len(split.get("val_keys", ())),
                "n_test_videos": len(split.get("test_keys", ())), "policy": policy,
                "selected_epoch": sel.get("epoch"), "tau": _float(sel.get("test_tau")),
                "rho": _float(sel.get("test_rho")), "f1": _float(sel.get("test_f1")),
                "protocol": r.get("protocol", {}).get("rank"), "surrogate": bool(prov.get("surrogate")),
                "cnn_init": prov.get("cnn_init"), "data_sha256": prov.get("data_sha256"),
                "device": r.get("device"), "wall_time_s": r.get("wall_time_s"), "created_utc": r.get("created_utc"),
            })
    return pd.DataFrame(rows)


def write_run_downloads(records_by_experiment: Mapping[str, Sequence[Mapping[str, Any]]], folder: str | Path,
                        stem: str, profile: str | None = None) -> dict[str, Path]:
    """Write the runs' records for readers to download: ``{stem}_runs.json`` (every full record, once each, with
    the experiments it belongs to), ``{stem}_runs.csv`` (:func:`run_rows`) and ``{stem}_per_video.csv``
    (:func:`per_video_frame`). Written atomically; returns ``{"json", "csv", "per_video"}`` paths."""



    folder = Path(folder)
    unique: dict[str, dict[str, Any]] = {}
    for experiment, records in records_by_experiment.items():
        for r in records:
            entry = unique.setdefault(r["key"], {k: v for k, v in r.items() if not k.startswith("_")} | {
                "experiments": []})
            entry["experiments"].append({"experiment": experiment, "row": r.get("_label", r.get("variant"))})
    payload = {"format": "csta-book-runs/1", "profile": profile, "n_runs": len(unique), "runs": list(unique.values())}
    paths = {"json": folder / f"{stem}_runs.json", "csv": folder / f"{stem}_runs.csv",
             "per_video": folder / f"{stem}_per_video.csv"}
    write_bytes_atomic(paths["json"], json.dumps(payload, indent=1, allow_nan=True, default=str).encode())
    write_bytes_atomic(paths["csv"], run_rows(records_by_experiment).to_csv(index=False).encode())
    labelled = [dict(r, _label=r.get("_label")) for r in
                {r["key"]: r for recs in records_by_experiment.values() for r in recs}.values()]
    per_video = per_video_frame(labelled) if labelled else pd.DataFrame()
    write_bytes_atomic(paths["per_video"], per_video.to_csv(index=False).encode())
    return paths


def default_downloads_dir() -> Path:
    """Where a notebook writes its downloadable files when the build does not say: beside the executed
    notebooks of the project's book (``book/_generated/downloads``)."""
    return PROJECT_ROOT / "book" / "_generated" / "downloads"


def build_records(profile: str, store_dir: str | Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """The stored records of every experiment at ``profile`` (only looked up, nothing is trained; runs not
    computed yet are left out): what "all runs of the build" holds once every results chapter has run."""
    store_dir = Path(store_dir) if store_dir else store.DEFAULT_STORE_DIR
    if not store_dir.is_dir():
        return {}
    return {name: grid.records_for(name, profile, store_dir) for name in EXPERIMENTS}


def run_sources(records: Sequence[Mapping[str, Any]]) -> Any:
    """Which runs each selection policy's numbers come from: per (policy, dataset), the kind of run, its
    validation hold-out, how many videos trained / validated / tested, the epochs and the number of runs."""
    rows = []
    for policy in ("test-max", "last", "val"):
        for dataset in sorted({r["dataset"] for r in records}):
            mine = [r for r in records if r["dataset"] == dataset and policy in r.get("selected", {})]
            if not mine:
                continue
            vf = sorted({float(r.get("selection", {}).get("val_fraction") or 0.0) for r in mine})
            def count(name: str, mine: list = mine) -> str:
                return "/".join(str(n) for n in sorted({len(r["split"].get(name, ())) for r in mine}))

            rows.append({
                "policy": policy, "dataset": captions.dataset_name(dataset),
                "runs": "official protocol: all training videos train" if vf == [0.0]
                else f"separate runs: {'/'.join(f'{v:.0%}' for v in vf)} of the training videos held out",
                "training videos": count("train_keys"), "validation videos": count("val_keys"),
                "test videos": count("test_keys"),
                "epochs": "/".join(str(e) for e in sorted({r["n_epochs"] for r in mine})),
                "runs (folds × seeds)": str(len(mine)),
            })
    return pd.DataFrame(rows).set_index(["policy", "dataset"]) if rows else pd.DataFrame()


def rescore(record: Mapping[str, Any], policy: str, protocol: str, device: str = "cpu") -> dict[str, dict[str, Any]]:
    """Score a run's selected checkpoint again on its test videos under another τ/ρ ``protocol``: per video
    ``{"tau", "rho", "f1"}``. Used to tell apart models that ``csta_summe`` cannot (it sees only the binary
    knapsack summary, so models selecting the same shots get identical numbers)."""


    path = store.resolve_checkpoint(record, policy)
    if path is None:
        raise CstaInputError(f"run {record.get('key')} has no {policy} checkpoint")
    model, _ = load_checkpoint(path, map_location=device)
    data = load_eccv16(record["provenance"]["data_file"], record["dataset"])
    keys = list(record["split"]["test_keys"])
    with torch.inference_mode():
        scores = {k: model(torch.tensor(np.array(data[k].features, dtype=np.float32), device=device))
                  .float().cpu().numpy() for k in keys}
    evaluator = dataset_evaluator(data, protocol=protocol)
    return evaluator.evaluate(scores, keys)


# -------------------------------------------------------------------------------------------------------------
# the rows and texts of the results chapters (so the notebooks stay a few lines per cell)

ANNOTATIONS_SOURCE = "this book, from the annotations"


def level_videos(levels: Mapping[str, Mapping[str, Any]], datasets: Sequence[str]) -> str:
    """Which videos the levels were computed on: ``"the runs' test videos: SumMe 5 of fold 0, TVSum 10 of fold 0"``."""
    parts = [f"{captions.dataset_name(d)} {levels[d]['n_test_videos']} of fold"
             f"{'s' if len(levels[d]['folds']) > 1 else ''} {captions.int_ranges(levels[d]['folds'])}"
             for d in datasets if d in levels]
    return "the runs' test videos: " + ", ".join(parts)


def level_rows(levels: Mapping[str, Mapping[str, Any]], datasets: Sequence[str], where: str | None = None
               ) -> list[tuple[str, str, dict[str, Any]]]:
    """The Random and ground-truth-score rows (:func:`protocol_levels`) as table rows; the label says on which
    videos they were computed (``where``, by default :func:`level_videos`)."""
    where = where or level_videos(levels, datasets)
    return [(f"{name} (this protocol, {where})", ANNOTATIONS_SOURCE,
             {d: levels[d][key] for d in datasets if d in levels})
            for name, key in (("Random", "random"), ("ground-truth score", "gt"))]


def level_marks(levels: Mapping[str, Mapping[str, Any]], datasets: Sequence[str]) -> dict[str, float]:
    """``{"Random, SumMe": τ, "ground-truth score, SumMe": τ, ...}``: the reference lines of a τ figure."""
    marks = {}
    for d in datasets:
        if d in levels:
            marks[f"Random, {captions.dataset_name(d)}"] = float(levels[d]["random"][0])
            marks[f"ground-truth score, {captions.dataset_name(d)}"] = float(levels[d]["gt"][0])
    return marks


def levels_text(levels: Mapping[str, Mapping[str, Any]], datasets: Sequence[str]) -> str:
    """How the Random and ground-truth-score levels were computed, for captions."""
    return "; ".join(
        f"{captions.dataset_name(d)}: protocol {levels[d]['protocol']} on the {levels[d]['n_test_videos']} test "
        f"video(s) of fold(s) {captions.int_ranges(levels[d]['folds'])}, Random = mean of {levels[d]['n_draws']} "
        "uniform random score draws" for d in datasets if d in levels)


def _policy_sources() -> dict[str, str]:
    return {"test-max": "this build: all training videos", "last": "this build: all training videos",
            "val": f"this build: separate runs, {HELD_OUT.val_fraction:.0%} held out"}


def table1_tables(records: Sequence[Mapping[str, Any]], datasets: Sequence[str],
                  levels: Mapping[str, Mapping[str, Any]], human: Mapping[str, Mapping[str, Any]],
                  paper_table: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Table 1 as the page shows it: ``[(caption, frame), ...]``, split or merged by :func:`split_or_merge`.

    The paper's rows come with three rows this book computes from the annotations alone (Human recomputed,
    Random and ground-truth score under this protocol), which are comparable with the paper on any build; this
    build's CSTA rows (one per selection policy) go into a table of their own unless the runs are comparable.
    """
    summary = store.summary_table(store.results_frame(records))
    sources = _policy_sources()
    run_rows = [(build_label(f"CSTA, {policy} selection", records), sources[policy],
                 summary_spreads(summary, policy).get("paper", {}))
                for policy in store.POLICIES if any(policy in r.get("selected", {}) for r in records)]
    annotation_rows = [("Human (recomputed, Otani's protocol, all videos)", ANNOTATIONS_SOURCE,
                        {d: human[d]["pair"] for d in datasets}),
                       *level_rows(levels, datasets)]
    human_text = ", ".join(f"{human[d]['n_videos']} {captions.dataset_name(d)}" for d in datasets)
    paper_caption = ("The paper's Table 1 as printed (real features, ImageNet-initialised GoogLeNet, test-max "
                     "selection, 5 folds), with rows this book computes from the annotations only: Human over "
                     f"{human_text} videos; {levels_text(levels, datasets)}. τ / ρ.")
    run_caption = (f"test-max and last rows: {captions.protocol_caption(records, 'test-max')}. val row: "
                   f"{captions.protocol_caption(records, 'val')}. τ / ρ of this build: {SPREAD_WORDS}.")
    comparable = comparable_with_paper(records)
    out = []
    for title, frame in split_or_merge(run_rows, [*paper_rows(paper_table, datasets), *annotation_rows], datasets,
                                       comparable, merged_title="Table 1: this build beside the paper",
                                       check_title=check_table_title(records)):
        text = (paper_caption if title == PAPER_TABLE_TITLE else
                f"{paper_caption} This build: {run_caption}" if comparable else run_caption)
        out.append((f"{title[0].upper() + title[1:]}. {text}", frame))
    return out


def omitted_methods_text(paper_table: Mapping[str, Any], measured: Sequence[str]) -> str:
    """Which of the paper's Table 1 rows the book does not measure itself (printed as the paper reports them)."""
    omitted = [m for m in paper_table if m not in measured]
    return (f"Of the paper's rows, this book trains CSTA and the GoogLeNet baseline (the Table 2 and Figure 4 "
            f"chapters) and recomputes Human and Random from the annotations; {', '.join(omitted)} are other "
            "authors' methods, printed as the paper reports them and not rerun here.")


def surrogate_lines(results_by_dataset: Mapping[str, float], levels: Mapping[str, Mapping[str, Any]],
                    what: str) -> str:
    """Markdown bullets: ``what`` (a τ per dataset) against the ground-truth-score and Random levels."""
    lines = []
    for d, tau in results_by_dataset.items():
        lv = levels[d]
        lines.append(f"- {captions.dataset_name(d)}: {what} τ {num3(tau)}; ground-truth score {num3(lv['gt'][0])}; "
                     f"Random {num3(lv['random'][0])} (± {lv['random_std_tau']:.3f} over draws), all under "
                     f"`{lv['protocol']}` "
                     "on the same test videos.")
    return "\n".join(lines)


def below_random_text(bars: Any, levels: Mapping[str, Mapping[str, Any]], label: str = "CNN") -> str:
    """Markdown bullets: per dataset, how many bars (rows of ``bars`` with ``dataset`` key and ``tau``) lie below
    the Random level under the same protocol."""
    lines = []
    for d in levels:
        part = bars[bars["dataset_key"] == d]
        below = sorted(part[part["tau"] < levels[d]["random"][0]][label])
        lines.append(f"- {captions.dataset_name(d)}: Random reaches τ {num3(levels[d]['random'][0])} under "
                     f"`{levels[d]['protocol']}`, the ground-truth score {num3(levels[d]['gt'][0])}; "
                     f"{len(below)} of the "
                     f"{len(part)} {label}s are below Random" + (f" ({', '.join(below)})." if below else "."))
    return "\n".join(lines)


def repeated_values_text(long: Any, dataset: str = "summe") -> str:
    """Why rows can repeat the same SumMe τ: how often they do here (mean and per video), and the reason
    (``csta_summe`` sees only the binary summary)."""
    part = long[long["dataset"] == dataset]
    taus = part.groupby("row", sort=False)["tau"].mean().round(6)
    repeated = int(taus.duplicated(keep=False).sum())
    per_video = part.groupby(["video", "row"], sort=False)["tau"].mean().round(6).reset_index()
    videos = per_video.groupby("video")["tau"].apply(lambda t: bool(t.duplicated().any()))
    name = captions.dataset_name(dataset)
    if repeated or videos.any():
        lead = (f"On {name}, {repeated} of the {len(taus)} rows share their mean τ with another row, and on "
                f"{int(videos.sum())} of the {len(videos)} test videos two or more rows reach exactly the same τ.")
    else:
        lead = f"No two rows reach exactly the same {name} τ in this build, but they can."
    return (f"{lead} Identical numbers are not a copying error: under `csta_summe`, the paper's SumMe protocol, a "
            "model's scores are first turned into a binary 15 % summary (the knapsack over KTS shots), and τ and ρ "
            "compare that 0/1 vector with the users' summaries. Two models that select the same shots get exactly "
            "the same τ, ρ and F1 on that video, however different their scores are; on the few test videos of a "
            "small build this happens often. The per-video values below, and the same checkpoints scored under "
            "Otani's protocol (which reads the scores themselves, not the summary), tell the rows apart.")


def per_video_by_row(long: Any, dataset: str = "summe") -> Any:
    """τ per (row, test video) of one dataset, formatted: rows in experiment order, videos in numeric order."""
    part = long[long["dataset"] == dataset]
    table = part.pivot_table(index="row", columns="video", values="tau", aggfunc="mean", sort=False)
    table = table[sorted(table.columns, key=video_sort_key)]
    return table.map(_fmt)


def rescored_table(records: Sequence[Mapping[str, Any]], protocol: str = "otani", dataset: str = "summe",
                   policy: str = "test-max") -> Any:
    """Per row: the rows' ``policy`` checkpoints re-scored under ``protocol``, each run's τ the mean over its test
    videos, shown as the mean ± sd over runs with the 95 % t interval (:data:`SPREAD_WORDS`)."""
    taus: dict[str, list[float]] = {}
    for r in records:
        if r["dataset"] == dataset and policy in r.get("selected", {}):
            scored = rescore(r, policy, protocol)
            taus.setdefault(build_label(r.get("_label", r.get("variant")), records), []).append(
                float(np.mean([v["tau"] for v in scored.values()])))
    column = f"{captions.dataset_name(dataset)} τ, {protocol} protocol"
    spreads = {label: statistics.spread(values) for label, values in taus.items()}
    return pd.DataFrame({"row": list(spreads), column: [statistics.spread_text(v) for v in spreads.values()],
                         "runs (n)": [str(v.n) for v in spreads.values()]}).set_index("row")


# -------------------------------------------------------------------------------------------------------------
# judging a number: paired tests between rows, the selection's optimism, the distance to the paper

#: How the paired-test tables read a difference, in words (captions say it once per table).
PAIRED_WORDS = (f"difference over the runs both rows share (same fold and seed), mean ± sd over those pairs, "
                f"{statistics.INTERVAL_METHOD}; reading: {statistics.READING_RULE}")


def ablation_comparisons(variants: Sequence[str], policy: str = "test-max"
                         ) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """Table 2's paired tests: each row against the row before it and against the first (the baseline)."""
    out = []
    for i, variant in enumerate(variants[1:], start=1):
        out.append(((variant, policy), (variants[i - 1], policy)))
        if i > 1:
            out.append(((variant, policy), (variants[0], policy)))
    return out


def reference_comparisons(variants: Sequence[str], reference: str, policy: str = "test-max"
                          ) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """Each row against one reference row (Figure 4: each CNN against GoogLeNet; the deviations: each switch
    against the code as written)."""
    return [((v, policy), (reference, policy)) for v in variants if v != reference]


def policy_comparisons(variant: str) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """Table 1's paired tests of the selection policies: test-max − val, test-max − last, val − last."""
    return [((variant, "test-max"), (variant, "val")), ((variant, "test-max"), (variant, "last")),
            ((variant, "val"), (variant, "last"))]


def _side_name(variant: str, policy: str, other: tuple[str, str], labels: Mapping[str, str]) -> str:
    """How a paired table names one side: the row label, the policy when the rows are one variant's policies."""
    if variant == other[0]:
        return f"{policy} selection"
    label = labels.get(variant, variant)
    return label if policy == other[1] else f"{label}, {policy}"


def paired_display(table: Any, labels: Mapping[str, str] | None = None) -> Any:
    """A :func:`csta_lib.runs.store.paired_table` for reading: one row per (dataset, coefficient, row, compared
    with): the pairs, the mean difference ± sd, its 95 % interval and the reading."""
    labels = labels or {}
    rows = []
    for r in table.to_dict("records"):
        a, b = (r["variant_a"], r["policy_a"]), (r["variant_b"], r["policy_b"])
        diff = statistics.Spread(None if math.isnan(r["mean"]) else r["mean"],
                                 None if math.isnan(r["sd"]) else r["sd"], int(r["n"]),
                                 None if math.isnan(r["ci_low"]) else r["ci_low"],
                                 None if math.isnan(r["ci_high"]) else r["ci_high"])
        rows.append({"dataset": captions.dataset_name(r["dataset"]), "coefficient": METRIC_NAMES[r["metric"]],
                     "row": _side_name(*a, b, labels), "compared with": _side_name(*b, a, labels),
                     "pairs (n)": str(int(r["n"])), "difference mean ± sd": statistics.mean_sd_text(diff),
                     "95 % CI": statistics.interval_text(diff), "reading": r["reading"]})
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).set_index(["dataset", "coefficient", "row", "compared with"])


def paired_tables(records: Sequence[Mapping[str, Any]],
                  comparisons: Sequence[tuple[tuple[str, str], tuple[str, str]]]) -> Any:
    """:func:`paired_display` of ``comparisons`` between the rows of ``records`` (τ and ρ), rows labelled with the
    experiment's labels (and, when not comparable with the paper, :func:`build_label`'s note)."""
    labels = {v: build_label(label, records) for v, label in variant_labels(records).items()}
    frame = store.results_frame(records)
    return paired_display(store.paired_table(frame, comparisons), labels)


def selection_optimism(records: Sequence[Mapping[str, Any]]) -> Any:
    """How much higher the test-max-selected score is than the val-selected one, per held-out run.

    A held-out run selects its ``val`` epoch on the validation videos, but its record holds every epoch's test
    τ and ρ, so the epoch the official test-max rule would pick *in the same run* is known
    (:func:`csta_lib.runs.selection.select_epochs`). The difference of the test scores at the two epochs is the
    optimism of selecting on the test videos, with the training set held fixed. One row per run: dataset, fold,
    seed, both epochs, and per coefficient the test score at each epoch and their difference.
    """
    rows = []
    for r in records:
        chosen = r.get("selected", {}).get("val")
        history = r.get("epochs") or []
        if not chosen or not history or not chosen.get("epoch"):
            continue
        test_max = select_epochs(history, ["test-max"])["test-max"] or len(history)
        row: dict[str, Any] = {"dataset": r["dataset"], "fold": r["split"]["index"], "seed": r["seed"],
                               "val epoch": int(chosen["epoch"]), "test-max epoch": test_max}
        for metric in ("tau", "rho"):
            at_test_max = _float(history[test_max - 1].get(f"test_{metric}"))
            at_val = _float(history[int(chosen["epoch"]) - 1].get(f"test_{metric}"))
            row[f"{metric} at test-max"], row[f"{metric} at val"] = at_test_max, at_val
            row[f"{metric} optimism"] = at_test_max - at_val
        rows.append(row)
    return pd.DataFrame(rows)


def optimism_display(optimism: Any) -> Any:
    """Per dataset and coefficient: the optimism of :func:`selection_optimism` over runs (paired: both epochs of
    one run), its 95 % interval and the reading."""
    rows = []
    for dataset, part in optimism.groupby("dataset", sort=True) if len(optimism) else ():
        for metric in ("tau", "rho"):
            keys = list(zip(part["fold"], part["seed"], strict=True))
            paired = statistics.paired_difference(dict(zip(keys, part[f"{metric} at test-max"], strict=True)),
                                                  dict(zip(keys, part[f"{metric} at val"], strict=True)))
            rows.append({"dataset": captions.dataset_name(dataset), "coefficient": METRIC_NAMES[metric],
                         "runs (n)": str(paired.difference.n),
                         "test-max − val, mean ± sd": statistics.mean_sd_text(paired.difference),
                         "95 % CI": statistics.interval_text(paired.difference), "reading": paired.reading})
    return pd.DataFrame(rows).set_index(["dataset", "coefficient"]) if rows else pd.DataFrame()


def optimism_runs_display(optimism: Any) -> Any:
    """:func:`selection_optimism`'s per-run rows, formatted for reading."""
    if not len(optimism):
        return pd.DataFrame()
    out = optimism.assign(dataset=optimism["dataset"].map(captions.dataset_name))
    for column in [c for c in out.columns if c.startswith(("tau", "rho"))]:
        name = column.replace("tau", "τ").replace("rho", "ρ")
        out[name] = [num3(v) for v in out.pop(column)]
    return out.astype({"fold": str, "seed": str, "val epoch": str, "test-max epoch": str}).set_index(
        ["dataset", "fold", "seed"])


def comparison_reading(row: Mapping[str, Any]) -> str:
    """The sentence of one :func:`paper_comparison` row."""
    if row["surrogate"]:
        return "surrogate features: not compared with the paper"
    prefix = "" if row["comparable_with_paper"] else "random CNN init, not the paper's setting: "
    if row["paper_inside_ci"] is None:
        return prefix + f"n = {row['n']}, {statistics.NO_INTERVAL}: the paper's value cannot be placed"
    where = "inside" if row["paper_inside_ci"] else "outside"
    distance = row["paper_distance_sd"]
    far = f" ({distance:+.1f} sd from this build's mean)" if distance is not None else ""
    return prefix + f"the paper's value lies {where} this build's 95 % interval{far}"


def paper_comparison(records: Sequence[Mapping[str, Any]], policy: str = "test-max") -> dict[str, Any]:
    """Distance to the paper (``csta results compare`` and the Table 1 page): per dataset and coefficient, this
    build's CSTA runs under ``policy`` (mean, sd, n, 95 % t interval) beside the paper's Table 1 value and the
    public retrain (:data:`csta_lib.book.paper.PUBLIC_RETRAIN`), and whether each lies inside the interval.

    ``paper_distance_sd`` is ``(paper − mean) / sd`` in units of the run-to-run sd (one fold, one seed); the
    paper's value is a mean over 5 folds, whose own spread is smaller than one run's, so this measures how unusual
    the paper's number would be as one of this build's runs. On surrogate features nothing is compared
    (``paper_inside_ci`` and the distances are None); with a random CNN init on real features the numbers are
    computed and the row says it is not the paper's setting. Returns
    ``{"experiment", "policy", "interval", "paper_source", "public_retrain_source", "surrogate", "note", "rows"}``.
    """
    csta = EXPERIMENTS["table1"].variants[0].name
    mine = [r for r in records if (r.get("variant") or r.get("preset")) == csta and policy in r.get("selected", {})]
    frame = store.results_frame(mine, [policy])
    rows = []
    for dataset in DATASETS:
        runs = [r for r in mine if r["dataset"] == dataset]
        if not runs:
            continue
        surrogate, comparable = runs_on_surrogate(runs), comparable_with_paper(runs)
        part = frame[frame["dataset"] == dataset]
        for index, coefficient in enumerate(("tau", "rho")):
            s = statistics.spread(part[coefficient])
            published = paper.TABLE1["CSTA"][dataset]
            assert published is not None  # the paper reports CSTA on both datasets
            value, retrain = published[index], paper.PUBLIC_RETRAIN[dataset][index]
            row = {"dataset": dataset, "coefficient": coefficient, "policy": policy,
                   "protocol": ",".join(sorted(set(part["protocol"]))), "n_folds": int(part["split"].nunique()),
                   "n_seeds": int(part["seed"].nunique()), **s.as_dict(), "paper": value, "public_retrain": retrain,
                   "surrogate": surrogate, "comparable_with_paper": comparable,
                   "paper_inside_ci": None if surrogate else s.contains(value),
                   "public_retrain_inside_ci": None if surrogate else s.contains(retrain),
                   "paper_minus_mean": None if surrogate or s.mean is None else value - s.mean,
                   "paper_distance_sd": None if surrogate else statistics.distance_in_sd(s, value)}
            row["reading"] = comparison_reading(row)
            rows.append(row)
    any_surrogate = any(r["surrogate"] for r in rows)
    note = ("surrogate features: these runs compare nothing with the paper; place the real eccv16 feature files "
            "and the ImageNet weights to compare" if any_surrogate else
            "the interval is this build's uncertainty about its own mean; the paper's value is one result with a "
            "spread of its own (not reported), so a value outside the interval differs by more than these runs' "
            "noise, and a value inside it is not shown to be equal")
    return {"experiment": "table1", "policy": policy, "interval": statistics.INTERVAL_METHOD,
            "paper_source": "the paper's Table 1, CSTA row (test-max selection, 5 folds)",
            "public_retrain_source": paper.PUBLIC_RETRAIN_SOURCE, "surrogate": any_surrogate, "note": note,
            "rows": rows}


def distance_tables(comparison: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The Table 1 page's "Distance to the paper" tables, ``[(caption, frame), ...]``.

    Rows comparable with the paper get one table with the paper's value, the retrain and whether they lie inside
    the interval; rows that are not (surrogate features, random CNN init) get a table without any paper value,
    and the paper's values and the retrain one of their own (a surrogate number never shares a table with the
    paper's).
    """
    def spread_of(r: Mapping[str, Any]) -> statistics.Spread:
        return statistics.Spread(r["mean"], r["std"], r["n"], r["ci_low"], r["ci_high"])

    def base(r: Mapping[str, Any]) -> dict[str, str]:
        return {"dataset": captions.dataset_name(r["dataset"]), "coefficient": METRIC_NAMES[r["coefficient"]],
                "runs (folds × seeds)": runs_text(r["n"], r["n_folds"], r["n_seeds"]),
                "mean ± sd": statistics.mean_sd_text(spread_of(r)), "95 % CI": statistics.interval_text(spread_of(r))}

    index = ["dataset", "coefficient"]
    real = [r for r in comparison["rows"] if r["comparable_with_paper"]]
    other = [r for r in comparison["rows"] if not r["comparable_with_paper"]]
    policy = comparison["policy"]
    out = []
    if real:
        frame = pd.DataFrame([{**base(r), "paper": num3(r["paper"]), "public retrain": num3(r["public_retrain"]),
                               "paper inside the CI?": "yes" if r["paper_inside_ci"] else
                               "no" if r["paper_inside_ci"] is False else "no interval",
                               "(paper − mean) / sd": "–" if r["paper_distance_sd"] is None
                               else f"{r['paper_distance_sd']:+.1f}", "reading": r["reading"]} for r in real])
        out.append((f"This build's CSTA ({policy} selection) beside the paper's Table 1 value and "
                    f"{comparison['public_retrain_source']}. {comparison['interval']}. {comparison['note']}.",
                    frame.set_index(index)))
    if other:
        frame = pd.DataFrame([{**base(r), "compared with the paper?": r["reading"]} for r in other])
        title = check_table_title([{"provenance": {"surrogate": r["surrogate"]}} for r in other])
        out.append((f"{title[0].upper() + title[1:]}. This build's CSTA ({policy} selection): "
                    f"{comparison['interval']}; not compared with the paper.", frame.set_index(index)))
        reference = pd.DataFrame([{"dataset": captions.dataset_name(r["dataset"]),
                                   "coefficient": METRIC_NAMES[r["coefficient"]], "paper": num3(r["paper"]),
                                   "public retrain": num3(r["public_retrain"])} for r in other])
        out.append((f"The paper's Table 1 CSTA row (real features, ImageNet weights, test-max selection, 5 folds) "
                    f"and {comparison['public_retrain_source']} (one retrain, no spread reported).",
                    reference.set_index(index)))
    return out


def run_points(records: Sequence[Mapping[str, Any]], policies: Sequence[str] = ("test-max",),
               by: str = "variant") -> Any:
    """One row per (run, policy) for :func:`csta_lib.book.figures.runs_figure`: ``row`` is the experiment's row
    label (``by="variant"``) or ``"<policy> selection"`` (``by="policy"``, Table 1's rows), with the run's
    ``dataset``, ``split``, ``seed``, ``tau``, ``rho`` and ``f1``."""
    frame = store.results_frame(records, policies)
    labels = variant_labels(records)
    row = frame["variant"].map(lambda v: labels.get(v, v)) if by == "variant" else frame["policy"] + " selection"
    return frame.assign(row=row)[["row", "dataset", "split", "seed", "tau", "rho", "f1"]]
