"""Helpers for share tests: honest share claims found by running real units on a node's tip."""

from __future__ import annotations

from collections.abc import Callable

from consensus_kit import Node

from chain.block import ShareClaim
from chain.keys import PrivateKey
from consensus.market import task_for_spec
from consensus.miner import Miner, Template, make_template
from consensus.tickets import ticket, ticket_wins
from useful_work.hashing import tagged_hash
from useful_work.trace import TRACE_START, Leaf, next_prefix, state_hash, trace_root, unit_seed


def run_trace(
    node: Node,
    key: PrivateKey,
    attempt: int,
    shares_wanted: int,
    start: bytes | None = None,
    template: Template | None = None,
    fake: Callable[[int, list[int]], bytes | None] | None = None,
) -> tuple[ShareClaim, bytes, list[bytes]]:
    """Run units on the node's tip as miner `key` until `shares_wanted` prefix tickets fall under
    the share target: (the signed claim, its last unit's output state, every unit's input).
    `fake(u, shares found so far)`: a made-up output state for unit u (the unit is not run, its
    digest made up too), or None to run it."""
    template = template or make_template(node.chain)
    miner = Miner(node.chain, key, clock=node.clock)
    task = task_for_spec(template.task_spec)
    draft = miner.draft(template, attempt)
    share_target = node.params.share_target(template.target)
    leaves: list[Leaf] = []
    inputs: list[bytes] = []
    shares: list[int] = []
    state = template.start_state if start is None else start
    prefix = TRACE_START
    while len(shares) < shares_wanted:
        u = len(leaves)
        seed = unit_seed(template.parent_hash, miner.address, attempt, u, prefix, draft.commitment)
        made_up = fake(u, shares) if fake is not None else None
        if made_up is None:
            out, digest = task.run_unit(state, seed)
        else:
            out, digest = made_up, tagged_hash("made-up digest", seed)
        leaf = Leaf(state_hash(state), state_hash(out), digest, draft.commitment)
        leaves.append(leaf)
        inputs.append(state)
        if ticket_wins(
            ticket(template.parent_hash, miner.address, trace_root(leaves)), share_target
        ):
            shares.append(u)
        state, prefix = out, next_prefix(prefix, leaf)
    return miner.share_claim(template, leaves, inputs, attempt, shares), state, inputs


def key_of(n: int) -> PrivateKey:
    return PrivateKey.from_bytes(bytes([200 + n]) * 32)
