"""Which epoch of a run is reported: the selection policies (book method page, method-selection).

All policies read the same run's per-epoch means; they differ in what they look at:

``test-max``
    What the official code does: the last epoch at which the mean τ AND the mean ρ over the **test** videos
    both improved strictly on the best so far (both start at −1; a NaN never improves). This selects on the
    test split and is labelled so wherever it is shown.
``val``
    The same joint rule applied to a validation subset carved from the training videos
    (:func:`carve_validation`); the test split is only scored.
``last``
    The final epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from csta_lib.errors import ConfigError

#: What each policy looks at to choose its epoch (written into every selection of a record).
SELECTED_ON = {"test-max": "test split (the official code's rule; leaky)", "val": "validation subset",
               "last": "nothing (final epoch)"}


def carve_validation(train_keys: Sequence[str], fraction: float, seed: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split training keys into (kept for training, validation), deterministically from ``seed``.

    ``round(fraction · n)`` videos (at least one when ``fraction > 0``) are drawn without replacement by a
    numpy generator seeded with ``seed`` alone, so the subset depends only on the seed and the split's keys. Both
    parts keep the order of ``train_keys``.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {fraction}")
    n = len(train_keys)
    if fraction == 0.0:
        return tuple(train_keys), ()
    n_val = max(1, round(fraction * n))
    if n_val >= n:
        raise ConfigError(f"val_fraction {fraction} leaves no training video out of {n}")
    chosen = set(np.random.default_rng(seed).permutation(n)[:n_val].tolist())
    keep = tuple(k for i, k in enumerate(train_keys) if i not in chosen)
    val = tuple(k for i, k in enumerate(train_keys) if i in chosen)
    return keep, val


def select_joint_improvement(taus: Sequence[float], rhos: Sequence[float]) -> int | None:
    """1-based epoch chosen by the official rule: the last epoch where τ and ρ both beat the best so far.

    Both bests start at −1 and the comparison is strict, so a NaN (an undefined correlation) never improves
    (method page, method-selection and method-metrics). Returns None if no epoch ever improved.
    """
    best_tau = best_rho = -1.0
    chosen = None
    for epoch, (tau, rho) in enumerate(zip(taus, rhos, strict=True), start=1):
        if tau > best_tau and rho > best_rho:
            best_tau, best_rho, chosen = tau, rho, epoch
    return chosen


def select_epochs(history: Sequence[Mapping[str, Any]], policies: Sequence[str]) -> dict[str, int | None]:
    """The epoch each policy selects given the per-epoch metrics so far (1-based; None: nothing selected)."""
    chosen: dict[str, int | None] = {}
    for policy in policies:
        if policy == "last":
            chosen[policy] = len(history) or None
        else:
            prefix = "test" if policy == "test-max" else "val"
            chosen[policy] = select_joint_improvement(
                [e[f"{prefix}_tau"] for e in history], [e[f"{prefix}_rho"] for e in history])
    return chosen


def epochs_to_keep(chosen: Mapping[str, int | None], epoch: int, final: bool) -> set[int]:
    """The epochs whose checkpoints a run keeps after ``epoch``: those a policy selects so far, and, once training
    ends, the last one (for ``last``, and as the reported fallback of a policy that never selected an epoch)."""
    keep = {e for p, e in chosen.items() if e is not None and p != "last"}
    if final and ("last" in chosen or None in chosen.values()):
        keep.add(epoch)
    return keep
