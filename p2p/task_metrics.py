"""Held-out metrics of a training task's state, as the node API reports them (cached per state).

The held-out set is useful_work.evaluate's fixed one (its own seed, never a training seed). Two
models are scored on it: the fixed-point model the chain trains (`accuracy`) and the plain
PyTorch model a user downloads with `pouw task result` (`exported_accuracy`); they agree on
at least 99% of predictions. Metrics are floats for people, never consensus inputs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from useful_work.tasks import TrainSpec, parse_spec

_CACHE_SIZE = 16
_cache: OrderedDict[tuple[bytes, bytes], dict] = OrderedDict()
_lock = threading.Lock()  # one evaluation at a time: a burst of requests costs the node one run


def heldout_metrics(spec_bytes: bytes, state: bytes) -> dict | None:
    """Metrics of a train task's state bytes on the held-out set; None for other kinds of task."""
    spec = parse_spec(spec_bytes)
    if not isinstance(spec, TrainSpec):
        return None
    from useful_work.trace import state_hash

    key = (spec_bytes, state_hash(state))
    with _lock:
        cached = _cache.get(key)
        if cached is None:
            cached = _evaluate(spec, state)
            _cache[key] = cached
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
        else:
            _cache.move_to_end(key)
        return dict(cached)


def _evaluate(spec: TrainSpec, state: bytes) -> dict:
    from useful_work.evaluate import HELDOUT_COUNT, HELDOUT_SEED, angular_error_deg, evaluate_state, heldout_set
    from useful_work.export_model import export_checkpoint, model_from_checkpoint, predict_exported
    from useful_work.train_task import model_config
    from useful_work.trainer import decode_state

    data = heldout_set(spec.scene, HELDOUT_COUNT)
    fixed = evaluate_state(state, spec, HELDOUT_COUNT)
    counts, direction = predict_exported(model_from_checkpoint(export_checkpoint(state, spec)), data.images)
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
        "direction_error_deg": None if fixed.direction_error_deg is None else round(fixed.direction_error_deg, 3),
        "exported_correct": exported_correct,
        "exported_accuracy": exported_correct / fixed.count,
        "exported_direction_error_deg": None if direction is None else round(angular_error_deg(direction, data.dirs), 3),
    }
