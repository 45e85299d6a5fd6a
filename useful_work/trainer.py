"""Training state of the fixed-point CNN, its canonical bytes, and one exact SGD-with-momentum step.

State bytes (all integers little-endian):
    magic b"PWTS" | version u16 | flags u16 (bit 0: direction head) | image_size u16 | step u64
    | tensor count u16 | per tensor: dtype u8 (1 = int32) | ndim u8 | dims u32 x ndim | data
The tensors are the parameters in `ModelConfig.param_shapes` order, then their momentum buffers
in the same order, all Q24 int32. `decode_state` accepts exactly what `encode_state` writes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import torch

from useful_work.exact import clamp_bits, shift_round
from useful_work.intmath import PROB_FRAC, first_argmax, softmax_xent
from useful_work.model import (
    DIR_FRAC,
    FRAC_DOUT,
    FRAC_OUT,
    NUM_CLASSES,
    STATE_BITS,
    ModelConfig,
    Params,
    backward,
    compute_weights,
    forward,
)

MAGIC = b"PWTS"
STATE_VERSION = 1
_DTYPE_INT32 = 1
_HEADER = struct.Struct("<4sHHHQH")
LR_FRAC = 24
MOMENTUM_FRAC = 16
INV_BATCH_FRAC = 24


@dataclass(frozen=True)
class TrainState:
    step: int
    params: Params
    momentum: Params


@dataclass(frozen=True)
class Hyper:
    """SGD hyper-parameters as integers: lr in Q24, momentum in Q16 (PyTorch's convention:
    v = momentum * v + g; w = w - lr * v)."""

    lr_q: int
    momentum_q: int

    @classmethod
    def from_spec(cls, lr_micro: int, momentum_milli: int) -> Hyper:
        # Round half up, in Python integers (exact).
        lr_q = ((lr_micro << (LR_FRAC + 1)) + 1_000_000) // 2_000_000
        momentum_q = ((momentum_milli << (MOMENTUM_FRAC + 1)) + 1000) // 2000
        return cls(lr_q, momentum_q)

    @property
    def lr(self) -> float:
        return self.lr_q / (1 << LR_FRAC)

    @property
    def momentum(self) -> float:
        return self.momentum_q / (1 << MOMENTUM_FRAC)


@dataclass(frozen=True)
class StepStats:
    """What one step computed, summarised for the unit digest and for metrics."""

    loss_q: int  # sum over the batch of the cross-entropy, Q16
    # sum over the batch of DIR_LOSS_WEIGHT * 0.5 * |r - y|^2, Q16 (0 without a direction head)
    dir_loss_q: int
    correct: int  # light counts predicted right
    logits: torch.Tensor  # [B, 3] Q16
    direction: torch.Tensor | None  # [B, 3] Q16

    def mean_loss(self, batch: int) -> float:
        return (self.loss_q + self.dir_loss_q) / batch / (1 << FRAC_OUT)


DIR_LOSS_SHIFT = 4
DIR_LOSS_WEIGHT = 1 / (1 << DIR_LOSS_SHIFT)
"""Weight of the direction loss against the cross-entropy. At weight 1 the default learning rate
(0.05, momentum 0.9) makes the squared loss diverge: the head's curvature, the sum of squared
features, is about 150 at initialisation, and the net collapses into dead ReLUs."""


def inv_batch_q(batch: int) -> int:
    """round(2^24 / batch): the mean over the batch as a fixed-point multiplier."""
    return ((1 << (INV_BATCH_FRAC + 1)) + batch) // (2 * batch)


def output_grads(
    logits: torch.Tensor,
    direction: torch.Tensor | None,
    counts: torch.Tensor,
    dirs: torch.Tensor | None,
) -> tuple[torch.Tensor, StepStats]:
    """dL/d(head outputs) in Q28 for the mean cross-entropy (+ DIR_LOSS_WEIGHT * mean 0.5 |r -
    y|^2), and the stats."""
    b = logits.shape[0]
    labels = counts - 1
    probs, loss = softmax_xent(logits, labels)
    onehot = torch.nn.functional.one_hot(labels, NUM_CLASSES).to(torch.int64) << PROB_FRAC
    inv_b = inv_batch_q(b)
    dz = shift_round((probs - onehot) * inv_b, PROB_FRAC + INV_BATCH_FRAC - FRAC_DOUT)
    correct = int((first_argmax(logits) == labels).sum().item())
    dir_loss = 0
    if direction is not None:
        assert dirs is not None
        err = direction - (dirs << (FRAC_OUT - DIR_FRAC))  # Q16
        # weight * 0.5 * err^2 in Q16, and its gradient weight * err / B in Q28
        dir_loss = int(shift_round((err * err).sum(), FRAC_OUT + 1 + DIR_LOSS_SHIFT).item())
        dr = shift_round(err * inv_b, FRAC_OUT + INV_BATCH_FRAC - FRAC_DOUT + DIR_LOSS_SHIFT)
        dz = torch.cat([dz, dr], dim=1)
    stats = StepStats(int(loss.sum().item()), dir_loss, correct, logits, direction)
    return dz, stats


def sgd_update(
    params: Params, momentum: Params, grads: Params, hyper: Hyper
) -> tuple[Params, Params]:
    """v = momentum * v + g; w = w - lr * v, in integers, on all tensors at once (one flat
    vector)."""
    names = list(params)
    flat = [torch.cat([d[n].reshape(-1) for n in names]) for d in (params, momentum, grads)]
    w, v, g = flat
    v = clamp_bits(shift_round(v * hyper.momentum_q, MOMENTUM_FRAC) + g, STATE_BITS)
    w = clamp_bits(w - shift_round(v * hyper.lr_q, LR_FRAC), STATE_BITS)
    new_p: Params = {}
    new_v: Params = {}
    offset = 0
    for n in names:
        size, shape = params[n].numel(), params[n].shape
        new_p[n] = w[offset : offset + size].view(shape)
        new_v[n] = v[offset : offset + size].view(shape)
        offset += size
    return new_p, new_v


def check_labels(
    counts: torch.Tensor, dirs: torch.Tensor | None, batch: int, config: ModelConfig
) -> None:
    if counts.dtype != torch.int64 or counts.shape != (batch,):
        raise ValueError(
            f"light counts must be int64 [{batch}], got {counts.dtype} {tuple(counts.shape)}"
        )
    if batch and not (int(counts.min()) >= 1 and int(counts.max()) <= NUM_CLASSES):
        raise ValueError("light counts must be in 1 .. 3")
    if config.direction and (dirs is None or dirs.dtype != torch.int64 or dirs.shape != (batch, 3)):
        raise ValueError(f"the direction objective needs int64 directions [{batch}, 3]")


def train_step(
    state: TrainState,
    images: torch.Tensor,
    counts: torch.Tensor,
    dirs: torch.Tensor | None,
    config: ModelConfig,
    hyper: Hyper,
) -> tuple[TrainState, StepStats]:
    """One exact SGD-with-momentum step on a minibatch (uint8 images, light counts 1..3, Q14
    directions)."""
    check_labels(counts, dirs, images.shape[0], config)
    cw = compute_weights(state.params, config)
    act = forward(cw, images, config)
    dout, stats = output_grads(
        act.logits, act.direction, counts, dirs if config.direction else None
    )
    grads = backward(cw, act, dout, config)
    params, momentum = sgd_update(state.params, state.momentum, grads, hyper)
    return TrainState(state.step + 1, params, momentum), stats


# ---- canonical bytes ----


def encode_state(state: TrainState, config: ModelConfig) -> bytes:
    shapes = config.param_shapes()
    tensors = [state.params[n] for n, _ in shapes] + [state.momentum[n] for n, _ in shapes]
    flags = 1 if config.direction else 0
    out = [_HEADER.pack(MAGIC, STATE_VERSION, flags, config.image_size, state.step, len(tensors))]
    for (name, shape), t in zip(shapes + shapes, tensors):
        if tuple(t.shape) != shape:
            raise ValueError(f"state tensor {name}: shape {tuple(t.shape)}, expected {shape}")
        out.append(
            struct.pack("<BB", _DTYPE_INT32, len(shape)) + struct.pack(f"<{len(shape)}I", *shape)
        )
        arr = t.detach().cpu().numpy()
        if arr.size and (
            arr.min() < -(1 << (STATE_BITS - 1)) or arr.max() >= 1 << (STATE_BITS - 1)
        ):
            raise ValueError(f"state tensor {name} does not fit int32")
        out.append(arr.astype("<i4").tobytes())
    return b"".join(out)


def decode_state(
    data: bytes, config: ModelConfig, device: str | torch.device = "cpu"
) -> TrainState:
    """Parse state bytes for `config`; anything but exactly what encode_state writes is a
    ValueError."""
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError("train state: must be bytes")
    if len(data) < _HEADER.size:
        raise ValueError(f"train state: truncated header ({len(data)} bytes)")
    magic, version, flags, image_size, step, count = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise ValueError("train state: bad magic")
    if version != STATE_VERSION:
        raise ValueError(f"train state: unsupported version {version}")
    if flags != (1 if config.direction else 0):
        raise ValueError(f"train state: flags {flags} do not match the task's objective")
    if image_size != config.image_size:
        raise ValueError(f"train state: image size {image_size}, the task uses {config.image_size}")
    shapes = config.param_shapes()
    if count != 2 * len(shapes):
        raise ValueError(f"train state: {count} tensors, expected {2 * len(shapes)}")
    pos = _HEADER.size
    tensors: list[torch.Tensor] = []
    for i, (name, shape) in enumerate(shapes + shapes):
        what = f"train state tensor {i} ({name}{' momentum' if i >= len(shapes) else ''})"
        if len(data) < pos + 2:
            raise ValueError(f"{what}: truncated")
        dtype, ndim = struct.unpack_from("<BB", data, pos)
        pos += 2
        if dtype != _DTYPE_INT32:
            raise ValueError(f"{what}: dtype code {dtype}, expected int32")
        if ndim != len(shape) or len(data) < pos + 4 * ndim:
            raise ValueError(f"{what}: bad or truncated shape")
        dims = struct.unpack_from(f"<{ndim}I", data, pos)
        pos += 4 * ndim
        if tuple(dims) != shape:
            raise ValueError(f"{what}: shape {tuple(dims)}, expected {shape}")
        nbytes = 4 * int(np.prod(shape))
        if len(data) < pos + nbytes:
            raise ValueError(f"{what}: truncated data")
        arr = np.frombuffer(data, dtype="<i4", count=nbytes // 4, offset=pos).astype(np.int64)
        pos += nbytes
        tensors.append(torch.from_numpy(arr).view(shape).to(device))
    if pos != len(data):
        raise ValueError(f"train state: {len(data) - pos} trailing bytes")
    n = len(shapes)
    params = {name: t for (name, _), t in zip(shapes, tensors[:n])}
    momentum = {name: t for (name, _), t in zip(shapes, tensors[n:])}
    return TrainState(step, params, momentum)


def initial_train_state(params: Params) -> TrainState:
    return TrainState(0, dict(params), {n: torch.zeros_like(p) for n, p in params.items()})
