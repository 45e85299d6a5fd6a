"""The poisoner (consensus.attacks.PoisonMiner) against auditors as a population, in modelled mode:
with nobody auditing a poisoned block survives as often as the spot checks pass it (about
1 - k/(n-1), from the real challenge rule); with every node auditing every block poisoning earns
less than honest mining, and its expected reward falls as the share of auditing nodes grows."""

import numpy as np
import pytest
from sim_kit import run_metrics, small_data

from consensus.sim.audits import audit_chain
from consensus.sim.config import AuditorsConfig, ExperimentError, parse_experiment
from consensus.sim.poison import poisoned_block, spot_pass
from consensus.tickets import challenged_units


def _poisoner(
    blocks: int,
    seed: int,
    share: float = 0.0,
    blocks_share: float = 1.0,
    speed: float = 1.0,
    gain: float = 1.0,
    maturity: int = 20,
) -> dict:
    data = small_data(
        blocks=blocks, seed=seed, chain__spot_checks=4, chain__reward_maturity=maturity
    )
    data["adversary"] = {"kind": "poisoner", "share": 0.3, "jump_at": 1, "poison_gain": gain}
    data["auditors"] = {"share": share, "blocks_share": blocks_share, "audit_speed": speed}
    return data


def _error(data) -> str:
    with pytest.raises(ExperimentError) as info:
        parse_experiment(data)
    return str(info.value)


def test_settings_and_errors_name_the_key():
    exp = parse_experiment(_poisoner(100, 1, share=0.5, blocks_share=0.2, speed=3.0, gain=2.0))
    assert (exp.adversary.kind, exp.adversary.jump_at, exp.adversary.poison_gain) == (
        "poisoner",
        1,
        2.0,
    )
    assert (exp.auditors.share, exp.auditors.blocks_share, exp.auditors.audit_speed) == (
        0.5,
        0.2,
        3.0,
    )
    assert parse_experiment(small_data()).auditors == AuditorsConfig(0.0, 1.0, 1.0)
    bad = _poisoner(100, 1)
    bad["auditors"]["share"] = 1.5
    assert _error(bad).startswith("auditors.share: 1.5 is above the maximum 1.0")
    bad = _poisoner(100, 1)
    bad["auditors"]["coverage"] = 0.5
    assert _error(bad).startswith("auditors.coverage: unknown key")
    assert _error(_poisoner(100, 1, maturity=1)).startswith(
        "chain.reward_maturity: a poisoner run needs a fraud window"
    )


def test_spot_checks_refuse_the_jump_as_the_challenge_rule_picks_it():
    rng = np.random.default_rng(5)
    k, units = 4, 21  # a trace of 22 leaves: 21 non-winning, the jump among them
    draws = [poisoned_block(rng, units, 1, k, challenged_units) for _ in range(4000)]
    assert all(b.claimed == units + 1 and b.jump == 1 and b.verify_units == 1 + k for b in draws)
    refused = np.mean([b.refused for b in draws])
    assert abs(refused - k / units) < 4 * np.sqrt(k / units * (1 - k / units) / len(draws))
    assert spot_pass(1, units + 1, k) == pytest.approx(1 - k / units)
    assert all(
        poisoned_block(rng, 3, 1, k, challenged_units).refused for _ in range(20)
    )  # every non-winning leaf is checked
    with pytest.raises(ValueError, match="won before its jump leaf"):
        poisoned_block(rng, 1, 1, k, challenged_units)


def test_one_auditor_proves_in_the_next_block_or_falls_behind_and_skips():
    found = np.arange(1, 101) * 5.0
    units = np.full(100, 50)
    jump = np.full(100, -1)
    jump[[10, 60]] = 1
    cfg = AuditorsConfig(1.0, 1.0, 1.0)
    fast = audit_chain(cfg, 0, np.array([0]), found, units, jump, 20, 1000.0)
    assert (
        fast.auditors == 1
        and fast.proven == {10: 11, 60: 61}
        and fast.skipped == 0
        and fast.late == 0
    )
    assert fast.units == 98 * 50 + 2 * 2 and fast.replayed.all()
    slow = audit_chain(
        cfg, 0, np.array([0]), found, units, jump, 20, 0.05
    )  # an honest block takes 1,000 s: 200 blocks
    assert slow.proven == {} and slow.late >= 1 and slow.skipped > 50
    none = audit_chain(
        AuditorsConfig(0.0, 1.0, 1.0), 0, np.array([0]), found, units, jump, 20, 1000.0
    )
    assert none.auditors == 0 and none.proven == {} and none.units == 0


def test_without_auditors_a_poisoned_block_survives_as_often_as_spot_checks_pass_it():
    m, *_ = run_metrics(_poisoner(1500, 2))
    assert m["auditors"] == 0 and m["poison_proven"] == 0
    assert m["poison_main"] > 200 and m["poison_refused"] > 10
    assert m["poison_survival"] == m["poison_spot_pass"]
    assert (
        abs(m["poison_survival"] - m["theory_poison_spot_pass"]) < 4 * m["poison_survival_stderr"]
    )
    assert m["poison_survival_blocks"] == 20  # the whole window
    assert (
        m["poison_reward"] == pytest.approx(2 * m["poison_survival"] - 1) and m["poison_reward"] > 0
    )


def test_full_audit_coverage_makes_poisoning_a_loss_and_reward_falls_with_audit_share():
    rewards = []
    for share in (0.0, 0.2, 0.5, 1.0):
        m, *_ = run_metrics(_poisoner(800, 3, share=share, blocks_share=0.1, speed=2.0))
        rewards.append(m["poison_reward"])
        if share == 1.0:
            assert m["auditors"] == 30
            assert (
                abs(m["poison_survival"] - m["theory_poison_survival"])
                < 4 * m["poison_survival_stderr"] + 0.02
            )
    assert all(a > b for a, b in zip(rewards, rewards[1:])), rewards
    m, *_ = run_metrics(_poisoner(800, 3, share=1.0, blocks_share=1.0, speed=4.0, gain=4.0))
    assert m["poison_proven"] == m["poison_main"] > 0 and m["poison_survival"] == 0
    assert m["poison_reward"] == -1.0  # even a gain of 4 block rewards is never collected
    assert m["poison_survival_blocks"] < 3 and m["audit_coverage"] > 0.95
    assert m["poison_prover_reward"] == pytest.approx(
        m["poison_proven"] / (m["poison_main"] + m["poison_refused"]) / 2
    )
