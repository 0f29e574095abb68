"""The attention-map figure of the book's attention chapter.

CSTA's two softmax maps are nearly uniform at a glance: the temporal softmax gives each of the T+1 rows of a
feature column about 1/(T+1), the spatial softmax each of the D columns of a row about 1/D. Plotted on a linear
scale they look flat. Here every map is shown as its ratio to the uniform value (×(T+1), ×D) on a logarithmic
colour scale centred at 1, so "twice the uniform share" and "half of it" are equally visible, and the colour
bar says so. The scale covers 99 % of the entries; the most extreme 1 % saturate.

Time runs along the horizontal axis of every panel (column 0 is the CLS row, then steps 0 … T-1), so the maps
line up with the predicted and ground-truth scores drawn underneath; one map per row at the page's width.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.colors import LogNorm
from matplotlib.ticker import FuncFormatter, NullFormatter

#: (key in the model's attention dict, panel title, the uniform value's name) in the order drawn.
SOFTMAX_PANELS = (
    ("temporal_attention", "temporal softmax (over steps, per feature dimension)", "(T+1)"),
    ("spatial_attention", "spatial softmax (over feature dimensions, per step)", "D"),
)
#: Colour range: at least this factor around uniform, so a near-uniform map stays pale instead of saturating.
MIN_RATIO_RANGE = 1.5
#: The colour range covers this share of the entries' deviations from uniform; the rest saturate.
CLIP_QUANTILE = 0.99
#: Labelled ratios on the colour bars (those inside a map's range are shown).
COLOUR_TICKS = (0.001, 0.01, 0.1, 0.2, 0.5, 1, 2, 5, 10, 100, 1000)
STEP_LABEL = "step (one every 15th frame; CLS = the CLS row)"


def _array(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def ratio_to_uniform(attention: np.ndarray, axis: int) -> np.ndarray:
    """A softmax map divided by its uniform value (1 / its size along ``axis``): 1 means "uniform share"."""
    return np.asarray(attention, dtype=np.float64) * attention.shape[axis]


def symmetric_log_range(ratio: np.ndarray, floor: float = MIN_RATIO_RANGE, quantile: float = CLIP_QUANTILE
                        ) -> tuple[float, float]:
    """``(1/r, r)``: r covers the ``quantile`` of the deviations from 1 in either direction (at least ``floor``).

    A few extreme entries would otherwise stretch the scale until the bulk of the map is white; entries beyond
    the range are drawn in the end colours (the colour bar's arrows).
    """
    positive = ratio[ratio > 0]
    if positive.size == 0:
        return 1 / floor, floor
    r = float(max(np.exp(np.quantile(np.abs(np.log(positive)), quantile)), floor))
    return 1 / r, r


def attention_figure(attention: Mapping[str, Any], scores: Any, gtscore: Any, title: str,
                     width_in: float = 8.0) -> Any:
    """One video: each softmax map (ratio to uniform, log colour scale) and the scores, one panel per row.

    ``attention`` maps names to (T+1, D) arrays as returned by ``model(x, return_attention=True)``; maps the
    model does not compute are noted in their panel. ``scores``/``gtscore`` are (T,) arrays.
    """
    scores, gtscore = _array(scores), _array(gtscore)
    n_steps = len(scores)
    rows = len(SOFTMAX_PANELS) + 1
    fig = plt.figure(figsize=(width_in, 2.3 * len(SOFTMAX_PANELS) + 2.2), layout="constrained")
    # a narrow second column holds the colour bars; the scores row leaves it empty, so all x axes line up
    grid = fig.add_gridspec(rows, 2, width_ratios=[50, 1], height_ratios=[3] * len(SOFTMAX_PANELS) + [2])
    axes = [fig.add_subplot(grid[0, 0])]
    axes += [fig.add_subplot(grid[i, 0], sharex=axes[0]) for i in range(1, rows)]
    x_range = (-1.5, n_steps - 0.5)  # x: the CLS row at -1, steps 0..T-1
    for row, (ax, (key, name, uniform)) in enumerate(zip(axes, SOFTMAX_PANELS)):
        ax.set_title(name, fontsize=11, loc="left")
        ax.set_ylabel("feature dim.", fontsize=10)
        ax.tick_params(labelsize=10, labelbottom=False)
        if key not in attention:
            ax.text(0.5, 0.5, "not computed by this model", ha="center", va="center", transform=ax.transAxes)
            ax.set_yticks([])
            continue
        maps = _array(attention[key])  # (T+1, D)
        ratio = ratio_to_uniform(maps, axis=0 if key == "temporal_attention" else 1).T  # (D, T+1): time across
        low, high = symmetric_log_range(ratio)
        image = ax.imshow(np.clip(ratio, low, high), aspect="auto", cmap="RdBu_r", interpolation="nearest",
                          norm=LogNorm(vmin=low, vmax=high), extent=(*x_range, ratio.shape[0] - 0.5, -0.5))
        bar = fig.colorbar(image, cax=fig.add_subplot(grid[row, 1]), extend="both")
        bar.set_label(f"× uniform (1/{uniform}), log", fontsize=9)
        bar.ax.tick_params(labelsize=9)
        bar.set_ticks([t for t in COLOUR_TICKS if low <= t <= high])
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        bar.ax.yaxis.set_minor_formatter(NullFormatter())
    ax = axes[-1]
    steps = np.arange(n_steps)
    ax.plot(steps, gtscore, label="ground truth (gtscore)", color="black", lw=1)
    ax.plot(steps, scores, label="predicted score", color="tab:orange", lw=1.2)
    ax.set_ylabel("importance", fontsize=10)
    ax.set_xlabel(STEP_LABEL, fontsize=10)
    ax.tick_params(labelsize=10)
    ax.legend(fontsize=9, loc="upper right", ncols=2)
    ticks = [t for t in ax.get_xticks() if 0.04 * n_steps <= t < n_steps]  # none crowding the CLS label
    ax.set_xticks([-1, *ticks], ["CLS", *(f"{int(t)}" for t in ticks)])
    ax.set_xlim(*x_range)
    fig.suptitle(title, fontsize=11)
    plt.close(fig)
    return fig


__all__ = ["CLIP_QUANTILE", "COLOUR_TICKS", "MIN_RATIO_RANGE", "SOFTMAX_PANELS", "STEP_LABEL", "attention_figure", "ratio_to_uniform",
           "symmetric_log_range"]
