"""The render task: each unit renders `images_per_unit` labelled images from its seed.

State (44 bytes, fixed layout): magic b"PRS1", units done (u64 little-endian), and a running
accumulator hash over every unit digest so far (acc' = H("render-acc", acc, digest)), so the
task's final state commits to the whole dataset in order. A unit's digest covers the exact image,
mask and depth bytes and the canonical labels encoding (`unit_digest`), so a dataset exported from
the same seeds can be checked against the digests recorded on chain.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import msgpack
import numpy as np

from useful_work.hashing import HASH_SIZE, ZERO_HASH, tagged_hash
from useful_work.render import RenderBatch, render_batch
from useful_work.specs import RenderSpec, validate_spec

STATE_MAGIC = b"PRS1"
STATE_SIZE = len(STATE_MAGIC) + 8 + HASH_SIZE


@dataclass(frozen=True)
class RenderState:
    units_done: int
    accumulator: bytes

    def to_bytes(self) -> bytes:
        return STATE_MAGIC + struct.pack("<Q", self.units_done) + self.accumulator

    @classmethod
    def from_bytes(cls, data: bytes) -> RenderState:
        if not isinstance(data, bytes):
            raise ValueError("render state: must be bytes")
        if len(data) != STATE_SIZE:
            raise ValueError(f"render state: {len(data)} bytes, expected {STATE_SIZE}")
        if data[:4] != STATE_MAGIC:
            raise ValueError(f"render state: bad magic {data[:4]!r}, expected {STATE_MAGIC!r}")
        (units_done,) = struct.unpack("<Q", data[4:12])
        return cls(units_done, data[12:])


def canonical_arrays(batch: RenderBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stored forms of a batch: images uint8 [B,H,W,3], masks uint8 [B,H,W], depth
    little-endian int32 [B,H,W]."""
    images = batch.images.cpu().numpy()
    mask = batch.mask.cpu().numpy()
    depth = batch.depth.cpu().numpy()
    if mask.min() < 0 or mask.max() > 255:
        raise ValueError("mask values out of uint8 range")
    if depth.min() < 0 or depth.max() >= 1 << 31:
        raise ValueError("depth values out of int32 range")
    return (
        np.ascontiguousarray(images, dtype=np.uint8),
        np.ascontiguousarray(mask, dtype=np.uint8),
        np.ascontiguousarray(depth, dtype="<i4"),
    )


def encode_labels(labels: list[dict]) -> bytes:
    """Canonical bytes of a unit's labels: msgpack of the list, keys in the order `labels` gives
    them."""
    return msgpack.packb(labels, use_bin_type=True)


def unit_digest(
    images: np.ndarray, mask: np.ndarray, depth: np.ndarray, labels: list[dict]
) -> bytes:
    """Digest of one rendered unit from its stored arrays and labels (the same on chain and in an
    export)."""
    for name, arr, dtype in (
        ("images", images, np.uint8),
        ("mask", mask, np.uint8),
        ("depth", depth, np.dtype("<i4")),
    ):
        if arr.dtype != dtype:
            raise ValueError(f"{name}: dtype {arr.dtype}, expected {np.dtype(dtype)}")
    shape = struct.pack("<4I", *images.shape)
    return tagged_hash(
        "render-unit",
        shape,
        np.ascontiguousarray(images).tobytes(),
        np.ascontiguousarray(mask).tobytes(),
        np.ascontiguousarray(depth).tobytes(),
        encode_labels(labels),
    )


def batch_digest(batch: RenderBatch) -> bytes:
    return unit_digest(*canonical_arrays(batch), batch.all_labels())


class RenderTask:
    """Task protocol for RenderSpec: units are independent batches; the state only counts and
    accumulates."""

    def __init__(self, spec: RenderSpec) -> None:
        self.spec = validate_spec(spec)

    @property
    def units_total(self) -> int:
        return self.spec.units_total

    def initial_state(self) -> bytes:
        return RenderState(0, ZERO_HASH).to_bytes()

    def render_unit(self, seed: bytes, device: str = "cpu") -> RenderBatch:
        """The images, masks, depth and labels of the unit with this seed."""
        return render_batch(seed, self.spec.images_per_unit, self.spec.scene, device)

    def run_unit(self, state: bytes, seed: bytes, device: str = "cpu") -> tuple[bytes, bytes]:
        current = RenderState.from_bytes(state)
        if not isinstance(seed, bytes) or len(seed) != HASH_SIZE:
            raise ValueError("render unit: seed must be 32 bytes")
        digest = batch_digest(self.render_unit(seed, device))
        acc = tagged_hash("render-acc", current.accumulator, digest)
        return RenderState(current.units_done + 1, acc).to_bytes(), digest

    def describe_state(self, state: bytes) -> dict:
        s = RenderState.from_bytes(state)
        return {
            "kind": "render",
            "units_done": s.units_done,
            "units_total": self.units_total,
            "images_done": s.units_done * self.spec.images_per_unit,
            "accumulator": s.accumulator.hex(),
        }
