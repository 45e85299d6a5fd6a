"""Attacks on share claims, each mounted in-process against consensus code: a fabricated last
unit, a fabricated unit where its segment's spot check lands, a claim that opens the old
whole-claim set, a claim that does not start from the parent's task state, a claim copied under
another key, two claims of one miner and attempt in one block, and a block that leaves shares
out."""

from __future__ import annotations

from dataclasses import replace

import pytest
from consensus_kit import small_params
from shares_kit import key_of, run_trace

from chain.address import address_of
from chain.block import Opening, ShareClaim, sign_share_claim
from consensus.chainstate import Outcome
from consensus.miner import HeaderDraft, Miner, Template, make_template
from consensus.share_pool import PooledClaim, SharePool
from consensus.shares import (
    ShareRuleError,
    is_longer_version,
    prefix_ticket,
    required_share_openings,
    share_miner,
)
from consensus.tickets import challenged_units, ticket, ticket_wins
from useful_work.hashing import int_bytes, tagged_hash
from useful_work.render_task import RenderState
from useful_work.trace import state_hash


@pytest.fixture
def params():
    return small_params(shares_per_block=4, reward_maturity=3)


class ForcedClaimsMiner(Miner):
    """An includer that puts the claims it is given into its block, checked or not."""

    forced: tuple[PooledClaim, ...] = ()

    def draft(self, template: Template, attempt: int = 0) -> HeaderDraft:
        base = super().draft(template, attempt)
        return HeaderDraft(base.txs, base.time_ms, base.payout, self.forced)


def mine_forced(node, claims: list[tuple[ShareClaim, bytes]]):
    miner = ForcedClaimsMiner(node.chain, node.key, clock=node.clock)
    miner.forced = tuple(PooledClaim(c, out, len(c.to_bytes())) for c, out in claims)
    node.clock.tick()
    block = miner.mine_block()
    assert block is not None
    return block, node.chain.process_block(block)


def pool_add(node, claim: ShareClaim) -> str:
    pool = SharePool(node.params)
    return pool.add(claim, node.chain.tip.hash, make_template(node.chain).target, node.chain.state)


def test_a_share_with_a_fabricated_last_unit_is_invalid_work(make_node, params):
    node = make_node(params)
    node.mine(1)
    honest, _out, inputs = run_trace(node, key_of(1), 0, 1)
    template = make_template(node.chain)
    # Fabricate the last unit: keep its input, make up output and digest, grind hashes only
    # until the prefix ticket is a share (the attacker never runs the unit).
    last = honest.leaves[-1]
    start_units = RenderState.from_bytes(inputs[-1]).units_done
    for i in range(1 << 16):
        fake_out = RenderState(start_units + 1, tagged_hash("fake acc", int_bytes(i))).to_bytes()
        leaf = replace(
            last, output_hash=state_hash(fake_out), digest=tagged_hash("fake digest", int_bytes(i))
        )
        claim = sign_share_claim(replace(honest, leaves=(*honest.leaves[:-1], leaf)), key_of(1))
        if ticket_wins(
            prefix_ticket(claim, len(claim.leaves) - 1), params.share_target(template.target)
        ):
            break
    miner = Miner(node.chain, key_of(1), clock=node.clock)
    claim = miner.share_claim(template, list(claim.leaves), inputs, 0, [len(claim.leaves) - 1])
    with pytest.raises(ShareRuleError, match="bad-share-unit"):
        pool_add(node, claim)
    _block, result = mine_forced(node, [(claim, fake_out)])
    assert result.outcome is Outcome.INVALID and result.reason.value == "bad-share-unit", result
    assert node.chain.tip.height == 1


def test_a_fabricated_unit_where_its_segments_check_lands_is_refused(make_node, params):
    """Unit s_0 + 1, the first of the second segment, outputs a made-up state (never run); every
    later unit runs honestly on it, so each share's last unit re-runs fine. When that segment's
    one spot check, drawn from share s_1's ticket, lands on the made-up unit, the claim is
    refused, in the pool after its honest first version and in a block."""
    node = make_node(params)
    node.mine(1)
    start_units = RenderState.from_bytes(make_template(node.chain).start_state).units_done

    def jump(u: int, shares: list[int]) -> bytes | None:
        if len(shares) == 1 and u == shares[0] + 1:
            return RenderState(start_units + u + 1, tagged_hash("poison", int_bytes(u))).to_bytes()
        return None

    key = key_of(6)
    for attempt in range(200):
        claim, out, _ = run_trace(node, key, attempt, 2, fake=jump)
        fake = claim.shares[0] + 1
        if fake != claim.shares[1] and fake in required_share_openings(params, claim):
            break
    else:
        pytest.fail("the second segment's check never landed on the made-up unit")
    assert params.share_spot_checks == 1
    honest_first, _, _ = run_trace(node, key, attempt, 1)
    assert is_longer_version(honest_first, claim)
    pool = SharePool(params)
    tip, target = node.chain.tip.hash, make_template(node.chain).target
    assert pool.add(honest_first, tip, target, node.chain.state) == "added"
    with pytest.raises(ShareRuleError, match="bad-share-spot-check"):
        pool.add(claim, tip, target, node.chain.state)
    with pytest.raises(ShareRuleError, match="bad-share-spot-check"):
        pool_add(node, claim)
    _block, result = mine_forced(node, [(claim, out)])
    assert result.outcome is Outcome.INVALID, result
    assert result.reason.value == "bad-share-spot-check", result


def test_a_claim_opening_the_whole_claim_set_is_a_body_mismatch(make_node, params):
    """The rule before per-segment checks: every share's last unit and `spot_checks` units drawn
    from the claim's last ticket over the whole trace. A claim opening that set is not the body
    its id (and a header's shares root) fixes."""
    node = make_node(params)
    node.mine(1)
    key = key_of(8)
    template = make_template(node.chain)
    for attempt in range(50):
        honest, out, inputs = run_trace(node, key, attempt, 2)
        last = ticket(honest.parent_hash, share_miner(honest), honest.trace_root)
        whole = challenged_units(last, len(honest.leaves), params.spot_checks)
        old = sorted({*whole, *honest.shares})
        if old != required_share_openings(params, honest):
            break
    else:
        pytest.fail("the two rules opened the same units 50 times")
    claim = sign_share_claim(
        replace(honest, openings=tuple(Opening(u, inputs[u]) for u in old)), key
    )
    # The key signs everything but the openings: the same claim id, only the rule tells them apart.
    assert claim.claim_id == honest.claim_id and claim.openings != honest.openings
    with pytest.raises(ShareRuleError, match="body-mismatch"):
        pool_add(node, claim)
    assert template.parent_hash == node.chain.tip.hash
    _block, result = mine_forced(node, [(claim, out)])
    assert result.outcome is Outcome.BAD_MESSAGE and result.reason.value == "body-mismatch", result
    assert node.chain.tip.height == 1


def test_a_claim_not_starting_from_the_parents_task_state_is_refused(make_node, params):
    node = make_node(params)
    node.mine(1)
    template = make_template(node.chain)
    start = RenderState.from_bytes(template.start_state)
    elsewhere = RenderState(start.units_done, tagged_hash("another dataset")).to_bytes()
    claim, out, _ = run_trace(node, key_of(2), 0, 1, start=elsewhere)  # honest units, wrong state
    with pytest.raises(ShareRuleError, match="bad-share-start"):
        pool_add(node, claim)
    _block, result = mine_forced(node, [(claim, out)])
    assert result.outcome is Outcome.INVALID and result.reason.value == "bad-share-start", result


def test_a_claim_copied_under_another_key_is_refused(make_node, params):
    node = make_node(params)
    node.mine(1)
    claim, out, _ = run_trace(node, key_of(3), 0, 1)
    assert pool_add(node, claim) == "added"
    thief = key_of(4)
    # Re-signed by the thief (paying the thief): the tickets name the thief's address now.
    stolen = sign_share_claim(replace(claim, payout=address_of(thief.public_key())), thief)
    assert share_miner(stolen) != share_miner(claim)
    # Its tickets name the thief now: not shares (but for chance, share target / 2^256 of the
    # time: then it needs other openings, or its units re-run under the thief's seeds differ).
    refusals = ("share-above-target", "body-mismatch", "bad-share-unit")
    with pytest.raises(ShareRuleError, match="|".join(refusals)):
        pool_add(node, stolen)
    _block, result = mine_forced(node, [(stolen, out)])
    assert result.outcome in (Outcome.INVALID, Outcome.BAD_MESSAGE)
    assert result.reason.value in refusals, result
    # Only the payout changed, the signature kept: the key did not sign it.
    redirected = replace(claim, payout=address_of(thief.public_key()))
    with pytest.raises(ShareRuleError, match="bad-share-signature"):
        pool_add(node, redirected)


def test_two_claims_of_one_miner_and_attempt_in_one_block_are_invalid(make_node, params):
    node = make_node(params)
    node.mine(1)
    short, short_out, _ = run_trace(node, key_of(5), 0, 1)
    long, long_out, _ = run_trace(node, key_of(5), 0, 2)
    block, result = mine_forced(node, [(short, short_out), (long, long_out)])
    assert result.outcome is Outcome.INVALID and result.reason.value == "duplicate-share", result
    # Another attempt of the same miner is other work, and may be included beside it.
    other, other_out, _ = run_trace(node, key_of(5), 1, 1)
    _block, result = mine_forced(node, [(long, long_out), (other, other_out)])
    assert result.outcome is Outcome.NEW_TIP, result


def test_a_claim_for_the_winners_own_trace_is_invalid(make_node, params):
    node = make_node(params)
    node.mine(1)
    # The winner's own (miner, attempt) is already in the block as its proof: not twice.
    own, own_out, _ = run_trace(node, node.key, 0, 1)
    _block, result = mine_forced(node, [(own, own_out)])
    assert result.outcome is Outcome.INVALID and result.reason.value == "duplicate-share", result


def test_leaving_valid_shares_out_gains_the_blocks_miner_nothing(make_node, params):
    """The same miner on the same parent, once including two valid claims, once leaving them out:
    its own reward is higher by the inclusion fees when it includes them, never lower."""
    including = make_node(params)
    (first,) = including.mine(1)
    excluding = make_node(params, key=including.key)
    assert excluding.chain.process_block(first).outcome is Outcome.NEW_TIP
    excluding.clock.tick()
    pool = SharePool(params)
    including.miner.share_pool = pool
    claims = [run_trace(including, key_of(10 + i), 0, 1)[0] for i in range(2)]
    for c in claims:
        assert (
            pool.add(c, first.hash, make_template(including.chain).target, including.chain.state)
            == "added"
        )
    (with_shares,) = including.mine(1)
    (without,) = excluding.mine(1)
    assert len(with_shares.shares) == 2 and not without.shares
    _, rewards = params.share_split(2)
    kept = including.chain.state.rewards[2].amount
    left_out = excluding.chain.state.rewards[2].amount
    assert rewards.fee > 0
    assert kept == left_out + 2 * rewards.fee
    # Leaving them out does not move their reward to the miner: it is simply not issued.
    assert sum(c.amount for c in including.chain.state.rewards[2].claims) == 2 * (
        rewards.per_share - rewards.fee
    )
    assert not excluding.chain.state.rewards[2].claims
