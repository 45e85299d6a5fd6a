"""The mempool: validation against the tip, fee-rate order, nonce gaps, byte budget,
revalidation."""

from __future__ import annotations

from dataclasses import replace

import pytest
from chain_kit import (
    CHAIN_ID,
    OTHER_CHAIN_ID,
    addr,
    build_block,
    make_genesis,
    make_keys,
    render_spec,
)

from chain.mempool import Mempool, TxRejected
from chain.state import apply_block
from chain.tx import make_submit_task, make_transfer

KEYS = make_keys(5, "mempool")
A, B, C, D, E = KEYS
CHURN = make_keys(16, "churn")
G = make_genesis(KEYS + CHURN, balance=10_000)
STATE = G.state
TX_SIZE = make_transfer(A, CHAIN_ID, 0, 1, addr(B), 1).size


def tx(key, nonce, fee, amount=1, to=None):
    return make_transfer(key, CHAIN_ID, nonce, fee, to or addr(B), amount)


def rejected(pool, t, reason, state=STATE):
    with pytest.raises(TxRejected) as err:
        pool.add(t, state, CHAIN_ID)
    assert err.value.reason == reason


def test_validation_against_the_tip():
    pool = Mempool(1_000_000)
    good = tx(A, 0, 5)
    pool.add(good, STATE, CHAIN_ID)
    rejected(pool, good, "already in the mempool")
    rejected(pool, replace(tx(A, 1, 5), fee=6), "bad signature")
    rejected(pool, make_transfer(A, OTHER_CHAIN_ID, 1, 1, addr(B), 1), "wrong chain id")
    rejected(
        pool, make_submit_task(A, CHAIN_ID, 1, 1, b"junk", 1), pool_reason := _spec_reason(b"junk")
    )
    assert pool_reason.startswith("bad task spec")
    used = apply_block(
        STATE,
        build_block(STATE, G.block.header, [tx(C, 0, 1)], [(G.default_task.task_id, 1)])[0],
        0,
    )[0]
    rejected(pool, tx(C, 0, 2), "nonce 0 already used (account nonce 1)", state=used)
    rejected(pool, tx(D, 64, 1), "nonce 64 too far ahead of the account nonce 0")
    rejected(
        pool,
        tx(D, 0, 1, amount=10_000),
        "balance 10000 does not cover the sender's pending spends 10001",
    )
    rejected(pool, replace(tx(E, 0, 1), fee=-1), "malformed: Transaction.fee: expected u64, got -1")
    assert len(pool) == 1 and good.txid in pool and pool.get(good.txid) == good


def _spec_reason(spec):
    from chain.tx import TxError, task_units

    with pytest.raises(TxError) as err:
        task_units(spec)
    return err.value.reason


def test_pending_spends_are_summed_per_sender():
    pool = Mempool(1_000_000)
    pool.add(tx(A, 0, 0, amount=6_000), STATE, CHAIN_ID)
    rejected(
        pool,
        tx(A, 1, 0, amount=4_001),
        "balance 10000 does not cover the sender's pending spends 10001",
    )
    pool.add(tx(A, 1, 0, amount=4_000), STATE, CHAIN_ID)
    pool.add(make_submit_task(B, CHAIN_ID, 0, 0, render_spec(2), 9_000), STATE, CHAIN_ID)
    rejected(
        pool,
        tx(B, 1, 1, amount=1_000),
        "balance 10000 does not cover the sender's pending spends 10001",
    )


def test_selection_orders_by_fee_rate_and_keeps_nonce_order():
    pool = Mempool(1_000_000)
    for t in [tx(A, 0, 1), tx(A, 1, 100), tx(B, 0, 50), tx(C, 0, 10), tx(C, 1, 20), tx(D, 1, 500)]:
        pool.add(t, STATE, CHAIN_ID)
    chosen = pool.select(STATE, max_bytes=10_000)
    order = [(KEYS.index(next(k for k in KEYS if addr(k) == t.sender)), t.nonce) for t in chosen]
    # D's nonce 1 waits for nonce 0 (a gap); A's high-fee nonce 1 waits behind A's nonce 0
    assert order == [(1, 0), (2, 0), (2, 1), (0, 0), (0, 1)]
    block, _, _ = build_block(STATE, G.block.header, chosen, [(G.default_task.task_id, 1)])
    assert block.txs == tuple(chosen)  # valid in this order (build_block applies it)
    assert pool.select(STATE, max_bytes=2 * TX_SIZE) == chosen[:2]
    assert pool.select(STATE, max_bytes=10_000, max_txs=1) == chosen[:1]


def test_nonce_gap_is_kept_until_filled():
    pool = Mempool(1_000_000)
    later = tx(A, 2, 9)
    pool.add(later, STATE, CHAIN_ID)
    pool.add(tx(A, 1, 9), STATE, CHAIN_ID)
    assert pool.select(STATE, 10_000) == []
    pool.add(tx(A, 0, 9), STATE, CHAIN_ID)
    assert [t.nonce for t in pool.select(STATE, 10_000)] == [0, 1, 2]
    assert [t.nonce for t in pool.pending(addr(A))] == [0, 1, 2]


def test_replacement_needs_a_higher_fee():
    pool = Mempool(1_000_000)
    pool.add(tx(A, 0, 10), STATE, CHAIN_ID)
    rejected(pool, tx(A, 0, 10, amount=2), "nonce 0 is already pending with an equal or higher fee")
    better = tx(A, 0, 11, amount=2)
    pool.add(better, STATE, CHAIN_ID)
    assert pool.pending(addr(A)) == [better] and pool.total_bytes == better.size


def test_byte_budget_evicts_the_lowest_fee_rate_with_its_descendants():
    pool = Mempool(4 * TX_SIZE)
    cheap0, cheap1 = tx(A, 0, 1), tx(A, 1, 90)
    for t in [cheap0, cheap1, tx(B, 0, 30), tx(C, 0, 40)]:
        pool.add(t, STATE, CHAIN_ID)
    assert pool.total_bytes == 4 * TX_SIZE
    rejected(pool, tx(D, 0, 0), "mempool full: fee rate too low")
    pool.add(tx(D, 0, 50), STATE, CHAIN_ID)
    # A's nonce 0 had the lowest rate; its nonce 1 cannot be mined without it, so it goes too
    assert cheap0.txid not in pool and cheap1.txid not in pool
    assert len(pool) == 3 and pool.total_bytes <= pool.max_bytes
    for fee, key in enumerate(CHURN, start=60):  # churn: the heap of stale entries stays bounded
        pool.add(tx(key, 0, fee), STATE, CHAIN_ID)
        assert pool.total_bytes <= pool.max_bytes
    assert len(pool._evict_heap) <= 2 * len(pool) + 64


def test_revalidate_after_the_tip_moves_and_readd_after_a_reorg():
    pool = Mempool(1_000_000)
    pooled = [
        tx(A, 0, 5),
        tx(B, 0, 5, amount=10),
        tx(A, 1, 5),
        tx(B, 1, 5, amount=1_000),
        tx(C, 0, 5),
    ]
    for t in pooled:
        pool.add(t, STATE, CHAIN_ID)
    # the block mines A's nonce 0 and another nonce-0 spend of B's, which B's nonce 1 can no longer
    # follow
    mined = [pooled[0], tx(B, 0, 5, amount=9_000, to=addr(D))]
    block, tip, undo = build_block(STATE, G.block.header, mined, [(G.default_task.task_id, 1)])
    dropped = pool.revalidate(tip)
    assert {(t.sender, t.nonce) for t in dropped} == {(addr(A), 0), (addr(B), 0), (addr(B), 1)}
    assert [(t.sender, t.nonce) for t in pool.select(tip, 10_000)] in (
        [(addr(A), 1), (addr(C), 0)],
        [(addr(C), 0), (addr(A), 1)],
    )
    # the block is disconnected: its transactions come back, valid again on the old tip
    assert pool.readd(block.txs, STATE, CHAIN_ID) == 2
    assert pool.revalidate(STATE) == []
    assert {(t.sender, t.nonce) for t in pool.select(STATE, 10_000)} == {
        (addr(A), 0),
        (addr(A), 1),
        (addr(B), 0),
        (addr(C), 0),
    }


def test_remove_leaves_a_gap():
    pool = Mempool(1_000_000)
    t0, t1 = tx(A, 0, 1), tx(A, 1, 1)
    pool.add(t0, STATE, CHAIN_ID)
    pool.add(t1, STATE, CHAIN_ID)
    assert pool.remove([t0.txid, b"\x00" * 32]) == [t0]
    assert pool.select(STATE, 10_000) == [] and t1.txid in pool
