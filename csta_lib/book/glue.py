"""myst-nb ``glue`` helpers: numbers in the prose come from the executed notebook, never typed by hand."""

from __future__ import annotations

import math
from typing import Any

from myst_nb import glue


def glue_number(name: str, value: Any, digits: int = 3) -> float | int | str:
    """Glue a number (rounded to ``digits``) for ``{glue:text}`` in the prose; NaN is glued as "n/a"."""
    if isinstance(value, (int,)) and not isinstance(value, bool):
        out: Any = int(value)
    else:
        number = float(value)
        out = "n/a" if math.isnan(number) else round(number, digits)
    glue(name, out, display=False)
    return out


def glue_text(name: str, text: str) -> str:
    """Glue a string (a caption, a label) for ``{glue:text}``."""
    glue(name, str(text), display=False)
    return str(text)


def glue_pair(prefix: str, pair: tuple[float, float] | None, digits: int = 3) -> None:
    """Glue a (τ, ρ) pair as ``{prefix}_tau`` and ``{prefix}_rho`` (e.g. the paper's printed values)."""
    tau, rho = pair if pair is not None else (float("nan"), float("nan"))
    glue_number(f"{prefix}_tau", tau, digits)
    glue_number(f"{prefix}_rho", rho, digits)
