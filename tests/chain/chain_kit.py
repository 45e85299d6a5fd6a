"""Deterministic chains for the chain tests and the crash-test child process.

Everything is real: Ed25519 keys from fixed seeds, signed transactions, signed headers, and
states produced by `apply_block`. Work traces are chained hashes (no task is executed here: the
ledger does not re-execute work, consensus does), built with the real `Leaf` and `trace_root`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from chain.address import address_of
from chain.block import (
    NO_SIGNATURE,
    Block,
    BlockHeader,
    WorkClaim,
    WorkProof,
    header_commitment,
    sign_header,
    tx_root,
)
from chain.keys import PrivateKey
from chain.state import (
    LedgerState,
    TaskRecord,
    Undo,
    apply_block,
    default_task_record,
    genesis_state,
    open_tasks,
)
from chain.tx import Transaction, make_submit_task, make_transfer
from useful_work.hashing import ZERO_HASH, int_bytes, tagged_hash
from useful_work.specs import RenderSpec, TrainSpec, encode_spec
from useful_work.trace import Leaf, trace_root

CHAIN_ID = tagged_hash("test-chain")
OTHER_CHAIN_ID = tagged_hash("other-chain")
SUBSIDY = 50_000
DEFAULT_SPEC = encode_spec(TrainSpec())  # open-ended: the chain's default task


def make_keys(n: int, seed: str = "kit") -> list[PrivateKey]:
    return [
        PrivateKey.from_bytes(tagged_hash("test-key", seed.encode(), int_bytes(i)))
        for i in range(n)
    ]


def addr(key: PrivateKey) -> bytes:
    return address_of(key.public_key())


MINER = make_keys(1, "miner")[0]


def render_spec(units: int) -> bytes:
    return encode_spec(RenderSpec(units=units, images_per_unit=1))


def chained_leaves(
    start: bytes, count: int, salt: bytes, commitment: bytes = ZERO_HASH
) -> tuple[Leaf, ...]:
    """A chaining trace (hashes only) whose units were all run for the header `commitment`."""
    leaves, current = [], start
    for u in range(count):
        out = tagged_hash("test-out", current, salt, int_bytes(u))
        leaves.append(Leaf(current, out, tagged_hash("test-digest", out), commitment))
        current = out
    return tuple(leaves)


def header(height: int, prev: bytes, miner: PrivateKey = MINER, **fields) -> BlockHeader:
    values = dict(
        version=1,
        height=height,
        prev_hash=prev,
        time_ms=1_700_000_000_000 + 1000 * height,
        target=1 << 250,
        miner=addr(miner),
        miner_key=miner.public_key().raw,
        payout=addr(miner),
        tx_root=tx_root(()),
        state_root=ZERO_HASH,
        work=(),
        signature=NO_SIGNATURE,
    )
    values.update(fields)
    return BlockHeader(**values)


@dataclass(frozen=True)
class Genesis:
    block: Block
    state: LedgerState
    default_task: TaskRecord


def make_genesis(keys: list[PrivateKey], balance: int = 10**12) -> Genesis:
    task = default_task_record(DEFAULT_SPEC)
    state = genesis_state(CHAIN_ID, {addr(k): balance for k in keys}, task)
    block = Block(sign_header(header(0, ZERO_HASH, state_root=state.root), MINER), (), ())
    return Genesis(block, state, task)


def build_block(
    state: LedgerState,
    parent: BlockHeader,
    txs: list[Transaction],
    work: list[tuple[bytes, int]],
    miner: PrivateKey = MINER,
    subsidy: int = SUBSIDY,
) -> tuple[Block, LedgerState, Undo]:
    """A signed block on `parent` with these txs and (task id, unit count) claims, its state and
    undo."""
    claims, proofs = [], []
    task_states = {}
    shell = header(parent.height + 1, parent.hash, miner, tx_root=tx_root(txs))
    committed = header_commitment(shell.tx_root, shell.time_ms, shell.payout)
    for task_id, count in work:
        known = state.tasks.get(task_id)
        start = task_states.get(task_id) or (known.state_hash if known else ZERO_HASH)
        leaves = chained_leaves(start, count, parent.hash + task_id, committed)
        task_states[task_id] = leaves[-1].output_hash
        claims.append(WorkClaim(task_id, count, trace_root(leaves)))
        proofs.append(WorkProof(leaves, ()))
    draft = header(
        parent.height + 1,
        parent.hash,
        miner,
        tx_root=tx_root(txs),
        work=tuple(claims),
        task_state=proofs[0].leaves[-1].output_hash if proofs else ZERO_HASH,
    )
    new_state, undo = apply_block(state, Block(draft, tuple(txs), tuple(proofs)), subsidy)
    block = Block(
        sign_header(replace(draft, state_root=new_state.root), miner), tuple(txs), tuple(proofs)
    )
    return block, new_state, undo


def random_txs(
    rng: random.Random,
    state: LedgerState,
    keys: list[PrivateKey],
    count: int,
    task_share: float = 0.1,
) -> list[Transaction]:
    """`count` valid transactions in a valid order: transfers (some to new addresses) and task
    submissions."""
    nonces = {addr(k): state.account(addr(k)).nonce for k in keys}
    balances = {addr(k): state.account(addr(k)).balance for k in keys}
    txs = []
    for _ in range(count):
        key = rng.choice(keys)
        sender = addr(key)
        fee = rng.randint(0, 50)
        if balances[sender] < fee + 1:
            continue
        spend = rng.randint(0, (balances[sender] - fee) // 4)
        if rng.random() < task_share:
            tx = make_submit_task(
                key, CHAIN_ID, nonces[sender], fee, render_spec(rng.randint(1, 12)), spend
            )
        else:
            fresh = tagged_hash("fresh", int_bytes(rng.getrandbits(60)))[:20]
            to = addr(rng.choice(keys)) if rng.random() < 0.8 else fresh
            tx = make_transfer(key, CHAIN_ID, nonces[sender], fee, to, spend)
            if to in balances:
                balances[to] += spend
        balances[sender] -= fee + spend
        nonces[sender] += 1
        txs.append(tx)
    return txs


def random_work(rng: random.Random, state: LedgerState) -> list[tuple[bytes, int]]:
    tasks = open_tasks(state)
    paid = [t for t in tasks if t.bounty and t.units_total]
    task = rng.choice(paid) if paid and rng.random() < 0.7 else tasks[0]
    return [(task.task_id, rng.randint(1, 6))]


def deterministic_block(
    seed: int, state: LedgerState, parent: BlockHeader, keys: list[PrivateKey], tx_count: int
) -> tuple[Block, LedgerState, Undo]:
    """Block at parent.height + 1 of the chain named by `seed`: same inputs, same bytes."""
    rng = random.Random(f"{seed}/{parent.height + 1}")
    txs = random_txs(rng, state, keys, tx_count, task_share=0.05)
    return build_block(state, parent, txs, random_work(rng, state))
