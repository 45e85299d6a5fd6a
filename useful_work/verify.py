"""Re-execution of one unit against its committed leaf, compared bit for bit.

Any failure while re-executing is invalid work, never an error of the verifier: an opened state
that does not decode, a value out of range or any exception inside `run_unit` gives a failed check
naming what went wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from useful_work.tasks import Task
from useful_work.trace import Leaf, state_hash


@dataclass(frozen=True)
class UnitCheck:
    ok: bool
    reason: str
    output_state: bytes | None = None


def verify_unit(
    task: Task, input_state: bytes, seed: bytes, leaf: Leaf, device: str = "cpu"
) -> UnitCheck:
    """Re-run the unit from its opened input state; any differing bit fails the check."""
    if state_hash(input_state) != leaf.input_hash:
        return UnitCheck(False, "opened input state does not hash to the leaf's input hash")
    try:
        output_state, digest = task.run_unit(input_state, seed, device)
    except Exception as exc:  # noqa: BLE001 - whatever a hostile state makes the unit raise is invalid work
        return UnitCheck(False, f"re-execution failed: {type(exc).__name__}: {str(exc)[:200]}")
    if not isinstance(output_state, bytes) or not isinstance(digest, bytes):
        return UnitCheck(False, "re-execution produced no state and digest")
    if state_hash(output_state) != leaf.output_hash:
        return UnitCheck(False, "re-executed output state differs from the leaf")
    if digest != leaf.digest:
        return UnitCheck(False, "re-executed output digest differs from the leaf")
    return UnitCheck(True, "ok", output_state)
