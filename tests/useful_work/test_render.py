"""Renderer, render task and dataset export: determinism, golden bits, label sanity, digests."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from useful_work.export_dataset import (
    DatasetError,
    RenderedDataset,
    export_dataset,
    export_render_task,
    load_dataset,
)
from useful_work.hashing import tagged_hash
from useful_work.render import RenderBatch, render_batch
from useful_work.render_task import STATE_SIZE, RenderTask, canonical_arrays, unit_digest
from useful_work.scene import DIR_ONE, SPHERE
from useful_work.specs import RenderSpec, SceneSettings
from useful_work.tasks import make_task

SEED = tagged_hash("test-render", b"0")
SETTINGS = SceneSettings()


def batch_hashes(b: RenderBatch) -> tuple[str, str, str]:
    return (
        tagged_hash("t-img", b.images.cpu().numpy().tobytes()).hex()[:32],
        tagged_hash("t-mask", b.mask.cpu().numpy().astype("<i8").tobytes()).hex()[:32],
        tagged_hash("t-depth", b.depth.cpu().numpy().astype("<i8").tobytes()).hex()[:32],
    )


@pytest.fixture(scope="module")
def batch() -> RenderBatch:
    return render_batch(SEED, 64, SETTINGS)


def test_shapes_and_types(batch: RenderBatch):
    assert batch.images.shape == (64, 32, 32, 3) and batch.images.dtype == torch.uint8
    assert batch.mask.shape == (64, 32, 32) and batch.mask.dtype == torch.int64
    assert batch.depth.shape == (64, 32, 32) and batch.depth.dtype == torch.int64
    assert batch.scenes.num_lights.shape == (64,) and batch.scenes.dominant_dir.shape == (64, 3)
    assert batch.scenes.light_dirs.shape == (64, 3, 3) and batch.scenes.obj_class.shape == (64, 6)
    json.dumps(batch.all_labels())  # plain JSON values


def test_deterministic_prefix_stable_and_seed_dependent(batch: RenderBatch):
    again = render_batch(SEED, 64, SETTINGS)
    assert batch_hashes(again) == batch_hashes(batch)
    prefix = render_batch(SEED, 5, SETTINGS)
    assert torch.equal(prefix.images, batch.images[:5]) and torch.equal(
        prefix.depth, batch.depth[:5]
    )
    other = render_batch(tagged_hash("test-render", b"1"), 64, SETTINGS)
    assert not torch.equal(other.images, batch.images)


def test_same_bits_with_1_and_2_threads():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = batch_hashes(render_batch(SEED, 64, SETTINGS))
        torch.set_num_threads(2)
        two = batch_hashes(render_batch(SEED, 64, SETTINGS))
    finally:
        torch.set_num_threads(before)
    assert one == two


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_same_bits_on_cuda(batch: RenderBatch):
    assert batch_hashes(render_batch(SEED, 64, SETTINGS, device="cuda")) == batch_hashes(batch)


def test_golden_render():
    assert batch_hashes(render_batch(SEED, 16, SETTINGS)) == GOLDEN_32
    assert batch_hashes(render_batch(SEED, 2, SceneSettings(image_size=96))) == GOLDEN_96


def test_masks_boxes_and_depth(batch: RenderBatch):
    labels = batch.all_labels()
    mask, depth = batch.mask.numpy(), batch.depth.numpy()
    assert (depth > 0).all()  # the ground fills every frame
    for i, lab in enumerate(labels):
        assert 1 <= lab["num_lights"] <= 3 and lab["num_objects"] == len(lab["objects"])
        assert mask[i].max() <= lab["num_objects"]
        for j, obj in enumerate(lab["objects"]):
            ys, xs = np.nonzero(mask[i] == j + 1)
            assert len(xs) == obj["pixels"]
            x0, y0, x1, y1 = obj["box2d"]
            assert ((xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)).all(), (i, j)
            if len(xs):
                assert obj["visible_box"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            else:
                assert obj["visible_box"] == [-1, -1, -1, -1]
        d = lab["distances"]
        for a in range(len(d)):
            for b in range(len(d)):
                ca, cb = lab["objects"][a]["center"], lab["objects"][b]["center"]
                assert d[a][b] == d[b][a] == math.isqrt(sum((ca[k] - cb[k]) ** 2 for k in range(3)))


def test_isqrt53_exact_and_size_limit():
    from useful_work.exact import isqrt
    from useful_work.render import _isqrt53

    k = torch.cat([torch.arange(1, 5000), torch.tensor([2**26 - 1, 94906265, 94906266])])
    x = torch.cat([k * k - 1, k * k, k * k + 1, torch.tensor([0, 2**53 - 1])])
    x = x[x < 2**53]
    assert torch.equal(_isqrt53(x), isqrt(x))
    with pytest.raises(ValueError):
        render_batch(SEED, 1, SceneSettings(image_size=130))


def test_hit_points_lie_on_surfaces():
    """Depth along each pixel ray lands on the ground (mask 0) or on the surface of the masked
    object."""
    from useful_work.render import pixel_rays

    b = render_batch(SEED, 16, SceneSettings(image_size=48))
    s = b.scenes
    rays = pixel_rays(s).double() / DIR_ONE  # [B,H,W,3]
    p = s.cam_pos.double().view(-1, 1, 1, 3) + rays * b.depth.double().unsqueeze(-1)
    ground = b.mask == 0
    assert p[..., 2][ground].abs().max() <= 2.0
    for i in range(s.count):
        for j in range(int(s.num_objects[i])):
            m = b.mask[i] == j + 1
            if not bool(m.any()):
                continue
            rel = p[i][m] - s.obj_center[i, j].double()
            half = s.obj_half[i, j].double()
            assert bool((rel.abs() <= half + 2.0).all()), (i, j)
            if int(s.obj_class[i, j]) == SPHERE:
                assert bool(((rel.norm(dim=-1) - float(s.obj_radius[i, j])).abs() <= 2.0).all())


def test_light_count_changes_the_picture():
    """The same scene lit by more lights has more, lighter shadows: the count is visible."""
    seed = tagged_hash("test-render", b"lights")
    one = render_batch(seed, 32, SceneSettings(min_lights=1, max_lights=1))
    three = render_batch(seed, 32, SceneSettings(min_lights=3, max_lights=3))
    ground = (one.mask == 0) & (three.mask == 0)
    lum1 = one.images.int().sum(-1)[ground]
    lum3 = three.images.int().sum(-1)[ground]
    dark1 = (lum1 < 150).float().mean()
    dark3 = (lum3 < 150).float().mean()
    assert dark1 > 0.02 and dark3 < dark1 / 4


def test_render_task_units():
    task = RenderTask(RenderSpec(units=3, images_per_unit=8))
    assert isinstance(make_task(RenderSpec(units=3, images_per_unit=8)), RenderTask)
    s0 = task.initial_state()
    assert len(s0) == STATE_SIZE and task.describe_state(s0)["units_done"] == 0
    seed = tagged_hash("test-render", b"unit")
    s1, d1 = task.run_unit(s0, seed)
    assert task.run_unit(s0, seed) == (s1, d1)
    assert len(d1) == 32 and task.describe_state(s1)["units_done"] == 1
    s2, d2 = task.run_unit(s1, tagged_hash("test-render", b"unit2"))
    assert d2 != d1 and task.describe_state(s2)["images_done"] == 16
    assert task.run_unit(s0, tagged_hash("test-render", b"unit2"))[0] != s2  # the state chains
    for bad in (b"", s0[:-1], s0 + b"\0", b"XXXX" + s0[4:]):
        with pytest.raises(ValueError):
            task.run_unit(bad, seed)
    with pytest.raises(ValueError):
        task.describe_state("not bytes")  # type: ignore[arg-type]


def test_digest_covers_images_masks_depth_and_labels():
    task = RenderTask(RenderSpec(units=1, images_per_unit=4))
    seed = tagged_hash("test-render", b"digest")
    b = task.render_unit(seed)
    images, mask, depth = canonical_arrays(b)
    labels = b.all_labels()
    digest = unit_digest(images, mask, depth, labels)
    assert digest == task.run_unit(task.initial_state(), seed)[1]
    assert digest.hex() == GOLDEN_UNIT
    for k in range(3):
        arrays = [images.copy(), mask.copy(), depth.copy()]
        arrays[k].reshape(-1)[17] ^= 1
        assert unit_digest(*arrays, labels) != digest
    changed = json.loads(json.dumps(labels))
    changed[2]["num_lights"] += 1
    assert unit_digest(images, mask, depth, changed) != digest


def test_export_round_trip_and_tamper(tmp_path):
    spec = RenderSpec(units=2, images_per_unit=4)
    task = RenderTask(spec)
    seeds = [tagged_hash("test-export", bytes([u])) for u in range(2)]
    state, digests = task.initial_state(), []
    for s in seeds:
        state, d = task.run_unit(state, s)
        digests.append(d)
    out = export_render_task(tmp_path / "ds", spec, seeds, digests)
    data = load_dataset(out, expected_digests=digests)
    b = render_batch(seeds[1], 4, spec.scene)
    assert np.array_equal(data.images[4:], b.images.numpy()) and np.array_equal(
        data.depth[4:], b.depth.numpy()
    )
    assert data.labels[5] == b.labels(1)
    ds = RenderedDataset(out, target="lights")
    image, target = ds[5]
    assert image.shape == (3, 32, 32) and target == b.labels(1)["num_lights"] - 1

    with pytest.raises(DatasetError, match="unit 1"):
        export_render_task(tmp_path / "bad", spec, seeds, [digests[0], digests[0]])
    # Flip one depth value in the second unit: loading names that unit.
    with np.load(out / "dataset.npz") as z:
        arrays = {k: z[k].copy() for k in z.files}
    arrays["depth"][6, 3, 3] += 1
    np.savez_compressed(out / "dataset.npz", **arrays)
    with pytest.raises(DatasetError, match="unit 1"):
        load_dataset(out)
    load_dataset(out, verify=False)
    with pytest.raises(ValueError):
        export_dataset(tmp_path / "x", [(seeds[0], 2)], SETTINGS, expected_digests=[])


def test_contact_sheet(tmp_path):
    from useful_work.contact_sheet import save_contact_sheet

    path = save_contact_sheet(render_batch(SEED, 4, SETTINGS), tmp_path / "sheet.png", columns=2)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# Pinned bits: any change to the scene generator, the renderer or the labels changes these.
GOLDEN_32 = (
    "943f1e39e34a8e0fdb120da09ec1d98b",
    "345b70c83110204c65f407d0b3f62170",
    "e2e2c868829cf35273cd24e75ef79d21",
)
GOLDEN_96 = (
    "5bdb682b465572d4d255ce8483b09fa6",
    "8cda42068aa5d264b5166feb923e7617",
    "eb32e7cd66f10536930041e391299dec",
)
GOLDEN_UNIT = "e05e0b25274413ce800facb433b0f6aab88f1052e0497f6884b5ce3cdd06b962"
