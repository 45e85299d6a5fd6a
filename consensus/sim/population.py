"""Who the simulated nodes are: honest miners (by group), relays, and at most one adversary node.

Node indexes: honest miners first (groups in file order), then relays, then the adversary (the
last index) when there is one. Mining power is a unit rate in units per second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from consensus.sim.config import Experiment


@dataclass(frozen=True)
class Population:
    n: int  # all nodes, the adversary included
    honest_n: int
    rate: np.ndarray  # units per second; 0 for relays and a flooder
    group: tuple[str, ...]  # per node: a miner group name, "relay", or the adversary kind
    adversary: int | None  # the adversary's node index

    @property
    def honest(self) -> np.ndarray:
        mask = np.ones(self.n, dtype=bool)
        if self.adversary is not None:
            mask[self.adversary] = False
        return mask

    @property
    def miners(self) -> np.ndarray:
        return np.flatnonzero(self.rate > 0)

    @property
    def honest_miners(self) -> np.ndarray:
        return np.flatnonzero((self.rate > 0) & self.honest)

    def groups(self) -> list[str]:
        seen: list[str] = []
        for g in self.group:
            if g not in seen:
                seen.append(g)
        return seen


def build_population(exp: Experiment) -> Population:
    rates: list[float] = []
    group: list[str] = []
    for g in exp.miners:
        rates += [g.unit_rate] * g.count
        group += [g.name] * g.count
    relays = exp.network.nodes - len(rates)
    rates += [0.0] * relays
    group += ["relay"] * relays
    adversary = None
    if exp.adversary.kind != "none":
        adversary = len(rates)
        rates.append(exp.adversary_rate)
        group.append(exp.adversary.kind)
    return Population(
        len(rates), exp.network.nodes, np.array(rates, dtype=float), tuple(group), adversary
    )


def gamma_group(
    pop: Population, gamma: float, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Honest miners (a seeded random choice) holding as close to `gamma` of honest power as whole
    miners allow.

    Returns their indexes and the share of honest power they really hold.
    """
    miners = pop.honest_miners
    order = miners[rng.permutation(len(miners))]
    total = float(pop.rate[miners].sum())
    chosen: list[int] = []
    held = 0.0
    for m in order.tolist():
        r = float(pop.rate[m])
        if abs(held + r - gamma * total) < abs(held - gamma * total):
            chosen.append(m)
            held += r
    return np.array(sorted(chosen), dtype=int), (held / total if total else 0.0)
