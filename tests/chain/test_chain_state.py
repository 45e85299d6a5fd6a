"""The state transition: apply then undo is the identity; every ledger rule refuses what it
should."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from chain_kit import (
    CHAIN_ID,
    DEFAULT_SPEC,
    MINER,
    OTHER_CHAIN_ID,
    SUBSIDY,
    addr,
    build_block,
    make_genesis,
    make_keys,
    random_txs,
    random_work,
    render_spec,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.encoding import U64_MAX
from chain.state import (
    TASK_DONE,
    TASK_OPEN,
    Account,
    LedgerState,
    StateError,
    apply_block,
    default_task_record,
    genesis_state,
    open_tasks,
    state_root,
    undo_block,
)
from chain.tx import make_submit_task, make_transfer
from useful_work.hashing import ZERO_HASH

KEYS = make_keys(6, "state")
A, B, C = KEYS[:3]
G = make_genesis(KEYS, balance=1_000_000)


def supply(state: LedgerState) -> int:
    """Coins in existence: balances, bounties still held in escrow and immature rewards."""
    return (
        sum(a.balance for a in state.accounts.values())
        + sum(t.escrow for t in state.tasks.values())
        + sum(r.amount for r in state.rewards.values())
    )


def apply_raw(state, txs, work=None, subsidy=SUBSIDY):
    """Build (unsigned-state-root) block contents and apply them, returning apply_block's result."""
    block, _, _ = build_block(G.state, G.block.header, [], work or [(G.default_task.task_id, 1)])
    from chain.block import tx_root

    block = replace(block, txs=tuple(txs), header=replace(block.header, tx_root=tx_root(txs)))
    # The ledger rules only: the swapped transactions are not the ones the trace committed to.
    return apply_block(state, block, subsidy, check_structure=False)


def refused(state, txs, reason, work=None):
    with pytest.raises(StateError) as err:
        apply_raw(state, txs, work)
    assert err.value.reason == reason


# --- apply / undo --------------------------------------------------------------------------------


def test_apply_then_undo_over_many_random_blocks():
    rng = random.Random(7)
    state, parent = G.state, G.block.header
    for _ in range(30):
        txs = random_txs(rng, state, KEYS, rng.randint(0, 25))
        block, new_state, undo = build_block(state, parent, txs, random_work(rng, state))
        assert undo_block(new_state, undo).root == state.root
        assert undo_block(new_state, undo) == state
        assert supply(new_state) == supply(state) + SUBSIDY
        assert block.header.state_root == new_state.root
        state, parent = new_state, block.header
    assert any(t.status == TASK_DONE for t in state.tasks.values())  # the walk completed some tasks


def test_undo_a_whole_chain_in_reverse_reaches_genesis():
    rng = random.Random(11)
    state, parent, undos = G.state, G.block.header, []
    for _ in range(12):
        block, state, undo = build_block(
            state, parent, random_txs(rng, state, KEYS, 15), random_work(rng, state)
        )
        undos.append(undo)
        parent = block.header
    for undo in reversed(undos):
        state = undo_block(state, undo)
    assert state == G.state and state.root == G.state.root


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 6), st.integers(0, 1000), st.integers(0, 3)),
        max_size=12,
    ),
    st.integers(1, 5),
)
def test_apply_undo_identity_property(ops, units):
    """Arbitrary transfers (some invalid): a block either applies and undoes exactly, or is
    refused whole."""
    nonces = {}
    txs = []
    for sender, to, amount, fee in ops:
        key = KEYS[sender]
        n = nonces.get(sender, 0)
        nonces[sender] = n + 1
        to_addr = addr(KEYS[to]) if to < len(KEYS) else b"\x42" * 20
        txs.append(
            make_transfer(key, CHAIN_ID, n, fee, to_addr, amount * 1500)
        )  # large amounts overspend
    before = G.state.root
    try:
        new_state, undo = apply_raw(G.state, txs, [(G.default_task.task_id, units)])
    except StateError as err:
        assert err.reason.startswith("tx ")
        assert G.state.root == before  # the input is never touched
        return
    assert undo_block(new_state, undo).root == before
    assert supply(new_state) == supply(G.state) + SUBSIDY


def test_apply_never_mutates_its_input():
    snapshot = (dict(G.state.accounts), dict(G.state.tasks), G.state.root)
    txs = [make_transfer(A, CHAIN_ID, 0, 3, addr(B), 100)]
    new_state, undo = apply_raw(G.state, txs)
    assert (dict(G.state.accounts), dict(G.state.tasks), state_root(G.state)) == snapshot
    undo_block(new_state, undo)
    assert new_state.account(addr(A)).balance == 1_000_000 - 103
    with pytest.raises(TypeError):
        new_state.accounts[addr(A)] = Account(0, 0)  # type: ignore[index]


def test_transfers_fees_and_miner_reward():
    txs = [
        make_transfer(A, CHAIN_ID, 0, 7, addr(B), 100),
        make_transfer(A, CHAIN_ID, 1, 5, addr(A), 50),
        make_transfer(B, CHAIN_ID, 0, 1, b"\x99" * 20, 1_000_099),
    ]
    state, undo = apply_raw(G.state, txs)
    assert state.account(addr(A)) == Account(
        1_000_000 - 107 - 5, 2
    )  # self-transfer costs only its fee
    assert state.account(addr(B)) == Account(0, 1)
    assert state.account(b"\x99" * 20) == Account(1_000_099, 0)
    assert state.account(addr(MINER)).balance == SUBSIDY + 13
    assert {u.address for u in undo.accounts} == {addr(A), addr(B), b"\x99" * 20, addr(MINER)}
    assert next(u for u in undo.accounts if u.address == b"\x99" * 20).before is None


# --- rules ---------------------------------------------------------------------------------------


def test_bad_nonces_are_refused():
    refused(G.state, [make_transfer(A, CHAIN_ID, 1, 1, addr(B), 1)], "tx 0: nonce 1, expected 0")
    refused(
        G.state,
        [
            make_transfer(A, CHAIN_ID, 0, 1, addr(B), 1),
            make_transfer(A, CHAIN_ID, 2, 1, addr(B), 1),
        ],
        "tx 1: nonce 2, expected 1",
    )


def test_double_spend_inside_one_block_is_refused():
    spend = make_transfer(A, CHAIN_ID, 0, 1, addr(B), 900_000)
    refused(G.state, [spend, spend], "tx 1: nonce 0, expected 1")
    other = make_transfer(A, CHAIN_ID, 0, 1, addr(C), 900_000)
    refused(G.state, [spend, other], "tx 1: nonce 0, expected 1")
    overspend = make_transfer(A, CHAIN_ID, 1, 1, addr(C), 900_000)
    refused(G.state, [spend, overspend], "tx 1: cost 900001 exceeds the sender's balance 99999")


def test_balance_and_overflow_rules():
    refused(
        G.state,
        [make_transfer(A, CHAIN_ID, 0, 1, addr(B), 1_000_000)],
        "tx 0: cost 1000001 exceeds the sender's balance 1000000",
    )
    refused(
        G.state,
        [make_transfer(A, CHAIN_ID, 0, 2**63, addr(B), 2**63)],
        "tx 0: fee plus value overflows u64",
    )
    rich = genesis_state(CHAIN_ID, {addr(A): U64_MAX, addr(B): 10}, G.default_task)
    refused(
        rich,
        [make_transfer(B, CHAIN_ID, 0, 0, addr(A), 1)],
        "tx 0: recipient balance overflows u64",
    )
    with pytest.raises(StateError, match="^miner reward balance overflows u64$"):
        apply_raw(
            genesis_state(CHAIN_ID, {addr(MINER): U64_MAX - 10}, G.default_task), [], subsidy=11
        )
    worn = LedgerState(CHAIN_ID, {addr(A): Account(100, U64_MAX)}, G.state.tasks)
    refused(
        worn,
        [make_transfer(A, CHAIN_ID, U64_MAX, 1, addr(B), 1)],
        "tx 0: sender nonce overflows u64",
    )


def test_signature_and_chain_id_are_checked():
    good = make_transfer(A, CHAIN_ID, 0, 1, addr(B), 1)
    refused(G.state, [replace(good, fee=2)], "tx 0: bad signature")
    refused(G.state, [make_transfer(A, OTHER_CHAIN_ID, 0, 1, addr(B), 1)], "tx 0: wrong chain id")
    # a caller that verified the signatures itself may skip them, never the other rules
    block, _, _ = build_block(G.state, G.block.header, [], [(G.default_task.task_id, 1)])
    from chain.block import tx_root

    forged = (replace(good, fee=2),)
    block = replace(block, txs=forged, header=replace(block.header, tx_root=tx_root(forged)))
    apply_block(G.state, block, SUBSIDY, verify_signatures=False, check_structure=False)


def test_structure_is_checked_first():
    block, _, _ = build_block(G.state, G.block.header, [], [(G.default_task.task_id, 2)])
    with pytest.raises(StateError, match="^structure: 0 work proofs for 1 claims$"):
        apply_block(G.state, replace(block, proofs=()), SUBSIDY)


# --- tasks ---------------------------------------------------------------------------------------


def test_task_lifecycle_bounty_shares_and_completion():
    submit = make_submit_task(A, CHAIN_ID, 0, 10, render_spec(7), 1000)
    state, parent = G.state, G.block.header
    block, state, _ = build_block(state, parent, [submit], [(G.default_task.task_id, 1)])
    task = state.tasks[submit.txid]
    assert (task.owner, task.bounty, task.paid, task.units_total, task.status) == (
        addr(A),
        1000,
        0,
        7,
        TASK_OPEN,
    )
    assert task.created_height == 1 and task.state_hash == ZERO_HASH
    assert state.account(addr(A)).balance == 1_000_000 - 1010
    assert open_tasks(state) == [state.tasks[G.default_task.task_id], task]  # oldest first
    paid_to_miner = []
    for units in (3, 3, 3):
        before = state.account(addr(MINER)).balance
        block, state, undo = build_block(state, block.header, [], [(submit.txid, units)])
        paid_to_miner.append(state.account(addr(MINER)).balance - before - SUBSIDY)
        assert state.tasks[submit.txid].state_hash == block.proofs[0].leaves[-1].output_hash
    # 3 units of 7: 1000*3//7 = 428 each, the completing claim (1 credited unit) pays the remainder
    assert paid_to_miner == [428, 428, 144]
    done = state.tasks[submit.txid]
    assert (done.paid, done.units_done, done.status, done.completed_height) == (
        1000,
        9,
        TASK_DONE,
        4,
    )
    assert submit.txid not in {t.task_id for t in open_tasks(state)}
    with pytest.raises(StateError, match=r"^claim 0: task [0-9a-f]+ is already done$"):
        build_block(state, block.header, [], [(submit.txid, 1)])
    with pytest.raises(StateError, match=r"^claim 0: unknown task 4242"):
        build_block(state, block.header, [], [(b"\x42" * 32, 1)])


def test_open_ended_default_task_pays_no_bounty_and_stays_open():
    block, state, _ = build_block(G.state, G.block.header, [], [(G.default_task.task_id, 5)])
    task = state.tasks[G.default_task.task_id]
    assert (task.units_done, task.status, task.paid) == (5, TASK_OPEN, 0)
    assert state.account(addr(MINER)).balance == SUBSIDY


def test_bad_task_specs_are_refused():
    with pytest.raises(StateError, match=r"^tx 0: bad task spec: spec: not valid msgpack"):
        apply_raw(G.state, [make_submit_task(A, CHAIN_ID, 0, 1, b"nonsense", 5)])
    refused(
        G.state,
        [make_submit_task(A, CHAIN_ID, 0, 1, DEFAULT_SPEC, 5)],
        "tx 0: bad task spec: a submitted task must ask for at least 1 unit (open-ended is "
        "the default task only)",
    )


def test_genesis_helpers():
    task = default_task_record(DEFAULT_SPEC)
    assert (task.units_total, task.owner, task.bounty, task.status) == (0, bytes(20), 0, TASK_OPEN)
    state = genesis_state(CHAIN_ID, {addr(A): 5}, task)
    assert state.account(addr(A)) == Account(5, 0) and state.account(addr(B)) == Account(0, 0)
    assert state.tasks == {task.task_id: task}
    with pytest.raises(ValueError):
        genesis_state(CHAIN_ID, {addr(A): -1}, task)
    with pytest.raises(ValueError):
        apply_block(state, G.block, subsidy=-1)
