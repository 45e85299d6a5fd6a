"""Share claims: the rules a block's share claims keep, cheapest first, then re-execution.

A share claim (chain.block.ShareClaim) is another miner's trace on the block's parent that ends
at a share: a prefix whose ticket `H("ticket", P, M, root of the prefix)` is under the share
target (the block target times `shares_per_block`). A block's body carries the winner's proof
and share claims; the header commits to them (`shares_root`) and to the task's merged state.

Cheap rules (no state, no unit), in the order a reader checks them:
1. shares are on (`shares_per_block` > 0); at most `max_share_claims` claims of at most
   `max_share_bytes` in all;
2. each claim is on the block's parent and its key signed it (the miner is the key's address:
   the seeds and tickets commit to it, so a claim copied under another key has other tickets
   and other seeds);
3. one claim per (miner, attempt), none for the winner's own (miner, attempt);
4. 1 .. `max_units_per_block` units; the listed shares increase, end at the last unit, and each
   prefix ticket is under the share target; openings no larger than `max_opening_bytes`.
Work (the parent's state): the claim is for the active task and leaf 0 starts from its state;
each share's last unit re-executes bit for bit, then the claim's k spot checks, drawn by a PRNG
keyed by its last ticket; the merge of every output state must hash to the header's
`task_state`. Any failure while re-executing or merging is invalid work.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from chain.address import address_of
from chain.block import Block, ShareClaim
from chain.state import TaskRecord, credited_units
from chain.types import Address
from consensus.params import ConsensusParams
from consensus.tickets import challenged_units, ticket, ticket_wins
from useful_work.merge import MergeError, merge_states
from useful_work.tasks import Task
from useful_work.trace import (
    prefix_commitments,
    prefix_trace_roots,
    state_hash,
    trace_root,
    unit_seed,
)
from useful_work.verify import verify_unit


class ShareRuleError(Exception):
    """A share claim that breaks a rule; `reason` is the validation Reason's value."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def share_miner(claim: ShareClaim) -> Address:
    """The miner M of a claim's seeds and tickets: the address of the key that signed it."""
    return address_of(claim.miner_key)


def prefix_ticket(claim: ShareClaim, unit: int) -> bytes:
    """The ticket of the claim's trace after `unit` (the prefix of units 0 .. unit)."""
    return ticket(claim.parent_hash, share_miner(claim), trace_root(claim.leaves[: unit + 1]))


def required_share_openings(params: ConsensusParams, claim: ShareClaim) -> list[int]:
    """Units a verifier re-executes: every share's last unit and k spot checks drawn from the
    claim's last ticket (the ticket of the whole claim), sorted."""
    last = ticket(claim.parent_hash, share_miner(claim), claim.trace_root)
    return sorted({*challenged_units(last, len(claim.leaves), params.spot_checks), *claim.shares})


def check_share_body(params: ConsensusParams, block: Block, block_target: int) -> None:
    """Cheap rules 1-4 on a body that matches its header; raises ShareRuleError."""
    claims = block.shares
    if not claims:
        return
    if not params.shares_per_block:
        raise ShareRuleError("shares-off", f"{len(claims)} share claims on a chain without shares")
    if len(claims) > params.max_share_claims:
        raise ShareRuleError(
            "too-many-shares", f"{len(claims)} share claims, limit {params.max_share_claims}"
        )
    size = sum(len(c.to_bytes()) for c in claims)
    if size > params.max_share_bytes:
        raise ShareRuleError(
            "shares-too-large", f"{size} bytes of share claims, limit {params.max_share_bytes}"
        )
    header = block.header
    seen = {(header.miner, header.work[0].attempt)} if header.work else set()
    share_target = params.share_target(block_target)
    for i, claim in enumerate(claims):
        if claim.parent_hash != header.prev_hash:
            raise ShareRuleError("share-wrong-parent", f"share claim {i} is on another parent")
        check_claim(params, claim, i, share_target)
        key = (share_miner(claim), claim.attempt)
        if key in seen:
            raise ShareRuleError(
                "duplicate-share",
                f"share claim {i}: a second claim of miner "
                f"{key[0].hex()[:16]} attempt {claim.attempt} in this block",
            )
        seen.add(key)


def check_claim(params: ConsensusParams, claim: ShareClaim, i: int, share_target: int) -> None:
    """The cheap rules of one claim on its own: signature, unit count, shares, opening sizes."""
    if not claim.signature_ok():
        raise ShareRuleError("bad-share-signature", f"share claim {i}: not signed by its key")
    n = len(claim.leaves)
    if not 1 <= n <= params.max_units_per_block:
        raise ShareRuleError(
            "bad-share", f"share claim {i}: {n} units, allowed 1 .. {params.max_units_per_block}"
        )
    listed = list(claim.shares)
    if not listed or listed[-1] != n - 1 or any(a >= b for a, b in itertools.pairwise(listed)):
        raise ShareRuleError(
            "bad-share",
            f"share claim {i}: shares {listed[:8]} must increase and end at unit {n - 1}",
        )
    roots = prefix_trace_roots(claim.leaves, listed)  # O(n log n) hashes whatever the shares
    miner = share_miner(claim)
    for u in listed:
        if not ticket_wins(ticket(claim.parent_hash, miner, roots[u]), share_target):
            raise ShareRuleError(
                "share-above-target", f"share claim {i}: the ticket after unit {u} is not a share"
            )
    for o in claim.openings:
        if len(o.state) > params.max_opening_bytes:
            raise ShareRuleError(
                "bad-openings",
                f"share claim {i}: opening of unit {o.unit_index} is {len(o.state)} bytes",
            )


def check_share_openings(params: ConsensusParams, block: Block) -> None:
    """Each claim opens exactly the units a verifier needs; else the body is not the header's
    (the claim ids fix the leaves, the leaves fix the openings): raises ShareRuleError."""
    for i, claim in enumerate(block.shares):
        opened = [o.unit_index for o in claim.openings]
        needed = required_share_openings(params, claim)
        if opened != needed:
            raise ShareRuleError(
                "body-mismatch",
                f"share claim {i}: opened units {opened}, a verifier needs {needed}",
            )


def rerun_share_claim(
    task: Task,
    claim: ShareClaim,
    index: int,
    device: str = "cpu",
    skip: frozenset[int] = frozenset(),
) -> bytes:
    """Re-execute every share's last unit, then the spot checks; return the last unit's output.
    `skip`: units re-run already in a claim with the very same leaves up to them (a shorter
    claim of the same trace: same seeds, same leaves), never the last unit."""
    miner = share_miner(claim)
    openings = {o.unit_index: o.state for o in claim.openings}
    prefixes = prefix_commitments(claim.leaves[:-1])
    last = len(claim.leaves) - 1
    output = b""
    shares = set(claim.shares)
    for u in [*claim.shares, *(u for u in sorted(openings) if u not in shares)]:
        if u in skip and u != last:
            continue
        leaf = claim.leaves[u]
        seed = unit_seed(claim.parent_hash, miner, claim.attempt, u, prefixes[u], leaf.commitment)
        check = verify_unit(task, openings[u], seed, leaf, device)
        if not check.ok or check.output_state is None:
            reason = "bad-share-unit" if u in shares else "bad-share-spot-check"
            raise ShareRuleError(reason, f"share claim {index} unit {u}: {check.reason}")
        if u == last:
            output = check.output_state
    return output


VerifiedClaims = Callable[[bytes], bytes | None]  # claim id -> its verified output state, or None


def check_share_work(
    task: Task,
    task_record: TaskRecord,
    start_hash: bytes,
    block: Block,
    device: str = "cpu",
    verified: VerifiedClaims | None = None,
) -> list[bytes]:
    """Work rules of every claim on the parent's state; the claims' output states in order.
    A claim `verified` knows (the same claim id: same parent, leaves and openings, checked by
    these same rules before) is not re-run."""
    outputs = []
    for i, claim in enumerate(block.shares):
        if claim.task_id != task_record.task_id:
            raise ShareRuleError("wrong-task", f"share claim {i} works on {claim.task_id.hex()}")
        if claim.leaves[0].input_hash != start_hash:
            raise ShareRuleError(
                "bad-share-start",
                f"share claim {i}: leaf 0 does not start from the task's state at the parent",
            )
    for i, claim in enumerate(block.shares):
        known = verified(claim.claim_id) if verified is not None else None
        outputs.append(known if known is not None else rerun_share_claim(task, claim, i, device))
    return outputs


def merged_state(
    task: Task,
    task_record: TaskRecord,
    winner: bytes,
    winner_units: int,
    block: Block,
    outputs: Sequence[bytes],
) -> bytes:
    """The task's next state: the winner's output merged with every claim's, weighted by
    credited units (chain.state.credited_units); raises ShareRuleError when they cannot merge."""
    if not block.shares:
        return winner
    counts = [winner_units, *(len(c.leaves) for c in block.shares)]
    weights = credited_units(task_record, counts)
    try:
        return merge_states(task, [winner, *outputs], weights, counts)
    except MergeError as exc:
        raise ShareRuleError("bad-task-state", str(exc)) from None


def check_task_state(merged: bytes, expected_hash: bytes) -> None:
    if state_hash(merged) != expected_hash:
        raise ShareRuleError(
            "bad-task-state", "the header's task_state is not the merge of the block's traces"
        )
