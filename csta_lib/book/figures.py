"""Presentation helpers for the book's notebooks: per-video statistics tables and seaborn figures.

Method code (readers, metrics, training) lives in the rest of ``csta_lib``; this module only arranges
its outputs into data frames and figures, so the notebooks stay a few lines per cell.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.ticker import MaxNLocator

from csta_lib.book.captions import dataset_name
from csta_lib.data.eccv16 import check_dataset, n_steps
from csta_lib.runs.locator import load_summe, load_tvsum
from csta_lib.runs.statistics import spread
from csta_lib.runs.surrogate import read_real_fields


def _finish(fig: Any) -> Any:
    """Close ``fig`` in pyplot (so the inline backend does not show it a second time) and return it:
    returned as a cell's value, the notebook still displays it once."""
    plt.close(fig)
    return fig


def video_statistics(dataset: str) -> Any:
    """One row per video from the real annotations: length, steps, fps, annotators, shots (SumMe: real KTS).

    SumMe rows also give the mean fraction of frames each annotator selected; TVSum rows the category.
    """
    rows = []
    if dataset == "summe":
        fields = read_real_fields("summe")
        for key, v in load_summe().items():
            rows.append({
                "key": key, "name": v.name, "n_frames": v.n_frames, "fps": v.fps, "duration_s": v.duration,
                "steps": n_steps(v.n_frames), "annotators": v.user_scores.shape[0],
                "shots": int(np.asarray(fields[key]["change_points"]).shape[0]),
                "selected_fraction": float((v.user_scores > 0).mean()),
            })
    elif dataset == "tvsum":
        for key, t in load_tvsum().items():
            rows.append({
                "key": key, "name": t.title, "category": t.category, "n_frames": t.n_frames, "fps": t.fps,
                "duration_s": t.duration, "steps": n_steps(t.n_frames),
                "annotators": t.user_scores.shape[0],
            })
    else:
        check_dataset(dataset)
    return pd.DataFrame(rows)


def statistics_summary(stats: Mapping[str, Any]) -> Any:
    """Per dataset: videos, annotators, mean/min/max duration and steps (the table under the figures)."""
    rows = []
    for dataset, frame in stats.items():
        rows.append({
            "dataset": dataset, "videos": len(frame), "annotators": int(frame["annotators"].max()),
            "duration mean (s)": frame["duration_s"].mean(), "duration min (s)": frame["duration_s"].min(),
            "duration max (s)": frame["duration_s"].max(), "steps mean": frame["steps"].mean(),
            "steps max": int(frame["steps"].max()),
        })
    return pd.DataFrame(rows).set_index("dataset")


def length_figure(stats: Mapping[str, Any], caption: str) -> Any:
    """Histograms of video length in 15-frame steps, one panel per dataset."""
    fig, axes = plt.subplots(1, len(stats), figsize=(4.5 * len(stats), 3.2), squeeze=False)
    for ax, (dataset, frame) in zip(axes[0], stats.items(), strict=True):
        sns.histplot(frame["steps"], bins=12, ax=ax, color="tab:blue")
        ax.set_title(f"{dataset}: {len(frame)} videos")
        ax.set_xlabel("length (15-frame steps)")
    fig.suptitle(caption, fontsize=9, y=1.02)
    fig.tight_layout()
    return _finish(fig)


def agreement_figure(per_video: Mapping[str, Sequence[float]], caption: str, metric: str = "Kendall τ") -> Any:
    """Distribution over videos of the annotators' mutual agreement (the Human row, per video)."""
    frame = pd.DataFrame([(d, float(x)) for d, xs in per_video.items() for x in xs], columns=["dataset", metric])
    fig, ax = plt.subplots(figsize=(6, 3))
    sns.boxplot(data=frame, x=metric, y="dataset", hue="dataset", ax=ax, legend=False)
    sns.stripplot(data=frame, x=metric, y="dataset", color="black", size=3, ax=ax)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_title(caption, fontsize=9)
    fig.tight_layout()
    return _finish(fig)


#: Width (inches) of the results figures and their smallest text (points): a figure drawn wider is scaled down to
#: the text column and its text with it (the book's reader check asks for 9 px on the page; figure_policy).
FIGURE_WIDTH = 9.0
TEXT_PT = 9.5
#: Characters per line of a caption written into a figure of :data:`FIGURE_WIDTH` at :data:`TEXT_PT`.
CAPTION_CHARS = 115


def _note(ax: Any, note: str | None, fontsize: float = 11, rotation: float = 0) -> None:
    """Write ``note`` large across an axes (e.g. "surrogate features — pipeline check"), so a cropped or copied
    figure still says what it shows."""
    if note:
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=fontsize,
                color="tab:red", alpha=0.8, rotation=rotation, weight="bold", zorder=10,
                bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "tab:red", "boxstyle": "round"})


def bar_figure(frame: Any, x: str, y: str, hue: str | None, caption: str,
               marks: Mapping[str, float] | None = None, mark_label: str = "paper", *,
               levels: Mapping[str, float] | None = None, note: str | None = None, value_label: str = "Kendall τ",
               horizontal: bool = False, order: Sequence[str] | None = None) -> Any:
    """A bar chart in the paper's style (Figure 4, Table 2).

    ``marks`` are dashed lines labelled ``mark_label: name = value`` (the paper's values, only where the bars are
    comparable with them); ``levels`` are dotted reference lines labelled ``name = value`` (e.g. the Random and
    ground-truth-score levels under the bars' own protocol). ``note`` is written large inside the image (e.g.
    "surrogate features — pipeline check"), so a cropped or copied figure still says what it shows. The value axis
    is labelled ``value_label``; ``horizontal`` puts the bars' labels on the vertical axis (long row names);
    ``order`` fixes the order of the bars (default: as they come in ``frame``).
    """
    n_bars = frame[y if horizontal else x].nunique() if len(frame) else 1
    size = ((FIGURE_WIDTH, 2.0 + 0.35 * n_bars * (frame[hue].nunique() if hue else 1)) if horizontal
            else (FIGURE_WIDTH, 4.2))
    fig, ax = plt.subplots(figsize=size)
    sns.barplot(data=frame, x=x, y=y, hue=hue, ax=ax, errorbar=None, orient="h" if horizontal else "v",
                order=list(order) if order is not None else None)
    line = ax.axvline if horizontal else ax.axhline
    for i, (name, value) in enumerate((marks or {}).items()):
        line(value, ls="--", lw=1, color=f"C{i + 3}", label=f"{mark_label}: {name} = {value:.3f}")
    for i, (name, value) in enumerate((levels or {}).items()):
        line(value, ls=":", lw=1.6, color=("dimgrey", "black", "tab:red", "tab:purple")[i % 4],
             label=f"{name} = {value:.3f}")
    drawn = [*(marks or {}).values(), *(levels or {}).values()]
    if drawn:  # room above the highest reference line, so it does not sit on the frame
        low, high = ax.get_xlim() if horizontal else ax.get_ylim()
        (ax.set_xlim if horizontal else ax.set_ylim)(low, max(high, 1.08 * max(drawn)))
    (ax.set_xlabel if horizontal else ax.set_ylabel)(value_label)
    (ax.set_ylabel if horizontal else ax.set_xlabel)("")
    if marks or levels or hue:  # below the axes: the figure keeps its width, and so its text size on the page
        ax.legend(fontsize=TEXT_PT, loc="upper left", bbox_to_anchor=(0.0, -0.14 if horizontal else -0.13), ncol=2,
                  borderaxespad=0, frameon=False)
    _note(ax, note, fontsize=13, rotation=0 if horizontal else 12)
    fig.suptitle("\n".join(textwrap.wrap(caption, CAPTION_CHARS)), fontsize=TEXT_PT, x=0.01, ha="left", y=1.0)
    fig.tight_layout()
    return _finish(fig)


def stage_shapes(model: Any, features: Any) -> Any:
    """The output shape of every top-level module of ``model``, in call order, for one forward pass.

    Forward hooks only observe; the table says which module ran and what it produced.
    """
    rows: list[dict[str, Any]] = [{"stage": "input features", "module": "-", "output shape": tuple(features.shape)}]
    handles = []

    def hook(name: str):
        def record(module: Any, inputs: Any, output: Any) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            shape = tuple(out.shape) if hasattr(out, "shape") else type(out).__name__
            rows.append({"stage": name, "module": type(module).__name__, "output shape": shape})
        return record

    for name, child in model.named_children():
        handles.append(child.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            scores, attention = model(features, return_attention=True)
    finally:
        for h in handles:
            h.remove()
    for key, value in attention.items():
        rows.append({"stage": f"(returned) {key}", "module": "-", "output shape": tuple(value.shape)})
    rows.append({"stage": "frame-step scores", "module": "-", "output shape": tuple(scores.shape)})
    return pd.DataFrame(rows)


def table3_frame(rows: Mapping[str, Mapping[str, Any]]) -> Any:
    """Table 3 from :func:`csta_lib.macs.table3_row` results (per dataset), in G MACs beside the paper."""
    return pd.DataFrame({
        dataset_name(d): {
            "SP this book, raw (G)": r["sp_raw_per_video_mean"] / 1e9,
            "SP this book, paper convention (G)": r["sp_paper_convention_per_video_mean"] / 1e9,
            "SP paper (G)": r["paper_sp"] / 1e9,
            "FE this book, raw (G)": r["fe_raw_per_video_mean"] / 1e9,
            "FE this book, paper convention (G)": r["fe_paper_convention_per_video_mean"] / 1e9,
            "FE paper (G)": r["paper_fe"] / 1e9,
            "mean steps": r["mean_steps"],
        } for d, r in rows.items()}).T


def runs_figure(points: Any, caption: str, order: Sequence[str] | None = None, note: str | None = None,
                metrics: Mapping[str, str] | None = None) -> Any:
    """Every run's value beside the table it is averaged in: a strip plot per (dataset, metric).

    ``points`` has one row per run with columns ``row`` (the table's row label), ``dataset`` and one column per
    metric (``metrics``: column → axis label, default τ and ρ). Each run is a dot; a black bar is the mean and a
    line its 95 % t interval (:func:`csta_lib.runs.statistics.spread`; none with one run). ``order`` fixes the
    rows (default: as they come).
    """
    metrics = dict(metrics or {"tau": "Kendall τ", "rho": "Spearman ρ"})
    datasets = list(dict.fromkeys(points["dataset"]))
    rows = list(order) if order is not None else list(dict.fromkeys(points["row"]))
    rows = [r for r in rows if r in set(points["row"])]
    fig, axes = plt.subplots(len(datasets) or 1, len(metrics), squeeze=False,
                             figsize=(FIGURE_WIDTH, 0.9 + 0.42 * max(len(rows), 1) * max(len(datasets), 1)))
    rng = np.random.default_rng(0)  # jitter only: the same picture every build
    for i, dataset in enumerate(datasets):
        part = points[points["dataset"] == dataset]
        for j, (metric, label) in enumerate(metrics.items()):
            ax = axes[i][j]
            for y, row in enumerate(rows):
                values = part.loc[part["row"] == row, metric].to_numpy(dtype=float)
                ax.scatter(values, y + rng.uniform(-0.12, 0.12, len(values)), s=18, color="tab:blue", alpha=0.7,
                           zorder=3)
                s = spread(values)
                if s.mean is not None:
                    ax.plot([s.mean, s.mean], [y - 0.28, y + 0.28], color="black", lw=2, zorder=4)
                if s.has_interval:
                    ax.plot([s.ci_low, s.ci_high], [y, y], color="black", lw=1, zorder=2)
            ax.set_yticks(range(len(rows)), rows if j == 0 else [""] * len(rows), fontsize=TEXT_PT)
            ax.set_ylim(len(rows) - 0.5, -0.5)
            ax.set_xlabel(label, fontsize=TEXT_PT)
            ax.set_title(f"{dataset_name(dataset)}: {label}", fontsize=TEXT_PT, loc="left")
            ax.grid(axis="x", lw=0.4, alpha=0.5)
    _note(axes[0][-1], note)
    fig.suptitle("\n".join(textwrap.wrap(caption, CAPTION_CHARS)), fontsize=TEXT_PT, x=0.01, ha="left", y=1.0)
    fig.tight_layout()
    return _finish(fig)


def learning_curves(records: Sequence[Mapping[str, Any]], caption: str, note: str | None = None) -> Any:
    """Per dataset (one row of panels): the training loss, the test τ and the validation τ of every run, epoch by
    epoch, from the records' ``epochs``; each run's selected epochs marked (★ test-max, ● val, ▲ last).

    Official-protocol runs (no hold-out) are solid lines, held-out runs dashed; one colour per seed.
    """
    datasets = sorted({r["dataset"] for r in records})
    panels = (("train_loss", "training loss (MSE)"), ("test_tau", "test τ"), ("val_tau", "validation τ"))
    fig, axes = plt.subplots(len(datasets) or 1, len(panels), squeeze=False,
                             figsize=(FIGURE_WIDTH, 2.8 * max(len(datasets), 1) + 0.6))
    marks = {"test-max": ("*", 120), "val": ("o", 45), "last": ("^", 45)}
    for i, dataset in enumerate(datasets):
        for r in (r for r in records if r["dataset"] == dataset):
            history = r.get("epochs") or []
            held_out = bool(r["split"].get("val_keys"))
            colour = f"C{int(r['seed']) % 10}"
            for j, (key, _) in enumerate(panels):
                if not history or key not in history[0]:
                    continue
                epochs = [e["epoch"] for e in history]
                axes[i][j].plot(epochs, [e[key] for e in history], ls="--" if held_out else "-", color=colour,
                                lw=1.2, alpha=0.85, marker=".", markersize=5,
                                label=f"seed {r['seed']}, fold {r['split']['index']}"
                                      f"{', held-out run' if held_out else ''}")
                for policy, chosen in r.get("selected", {}).items():
                    epoch = chosen.get("epoch")
                    if key != "train_loss" and epoch and epoch <= len(history):
                        marker, size = marks[policy]
                        axes[i][j].scatter([epoch], [history[epoch - 1][key]], marker=marker, s=size,
                                           color=colour, edgecolor="black", zorder=5)
        for j, (_, label) in enumerate(panels):
            ax = axes[i][j]
            ax.set_title(f"{dataset_name(dataset)}: {label}", fontsize=TEXT_PT, loc="left")
            ax.set_xlabel("epoch", fontsize=TEXT_PT)
            ax.grid(lw=0.4, alpha=0.5)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    runs = {label: handle for ax in axes[:, 1] for handle, label in zip(*ax.get_legend_handles_labels(), strict=True)}
    _note(axes[0][1], note)
    fig.suptitle("\n".join(textwrap.wrap(caption, CAPTION_CHARS)) + "\n★ test-max epoch, ● val epoch, ▲ last epoch",
                 fontsize=TEXT_PT, x=0.01, ha="left", y=1.0)
    fig.tight_layout()
    if runs:  # below the panels: the figure keeps its width, and so its text size on the page
        fig.legend(list(runs.values()), list(runs), fontsize=TEXT_PT, loc="upper center", ncol=3, frameon=False,
                   bbox_to_anchor=(0.5, 0.0))
    return _finish(fig)


def built_videos_figure(data: Any, durations: Mapping[str, float], shots_text: str) -> Any:
    """What ``csta data build`` wrote, one panel per video of an eccv16 file ``data``: the ground-truth score
    (``gtscore``, at the sampled frames) over time, the KTS shots (alternately shaded, boundaries drawn), the
    ground-truth summary (``gtsummary``, orange) and, below the score, each annotator's user summary as a bar.

    ``durations``: each video key's length in seconds (the x axis; frames when a key is missing);
    ``shots_text``: the shot settings in words (the legend says what made the shots). The caption goes under the
    figure, in the page's text (at a figure's width it would be too small to read).
    """
    keys = list(data.keys())
    fig, axes = plt.subplots(len(keys) or 1, 1, squeeze=False, figsize=(FIGURE_WIDTH, 1.0 + 1.9 * max(len(keys), 1)))
    for ax, key in zip(axes[:, 0], keys, strict=False):
        video = data[key]
        seconds = float(durations.get(key, video.n_frames))
        per_frame = seconds / video.n_frames
        for k, (a, b) in enumerate(np.asarray(video.change_points)):
            if k % 2:
                ax.axvspan(a * per_frame, (b + 1) * per_frame, color="0.92", lw=0)
            if k:
                ax.axvline(a * per_frame, color="0.35", lw=0.9)
        picks = np.asarray(video.picks) * per_frame
        if video.gtsummary is not None:
            for t, chosen in zip(picks, np.asarray(video.gtsummary), strict=True):
                if chosen:
                    ax.axvspan(t, t + 15 * per_frame, ymin=0.55, ymax=1.0, color="tab:orange", alpha=0.35, lw=0)
        score = np.asarray(video.gtscore, float)
        ax.step(np.append(picks, seconds), np.append(score, score[-1:]), where="post", color="tab:blue", lw=1.4)
        users = np.asarray(video.user_summary)
        for u, summary in enumerate(users):  # each annotator a thin row under the score
            frames = np.flatnonzero(summary)
            runs = np.split(frames, np.flatnonzero(np.diff(frames) > 1) + 1) if frames.size else []
            ax.broken_barh([(r[0] * per_frame, (r[-1] - r[0] + 1) * per_frame) for r in runs],
                           (-0.12 - 0.1 * u, 0.07), color="tab:green")
        ax.set_xlim(0, seconds)
        ax.set_ylim(-0.14 - 0.1 * len(users), max(1.0, float(score.max()) * 1.05))
        ax.set_yticks([0, 0.5, 1.0])
        ax.tick_params(labelsize=TEXT_PT)
        n_shots = len(video.change_points)
        ax.set_title(f"{video.video_name} ({key}): {n_shots} shot{'s' if n_shots != 1 else ''}, {seconds:.1f} s, "
                     f"{len(users)} annotator{'s' if len(users) != 1 else ''}", fontsize=TEXT_PT, loc="left")
        ax.set_ylabel("gtscore", fontsize=TEXT_PT)
    axes[-1][0].set_xlabel("time (s)", fontsize=TEXT_PT)
    handles = [plt.Line2D([], [], color="tab:blue", lw=1.4, label="gtscore (mean annotator score, 0-1)"),
               plt.Line2D([], [], color="0.35", lw=0.9, label=f"shot boundary ({shots_text})"),
               plt.Rectangle((0, 0), 1, 1, color="tab:orange", alpha=0.35, label="gtsummary (15 % knapsack)"),
               plt.Rectangle((0, 0), 1, 1, color="tab:green", label="each annotator's user summary (one row each)")]
    fig.tight_layout()
    fig.legend(handles=handles, fontsize=TEXT_PT, loc="upper center", ncol=2, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    return _finish(fig)
