"""Share claims: the rules a block's share claims keep, cheapest first, then re-execution.

A share claim (chain.block.ShareClaim) is another miner's trace on the block's parent that ends
at a share: a prefix whose ticket `H("ticket", P, M, root of the prefix)` is under the share
target (the block target times `shares_per_block`). A block's body carries the winner's proof
and share claims; the header commits to them (`shares_root`) and to the task's merged state.

Segments: a claim with shares s_0 < s_1 < ... < s_{m-1} (= n - 1) has m segments, segment i
being units s_{i-1} + 1 .. s_i (s_{-1} = -1). A verifier re-executes, per segment, its last unit
s_i and `share_spot_checks` units drawn (consensus.tickets.challenged_units) from that share's
own ticket, the ticket after s_i, among the segment's other units (`required_share_openings`).
So a longer version of a claim (the same leaves up to its old last unit, its shares a prefix of
the new ones) needs the old version's openings plus its new segments' only: a node that checked
the old version re-runs 1 + share_spot_checks units a new share (consensus.share_pool).

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
each share's last unit re-executes bit for bit, then each segment's spot checks; the merge of
every output state must hash to the header's `task_state`. Any failure while re-executing or
merging is invalid work.
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


def share_tickets(claim: ShareClaim) -> dict[int, bytes]:
    """The ticket after each listed share: `H("ticket", P, M, root of units 0 .. s)` per share s,
    from the claim's prefix roots (hashed once per claim, `ShareClaim.share_roots`)."""
    miner = share_miner(claim)
    roots = claim.share_roots
    return {u: ticket(claim.parent_hash, miner, roots[u]) for u in claim.shares}


def segment_openings(
    shares: Sequence[int], tickets: dict[int, bytes], spot_checks: int
) -> list[int]:
    """Per segment (the units after the previous share up to share s): s itself and
    `spot_checks` of the segment's other units drawn from s's ticket; sorted, distinct."""
    needed: set[int] = set()
    start = 0
    for s in shares:
        needed.add(s)
        # challenged_units draws from the first `count - 1` of `count` units: the segment's
        # units other than its last, as offsets from its start.
        needed.update(start + c for c in challenged_units(tickets[s], s - start + 1, spot_checks))
        start = s + 1
    return sorted(needed)


def required_share_openings(params: ConsensusParams, claim: ShareClaim) -> list[int]:
    """Units a verifier re-executes: each segment's last unit (a share's) and
    `share_spot_checks` of its other units drawn from that share's ticket, sorted."""
    if not claim.shares or any(not 0 <= u < len(claim.leaves) for u in claim.shares):
        return sorted(set(claim.shares))  # a malformed share list: rule 4 refuses the claim
    return segment_openings(claim.shares, share_tickets(claim), params.share_spot_checks)


def is_longer_version(old: ShareClaim, new: ShareClaim) -> bool:
    """Whether `new` extends `old`: the same trace (parent, task, key, attempt, the same leaves up
    to old's last unit) with old's shares a prefix of its own and more of them. Then new's
    segments start with old's (same units, same share tickets), so its required openings are
    old's plus its new segments', and the units old re-ran need not run again."""
    n, m = len(old.leaves), len(old.shares)
    return (
        (new.parent_hash, new.task_id, new.miner_key, new.attempt)
        == (old.parent_hash, old.task_id, old.miner_key, old.attempt)
        and len(new.shares) > m
        and new.shares[:m] == old.shares
        and new.leaves[:n] == old.leaves
    )


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
    tickets = share_tickets(claim)  # O(n log n) hashes whatever the shares, once a claim
    for u in listed:
        if not ticket_wins(tickets[u], share_target):
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
    """Each claim opens exactly the units a verifier needs (`required_share_openings`: per
    segment its last unit and its spot checks); else the body is not the header's (the claim ids
    fix the leaves and shares, which fix the openings): raises ShareRuleError."""
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
    """Re-execute every share's last unit (each segment's last), then the segments' spot checks
    (the claim's other openings); return the last unit's output. A failing share unit is
    `bad-share-unit`, a failing spot check `bad-share-spot-check`.
    `skip`: units re-run already in a claim with the very same leaves up to them (a shorter
    version of the same trace: same seeds, same leaves), never the last unit; their openings
    must still hash to their leaves (`body-mismatch` otherwise, as in a block)."""
    miner = share_miner(claim)
    openings = {o.unit_index: o.state for o in claim.openings}
    prefixes = prefix_commitments(claim.leaves[:-1])
    last = len(claim.leaves) - 1
    output = b""
    shares = set(claim.shares)
    for u in [*claim.shares, *(u for u in sorted(openings) if u not in shares)]:
        leaf = claim.leaves[u]
        if u in skip and u != last:
            if state_hash(openings[u]) != leaf.input_hash:
                raise ShareRuleError(
                    "body-mismatch",
                    f"share claim {index}: opened state of unit {u} does not match its leaf",
                )
            continue
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
