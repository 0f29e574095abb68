"""Provenance captions: what a table or figure ran on, built from run records or data files.

Every table and figure of the book repeats in its caption what data it ran on (real or surrogate
features), which ImageNet weights initialised the CNN, the model-selection policy and the seeds, e.g.
``"SumMe, surrogate features, random CNN init, test-max selection, seeds 0-1"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from csta_lib.data.eccv16 import REAL_LABEL, SURROGATE_LABEL
from csta_lib.runs.record import f1_protocol_text

DATASET_NAMES = {"summe": "SumMe", "tvsum": "TVSum"}


def dataset_name(dataset: str) -> str:
    """``"summe"`` -> ``"SumMe"``."""
    return DATASET_NAMES.get(dataset, dataset)


def int_ranges(values: Iterable[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    nums = sorted({int(v) for v in values})
    runs: list[list[int]] = []  # [first, last] of each run of consecutive numbers
    for n in nums:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(f"{first}" if first == last else f"{first}-{last}" for first, last in runs)


def features_label(surrogate: bool | None) -> str:
    """How the features are named in captions."""
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
    parts = [
        " + ".join(dataset_name(d) for d in datasets),
        features_label(surrogate),
        "; ".join(weights_label(w) for w in weights),
    ]
    if policy:
        parts.append(f"{policy} selection")
    parts.append(_per_dataset(records, lambda rs: _seeds_splits(rs)))
    epochs = sorted({int(r["n_epochs"]) for r in records if r.get("n_epochs")})
    if epochs:
        parts.append(f"{'/'.join(str(e) for e in epochs)} epoch{'s' if epochs != [1] else ''}")
    return ", ".join(parts)


SELECTION_WORDS = {
    "test-max": "test-max selection (epoch chosen on the test videos, as the official code)",
    "val": "val selection (epoch chosen on the validation hold-out)",
    "last": "last-epoch selection",
}


def _per_dataset(records: Sequence[Mapping[str, Any]],
                 text: Callable[[Sequence[Mapping[str, Any]]], str]) -> str:
    """``text`` of all ``records`` when every dataset gives the same words, else ``SumMe …; TVSum …`` (a profile
    may run fewer seeds on one dataset: a caption must not give one dataset's count to the other)."""
    by_dataset = {d: text([r for r in records if r["dataset"] == d]) for d in sorted({r["dataset"] for r in records})}
    if len(set(by_dataset.values())) <= 1:
        return text(records)
    return "; ".join(f"{dataset_name(d)}: {words}" for d, words in by_dataset.items())


def _seeds_splits(records: Sequence[Mapping[str, Any]]) -> str:
    """``seeds 0-2, split 0``."""
    seeds = {r["seed"] for r in records}
    splits = {r["split"]["index"] for r in records}
    return (f"seed{'s' if len(seeds) > 1 else ''} {int_ranges(seeds)}, "
            f"split{'s' if len(splits) > 1 else ''} {int_ranges(splits)}")


def _runs(records: Sequence[Mapping[str, Any]]) -> str:
    """``1 fold (fold 0) × 3 seeds (0-2): mean over 3 runs`` (``each number is one run`` with one)."""
    splits = sorted({r["split"]["index"] for r in records})
    seeds = sorted({r["seed"] for r in records})
    runs = f"{_count(len(splits), 'fold', splits)} × {_count(len(seeds), 'seed', seeds)}"
    if len(splits) == 1 and len(seeds) == 1:
        return runs + ": each number is one run (n = 1, no interval)"
    return runs + f": mean over {len(splits) * len(seeds)} runs"


def _count(n: int, word: str, values: Iterable[int] = ()) -> str:
    """``1 fold (fold 0)``, ``5 folds (0-4)``."""
    listed = int_ranges(values)
    if n == 1:
        return f"1 {word} ({word} {listed})" if listed else f"1 {word}"
    return f"{n} {word}s ({listed})" if listed else f"{n} {word}s"


def training_videos(records: Sequence[Mapping[str, Any]]) -> str:
    """How many videos the runs trained on, per dataset: ``SumMe 20, TVSum 40 training videos``; runs with a
    validation hold-out say so (``SumMe 16 training videos + 4 held out for validation``), and when both kinds of
    run are present each is named (``(official runs)``, ``(held-out runs)``)."""
    parts = []
    for d in sorted({r["dataset"] for r in records}):
        mine = [r for r in records if r["dataset"] == d]
        kinds = sorted({(len(r["split"].get("train_keys", ())), len(r["split"].get("val_keys", ()))) for r in mine},
                       key=lambda kv: (kv[1] > 0, kv))
        mixed = len({v > 0 for _, v in kinds}) > 1
        texts = []
        for n_train, n_val in kinds:
            text = f"{n_train} training video{'s' if n_train != 1 else ''}"
            if n_val:
                text += f" + {n_val} held out for validation"
            if mixed:
                text += " (held-out runs)" if n_val else " (official runs)"
            texts.append(text)
        parts.append(f"{dataset_name(d)} {'; '.join(texts)}")
    return ", ".join(parts)


def protocol_caption(records: Sequence[Mapping[str, Any]], policy: str | None = None) -> str:
    """The full protocol of a table or figure built from ``records`` (only those that ran ``policy``):

    data (surrogate or real) and CNN init, the τ/ρ protocol per dataset, the selection policy, the real number
    of folds and seeds (and whether a number is one run or a mean), the epochs and how many videos trained.
    """
    if policy is not None:
        records = [r for r in records if policy in r.get("selected", {})]
    if not records:
        return "no runs"
    datasets = sorted({r["dataset"] for r in records})
    surrogate = any(bool(r.get("provenance", {}).get("surrogate")) for r in records)
    weights = sorted({str(r.get("provenance", {}).get("imagenet_weights") or "") for r in records})
    protocols = ", ".join(f"{r_protocol} ({dataset_name(d)})" for d, r_protocol in sorted(
        {(r["dataset"], r.get("protocol", {}).get("rank", "?")) for r in records}))
    epochs = sorted({int(r["n_epochs"]) for r in records if r.get("n_epochs")})
    user = sorted({str(r["provenance"].get("encoder")) for r in records
                   if r.get("provenance", {}).get("user_dataset")})
    features = (f"{features_label(True)} (pipeline check, not comparable with the paper)" if surrogate
                else f"a user dataset built by csta data build ({', '.join(user)} features; not the paper's data)"
                if user else features_label(False))
    parts = [" + ".join(dataset_name(d) for d in datasets), features, "; ".join(weights_label(w) for w in weights),
             f"τ/ρ protocol {protocols}"]
    if policy:
        parts.append(SELECTION_WORDS.get(policy, f"{policy} selection"))
    parts.append(_per_dataset(records, _runs))
    if epochs:
        parts.append(f"{'/'.join(str(e) for e in epochs)} epoch{'s' if epochs != [1] else ''}")
    parts.append(training_videos(records))
    return ", ".join(parts)


def data_caption(datasets: Mapping[str, bool]) -> str:
    """``{"summe": True}`` (dataset -> surrogate?) -> ``"SumMe: surrogate features"``."""
    return "; ".join(f"{dataset_name(d)}: {features_label(s)}" for d, s in sorted(datasets.items()))


def f1_caption(records: Sequence[Mapping[str, Any]]) -> str:
    """What an F1 shown from ``records`` was computed on, per dataset: the summary, its shots, the user summaries
    and the aggregation over users (:func:`csta_lib.runs.record.f1_protocol_text`, from each run's data file
    provenance), e.g. ``"F1: SumMe: 15% knapsack summary over the eccv16 KTS shots vs ...; TVSum: ..."``."""
    by_dataset = {r["dataset"]: f1_protocol_text(r["dataset"], r.get("provenance", {}).get("data") or {})
                  for r in records}
    if not by_dataset:
        return "F1: no runs"
    return "F1: " + "; ".join(f"{dataset_name(d)}: {text}" for d, text in sorted(by_dataset.items()))
