"""Real mode: real ChainStates over LevelDB, the real Miner and validation, driven by the event
clock."""

import math

import pytest
from sim_kit import real_data, run_metrics

from consensus.sim import theory


def test_three_real_nodes_agree_on_one_tip():
    m, record, _exp = run_metrics(real_data(blocks=4, seed=3))
    assert record.extras["tips_agree"]
    assert len(set(record.tips.tolist())) == 1
    assert m["height"] >= 4
    # every block was found by a miner and its units were re-executed by the other nodes
    log = record.blocks
    assert all(log.miner[b] in (0, 1, 2) for b in range(1, len(log)))
    assert m["verify_units_per_node_per_block"] > 0
    assert 0 < m["useful_fraction"] <= 1


def test_real_fabricator_is_caught_by_real_validation():
    k, f = 1, 0.5
    data = real_data(
        blocks=4,
        seed=5,
        adversary={"kind": "fabricator", "share": 0.6, "fabricate": f, "peers": 2},
        honest_miners=2,
    )
    m, record, _exp = run_metrics(data)
    log = record.blocks
    cheat = record.population.adversary
    fab = [b for b in range(1, len(log)) if log.miner[b] == cheat and log.checked[b]]
    assert fab, "the fabricator found no verified block"
    assert record.extras["tips_agree"]
    # a caught block is marked invalid by honest nodes and on no honest best chain
    from consensus.sim.metrics import main_chain

    main = set(main_chain(log.parent, record.best_tip).tolist())
    assert all(b not in main for b in fab if log.rejected[b])
    expected = sum(theory.detection_for_units(f, k, log.units[b]) for b in fab) / len(fab)
    sigma = math.sqrt(max(expected * (1 - expected), 0.05) / len(fab))
    assert abs(m["detection_rate"] - expected) < 4 * sigma + 0.02, (
        m["detection_rate"],
        expected,
        len(fab),
    )


@pytest.mark.slow
def test_real_fabricator_detection_over_more_blocks():
    k, f = 2, 0.4
    data = real_data(
        blocks=30,
        seed=9,
        adversary={"kind": "fabricator", "share": 0.6, "fabricate": f, "peers": 2},
        honest_miners=2,
    )
    data["chain"]["spot_checks"] = k
    data["chain"]["initial_units_per_block"] = 8
    m, record, _ = run_metrics(data)
    log = record.blocks
    fab = [
        b
        for b in range(1, len(log))
        if log.miner[b] == record.population.adversary and log.checked[b]
    ]
    assert len(fab) >= 10
    expected = sum(theory.detection_for_units(f, k, log.units[b]) for b in fab) / len(fab)
    sigma = math.sqrt(max(expected * (1 - expected), 0.05) / len(fab))
    assert abs(m["detection_rate"] - expected) < 4 * sigma + 0.02
    assert record.extras["tips_agree"]


def test_real_nodes_with_shares_credit_claims():
    """Real mode with shares: the miners' real share claims travel to the other miners' pools
    (verified there by the real SharePool) and blocks carry them, so more units are credited."""
    data = real_data(blocks=5, seed=7)
    data["chain"].update({"shares_per_block": 4, "initial_units_per_block": 8})
    m, record, exp = run_metrics(data)
    assert record.extras["tips_agree"]
    model = record.extras["shares"]
    claims = sum(len(bs.units) for bs in model.blocks.values())
    assert claims > 0 and model.versions >= claims
    assert record.extras["share_units_checked"] > 0
    assert m["share_included_per_block"] is not None
    # Every block's rewards follow share_split: winner plus claims = subsidy + per_share x shares.
    for b, bs in model.blocks.items():
        subsidy, rewards = exp.chain.share_split(record.blocks.height[b])
        paid = bs.winner_reward + int(bs.claim_rewards.sum())
        assert paid == subsidy + rewards.per_share * int(bs.shares.sum())
        assert record.blocks.useful_units[b] == record.blocks.units[b] + int(bs.units.sum())
    assert 0 < m["useful_fraction"] <= 1
