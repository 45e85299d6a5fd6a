"""A fabricating miner's block in modelled mode: how many units it claims, and whether verifiers
catch it.

The mechanism of consensus.miner.Miner(fabricate=f), drawn instead of run: each unit slot is
faked with probability f (a faked slot cannot win: verifiers always re-run the winner), so the
block is found after m real units with the fakes in between; verifiers re-execute the winner,
then k distinct non-winning units in index order, and reject the block at the first faked one.
The detection rate is what comes out, never an input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FabricatedBlock:
    claimed: int  # units in the trace, faked ones included
    real: int  # units really run (the winner among them)
    faked: int
    useful: int  # units before the first faked one: the model is off the honest path after it
    caught: bool
    verify_units: int  # units a verifier re-executes before it accepts or rejects


def fabricated_block(
    rng: np.random.Generator, real_units: int, f: float, k: int
) -> FabricatedBlock:
    m = max(1, real_units)
    faked = int(rng.negative_binomial(m, 1.0 - f)) if f > 0 else 0
    claimed = m + faked
    slots = claimed - 1  # non-winning units
    challenged = min(k, slots)
    if faked == 0:
        return FabricatedBlock(claimed, m, 0, claimed, False, 1 + challenged)
    fake_positions = (
        rng.choice(slots, size=faked, replace=False) if faked < slots else np.arange(slots)
    )
    useful = int(fake_positions.min())
    hits = int(rng.hypergeometric(faked, slots - faked, challenged)) if challenged else 0
    if hits == 0:
        return FabricatedBlock(claimed, m, faked, useful, False, 1 + challenged)
    # Which of the challenged (checked in index order) are faked is a uniform choice of `hits` of
    # them.
    first = int(rng.choice(challenged, size=hits, replace=False).min())
    return FabricatedBlock(claimed, m, faked, useful, True, 2 + first)
