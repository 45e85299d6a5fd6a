"""Share claims in-process: they enter blocks, the task and the rewards; the pool keeps the
longest claim per (miner, attempt); merges are exact; fraud proofs and audits cover claims."""

from __future__ import annotations

import pytest
import torch
from consensus_kit import small_params
from shares_kit import key_of, run_trace

from chain.address import address_of
from chain.keys import PrivateKey
from chain.mempool import TxRejected
from chain.state import LedgerState
from chain.tx import make_fraud_proof
from consensus.audit import AUDIT_FRAUD, Auditor
from consensus.fraud import block_start_state, find_fraud
from consensus.miner import Miner, make_template
from consensus.share_pool import SharePool
from consensus.shares import ShareRuleError, is_longer_version, required_share_openings
from consensus.tickets import challenged_units, ticket
from useful_work.hashing import tagged_hash
from useful_work.merge import MergeError, merge_states, weighted_floor_mean
from useful_work.render_task import RenderState
from useful_work.specs import RenderSpec, TrainSpec
from useful_work.tasks import make_task
from useful_work.trace import state_hash, trace_root
from useful_work.trainer import decode_state

N = 4


@pytest.fixture
def params():
    return small_params(shares_per_block=N, reward_maturity=3)


def supply(state: LedgerState) -> int:
    return (
        sum(a.balance for a in state.accounts.values())
        + sum(t.bounty - t.paid for t in state.tasks.values())
        + sum(r.amount + sum(c.amount for c in r.claims) for r in state.rewards.values())
    )


def pooled_node(make_node, params):
    node = make_node(params)
    node.mine(1)
    pool = SharePool(params)
    node.miner.share_pool = pool
    return node, pool


def add(node, pool, claim) -> str:
    tip = node.chain.tip
    return pool.add(claim, tip.hash, make_template(node.chain).target, node.chain.state)


def test_share_claims_enter_the_block_the_task_and_the_rewards(make_node, params):
    node, pool = pooled_node(make_node, params)
    claims = [run_trace(node, key_of(i), 0, 1)[0] for i in range(2)]
    assert [add(node, pool, c) for c in claims] == ["added", "added"]
    task_id = make_template(node.chain).task_id
    before = node.chain.state.tasks[task_id]
    supply_before = supply(node.chain.state)
    (block,) = node.mine(1)
    assert len(block.shares) == 2
    units = block.header.work[0].unit_count + sum(len(c.leaves) for c in claims)
    after = node.chain.state.tasks[task_id]
    assert after.units_done == before.units_done + units
    # Render merge: the task's state counts every trace's units and is stored for the next block.
    merged = RenderState.from_bytes(node.store.get_blob(after.state_hash))
    assert merged.units_done == before.units_done + units
    # Rewards: the winner's subsidy part, a per share less the fee, the fee to the includer.
    subsidy, rewards = params.share_split(2)
    record = node.chain.state.rewards[2]
    assert [c.amount for c in record.claims] == [rewards.per_share - rewards.fee] * 2
    assert record.amount == subsidy + 2 * rewards.fee
    issued = record.amount + sum(c.amount for c in record.claims)
    assert issued == params.block_subsidy(2) - rewards.per_share * (N - 1 - 2)
    assert supply(node.chain.state) == supply_before + issued
    # With N - 1 included shares a block issues exactly the subsidy.
    assert subsidy + (N - 1) * rewards.per_share == params.block_subsidy(2)
    node.mine(params.reward_maturity)
    for c in claims:
        assert (
            node.chain.state.account(address_of(c.miner_key)).balance
            == rewards.per_share - rewards.fee
        )


def test_the_miner_keeps_its_trace_going_after_a_share_and_publishes_claims(make_node, params):
    node, _pool = pooled_node(make_node, params)
    published = []
    node.miner.on_share = published.append
    # A block's first unit under the share target is its winner a quarter of the time (N = 4),
    # so mine until a share is published: 20 blocks without one is a chance of 4^-20.
    for _ in range(20):
        node.mine(1)
        if published:
            break
    # Each claim is the miner's own trace so far, ending at a share; claims of one trace grow.
    assert published, "no share found in 20 blocks of about 12 units each"
    for claim in published:
        assert claim.shares[-1] == len(claim.leaves) - 1
        assert address_of(claim.miner_key) == node.address


def test_a_longer_claim_replaces_a_shorter_and_a_shorter_is_refused(make_node, params):
    node, pool = pooled_node(make_node, params)
    short, _, _ = run_trace(node, key_of(1), 0, 1)
    long, _, _ = run_trace(node, key_of(1), 0, 2)
    assert long.leaves[: len(short.leaves)] == short.leaves
    assert add(node, pool, short) == "added"
    assert add(node, pool, long) == "replaced"
    with pytest.raises(ShareRuleError, match="duplicate-share"):
        add(node, pool, short)
    assert len(pool) == 1
    (block,) = node.mine(1)
    assert block.shares == (long,)


def test_claims_on_an_old_parent_are_dropped(make_node, params):
    node, pool = pooled_node(make_node, params)
    claim, _, _ = run_trace(node, key_of(1), 0, 1)
    node.mine(1)
    with pytest.raises(ShareRuleError, match="share-wrong-parent"):
        add(node, pool, claim)
    assert pool.for_block(node.chain.tip.hash, None) == []


def segment_draws(claim, key, checks) -> list[tuple[range, set[int]]]:
    """From the definition, without the function under test: per segment (units after the
    previous share up to share s) its units and the units a verifier opens there: s, and
    `checks` of the segment's other units drawn from the ticket after s, H("ticket", P, M,
    root of units 0 .. s)."""
    miner = address_of(key.public_key())
    out, start = [], 0
    for s in claim.shares:
        t = ticket(claim.parent_hash, miner, trace_root(claim.leaves[: s + 1]))
        others = challenged_units(t, s - start + 1, checks)  # among the first s - start units
        out.append((range(start, s + 1), {s, *(start + c for c in others)}))
        start = s + 1
    return out


@pytest.mark.parametrize("checks", [1, 2])
def test_openings_are_each_segments_last_unit_and_its_own_spot_checks(make_node, checks):
    params = small_params(shares_per_block=N, reward_maturity=3, share_spot_checks=checks)
    node, _ = pooled_node(make_node, params)
    key = key_of(3)
    longest = 0
    for attempt in range(6):
        claim, _, inputs = run_trace(node, key, attempt, 3)
        opened = [o.unit_index for o in claim.openings]
        segments = segment_draws(claim, key, checks)
        assert opened == sorted(set().union(*(want for _, want in segments)))
        assert opened == required_share_openings(params, claim)
        for units, want in segments:
            assert {u for u in opened if u in units} == want
            assert len(want) == 1 + min(checks, len(units) - 1)
            longest = max(longest, len(units))
        assert [o.state for o in claim.openings] == [inputs[u] for u in opened]
    # Some segment had more units than it opens: the draw was a draw.
    assert longest > 1 + checks


@pytest.mark.parametrize("checks", [1, 2])
def test_a_longer_version_re_runs_only_its_new_segment(make_node, checks):
    params = small_params(shares_per_block=N, reward_maturity=3, share_spot_checks=checks)
    node, pool = pooled_node(make_node, params)
    key = key_of(7)
    for attempt in range(100):
        long, _, inputs = run_trace(node, key, attempt, 3)
        s0, s1, s2 = long.shares
        if s1 - s0 > checks and s2 - s1 > checks:
            break  # both later segments have more than `checks` units besides their last
    else:
        pytest.fail("no trace of 100 with two long segments")
    short = run_trace(node, key, attempt, 1)[0]
    mid = run_trace(node, key, attempt, 2)[0]
    assert is_longer_version(short, mid) and is_longer_version(mid, long)
    assert add(node, pool, short) == "added"
    assert pool.units_checked == len(required_share_openings(params, short))
    for version in (mid, long):
        before = pool.units_checked
        assert add(node, pool, version) == "replaced"
        assert pool.units_checked - before == 1 + checks
    assert pool.for_block(node.chain.tip.hash, None)[0].checked == frozenset(
        required_share_openings(params, long)
    )
    # Not a longer version, re-run in full: the same leaves listing other shares (from s1 on,
    # not short's s0), or another trace of this (miner, attempt).
    longer, _, more_inputs = run_trace(node, key, attempt, 4)
    miner = Miner(node.chain, key, clock=node.clock)
    relisted = miner.share_claim(
        make_template(node.chain), list(longer.leaves), more_inputs, attempt, [*longer.shares[1:]]
    )
    assert not is_longer_version(short, relisted)
    fresh = SharePool(params)
    assert add(node, fresh, short) == "added"
    before = fresh.units_checked
    assert add(node, fresh, relisted) == "replaced"
    assert fresh.units_checked - before == len(required_share_openings(params, relisted))
    node.clock.tick()  # another header time: another commitment, other leaves
    other, _, _ = run_trace(node, key, attempt, 4)
    assert other.leaves[0] != long.leaves[0] and not is_longer_version(long, other)
    before = pool.units_checked
    assert add(node, pool, other) == "replaced"
    assert pool.units_checked - before == len(required_share_openings(params, other))


def test_fraud_proofs_and_audits_cover_share_claims(make_node, params):
    """A claim with one fabricated leaf that no spot check opens passes validation; the auditor
    replays every claim, finds it, and the proof forfeits that claim's reward only."""
    node, pool = pooled_node(make_node, params)
    template = make_template(node.chain)
    # Unit 1's output: the right unit count, a made-up dataset accumulator (no image rendered).
    start_units = RenderState.from_bytes(template.start_state).units_done
    poisoned = RenderState(start_units + 2, tagged_hash("poison")).to_bytes()
    key = key_of(5)
    for attempt in range(200):
        claim, output, jump = _claim_with_jump(node, key, attempt, template, poisoned)
        if claim is not None:
            break
    else:
        pytest.fail("no attempt left the fabricated leaf unchallenged")
    pool.keep_own(claim, output)  # as a careless includer would; the block's checks miss the jump
    (block,) = node.mine(1)
    assert block.shares == (claim,)
    record = node.chain.state.rewards[block.header.height]
    auditor = Auditor(node.chain, PrivateKey.from_bytes(tagged_hash("auditor")), share=1.0)
    outcome = None
    while outcome is None or outcome.block_hash != block.hash:
        outcome = auditor.step()
        assert outcome is not None
    assert outcome.verdict == AUDIT_FRAUD and outcome.unit == jump
    assert outcome.proof is not None and outcome.proof.payload.claim_index == 1
    node.chain.add_transaction(outcome.proof)
    node.mine(1)
    after = node.chain.state.rewards[block.header.height]
    assert after.claims[0].forfeited == 1 and after.claims[0].amount == 0
    assert after.amount == record.amount and after.forfeited == 0  # the includer keeps its reward
    assert after.credited == 0
    # Proving the same claim again is refused.
    spec = node.chain.state.tasks[template.task_id].spec
    start = block_start_state(block, spec, node.store.get_blob)
    found = find_fraud(block, start, spec=spec, claim_index=1)
    assert found is not None
    again = make_fraud_proof(key_of(6), node.chain.chain_id, 0, 0, block.hash, 1, *found)
    with pytest.raises(TxRejected, match="already proven guilty"):
        node.chain.add_transaction(again)


def _claim_with_jump(node, key, attempt, template, poisoned):
    """A claim whose unit 1 outputs `poisoned` without running (the rest honest), or None when
    the verifier would open the jump (then the caller tries another attempt)."""
    from consensus.market import task_for_spec
    from consensus.tickets import ticket_wins
    from useful_work.trace import TRACE_START, Leaf, next_prefix, unit_seed

    miner = Miner(node.chain, key, clock=node.clock)
    task = task_for_spec(template.task_spec)
    draft = miner.draft(template, attempt)
    share_target = node.params.share_target(template.target)
    leaves, inputs, state, prefix, jump = [], [], template.start_state, TRACE_START, 1
    while len(leaves) < 40:
        u = len(leaves)
        seed = unit_seed(template.parent_hash, miner.address, attempt, u, prefix, draft.commitment)
        if u == jump:
            out, digest = poisoned, tagged_hash("made up", seed)
        else:
            out, digest = task.run_unit(state, seed)
        leaf = Leaf(state_hash(state), state_hash(out), digest, draft.commitment)
        leaves.append(leaf)
        inputs.append(state)
        state, prefix = out, next_prefix(prefix, leaf)
        if u > jump and ticket_wins(
            ticket(template.parent_hash, miner.address, trace_root(leaves)), share_target
        ):
            claim = miner.share_claim(template, leaves, inputs, attempt, [u])
            if jump in required_share_openings(node.params, claim):
                return None, b"", jump
            return claim, state, jump
    return None, b"", jump


# --- merges ----------------------------------------------------------------------------------


TINY_TRAIN = TrainSpec(units=0, image_size=16, batch_size=2, steps_per_unit=1, max_objects=2)


def test_train_merge_is_the_weighted_floor_mean_of_weights_momentum_and_step():
    task = make_task(TINY_TRAIN)
    start = task.initial_state()
    a, _ = task.run_unit(start, b"a" * 32)
    b, _ = task.run_unit(start, b"b" * 32)
    merged = merge_states(task, [a, b], [1, 3], [1, 1])
    da, db, dm = (decode_state(x, task.config) for x in (a, b, merged))
    for name in da.params:
        for got, x, y in (
            (dm.params[name], da.params[name], db.params[name]),
            (dm.momentum[name], da.momentum[name], db.momentum[name]),
        ):
            expected = [
                (p + 3 * q) // 4 for p, q in zip(x.flatten().tolist(), y.flatten().tolist())
            ]
            assert got.flatten().tolist() == expected
    assert dm.step == weighted_floor_mean([da.step, db.step], [1, 3])
    # Order does not matter, one state is itself, and a weight-0 state is left out.
    assert merge_states(task, [b, a], [3, 1], [1, 1]) == merged
    assert merge_states(task, [a], [5], [1]) == a
    assert merge_states(task, [a, b], [2, 0], [1, 1]) == a
    # Negative values round toward minus infinity (floor), not toward zero.
    assert weighted_floor_mean([-3, 0], [1, 1]) == -2


def test_train_merge_is_exact_whatever_the_thread_count():
    task = make_task(TINY_TRAIN)
    start = task.initial_state()
    states = [task.run_unit(start, bytes([i]) * 32)[0] for i in range(3)]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = merge_states(task, states, [2, 1, 7], [2, 1, 7])
        torch.set_num_threads(2)
        two = merge_states(task, states, [2, 1, 7], [2, 1, 7])
    finally:
        torch.set_num_threads(threads)
    assert state_hash(one) == state_hash(two)


def test_merge_refuses_what_cannot_merge():
    task = make_task(RenderSpec(units=0, images_per_unit=1, image_size=16, max_objects=2))
    start = task.initial_state()
    one, _ = task.run_unit(start, b"x" * 32)
    with pytest.raises(MergeError, match="do not all start from one state"):
        merge_states(task, [one, one], [1, 1], [1, 2])
    with pytest.raises(MergeError, match="positive sum"):
        merge_states(task, [one], [0], [1])
    train = make_task(TINY_TRAIN)
    with pytest.raises(MergeError):
        merge_states(train, [train.initial_state(), b"junk"], [1, 1], [1, 1])
    merged = merge_states(task, [one, one], [1, 1], [1, 1])
    assert RenderState.from_bytes(merged).units_done == 2


def test_a_block_with_claims_undoes_exactly(make_node, params):
    from chain.state import apply_block, undo_block

    node, pool = pooled_node(make_node, params)
    for i in range(2):
        assert add(node, pool, run_trace(node, key_of(20 + i), 0, 1)[0]) == "added"
    before = node.chain.state
    (block,) = node.mine(1)
    subsidy, rewards = params.share_split(block.header.height)
    after, undo = apply_block(
        before,
        block,
        subsidy,
        params.reward_maturity,
        share_rewards=rewards,
        headers=node.chain.block_headers,
    )
    assert after.root == block.header.state_root == node.chain.state.root
    assert undo_block(after, undo).root == before.root


def test_claimants_histories_list_their_share_rewards(make_node, params):
    node, pool = pooled_node(make_node, params)
    claims = [run_trace(node, key_of(30 + i), 0, 1 + i)[0] for i in range(2)]
    assert [add(node, pool, c) for c in claims] == ["added", "added"]
    (block,) = node.mine(1)
    record = node.chain.state.rewards[block.header.height]
    assert len(record.claims) == 2
    assert {c.claim_id for c in block.shares} == {c.claim_id for c in claims}
    for claim, paid in zip(block.shares, record.claims, strict=True):  # most shares first
        total, events = node.store.history(claim.payout, 0, 10)
        assert total == 1
        (event,) = events
        assert (event.kind, event.height, event.block_hash) == (
            "share-reward",
            block.header.height,
            block.hash,
        )
        assert event.amount == paid.amount > 0
        assert event.counterparty == block.header.payout
    # The block's miner still has its own reward event, and disconnecting removes them all.
    _, miner_events = node.store.history(block.header.payout, 0, 100)
    assert any(e.kind == "reward" and e.block_hash == block.hash for e in miner_events)
    node.store.disconnect_tip()
    for claim in claims:
        assert node.store.history(claim.payout, 0, 10) == (0, [])
