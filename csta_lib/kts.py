"""Kernel temporal segmentation (KTS; Potapov, Douze, Harchaoui, Schmid, ECCV 2014).

KTS cuts a sequence of feature vectors into segments whose features are close to their segment's
mean in the kernel's feature space. For a kernel matrix ``K`` (here the linear kernel ``X Xᵀ``),
the *scatter* of segment ``[i, j]`` is

    scatter(i, j) = Σ_{t=i..j} K[t, t] − (1 / (j − i + 1)) Σ_{s,t=i..j} K[s, t],

computed for every (i, j) at once from cumulative sums of ``diag(K)`` and of ``K``. A dynamic
programme gives, for every number of change points ``k = 0..m``, the least total scatter
``I[k, n]`` of a split of all ``n`` steps into ``k + 1`` segments. The number of change points is
chosen automatically by minimising ``I[k, n] / n + vmax · k / (2n) · (log(n / k) + 1)``, and the
change points of that ``k`` are recovered by backtracking.

This is written from the algorithm to reproduce, bit for bit, the ``cpd_auto`` / ``cpd_nonlin``
implementation that DSNet ships and CSTA's custom-video path calls (the book's method page, section method-kts), in
particular:

* the scatters are formed in the same floating-point order (cumulative sums of ``K`` in ``K``'s
  dtype, float64 elsewhere), and their lower triangle is zero;
* ``I[0, lmin:lmax] = scatter(0, lmin-1 .. lmax-2)`` (so with a finite ``lmax`` a first segment of
  exactly ``lmax`` steps is not allowed), other cells start at ``1e101``;
* ``I[k, l] = min_t scatter(t, l−1) + I[k−1, t]`` over ``t ∈ [max(k·lmin, l−lmax), l−lmin]``,
  ties going to the smallest ``t``;
* objective values above ``1e99`` count as infinite; the penalty uses ``desc_rate`` as the
  official one does; the change points are the segment starts ``t`` (step indices) found by
  backtracking from ``l = n``.

Unlike the original, the dynamic programme is vectorised over positions (one numpy pass per
number of change points over a precomputed masked scatter matrix), and the objective pass and the
backtracking pass share one table, so the cost is O(m·n²) time and O(n²) memory, about
``n³/6`` additions for the custom-video default ``m = n − 1``. Run it on features of every 15th frame, not on
every frame.
"""

from __future__ import annotations

import numpy as np

from csta_lib.data.eccv16 import FRAME_STEP
from csta_lib.errors import CstaInputError

__all__ = ["DEFAULT_LMAX", "auto_change_points", "change_points", "linear_kernel", "scatter_matrix", "segment_costs",
           "shots_from_change_points"]

#: ``cpd_nonlin``'s default maximal segment length (effectively unbounded).
DEFAULT_LMAX = 100000
# Rows of the masked scatter matrix processed per numpy call (trims the unused triangle).
_CHUNK = 64


def linear_kernel(features: np.ndarray) -> np.ndarray:
    """``X Xᵀ`` as the official callers build it (``np.matmul(features, features.T)``, input dtype)."""
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise CstaInputError(f"KTS features must be a non-empty (n_steps, dim) matrix, got shape {x.shape}")
    if x.dtype.kind not in "biuf":  # complex values would lose their imaginary part silently
        raise CstaInputError(f"KTS features must be real numbers, got dtype {x.dtype}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise CstaInputError("KTS features contain NaN or infinite values")
    return np.matmul(x, x.T)


def scatter_matrix(kernel: np.ndarray) -> np.ndarray:
    """``J[i, j]`` = scatter of the segment of steps ``i..j`` (inclusive); 0 below the diagonal.

    The arithmetic follows the official ``calc_scatters`` operation by operation, so the result is
    bit-identical: the double cumulative sum of ``K`` is taken in ``K``'s own dtype.
    """
    k = np.asarray(kernel)
    n = k.shape[0]
    diag_cumsum = np.cumsum(np.concatenate([[0.0], np.diag(k).astype(np.float64)]))
    block = np.zeros((n + 1, n + 1))
    block[1:, 1:] = np.cumsum(np.cumsum(k, 0), 1)  # block[a, b] = Σ K[:a, :b]
    corner = np.diag(block)
    start = np.arange(n).reshape((-1, 1))
    end = np.arange(n).reshape((1, -1))
    # segment length j - i + 1 (as float32, like the official code); +1 where it would be 0
    length = (end - start + 1).astype(np.float32) + (end == start - 1).astype(np.float32)
    self_similarity = corner[1:].reshape((1, -1)) + corner[:-1].reshape((-1, 1)) - block[1:, :-1].T - block[:-1, 1:]
    scatters = diag_cumsum[1:].reshape((1, -1)) - diag_cumsum[:-1].reshape((-1, 1)) - self_similarity / length
    scatters[end < start] = 0
    return scatters


def _check_lengths(n: int, m: int, lmin: int, lmax: int) -> None:
    if not 1 <= lmin <= lmax:
        raise CstaInputError(f"KTS needs 1 <= lmin <= lmax, got lmin={lmin}, lmax={lmax}")
    if not (m + 1) * lmin <= n <= (m + 1) * lmax:
        raise CstaInputError(f"KTS cannot split {n} steps into {m + 1} segments of {lmin}..{lmax} steps "
                             f"(max_change_points must be at most {n // lmin - 1})")


def segment_costs(scatters: np.ndarray, max_change_points: int, lmin: int = 1,
                  lmax: int = DEFAULT_LMAX) -> tuple[np.ndarray, np.ndarray]:
    """The dynamic programme of ``cpd_nonlin``: ``(I, prev)``, both of shape (m + 1, n + 1).

    ``I[k, l]`` is the least total scatter of the first ``l`` steps cut by ``k`` change points and
    ``prev[k, l]`` the start of the last segment in that optimum. Vectorised over ``l``: for each
    ``k`` one pass over a scatter matrix whose disallowed (t, l) cells are +inf.
    """
    n = scatters.shape[0]
    m = int(max_change_points)
    _check_lengths(n, m, lmin, lmax)
    objective = 1e101 * np.ones((m + 1, n + 1))
    objective[0, lmin:lmax] = scatters[0, lmin - 1 : lmax - 1]
    prev = np.zeros((m + 1, n + 1), dtype=np.int64)
    # allowed[l-1, t]: segment [t, l-1] is allowed, i.e. l - lmax <= t <= l - lmin
    last = np.arange(1, n + 1).reshape((-1, 1))  # l
    t = np.arange(n).reshape((1, -1))
    masked = np.where((t >= last - lmax) & (t <= last - lmin), scatters.T, np.inf)  # [l-1, t]
    buffer = np.empty((min(_CHUNK, n), n))
    for k in range(1, m + 1):
        t_first = k * lmin
        previous = objective[k - 1]
        for l0 in range((k + 1) * lmin, n + 1, _CHUNK):  # l in [l0, l1)
            l1 = min(l0 + _CHUNK, n + 1)
            t_lo = max(t_first, l0 - lmax)  # smallest t any l of the chunk may use
            t_hi = l1 - lmin  # one past the largest t the chunk may use
            cand = buffer[: l1 - l0, : t_hi - t_lo]
            np.add(masked[l0 - 1 : l1 - 1, t_lo:t_hi], previous[t_lo:t_hi], out=cand)
            best = np.argmin(cand, axis=1)  # first minimum: the smallest t, as the official code
            objective[k, l0:l1] = cand[np.arange(l1 - l0), best]
            prev[k, l0:l1] = best + t_lo
    return objective, prev


def _backtrack(prev: np.ndarray, n_change_points: int, n: int) -> np.ndarray:
    cps = np.zeros(n_change_points, dtype=np.int64)
    cur = n
    for k in range(n_change_points, 0, -1):
        cps[k - 1] = prev[k, cur]
        cur = cps[k - 1]
    return cps


def auto_change_points(kernel: np.ndarray, max_change_points: int, vmax: float = 1.0, *, lmin: int = 1,
                       lmax: int = DEFAULT_LMAX, desc_rate: float = 1) -> tuple[np.ndarray, np.ndarray]:
    """``cpd_auto`` on a kernel matrix: ``(change points, costs)``.

    ``costs[k]`` = ``I[k, n] / n + vmax·k/(2·N2)·(log(N2/k) + 1)`` with ``N2 = n·desc_rate`` (0 for
    ``k = 0``); the number of change points is the first argmin of ``costs``.
    """
    k = np.asarray(kernel)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] == 0:
        raise CstaInputError(f"KTS needs a non-empty square kernel matrix, got shape {k.shape}")
    if int(max_change_points) != max_change_points or max_change_points < 0:
        raise CstaInputError(f"max_change_points must be a non-negative integer, got {max_change_points!r}")
    m = int(max_change_points)
    n = k.shape[0]
    objective, prev = segment_costs(scatter_matrix(k), m, lmin, lmax)
    scores = objective[:, n].copy()
    scores[scores > 1e99] = np.inf
    n2 = n * desc_rate  # length of the video before subsampling
    penalties = np.zeros(m + 1)
    counts = np.arange(1, m + 1)
    penalties[1:] = (vmax * counts / (2.0 * n2)) * (np.log(float(n2) / counts) + 1)
    costs = scores / float(n) + penalties
    best = int(np.argmin(costs))
    _check_lengths(n, best, lmin, lmax)  # the official second cpd_nonlin call asserts the same
    return _backtrack(prev, best, n), costs


def change_points(features: np.ndarray, max_change_points: int, vmax: float = 1.0, *, lmin: int = 1,
                  lmax: int = DEFAULT_LMAX, desc_rate: float = 1) -> np.ndarray:
    """KTS change points of an (n, d) feature sequence: the first output of the official ``cpd_auto``.

    The linear kernel ``features @ features.T`` is built as the official callers build it (no
    normalisation here: DSNet and CSTA L2-normalise their features when extracting them). The
    result holds the step indices where a new segment starts (sorted, in ``1 .. n-1``).
    """
    return auto_change_points(linear_kernel(features), max_change_points, vmax, lmin=lmin, lmax=lmax,
                              desc_rate=desc_rate)[0]


def shots_from_change_points(cps: np.ndarray, n_frames: int, frame_step: int = FRAME_STEP) -> np.ndarray:
    """Inclusive [start, end] frame shots from step-level change points (as DSNet's video helper).

    Step ``c`` is frame ``c · frame_step``; the shots are ``[0, f1−1], [f1, f2−1], …, [fk, n_frames−1]``.
    """
    cps = np.asarray(cps, dtype=np.int64).reshape(-1)
    if int(n_frames) != n_frames or n_frames <= 0:
        raise CstaInputError(f"n_frames must be a positive integer, got {n_frames!r}")
    bounds = np.concatenate([[0], cps * int(frame_step), [int(n_frames)]])
    if np.any(np.diff(bounds) <= 0):
        raise CstaInputError(f"change points {cps.tolist()} x {frame_step} frames do not fall strictly "
                             f"inside a video of {n_frames} frames")
    return np.stack([bounds[:-1], bounds[1:] - 1], axis=1)
