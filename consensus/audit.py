"""The auditor: replays whole traces of recent best-chain blocks and builds fraud proofs.

Spot checks re-run k units of a block; an auditor re-runs all of them, oldest unaudited block
of the fraud window first (a proof must be mined before the guilty reward matures). It starts
each block from the task state its leaf 0 names (the node stores every block's output state),
keeps only the state of the unit it is at, and stops at the first unit that does not reproduce
its leaf: that unit's input state is the fraud proof. It runs within a CPU share: after each
unit of t seconds it sleeps t * (1 - share) / share.

Thread-safe reads only: it takes the chain lock briefly to pick a block and reads immutable
ledger states and stored blocks; submitting the proof is the caller's (the node relays it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from chain.address import address_of
from chain.block import Block
from chain.keys import PrivateKey
from chain.tx import Transaction, make_fraud_proof
from consensus.chainstate import ChainState
from consensus.fraud import block_start_state, claim_count, find_fraud

AUDIT_OK = "ok"  # every unit reproduced
AUDIT_FRAUD = "fraud"  # a unit did not: a proof was built


@dataclass
class AuditStats:
    units: int = 0  # units re-run
    blocks: int = 0  # blocks fully audited (every unit reproduced)
    proofs_found: int = 0
    seconds: float = 0.0  # time spent re-running units (throttling excluded)


@dataclass(frozen=True)
class AuditOutcome:
    block_hash: bytes
    height: int
    verdict: str  # AUDIT_OK or AUDIT_FRAUD
    proof: Transaction | None = None
    unit: int | None = None


class Auditor:
    def __init__(
        self, chain: ChainState, key: PrivateKey, *, share: float = 0.5, device: str = "cpu"
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"audit share must be in (0, 1], got {share}")
        self.chain = chain
        self.key = key
        self.address = address_of(key.public_key())
        self.share = share
        self.device = device
        self.stats = AuditStats()
        self.verdicts: dict[bytes, str] = {}  # block hash -> AUDIT_OK / AUDIT_FRAUD
        self._lock = threading.Lock()

    def window_low(self) -> int:
        """The lowest height a fraud proof in the next block may still name."""
        return max(1, self.chain.tip.height + 1 - self.chain.params.reward_maturity + 1)

    def next_block(self) -> Block | None:
        """The oldest best-chain block of the fraud window not audited yet."""
        with self.chain.lock:
            tip = self.chain.tip.height
            hashes = [self.chain.hash_at(h) for h in range(self.window_low(), tip + 1)]
        for h in hashes:
            if h is not None and h not in self.verdicts:
                return self.chain.get_block(h)
        return None

    def lag(self) -> int:
        """Blocks of the fraud window not audited yet (0: caught up)."""
        with self.chain.lock:
            hashes = [
                self.chain.hash_at(h) for h in range(self.window_low(), self.chain.tip.height + 1)
            ]
        return sum(1 for h in hashes if h is not None and h not in self.verdicts)

    def audited(self, block_hash: bytes) -> str | None:
        return self.verdicts.get(block_hash)

    def audit(
        self, block: Block, should_stop: Callable[[], bool] = lambda: False
    ) -> AuditOutcome | None:
        """Replay every unit of `block` (the winner's, then each share claim's); None when stopped,
        the block left the best chain, or its
        start state is not held here (then it is not marked)."""
        state = self.chain.state
        claim = block.header.work[0]
        record = state.tasks.get(claim.task_id)
        if record is None:
            return None
        start = block_start_state(block, record.spec, self.chain.store.get_blob)
        if start is None:
            return None

        last = [time.perf_counter()]

        def on_unit(u: int) -> bool:
            took = time.perf_counter() - last[0]
            self.stats.units += 1
            self.stats.seconds += took
            if self.share < 1:
                time.sleep(took * (1 - self.share) / self.share)
            last[0] = time.perf_counter()
            return not should_stop() and self.chain.on_best_chain(block.hash)

        found, guilty = None, 0
        for c in range(claim_count(block)):  # the winner's trace, then every share claim's
            guilty = c
            found = find_fraud(
                block, start, self.device, on_unit=on_unit, spec=record.spec, claim_index=c
            )
            if found is not None or should_stop() or not self.chain.on_best_chain(block.hash):
                break
        if found is None:
            if should_stop() or not self.chain.on_best_chain(block.hash):
                return None
            self.verdicts[block.hash] = AUDIT_OK
            self.stats.blocks += 1
            return AuditOutcome(block.hash, block.header.height, AUDIT_OK)
        self.stats.units += 1
        unit, input_state = found
        with self.chain.lock:
            nonce = self.chain.state.account(self.address).nonce
            if self.chain.mempool is not None:
                nonce += len(self.chain.mempool.pending(self.address))
        proof = make_fraud_proof(
            self.key, self.chain.chain_id, nonce, 0, block.hash, guilty, unit, input_state
        )
        self.verdicts[block.hash] = AUDIT_FRAUD
        self.stats.proofs_found += 1
        return AuditOutcome(block.hash, block.header.height, AUDIT_FRAUD, proof, unit)

    def step(self, should_stop: Callable[[], bool] = lambda: False) -> AuditOutcome | None:
        """Audit the next block, if any."""
        block = self.next_block()
        return self.audit(block, should_stop) if block is not None else None
