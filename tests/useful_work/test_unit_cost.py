"""The unit cost model: exact values for the default specs, and monotone in every field that adds
work.

(How closely it tracks measured time is a benchmark, `pouw bench work --cost-only`, not a test.)
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from useful_work.model import ModelConfig
from useful_work.specs import RenderSpec, TaskSpecError, TrainSpec, unit_cost

# (spec, field, values in increasing order): every other field stays as in the spec
GROWS = [
    (TrainSpec(), "batch_size", (1, 2, 32, 256)),
    (TrainSpec(), "steps_per_unit", (1, 2, 3, 64)),
    (TrainSpec(), "image_size", (16, 20, 32, 64)),
    (TrainSpec(), "min_objects", (1, 2, 6)),
    (TrainSpec(), "max_objects", (1, 2, 6)),
    (TrainSpec(), "min_lights", (1, 2)),
    (TrainSpec(), "max_lights", (2, 3)),
    (TrainSpec(), "objective", ("lights", "light-direction")),
    (RenderSpec(), "images_per_unit", (1, 2, 16, 256)),
    (RenderSpec(), "image_size", (16, 17, 32, 128)),
    (RenderSpec(), "min_objects", (1, 2, 6)),
    (RenderSpec(), "max_objects", (1, 2, 6)),
    (RenderSpec(), "min_lights", (1, 2, 3)),
    (RenderSpec(), "max_lights", (1, 2, 3)),
]


def test_gemm_macs_follow_the_layer_shapes():
    # conv1 (27 + 1) * 8 * 32^2 + 27 * 8 * 32^2; conv2 (72 + 1 + 72 + 72) * 16 * 16^2; heads 3 *
    # 1024 * 3
    assert ModelConfig().gemm_macs_per_image() == 229_376 + 221_184 + 888_832 + 9_216 == 1_348_608
    assert ModelConfig(direction=True).gemm_macs_per_image() == 1_348_608 + 3 * 1024 * 3
    assert ModelConfig(image_size=64).gemm_macs_per_image() == 4 * 1_348_608


def test_default_costs():
    image = 400_000 + 32 * 32 * (480 + 24 * 7 + 8 * 7 * 4)  # 1-6 objects, 1-3 lights
    assert unit_cost(RenderSpec()) == 24_000_000 + 16 * image == 44_686_848
    assert unit_cost(TrainSpec()) == 2 * (24_000_000 + 32 * (image + 1_348_608)) == 217_058_304


def test_cost_ignores_what_does_not_change_the_work():
    base = unit_cost(TrainSpec())
    assert unit_cost(TrainSpec(units=1000, lr_micro=1, momentum_milli=0, seed=7)) == base
    assert unit_cost(RenderSpec(units=1)) == unit_cost(RenderSpec(units=1_000_000))


@pytest.mark.parametrize(
    ("spec", "name", "values"), GROWS, ids=[f"{s.kind}.{n}" for s, n, _ in GROWS]
)
def test_cost_grows_with_every_field_that_adds_work(spec, name, values):
    costs = [unit_cost(replace(spec, **{name: v})) for v in values]
    assert all(a < b for a, b in zip(costs, costs[1:])), costs


def test_an_invalid_spec_has_no_cost():
    with pytest.raises(TaskSpecError, match="train.batch_size"):
        unit_cost(TrainSpec(batch_size=0))
