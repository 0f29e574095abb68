"""Spread, 95 % t intervals and paired differences of per-run values, against values computed by hand."""

from __future__ import annotations

import math

import pytest

from csta_lib.runs import statistics as st


def test_spread_of_three_runs_is_the_t_interval():
    s = st.spread([0.1, 0.2, 0.3])
    assert (s.mean, s.n, s.n_undefined) == (pytest.approx(0.2), 3, 0)
    assert s.sd == pytest.approx(0.1)  # sqrt(((-0.1)^2 + 0 + 0.1^2) / 2)
    half = 4.302652729911275 * 0.1 / math.sqrt(3)  # t(0.975, 2) from the t table
    assert (s.ci_low, s.ci_high) == (pytest.approx(0.2 - half), pytest.approx(0.2 + half))
    assert st.t_quantile(2) == pytest.approx(12.706204736174707)  # t(0.975, 1)
    assert s.contains(0.44) and not s.contains(0.45)
    assert s.as_dict() == {"mean": s.mean, "std": s.sd, "n": 3, "ci_low": s.ci_low, "ci_high": s.ci_high}


def test_one_run_has_no_sd_and_no_interval():
    s = st.spread([0.4])
    assert (s.mean, s.sd, s.n, s.ci_low, s.ci_high) == (0.4, None, 1, None, None)
    assert not s.has_interval and s.contains(0.4) is None
    assert st.interval_text(s) == "n = 1, no interval"
    assert st.spread_text(s) == "0.400 (n = 1, no interval)" and "±" not in st.spread_text(s)
    with pytest.raises(ValueError, match="at least 2"):
        st.t_quantile(1)


def test_two_runs_and_identical_values():
    s = st.spread([0.2, 0.4])
    assert s.sd == pytest.approx(math.sqrt(0.02))
    assert s.ci_high - s.mean == pytest.approx(12.706204736174707 * math.sqrt(0.02) / math.sqrt(2))
    same = st.spread([0.3, 0.3, 0.3])
    assert same.sd == 0 and (same.ci_low, same.ci_high) == (pytest.approx(0.3), pytest.approx(0.3))
    assert st.distance_in_sd(same, 0.5) is None  # no spread to measure a distance in
    assert st.distance_in_sd(st.spread([0.1, 0.2, 0.3]), 0.5) == pytest.approx(3.0)


def test_undefined_runs_are_left_out_and_counted():
    s = st.spread([0.1, float("nan"), None, 0.3])
    assert (s.n, s.n_undefined, s.mean) == (2, 2, pytest.approx(0.2))
    empty = st.spread([float("nan")])
    assert (empty.mean, empty.n, empty.n_undefined) == (None, 0, 1)
    assert st.spread_text(empty) == "–" and st.interval_text(empty) == "–"


def test_texts():
    s = st.spread([0.1, 0.2, 0.3])
    assert st.mean_sd_text(s) == "0.200 ± 0.100"
    assert st.interval_text(s) == f"[{0.2 - 0.2484:.3f}, {0.2 + 0.2484:.3f}]" == "[-0.048, 0.448]"
    assert st.spread_text(s) == "0.200 ± 0.100 [-0.048, 0.448]"
    assert st.number_text(-0.0001) == "0.000" and st.number_text(None) == "–" and st.number_text(-0.25) == "-0.250"


def test_paired_difference_pairs_by_key_and_reads_the_interval():
    # differences 0.10, 0.12, 0.08: mean 0.10, sd 0.02, interval 0.10 ± 4.303 * 0.02 / sqrt(3) = [0.050, 0.150]
    a = {(0, 0): 0.50, (0, 1): 0.52, (0, 2): 0.48, (1, 0): 0.9}
    b = {(0, 0): 0.40, (0, 1): 0.40, (0, 2): 0.40, (2, 0): 0.1}
    p = st.paired_difference(a, b)
    assert p.difference.n == 3 and (p.n_only_a, p.n_only_b) == (1, 1)
    assert p.difference.mean == pytest.approx(0.10) and p.difference.sd == pytest.approx(0.02)
    assert p.difference.ci_low == pytest.approx(0.10 - 4.302652729911275 * 0.02 / math.sqrt(3))
    assert p.reading == "larger than seed noise (higher)"
    assert st.paired_difference(b, a).reading == "larger than seed noise (lower)"
    # the same means, but differences of both signs: the interval holds 0
    noisy = st.paired_difference({0: 0.5, 1: 0.3, 2: 0.55}, {0: 0.4, 1: 0.4, 2: 0.4})
    assert noisy.difference.contains(0.0) and noisy.reading == "within seed noise"
    assert noisy.as_dict()["reading"] == "within seed noise" and noisy.as_dict()["n"] == 3


def test_paired_difference_edge_cases():
    one = st.paired_difference({(0, 0): 0.5}, {(0, 0): 0.4, (0, 1): 0.3})
    assert one.difference.n == 1 and one.n_only_b == 1
    assert one.reading == "n = 1, no interval: cannot be told from seed noise"
    nothing = st.paired_difference({(0, 0): 0.5}, {(1, 0): 0.4})
    assert nothing.difference.n == 0 and nothing.reading == "no shared runs: nothing to compare"
    undefined = st.paired_difference({0: 0.5, 1: float("nan"), 2: 0.6}, {0: 0.4, 1: 0.4, 2: None})
    assert (undefined.difference.n, undefined.difference.n_undefined) == (1, 2)
    equal = st.paired_difference({0: 0.5, 1: 0.4}, {0: 0.5, 1: 0.4})  # e.g. two models picking the same shots
    assert equal.difference.sd == 0 and equal.reading == "within seed noise"
