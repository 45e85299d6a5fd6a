"""The train task: a unit is `steps_per_unit` exact SGD steps on minibatches rendered on the fly.

Step s of a unit trains on the `batch_size` images that `render_batch` draws from
step_seed(unit seed, s); the digest commits to what every step computed (its logits, losses and
hits) and to the output state, so it cannot be produced without doing the work.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import torch

from useful_work.cpu_memory import keep_freed_memory
from useful_work.hashing import int_bytes, tagged_hash
from useful_work.model import FRAC_MASTER, ModelConfig, init_params
from useful_work.render import render_batch
from useful_work.specs import SceneSettings, TrainSpec, encode_spec, validate_spec
from useful_work.trace import state_hash
from useful_work.trainer import (
    Hyper,
    StepStats,
    TrainState,
    decode_state,
    encode_state,
    initial_train_state,
    train_step,
)


def model_config(spec: TrainSpec) -> ModelConfig:
    if spec.arch != "cnn-small":
        raise ValueError(f"train.arch: unknown architecture {spec.arch!r}")
    return ModelConfig(image_size=spec.image_size, direction=spec.objective == "light-direction")


def init_key(spec: TrainSpec) -> bytes:
    """PRNG key of the initial weights: a hash of the whole canonical spec (spec.seed varies it)."""
    return tagged_hash("train-init", encode_spec(spec))


def step_seed(unit_seed: bytes, step: int) -> bytes:
    """Render seed of step `step` of the unit with seed `unit_seed`."""
    return tagged_hash("train-step", unit_seed, int_bytes(step))


@dataclass(frozen=True)
class Minibatch:
    images: torch.Tensor  # [B, S, S, 3] uint8
    counts: torch.Tensor  # [B] int64 light counts 1..3
    dirs: torch.Tensor  # [B, 3] int64 dominant light direction, unit vector * 2^14


def render_minibatch(
    seed: bytes, count: int, settings: SceneSettings, device: str | torch.device = "cpu"
) -> Minibatch:
    rb = render_batch(seed, count, settings, device)
    return Minibatch(
        rb.images, rb.scenes.num_lights.to(torch.int64), rb.scenes.dominant_dir.to(torch.int64)
    )


def step_record(step: int, stats: StepStats) -> bytes:
    """Canonical bytes of what one step computed, for the unit digest."""
    head = struct.pack("<QqqI", step, stats.loss_q, stats.dir_loss_q, stats.correct)
    logits = stats.logits.detach().cpu().numpy().astype("<i8").tobytes()
    direction = (
        b""
        if stats.direction is None
        else stats.direction.detach().cpu().numpy().astype("<i8").tobytes()
    )
    return head + logits + direction


class TrainTask:
    """Task protocol implementation for TrainSpec (see useful_work.tasks.Task)."""

    def __init__(self, spec: TrainSpec) -> None:
        keep_freed_memory()  # steps run ~1.8x slower when glibc returns their temporaries each time
        self.spec = validate_spec(spec)
        self.config = model_config(spec)
        self.hyper = Hyper.from_spec(spec.lr_micro, spec.momentum_milli)

    @property
    def units_total(self) -> int:
        return self.spec.units_total

    def initial_state(self) -> bytes:
        return encode_state(
            initial_train_state(init_params(self.config, init_key(self.spec))), self.config
        )

    def run_steps(
        self, state: TrainState, seed: bytes, device: str | torch.device = "cpu"
    ) -> tuple[TrainState, list[StepStats]]:
        """The unit's SGD steps on decoded state (for callers that keep the state in memory)."""
        stats: list[StepStats] = []
        for s in range(self.spec.steps_per_unit):
            mb = render_minibatch(step_seed(seed, s), self.spec.batch_size, self.spec.scene, device)
            state, st = train_step(state, mb.images, mb.counts, mb.dirs, self.config, self.hyper)
            stats.append(st)
        return state, stats

    def run_unit(self, state: bytes, seed: bytes, device: str = "cpu") -> tuple[bytes, bytes]:
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise ValueError("a unit seed is 32 bytes")
        train_state = decode_state(state, self.config, device)
        out, stats = self.run_steps(train_state, seed, device)
        out_bytes = encode_state(out, self.config)
        records = [step_record(train_state.step + i, st) for i, st in enumerate(stats)]
        digest = tagged_hash("train-unit", state_hash(out_bytes), *records)
        return out_bytes, digest

    def describe_state(self, state: bytes) -> dict:
        ts = decode_state(state, self.config)
        scale = float(1 << FRAC_MASTER)
        return {
            "kind": "train",
            "arch": self.spec.arch,
            "objective": self.spec.objective,
            "step": ts.step,
            "images_seen": ts.step * self.spec.batch_size,
            "parameters": sum(p.numel() for p in ts.params.values()),
            "state_bytes": len(state),
            "weight_rms": {
                name: round(float((p.to(torch.float64) / scale).pow(2).mean().sqrt()), 6)
                for name, p in ts.params.items()
            },
        }
