"""The book's one specification of the surrogate features (the data chapter's section ``surrogate-features``),
read from the code that builds them (:mod:`csta_lib.runs.surrogate`) and measured on the files this build used.

Every other page links to that section instead of describing the generator again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from csta_lib.book import captions
from csta_lib.data.eccv16 import Eccv16Dataset
from csta_lib.runs import surrogate

#: The section of the data chapter that holds the specification (a MyST label: link it with {ref}).
SECTION_LABEL = "surrogate-features"


def generator_constants() -> dict[str, Any]:
    """The generator's settings as the code defines them (the defaults every build uses)."""
    return {"signal": surrogate.DEFAULT_SIGNAL, "noise": surrogate.NOISE, "seed": surrogate.DEFAULT_SEED,
            "shot_seconds": surrogate.SHOT_SECONDS, "dim": surrogate.FEATURE_DIM}


def field_sources(datasets: Mapping[str, Eccv16Dataset]) -> pd.DataFrame:
    """One row per eccv16 field, one column per dataset: real, derived or synthetic, and from what (the surrogate
    files' own provenance)."""
    rows: dict[str, dict[str, str]] = {}
    for name, ds in datasets.items():
        prov = ds.provenance
        sources = prov.get("sources", {})
        for field in [*prov.get("real", []), *prov.get("derived", []), *prov.get("synthetic", [])]:
            kind = ("real" if field in prov.get("real", []) else
                    "derived" if field in prov.get("derived", []) else "synthetic")
            source = sources.get(field, "the generator below")
            rows.setdefault(field, {})[captions.dataset_name(name)] = f"{kind}: {source}"
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("field").fillna("–")


def coordinate_r2(features: np.ndarray, gtscore: np.ndarray) -> float:
    """Mean over feature coordinates of the squared correlation with ``gtscore`` (the share of a coordinate's
    variance the ground truth explains)."""
    x = features - features.mean(axis=0)
    g = gtscore - gtscore.mean()
    denominator = np.sqrt((x**2).sum(axis=0) * (g**2).sum())
    corr = np.divide(x.T @ g, denominator, out=np.zeros(x.shape[1]), where=denominator > 0)
    return float(np.mean(corr**2))


def first_component_tau(features: np.ndarray, gtscore: np.ndarray) -> float:
    """|Kendall τ| between ``gtscore`` and the video's first principal component of its features: how well the
    one dominant direction of the features ranks the steps as the ground truth does (sign-free)."""
    x = features - features.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    tau = kendalltau(x @ vt[0], gtscore).statistic
    return float(abs(tau))


def signal_strength(ds: Eccv16Dataset) -> dict[str, float]:
    """Per dataset: the median over videos of :func:`coordinate_r2` and :func:`first_component_tau`, and the
    number of videos."""
    r2 = [coordinate_r2(v.features.astype(np.float64), v.gtscore.astype(np.float64)) for v in ds.videos.values()]
    tau = [first_component_tau(v.features.astype(np.float64), v.gtscore) for v in ds.videos.values()]
    return {"coordinate_r2": float(np.median(r2)), "pc1_tau": float(np.median(tau)), "videos": len(r2)}
