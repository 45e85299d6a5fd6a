"""Task specs: what a unit of useful work is for each kind of task, and what one unit costs.

A task spec travels on chain as canonical msgpack bytes (a map with every key present, in the
declared order, minimal integer encodings); `parse_spec` rejects anything else with an error
naming the field, so a spec that cannot run is refused when submitted, not when mined.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TypeVar

import msgpack

MAX_SPEC_BYTES = 4096


class TaskSpecError(ValueError):
    """A task spec is malformed or out of range; the message names the field."""


@dataclass(frozen=True)
class SceneSettings:
    """The scene family a task renders from (shared by render and train tasks)."""

    image_size: int = 32
    min_objects: int = 1
    max_objects: int = 6
    min_lights: int = 1
    max_lights: int = 3


@dataclass(frozen=True)
class RenderSpec:
    """Render `units * images_per_unit` labelled images (`units` == 0: open-ended, for a default
    task)."""

    units: int = 16
    images_per_unit: int = 16
    image_size: int = 32
    min_objects: int = 1
    max_objects: int = 6
    min_lights: int = 1
    max_lights: int = 3

    kind = "render"

    @property
    def units_total(self) -> int:
        return self.units

    @property
    def scene(self) -> SceneSettings:
        return SceneSettings(
            self.image_size, self.min_objects, self.max_objects, self.min_lights, self.max_lights
        )


@dataclass(frozen=True)
class TrainSpec:
    """Train a model preset on images rendered on the fly; `units` == 0 means open-ended."""

    units: int = 0
    arch: str = "cnn-small"
    objective: str = "lights"
    batch_size: int = 32
    steps_per_unit: int = 2
    lr_micro: int = 50_000  # learning rate in millionths
    momentum_milli: int = 900  # momentum in thousandths
    image_size: int = 32
    min_objects: int = 1
    max_objects: int = 6
    min_lights: int = 1
    max_lights: int = 3
    seed: int = 0  # varies the initial weights

    kind = "train"

    @property
    def units_total(self) -> int:
        return self.units

    @property
    def scene(self) -> SceneSettings:
        return SceneSettings(
            self.image_size, self.min_objects, self.max_objects, self.min_lights, self.max_lights
        )


TaskSpec = RenderSpec | TrainSpec
AnySpec = TypeVar("AnySpec", bound=TaskSpec)  # a function that returns the spec it was given

ARCH_PRESETS = ("cnn-small",)
OBJECTIVES = ("lights", "light-direction")

# field -> (low, high) inclusive ranges; string fields list their allowed values.
_INT_RANGES: dict[str, tuple[int, int]] = {
    "units": (0, 1_000_000),
    "images_per_unit": (1, 256),
    "image_size": (16, 128),
    "min_objects": (1, 6),
    "max_objects": (1, 6),
    "min_lights": (1, 3),
    "max_lights": (1, 3),
    "batch_size": (1, 256),
    "steps_per_unit": (1, 64),
    "lr_micro": (1, 1_000_000),
    "momentum_milli": (0, 999),
    "seed": (0, (1 << 64) - 1),
}
_STR_VALUES: dict[str, tuple[str, ...]] = {"arch": ARCH_PRESETS, "objective": OBJECTIVES}
_KINDS: dict[str, type] = {"render": RenderSpec, "train": TrainSpec}


def validate_spec(spec: AnySpec) -> AnySpec:
    """Check every field's type and range and the cross-field rules; return the spec."""
    kind = spec.kind
    for f in fields(spec):
        value = getattr(spec, f.name)
        where = f"{kind}.{f.name}"
        if f.name in _STR_VALUES:
            if not isinstance(value, str) or value not in _STR_VALUES[f.name]:
                raise TaskSpecError(
                    f"{where}: must be one of {', '.join(_STR_VALUES[f.name])}, got {value!r}"
                )
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise TaskSpecError(f"{where}: must be an integer, got {type(value).__name__}")
        low, high = _INT_RANGES[f.name]
        if not low <= value <= high:
            raise TaskSpecError(f"{where}: {value} out of range {low} .. {high}")
    if spec.min_objects > spec.max_objects:
        raise TaskSpecError(
            f"{kind}.min_objects: {spec.min_objects} exceeds max_objects {spec.max_objects}"
        )
    if spec.min_lights > spec.max_lights:
        raise TaskSpecError(
            f"{kind}.min_lights: {spec.min_lights} exceeds max_lights {spec.max_lights}"
        )
    if isinstance(spec, TrainSpec):
        if spec.image_size > 64:
            raise TaskSpecError(f"train.image_size: {spec.image_size} out of range 16 .. 64")
        if spec.image_size % 4:
            raise TaskSpecError(
                f"train.image_size: {spec.image_size} must be a multiple of 4 (two 2x2 poolings)"
            )
        if spec.objective == "lights" and spec.max_lights == spec.min_lights:
            raise TaskSpecError("train.max_lights: counting lights needs more than one light count")
    return spec


def encode_spec(spec: TaskSpec) -> bytes:
    validate_spec(spec)
    body = {"kind": spec.kind, **asdict(spec)}
    return msgpack.packb(body, use_bin_type=True)


def parse_spec(data: bytes) -> TaskSpec:
    """Decode and validate spec bytes; the bytes must be exactly what `encode_spec` would write."""
    if not isinstance(data, bytes):
        raise TaskSpecError("spec: must be bytes")
    if len(data) > MAX_SPEC_BYTES:
        raise TaskSpecError(f"spec: {len(data)} bytes exceeds the limit of {MAX_SPEC_BYTES}")
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise TaskSpecError(f"spec: not valid msgpack ({exc})") from None
    if not isinstance(body, dict):
        raise TaskSpecError("spec: must be a map")
    kind = body.get("kind")
    if kind not in _KINDS:
        raise TaskSpecError(f"spec.kind: must be one of {', '.join(_KINDS)}, got {kind!r}")
    cls = _KINDS[kind]
    names = [f.name for f in fields(cls)]
    expected_keys = ["kind", *names]
    if list(body) != expected_keys:
        missing = [k for k in expected_keys if k not in body]
        extra = [k for k in body if k not in expected_keys]
        if missing:
            raise TaskSpecError(f"{kind}.{missing[0]}: missing")
        if extra:
            raise TaskSpecError(f"{kind}.{extra[0]}: unknown field")
        raise TaskSpecError(f"{kind}: fields out of canonical order")
    spec = validate_spec(cls(**{n: body[n] for n in names}))
    if encode_spec(spec) != data:
        raise TaskSpecError(f"{kind}: not in canonical encoding")
    return spec


# ---- cost model ----
# Unit cost is counted in operations: one operation is one multiply-accumulate of the training
# GEMMs (with its share of the step's copies, pooling and rescaling, which scale with the same
# sizes). The ray caster's work is priced in the same currency: its terms follow the structure of
# useful_work/render.py, and each constant is the measured time of that term over the time of one
# training MAC, on one CPU thread (`pouw bench work --cost-only` re-measures the fit).
RENDER_PASS_OPS = 24_000_000
"""Fixed work of one `render_batch` call, whatever its size: about 1,700 tensor operations whose
dispatch costs about 3 ms. A render unit makes one call, a train unit one per SGD step."""
RENDER_IMAGE_OPS = 400_000
"""Per image: drawing the scene from the PRNG, its projected boxes, and the label records."""
RENDER_PIXEL_OPS = 480
"""Per pixel: the ray, the ground hit, the surface palette and tone lookup, the mask, depth and
digest bytes (about 160 int64 element operations, counted)."""
RENDER_OBJECT_PIXEL_OPS = 24
"""Per pixel and per unit of (min_objects + max_objects): each object's exact ray test over the
pixels of its projected box (about 22 element operations per pixel and object, counted)."""
RENDER_SHADOW_PIXEL_OPS = 8
"""Per pixel and per unit of (min_objects + max_objects) * (min_lights + max_lights): each
(object, light) shadow test over the pixels of its shadow box (about 11 element operations per
pixel, object and light, counted)."""


def render_image_cost(scene: SceneSettings) -> int:
    """Operations to render one image of `scene` with its labels (see `unit_cost`)."""
    objects = scene.min_objects + scene.max_objects  # twice the mean number of objects
    lights = scene.min_lights + scene.max_lights  # twice the mean number of lights
    per_pixel = (
        RENDER_PIXEL_OPS
        + RENDER_OBJECT_PIXEL_OPS * objects
        + RENDER_SHADOW_PIXEL_OPS * objects * lights
    )
    return RENDER_IMAGE_OPS + scene.image_size**2 * per_pixel


def unit_cost(spec: TaskSpec) -> int:
    """Operations one unit of `spec` costs to run, and so to re-execute: an integer from the spec's
    fields.

    render: RENDER_PASS_OPS + images_per_unit * image_cost
    train:  steps_per_unit * (RENDER_PASS_OPS + batch_size * (image_cost + macs_per_image))
    image_cost = RENDER_IMAGE_OPS
                 + S^2 * (480 + 24 * (min_objects + max_objects)
                          + 8 * (min_objects + max_objects) * (min_lights + max_lights))
    macs_per_image = the forward and backward GEMM multiply-accumulates of the architecture at
                     image size S (useful_work.model.ModelConfig.gemm_macs_per_image;
                     cnn-small: 1,317 S^2 for "lights", 1,326 S^2 for "light-direction").

    Object and light counts enter through their means (a unit averages over its images). Measured
    on one CPU thread an operation takes about 0.14 ns, within a factor 1.4 across render and train
    specs from 16 to 128 pixels (see docs/protocol.md, "Task cost limits").
    """
    validate_spec(spec)
    image = render_image_cost(spec.scene)
    if isinstance(spec, RenderSpec):
        return RENDER_PASS_OPS + spec.images_per_unit * image
    from useful_work.model import ModelConfig

    if spec.arch != "cnn-small":
        raise TaskSpecError(f"train.arch: no cost model for {spec.arch!r}")
    macs = ModelConfig(
        image_size=spec.image_size, direction=spec.objective == "light-direction"
    ).gemm_macs_per_image()
    return spec.steps_per_unit * (RENDER_PASS_OPS + spec.batch_size * (image + macs))
