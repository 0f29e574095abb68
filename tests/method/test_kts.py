"""Tests of kernel temporal segmentation (csta_lib.kts)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from csta_lib import kts
from csta_lib.errors import CstaInputError


def piecewise(starts: list[int], n: int, dim: int = 16, noise: float = 0.05, seed: int = 0,
              dtype: type = np.float32) -> np.ndarray:
    """Unit-norm features constant on [0, s1), [s1, s2), ... plus a little noise."""
    rng = np.random.default_rng(seed)
    labels = np.searchsorted(np.asarray(starts), np.arange(n), side="right")
    x = rng.normal(size=(len(starts) + 1, dim))[labels] + noise * rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(dtype)


def direct_scatter(x: np.ndarray, i: int, j: int) -> float:
    """Σ ||x_t - mean||² over steps i..j: the scatter of a segment under the linear kernel."""
    seg = x[i : j + 1].astype(np.float64)
    return float(((seg - seg.mean(axis=0)) ** 2).sum())


@pytest.mark.parametrize("starts", [[40], [25, 60], [10, 30, 31, 70, 90]])
def test_piecewise_constant_change_points_are_found(starts):
    x = piecewise(starts, 100)
    assert kts.change_points(x, 99).tolist() == starts


def test_single_segment_gives_no_change_point():
    x = piecewise([], 50, noise=0.01)
    assert kts.change_points(x, 49).size == 0
    assert kts.change_points(x, 0).size == 0


def test_scatter_matrix_matches_the_definition():
    x = piecewise([5, 9], 14, dim=5, noise=0.3, dtype=np.float64)
    j = kts.scatter_matrix(kts.linear_kernel(x))
    for i in range(14):
        for e in range(14):
            expected = direct_scatter(x, i, e) if e >= i else 0.0
            assert j[i, e] == pytest.approx(expected, abs=1e-9)


def test_dynamic_programme_is_optimal_by_brute_force():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 3))
    n = len(x)
    objective, _ = kts.segment_costs(kts.scatter_matrix(kts.linear_kernel(x)), n - 1)
    for k in range(n):
        best = min(
            sum(direct_scatter(x, a, b - 1) for a, b in zip((0, *cps), (*cps, n)))
            for cps in itertools.combinations(range(1, n), k)
        )
        assert objective[k, n] == pytest.approx(best, rel=1e-9, abs=1e-9)


def test_automatic_choice_minimises_the_penalised_cost_by_brute_force():
    x = piecewise([3, 7], 10, dim=4, noise=0.6, seed=5, dtype=np.float64)
    n = len(x)
    best_cost, best_cps = np.inf, None
    for k in range(n):
        penalty = 0.0 if k == 0 else k / (2.0 * n) * (np.log(n / k) + 1)
        for cps in itertools.combinations(range(1, n), k):
            cost = sum(direct_scatter(x, a, b - 1) for a, b in zip((0, *cps), (*cps, n))) / n + penalty
            if cost < best_cost - 1e-12:
                best_cost, best_cps = cost, list(cps)
    cps, costs = kts.auto_change_points(kts.linear_kernel(x), n - 1, 1.0)
    assert cps.tolist() == best_cps
    assert costs.min() == pytest.approx(best_cost)


def test_vmax_controls_the_number_of_segments():
    x = piecewise([20, 45, 70], 100, noise=0.4)
    few = kts.change_points(x, 99, vmax=50.0)
    many = kts.change_points(x, 99, vmax=0.01)
    assert len(few) <= 3 <= len(many)


def test_segment_length_bounds_are_respected():
    x = piecewise([2, 50], 80, noise=0.05)
    cps = kts.change_points(x, 15, lmin=5)
    bounds = np.concatenate([[0], cps, [80]])
    assert np.diff(bounds).min() >= 5
    cps = kts.change_points(x, 79, lmax=30)
    bounds = np.concatenate([[0], cps, [80]])
    assert np.diff(bounds).max() <= 30


def test_float32_and_float64_features_agree_on_clear_boundaries():
    a = kts.change_points(piecewise([30, 60], 90, dtype=np.float32), 89)
    b = kts.change_points(piecewise([30, 60], 90, dtype=np.float64), 89)
    assert a.tolist() == b.tolist() == [30, 60]


def test_shots_in_frames():
    shots = kts.shots_from_change_points(np.array([2, 5]), n_frames=100, frame_step=15)
    assert shots.tolist() == [[0, 29], [30, 74], [75, 99]]
    assert kts.shots_from_change_points(np.array([], dtype=int), 7).tolist() == [[0, 6]]


@pytest.mark.parametrize(
    "call",
    [
        lambda: kts.change_points(np.zeros((0, 4)), 0),
        lambda: kts.change_points(np.ones(5), 1),
        lambda: kts.change_points(np.full((5, 2), np.nan), 1),
        lambda: kts.change_points(np.ones((5, 2)), 5),  # more change points than steps allow
        lambda: kts.change_points(np.ones((5, 2)), -1),
        lambda: kts.change_points(np.ones((10, 2)), 3, lmin=4),
        lambda: kts.shots_from_change_points(np.array([7]), n_frames=100),  # 105 > 100 frames
    ],
)
def test_bad_input(call):
    with pytest.raises(CstaInputError):
        call()
