"""Evaluation of video summaries: knapsack summaries, F1 and the rank-correlation protocols.

Every function here is a small pure function over numpy arrays and documents the protocol it
implements (specified on the book's method page, sections method-summary and method-metrics). The
literature uses three different rank-correlation protocols, so every function that returns τ/ρ takes
the protocol name, and every table built from them carries it:

``csta_summe``
    The official CSTA SumMe protocol (from MSVA): the binary 15 % knapsack summary at full frame
    rate against the mean of the binary user summaries (method page, method-metrics).
``casum_tvsum``
    The official CSTA TVSum protocol (from CA-SUM): the raw 15-frame step scores against each
    annotator's frame-level scores divided by their max and subsampled ``[::15]``, τ and ρ averaged
    over the annotators (method page, method-metrics).
``otani``
    Otani et al., CVPR 2019: frame-level predicted scores against each annotator's frame-level
    scores; τ is τ-b on ``rankdata(-x)``, ``rankdata(-y)``, ρ is Spearman; both averaged over the
    annotators.

τ is always scipy's τ-b (``kendalltau`` default) and ρ scipy's ``spearmanr``. A correlation with a
constant input is undefined: it is returned as NaN, never dropped; aggregations count NaNs. τ-b is
computed from exact integer pair counts with scipy's final formula (bit-identical to
``kendalltau``), batched over users; ρ is the batched Pearson correlation of average ranks.

Reference rows measured on the real annotations (mean over videos):

=========================  ===============  ===============  ======================
row                        SumMe τ / ρ      TVSum τ / ρ      how
=========================  ===============  ===============  ======================
Human (``otani``)          0.2051 / 0.2126  0.1774 / 0.2042  :func:`human_baseline`
Random (``csta_summe``)    0.093 / 0.104    n/a              :func:`random_baseline`
Random (per-user)          0.001 / 0.001    0.000 / 0.000    20 draws, std < 0.01
gtscore (paper protocol)   0.4047 / 0.4524  0.3782 / 0.4732  :func:`upper_bound`
gtscore (``otani``)        0.3791 / 0.4234  0.3639 / 0.4561  :func:`upper_bound`
=========================  ===============  ===============  ======================
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from csta_lib.data.eccv16 import FRAME_STEP, check_dataset, video_sort_key
from csta_lib.errors import CstaInputError, DataFormatError

__all__ = [
    "PAPER_PROTOCOL",
    "PROTOCOLS",
    "SUMMARY_BUDGET",
    "DatasetEvaluator",
    "VideoReference",
    "F1_AGGREGATION",
    "aggregate_splits",
    "check_budget",
    "check_protocol",
    "dataset_human_baseline",
    "f1_per_user",
    "f1_score",
    "frame_scores",
    "generate_summary",
    "human_baseline",
    "knapsack",
    "mean_metrics",
    "protocol_reference_rows",
    "random_baseline",
    "rank_correlation",
    "references_from_dataset",
    "references_from_fields",
    "shot_scores",
    "upper_bound",
]

#: Rank-correlation protocols (see the module docstring).
PROTOCOLS: tuple[str, ...] = ("csta_summe", "casum_tvsum", "otani")
#: The protocol the CSTA paper uses for each dataset.
PAPER_PROTOCOL: dict[str, str] = {"summe": "csta_summe", "tvsum": "casum_tvsum"}
#: Summary length as a fraction of the video (the paper's and every cited method's 15 %).
SUMMARY_BUDGET = 0.15
#: Customary F1 aggregation over users (method page, method-metrics): max for SumMe, mean for TVSum.
F1_AGGREGATION: dict[str, str] = {"summe": "max", "tvsum": "mean"}


def check_protocol(protocol: str) -> str:
    """Return ``protocol`` if it is known, else raise naming the valid ones."""
    if protocol not in PROTOCOLS:
        raise CstaInputError(f"unknown protocol {protocol!r}; valid protocols: {', '.join(PROTOCOLS)}")
    return protocol


def _finite_1d(name: str, x: Any) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise CstaInputError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise CstaInputError(f"{name} is empty")
    if arr.dtype.kind not in "biuf":  # complex scores have no order: refused like text
        raise CstaInputError(f"{name} must be real numbers, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise CstaInputError(f"{name} contains NaN or infinite values")
    return arr


def _user_matrix(name: str, x: Any, n_frames: int | None = None) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise CstaInputError(f"{name} must be a (n_users, n_frames) matrix, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise CstaInputError(f"{name} has no users (shape {arr.shape})")
    if arr.shape[1] == 0:
        raise CstaInputError(f"{name} has no frames (shape {arr.shape})")
    if not np.all(np.isfinite(arr)):
        raise CstaInputError(f"{name} contains NaN or infinite values")
    if n_frames is not None and arr.shape[1] != n_frames:
        raise CstaInputError(f"length mismatch: {name} has {arr.shape[1]} frames, expected {n_frames}")
    return arr


# --------------------------------------------------------------------------------------------
# Knapsack and summaries (method page, method-summary)
# --------------------------------------------------------------------------------------------


def knapsack(values: Sequence[float] | np.ndarray, weights: Sequence[int] | np.ndarray, capacity: int) -> np.ndarray:
    """Exact 0/1 knapsack with the official tie-breaking; boolean mask of the selected items.

    The table is the textbook ``K[i][w] = max(v_i + K[i-1][w - w_i], K[i-1][w])`` (``K[i][0] = 0``),
    computed one item at a time but vectorised over all capacities. Values are float64 and added in
    the same order as the official Python code, so the table is bit-identical to it. Backtracking
    starts at ``w = capacity`` and, as in the official code (method page, method-summary, step 4), selects item
    ``i`` iff ``K[i][w] != K[i-1][w]``: an item whose inclusion does not change the optimum at the
    current capacity is left out. Memory is one byte per (item, capacity) cell.
    """
    vals = _finite_1d("knapsack values", values).astype(np.float64)
    wts = np.asarray(weights)
    if wts.shape != vals.shape:
        raise CstaInputError(f"length mismatch: {vals.size} knapsack values but weights of shape {wts.shape}")
    if not np.issubdtype(wts.dtype, np.integer):
        if not np.all(np.isfinite(wts)) or np.any(wts != np.round(wts)):
            raise CstaInputError("knapsack weights must be integers")
        wts = wts.astype(np.int64)
    if np.any(wts < 0):
        raise CstaInputError("knapsack weights must be non-negative")
    if int(capacity) != capacity or capacity < 0:
        raise CstaInputError(f"knapsack capacity must be a non-negative integer, got {capacity!r}")
    capacity = int(capacity)
    n = vals.size
    row = np.zeros(capacity + 1, dtype=np.float64)
    changed = np.zeros((n, capacity + 1), dtype=bool)  # changed[i, w]: K[i+1][w] != K[i][w]
    for i in range(n):
        w_i = int(wts[i])
        if w_i > capacity:
            continue  # the item never fits: the row is unchanged
        new = row.copy()
        np.maximum(vals[i] + row[: capacity + 1 - w_i], row[w_i:], out=new[w_i:])
        new[0] = 0.0  # the official table forces K[i][0] = 0, even for a zero-weight item
        changed[i] = new != row
        row = new
    selected = np.zeros(n, dtype=bool)
    w = capacity
    for i in range(n - 1, -1, -1):
        if changed[i, w]:
            selected[i] = True
            w -= int(wts[i])
    return selected


def _check_picks(picks: Any, n_frames: int, n_steps: int) -> np.ndarray:
    p = np.asarray(picks)
    if p.ndim != 1 or p.size == 0:
        raise CstaInputError(f"picks must be a non-empty 1-D array, got shape {p.shape}")
    if not np.issubdtype(p.dtype, np.integer) and not np.all(np.isfinite(p)):
        raise CstaInputError("picks contain NaN or infinite values")
    p = p.astype(np.int64)  # the official code casts picks to int32 (truncation); values are whole
    if p.size != n_steps:
        raise CstaInputError(f"length mismatch: {n_steps} step scores but {p.size} picks")
    if p[0] < 0 or np.any(np.diff(p) <= 0):
        raise CstaInputError("picks must be non-negative and strictly increasing")
    if p[-1] >= n_frames:
        raise CstaInputError(f"the last pick ({p[-1]}) is not a frame of a video of {n_frames} frames")
    return p


def frame_scores(scores: Any, picks: Any, n_frames: int) -> np.ndarray:
    """Step scores upsampled to frames (method page, method-summary, step 1), float32 like the official code.

    Frame ``f`` with ``picks[i] <= f < picks[i+1]`` (``picks[T] = n_frames``) gets ``scores[i]``;
    frames before ``picks[0]`` (when picks do not start at 0) get 0.
    """
    s = _finite_1d("scores", scores)
    n_frames = _check_n_frames(n_frames)
    p = _check_picks(picks, n_frames, s.size)
    bounds = np.append(p, n_frames)
    out = np.zeros(n_frames, dtype=np.float32)
    out[p[0] :] = np.repeat(s.astype(np.float32), np.diff(bounds))
    return out


def _check_n_frames(n_frames: Any) -> int:
    if int(n_frames) != n_frames or n_frames <= 0:
        raise CstaInputError(f"n_frames must be a positive integer, got {n_frames!r}")
    return int(n_frames)


def _check_shots(change_points: Any, n_frames: int) -> np.ndarray:
    cp = np.asarray(change_points)
    if cp.ndim != 2 or cp.shape[1] != 2 or cp.shape[0] == 0:
        raise CstaInputError(f"change_points must be a non-empty (n_shots, 2) array, got shape {cp.shape}")
    if not np.issubdtype(cp.dtype, np.integer) and (not np.all(np.isfinite(cp)) or np.any(cp != np.round(cp))):
        raise CstaInputError("change_points must be integer frame indices")
    cp = cp.astype(np.int64)
    if np.any(cp[:, 1] < cp[:, 0]):
        raise CstaInputError("change_points contain a shot whose end is before its start")
    if cp[0, 0] != 0 or cp[-1, 1] != n_frames - 1 or np.any(cp[1:, 0] != cp[:-1, 1] + 1):
        raise CstaInputError(
            f"change_points do not cover the video: shots must be contiguous inclusive [start, end] "
            f"from frame 0 to frame {n_frames - 1} (got {cp[0, 0]}..{cp[-1, 1]}"
            + (", with gaps or overlaps" if np.any(cp[1:, 0] != cp[:-1, 1] + 1) else "")
            + ")"
        )
    return cp


def shot_scores(frame_level: np.ndarray, change_points: np.ndarray) -> np.ndarray:
    """Mean frame score of each inclusive [start, end] shot (method page, method-summary, step 2), as float64.

    The mean is taken in float32 over the float32 frame scores, exactly as the official
    ``frame_scores[s:e+1].mean()``; a mean, not a sum, so long shots are not favoured.
    """
    return np.array([frame_level[s : e + 1].mean() for s, e in change_points], dtype=np.float64)


def check_budget(budget: Any) -> float:
    """``budget`` (the summary's share of the video) as a float in (0, 1], or a :class:`CstaInputError`."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0.0 < float(budget) <= 1.0:
        raise CstaInputError(f"budget must be a fraction in (0, 1], got {budget!r}")
    return float(budget)


def generate_summary(
    scores: Any, change_points: Any, n_frames: int, picks: Any, budget: float = SUMMARY_BUDGET, *,
    weights: Any = None,
) -> np.ndarray:
    """Binary keyshot summary of a video (method page, method-summary), int8 0/1 of length ``n_frames``.

    1. the ``T`` step scores are upsampled to frames through ``picks`` (:func:`frame_scores`);
    2. each KTS shot scores the mean of its frames (:func:`shot_scores`);
    3. the budget is ``floor(budget * n_frames)`` frames, ``n_frames`` = last shot end + 1;
    4. a 0/1 knapsack over shots (values = shot means, weights = shot lengths) picks the shots
       (:func:`knapsack`, official tie-breaking). A shot longer than the budget is never selected;
       all-zero scores select nothing (every shot ties with leaving it out).

    ``change_points`` must be contiguous inclusive shots covering frames ``0 .. n_frames-1``. ``weights``
    (integers, one per shot, in frames) replace the shot lengths as knapsack weights: a variable-frame-rate
    video weighs its shots by their real durations, so that the budget is a fraction of its time.
    """
    n_frames = _check_n_frames(n_frames)
    try:
        budget = float(budget)
    except (TypeError, ValueError):
        budget = math.nan
    if not 0.0 <= budget <= 1.0:
        raise CstaInputError(f"budget must be a fraction in [0, 1], got {budget!r}")
    shots = _check_shots(change_points, n_frames)
    frame_level = frame_scores(scores, picks, n_frames)
    values = shot_scores(frame_level, shots)
    lengths = shots[:, 1] - shots[:, 0] + 1
    capacity = int((int(shots[-1, 1]) + 1) * budget)  # int() floors, as the official code
    chosen = knapsack(values, lengths if weights is None else weights, capacity)
    summary = np.zeros(n_frames, dtype=np.int8)
    summary[np.repeat(chosen, lengths)] = 1
    return summary


# --------------------------------------------------------------------------------------------
# Rank correlations: exact τ-b and Spearman ρ of one prediction against many reference rows
# --------------------------------------------------------------------------------------------

# Above this many counting cells (users x frames x reference levels) τ-b falls back to scipy.
_MAX_COUNT_CELLS = 8_000_000
# Contingency tables (x levels x reference levels) up to this size count pairs directly.
_MAX_TABLE_CELLS = 4096


@dataclass(frozen=True, eq=False)
class _RankReference:
    """Reference rows (U, n) prepared once for repeated τ-b / ρ against new predictions.

    τ-b is computed exactly from integer pair counts, like scipy's ``kendalltau`` (same final
    formula, so the same float result); ρ is the Pearson correlation of average ranks, batched over
    the rows (equal to scipy's ``spearmanr`` up to float rounding).
    """

    rows: np.ndarray  # (U, n) float64
    codes: np.ndarray  # (U, n) dense level codes per row
    n_levels: int
    ytie: tuple[int, ...]  # tied pairs within each row
    centred_ranks: np.ndarray  # (U, n) average ranks minus their mean
    rank_norms: np.ndarray  # (U,)
    constant: np.ndarray  # (U,) bool: rows with one value (τ, ρ undefined)

    @classmethod
    def build(cls, rows: np.ndarray) -> _RankReference:
        from scipy import stats  # imported here: scipy.stats costs ~1 s at start-up
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        # a row with NaN (e.g. an empty user row divided by its max 0) has undefined τ/ρ, as in
        # scipy: make it constant so that it yields NaN
        rows = np.where(np.isfinite(rows).all(axis=1, keepdims=True), rows, 0.0)
        codes = np.empty(rows.shape, dtype=np.int64)
        ytie = []
        for u, row in enumerate(rows):
            _, codes[u], counts = np.unique(row, return_inverse=True, return_counts=True)
            ytie.append(int((counts * (counts - 1) // 2).sum()))
        ranks = stats.rankdata(rows, axis=1)
        centred = ranks - ranks.mean(axis=1, keepdims=True)
        return cls(rows=rows, codes=codes, n_levels=int(codes.max()) + 1, ytie=tuple(ytie),
                   centred_ranks=centred, rank_norms=np.sqrt((centred**2).sum(axis=1)),
                   constant=np.array([t == rows.shape[1] * (rows.shape[1] - 1) // 2 for t in ytie]))

    @property
    def n(self) -> int:
        return self.rows.shape[1]

    def kendall(self, x: np.ndarray) -> np.ndarray:
        """τ-b of ``x`` against every row (NaN where either side is constant)."""
        n = self.n
        tot = n * (n - 1) // 2
        x_levels, x_codes, x_counts = np.unique(x, return_inverse=True, return_counts=True)
        xtie = int((x_counts * (x_counts - 1) // 2).sum())
        out = np.full(self.rows.shape[0], np.nan)
        if xtie == tot:
            return out
        if x_levels.size * self.n_levels <= _MAX_TABLE_CELLS:
            con_minus_dis = self._con_minus_dis_table(x_codes, x_levels.size)
        elif self.rows.size * self.n_levels <= _MAX_COUNT_CELLS:
            con_minus_dis = self._con_minus_dis_sorted(x)
        else:
            return self._kendall_scipy(x)
        for u in range(out.size):
            if self.ytie[u] == tot:
                continue
            # scipy's formula, in the same order, so the value is bit-identical
            tau = int(con_minus_dis[u]) / np.sqrt(tot - xtie) / np.sqrt(tot - self.ytie[u])
            out[u] = np.minimum(1.0, max(-1.0, tau))
        return out

    def _con_minus_dis_table(self, x_codes: np.ndarray, x_levels: int) -> np.ndarray:
        """Concordant minus discordant pairs from (x level, y level) contingency tables: few x levels."""
        n_users, n_levels = self.codes.shape[0], self.n_levels
        cell = (np.arange(n_users)[:, None] * x_levels + x_codes[None, :]) * n_levels + self.codes
        table = np.bincount(cell.ravel(), minlength=n_users * x_levels * n_levels)
        table = table.reshape(n_users, x_levels, n_levels).astype(np.int64)
        # at_least[u, a, b] = pairs-to-be with x level >= a and y level >= b (zero-padded)
        at_least = np.zeros((n_users, x_levels + 1, n_levels + 1), dtype=np.int64)
        at_least[:, :-1, :-1] = table[:, ::-1, ::-1].cumsum(axis=1).cumsum(axis=2)[:, ::-1, ::-1]
        higher_both = at_least[:, 1:, 1:]  # x level > a and y level > b
        higher_x_lower_y = at_least[:, 1:, :1] - at_least[:, 1:, :-1]  # x level > a and y level < b
        return (table * (higher_both - higher_x_lower_y)).sum(axis=(1, 2))

    def _con_minus_dis_sorted(self, x: np.ndarray) -> np.ndarray:
        """Concordant minus discordant pairs by a pass over ``x`` in sorted order: many x levels."""
        n = self.n
        order = np.argsort(x, kind="stable")
        xs = x[order]
        first = np.searchsorted(xs, xs, side="left")  # start of each element's tie group in x
        yc = self.codes[:, order]  # (U, n)
        onehot = np.zeros((yc.shape[0], n + 1, self.n_levels), dtype=np.int32)
        np.put_along_axis(onehot[:, 1:, :], yc[:, :, None], 1, axis=2)
        before = np.cumsum(onehot, axis=1, dtype=np.int64)[:, first, :]  # counts over smaller x
        at_or_below = np.cumsum(before, axis=2)
        idx = yc[:, :, None]
        le = np.take_along_axis(at_or_below, idx, axis=2)[..., 0]
        eq = np.take_along_axis(before, idx, axis=2)[..., 0]
        lower, higher = le - eq, first[None, :] - le
        return (lower - higher).sum(axis=1)

    def _kendall_scipy(self, x: np.ndarray) -> np.ndarray:
        from scipy import stats  # imported here: scipy.stats costs ~1 s at start-up
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.array([stats.kendalltau(x, row)[0] for row in self.rows], dtype=np.float64)

    def spearman(self, x: np.ndarray) -> np.ndarray:
        """Spearman ρ of ``x`` against every row (NaN where either side is constant)."""
        from scipy import stats  # imported here: scipy.stats costs ~1 s at start-up
        r = stats.rankdata(x)
        r -= r.mean()
        norm = np.sqrt((r**2).sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = (self.centred_ranks @ r) / (self.rank_norms * norm)
        rho = np.clip(rho, -1.0, 1.0)
        rho[self.constant | (norm == 0)] = np.nan
        return rho


def _user_mean(values: np.ndarray) -> float:
    """Mean over users as the official code takes it: a NaN user makes the video NaN."""
    return float(np.mean(values))


def _normalised_steps(user_scores: np.ndarray) -> np.ndarray:
    """CA-SUM/CSTA TVSum reference rows: each user's scores / their max, then ``[::15]``.

    A row whose max is 0 (an empty binary summary) becomes NaN, and that user's τ/ρ NaN.
    """
    maxima = user_scores.max(axis=1, initial=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (user_scores / maxima)[:, ::FRAME_STEP]


def protocol_reference_rows(protocol: str, reference: Any) -> np.ndarray:
    """The rows a prediction is correlated with under ``protocol`` (method page, method-metrics).

    ``csta_summe``: one row, the mean of the binary user summaries; ``casum_tvsum``: the users'
    scores divided by their max and subsampled ``[::15]``; ``otani``: the users' frame-level scores.
    """
    check_protocol(protocol)
    ref = np.asarray(reference)
    if ref.ndim == 1:  # one user
        ref = ref.reshape(1, -1)
    ref = _user_matrix("reference", ref).astype(np.float64)
    if protocol == "csta_summe":
        return ref.mean(axis=0, keepdims=True)
    if protocol == "casum_tvsum":
        return _normalised_steps(ref)
    return ref


def _prediction(protocol: str, prediction: Any, n: int) -> np.ndarray:
    x = _finite_1d("prediction", prediction).astype(np.float64)
    if x.size != n:
        what = {"csta_summe": "frames in the user summaries", "casum_tvsum": "15-frame steps in the [::15] "
                "user scores", "otani": "frames in the user scores"}[protocol]
        raise CstaInputError(f"length mismatch ({protocol}): prediction has {x.size} values, "
                             f"but there are {n} {what}")
    return x


def _correlate(protocol: str, x: np.ndarray, ref: _RankReference) -> tuple[float, float]:
    x = _prediction(protocol, x, ref.n)
    return _user_mean(ref.kendall(x)), _user_mean(ref.spearman(x))


def rank_correlation(protocol: str, prediction: Any, reference: Any) -> tuple[float, float]:
    """(τ, ρ) of one video under ``protocol`` (see the module docstring); NaN when undefined.

    * ``csta_summe``: ``prediction`` = binary summary (n_frames,), ``reference`` = binary user
      summaries (n_users, n_frames); τ-b and ρ against their mean over users (method page, method-metrics).
    * ``casum_tvsum``: ``prediction`` = step scores (T,), ``reference`` = raw TVSum user scores 1..5
      (n_users, n_frames); each user row / its max, ``[::15]`` (length must be T), τ and ρ per user,
      then the mean over users (method page, method-metrics).
    * ``otani``: ``prediction`` = frame-level scores (n_frames,), ``reference`` = user scores
      (n_users, n_frames); τ-b of ``rankdata(-x)``, ``rankdata(-y)`` and ρ per user, then the mean.

    A constant prediction or reference row makes τ and ρ NaN (scipy's convention); with
    per-user averaging one undefined user makes the video NaN, as in the official code.
    """
    rows = protocol_reference_rows(protocol, reference)
    return _correlate(protocol, prediction, _RankReference.build(rows))


# --------------------------------------------------------------------------------------------
# F1 (method page, method-metrics: not in the CSTA code; the customary VASNet/PGL-SUM/DSNet convention)
# --------------------------------------------------------------------------------------------


def f1_per_user(summary: Any, user_summary: Any) -> np.ndarray:
    """F1 of a binary machine summary against each binary user summary (values > 0 = selected).

    precision = overlap / ``|machine|``, recall = overlap / ``|user|``; F1 = 0 when both are 0 (an empty
    machine summary or an empty user summary gives 0, as in the customary code).
    """
    machine = _finite_1d("summary", summary) > 0
    users = _user_matrix("user_summary", user_summary, machine.size) > 0
    overlap = (users & machine[None, :]).sum(axis=1).astype(np.float64)
    precision = overlap / (machine.sum() + 1e-8)
    recall = overlap / (users.sum(axis=1) + 1e-8)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(overlap > 0, 2 * precision * recall / (precision + recall), 0.0)
    return f1


def f1_score(summary: Any, user_summary: Any, aggregation: str = "max") -> float:
    """F1 in [0, 1] aggregated over users: ``"max"`` (SumMe convention) or ``"mean"`` (TVSum)."""
    if aggregation not in ("max", "mean"):
        raise CstaInputError(f"unknown F1 aggregation {aggregation!r}; valid: max, mean")
    f1 = f1_per_user(summary, user_summary)
    return float(f1.max() if aggregation == "max" else f1.mean())


# --------------------------------------------------------------------------------------------
# Per-dataset evaluation (references prepared once; used every epoch by training)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class VideoReference:
    """What evaluating one video needs, independent of features.

    ``user_summary``: binary (U, n_frames) summaries (SumMe ``csta_summe``, F1);
    ``user_scores``: raw frame-level user scores (U, n_frames) (TVSum 1..5 for ``casum_tvsum`` and
    ``otani``; SumMe GT ``user_score`` for ``otani``); ``change_points``: inclusive KTS shots.
    """

    key: str
    n_frames: int
    picks: np.ndarray
    change_points: np.ndarray | None = None
    user_summary: np.ndarray | None = None
    user_scores: np.ndarray | None = None
    gtscore: np.ndarray | None = None

    @property
    def n_steps(self) -> int:
        return int(self.picks.size)


def references_from_dataset(dataset: Any,
                            user_scores: Mapping[str, np.ndarray] | None = None) -> dict[str, VideoReference]:
    """:class:`VideoReference` of every video of an :class:`~csta_lib.data.eccv16.Eccv16Dataset`."""
    out = {}
    for key, v in dataset.items():
        # the given scores, else those the file carries (a user dataset of importance scores stores them)
        scores = getattr(v, "user_scores", None) if user_scores is None else user_scores.get(key)
        out[key] = VideoReference(key=key, n_frames=int(v.n_frames), picks=np.asarray(v.picks),
                                  change_points=np.asarray(v.change_points), user_summary=v.user_summary,
                                  user_scores=scores, gtscore=np.asarray(v.gtscore))
    return out


def references_from_fields(path: Any, group: str = "/",
                           user_scores: Mapping[str, np.ndarray] | None = None) -> dict[str, VideoReference]:
    """:class:`VideoReference` of every video in ``group`` of an h5 file in the eccv16 layout, from its annotation
    fields alone (no features are read): the fields file (group ``summe``/``tvsum``) or a feature file (``"/"``).

    The real SumMe fields have KTS ``change_points`` and ``user_summary``; the TVSum fields only ``gtscore``,
    ``picks`` and ``n_frames`` (so no summaries: ``csta_summe`` and F1 are unavailable for it). ``user_scores``
    (raw annotation scores by key) are attached where given.
    """
    scores = user_scores or {}
    out: dict[str, VideoReference] = {}
    with h5py.File(path, "r") as h5:
        if group not in h5:
            raise DataFormatError(f"{path}: no group {group!r}")
        videos = h5[group]
        for key in sorted(videos, key=video_sort_key):
            g, where = videos[key], f"{path}: {key}" if group == "/" else f"{path}: {group}/{key}"
            change_points = _field(g, "change_points")
            out[key] = VideoReference(key=key, n_frames=int(_required_field(g, "n_frames", where)),
                                      picks=_required_field(g, "picks", where).astype(np.int64),
                                      change_points=None if change_points is None else change_points.astype(np.int64),
                                      user_summary=_field(g, "user_summary"), user_scores=scores.get(key),
                                      gtscore=_field(g, "gtscore"))
    return out


def _field(group: Any, name: str) -> np.ndarray | None:
    """The field ``name`` of an h5 group as an array, None when the group has none."""
    return np.asarray(group[name][()]) if name in group else None


def _required_field(group: Any, name: str, where: str) -> np.ndarray:
    value = _field(group, name)
    if value is None:
        raise DataFormatError(f"{where}: no {name!r} field")
    return value


class DatasetEvaluator:
    """Evaluate step scores of many videos under one protocol; references are prepared once.

    ``DatasetEvaluator(dataset)`` takes an :class:`~csta_lib.data.eccv16.Eccv16Dataset`; the protocol
    defaults to the paper's for the dataset's annotation style (:data:`PAPER_PROTOCOL`; a benchmark's style is
    itself, a user dataset's is ``summe`` or ``tvsum``: selected intervals or importance scores). On TVSum,
    ``casum_tvsum`` and ``otani`` use the raw user scores 1..5 (``tvsum_annotations``: the dict of
    :func:`csta_lib.data.annotations.load_tvsum`, required there; :func:`csta_lib.runs.locator.dataset_evaluator`
    passes the project's). On SumMe they use the
    binary ``user_summary`` of the dataset as each user's frame scores, unless
    ``summe_annotations`` (:func:`~csta_lib.data.annotations.load_summe`) is given (a user dataset's importance
    scores come with its file, ``user_scores``): the raw GT
    ``user_score`` numbers each user's selected segments 1, 2, 3, ... in temporal order, so it is
    not an importance score (though it is what reproduces the paper's SumMe Human row, see
    :func:`human_baseline`). For ``otani`` the step scores are upsampled to frames as for the
    summaries (:func:`frame_scores`).

    :meth:`evaluate` returns ``{key: {"tau", "rho", "f1", "protocol"}}``; F1 (in [0, 1], max over
    users for SumMe, mean for TVSum) is computed from the 15 % knapsack summary when the video has
    user summaries, else NaN.
    """

    def __init__(self, dataset: Any = None, tvsum_annotations: Mapping[str, Any] | None = None,
                 protocol: str | None = None, budget: float = SUMMARY_BUDGET, *,
                 references: Mapping[str, VideoReference] | None = None, dataset_name: str | None = None,
                 summe_annotations: Mapping[str, Any] | None = None, style: str | None = None) -> None:
        if references is None:
            if dataset is None:
                raise CstaInputError("DatasetEvaluator needs a dataset or references")
            dataset_name = dataset.dataset
            style = style or getattr(dataset, "style", None)
        style = style or dataset_name
        if style not in PAPER_PROTOCOL:
            raise CstaInputError(f"unknown dataset {dataset_name!r}; valid: {', '.join(PAPER_PROTOCOL)}")
        self.dataset = dataset_name
        self.style = style
        self.protocol = check_protocol(protocol or PAPER_PROTOCOL[style])
        self.budget = budget
        self.f1_aggregation = F1_AGGREGATION[style]
        if references is None:
            scores = None
            carried = any(getattr(v, "user_scores", None) is not None for _, v in dataset.items())
            if self.protocol in ("casum_tvsum", "otani"):
                given = tvsum_annotations if dataset_name == "tvsum" else summe_annotations
                if given is not None:
                    scores = {k: np.asarray(v.user_scores if hasattr(v, "user_scores") else v)
                              for k, v in given.items()}
                elif style == "tvsum" and not carried:  # the eccv16 file's binary summaries are not TVSum's scores
                    raise CstaInputError(f"TVSum under {self.protocol} needs the raw user scores: pass "
                                         "tvsum_annotations (the annotations of ydata-tvsum50.mat)")
            references = references_from_dataset(dataset, scores)
        self.references: dict[str, VideoReference] = dict(references)
        self._rank_refs: dict[str, _RankReference] = {}

    def keys(self) -> list[str]:
        return list(self.references)

    def _rank_reference(self, key: str) -> _RankReference:
        if key not in self._rank_refs:
            ref = self.references[key]
            if self.protocol == "csta_summe":
                if ref.user_summary is None:
                    raise CstaInputError(f"{key}: csta_summe needs user summaries, the dataset has none")
                matrix = _user_matrix(f"{key} user_summary", ref.user_summary, ref.n_frames)
            else:
                users = ref.user_scores if ref.user_scores is not None else ref.user_summary
                if users is None:
                    raise CstaInputError(f"{key}: protocol {self.protocol} needs user scores, none given")
                matrix = _user_matrix(f"{key} user scores", users, ref.n_frames)
            rows = protocol_reference_rows(self.protocol, matrix)
            if self.protocol == "casum_tvsum" and rows.shape[1] != ref.n_steps:
                raise CstaInputError(f"length mismatch: {key} has {ref.n_steps} steps but its user scores "
                                     f"[::{FRAME_STEP}] have {rows.shape[1]}")
            self._rank_refs[key] = _RankReference.build(rows)
        return self._rank_refs[key]

    def evaluate_video(self, key: str, scores: Any) -> dict[str, Any]:
        """τ, ρ (under the evaluator's protocol) and F1 of one video's step scores."""
        if key not in self.references:
            raise CstaInputError(f"no video {key!r} in the {self.dataset} references")
        ref = self.references[key]
        s = _finite_1d(f"{key} scores", scores)
        if s.size != ref.n_steps:
            raise CstaInputError(f"length mismatch: {key} has {s.size} scores but {ref.n_steps} steps (picks)")
        summary = None
        if ref.change_points is not None and (self.protocol == "csta_summe" or ref.user_summary is not None):
            summary = generate_summary(s, ref.change_points, ref.n_frames, ref.picks, self.budget)
        if self.protocol == "csta_summe":
            prediction = summary
        elif self.protocol == "casum_tvsum":
            prediction = s
        else:
            prediction = frame_scores(s, ref.picks, ref.n_frames)
        if prediction is None:
            raise CstaInputError(f"{key}: csta_summe needs KTS change points, the dataset has none")
        tau, rho = _correlate(self.protocol, prediction, self._rank_reference(key))
        f1 = math.nan
        if summary is not None and ref.user_summary is not None:
            f1 = f1_score(summary, ref.user_summary, self.f1_aggregation)
        return {"tau": tau, "rho": rho, "f1": f1, "protocol": self.protocol}

    def evaluate(self, scores_by_key: Mapping[str, Any],
                 keys: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """Per-video results for ``keys`` (default: every key of ``scores_by_key``)."""
        keys = list(scores_by_key) if keys is None else list(keys)
        missing = [k for k in keys if k not in scores_by_key]
        if missing:
            raise CstaInputError(f"no scores for {len(missing)} video(s): {', '.join(missing[:5])}")
        return {k: self.evaluate_video(k, scores_by_key[k]) for k in keys}

    def mean(self, results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Mean over the videos of ``results`` (see :func:`mean_metrics`)."""
        return mean_metrics(results, protocol=self.protocol)


def mean_metrics(results: Mapping[str, Mapping[str, Any]], protocol: str | None = None) -> dict[str, Any]:
    """Mean τ, ρ, F1 over videos, as the paper aggregates a split, with NaNs counted.

    ``tau``/``rho``/``f1`` are plain means, so one undefined video makes them NaN (as in the
    official code); ``n_nan_*`` count the undefined videos and ``*_defined`` average the others.
    """
    if not results:
        raise CstaInputError("no videos to average")
    out: dict[str, Any] = {"protocol": protocol or next(iter(results.values())).get("protocol"),
                           "n_videos": len(results)}
    for metric in ("tau", "rho", "f1"):
        vals = np.array([float(r.get(metric, math.nan)) for r in results.values()], dtype=np.float64)
        nan = np.isnan(vals)
        out[metric] = float(vals.mean())
        out[f"n_nan_{metric}"] = int(nan.sum())
        out[f"{metric}_defined"] = float(vals[~nan].mean()) if (~nan).any() else math.nan
    return out


def aggregate_splits(split_means: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The paper's final number: the mean over splits of the per-split means (method page, method-metrics).

    Also gives the population std over splits (``*_std``); for seeds x splits pass every
    (seed, split) mean and read ``*_std`` as the spread over all of them.
    """
    if not split_means:
        raise CstaInputError("no splits to aggregate")
    protocols = {m.get("protocol") for m in split_means}
    if len(protocols) > 1:
        raise CstaInputError(f"cannot aggregate different protocols: {sorted(map(str, protocols))}")
    out: dict[str, Any] = {"protocol": protocols.pop(), "n_splits": len(split_means)}
    for metric in ("tau", "rho", "f1"):
        vals = np.array([float(m.get(metric, math.nan)) for m in split_means], dtype=np.float64)
        out[metric] = float(vals.mean())
        out[f"{metric}_std"] = float(vals.std())
        out[f"n_nan_{metric}"] = int(np.isnan(vals).sum())
    return out


# --------------------------------------------------------------------------------------------
# Baselines: Human, Random, and the ground-truth upper bound
# --------------------------------------------------------------------------------------------


def human_baseline(user_scores: Any, protocol: str = "otani") -> tuple[float, float]:
    """Human (τ, ρ) of one video, Otani's leave-one-out: each annotator as the "prediction".

    ``otani`` (what the paper's Table 1 Human row is): every ordered pair (i, j), i != j, of
    annotators, τ-b of ``rankdata(-u_i)``, ``rankdata(-u_j)`` and Spearman ρ on the **raw
    frame-level** user scores (TVSum ``user_anno`` 1..5; SumMe GT ``user_score`` as stored, not
    binarised), averaged over the pairs; the dataset number is the mean over videos. This
    reproduces the paper: TVSum 0.1774 / 0.2042 (0.177 / 0.204) and SumMe 0.2051 / 0.2126
    (0.205 / 0.213). Variants that do not: SumMe binarised (``user_score > 0``: 0.2115 / 0.2115);
    each annotator against the mean of the others (TVSum 0.314 / 0.396, SumMe 0.268 / 0.309);
    subsampling ``[::15]`` keeps TVSum at 0.1774 / 0.2042 but gives SumMe 0.2034 / 0.2108.
    Note that SumMe's raw ``user_score`` is not an importance score: it numbers each user's
    selected segments 1, 2, 3, ... in temporal order (0 = not selected), so the paper's SumMe
    Human row ranks later selections above earlier ones.

    ``casum_tvsum``: each annotator's scores / max, ``[::15]``, against each other annotator's
    (the protocol with an annotator in place of the model; TVSum 0.1775 / 0.2042, SumMe 0.2034 /
    0.2108). ``csta_summe``: each annotator's binary summary (scores > 0) against the mean binary
    summary of the others (SumMe 0.2958 / 0.3292; needs binary summaries, so not TVSum).
    """
    check_protocol(protocol)
    users = _user_matrix("user_scores", user_scores).astype(np.float64)
    n_users = users.shape[0]
    if n_users < 2:
        raise CstaInputError(f"a human baseline needs at least 2 annotators, got {n_users}")
    if protocol == "csta_summe":
        binary = (users > 0).astype(np.float64)
        if np.all(binary.min(axis=1) == binary.max(axis=1)):
            raise CstaInputError("csta_summe human baseline needs binary user summaries (> 0 = selected); "
                                 "every user's row is constant (TVSum 1..5 scores have no binary form "
                                 "without shots)")
        taus, rhos = [], []
        for i in range(n_users):
            others = np.delete(binary, i, axis=0).mean(axis=0, keepdims=True)
            ref = _RankReference.build(others)
            taus.append(ref.kendall(binary[i])[0])
            rhos.append(ref.spearman(binary[i])[0])
        return _user_mean(np.array(taus)), _user_mean(np.array(rhos))
    rows = _normalised_steps(users) if protocol == "casum_tvsum" else users
    ref = _RankReference.build(rows)
    tau = np.full((n_users, n_users), np.nan)
    rho = np.full((n_users, n_users), np.nan)
    for i in range(n_users):
        tau[i] = ref.kendall(rows[i])
        rho[i] = ref.spearman(rows[i])
    off = ~np.eye(n_users, dtype=bool)
    return float(tau[off].mean()), float(rho[off].mean())


def dataset_human_baseline(dataset: str, protocol: str = "otani", *,
                           user_scores: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """:func:`human_baseline` of every video of ``dataset`` (its raw annotation ``user_scores`` by key), and the
    mean."""
    dataset = check_dataset(dataset)
    check_protocol(protocol)
    per_video: dict[str, dict[str, Any]] = {k: dict(zip(("tau", "rho"), human_baseline(u, protocol), strict=True))
                                            for k, u in user_scores.items()}
    for r in per_video.values():
        r["protocol"] = protocol
    out = mean_metrics({k: {**r, "f1": math.nan} for k, r in per_video.items()}, protocol)
    return {"dataset": dataset, "protocol": protocol, "tau": out["tau"], "rho": out["rho"],
            "n_videos": out["n_videos"], "n_nan_tau": out["n_nan_tau"], "n_nan_rho": out["n_nan_rho"],
            "per_video": per_video}


def random_baseline(evaluator: DatasetEvaluator, n_draws: int = 100, seed: int = 0,
                    keys: Iterable[str] | None = None) -> dict[str, Any]:
    """Random row: uniform random step scores for every video, evaluated ``n_draws`` times.

    Each draw is averaged over the videos like a model's result; returns the mean and the
    population std over draws of τ and ρ and the per-draw means. Under ``casum_tvsum`` and
    ``otani`` the Random row is 0 as the paper prints it (SumMe, 20 draws: τ 0.001 ± 0.006). Under
    ``csta_summe`` it is not: random scores go through the 15 % knapsack on the real KTS shots,
    which favours short shots, and users favour them too (Otani et al. 2019), giving SumMe
    τ 0.093 ± 0.016, ρ 0.104 ± 0.018 (20 draws).
    """
    if int(n_draws) < 1:
        raise CstaInputError(f"n_draws must be at least 1, got {n_draws}")
    keys = evaluator.keys() if keys is None else list(keys)
    rng = np.random.default_rng(seed)
    taus, rhos = [], []
    for _ in range(int(n_draws)):
        draw = {k: rng.random(evaluator.references[k].n_steps) for k in keys}
        m = evaluator.mean(evaluator.evaluate(draw))
        taus.append(m["tau"])
        rhos.append(m["rho"])
    t, r = np.array(taus), np.array(rhos)
    return {"protocol": evaluator.protocol, "n_draws": int(n_draws), "seed": seed,
            "tau": float(t.mean()), "tau_std": float(t.std()), "rho": float(r.mean()), "rho_std": float(r.std()),
            "draws_tau": t.tolist(), "draws_rho": r.tolist()}


def upper_bound(evaluator: DatasetEvaluator) -> dict[str, Any]:
    """The ground-truth ``gtscore`` scored as a prediction by ``evaluator``: what a perfect regressor would get.

    Returns the mean (see :func:`mean_metrics`) plus ``dataset`` and ``per_video``.
    """
    scores = {k: r.gtscore for k, r in evaluator.references.items()}
    if any(s is None for s in scores.values()):
        raise CstaInputError("the references have no gtscore")
    per_video = evaluator.evaluate(scores)
    return {**evaluator.mean(per_video), "dataset": evaluator.dataset, "per_video": per_video}
