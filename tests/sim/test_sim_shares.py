"""The shares model: without shares the useful fraction is about 1 / miners; with enough shares
per miner it approaches 1; verification and bytes grow with shares; reward variance falls."""

from consensus.sim.shares import simulate


def test_without_shares_only_the_winner_is_useful():
    p = simulate(0, miners=20, units=50, blocks=300, k=3, state_bytes=1000, seed=1)
    assert 0.03 < p.useful < 0.08  # 1 / 20
    assert p.block_verify_units == 4 and p.gossip_verify_units == 0


def test_shares_make_most_work_useful_at_a_verification_cost():
    few = simulate(20, miners=20, units=50, blocks=300, k=3, state_bytes=1000, seed=2)
    many = simulate(400, miners=20, units=50, blocks=300, k=3, state_bytes=1000, seed=3)
    assert few.useful_no_shares < few.useful < many.useful
    assert many.useful > 0.85  # about 20 shares per miner a block: a tail of u / 21 lost
    assert few.block_verify_units < many.block_verify_units
    assert few.block_bytes < many.block_bytes
    # Half the subsidy paid per share: a small miner's reward varies less than the lottery's.
    assert many.reward_cv < many.reward_cv_no_shares


def test_each_share_costs_its_segment_once_and_the_block_the_winners_checks():
    one = simulate(400, miners=20, units=50, blocks=200, k=3, state_bytes=1000, seed=4, c=1)
    two = simulate(400, miners=20, units=50, blocks=200, k=3, state_bytes=1000, seed=4, c=2)
    # Same draws: each gossiped share re-runs its last unit and c checks, 2 vs 3 units.
    assert one.gossip_verify_units > 0
    assert abs(two.gossip_verify_units / one.gossip_verify_units - 1.5) < 1e-9
    # A node that saw none of the claims re-runs them in the block (1 + k besides)...
    assert abs(one.block_verify_units - (4 + one.gossip_verify_units)) < 1e-9
    # ...but one that saw them on gossip re-runs the winner's 1 + k only: counted once.
    total = 20 * 50
    assert abs(one.verify_over_block_work - (4 + one.gossip_verify_units) / total) < 1e-12
    assert abs(one.verify_over_own_mining - (4 + one.gossip_verify_units) / 50) < 1e-12
