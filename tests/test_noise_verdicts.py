"""'Within noise' verdicts: a difference whose whole 95% interval lies inside +/- the reference AUC's
own 95% half-width is reported as such (an equivalence statement), never merely as n.s."""
from __future__ import annotations

import math

import pytest

from benchmark.summary.claims import CLAIMS, ClaimResult
from benchmark.summary.contrast import noise_margin, within_noise
from benchmark.summary.model import CellStat
from benchmark.summary.scenarios import ceiling_verdict
from benchmark.summary.stats import Summary


def stat(mean: float, low: float, high: float, n: int = 3) -> CellStat:
    return CellStat(Summary(n, mean, 0.01, low, high), n_expected=3)


def test_noise_margin_is_the_half_width_of_the_reference_interval():
    assert noise_margin(stat(0.75, 0.738, 0.762)) == pytest.approx(0.012)
    assert noise_margin(stat(0.75, math.nan, math.nan, n=1)) is None  # one seed: no interval, no margin
    assert noise_margin(CellStat(Summary(0, math.nan, math.nan, math.nan, math.nan), n_expected=3)) is None


@pytest.mark.parametrize("low, high, margin, expected", [
    (-0.010, -0.004, 0.012, True),    # sig. below, yet inside the margin
    (-0.011, 0.011, 0.012, True),
    (-0.024, -0.002, 0.012, False),   # the interval reaches past the margin
    (-0.005, 0.013, 0.012, False),
    (-0.001, 0.001, None, False),     # no margin, no equivalence statement
    (math.nan, math.nan, 0.012, False),
])
def test_within_noise_needs_the_whole_interval_inside_the_margin(low, high, margin, expected):
    assert within_noise(stat((low + high) / 2, low, high), margin) is expected


@pytest.mark.parametrize("low, high, expected", [
    (0.004, 0.020, "above the ceiling (sig.)"),          # above wins even inside the margin
    (-0.010, -0.004, "within noise of the ceiling (±0.012), sig. below"),
    (-0.006, 0.004, "within noise of the ceiling (±0.012)"),
    (-0.024, -0.002, "below the ceiling (sig.)"),
    (-0.030, 0.005, "n.s."),
])
def test_ceiling_verdicts(low, high, expected):
    assert ceiling_verdict(stat((low + high) / 2, low, high), 0.012) == expected


def test_ceiling_verdict_without_a_difference():
    assert ceiling_verdict(None, 0.012) == "—"


@pytest.mark.parametrize("low, high, margin, expected", [
    (-0.015, 0.015, 0.020, "no difference (within noise, ±0.020)"),
    (-0.015, 0.015, 0.010, "n.s."),
    (-0.015, 0.015, None, "n.s."),
    (0.002, 0.008, 0.010, "sig. better, within noise (±0.010)"),
    (-0.040, -0.020, 0.010, "sig. worse"),
])
def test_claim_verdicts_say_no_difference_only_within_the_baselines_noise(low, high, margin, expected):
    claim = CLAIMS[0]
    result = ClaimResult(claim, claim.tests[0], [0.0], stat((low + high) / 2, low, high), margin=margin)
    assert result.verdict_text() == expected
