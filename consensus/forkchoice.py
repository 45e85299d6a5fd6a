"""The fork-choice rule, in one place: the node's chain-state manager and the simulator both use it.

The best chain is the valid one with the most cumulative work; between equal work, the one seen
first stays (a node never switches on a tie, which is what makes the tie-breaking share gamma of
selfish mining a property of the network, not of the rule).
"""

from __future__ import annotations

from consensus.targets import block_work


def chain_work_after(parent_work: int, target: int) -> int:
    """Cumulative work of a block: its parent's plus what its target makes it cost."""
    return parent_work + block_work(target)


def prefer(candidate_work: int, current_work: int) -> bool:
    """True when a node on `current_work` must move to a valid chain with `candidate_work`."""
    return candidate_work > current_work
