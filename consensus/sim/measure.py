"""Measure a verifier's time per unit of a chain's default task, for
`[work] unit_seconds = "measure"`."""

from __future__ import annotations

import statistics
import time

from consensus.params import ConsensusParams
from useful_work.hashing import int_bytes, tagged_hash
from useful_work.tasks import make_task


def measure_unit_seconds(params: ConsensusParams, units: int = 5, device: str = "cpu") -> float:
    """Median wall seconds of one unit of the default task (after one warm-up unit), on this
    machine."""
    task = make_task(params.default_task)
    state = task.initial_state()
    state, _ = task.run_unit(state, tagged_hash("sim-measure", int_bytes(0)), device)
    times = []
    for u in range(1, units + 1):
        started = time.perf_counter()
        state, _ = task.run_unit(state, tagged_hash("sim-measure", int_bytes(u)), device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_reroll_seconds(leaves: int, rolls: int = 2000) -> float:
    """Mean wall seconds of one re-roll of a fabricated leaf's digest in a trace of `leaves` leaves:
    the made-up digest, the trace root and the ticket (hashes only, as
    consensus.attacks.RerollMiner's "last")."""
    from chain.types import Address, BlockHash
    from consensus.tickets import ticket
    from useful_work.hashing import ZERO_HASH
    from useful_work.trace import Leaf, trace_root

    base = [
        Leaf(
            tagged_hash("leaf-in", int_bytes(u)),
            tagged_hash("leaf-out", int_bytes(u)),
            tagged_hash("leaf", int_bytes(u)),
            ZERO_HASH,
        )
        for u in range(leaves)
    ]
    fake = leaves - 2 if leaves >= 2 else 0
    started = time.perf_counter()
    for roll in range(rolls):
        base[fake] = Leaf(
            base[fake].input_hash,
            base[fake].output_hash,
            tagged_hash("reroll", int_bytes(roll)),
            ZERO_HASH,
        )
        ticket(BlockHash(ZERO_HASH), Address(bytes(20)), trace_root(base))
    return (time.perf_counter() - started) / rolls
