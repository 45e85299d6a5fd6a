"""Tickets and spot-check challenges.

The ticket hashes only what a miner cannot vary for free: the parent, the miner's address and
the trace root. The challenged units come from a PRNG seeded with the ticket, never the header
hash, which the miner could grind through its transaction set or timestamp.
"""

from __future__ import annotations

from chain.types import Address, BlockHash
from useful_work.hashing import tagged_hash
from useful_work.prng import Prng


def ticket(parent_hash: BlockHash, miner: Address, trace_root: bytes) -> bytes:
    return tagged_hash("ticket", parent_hash, miner, trace_root)


def ticket_value(t: bytes) -> int:
    return int.from_bytes(t, "big")


def ticket_wins(t: bytes, target: int) -> bool:
    return ticket_value(t) < target


def challenged_units(t: bytes, unit_count: int, k: int) -> list[int]:
    """The k distinct non-winning unit indexes (all of them when there are at most k) to re-execute.

    The winning unit (the last one) is always re-executed besides these.
    """
    candidates = unit_count - 1
    if candidates <= k:
        return list(range(candidates))
    prng = Prng(t)
    chosen: list[int] = []
    seen: set[int] = set()
    offset = 0
    while len(chosen) < k:
        draws = prng.below("challenge", 2 * k, candidates, offset=offset).tolist()
        offset += 2 * k
        for d in draws:
            if d not in seen:
                seen.add(d)
                chosen.append(d)
                if len(chosen) == k:
                    break
    return sorted(chosen)
