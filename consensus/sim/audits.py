"""Auditors as a population in modelled mode: which best-chain blocks get replayed in full, when,
and which poisoned ones are proven within the fraud window.

The mechanism of consensus.audit.Auditor, drawn over the run's best chain after mining (a fraud
proof forfeits a reward and rewinds a task; it changes no block's work, so the chain itself is
the same with or without auditors). `auditors.share` of the honest nodes audit; each picks every
best-chain block with probability `auditors.blocks_share` (not knowing which are poisoned) and
replays its picks oldest first, one at a time, at `audit_speed` times the mean honest miner's
unit rate, from the moment the block is found (propagation, tens of milliseconds, is left out):

- block h is in the fraud window until the best-chain block at height h + reward_maturity - 1
  is found (the last that may carry a proof against it); an auditor that reaches it later skips
  it, as Auditor.next_block does;
- an honest block costs its whole trace; a poisoned one costs the units up to its jump leaf, where
  the replay stops and the proof is built;
- the proof goes in the first best-chain block found after the replay ends; it counts when that
  block's height is below h + reward_maturity. The block's reward is then forfeited.

Which nodes audit and what they pick come from their own generator, drawn for every honest node
whatever the share, so a higher share adds auditors to the same ones with the same picks (common
random numbers across a sweep of the share).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from consensus.sim.config import AuditorsConfig


@dataclass
class AuditRun:
    auditors: int
    unit_rate: float  # units per second, each auditor
    proven: dict[int, int] = field(
        default_factory=dict
    )  # chain index of a poisoned block -> chain index of the block carrying its proof
    replayed: np.ndarray = field(
        default_factory=lambda: np.zeros(0, dtype=bool)
    )  # per chain index: replayed within its window by some auditor
    units: float = 0.0  # units replayed, all auditors
    skipped: int = 0  # picks whose window closed before the auditor reached them
    late: int = 0  # replays that ended after the window closed


def audit_chain(
    cfg: AuditorsConfig,
    seed: int,
    honest_nodes: np.ndarray,
    found: np.ndarray,
    units: np.ndarray,
    jump: np.ndarray,
    maturity: int,
    unit_rate: float,
) -> AuditRun:
    """`found`, `units` and `jump` (-1: an honest block) are per best-chain block, genesis left
    out, index i at height i + 1."""
    rng = np.random.default_rng([seed, 0xA0D1])
    order = rng.permutation(len(honest_nodes))
    picks = rng.random((len(honest_nodes), len(found))) < cfg.blocks_share
    count = int(round(cfg.share * len(honest_nodes)))
    rate = cfg.audit_speed * unit_rate
    run = AuditRun(count, rate, replayed=np.zeros(len(found), dtype=bool))
    n = len(found)
    last = maturity - 1  # chain index offset of the last block that may carry a proof
    for a in order[:count]:
        free = 0.0
        for i in np.flatnonzero(picks[a]).tolist():
            deadline = float(found[i + last]) if i + last < n else np.inf
            start = max(free, float(found[i]))
            if start >= deadline:
                run.skipped += 1
                continue
            cost = float(jump[i] + 1 if jump[i] >= 0 else units[i])
            finish = start + cost / rate
            free = finish
            run.units += cost
            if finish >= deadline:
                run.late += 1
                continue
            run.replayed[i] = True
            if jump[i] >= 0:
                carrier = int(np.searchsorted(found, finish, side="right"))
                if carrier <= i + last and carrier < n and carrier < run.proven.get(i, n):
                    run.proven[i] = carrier
    return run
