"""csta_lib: a reference implementation of CSTA (Son, Park, Kim, CVPR 2024).

What a user of the library calls first, in the style of torchvision::

    import csta_lib
    model = csta_lib.build_model("paper")                  # or any name of csta_lib.PRESETS, weights=None
    csta_lib.load_official_state_dict(model, state_dict)    # an official CSTA checkpoint
    scores = model(features)                                # (T, 1024) GoogLeNet pool5 features -> (T,) scores
    summary = csta_lib.generate_summary(scores, change_points, n_frames, picks)   # 0/1 per frame, 15 % budget
    tau, rho = csta_lib.rank_correlation("otani", scores, user_scores)   # Kendall, Spearman

The package has three layers (CONTRIBUTING.md): the method (these top-level modules and ``csta_lib.data``),
``csta_lib.runs`` (training runs, the results store, grids, videos) and the surfaces (``csta_lib.book``,
``csta_lib.cli``). Imports go downward only; ``lint-imports`` checks it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it. Resolved on first use (PEP 562) rather than imported here: importing the
# model imports torch (~1 s), and `csta --help` or the data tools, which import this package, need none of it.
_PUBLIC = {
    "PRESETS": "csta_lib.config",
    "ModelConfig": "csta_lib.config",
    "get_config": "csta_lib.config",
    "build_model": "csta_lib.model",
    "load_official_state_dict": "csta_lib.model",
    "to_official_state_dict": "csta_lib.model",
    "knapsack": "csta_lib.evaluation",
    "generate_summary": "csta_lib.evaluation",
    "f1_score": "csta_lib.evaluation",
    "rank_correlation": "csta_lib.evaluation",
    "change_points": "csta_lib.kts",
    "load_eccv16": "csta_lib.data",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'csta_lib' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
