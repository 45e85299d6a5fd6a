"""Held-out evaluation of a trained model: light-count accuracy and dominant-direction angular
error.

The held-out images come from one fixed seed under the tag "heldout-eval", which no training
seed can equal (training steps draw from tagged_hash("train-step", ...)). Metrics are floats:
they are for people, never for consensus.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from useful_work.hashing import tagged_hash
from useful_work.intmath import first_argmax, softmax_xent
from useful_work.model import FRAC_OUT, ModelConfig, Params, compute_weights, forward
from useful_work.reference import ReferenceCNN, images_to_float
from useful_work.specs import SceneSettings, TrainSpec
from useful_work.train_task import Minibatch, model_config, render_minibatch
from useful_work.trainer import decode_state

HELDOUT_SEED = tagged_hash("heldout-eval", b"cnn-small/v1")
HELDOUT_COUNT = 1024
_RENDER_CHUNK = 256
_EVAL_CHUNK = 256


@dataclass(frozen=True)
class EvalResult:
    count: int
    accuracy: float  # fraction of light counts predicted right
    loss: float  # mean cross-entropy of the light-count head
    direction_error_deg: float | None  # mean angle between predicted and true dominant direction
    predictions: torch.Tensor  # [N] predicted light counts 1..3


@lru_cache(maxsize=4)
def heldout_set(
    settings: SceneSettings, count: int = HELDOUT_COUNT, device: str = "cpu"
) -> Minibatch:
    """The fixed held-out images with their labels (rendered in chunks, cached per settings)."""
    parts: list[Minibatch] = []
    for start in range(0, count, _RENDER_CHUNK):
        n = min(_RENDER_CHUNK, count - start)
        seed = tagged_hash("heldout-chunk", HELDOUT_SEED, start.to_bytes(8, "little"))
        parts.append(render_minibatch(seed, n, settings, device))
    return Minibatch(
        torch.cat([p.images for p in parts]),
        torch.cat([p.counts for p in parts]),
        torch.cat([p.dirs for p in parts]),
    )


def angular_error_deg(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean angle in degrees between predicted [N, 3] and true [N, 3] directions (any scale)."""
    p = pred.to(torch.float64)
    t = target.to(torch.float64)
    cos = (p * t).sum(1) / (p.norm(dim=1) * t.norm(dim=1)).clamp_min(1e-12)
    return float(torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0))).mean())


def _result(
    pred: torch.Tensor, loss: float, direction: torch.Tensor | None, data: Minibatch
) -> EvalResult:
    pred = pred.cpu()
    acc = float((pred == data.counts.cpu()).to(torch.float64).mean())
    err = angular_error_deg(direction.cpu(), data.dirs.cpu()) if direction is not None else None
    return EvalResult(int(pred.numel()), acc, loss, err, pred)


def evaluate_fixed(params: Params, config: ModelConfig, data: Minibatch) -> EvalResult:
    """Accuracy of the fixed-point model (integer forward pass) on `data`."""
    cw = compute_weights(params, config)
    logits: list[torch.Tensor] = []
    dirs: list[torch.Tensor] = []
    for i in range(0, data.images.shape[0], _EVAL_CHUNK):
        act = forward(cw, data.images[i : i + _EVAL_CHUNK], config)
        logits.append(act.logits)
        if act.direction is not None:
            dirs.append(act.direction)
    z = torch.cat(logits)
    _, loss = softmax_xent(z, data.counts - 1)
    mean_loss = float(loss.sum()) / max(1, z.shape[0]) / (1 << FRAC_OUT)
    direction = torch.cat(dirs).to(torch.float64) / (1 << FRAC_OUT) if dirs else None
    return _result(first_argmax(z) + 1, mean_loss, direction, data)


def evaluate_state(
    state: bytes, spec: TrainSpec, count: int = HELDOUT_COUNT, device: str = "cpu"
) -> EvalResult:
    """Held-out accuracy (and direction error) of a train task's state bytes."""
    config = model_config(spec)
    return evaluate_fixed(
        decode_state(state, config, device).params, config, heldout_set(spec.scene, count, device)
    )


@torch.no_grad()
def evaluate_float(model: ReferenceCNN, data: Minibatch) -> EvalResult:
    """Accuracy of a float model (the reference, or an exported model's twin) on `data`."""
    model.eval()
    logits, direction = model(images_to_float(data.images.cpu()))
    loss = float(F.cross_entropy(logits, data.counts.cpu() - 1))
    return _result(logits.argmax(dim=1) + 1, loss, direction, data)
