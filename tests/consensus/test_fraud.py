"""Audits and fraud proofs, in-process: a poisoned block passes the spot checks, a fraud proof
built from its replayed trace forfeits its reward and rewinds the task to an honest line."""

from __future__ import annotations

import random

import pytest
from consensus_kit import FUNDED, FUNDED_KEY, Node, small_params

from chain.address import address_of
from chain.keys import PrivateKey
from chain.mempool import TxRejected
from chain.state import LedgerState, undo_block
from chain.tx import make_fraud_proof, make_submit_task, make_transfer
from consensus.attacks import PoisonMiner
from consensus.chainstate import Outcome
from consensus.fraud import block_start_state, find_fraud, unit_seed_of
from consensus.market import initial_state, task_for_spec
from useful_work.hashing import tagged_hash
from useful_work.specs import RenderSpec, encode_spec
from useful_work.trace import state_hash

PROVER = PrivateKey.from_bytes(tagged_hash("prover-key"))


def supply(state: LedgerState) -> int:
    """Everything that exists: balances, task escrows and immature rewards."""
    return (
        sum(a.balance for a in state.accounts.values())
        + sum(t.bounty - t.paid for t in state.tasks.values())
        + sum(r.amount for r in state.rewards.values())
    )


def mine_poisoned(node, **kw):
    poisoner = PoisonMiner(
        node.chain, PrivateKey.from_bytes(tagged_hash("poisoner")), clock=node.clock, **kw
    )
    node.clock.tick()
    block = poisoner.mine_block()
    assert block is not None and poisoner.last_jump == (block.hash, poisoner.jump_at)
    result = node.chain.process_block(block)
    assert result.outcome is Outcome.NEW_TIP, result  # the spot checks miss the jump
    return block, poisoner


def proof_for(node, block, nonce: int = 0, key: PrivateKey = PROVER):
    spec = node.chain.state.tasks[block.header.work[0].task_id].spec
    start = block_start_state(block, spec, node.store.get_blob)
    found = find_fraud(block, start, spec=spec)
    assert found is not None
    unit, state = found
    return make_fraud_proof(key, node.chain.chain_id, nonce, 0, block.hash, 0, unit, state), unit


def honest_replay(node, task_id: bytes | None = None) -> tuple[bytes, int]:
    """Replay a task (default: the chain's default task) along the best chain from its initial
    state: every block that starts from the replayed state must reproduce unit by unit; the others
    (built on a state a fraud proof rewound) are skipped. Returns (final state hash, units
    replayed)."""
    chain = node.chain
    task_id = task_id or next(iter(chain.genesis.state.tasks))
    spec = chain.state.tasks[task_id].spec
    task = task_for_spec(spec)
    current, units = initial_state(spec), 0
    for height in range(1, chain.tip.height + 1):
        block = chain.get_block(chain.hash_at(height))
        if block.header.work[0].task_id != task_id or block.proofs[0].leaves[
            0
        ].input_hash != state_hash(current):
            continue
        replayed = current
        for u, leaf in enumerate(block.proofs[0].leaves):
            out, digest = task.run_unit(replayed, unit_seed_of(block, 0, u))
            if state_hash(out) != leaf.output_hash or digest != leaf.digest:
                break
            replayed = out
        else:
            current, units = replayed, units + len(block.proofs[0].leaves)
    return state_hash(current), units


@pytest.fixture
def fraud_params():
    return small_params(reward_maturity=6, spot_checks=2, initial_units_per_block=8)


def test_poisoned_block_is_proven_forfeited_and_rewound(make_node, fraud_params):
    node = make_node(fraud_params)
    node.mine(2)
    task_id = node.chain.task_state()[0]
    before = node.chain.state.tasks[task_id]
    block, poisoner = mine_poisoned(node)
    guilty_height = block.header.height
    assert node.chain.state.rewards[guilty_height].payout == poisoner.payout
    node.mine(1)  # an honest block on the poisoned line: valid work, but on a poisoned state
    supply_before = supply(node.chain.state)

    tx, unit = proof_for(node, block)
    assert unit == poisoner.jump_at
    node.chain.add_transaction(tx)
    with pytest.raises(TxRejected, match="duplicate"):
        node.chain.add_transaction(proof_for(node, block, nonce=1)[0])
    forfeit = node.chain.state.rewards[guilty_height].amount
    [proving] = node.mine(1)
    assert tx.txid in {t.txid for t in proving.txs}

    state = node.chain.state
    assert guilty_height not in state.rewards  # the poisoner's reward is gone
    assert state.account(tx.sender).balance == forfeit * fraud_params.fraud_prover_share_pct // 100
    undo = node.store.get_undo(proving.hash)
    assert undo.burned == forfeit - state.account(tx.sender).balance
    assert (
        supply(state)
        == supply_before + fraud_params.block_subsidy(proving.header.height) - undo.burned
    )
    rewound = state.tasks[task_id]
    assert (rewound.state_hash, rewound.units_done) == (before.state_hash, before.units_done)
    # Blocks on the poisoned line keep their subsidy but their units are not credited.
    later = state.rewards[guilty_height + 1]
    assert later.credited == 0 and later.amount == fraud_params.block_subsidy(guilty_height + 1)
    # Miners continue from the rewound state, and the chain's task state is an honest line.
    assert node.chain.task_state()[1] == (
        node.store.get_blob(before.state_hash) or initial_state(rewound.spec)
    )
    node.mine(2)
    final, units = honest_replay(node)
    assert final == node.chain.state.tasks[task_id].state_hash
    assert units == node.chain.state.tasks[task_id].units_done

    # A second proof against the same block is refused: its reward is forfeited already.
    with pytest.raises(TxRejected, match="already forfeited"):
        node.chain.add_transaction(proof_for(node, block, nonce=1)[0])


def test_invalid_fraud_proofs_are_refused_with_reasons(make_node, fraud_params):
    node = make_node(fraud_params)
    node.mine(2)
    block, poisoner = mine_poisoned(node)
    spec = node.chain.state.tasks[block.header.work[0].task_id].spec
    honest = node.chain.get_block(node.chain.hash_at(2))
    start = block_start_state(honest, spec, node.store.get_blob)
    chain_id = node.chain.chain_id

    def refused(tx, match):
        with pytest.raises(TxRejected, match=match):
            node.chain.add_transaction(tx)

    # An honest unit reproduces its leaf: no fraud.
    refused(
        make_fraud_proof(PROVER, chain_id, 0, 0, honest.hash, 0, 0, start), "reproduces its leaf"
    )
    # A state that is not the unit's input.
    refused(
        make_fraud_proof(PROVER, chain_id, 0, 0, block.hash, 0, poisoner.jump_at, b"not the state"),
        "does not hash",
    )
    refused(
        make_fraud_proof(PROVER, chain_id, 0, 0, tagged_hash("nowhere"), 0, 0, start), "unknown"
    )
    refused(make_fraud_proof(PROVER, chain_id, 0, 0, block.hash, 1, 0, start), "no claim 1")
    refused(make_fraud_proof(PROVER, chain_id, 0, 0, block.hash, 0, 10_000, start), "no unit 10000")
    # Outside the window: once the reward matured, the fraud proof comes too late.
    tx, _ = proof_for(node, block)
    node.mine(fraud_params.reward_maturity)
    refused(tx, "outside the fraud window")


def test_block_with_an_invalid_fraud_proof_is_invalid(make_node, fraud_params):
    node = make_node(fraud_params)
    node.mine(2)
    honest = node.chain.get_block(node.chain.hash_at(2))
    spec = node.chain.state.tasks[honest.header.work[0].task_id].spec
    start = block_start_state(honest, spec, node.store.get_blob)
    bogus = make_fraud_proof(PROVER, node.chain.chain_id, 0, 0, honest.hash, 0, 0, start)
    node.mempool.add(bogus, node.chain.state, node.chain.chain_id)  # past the node's own check
    node.clock.tick()
    block = node.miner.mine_block()
    assert bogus.txid in {t.txid for t in block.txs}
    result = node.chain.process_block(block)
    assert result.outcome is Outcome.INVALID
    assert result.reason.value == "bad-fraud-proof" and "reproduces its leaf" in result.detail


def test_paid_task_poisoned_completion_is_undone_and_redone_without_paying_twice(
    make_node, fraud_params
):
    """A poisoner completes a paid render task with a jump; the proof reopens it with its escrow
    whole, honest miners redo the units, and the bounty is paid out exactly once in total."""
    node = make_node(fraud_params)
    spec = encode_spec(RenderSpec(units=12, images_per_unit=1, image_size=16, max_objects=2))
    bounty = 1_200_000
    submit = make_submit_task(FUNDED_KEY, node.chain.chain_id, 0, 100, spec, bounty)
    node.chain.add_transaction(submit)
    node.mine(1)
    task_id = submit.txid
    assert node.chain.task_state()[0] == task_id
    before = node.chain.state.tasks[task_id]
    block, poisoner = mine_poisoned(node, jump_at=1)
    poisoned = node.chain.state.tasks[task_id]
    assert poisoned.paid > 0
    tx, _ = proof_for(node, block)
    node.chain.add_transaction(tx)
    node.mine(1)
    task = node.chain.state.tasks[task_id]
    assert (task.paid, task.units_done, task.state_hash, task.status) == (
        before.paid,
        before.units_done,
        before.state_hash,
        before.status,
    )
    assert task.escrow == bounty
    mined = 0
    while node.chain.state.tasks[task_id].is_open:
        node.mine(1)
        mined += 1
        assert mined < 20
    task = node.chain.state.tasks[task_id]
    assert task.paid == bounty
    final, units = honest_replay(node, task_id)
    assert final == task.state_hash and units == task.units_done
    # Shares the chain still pays out (immature or matured) add up to the bounty once.
    node.mine(fraud_params.reward_maturity)
    assert node.chain.state.account(poisoner.payout).balance == 0


def _check_sheet(node, allocated: int) -> None:
    chain = node.chain
    burned = sum(
        node.store.get_undo(chain.hash_at(h)).burned for h in range(1, chain.tip.height + 1)
    )
    issued = sum(chain.params.block_subsidy(h) for h in range(1, chain.tip.height + 1))
    assert supply(chain.state) == allocated + issued - burned, f"at height {chain.tip.height}"


def test_balance_sheet_over_a_random_run_with_fraud_proofs_and_reorgs(tmp_path, fraud_params):
    """Total supply equals allocations plus subsidies issued minus what was burned, at every
    height of a random run (honest and poisoned blocks, fraud proofs, transfers, a paid task,
    reorgs across proofs), and undoing every block restores it height by height."""
    rng = random.Random(12)
    allocated = sum(a.amount for a in fraud_params.allocations)
    a = Node(tmp_path / "a", fraud_params)
    nodes = [a]
    prover = address_of(PROVER.public_key())
    poisoned: list[bytes] = []
    spec = encode_spec(RenderSpec(units=40, images_per_unit=1, image_size=16, max_objects=2))
    a.chain.add_transaction(make_submit_task(FUNDED_KEY, a.chain.chain_id, 0, 100, spec, 4_000_000))
    reorgs = proofs = 0
    try:
        for step in range(36):
            op = rng.random()
            if op < 0.25:
                poisoned.append(mine_poisoned(a, jump_at=rng.randint(1, 3))[0].hash)
            elif op < 0.5 and not a.mempool.pending(prover):
                live = [
                    h
                    for h in poisoned
                    if a.chain.on_best_chain(h)
                    and a.chain.state.rewards.get(a.chain.entry(h).height) is not None
                    and a.chain.entry(h).height
                    > a.chain.tip.height + 1 - fraud_params.reward_maturity
                ]
                if live:
                    tx, _ = proof_for(
                        a,
                        a.chain.get_block(rng.choice(live)),
                        nonce=a.chain.state.account(prover).nonce,
                    )
                    a.chain.add_transaction(tx)
                    proofs += 1
                a.mine(1)
            elif op < 0.65 and a.chain.tip.height > 3:
                # A heavier branch from a few blocks back, mined by a fresh node, replaces the tip.
                fork = a.chain.tip.height - rng.randint(1, 3)
                c = Node(tmp_path / f"c{step}", fraud_params, clock=a.clock)
                nodes.append(c)
                for h in range(1, fork + 1):
                    assert (
                        c.chain.process_block(a.chain.get_block(a.chain.hash_at(h))).outcome
                        is Outcome.NEW_TIP
                    )
                for _ in range(a.chain.tip.height - fork + 1):
                    if rng.random() < 0.3:
                        poisoned.append(mine_poisoned(c)[0].hash)
                    else:
                        c.mine(1)
                for h in range(fork + 1, c.chain.tip.height + 1):
                    a.chain.process_block(c.chain.get_block(c.chain.hash_at(h)))
                assert a.chain.tip.hash == c.chain.tip.hash
                reorgs += 1
            else:
                nonce = a.chain.state.account(FUNDED).nonce + len(a.mempool.pending(FUNDED))
                a.chain.add_transaction(
                    make_transfer(
                        FUNDED_KEY, a.chain.chain_id, nonce, 10, prover, rng.randint(1, 1000)
                    )
                )
                a.mine(1)
            _check_sheet(a, allocated)
        assert proofs >= 2 and reorgs >= 2
        assert (
            sum(
                a.store.get_undo(a.chain.hash_at(h)).burned
                for h in range(1, a.chain.tip.height + 1)
            )
            > 0
        )
        # Undo restores the sheet at every height, and the state root each header committed to.
        state = a.chain.state
        burned = sum(
            a.store.get_undo(a.chain.hash_at(h)).burned for h in range(1, a.chain.tip.height + 1)
        )
        for h in range(a.chain.tip.height, 0, -1):
            block_hash = a.chain.hash_at(h)
            assert state.root == a.chain.header(block_hash).state_root
            undo = a.store.get_undo(block_hash)
            state = undo_block(state, undo)
            burned -= undo.burned
            issued = sum(fraud_params.block_subsidy(i) for i in range(1, h))
            assert supply(state) == allocated + issued - burned
        assert state.root == a.chain.genesis.state.root
    finally:
        for n in nodes:
            n.close()


def test_auditor_replays_recent_blocks_and_proves_the_poisoned_one(make_node, fraud_params):
    from consensus.audit import AUDIT_FRAUD, AUDIT_OK, Auditor

    node = make_node(fraud_params)
    node.mine(2)
    block, poisoner = mine_poisoned(node)
    node.mine(1)
    auditor = Auditor(node.chain, PROVER, share=1.0)
    outcomes = []
    while (outcome := auditor.step()) is not None:
        outcomes.append(outcome)
        if outcome.proof is not None:
            node.chain.add_transaction(outcome.proof)
    verdicts = {o.block_hash: o.verdict for o in outcomes}
    assert verdicts[block.hash] == AUDIT_FRAUD
    assert [o.unit for o in outcomes if o.proof is not None] == [poisoner.jump_at]
    assert sum(v == AUDIT_OK for v in verdicts.values()) == len(verdicts) - 1
    assert auditor.lag() == 0 and auditor.stats.blocks == len(verdicts) - 1
    [proving] = node.mine(1)
    assert any(t.is_fraud_proof for t in proving.txs)
    assert block.header.height not in node.chain.state.rewards
