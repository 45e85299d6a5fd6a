"""User-facing task options mapped onto RenderSpec / TrainSpec, validated before anything is sent.

Render: `count` images in units of `images_per_unit` (by default the largest divisor of count up
to 16, so the dataset has exactly `count` images). Train: `steps` SGD steps in units of
`steps_per_unit` (default 2 when steps is even, else 1); the learning rate and momentum are exact
decimals (millionths and thousandths on chain). Every error is a TaskSpecError naming the field.
`market_terms` applies a network's cost limit and minimum bounty (from GET /api/params) to a spec.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation, localcontext

from consensus.market import unit_price
from useful_work.specs import (
    RenderSpec,
    SceneSettings,
    TaskSpec,
    TaskSpecError,
    TrainSpec,
    unit_cost,
    validate_spec,
)

MAX_IMAGES_PER_UNIT_DEFAULT = 16

# Spec field -> the option that sets it, for error messages.
OPTION_OF_FIELD = {
    "count": "--count",
    "steps": "--steps",
    "lr": "--lr",
    "momentum": "--momentum",
    "units": "--count / --steps",
    "images_per_unit": "--images-per-unit",
    "image_size": "--image-size",
    "min_objects": "--min-objects",
    "max_objects": "--max-objects",
    "min_lights": "--min-lights",
    "max_lights": "--max-lights",
    "batch_size": "--batch-size",
    "steps_per_unit": "--steps-per-unit",
    "lr_micro": "--lr",
    "momentum_milli": "--momentum",
    "arch": "--arch",
    "objective": "--objective",
    "seed": "--seed",
}


def option_hint(error: TaskSpecError) -> str:
    """' (option --lr)' for an error naming a spec field a user option sets."""
    head = str(error).split(":", 1)[0]
    name = head.split(".", 1)[-1]
    return f" (option {OPTION_OF_FIELD[name]})" if name in OPTION_OF_FIELD else ""


def _scene(scene: SceneSettings) -> dict:
    return {f.name: getattr(scene, f.name) for f in fields(scene)}


def render_spec(
    count: int, images_per_unit: int | None = None, scene: SceneSettings = SceneSettings()
) -> RenderSpec:
    if not isinstance(count, int) or count < 1:
        raise TaskSpecError(f"render.count: {count} must be at least 1 image")
    if images_per_unit is None:
        images_per_unit = max(
            d for d in range(1, min(count, MAX_IMAGES_PER_UNIT_DEFAULT) + 1) if count % d == 0
        )
    elif images_per_unit < 1 or count % images_per_unit:
        raise TaskSpecError(
            f"render.images_per_unit: {count} images are not a whole number of units of "
            f"{images_per_unit}"
        )
    return validate_spec(
        RenderSpec(units=count // images_per_unit, images_per_unit=images_per_unit, **_scene(scene))
    )


def _fixed(text: str | int | float, scale: int, field: str) -> int:
    """An exact decimal (e.g. "0.05") times `scale`, which must come out a whole number."""
    s = str(text).strip()
    if len(s) > 40:
        raise TaskSpecError(f"train.{field}: {s[:20]!r}... is too long")
    try:
        value = Decimal(s)
    except InvalidOperation:
        raise TaskSpecError(f"train.{field}: {text!r} is not a decimal number") from None
    if not value.is_finite():
        raise TaskSpecError(f"train.{field}: {text!r} is not a finite number")
    if abs(value.adjusted()) > 20:
        raise TaskSpecError(f"train.{field}: {text} out of range")
    with localcontext() as ctx:
        ctx.prec = 80  # exact for any value that passed the checks above
        scaled = value * scale
    if scaled != scaled.to_integral_value():
        digits = len(str(scale)) - 1
        raise TaskSpecError(f"train.{field}: {text} has more than {digits} decimals")
    return int(scaled)


def train_spec(
    steps: int,
    steps_per_unit: int | None = None,
    lr: str = "0.05",
    momentum: str = "0.9",
    batch_size: int = 32,
    objective: str = "lights",
    arch: str = "cnn-small",
    seed: int = 0,
    scene: SceneSettings = SceneSettings(),
) -> TrainSpec:
    if not isinstance(steps, int) or steps < 1:
        raise TaskSpecError(f"train.steps: {steps} must be at least 1 SGD step")
    if steps_per_unit is None:
        steps_per_unit = 2 if steps % 2 == 0 else 1
    elif steps_per_unit < 1 or steps % steps_per_unit:
        raise TaskSpecError(
            f"train.steps_per_unit: {steps} steps are not a whole number of units of "
            f"{steps_per_unit}"
        )
    lr_micro = _fixed(lr, 1_000_000, "lr")
    if lr_micro < 1 or lr_micro > 1_000_000:
        raise TaskSpecError(f"train.lr: {lr} out of range 0.000001 .. 1")
    momentum_milli = _fixed(momentum, 1_000, "momentum")
    if not 0 <= momentum_milli <= 999:
        raise TaskSpecError(f"train.momentum: {momentum} out of range 0 .. 0.999")
    spec = TrainSpec(
        units=steps // steps_per_unit,
        arch=arch,
        objective=objective,
        batch_size=batch_size,
        steps_per_unit=steps_per_unit,
        lr_micro=lr_micro,
        momentum_milli=momentum_milli,
        seed=seed,
        **_scene(scene),
    )
    return validate_spec(spec)


def describe_spec(spec: TaskSpec) -> str:
    if isinstance(spec, RenderSpec):
        return (
            f"render {spec.units * spec.images_per_unit} images of "
            f"{spec.image_size}x{spec.image_size} ({spec.units} units of {spec.images_per_unit}), "
            f"{spec.min_objects}-{spec.max_objects} objects, {spec.min_lights}-{spec.max_lights} "
            "lights"
        )
    return (
        f"train {spec.arch} on '{spec.objective}' for {spec.units * spec.steps_per_unit} steps "
        f"({spec.units} units of {spec.steps_per_unit}), batch {spec.batch_size}, lr "
        f"{Decimal(spec.lr_micro) / 1_000_000}, momentum {Decimal(spec.momentum_milli) / 1000}, "
        f"images {spec.image_size}x{spec.image_size}"
    )


@dataclass(frozen=True)
class MarketTerms:
    """A spec's unit cost against one network's market rules
    (consensus.market.check_market_rules)."""

    unit_cost: int  # operations per unit (useful_work.specs.unit_cost)
    max_unit_cost: int | None  # None: the node does not publish a limit
    unit_price: int  # the least bounty per unit at this cost
    min_bounty: int  # unit_price * units

    @property
    def over_limit(self) -> bool:
        return self.max_unit_cost is not None and self.unit_cost > self.max_unit_cost


SMALLER_UNITS = {
    "render": "--images-per-unit, --image-size, --max-objects, --max-lights",
    "train": "--steps-per-unit, --batch-size, --image-size, --max-objects, --max-lights",
}


def market_terms(spec: TaskSpec, params: dict) -> MarketTerms:
    """The terms a node's published parameters (GET /api/params) set for `spec`."""
    cost = unit_cost(spec)
    base = int(params.get("min_bounty_per_unit", 0))
    reference = params.get("reference_unit_cost")
    price = (
        unit_price(base, int(reference), cost) if reference else base
    )  # a node without cost pricing
    limit = params.get("max_unit_cost")
    return MarketTerms(cost, None if limit is None else int(limit), price, price * spec.units_total)
