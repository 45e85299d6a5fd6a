"""The share pool: verified share claims on the current parent, for the block template.

A claim enters only after the checks a block would make of it (cheap rules, then its shares'
last units and its segments' spot checks re-executed on the parent's task state), so a block
template never carries a claim that would make the block invalid. At most one live claim per
(miner, attempt, parent): a longer claim (more shares) replaces a shorter one, an equal or
shorter one is refused. A longer version of the held claim's trace (consensus.shares
`is_longer_version`) re-runs only its new segments, 1 + `share_spot_checks` units a new share:
the held version's openings are a prefix of its own and were re-run already (same leaves, same
seeds); `units_checked` counts the units actually re-run. Claims on other parents are dropped
when the tip moves. The pool keeps each claim's verified output state, so assembling a block
merges without running a unit again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from chain.block import ShareClaim
from chain.state import LedgerState
from consensus.market import active_task, task_for_spec, task_start_hash
from consensus.params import ConsensusParams
from consensus.shares import (
    ShareRuleError,
    check_claim,
    is_longer_version,
    required_share_openings,
    rerun_share_claim,
    share_miner,
)
from useful_work.tasks import Task

MAX_VERIFIED = 1024  # verified claim outputs remembered (claims of the last few parents)


@dataclass(frozen=True)
class PooledClaim:
    claim: ShareClaim
    output: bytes  # the claim's last unit's output state, as re-executed
    size: int  # encoded bytes
    checked: frozenset[int] = frozenset()  # its required openings, re-run here (now or before)


class SharePool:
    """Verified claims on one parent at a time; thread-safe."""

    def __init__(self, params: ConsensusParams, device: str = "cpu") -> None:
        self.params = params
        self.device = device
        self._lock = threading.Lock()
        self._parent = b""
        self._claims: dict[tuple[bytes, int], PooledClaim] = {}
        self.version = 0  # changes whenever the held claims do (the miner follows it)
        self.units_checked = 0  # units re-run to verify claims
        self.cpu_seconds = 0.0  # CPU time of the threads that ran `add` (time.thread_time)
        self._verified: OrderedDict[bytes, bytes] = OrderedDict()  # claim id -> output state

    def reset(self, parent_hash: bytes) -> None:
        """Forget claims on other parents."""
        with self._lock:
            if parent_hash != self._parent:
                self._parent, self._claims = parent_hash, {}
                self.version += 1

    def has_better(self, claim: ShareClaim) -> bool:
        """Whether the pool holds a claim of this (miner, attempt, parent) at least as long."""
        with self._lock:
            held = self._claims.get((share_miner(claim), claim.attempt))
            return (
                claim.parent_hash == self._parent
                and held is not None
                and len(held.claim.shares) >= len(claim.shares)
            )

    def add(self, claim: ShareClaim, parent_hash: bytes, target: int, state: LedgerState) -> str:
        """Verify `claim` against the parent (its hash, block target and ledger state) and keep it;
        return "added" or "replaced", or raise ShareRuleError naming the rule it breaks."""
        started = time.thread_time()
        try:
            return self._add(claim, parent_hash, target, state)
        finally:
            took = time.thread_time() - started
            with self._lock:
                self.cpu_seconds += took

    def _add(self, claim: ShareClaim, parent_hash: bytes, target: int, state: LedgerState) -> str:
        if claim.parent_hash != parent_hash:
            raise ShareRuleError("share-wrong-parent", "the claim is not on the current tip")
        if not self.params.shares_per_block:
            raise ShareRuleError("shares-off", "this chain has no shares")
        self.reset(parent_hash)
        if self.has_better(claim):
            raise ShareRuleError(
                "duplicate-share", "a claim of this miner and attempt with as many shares is held"
            )
        check_claim(self.params, claim, 0, self.params.share_target(target))
        opened, needed = (
            [o.unit_index for o in claim.openings],
            required_share_openings(self.params, claim),
        )
        if opened != needed:
            raise ShareRuleError(
                "body-mismatch", f"opened units {opened}, a verifier needs {needed}"
            )
        record = active_task(state)
        if claim.task_id != record.task_id:
            raise ShareRuleError("wrong-task", f"the claim works on {claim.task_id.hex()}")
        if claim.leaves[0].input_hash != task_start_hash(record):
            raise ShareRuleError(
                "bad-share-start", "leaf 0 does not start from the task's state at the parent"
            )
        task: Task = task_for_spec(record.spec)
        with self._lock:
            held = self._claims.get((share_miner(claim), claim.attempt))
        skip: frozenset[int] = frozenset()
        if held is not None and is_longer_version(held.claim, claim):
            skip = held.checked  # its earlier segments' openings, re-run already
        output = rerun_share_claim(task, claim, 0, self.device, skip)
        checked = frozenset(needed)
        ran = checked - (skip - {len(claim.leaves) - 1})  # as rerun_share_claim: never the last
        pooled = PooledClaim(claim, output, len(claim.to_bytes()), checked)
        with self._lock:
            self.units_checked += len(ran)
            if self._parent != parent_hash:
                raise ShareRuleError(
                    "share-wrong-parent", "the tip moved while the claim was checked"
                )
            key = (share_miner(claim), claim.attempt)
            held = self._claims.get(key)
            if held is not None and len(held.claim.shares) >= len(claim.shares):
                raise ShareRuleError("duplicate-share", "a claim as long arrived meanwhile")
            self._claims[key] = pooled
            self._remember(claim.claim_id, output)
            self.version += 1
            return "replaced" if held is not None else "added"

    def _remember(self, claim_id: bytes, output: bytes) -> None:
        self._verified[claim_id] = output
        while len(self._verified) > MAX_VERIFIED:
            self._verified.popitem(last=False)

    def verified_output(self, claim_id: bytes) -> bytes | None:
        """The output of a claim this pool verified (or made) lately, for block validation."""
        with self._lock:
            return self._verified.get(claim_id)

    def keep_own(self, claim: ShareClaim, output: bytes) -> None:
        """A claim this node's miner made itself (its units ran here): kept without re-running."""
        self.reset(claim.parent_hash)
        with self._lock:
            if claim.parent_hash == self._parent:
                key = (share_miner(claim), claim.attempt)
                self._claims[key] = PooledClaim(claim, output, len(claim.to_bytes()))
                self._remember(claim.claim_id, output)
                self.version += 1

    def for_block(self, parent_hash: bytes, exclude: tuple[bytes, int] | None) -> list[PooledClaim]:
        """Claims to include in a block on `parent_hash`, most shares first, within the
        parameters' count and byte bounds, leaving out the winner's own (miner, attempt)."""
        with self._lock:
            if parent_hash != self._parent:
                return []
            ordered = sorted(
                (p for k, p in self._claims.items() if k != exclude),
                key=lambda p: (-len(p.claim.shares), p.claim.claim_id),
            )
        chosen: list[PooledClaim] = []
        size = 0
        for p in ordered:
            if len(chosen) >= self.params.max_share_claims:
                break
            if size + p.size > self.params.max_share_bytes:
                continue
            chosen.append(p)
            size += p.size
        return chosen

    def __len__(self) -> int:
        with self._lock:
            return len(self._claims)
