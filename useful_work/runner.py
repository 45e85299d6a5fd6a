"""Running a trace: units u = 0, 1, 2, ... chained from a start state, one leaf each, chained
seeds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from useful_work.hashing import ZERO_HASH
from useful_work.tasks import Task
from useful_work.trace import TRACE_START, Leaf, next_prefix, state_hash, unit_seed


@dataclass(frozen=True)
class UnitResult:
    index: int
    seed: bytes
    leaf: Leaf
    input_state: bytes
    output_state: bytes
    prefix: bytes  # C_u, the commitment to the leaves before this one


def iter_units(
    task: Task,
    start_state: bytes,
    parent_hash: bytes,
    miner: bytes,
    device: str = "cpu",
    *,
    attempt: int = 0,
    commitment: Callable[[int], bytes] = lambda u: ZERO_HASH,
) -> Iterator[UnitResult]:
    """Endless trace of units on `parent_hash` by `miner`; the caller decides when to stop.

    `commitment(u)` is the header commitment in force when unit u starts (a miner's changes as
    its mempool does; a standalone run may keep ZERO_HASH).
    """
    state = start_state
    in_hash = state_hash(state)
    prefix = TRACE_START
    u = 0
    while True:
        c = commitment(u)
        seed = unit_seed(parent_hash, miner, attempt, u, prefix, c)
        out_state, digest = task.run_unit(state, seed, device)
        out_hash = state_hash(out_state)
        leaf = Leaf(in_hash, out_hash, digest, c)
        yield UnitResult(u, seed, leaf, state, out_state, prefix)
        prefix = next_prefix(prefix, leaf)
        state, in_hash = out_state, out_hash
        u += 1
