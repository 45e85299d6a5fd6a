"""Honest forks under a fixed propagation delay d: 1 - exp(-d/T) per height, (d/T)/(1+d/T) of all
blocks."""

import pytest
from sim_kit import run_metrics, stale_data

from consensus.sim import theory


@pytest.mark.parametrize("latency_ms, seed", [(1000, 1), (3000, 2)])
def test_fork_and_stale_rates_against_the_closed_forms(latency_ms, seed):
    m, _, _ = run_metrics(stale_data(latency_ms, blocks=4000, seed=seed))
    d, t = m["delay_mean_s"], m["interval_all_s"]
    assert d == pytest.approx(latency_ms / 1000)  # the mesh delivers every block exactly d later
    # 1 - exp(-d/T), T the mean time between found blocks (100 equal miners: the own-block
    # correction is 1%).
    simple = theory.fork_rate(d, t)
    assert abs(m["fork_rate"] - m["theory_fork_rate"]) < 4 * m["fork_rate_stderr"], m
    assert abs(m["fork_rate"] - simple) < 4 * m["fork_rate_stderr"] + 0.005, (
        m["fork_rate"],
        simple,
    )
    assert abs(m["stale_rate"] - m["theory_stale_rate"]) < 4 * m["stale_rate_stderr"], m
    assert m["honest_stale_rate"] == m["stale_rate"]


def test_no_delay_no_forks():
    m, _, _ = run_metrics(stale_data(0.0, blocks=500, seed=1, miners=10))
    assert m["fork_rate"] == 0 and m["stale_rate"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("latency_ms", [250, 1000, 2000, 4000])
def test_fork_rate_long_runs(latency_ms):
    m, _, _ = run_metrics(stale_data(latency_ms, blocks=20_000, seed=5))
    assert abs(m["fork_rate"] - m["theory_fork_rate"]) < 4 * m["fork_rate_stderr"], m
    assert abs(m["stale_rate"] - m["theory_stale_rate"]) < 4 * m["stale_rate_stderr"], m
