"""Held-out metrics of a training task's state, as the node API reports them (cached per state).

The held-out set is useful_work.evaluate's fixed one (its own seed, never a training seed). Two
models are scored on it: the fixed-point model the chain trains (`accuracy`) and the plain
PyTorch model a user downloads with `pouw task result` (`exported_accuracy`); they agree on
at least 99% of predictions. Metrics are floats for people, never consensus inputs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from useful_work.specs import TrainSpec, parse_spec

_CACHE_SIZE = (
    256  # a learning curve's worth of states (the explorer samples at most 48 heights a task)
)
_cache: OrderedDict[tuple[bytes, bytes], dict] = OrderedDict()
_cache_lock = threading.Lock()  # guards _cache (held only for dictionary operations)
_lock = threading.Lock()  # one evaluation at a time: a burst of requests costs the node one run


class EvaluatorBusy(RuntimeError):
    """Another evaluation is running and the caller asked not to wait for it."""


def _cached(key: tuple[bytes, bytes]) -> dict | None:
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
        return dict(found) if found is not None else None


def heldout_metrics(spec_bytes: bytes, state: bytes, wait: bool = True) -> dict | None:
    """Metrics of a train task's state bytes on the held-out set; None for other kinds of task.

    wait=False: raise EvaluatorBusy rather than queue behind a running evaluation (a cached
    state still answers at once), so callers cannot pile up threads waiting for the evaluator.
    """
    spec = parse_spec(spec_bytes)
    if not isinstance(spec, TrainSpec):
        return None
    from useful_work.trace import state_hash

    key = (spec_bytes, state_hash(state))
    found = _cached(key)
    if found is not None:
        return found
    if not _lock.acquire(blocking=wait):
        raise EvaluatorBusy("an evaluation is running")
    try:
        found = _cached(key)  # evaluated by the call this one waited for
        if found is not None:
            return found
        result = _evaluate(spec, state)
        with _cache_lock:
            _cache[key] = result
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
        return dict(result)
    finally:
        _lock.release()


def _evaluate(spec: TrainSpec, state: bytes) -> dict:
    from useful_work.evaluate import (
        HELDOUT_COUNT,
        HELDOUT_SEED,
        angular_error_deg,
        evaluate_state,
        heldout_set,
    )
    from useful_work.export_model import export_checkpoint, model_from_checkpoint, predict_exported
    from useful_work.train_task import model_config
    from useful_work.trainer import decode_state

    data = heldout_set(spec.scene, HELDOUT_COUNT)
    fixed = evaluate_state(state, spec, HELDOUT_COUNT)
    counts, direction = predict_exported(
        model_from_checkpoint(export_checkpoint(state, spec)), data.images
    )
    truth = data.counts.cpu()
    fixed_correct = int((fixed.predictions.cpu() == truth).sum())
    exported_correct = int((counts.cpu() == truth).sum())
    return {
        "images": fixed.count,
        "heldout_seed": HELDOUT_SEED.hex(),
        "step": decode_state(state, model_config(spec)).step,
        "correct": fixed_correct,
        "accuracy": fixed_correct / fixed.count,  # k / 1024 is exact in binary: never rounded up
        "loss": round(fixed.loss, 6),
        "direction_error_deg": None
        if fixed.direction_error_deg is None
        else round(fixed.direction_error_deg, 3),
        "exported_correct": exported_correct,
        "exported_accuracy": exported_correct / fixed.count,
        "exported_direction_error_deg": None
        if direction is None
        else round(angular_error_deg(direction, data.dirs), 3),
    }
