"""Running a trace: units u = 0, 1, 2, ... chained from a start state, one leaf each."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from useful_work.tasks import Task
from useful_work.trace import Leaf, state_hash, unit_seed


@dataclass(frozen=True)
class UnitResult:
    index: int
    seed: bytes
    leaf: Leaf
    input_state: bytes
    output_state: bytes


def iter_units(task: Task, start_state: bytes, parent_hash: bytes, miner: bytes, device: str = "cpu") -> Iterator[UnitResult]:
    """Endless trace of units on `parent_hash` by `miner`; the caller decides when to stop."""
    state = start_state
    in_hash = state_hash(state)
    u = 0
    while True:
        seed = unit_seed(parent_hash, miner, u)
        out_state, digest = task.run_unit(state, seed, device)
        out_hash = state_hash(out_state)
        yield UnitResult(u, seed, Leaf(in_hash, out_hash, digest), state, out_state)
        state, in_hash = out_state, out_hash
        u += 1
