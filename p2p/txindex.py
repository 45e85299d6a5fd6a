"""Where each confirmed transaction is, and each account's history, for the API.

Kept in memory, built from the best chain at start-up and updated as blocks connect and
disconnect (on the event loop). Rebuilding is cheap next to validation, and an index that is
only ever derived from the store can never disagree with it after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chain.block import Block
from chain.tx import SubmitTask, Transfer
from consensus.chainstate import ChainState


@dataclass(frozen=True)
class TxLocation:
    block_hash: bytes
    height: int
    index: int


@dataclass(frozen=True)
class AccountEvent:
    height: int
    block_hash: bytes
    kind: str  # transfer-out, transfer-in, submit-task, fraud-proof, reward
    txid: bytes | None
    amount: int
    fee: int
    counterparty: bytes | None


@dataclass
class TxIndex:
    locations: dict[bytes, TxLocation] = field(default_factory=dict)
    events: dict[bytes, list[AccountEvent]] = field(default_factory=dict)

    def connect(self, block: Block, miner_reward: int) -> None:
        """Index a connected block; `miner_reward` is its undo record's (subsidy, fees and bounty shares)."""
        h, height = block.hash, block.header.height
        for i, tx in enumerate(block.txs):
            self.locations[tx.txid] = TxLocation(h, height, i)
            p = tx.payload
            if isinstance(p, Transfer):
                self._add(tx.sender, AccountEvent(height, h, "transfer-out", tx.txid, p.amount, tx.fee, p.to))
                self._add(p.to, AccountEvent(height, h, "transfer-in", tx.txid, p.amount, 0, tx.sender))
            elif isinstance(p, SubmitTask):
                self._add(tx.sender, AccountEvent(height, h, "submit-task", tx.txid, p.bounty, tx.fee, None))
            else:  # a fraud proof: the prover's share of the forfeit is in its balance, not listed here
                self._add(tx.sender, AccountEvent(height, h, "fraud-proof", tx.txid, 0, tx.fee, None))
        self._add(block.header.payout, AccountEvent(height, h, "reward", None, miner_reward, 0, None))

    def disconnect(self, block: Block) -> None:
        h = block.hash
        for tx in block.txs:
            self.locations.pop(tx.txid, None)
        touched = {block.header.payout} | {tx.sender for tx in block.txs}
        touched |= {tx.payload.to for tx in block.txs if isinstance(tx.payload, Transfer)}
        for address in touched:
            items = self.events.get(address, [])
            self.events[address] = [e for e in items if e.block_hash != h]

    def _add(self, address: bytes, event: AccountEvent) -> None:
        self.events.setdefault(address, []).append(event)

    def history(self, address: bytes, offset: int, limit: int) -> tuple[int, list[AccountEvent]]:
        """(total, a page of events newest first)."""
        items = self.events.get(address, [])
        newest_first = items[::-1]
        return len(items), newest_first[offset : offset + limit]

    @classmethod
    def build(cls, chain: ChainState) -> TxIndex:
        index = cls()
        for height in range(1, chain.tip.height + 1):
            h = chain.hash_at(height)
            block = chain.get_block(h) if h else None
            undo = chain.store.get_undo(h) if h else None
            if block is not None and undo is not None:
                index.connect(block, undo.miner_reward)
        return index
