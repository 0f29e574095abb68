"""The fidelity chapter's tables and figure, from the comparisons of :mod:`csta_lib.runs.fidelity`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from csta_lib.config import get_config
from csta_lib.runs.experiments import EXPERIMENTS
from csta_lib.runs.fidelity import EvaluationComparison, ForwardComparison, TrainingComparison


def scientific(value: float | None, digits: int = 1) -> str:
    """``3.1e-07`` style text for tiny differences (``"–"`` for None, ``"NaN"`` for NaN)."""
    if value is None:
        return "–"
    return "NaN" if math.isnan(value) else f"{value:.{digits}e}"


def configuration_label(preset: str) -> str:
    """Which row of the paper a configuration is, from the book's experiment labels (Table 1/2, Figure 4).

    The ``paper.<backbone>`` presets are no such row: the full CSTA on another CNN, one reading of the
    paper's appendix on other CNNs; they are named with Figure 4's label of that CNN.
    """
    rows = [f"{exp.title.split(':')[0]}: {v.label}" for exp in EXPERIMENTS.values() if exp.name != "deviations"
            for v in exp.variants if v.preset == preset and not v.overrides]
    if rows:
        return "; ".join(rows)
    backbone = get_config(preset).backbone
    cnn = next((v.label for v in EXPERIMENTS["fig4"].variants if v.config.backbone == backbone), backbone)
    return f"CSTA on {cnn} (appendix on other CNNs; not a Table 2 / Figure 4 row)"


def forward_rows(results: Sequence[ForwardComparison]) -> list[dict[str, str]]:
    """One row per configuration for the chapter's table (text cells, already formatted)."""
    rows = []
    for r in results:
        failures = r.official_failures
        lows = [f.score_min for f in failures]
        highs = [f.score_max for f in failures]
        ours = (f"[{min(lows):.3f}, {max(highs):.3f}]" if all(f.finite for f in failures)
                else "non-finite scores") if failures else "–"
        rows.append({
            "preset": r.preset,
            "paper row": configuration_label(r.preset),
            "official model": r.official_model_name,
            "lengths compared": ", ".join(str(x.length) for x in r.compared),
            "max |Δ|": scientific(r.max_abs_diff),
            "max |Δ| / max(1, |official|)": scientific(r.max_rel_diff),
            "official code fails at T =": ", ".join(str(f.length) for f in failures) or "–",
            "our scores there (finite)": ours,
        })
    return rows


def evaluation_rows(results: Sequence[EvaluationComparison]) -> list[dict[str, str]]:
    """One row per evaluation function for the chapter's table."""
    return [{
        "csta_lib": r.function,
        "official": r.official,
        "cases": str(r.n_cases),
        "criterion": "exactly equal" if r.exact else f"|Δ| ≤ {r.tolerance:g}, NaN where official NaN",
        "agree": f"{r.n_matching} / {r.n_cases}",
        "max |Δ|": "0 (identical)" if r.exact and r.n_matching == r.n_cases else scientific(r.max_abs_diff),
        "official NaN cases": str(r.n_nan) if not r.exact else "–",
    } for r in results]


def training_figure(results: Sequence[TrainingComparison]) -> Any:
    """Loss per step: official, official with the input moved one ulp, ours; one panel per dropout setting,
    with the relative differences to the official loss below."""
    # 4.2 in a panel at the figure policy's 100 dpi: two panels fit the text column nearly unscaled, so the
    # smallest text (the 9-pt legends) stays legible on the page (csta_lib.book.figure_policy)
    fig, axes = plt.subplots(2, len(results), figsize=(4.2 * len(results), 5.6), sharex=True,
                             gridspec_kw={"height_ratios": [3, 2]}, squeeze=False)
    for column, r in enumerate(results):
        steps = np.arange(len(r.official_losses))
        top, bottom = axes[0, column], axes[1, column]
        top.plot(steps, r.official_losses, "o-", color="black", label="official")
        top.plot(steps, r.official_losses_one_ulp, "s--", color="tab:orange", mfc="none",
                 label="official, input + 1 ulp")
        top.plot(steps, r.our_losses, "x:", color="tab:blue", ms=9, label="csta_lib")
        top.set_title(f"paper preset, {'with' if r.dropout else 'without'} dropout", fontsize=11)
        top.set_ylabel("MSE loss")
        bottom.semilogy(steps, np.maximum(r.one_ulp_loss_rel_diffs, 1e-9), "s--", color="tab:orange", mfc="none",
                        label="official + 1 ulp vs official")
        bottom.semilogy(steps, np.maximum(r.loss_rel_diffs, 1e-9), "x:", color="tab:blue", ms=9,
                        label="csta_lib vs official")
        bottom.axhline(r.loss_tolerance, color="grey", lw=1, label="test tolerance")
        bottom.set_xlabel("training step (one video each)")
        bottom.set_ylabel("relative difference\n(0 drawn at 1e-9)")
        top.legend(fontsize=9)
        bottom.legend(fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig
