"""What one simulated run leaves behind, the same for both work modes; metrics are computed from
it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from consensus.sim.population import Population


@dataclass
class BlockLog:
    """Every block found, genesis at index 0, as parallel columns."""

    parent: list[int] = field(default_factory=lambda: [-1])
    height: list[int] = field(default_factory=lambda: [0])
    miner: list[int] = field(default_factory=lambda: [-1])
    found: list[float] = field(default_factory=lambda: [0.0])
    published: list[float] = field(default_factory=lambda: [0.0])  # nan: never published
    units: list[int] = field(default_factory=lambda: [0])  # units claimed in the trace
    real_units: list[int] = field(default_factory=lambda: [0])  # units really run
    useful_units: list[int] = field(
        default_factory=lambda: [0]
    )  # units whose output is on the honest path
    rejected: list[bool] = field(
        default_factory=lambda: [False]
    )  # honest verifiers refused its work
    checked: list[bool] = field(default_factory=lambda: [True])  # an honest verifier re-executed it
    work: list[int] = field(default_factory=lambda: [0])  # cumulative chain work
    rerolled: list[bool] = field(
        default_factory=lambda: [False]
    )  # its trace holds a re-rolled (fabricated) leaf

    def add(
        self,
        parent: int,
        height: int,
        miner: int,
        found: float,
        units: int,
        real_units: int,
        useful_units: int,
        work: int,
    ) -> int:
        self.parent.append(parent)
        self.height.append(height)
        self.miner.append(miner)
        self.found.append(found)
        self.published.append(float("nan"))
        self.units.append(units)
        self.real_units.append(real_units)
        self.useful_units.append(useful_units)
        self.rejected.append(False)
        self.checked.append(False)
        self.work.append(work)
        self.rerolled.append(False)
        return len(self.parent) - 1

    def __len__(self) -> int:
        return len(self.parent)


@dataclass
class RunRecord:
    mode: str
    duration_s: float
    population: Population
    blocks: BlockLog
    best_tip: int
    tips: np.ndarray  # each node's tip at the end
    units_run: np.ndarray  # real units each node ran mining
    verify_units: np.ndarray  # units each node re-executed verifying blocks
    verify_seconds: (
        np.ndarray
    )  # verification seconds each node spent on blocks (flood not included)
    propagation: list[
        tuple[int, float, float, float]
    ]  # (block, mean, max delay to honest nodes, share reached)
    agreement_s: list[float | None]  # per partition: seconds from heal to one tip everywhere
    flood: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)
