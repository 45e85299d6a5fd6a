"""A poisoning miner's block in modelled mode: its trace, and whether the spot checks refuse it.

The mechanism of consensus.attacks.PoisonMiner, drawn instead of run: unit `jump_at` of every
trace is a fabricated "jump" leaf (a state of the miner's choosing, a made-up digest), the units
after it run honestly from the poisoned state. A jump leaf cannot win (verifiers always re-run
the winner), so a trace won by the engine's unit count m > jump_at claims m + 1 leaves with the
jump among its n - 1 = m non-winning ones; a win within the first jump_at units is an honest
block. Verifiers re-execute the winner and the k units consensus.tickets.challenged_units picks
for a ticket drawn as 32 random bytes; the block is refused when the jump is among them, so the
pass rate (about 1 - k/(n - 1)) comes out of the real challenge rule and is never an input.

A refused trace is lost and the miner starts again, as PoisonMiner throws away a trace whose
checks would challenge the jump. What happens to a block that passes is the auditors' part
(consensus/sim/audits.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PoisonedBlock:
    claimed: int  # leaves in the trace: the units run, the jump leaf among them
    jump: int  # the jump leaf's index
    refused: bool  # the spot checks challenged the jump
    verify_units: int  # units a verifier re-executes (the winner and the challenged ones)


def poisoned_block(
    rng: np.random.Generator,
    real_units: int,
    jump_at: int,
    k: int,
    challenged: Callable[[bytes, int, int], list[int]],
) -> PoisonedBlock:
    """A block whose winning unit came after the jump (`real_units` > jump_at); `challenged` is
    consensus.tickets.challenged_units."""
    if real_units <= jump_at:
        raise ValueError(
            f"a trace of {real_units} units won before its jump leaf at {jump_at}: an honest block"
        )
    n = real_units + 1
    chosen = challenged(rng.bytes(32), n, k)
    return PoisonedBlock(n, jump_at, jump_at in chosen, 1 + len(chosen))


def spot_pass(jump_at: int, claimed: int, k: int) -> float:
    """The closed form of the pass rate: k distinct of the n - 1 non-winning leaves are
    challenged."""
    slots = claimed - 1
    if jump_at >= slots:
        return 1.0
    return 1.0 - min(k, slots) / slots
