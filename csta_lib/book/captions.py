"""Provenance captions: what a table or figure ran on, built from run records or data files.

Every table and figure of the book repeats in its caption what data it ran on (real or surrogate
features), which ImageNet weights initialised the CNN, the model-selection policy and the seeds, e.g.
``"SumMe, surrogate features, random CNN init, test-max selection, seeds 0-1"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

DATASET_NAMES = {"summe": "SumMe", "tvsum": "TVSum"}


def dataset_name(dataset: str) -> str:
    """``"summe"`` -> ``"SumMe"``."""
    return DATASET_NAMES.get(dataset, dataset)


def int_ranges(values: Iterable[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    nums = sorted(set(int(v) for v in values))
    parts: list[str] = []
    start = prev = None
    for n in nums + [None]:  # type: ignore[list-item]
        if start is None:
            start = prev = n
        elif n is not None and n == prev + 1:
            prev = n
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = n
    return ", ".join(parts)


def features_label(surrogate: bool | None) -> str:
    """How the features are named in captions."""
    from csta_lib.data.eccv16 import REAL_LABEL, SURROGATE_LABEL

    if surrogate is None:
        return "no features"
    return SURROGATE_LABEL if surrogate else f"real {REAL_LABEL}"


def weights_label(weights: Any) -> str:
    """The CNN initialisation named in captions (``imagenet_weights`` of a record's provenance)."""
    if not weights:
        return "random CNN init"
    text = str(weights)
    return f"ImageNet CNN init ({text.rsplit('/', 1)[-1]})"


def record_caption(records: Sequence[Mapping[str, Any]], policy: str | None = "test-max") -> str:
    """One caption for a set of run records: datasets, features, CNN init, selection policy, seeds."""
    if not records:
        return "no runs"
    datasets = sorted({r["dataset"] for r in records})
    surrogate = any(bool(r.get("provenance", {}).get("surrogate")) for r in records)
    weights = sorted({str(r.get("provenance", {}).get("imagenet_weights") or "") for r in records})
    seeds = [r["seed"] for r in records]
    splits = [r["split"]["index"] for r in records]
    parts = [
        " + ".join(dataset_name(d) for d in datasets),
        features_label(surrogate),
        "; ".join(weights_label(w) for w in weights),
    ]
    if policy:
        parts.append(f"{policy} selection")
    parts.append(f"seed{'s' if len(set(seeds)) > 1 else ''} {int_ranges(seeds)}")
    parts.append(f"split{'s' if len(set(splits)) > 1 else ''} {int_ranges(splits)}")
    epochs = sorted({r.get("n_epochs") for r in records if r.get("n_epochs")})
    if epochs:
        parts.append(f"{'/'.join(str(e) for e in epochs)} epoch{'s' if epochs != [1] else ''}")
    return ", ".join(parts)


def data_caption(datasets: Mapping[str, bool]) -> str:
    """``{"summe": True}`` (dataset -> surrogate?) -> ``"SumMe: surrogate features"``."""
    return "; ".join(f"{dataset_name(d)}: {features_label(s)}" for d, s in sorted(datasets.items()))
