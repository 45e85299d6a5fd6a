"""User task options mapped onto specs, each error naming the field (and the option that sets
it)."""

from __future__ import annotations

import pytest

from p2p.wallet.task_options import option_hint, render_spec, train_spec
from useful_work.specs import (
    RenderSpec,
    SceneSettings,
    TaskSpecError,
    TrainSpec,
    encode_spec,
    parse_spec,
)


def test_render_options_give_exactly_the_images_asked_for():
    spec = render_spec(12, 2, SceneSettings(image_size=16, max_objects=2))
    assert spec == RenderSpec(units=6, images_per_unit=2, image_size=16, max_objects=2)
    assert render_spec(100).images_per_unit == 10 and render_spec(100).units == 10
    assert render_spec(7).images_per_unit == 7 and render_spec(97).units == 97
    assert parse_spec(encode_spec(spec)) == spec


def test_train_options_map_exactly():
    spec = train_spec(
        40, lr="0.01", momentum="0.5", objective="light-direction", batch_size=8, seed=3
    )
    assert spec == TrainSpec(
        units=20,
        objective="light-direction",
        batch_size=8,
        steps_per_unit=2,
        lr_micro=10_000,
        momentum_milli=500,
        seed=3,
    )
    assert train_spec(9).steps_per_unit == 1 and train_spec(9).units == 9
    assert train_spec(12, 4).units == 3
    assert train_spec(2, lr="0.000001").lr_micro == 1


@pytest.mark.parametrize(
    ("build", "field", "option"),
    [
        (lambda: render_spec(0), "render.count", "--count"),
        (lambda: render_spec(10, 3), "render.images_per_unit", "--images-per-unit"),
        (
            lambda: render_spec(8, scene=SceneSettings(image_size=8)),
            "render.image_size",
            "--image-size",
        ),
        (
            lambda: render_spec(8, scene=SceneSettings(min_objects=5, max_objects=2)),
            "render.min_objects",
            "--min-objects",
        ),
        (lambda: render_spec(8, 300), "render.images_per_unit", "--images-per-unit"),
        (lambda: train_spec(0), "train.steps", "--steps"),
        (lambda: train_spec(10, 3), "train.steps_per_unit", "--steps-per-unit"),
        (lambda: train_spec(10, lr="0.0000001"), "train.lr", "--lr"),
        (lambda: train_spec(10, lr="2"), "train.lr", "--lr"),
        (lambda: train_spec(10, lr="fast"), "train.lr", "--lr"),
        (lambda: train_spec(10, lr="nan"), "train.lr", "--lr"),
        (lambda: train_spec(10, momentum="1"), "train.momentum", "--momentum"),
        (lambda: train_spec(10, objective="colours"), "train.objective", "--objective"),
        (lambda: train_spec(10, arch="resnet"), "train.arch", "--arch"),
        (lambda: train_spec(10, batch_size=0), "train.batch_size", "--batch-size"),
        (
            lambda: train_spec(10, scene=SceneSettings(image_size=30)),
            "train.image_size",
            "--image-size",
        ),
        (
            lambda: train_spec(10, scene=SceneSettings(min_lights=2, max_lights=2)),
            "train.max_lights",
            "--max-lights",
        ),
    ],
)
def test_out_of_range_options_name_the_field(build, field, option):
    with pytest.raises(TaskSpecError) as exc:
        build()
    assert str(exc.value).startswith(field + ":")
    assert option in option_hint(exc.value)
