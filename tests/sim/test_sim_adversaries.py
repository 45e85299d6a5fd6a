"""Fabricator, withholder and flooder in modelled mode; partitions and their healing."""

import math

import pytest
from sim_kit import run_metrics, small_data

from consensus.sim import theory


@pytest.mark.parametrize("f, k", [(0.1, 4), (0.3, 2), (0.05, 8)])
def test_fabricator_detection_rate_is_one_minus_one_minus_f_to_the_k(f, k):
    data = small_data(blocks=1500, seed=k, chain__spot_checks=k)
    data["adversary"] = {"kind": "fabricator", "share": 0.4, "fabricate": f}
    m, record, _ = run_metrics(data)
    n = m["fabricated_blocks"]
    assert n > 400
    p = theory.detection(f, k)
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(m["detection_rate"] - p) < 4 * sigma + 0.01, m
    assert abs(m["expected_detection"] - p) < 0.01  # blocks with k + 1 units or fewer are rare here
    # caught blocks never reach a best chain; faked units are never useful work
    log = record.blocks
    assert m["caught_blocks"] > 0 and all(not log.rejected[b] for b in _main(record))
    assert all(log.useful_units[b] <= log.real_units[b] <= log.units[b] for b in range(1, len(log)))


def _main(record):
    from consensus.sim.metrics import main_chain

    return main_chain(record.blocks.parent, record.best_tip)[1:].tolist()


def test_withholder_loses_what_it_holds_back():
    shares = {}
    for withhold in (0.0, 1.0):
        data = small_data(blocks=800, seed=4)
        data["adversary"] = {"kind": "withholder", "share": 0.25, "withhold": withhold}
        m, _, _ = run_metrics(data)
        shares[withhold] = m
    assert abs(shares[0.0]["relative_revenue"] - 0.25) < 0.05
    assert shares[1.0]["relative_revenue"] == 0
    # its wasted work shows in the useful fraction, while the retarget keeps the chain growing
    assert shares[1.0]["useful_fraction"] < shares[0.0]["useful_fraction"]
    assert 0.9 < shares[1.0]["growth_vs_target"] < 1.1


def test_flood_defences_cut_verification_seconds():
    results = {}
    for name, ban, budget in (
        ("none", False, "none"),
        ("budget", False, 2.0),
        ("ban", True, "none"),
    ):
        data = small_data(blocks=150, seed=2)
        data["work"] = {"unit_seconds": 0.05, "header_check_seconds": 0.0005}
        data["adversary"] = {
            "kind": "flooder",
            "peers": 4,
            "rate": 30.0,
            "flood_kind": "fake-work",
            "ban": ban,
            "budget_seconds": budget,
            "budget_window_s": 60,
        }
        results[name] = run_metrics(data)[0]
    none, budget, ban = results["none"], results["budget"], results["ban"]
    assert none["flood_received"] > 1000 and none["flood_victims"] == 4
    assert (
        none["flood_verify_seconds"]
        > 10 * budget["flood_verify_seconds"]
        > 10 * ban["flood_verify_seconds"]
        > 0
    )
    # without a defence a victim's verifier never catches up (30 * 0.05 s of work per second)
    assert none["flood_max_wait_s"] > 60 and ban["flood_max_wait_s"] < 1
    assert ban["honest_stale_rate"] < none["honest_stale_rate"]


def test_bad_ticket_flood_costs_header_checks_only():
    data = small_data(blocks=100, seed=2)
    data["adversary"] = {"kind": "flooder", "peers": 3, "rate": 20.0, "flood_kind": "bad-ticket"}
    m, _, exp = run_metrics(data)
    assert m["flood_reexecuted"] == 0
    assert m["flood_verify_seconds"] == pytest.approx(
        m["flood_received"] * exp.work.header_check_seconds, rel=1e-6
    )


def test_partition_heals_to_one_tip():
    data = small_data(blocks=400, seed=3)
    data["events"] = [{"kind": "partition", "at_s": 500, "heal_s": 900, "fractions": [0.5, 0.5]}]
    m, record, _ = run_metrics(data)
    assert m["agreement_s"] is not None and 0 < m["agreement_s"] < 120
    assert len(set(record.tips[record.population.honest].tolist())) == 1
    calm = run_metrics(small_data(blocks=400, seed=3))[0]
    assert m["stale_rate"] > calm["stale_rate"]  # the losing side's blocks
