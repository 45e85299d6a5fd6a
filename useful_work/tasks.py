"""The task interface: what every task kind offers, and the task a spec asks for.

The spec types live in useful_work/specs.py; the task kinds (render_task.py, train_task.py)
import them, and `make_task` imports the kinds only when it runs, so this module is cheap.
"""

from __future__ import annotations

from typing import Protocol

from useful_work.specs import RenderSpec, TaskSpec, parse_spec, validate_spec


class Task(Protocol):
    """What every task kind offers: an initial state and a unit function, both exact."""

    @property
    def spec(self) -> TaskSpec: ...

    @property
    def units_total(self) -> int: ...

    def initial_state(self) -> bytes: ...

    def run_unit(self, state: bytes, seed: bytes, device: str = "cpu") -> tuple[bytes, bytes]: ...

    def describe_state(self, state: bytes) -> dict: ...


def make_task(spec: TaskSpec) -> Task:
    validate_spec(spec)
    if isinstance(spec, RenderSpec):
        from useful_work.render_task import RenderTask

        return RenderTask(spec)
    from useful_work.train_task import TrainTask

    return TrainTask(spec)


def task_from_bytes(spec_bytes: bytes) -> Task:
    return make_task(parse_spec(spec_bytes))
