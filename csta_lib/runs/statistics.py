"""How much a result moves from run to run: spread, 95 % intervals and paired differences of per-run values.

One home for the statistics of every results table (the book's and ``csta results``'). All functions are pure:
they take the per-run values of one number (one τ per training run, say) and return plain data.

**A run** is one training run: one fold × one seed. Runs whose value is undefined (NaN, e.g. a correlation of a
constant prediction) are left out and counted in ``n_undefined``.

**Spread** (:func:`spread`): the mean over the runs, the sample standard deviation ``sd`` (n − 1 in the
denominator) and a 95 % **t interval** for the mean, ``mean ± t(0.975, n − 1) · sd / √n`` (Student's t quantile
from scipy). With fewer than two runs there is no sd and no interval (``None``), and the tables say
"n = 1, no interval" instead of showing ±. The interval treats the runs as independent draws; on a grid of
folds × seeds the runs of one fold share their test videos, so it describes how well *this grid's* mean is pinned
down by its runs, not the spread of the method over other datasets.

**Paired differences** (:func:`paired_difference`): two sets of runs (two Table 2 rows, two CNNs, two selection
policies) are compared only on the runs they share, matched by a pairing key (fold and seed, and dataset): the
difference ``a − b`` is taken run by run, so the fold-to-fold differences of test videos cancel and what is left
is the run-to-run (seed) noise. Runs present on one side only are left out and counted. The reading rule
(:func:`paired_reading`):

- fewer than two pairs: ``"n = 1, no interval: cannot be told from seed noise"`` (or no shared runs at all);
- the 95 % t interval of the mean difference contains 0: ``"within seed noise"``;
- it excludes 0: ``"larger than seed noise"`` (``a`` higher, or lower, than ``b``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

#: The confidence level of every interval.
CONFIDENCE = 0.95
#: How the intervals are computed, in the words every table and page uses.
INTERVAL_METHOD = "95 % t interval over runs (mean ± t(0.975, n − 1) · sd / √n)"
#: What a table prints instead of an interval when there is only one run.
NO_INTERVAL = "no interval"
WITHIN_NOISE = "within seed noise"
ABOVE_NOISE = "larger than seed noise"
#: The reading rule of :func:`paired_reading`, in words (for captions and pages).
READING_RULE = (f"'{ABOVE_NOISE}' when the 95 % t interval of the mean paired difference excludes 0, "
                f"'{WITHIN_NOISE}' when it contains 0; with fewer than two shared runs there is no interval and "
                "no verdict")


@dataclass(frozen=True)
class Spread:
    """Mean, sd, n and 95 % t interval of the defined values of one number over runs."""

    mean: float | None  # None: no defined value
    sd: float | None  # None with fewer than two values
    n: int  # defined values
    ci_low: float | None  # None with fewer than two values
    ci_high: float | None
    n_undefined: int = 0  # NaN values left out

    @property
    def has_interval(self) -> bool:
        """Whether there were at least two runs (and so an sd and an interval)."""
        return self.ci_low is not None

    def contains(self, value: float) -> bool | None:
        """Whether ``value`` lies inside the interval (bounds included); None without an interval."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return bool(self.ci_low <= value <= self.ci_high)

    def as_dict(self) -> dict[str, Any]:
        """``{"mean", "std", "n", "ci_low", "ci_high"}`` (JSON-ready: None where undefined)."""
        return {"mean": self.mean, "std": self.sd, "n": self.n, "ci_low": self.ci_low, "ci_high": self.ci_high}


def _finite(values: Iterable[Any]) -> tuple[np.ndarray, int]:
    """The finite values as a float array, and how many were NaN or None."""
    raw = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    keep = np.isfinite(raw)
    return raw[keep], int((~keep).sum())


def t_quantile(n: int, confidence: float = CONFIDENCE) -> float:
    """Student's t quantile of a two-sided ``confidence`` interval with ``n − 1`` degrees of freedom (n ≥ 2)."""
    if n < 2:
        raise ValueError(f"a t interval needs at least 2 values, got {n}")
    return float(stats.t.ppf(0.5 + confidence / 2.0, df=n - 1))


def spread(values: Iterable[Any], confidence: float = CONFIDENCE) -> Spread:
    """The spread of per-run values (NaN and None left out and counted; see the module docstring)."""
    x, n_undefined = _finite(values)
    n = len(x)
    if n == 0:
        return Spread(None, None, 0, None, None, n_undefined)
    mean = float(x.mean())
    if n < 2:
        return Spread(mean, None, 1, None, None, n_undefined)
    sd = float(x.std(ddof=1))
    half = t_quantile(n, confidence) * sd / math.sqrt(n)
    return Spread(mean, sd, n, mean - half, mean + half, n_undefined)


@dataclass(frozen=True)
class Paired:
    """The paired difference ``a − b`` over the runs two sets share (:func:`paired_difference`)."""

    difference: Spread  # of a[k] − b[k] over shared keys with both values defined
    n_only_a: int  # runs of a without a partner in b
    n_only_b: int
    reading: str  # the plain sentence of :func:`paired_reading`

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the difference's mean, std, n, interval, the unpaired counts and the reading."""
        return {**self.difference.as_dict(), "n_only_a": self.n_only_a, "n_only_b": self.n_only_b,
                "reading": self.reading}


def paired_reading(difference: Spread) -> str:
    """The plain sentence for a paired difference (the rule of the module docstring, :data:`READING_RULE`)."""
    if difference.n == 0:
        return "no shared runs: nothing to compare"
    if not difference.has_interval:
        return f"n = 1, {NO_INTERVAL}: cannot be told from seed noise"
    if difference.contains(0.0):
        return WITHIN_NOISE
    return f"{ABOVE_NOISE} ({'higher' if (difference.mean or 0.0) > 0 else 'lower'})"


def paired_difference(a: Mapping[Any, Any], b: Mapping[Any, Any],
                      confidence: float = CONFIDENCE) -> Paired:
    """``a − b`` run by run over the keys both map (a key: e.g. ``(fold, seed)``), with its spread and reading.

    A key whose value is undefined (NaN or None) on either side counts in ``difference.n_undefined``; keys of one
    side only count in ``n_only_a`` / ``n_only_b``.
    """
    shared = [k for k in a if k in b]
    diffs = [np.nan if a[k] is None or b[k] is None else float(a[k]) - float(b[k]) for k in shared]
    difference = spread(diffs, confidence)
    return Paired(difference, len(a) - len(shared), sum(1 for k in b if k not in a), paired_reading(difference))


# ---------------------------------------------------------------------------------------------------------------
# the words of a spread in a table cell


def number_text(value: float | None, digits: int = 3) -> str:
    """A number for reading (``–`` when undefined; ``-0.000`` is written ``0.000``)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{float(value):.{digits}f}"
    return text.lstrip("-") if float(text) == 0 else text


def mean_sd_text(s: Spread, digits: int = 3) -> str:
    """``"0.385 ± 0.012"`` (mean ± sd over runs); just the mean with one run; ``–`` with none."""
    if s.sd is None:
        return number_text(s.mean, digits)
    return f"{number_text(s.mean, digits)} ± {number_text(s.sd, digits)}"


def interval_text(s: Spread, digits: int = 3) -> str:
    """``"[0.355, 0.415]"``; ``"n = 1, no interval"`` with one run; ``–`` with none."""
    if s.n == 0:
        return "–"
    if not s.has_interval:
        return f"n = {s.n}, {NO_INTERVAL}"
    return f"[{number_text(s.ci_low, digits)}, {number_text(s.ci_high, digits)}]"


def spread_text(s: Spread, digits: int = 3) -> str:
    """One cell: ``"0.385 ± 0.012 [0.355, 0.415]"``, or ``"0.385 (n = 1, no interval)"`` with one run."""
    if s.n == 0:
        return "–"
    if not s.has_interval:
        return f"{number_text(s.mean, digits)} ({interval_text(s, digits)})"
    return f"{mean_sd_text(s, digits)} {interval_text(s, digits)}"


def distance_in_sd(s: Spread, value: float) -> float | None:
    """``(value − mean) / sd``: how many run-to-run standard deviations ``value`` lies from the mean (None without
    an sd, or with sd = 0)."""
    if s.sd is None or s.mean is None or s.sd == 0:
        return None
    return (float(value) - s.mean) / s.sd
