"""Eyal and Sirer's selfish-mining strategy (Algorithm 1 of "Majority is not enough", 2014).

The attacker keeps a private branch and decides, from heights alone, what to publish when it
finds a block and when a public block reaches it. The state machine is pure: each call returns
the new state and the blocks to publish now (oldest first); the engine does the publishing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class SelfishState:
    head: int  # the block the attacker mines on
    head_height: int
    public_height: int  # height of the longest published chain it knows
    private: tuple[tuple[int, int], ...] = ()  # its unpublished (block, height), oldest first
    branch_len: int = 0  # its blocks since the fork with the public chain, published or not


def on_own_block(s: SelfishState, block: int, height: int) -> tuple[SelfishState, list[int]]:
    lead_before = s.head_height - s.public_height
    private = (*s.private, (block, height))
    s = replace(s, head=block, head_height=height, private=private, branch_len=s.branch_len + 1)
    if lead_before == 0 and s.branch_len == 2:
        # It had tied the public chain with one block and now leads by one: publish and win.
        return replace(s, private=(), branch_len=0, public_height=height), [b for b, _ in private]
    return s, []


def on_public_block(s: SelfishState, block: int, height: int) -> tuple[SelfishState, list[int]]:
    if height <= s.public_height:
        return s, []  # no longer than what it already knew: the race is unchanged
    lead_before = s.head_height - s.public_height
    s = replace(s, public_height=height)
    if lead_before <= 0:
        # Behind (or tied and the public side extended either branch): adopt the public chain.
        return SelfishState(block, height, height), []
    if lead_before == 1:
        # The honest block matches its lead: publish it for a tie and race.
        return replace(s, private=()), [b for b, _ in s.private]
    if lead_before == 2:
        # One block ahead after this one: publish everything; the public chain is now its branch.
        return replace(s, private=(), branch_len=0, public_height=s.head_height), [
            b for b, _ in s.private
        ]
    # Far ahead: reveal just enough to match the public height and keep the rest.
    shown = [b for b, h in s.private if h <= height]
    return replace(s, private=tuple((b, h) for b, h in s.private if h > height)), shown


def flush(s: SelfishState) -> tuple[SelfishState, list[int]]:
    """At the end of a run: publish what is still private, so the final chain reflects its lead."""
    return replace(s, private=(), public_height=max(s.public_height, s.head_height)), [
        b for b, _ in s.private
    ]
