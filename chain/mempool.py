"""Pending transactions: checked against the tip state, ordered by fee rate, bounded in bytes.

A sender's transactions may arrive out of order: a nonce gap stays pending until it is filled.
Every sender's pending spends together must be covered by its balance at the tip. When the pool
is over its byte budget the lowest fee rate goes first, together with the same sender's later
nonces, which could never be mined without it.

Relay policy (this node's, not consensus): a transaction whose fee is below `min_fee_rate` base
units per encoded byte is refused, naming the minimum; blocks may still carry cheaper ones.
Fraud proofs are exempt (the node re-ran their unit before admitting them: consensus checks
them, not this pool) and go first into block templates: they are what keeps the chain honest.
`fee_estimate` is the fee rate that would put a transaction into the next block's room as the
pool stands (the minimum while the pool fits in one block).
"""

import functools
import heapq
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeVar

from chain.block import MAX_TXS
from chain.encoding import EncodeError
from chain.state import LedgerState
from chain.tx import Transaction, TxError, check_tx

MAX_NONCE_AHEAD = 64  # how far past the account nonce a pending nonce may be


class TxRejected(ValueError):
    """A transaction the mempool refuses; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Entry:
    tx: Transaction
    size: int
    rate: Fraction  # fee per encoded byte
    seq: int  # arrival order, the tie-breaker


F = TypeVar("F", bound=Callable)


def _locked(method: F) -> F:
    """The node's miner thread and chain worker share one pool: each public call holds its lock."""

    @functools.wraps(method)
    def wrapper(self: "Mempool", *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _priority(entry: "_Entry") -> tuple[int, Fraction]:
    """Heap key for block templates: fraud proofs first, then by fee rate (highest first)."""
    return (0 if entry.tx.is_fraud_proof else 1, -entry.rate)


def min_fee(size: int, rate: int) -> int:
    """The fee a transaction of `size` bytes needs at `rate` base units per byte."""
    return size * rate


class Mempool:
    def __init__(
        self, max_bytes: int, max_nonce_ahead: int = MAX_NONCE_AHEAD, min_fee_rate: int = 0
    ) -> None:
        if min_fee_rate < 0:
            raise ValueError("min_fee_rate must not be negative")
        self._lock = threading.RLock()
        self.max_bytes = max_bytes
        self.min_fee_rate = min_fee_rate
        self.max_nonce_ahead = max_nonce_ahead
        self.total_bytes = 0
        self._entries: dict[bytes, _Entry] = {}
        self._by_sender: dict[bytes, dict[int, bytes]] = {}  # sender -> nonce -> txid
        self._evict_heap: list[
            tuple[Fraction, int, bytes]
        ] = []  # (rate, -seq, txid), stale allowed
        self._seq = 0
        self._estimate: tuple[tuple[int, int, int, int], int] | None = (
            None  # (pool version, room) -> rate
        )

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, txid: bytes) -> bool:
        return txid in self._entries

    def get(self, txid: bytes) -> Transaction | None:
        entry = self._entries.get(txid)
        return entry.tx if entry else None

    @_locked
    def pending(self, sender: bytes) -> list[Transaction]:
        """The sender's pending transactions in nonce order (gaps included)."""
        nonces = self._by_sender.get(sender, {})
        return [self._entries[nonces[n]].tx for n in sorted(nonces)]

    @_locked
    def transactions(self) -> list[Transaction]:
        return [e.tx for e in self._entries.values()]

    # --- adding ----------------------------------------------------------------------------------

    @_locked
    def add(self, tx: Transaction, state: LedgerState, chain_id: bytes) -> None:
        """Accept `tx` against the tip `state`, or raise TxRejected with the reason."""
        try:
            txid, size = tx.txid, tx.size
        except EncodeError as exc:
            raise TxRejected(f"malformed: {exc}") from None
        if txid in self._entries:
            raise TxRejected("already in the mempool")
        if size > self.max_bytes:
            raise TxRejected(f"{size} bytes exceeds the mempool's {self.max_bytes}")
        try:
            check_tx(tx, chain_id)
        except TxError as exc:
            raise TxRejected(exc.reason) from None
        if tx.fee < min_fee(size, self.min_fee_rate) and not tx.is_fraud_proof:
            raise TxRejected(
                f"fee {tx.fee} is below this node's minimum relay fee of "
                f"{min_fee(size, self.min_fee_rate)} "
                f"for {size} bytes ({self.min_fee_rate} per byte)"
            )
        account = state.account(tx.sender)
        if tx.nonce < account.nonce:
            raise TxRejected(f"nonce {tx.nonce} already used (account nonce {account.nonce})")
        if tx.nonce >= account.nonce + self.max_nonce_ahead:
            raise TxRejected(f"nonce {tx.nonce} too far ahead of the account nonce {account.nonce}")
        nonces = self._by_sender.get(tx.sender, {})
        replaced = self._entries[nonces[tx.nonce]] if tx.nonce in nonces else None
        rate = Fraction(tx.fee, size)
        if replaced is not None and not (tx.fee > replaced.tx.fee and rate > replaced.rate):
            raise TxRejected(f"nonce {tx.nonce} is already pending with an equal or higher fee")
        spends = sum(self._entries[t].tx.cost for n, t in nonces.items() if n != tx.nonce) + tx.cost
        if spends > account.balance:
            raise TxRejected(
                f"balance {account.balance} does not cover the sender's pending spends {spends}"
            )
        freed = replaced.size if replaced is not None else 0
        if self.total_bytes - freed + size > self.max_bytes and rate <= self._lowest_rate():
            raise TxRejected("mempool full: fee rate too low")
        if replaced is not None:
            self._remove(replaced.tx.txid)
        self._seq += 1
        self._insert(_Entry(tx, size, rate, self._seq))
        self._evict_to_budget()
        if txid not in self._entries:  # evicted with a cheaper earlier nonce of its sender
            raise TxRejected("mempool full: fee rate too low")

    @_locked
    def readd(self, txs: Iterable[Transaction], state: LedgerState, chain_id: bytes) -> int:
        """Offer transactions of disconnected blocks again after a reorg; return how many stayed."""
        kept = 0
        for tx in txs:
            try:
                self.add(tx, state, chain_id)
                kept += 1
            except TxRejected:
                pass
        return kept

    def _insert(self, entry: _Entry) -> None:
        txid = entry.tx.txid
        self._entries[txid] = entry
        self._by_sender.setdefault(entry.tx.sender, {})[entry.tx.nonce] = txid
        self.total_bytes += entry.size
        heapq.heappush(self._evict_heap, (entry.rate, -entry.seq, txid))

    def _lowest_rate(self) -> Fraction:
        while self._evict_heap:
            rate, neg_seq, txid = self._evict_heap[0]
            entry = self._entries.get(txid)
            if entry is not None and entry.seq == -neg_seq:
                return rate
            heapq.heappop(self._evict_heap)  # stale
        return Fraction(0)

    def _evict_to_budget(self) -> None:
        while self.total_bytes > self.max_bytes and self._evict_heap:
            rate, neg_seq, txid = heapq.heappop(self._evict_heap)
            entry = self._entries.get(txid)
            if entry is None or entry.seq != -neg_seq:
                continue  # stale heap item
            self._remove_from(entry.tx.sender, entry.tx.nonce)
        if len(self._evict_heap) > 2 * len(self._entries) + 64:
            self._evict_heap = [(e.rate, -e.seq, t) for t, e in self._entries.items()]
            heapq.heapify(self._evict_heap)

    # --- removing --------------------------------------------------------------------------------

    def _remove(self, txid: bytes) -> Transaction | None:
        entry = self._entries.pop(txid, None)
        if entry is None:
            return None
        self.total_bytes -= entry.size
        nonces = self._by_sender[entry.tx.sender]
        del nonces[entry.tx.nonce]
        if not nonces:
            del self._by_sender[entry.tx.sender]
        return entry.tx

    def _remove_from(self, sender: bytes, nonce: int) -> list[Transaction]:
        """Remove the sender's transactions with this nonce and every later one."""
        nonces = self._by_sender.get(sender, {})
        doomed = [nonces[n] for n in sorted(nonces) if n >= nonce]
        return [tx for tx in (self._remove(t) for t in doomed) if tx is not None]

    @_locked
    def remove(self, txids: Iterable[bytes]) -> list[Transaction]:
        """Remove these transactions if present (later nonces stay, as a gap, until revalidate)."""
        return [tx for tx in (self._remove(t) for t in txids) if tx is not None]

    @_locked
    def revalidate(self, state: LedgerState) -> list[Transaction]:
        """After the tip changed: drop what the new tip makes unminable; return what was dropped."""
        dropped: list[Transaction] = []
        for sender in list(self._by_sender):
            account = state.account(sender)
            nonces = self._by_sender[sender]
            dropped += self.remove([nonces[n] for n in sorted(nonces) if n < account.nonce])
            spends = 0
            for nonce in sorted(self._by_sender.get(sender, {})):
                spends += self._entries[self._by_sender[sender][nonce]].tx.cost
                if spends > account.balance:
                    dropped += self._remove_from(sender, nonce)
                    break
        return dropped

    # --- fees ------------------------------------------------------------------------------------

    @_locked
    def fee_estimate(self, room_bytes: int) -> int:
        """A fee rate (base units per byte, at least the minimum) that outbids the pool beyond the
        first `room_bytes` of its best-paying transactions: what gets into the next block now.
        Cached until the pool changes (the API serves it to anyone)."""
        key = (self._seq, len(self._entries), self.total_bytes, room_bytes)
        if self._estimate is not None and self._estimate[0] == key:
            return self._estimate[1]
        rate = self.min_fee_rate
        used = 0
        for entry in sorted(self._entries.values(), key=lambda e: (-e.rate, e.seq)):
            used += entry.size
            if used > room_bytes:
                # Strictly above the rate at the boundary: rounds up, plus one.
                rate = max(self.min_fee_rate, entry.rate.numerator // entry.rate.denominator + 1)
                break
        self._estimate = (key, rate)
        return rate

    # --- block templates -------------------------------------------------------------------------

    @_locked
    def select(
        self, state: LedgerState, max_bytes: int, max_txs: int = MAX_TXS
    ) -> list[Transaction]:
        """Transactions for a block on `state`: valid in this order, best fee rate first,
        nonce-ordered.

        Takes each sender's next executable nonce by fee rate; a sender whose next transaction
        does not fit or cannot be paid for contributes nothing more.
        """
        chosen: list[Transaction] = []
        balance: dict[bytes, int] = {}
        ready: list[tuple[tuple[int, Fraction], int, bytes]] = []
        for sender, nonces in self._by_sender.items():
            account = state.account(sender)
            if account.nonce in nonces:
                balance[sender] = account.balance
                entry = self._entries[nonces[account.nonce]]
                heapq.heappush(ready, (_priority(entry), entry.seq, entry.tx.txid))
        room = max_bytes
        while ready and len(chosen) < max_txs:
            _, _, txid = heapq.heappop(ready)
            entry = self._entries[txid]
            tx = entry.tx
            if entry.size > room or tx.cost > balance[tx.sender]:
                continue
            chosen.append(tx)
            room -= entry.size
            balance[tx.sender] -= tx.cost
            next_txid = self._by_sender[tx.sender].get(tx.nonce + 1)
            if next_txid is not None:
                following = self._entries[next_txid]
                heapq.heappush(ready, (_priority(following), following.seq, next_txid))
        return chosen
