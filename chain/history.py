"""Where each confirmed transaction is, and each account's history: derived from a block alone.

ChainStore writes these records in the batch that connects the block and deletes them in the
batch that disconnects it, so the indexes always match the best chain, survive restarts and are
rebuilt by a reindex like everything else. Events of one block are numbered in the order they
happen (per transaction: sender, then recipient; then the block's reward; then one
"share-reward" per share claim, in block order, to the claim's payout address).
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated

from chain.address import ADDRESS_SIZE
from chain.block import Block
from chain.encoding import U32, U64, Bytes, Maybe, Record, Text
from chain.tx import SubmitTask, Transfer
from useful_work.hashing import HASH_SIZE

EVENT_KINDS = (
    "transfer-out",
    "transfer-in",
    "submit-task",
    "fraud-proof",
    "reward",
    "share-reward",
)


@dataclass(frozen=True)
class TxLocation(Record):
    block_hash: Annotated[bytes, Bytes(HASH_SIZE)]
    height: Annotated[int, U64]
    index: Annotated[int, U32]


@dataclass(frozen=True)
class AccountEvent(Record):
    height: Annotated[int, U64]
    block_hash: Annotated[bytes, Bytes(HASH_SIZE)]
    kind: Annotated[str, Text(16)]  # one of EVENT_KINDS
    txid: Annotated[bytes | None, Maybe(Bytes(HASH_SIZE))]
    amount: Annotated[int, U64]
    fee: Annotated[int, U64]
    counterparty: Annotated[bytes | None, Maybe(Bytes(ADDRESS_SIZE))]


def tx_locations(block: Block) -> Iterator[tuple[bytes, TxLocation]]:
    for i, tx in enumerate(block.txs):
        yield tx.txid, TxLocation(block.hash, block.header.height, i)


def account_events(
    block: Block, miner_reward: int, claim_rewards: Sequence[int] = ()
) -> Iterator[tuple[bytes, int, AccountEvent]]:
    """(address, sequence number in the block, event) for every event of the block, in order.

    `miner_reward` is the undo record's (subsidy, fees and bounty shares); `claim_rewards` each
    share claim's reward as the state transition priced it (chain.state.ClaimReward.amount: its
    shares less the includer's fee, plus its bounty), from the block's pending reward record;
    left out (when only the keys matter, as on disconnect) the share rewards read 0. A fraud
    proof's prover share is in the prover's balance, not listed."""
    h, height = block.hash, block.header.height
    seq = 0
    for tx in block.txs:
        p = tx.payload
        if isinstance(p, Transfer):
            yield (
                tx.sender,
                seq,
                AccountEvent(height, h, "transfer-out", tx.txid, p.amount, tx.fee, p.to),
            )
            yield (
                p.to,
                seq + 1,
                AccountEvent(height, h, "transfer-in", tx.txid, p.amount, 0, tx.sender),
            )
            seq += 2
            continue
        kind, amount = (
            ("submit-task", p.bounty) if isinstance(p, SubmitTask) else ("fraud-proof", 0)
        )
        yield tx.sender, seq, AccountEvent(height, h, kind, tx.txid, amount, tx.fee, None)
        seq += 1
    yield block.header.payout, seq, AccountEvent(height, h, "reward", None, miner_reward, 0, None)
    for i, claim in enumerate(block.shares):
        amount = claim_rewards[i] if i < len(claim_rewards) else 0
        miner = block.header.payout
        event = AccountEvent(height, h, "share-reward", None, amount, 0, miner)
        yield claim.payout, seq + 1 + i, event
