"""The attacks on the lottery, mounted in-process against the consensus code, each shown to fail.

1. Free tickets: re-rolling a fabricated leaf costs a unit per ticket (chained seeds).
2. Re-signed and varied blocks: another key, time, transaction set or payout needs a new winner.
3. Body poisoning: a body that is not the header's blames its sender and marks nothing.
4. A malformed opening is invalid work; a fake heavier branch never moves the tip.
5. Fake header chains are bounded and never stop mining.
7. Rewards are spendable only after `reward_maturity` blocks.
(6, task cost limits, is in test_task_cost.py.)
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from consensus_kit import FUNDED, FUNDED_KEY, small_params

from chain.address import address_of
from chain.block import (
    Block,
    BlockHeader,
    Opening,
    WorkClaim,
    WorkProof,
    sign_header,
    tx_root,
)
from chain.keys import PrivateKey
from chain.mempool import TxRejected
from chain.state import StateError, apply_block
from chain.storage import ChainStore
from chain.tx import make_transfer
from consensus.attacks import RerollMiner, forge_header, forge_unrun_block
from consensus.chainstate import ChainState, Limits, Outcome
from consensus.market import task_for_spec
from consensus.miner import HeaderDraft, Miner, make_template
from consensus.tickets import ticket, ticket_wins
from consensus.validation import (
    InvalidBlock,
    Reason,
    check_body,
    check_header,
    connect_checks,
    required_openings,
)
from useful_work.hashing import ZERO_HASH, int_bytes, tagged_hash
from useful_work.runner import iter_units
from useful_work.trace import trace_root


def _key(*parts: bytes | str) -> PrivateKey:
    return PrivateKey.from_bytes(
        tagged_hash("attack-key", *(p.encode() if isinstance(p, str) else p for p in parts))
    )


def _verdict(node, block: Block) -> Reason | None:
    """Full validation of a block on the node's tip without changing the node: None when valid."""
    chain = node.chain
    try:
        check_header(
            chain.params, block.header, chain.parent_info(block.header.prev_hash), chain.clock()
        )
        check_body(chain.params, block)
        connect_checks(chain.params, block, chain.state)
    except InvalidBlock as exc:
        return exc.reason
    return None


# --- 1. free tickets ---------------------------------------------------------------------------


def _lottery(node, make_miner, blocks: int, label: str) -> tuple[int, int, list[Reason | None]]:
    """Many miners (one key each) mine on the same tip; returns (units run, accepted blocks,
    verdicts of the blocks found by grinding, or of all blocks for an honest miner)."""
    units, accepted, verdicts = 0, 0, []
    for i in range(blocks):
        miner = make_miner(node.chain, _key(label, int_bytes(i)))
        block = miner.mine_block()
        assert block is not None
        units += miner.stats.units
        verdict = _verdict(node, block)
        accepted += verdict is None
        if not isinstance(miner, RerollMiner) or miner.reroll.ground_blocks:
            verdicts.append(verdict)
    return units, accepted, verdicts


def test_rerolling_a_fabricated_leaf_gains_no_tickets(make_node):
    """Before chained seeds, re-rolling a leaf nobody re-executes gave tickets for hashes only
    (blocks after 4 units at 20,000 expected). Now each ticket costs one honest unit."""
    params = small_params(initial_units_per_block=12, spot_checks=3)
    node = make_node(params)
    node.clock.tick()
    blocks = 60
    honest_units, honest_blocks, verdicts = _lottery(
        node, lambda c, k: Miner(c, k, clock=node.clock), blocks, "honest"
    )
    assert honest_blocks == blocks and all(v is None for v in verdicts)
    rate = honest_blocks / honest_units  # about 1/12

    # The fabricated leaf as the winner: no unit per ticket, and never accepted.
    _, _, verdicts = _lottery(
        node,
        lambda c, k: RerollMiner(c, k, strategy="last", honest_prefix=4, clock=node.clock),
        20,
        "last",
    )
    assert len(verdicts) >= 5 and set(verdicts) == {Reason.BAD_WINNING_UNIT}

    # A fabricated leaf then one honest unit: one unit per ticket, refused when the leaf is
    # challenged.
    prefix = 8
    units, accepted, verdicts = _lottery(
        node,
        lambda c, k: RerollMiner(c, k, strategy="chained", honest_prefix=prefix, clock=node.clock),
        blocks,
        "chained",
    )
    assert set(verdicts) <= {None, Reason.BAD_SPOT_CHECK}
    # Tickets cost what an honest miner's cost: units per found block within statistical error.
    per_block, honest_per_block = units / blocks, honest_units / honest_blocks
    assert abs(per_block - honest_per_block) < 4 * honest_per_block / math.sqrt(blocks), (
        per_block,
        honest_per_block,
    )
    # Accepted blocks per unit run: no better than honest mining (and about 1 - k/(n-1) of it).
    expected = units * rate
    assert accepted <= expected + 3 * math.sqrt(expected) + 1, (accepted, expected)
    survive = 1 - params.spot_checks / (prefix + 1)
    assert accepted >= expected * survive - 4 * math.sqrt(expected * survive) - 1, (
        accepted,
        expected * survive,
    )


# --- 2. re-signed and varied blocks ----------------------------------------------------------


def _payment_block(node):
    """An honest block paying 12345 to a merchant (a 1-confirmation payment)."""
    merchant = address_of(_key("merchant").public_key())
    tx = make_transfer(FUNDED_KEY, node.chain.chain_id, 0, 10, merchant, 12345)
    node.mempool.add(tx, node.chain.state, node.chain.chain_id)
    node.clock.tick()
    block = node.miner.mine_block()
    assert [t.txid for t in block.txs] == [tx.txid]
    return block


def _resigned(block: Block, key: PrivateKey, txs=None, **changes) -> Block:
    txs = block.txs if txs is None else tuple(txs)
    header = sign_header(replace(block.header, tx_root=tx_root(txs), **changes), key)
    return Block(header, txs, block.proofs)


def test_a_found_block_cannot_be_resigned_or_varied(make_node):
    node, victim = make_node(), make_node()
    block = _payment_block(node)
    victim.clock.now = node.clock.now
    thief = _key("thief")
    variants = {
        "other key, same miner": (_resigned(block, thief), Reason.MINER_NOT_KEY),
        "other time": (
            _resigned(block, node.key, time_ms=block.header.time_ms + 1),
            Reason.BAD_TRACE,
        ),
        "payment dropped": (_resigned(block, node.key, txs=()), Reason.BAD_TRACE),
        "other payout": (
            _resigned(block, node.key, payout=address_of(thief.public_key())),
            Reason.BAD_TRACE,
        ),
    }
    for name, (variant, reason) in variants.items():
        result = victim.chain.process_block(variant)
        assert (result.outcome, result.reason) == (Outcome.INVALID, reason), name
    # Under the thief's own address the ticket is another: it misses the target, or needs other
    # openings, or the units (seeded by the miner) fail. Never accepted, whatever the key.
    for i in range(20):
        key = _key("thief", int_bytes(i))
        stolen = _resigned(
            block, key, miner=address_of(key.public_key()), payout=address_of(key.public_key())
        )
        result = victim.chain.process_block(stolen)
        assert result.outcome in (Outcome.INVALID, Outcome.BAD_MESSAGE), result
    # The block's identity does not cover the signature: no second version of it exists.
    assert _resigned(block, node.key).hash == block.hash
    assert victim.chain.process_block(block).outcome is Outcome.NEW_TIP
    merchant = block.txs[0].payload.to
    assert victim.chain.state.account(merchant).balance == 12345


# --- 3. body poisoning -----------------------------------------------------------------------


def test_a_mutated_body_blames_its_sender_and_marks_nothing(make_node):
    node, victim = make_node(), make_node()
    block = _payment_block(node)
    victim.clock.now = node.clock.now
    proof = block.proofs[0]
    opened = proof.openings[0]
    poisoned = {
        "a transaction dropped": replace(block, txs=()),
        "an opening changed": replace(
            block,
            proofs=(
                replace(
                    proof,
                    openings=(Opening(opened.unit_index, opened.state + b"x"), *proof.openings[1:]),
                ),
            ),
        ),
        "an opening missing": replace(block, proofs=(replace(proof, openings=proof.openings[1:]),)),
        "a leaf changed": replace(
            block,
            proofs=(
                replace(
                    proof, leaves=(replace(proof.leaves[0], digest=ZERO_HASH), *proof.leaves[1:])
                ),
            ),
        ),
        "the signature broken": replace(block, header=replace(block.header, signature=bytes(64))),
    }
    # Headers first: the header is known, then poisoned bodies arrive before the real one.
    assert victim.chain.process_header(block.header).outcome is Outcome.HEADER
    for name, body in poisoned.items():
        assert body.hash == block.hash, name  # same header: a relay can do this for free
        result = victim.chain.process_block(body)
        assert result.outcome is Outcome.BAD_MESSAGE, (name, result)
        assert result.reason in (Reason.BODY_MISMATCH, Reason.BAD_SIGNATURE)
        assert victim.chain.entry(block.hash).status != 3, name  # not invalid
    assert victim.chain.process_block(block).outcome is Outcome.NEW_TIP
    # The same without the header first.
    other = make_node()
    other.clock.now = node.clock.now
    for body in poisoned.values():
        assert other.chain.process_block(body).outcome is Outcome.BAD_MESSAGE
    assert other.chain.entry(block.hash) is None
    assert other.chain.process_block(block).outcome is Outcome.NEW_TIP


# --- 4. malformed openings and fake branches --------------------------------------------------


@pytest.mark.parametrize(
    "garbage", [b"", b"\x00" * 7, b"not a render state" * 10, bytes(range(256)) * 3]
)
def test_an_opening_that_does_not_decode_is_invalid_work(make_node, garbage):
    node = make_node()
    node.mine(2)
    node.clock.tick()
    template = make_template(node.chain)
    tip = node.chain.header(node.chain.tip.hash)
    forged = forge_unrun_block(
        node.params,
        tip,
        node.chain.parent_info(tip.hash),
        _key("malformed"),
        template.start_state,
        garbage,
        template.task_id,
        template.min_time_ms + 1,
    )
    result = node.chain.process_block(forged)
    assert (result.outcome, result.reason) == (Outcome.INVALID, Reason.BAD_WINNING_UNIT)
    assert "re-execution failed" in result.detail or "differs" in result.detail
    assert node.chain.tip.hash == tip.hash
    # The node carries on, also after a restart.
    node.mine(1)
    path, params = node.store.path, node.params
    node.store.close()
    reopened = ChainState(ChainStore(path), params)
    assert reopened.tip.height == 3 and reopened.entry(forged.hash).status == 3
    reopened.store.close()
    node.store = ChainStore(path)  # for the fixture's teardown


def test_a_fake_heavier_branch_from_genesis_never_moves_the_tip(make_node):
    node = make_node()
    node.mine(5)
    tip, root = node.chain.tip.hash, node.chain.state.root
    # The attacker: headers from genesis with more claimed work (hashes only), an invalid first
    # body.
    forger = ChainState(ChainStore(str(node.store.path) + "-forger"), node.params, clock=node.clock)
    parent = forger.header(forger.genesis.block.hash)
    genesis_template = make_template(forger)
    branch, time_ms = [], genesis_template.min_time_ms + 1
    for _ in range(8):
        time_ms += node.params.block_interval_ms // 2  # faster blocks: more work per block
        block = forge_unrun_block(
            node.params,
            parent,
            forger.parent_info(parent.hash),
            _key("branch", int_bytes(len(branch))),
            genesis_template.start_state,
            genesis_template.start_state + b"!",
            genesis_template.task_id,
            time_ms,
        )
        assert forger.process_header(block.header).outcome is Outcome.HEADER
        branch.append(block)
        parent = block.header
    assert forger.best_header().chain_work > node.chain.tip.chain_work
    for block in branch:
        assert node.chain.process_header(block.header).outcome is Outcome.HEADER
    assert (
        node.chain.best_header().hash == branch[-1].hash
    )  # a claim: the tip stays where work was proven
    results = [node.chain.process_block(b) for b in branch]
    assert not any(r.disconnected or r.connected for r in results)
    assert node.chain.tip.hash == tip and node.chain.state.root == root
    assert node.chain.entry(branch[0].hash).status == 3
    assert results[-1].outcome is Outcome.INVALID or any(r.invalidated for r in results)
    node.mine(1)  # and mining goes on
    forger.store.close()


# --- 5. fake header chains ---------------------------------------------------------------------


def _forge_headers(node, count: int) -> list[BlockHeader]:
    """`count` header-valid headers on the node's tip, made with hashes only."""
    forger = ChainState(
        ChainStore(str(node.store.path) + "-headers"),
        node.params,
        clock=node.clock,
        limits=Limits(max_headers_ahead=10_000),
    )
    for block in (
        node.chain.get_block(node.chain.hash_at(h)) for h in range(1, node.chain.tip.height + 1)
    ):
        forger.process_block(block)
    key = _key("headers")
    parent = forger.header(forger.tip.hash)
    time_ms = node.clock.now
    out = []
    for _ in range(count):
        info = forger.parent_info(parent.hash)
        time_ms = max(time_ms + node.params.block_interval_ms, info.median_time_past + 1)
        node.clock.now = time_ms  # the victim sees them arrive on time
        header = forge_header(
            node.params, parent, info, key, node.chain.genesis.default_task.task_id, time_ms
        )
        assert forger.process_header(header).outcome is Outcome.HEADER
        out.append(header)
        parent = header
    forger.store.close()
    return out


def test_fake_header_chains_are_bounded_and_never_stop_mining(make_node, tmp_path):
    params = small_params()
    limits = Limits(max_unproven_headers=200, max_headers_ahead=100)
    node = make_node(params)
    node.mine(3)
    node.chain.limits = limits
    headers = _forge_headers(node, 600)
    outcomes = [node.chain.process_header(h).outcome for h in headers]
    assert outcomes[:100] == [Outcome.HEADER] * 100  # up to 100 heights above the validated tip
    assert outcomes[100] is Outcome.REJECTED and set(outcomes[101:]) <= {
        Outcome.REJECTED,
        Outcome.ORPHAN,
    }
    assert len(node.chain.unproven) == 100
    assert node.chain.best_header().hash == headers[99].hash
    # The tip is the best fully validated chain: mining goes on at once.
    node.mine(2)
    assert node.chain.tip.height == 5
    # Giving up on the branch forgets it and refuses it for a while.
    assert node.chain.drop_header_branch(headers[99].hash) == 100
    assert not node.chain.unproven and node.chain.best_header().hash == node.chain.tip.hash
    assert node.chain.process_header(headers[0]).outcome is Outcome.REJECTED
    # Unproven headers are never written: a restart holds none of them.
    for h in headers[:50]:
        node.chain.dropped.clear()
        node.chain.process_header(h)
    path = node.store.path
    node.store.close()
    reopened = ChainState(ChainStore(path), params)
    assert reopened.best_header().hash == reopened.tip.hash and reopened.tip.height == 5
    assert all(reopened.entry(h.hash) is None for h in headers)
    reopened.store.close()
    node.store = ChainStore(path)


# --- 7. reward maturity ----------------------------------------------------------------------


def _mine_with(node, txs) -> Block:
    """An honestly mined block on the node's tip carrying exactly `txs` (valid or not)."""
    template = make_template(node.chain)
    node.clock.tick()
    draft = HeaderDraft(tuple(txs), max(node.clock(), template.min_time_ms), node.address)
    task = task_for_spec(template.task_spec)
    leaves, inputs = [], []
    units = iter_units(
        task,
        template.start_state,
        template.parent_hash,
        node.address,
        commitment=lambda u: draft.commitment,
    )
    for r in units:
        leaves.append(r.leaf)
        inputs.append(r.input_state)
        if ticket_wins(
            ticket(template.parent_hash, node.address, trace_root(leaves)), template.target
        ):
            break
    header = BlockHeader(
        version=node.params.version,
        height=template.height,
        prev_hash=template.parent_hash,
        time_ms=draft.time_ms,
        target=template.target,
        miner=node.address,
        miner_key=bytes(32),
        payout=node.address,
        tx_root=draft.tx_root,
        state_root=ZERO_HASH,
        work=(WorkClaim(template.task_id, len(leaves), trace_root(leaves), 0),),
        signature=bytes(64),
        task_state=leaves[-1].output_hash,
    )
    openings = tuple(Opening(u, inputs[u]) for u in required_openings(node.params, header))
    block = Block(header, draft.txs, (WorkProof(tuple(leaves), openings),))
    try:
        new_state, _ = apply_block(
            template.state,
            block,
            node.params.block_subsidy(template.height),
            node.params.reward_maturity,
        )
        header = replace(header, state_root=new_state.root)
    except StateError:
        pass  # an invalid block keeps a zero state root: validation stops before it
    return Block(sign_header(header, node.key), draft.txs, block.proofs)


def test_rewards_are_spendable_only_after_maturity(make_node):
    params = small_params(reward_maturity=3)
    node = make_node(params)
    node.mine(1)
    merchant = address_of(_key("merchant").public_key())
    spend = make_transfer(node.key, node.chain.chain_id, 0, 1, merchant, 1000)
    with pytest.raises(TxRejected, match="balance"):
        node.mempool.add(spend, node.chain.state, node.chain.chain_id)
    # A block that spends the fresh reward anyway is invalid: the work is honest, the transfer is
    # not.
    assert node.chain.state.immature(node.address)[0].height == 1
    early = _mine_with(node, [spend])
    assert _verdict(node, early) is Reason.BAD_TRANSACTIONS
    node.mine(2)  # block 1's reward matures in block 4, so its coins are spendable there
    assert node.chain.state.account(node.address).balance == 0
    late = _mine_with(node, [spend])
    assert _verdict(node, late) is None
    assert node.chain.process_block(late).outcome is Outcome.NEW_TIP
    assert node.chain.state.account(merchant).balance == 1000
    assert node.chain.state.account(node.address).balance == params.block_subsidy(1) - 1001
    # Rewards of the later blocks are still immature.
    assert [r.height for r in node.chain.state.immature(node.address)] == [2, 3, 4]
    assert (
        node.chain.state.account(FUNDED).balance > 0
    )  # funds that were never a reward are not delayed
