"""Merging the output states of several traces that started from one task state.

A block carries the winner's trace and other miners' share claims, all on the same parent and
all starting from the task's state there. The task's next state merges their output states,
exactly (integers only, one rounding rule), so every node on any device gets the same bytes:

- train: every tensor of the weights *and* of the momentum buffers, and the step counter, is
  the weighted mean `floor(sum(w_i * x_i) / sum(w_i))` (floor division, toward minus
  infinity). Momentum is merged like the weights so the next unit's SGD step continues from an
  average velocity, as model averaging with momentum does in local SGD.
- render: units are independent images; the merged state counts every trace's units
  (`start + sum(n_i)`, the start read off the outputs) and its accumulator is
  `H("render-merge", acc_1, n_1, ..., acc_k, n_k)` over the traces in block order, so it
  commits to every trace's dataset.

One state (a block without claims) is returned unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from useful_work.hashing import int_bytes, tagged_hash
from useful_work.render_task import RenderState, RenderTask
from useful_work.tasks import Task
from useful_work.train_task import TrainTask
from useful_work.trainer import TrainState, decode_state, encode_state


class MergeError(ValueError):
    """States that cannot be merged (different shapes, bad weights, undecodable bytes)."""


def weighted_floor_mean(values: Sequence[int], weights: Sequence[int]) -> int:
    """floor(sum(w * v) / sum(w)) in Python integers: the one rounding rule of every merge."""
    total = sum(weights)
    return sum(w * v for w, v in zip(values, weights, strict=True)) // total


def _merge_tensors(tensors: Sequence[torch.Tensor], weights: Sequence[int]) -> torch.Tensor:
    # int64 throughout: |x| < 2^31 and sum(w) < 2^31 keep every partial sum below 2^62.
    acc = torch.zeros_like(tensors[0], dtype=torch.int64)
    for t, w in zip(tensors, weights, strict=True):
        acc += t.to(torch.int64) * w
    return torch.div(acc, sum(weights), rounding_mode="floor")


def _merge_train(task: TrainTask, states: Sequence[bytes], weights: Sequence[int]) -> bytes:
    decoded = [decode_state(s, task.config) for s in states]
    params = {n: _merge_tensors([d.params[n] for d in decoded], weights) for n in decoded[0].params}
    momentum = {
        n: _merge_tensors([d.momentum[n] for d in decoded], weights) for n in decoded[0].momentum
    }
    step = weighted_floor_mean([d.step for d in decoded], weights)
    return encode_state(TrainState(step, params, momentum), task.config)


def _merge_render(states: Sequence[bytes], counts: Sequence[int]) -> bytes:
    decoded = [RenderState.from_bytes(s) for s in states]
    begin = decoded[0].units_done - counts[0]
    if any(d.units_done - n != begin or n < 1 for d, n in zip(decoded, counts, strict=True)):
        raise MergeError("render merge: the traces' outputs do not all start from one state")
    parts: list[bytes] = []
    for d, n in zip(decoded, counts, strict=True):
        parts += [d.accumulator, int_bytes(n)]
    return RenderState(begin + sum(counts), tagged_hash("render-merge", *parts)).to_bytes()


def merge_states(
    task: Task, states: Sequence[bytes], weights: Sequence[int], unit_counts: Sequence[int]
) -> bytes:
    """The merged output of traces of `unit_counts` units that all started from one state,
    weighted by `weights` (train); raises MergeError for inputs that cannot be merged."""
    if not states or not len(states) == len(weights) == len(unit_counts):
        raise MergeError(
            f"{len(states)} states for {len(weights)} weights and {len(unit_counts)} counts"
        )
    if any(type(w) is not int or not 0 <= w < 1 << 31 for w in weights) or sum(weights) < 1:
        raise MergeError(
            f"weights {list(weights)} must be integers in 0 .. 2^31-1 with a positive sum"
        )
    if len(states) == 1:
        return states[0]
    try:
        if isinstance(task, TrainTask):
            kept = [(s, w) for s, w in zip(states, weights, strict=True) if w > 0]
            return _merge_train(task, [s for s, _ in kept], [w for _, w in kept])
        if isinstance(task, RenderTask):
            return _merge_render(states, unit_counts)
    except MergeError:
        raise
    except ValueError as exc:
        raise MergeError(f"merge: {exc}") from None
    raise MergeError(f"merge: no merge rule for {type(task).__name__}")
