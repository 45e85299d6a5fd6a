"""The closed forms the simulator is compared with, checked on their own."""

import math

import pytest

from consensus.sim import theory


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45])
def test_eyal_sirer_closed_form_equals_its_markov_chain(alpha, gamma):
    assert theory.selfish_revenue(alpha, gamma) == pytest.approx(
        theory.selfish_revenue_markov(alpha, gamma), abs=1e-9
    )


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0])
def test_selfish_revenue_equals_share_at_the_threshold(gamma):
    a = theory.selfish_threshold(gamma)
    assert theory.selfish_revenue(a, gamma) == pytest.approx(a, abs=1e-12)
    assert theory.selfish_threshold(0.0) == pytest.approx(1 / 3)
    assert theory.selfish_threshold(0.5) == pytest.approx(1 / 4)


def test_fork_and_stale_forms_agree_to_first_order():
    for x in (1e-3, 1e-2):
        assert theory.fork_rate(x, 1.0) == pytest.approx(x, rel=x)
        assert theory.stale_fraction(x, 1.0) == pytest.approx(x, rel=2 * x)
    many = [1.0] * 10_000
    assert theory.fork_rate_shares(0.3, 1.0, many) == pytest.approx(
        theory.fork_rate(0.3, 1.0), rel=1e-3
    )
    assert theory.stale_fraction(0.3, 1.0, many) == pytest.approx(0.3 / 1.3, rel=1e-3)


def test_detection_forms():
    assert theory.detection(0.2, 4) == pytest.approx(1 - 0.8**4)
    assert theory.detection_for_units(0.2, 4, 3) == pytest.approx(1 - 0.8**2)
    assert theory.detection_for_units(0.5, 4, 1) == 0.0
    assert math.isclose(theory.detection(0.0, 8), 0.0)
