"""Measure a verifier's time per unit of a chain's default task, for `[work] unit_seconds = "measure"`."""

from __future__ import annotations

import statistics
import time

from consensus.params import ConsensusParams
from useful_work.hashing import int_bytes, tagged_hash
from useful_work.tasks import make_task


def measure_unit_seconds(params: ConsensusParams, units: int = 5, device: str = "cpu") -> float:
    """Median wall seconds of one unit of the default task (after one warm-up unit), on this machine."""
    task = make_task(params.default_task)
    state = task.initial_state()
    state, _ = task.run_unit(state, tagged_hash("sim-measure", int_bytes(0)), device)
    times = []
    for u in range(1, units + 1):
        started = time.perf_counter()
        state, _ = task.run_unit(state, tagged_hash("sim-measure", int_bytes(u)), device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)
