"""Scene generator: determinism, ranges and the geometric promises its labels rest on."""

from __future__ import annotations

import math

import pytest
import torch

from useful_work.exact import isqrt
from useful_work.hashing import tagged_hash
from useful_work.scene import (
    COS_TABLE,
    DIR_ONE,
    GAP,
    MAX_LIGHTS,
    MAX_OBJECTS,
    SPHERE,
    SceneBatch,
    box_corners,
    generate_scenes,
    projected_boxes,
)
from useful_work.specs import SceneSettings

SEED = tagged_hash("test-scene", b"0")


def scene_hash(s: SceneBatch) -> str:
    parts = [t.cpu().contiguous().numpy().astype("<i8").tobytes() for t in s.tensors().values()]
    return tagged_hash("test-scene-golden", str(s.image_size).encode(), *parts).hex()


@pytest.fixture(scope="module")
def big() -> SceneBatch:
    return generate_scenes(SEED, 512, SceneSettings())


def test_cos_table_matches_cosine():
    for k, c in enumerate(COS_TABLE):
        assert abs(c - DIR_ONE * math.cos(2 * math.pi * k / len(COS_TABLE))) <= 0.5 + 1e-9


def test_deterministic_and_prefix_stable():
    a = generate_scenes(SEED, 12, SceneSettings())
    b = generate_scenes(SEED, 12, SceneSettings())
    c = generate_scenes(SEED, 5, SceneSettings())
    for name, t in a.tensors().items():
        assert torch.equal(t, b.tensors()[name]), name
        assert torch.equal(t[:5], c.tensors()[name]), name
    assert scene_hash(a) != scene_hash(
        generate_scenes(tagged_hash("test-scene", b"1"), 12, SceneSettings())
    )


def test_golden_scene_hash():
    s = generate_scenes(SEED, 16, SceneSettings())
    assert scene_hash(s) == GOLDEN_SCENES


def test_counts_follow_settings():
    s = generate_scenes(
        SEED, 200, SceneSettings(min_objects=2, max_objects=4, min_lights=2, max_lights=3)
    )
    assert int(s.num_objects.min()) == 2 and int(s.num_objects.max()) == 4
    assert int(s.num_lights.min()) == 2 and int(s.num_lights.max()) == 3
    with pytest.raises(ValueError):
        generate_scenes(SEED, 4, SceneSettings(min_lights=2, max_lights=1))
    with pytest.raises(ValueError):
        generate_scenes(SEED, 0, SceneSettings())


def test_lights(big: SceneBatch):
    n = big.num_lights
    assert set(n.tolist()) == {1, 2, 3}
    used = torch.arange(MAX_LIGHTS).view(1, -1) < n.view(-1, 1)
    norm = (big.light_dirs**2).sum(-1)
    # Fixed-point unit vectors: |v| within 2 units of 2^14; unused slots are zero.
    assert bool(((isqrt(norm) - DIR_ONE).abs() <= 2)[used].all())
    assert bool((norm[~used] == 0).all()) and bool((big.light_intensity[~used] == 0).all())
    assert bool((big.light_dirs[..., 2][used] > DIR_ONE // 2).all())  # above 30 degrees
    rows = torch.arange(big.count)
    assert torch.equal(big.dominant_dir, big.light_dirs[rows, big.dominant_index])
    others = big.light_intensity.masked_fill(
        torch.nn.functional.one_hot(big.dominant_index, MAX_LIGHTS).bool(), -1
    )
    assert bool((big.light_intensity[rows, big.dominant_index] > others.amax(-1)).all())


def test_objects_rest_on_ground_apart_and_in_view(big: SceneBatch):
    present = torch.arange(MAX_OBJECTS).view(1, -1) < big.num_objects.view(-1, 1)
    assert torch.equal(present, big.obj_class >= 0)
    assert bool((big.obj_center[..., 2] == big.obj_half[..., 2])[present].all())  # bottom at z = 0
    spheres = big.obj_class == SPHERE
    assert bool((big.obj_half[spheres] == big.obj_radius[spheres].unsqueeze(-1)).all())
    # Footprints (bounding circles in the ground plane) are at least 2 * GAP apart.
    foot = torch.where(
        big.obj_radius > 0,
        big.obj_radius,
        isqrt(big.obj_half[..., 0] ** 2 + big.obj_half[..., 1] ** 2) + 1,
    )
    d = big.obj_center[..., :2].unsqueeze(2) - big.obj_center[..., :2].unsqueeze(1)
    dist2 = (d * d).sum(-1)
    reach = foot.unsqueeze(2) + foot.unsqueeze(1) + 2 * GAP
    pair = present.unsqueeze(2) & present.unsqueeze(1) & ~torch.eye(MAX_OBJECTS, dtype=torch.bool)
    assert bool((dist2 >= reach * reach)[pair].all())
    boxes = projected_boxes(big, box_corners(big.obj_center, big.obj_half), clip=False)
    size = big.image_size
    assert bool(((boxes[..., :2] >= 0) & (boxes[..., 2:] <= size))[present].all())


def test_distances_exact(big: SceneBatch):
    for i in range(0, 512, 37):
        n = int(big.num_objects[i])
        c = big.obj_center[i].tolist()
        for a in range(MAX_OBJECTS):
            for b in range(MAX_OBJECTS):
                want = (
                    math.isqrt(sum((c[a][k] - c[b][k]) ** 2 for k in range(3)))
                    if a < n and b < n
                    else 0
                )
                assert int(big.distances[i, a, b]) == want


GOLDEN_SCENES = "4a1cde02eec71e9c1d3d26e4cbcf7a7ac8b78c1ef7a59ee651f7f882b66bf530"
