"""Seed -> a batch of scenes in integer millimetres, with the exact labels only a generator knows.

World frame: x to the right, y away from the camera, z up; the ground is the plane z = 0.
Every scene has 1..6 objects (sphere, box, cylinder) resting on the ground without touching each
other, 1..3 directional lights above the horizon, low ambient light, and a camera looking down at
the objects. All values are int64 tensors drawn from the counter-based PRNG (one block of words
per image, so image i of a batch depends only on (seed, i)); directions are fixed-point vectors
scaled by 2^14, sizes and positions are millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from useful_work.exact import floor_div, isqrt, shift_round
from useful_work.prng import Prng
from useful_work.specs import SceneSettings

DIR_BITS = 14
DIR_ONE = 1 << DIR_BITS
MAX_OBJECTS = 6
MAX_LIGHTS = 3
CLASSES = ("sphere", "box", "cylinder")
SPHERE, BOX, CYLINDER = 0, 1, 2

# round(2^14 * cos(k * pi / 64)) for k = 0..32: a quarter turn in 128 steps of 2.8125 degrees.
_QUARTER_COS = (
    16384, 16364, 16305, 16207, 16069, 15893, 15679, 15426, 15137, 14811, 14449, 14053, 13623,
    13160, 12665, 12140, 11585, 11003, 10394, 9760, 9102, 8423, 7723, 7005, 6270, 5520, 4756,
    3981, 3196, 2404, 1606, 804, 0,
)  # fmt: skip
ANGLE_STEPS = 128


def _cos_table() -> tuple[int, ...]:
    """cos(2 pi k / 128) * 2^14 for k = 0..127, from the quarter table by symmetry."""
    out = []
    for k in range(ANGLE_STEPS):
        q, r = divmod(k, 32)
        if q == 0:
            out.append(_QUARTER_COS[r])
        elif q == 1:
            out.append(-_QUARTER_COS[32 - r])
        elif q == 2:
            out.append(-_QUARTER_COS[r])
        else:
            out.append(_QUARTER_COS[32 - r])
    return tuple(out)


COS_TABLE = _cos_table()

# Light elevations are table steps 11..22 (30.9 .. 61.9 degrees above the horizon).
MIN_ELEVATION_STEP, MAX_ELEVATION_STEP = 11, 22
# Light strengths (1024 = 1.0): the direct light of a scene sums to TOTAL_DIRECT however many
# lights.
TOTAL_DIRECT = 1280
DOMINANT_WEIGHT = (1000, 1150)  # disjoint from the others' range, so the brightest light is unique
OTHER_WEIGHT = (780, 930)
AMBIENT = (300, 420)  # 4096 = 1.0
# Light tints (256 = 1.0): each light of a scene gets a different one, so its shadow has its own
# hue.
TINTS = ((256, 222, 176), (176, 212, 256), (236, 248, 236), (256, 190, 220), (196, 256, 196))
OBJECT_COLORS = (
    (220, 40, 40), (40, 180, 60), (50, 90, 230), (235, 200, 40),
    (200, 60, 200), (40, 200, 210), (240, 130, 30), (130, 70, 220),
)  # fmt: skip
GROUND_BASE = (170, 165, 150)

# Placement: a 3 x 3 grid of cells; each object's footprint lies inside its own cell, so none touch,
# and the camera ranges below keep every object's projected 3D box inside the image.
CELL_X, CELL_Y = 800, 1000
GAP = 30
FIELD_Y = 200  # the grid's centre row, in mm along y
SPHERE_RADIUS = (190, 320)
BOX_HALF_XY = (140, 260)
BOX_HALF_Z = (120, 330)
CYL_RADIUS = (150, 290)
CYL_HALF_Z = (150, 380)

# Camera: behind (negative y) and above the field, looking down at about 50 degrees.
CAM_X = (-200, 200)
CAM_BACK = (3300, 3800)
CAM_HEIGHT = (3900, 4500)
LOOK_JITTER = 100
FOCAL_NUM, FOCAL_DEN = (
    3,
    1,
)  # focal length in half-pixel units = 3 * image_size (a 37 degree field of view)


def focal_half_pixels(image_size: int) -> int:
    """Focal length in half-pixel units: a pixel ray is F*f + R*u + U*v with u, v odd half-pixel
    offsets."""
    return image_size * FOCAL_NUM // FOCAL_DEN


@dataclass
class SceneBatch:
    """B scenes as int64 tensors; object fields are padded to MAX_OBJECTS, light fields to
    MAX_LIGHTS."""

    image_size: int
    num_lights: torch.Tensor  # [B] in 1..3
    light_dirs: torch.Tensor  # [B,3,3] unit vectors * 2^14 toward each light; unused lights zero
    light_intensity: torch.Tensor  # [B,3] 1024 = 1.0; unused lights zero
    light_tint: torch.Tensor  # [B,3,3] RGB, 256 = 1.0; unused lights zero
    dominant_index: torch.Tensor  # [B] index of the brightest light
    dominant_dir: torch.Tensor  # [B,3] its direction
    ambient: torch.Tensor  # [B] 4096 = 1.0
    num_objects: torch.Tensor  # [B] in min..max objects
    obj_class: torch.Tensor  # [B,6] 0 sphere, 1 box, 2 cylinder, -1 unused
    obj_center: torch.Tensor  # [B,6,3] mm; centre of the bounding box
    obj_half: torch.Tensor  # [B,6,3] mm; half extents of the bounding box
    obj_radius: torch.Tensor  # [B,6] mm; sphere or cylinder radius, 0 for boxes
    obj_color: torch.Tensor  # [B,6,3] albedo 0..255
    distances: torch.Tensor  # [B,6,6] floor of centre-to-centre distance in mm
    box2d: (
        torch.Tensor
    )  # [B,6,4] x0, y0, x1, y1 pixel box of the projected 3D box (clipped to the image)
    ground_color: torch.Tensor  # [B,3] albedo 0..255
    cam_pos: torch.Tensor  # [B,3] mm
    cam_look: torch.Tensor  # [B,3] mm
    cam_forward: torch.Tensor  # [B,3] * 2^14
    cam_right: torch.Tensor  # [B,3] * 2^14
    cam_up: torch.Tensor  # [B,3] * 2^14

    @property
    def count(self) -> int:
        return int(self.num_lights.shape[0])

    @property
    def focal(self) -> int:
        return focal_half_pixels(self.image_size)

    def to(self, device: str | torch.device) -> SceneBatch:
        values: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        moved: dict[str, Any] = {
            k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in values.items()
        }
        return SceneBatch(**moved)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensor fields by name, in declaration order (the order used for hashing)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }


# Word layout of one image's block of PRNG words.
_W_NOBJ, _W_NLIGHT, _W_AMBIENT, _W_GROUND, _W_CAM = 0, 1, 2, 3, 6  # ground 3 words, camera 5 words
_W_CELLS = 11  # 9 words: cell permutation
_W_OBJ = 20  # 6 objects x 7 words: class, 3 sizes, 2 offsets, colour
_W_LIGHT = 62  # base azimuth, then 3 lights x 3 words: azimuth jitter, elevation, weight
_W_TINT = 72  # 5 words: tint permutation
WORDS_PER_SCENE = 77


def _uniform(
    words: torch.Tensor, low: int | torch.Tensor, high: int | torch.Tensor
) -> torch.Tensor:
    """Integers in [low, high] from 32-bit words by multiply-shift (as Prng.below)."""
    return low + ((words * (high - low + 1)) >> 32)


def _permutation(words: torch.Tensor) -> torch.Tensor:
    """Rank order of the words along the last axis (ties broken by position): a random
    permutation."""
    n = words.shape[-1]
    key = words * n + torch.arange(n, dtype=torch.int64, device=words.device)
    return torch.argsort(key, dim=-1)


def normalize(v: torch.Tensor) -> torch.Tensor:
    """Integer vector -> fixed-point unit vector * 2^14 (floor division by the exact isqrt norm)."""
    n = isqrt((v * v).sum(-1)).clamp_min(1)
    return floor_div(v << DIR_BITS, n.unsqueeze(-1))


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    ax, ay, az = a.unbind(-1)
    bx, by, bz = b.unbind(-1)
    return torch.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], dim=-1)


def light_direction(azimuth: torch.Tensor, elevation: torch.Tensor) -> torch.Tensor:
    """Unit vector * 2^14 toward a light at table steps (azimuth 0..127, elevation 0..32)."""
    table = torch.tensor(COS_TABLE, dtype=torch.int64, device=azimuth.device)
    a = azimuth % ANGLE_STEPS
    cos_a, sin_a = table[a], table[(a - 32) % ANGLE_STEPS]
    cos_e, sin_e = table[elevation], table[32 - elevation]
    return torch.stack(
        [shift_round(cos_e * cos_a, DIR_BITS), shift_round(cos_e * sin_a, DIR_BITS), sin_e], dim=-1
    )


def project_points(
    scenes: SceneBatch, points: torch.Tensor, sub_bits: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """World points [B,...,3] mm -> image coordinates (x right, y down) in pixels * 2^sub_bits
    (floor).

    Inverts the pixel-ray construction of render.py: pixel (px, py) has its centre at
    ((px + 0.5), (py + 0.5)) pixels. Points must lie in front of the camera.
    """
    b = scenes.count
    shape = [b] + [1] * (points.dim() - 2) + [3]
    d = points - scenes.cam_pos.view(shape)
    zf = (d * scenes.cam_forward.view(shape)).sum(-1)
    xr = (d * scenes.cam_right.view(shape)).sum(-1)
    yu = (d * scenes.cam_up.view(shape)).sum(-1)
    size, f = scenes.image_size, scenes.focal
    # u = f * xr / zf in half pixels; pixel x = (u + size) / 2.
    x = floor_div((xr * f + zf * size) << (sub_bits - 1), zf)
    y = floor_div((zf * size - yu * f) << (sub_bits - 1), zf)
    return x, y


def box_corners(center: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """The 8 corners [...,8,3] of axis-aligned boxes given by centre and half extents [...,3]."""
    signs = torch.tensor(
        [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)],
        dtype=torch.int64,
        device=center.device,
    )
    return center.unsqueeze(-2) + signs * half.unsqueeze(-2)


PROJ_SUB = 8  # sub-pixel bits of projected coordinates


def pixel_box(
    xmin: torch.Tensor,
    ymin: torch.Tensor,
    xmax: torch.Tensor,
    ymax: torch.Tensor,
    size: int,
    clip: bool = True,
) -> torch.Tensor:
    """Sub-pixel extents (from `project_points`) -> integer boxes [...,4] x0, y0, x1, y1 holding
    them."""
    # 1/16 pixel of slack covers the rounding of the integer camera basis (below 0.03 pixel at 128).
    slack = 1 << (PROJ_SUB - 4)
    box = torch.stack(
        [
            (xmin - slack) >> PROJ_SUB,
            (ymin - slack) >> PROJ_SUB,
            -((-(xmax + slack)) >> PROJ_SUB),
            -((-(ymax + slack)) >> PROJ_SUB),
        ],
        -1,
    )
    return box.clamp(0, size) if clip else box


def projected_boxes(scenes: SceneBatch, points: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """Pixel boxes [B,K,4] (x0, y0, x1, y1; pixel centres inside lie in [x0, x1)) of point sets
    [B,K,P,3]."""
    x, y = project_points(scenes, points, PROJ_SUB)
    return pixel_box(x.amin(-1), y.amin(-1), x.amax(-1), y.amax(-1), scenes.image_size, clip)


def generate_scenes(
    seed: bytes, count: int, settings: SceneSettings, device: str | torch.device = "cpu"
) -> SceneBatch:
    """The `count` scenes of `seed` under `settings`; image i depends only on (seed, i)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    if not (1 <= settings.min_objects <= settings.max_objects <= MAX_OBJECTS):
        raise ValueError(f"object counts must satisfy 1 <= min <= max <= {MAX_OBJECTS}")
    if not (1 <= settings.min_lights <= settings.max_lights <= MAX_LIGHTS):
        raise ValueError(f"light counts must satisfy 1 <= min <= max <= {MAX_LIGHTS}")
    dev = torch.device(device)
    w = Prng(seed, dev).words("scene.v1", count * WORDS_PER_SCENE).view(count, WORDS_PER_SCENE)
    i64: dict[str, Any] = dict(dtype=torch.int64, device=dev)
    slots = torch.arange(MAX_OBJECTS, **i64)
    lslots = torch.arange(MAX_LIGHTS, **i64)

    # Objects: count, class, size, cell, offset inside the cell, colour.
    num_objects = _uniform(w[:, _W_NOBJ], settings.min_objects, settings.max_objects)
    present = slots.unsqueeze(0) < num_objects.unsqueeze(1)  # [B,6]
    ow = w[:, _W_OBJ : _W_OBJ + 7 * MAX_OBJECTS].view(count, MAX_OBJECTS, 7)
    cls = _uniform(ow[..., 0], 0, len(CLASSES) - 1)
    s1, s2, s3 = ow[..., 1], ow[..., 2], ow[..., 3]
    sphere_r = _uniform(s1, *SPHERE_RADIUS)
    box_half = torch.stack(
        [_uniform(s1, *BOX_HALF_XY), _uniform(s2, *BOX_HALF_XY), _uniform(s3, *BOX_HALF_Z)], -1
    )
    cyl_r, cyl_hz = _uniform(s1, *CYL_RADIUS), _uniform(s3, *CYL_HALF_Z)
    sphere_half = sphere_r.unsqueeze(-1).expand(-1, -1, 3)
    cyl_half = torch.stack([cyl_r, cyl_r, cyl_hz], -1)
    c3 = cls.unsqueeze(-1)
    half = torch.where(c3 == SPHERE, sphere_half, torch.where(c3 == BOX, box_half, cyl_half))
    radius = torch.where(cls == SPHERE, sphere_r, torch.where(cls == BOX, 0, cyl_r))
    footprint = torch.where(
        cls == BOX, isqrt(box_half[..., 0] ** 2 + box_half[..., 1] ** 2) + 1, radius
    )
    slack = min(CELL_X, CELL_Y) // 2 - GAP - footprint  # >= 0 by the size ranges
    cells = _permutation(w[:, _W_CELLS : _W_CELLS + 9])[:, :MAX_OBJECTS]
    cell_x = (cells % 3 - 1) * CELL_X
    cell_y = (cells // 3 - 1) * CELL_Y + FIELD_Y
    cx = cell_x + _uniform(ow[..., 4], -slack, slack)
    cy = cell_y + _uniform(ow[..., 5], -slack, slack)
    center = torch.stack([cx, cy, half[..., 2]], -1)
    color = torch.tensor(OBJECT_COLORS, **i64)[_uniform(ow[..., 6], 0, len(OBJECT_COLORS) - 1)]

    p3 = present.unsqueeze(-1)
    cls = torch.where(present, cls, -1)
    center = torch.where(p3, center, 0)
    half = torch.where(p3, half, 0)
    radius = torch.where(present, radius, 0)
    color = torch.where(p3, color, 0)
    diff = center.unsqueeze(2) - center.unsqueeze(1)
    pair = present.unsqueeze(2) & present.unsqueeze(1)
    distances = torch.where(pair, isqrt((diff * diff).sum(-1)), 0)

    # Lights: spread around the compass with jitter; light 0 is the strongest.
    num_lights = _uniform(w[:, _W_NLIGHT], settings.min_lights, settings.max_lights)
    lit = lslots.unsqueeze(0) < num_lights.unsqueeze(1)  # [B,3]
    lw = w[:, _W_LIGHT + 1 : _W_LIGHT + 1 + 3 * MAX_LIGHTS].view(count, MAX_LIGHTS, 3)
    base = _uniform(w[:, _W_LIGHT], 0, ANGLE_STEPS - 1)
    spacing = ANGLE_STEPS // num_lights  # 128, 64, 42
    jitter = _uniform(lw[..., 0], -(spacing // 4).unsqueeze(1), (spacing // 4).unsqueeze(1))
    azimuth = base.unsqueeze(1) + lslots.unsqueeze(0) * spacing.unsqueeze(1) + jitter
    elevation = _uniform(lw[..., 1], MIN_ELEVATION_STEP, MAX_ELEVATION_STEP)
    dirs = torch.where(lit.unsqueeze(-1), light_direction(azimuth, elevation), 0)
    weight = torch.where(
        lslots == 0, _uniform(lw[..., 2], *DOMINANT_WEIGHT), _uniform(lw[..., 2], *OTHER_WEIGHT)
    )
    weight = torch.where(lit, weight, 0)
    intensity = floor_div(weight * TOTAL_DIRECT, weight.sum(-1, keepdim=True))
    top = intensity.amax(-1, keepdim=True)
    dominant = torch.where(intensity == top, lslots, MAX_LIGHTS).amin(-1)
    dominant_dir = dirs[torch.arange(count, device=dev), dominant]
    tint_idx = _permutation(w[:, _W_TINT : _W_TINT + len(TINTS)])[:, :MAX_LIGHTS]
    tint = torch.where(lit.unsqueeze(-1), torch.tensor(TINTS, **i64)[tint_idx], 0)
    ambient = _uniform(w[:, _W_AMBIENT], *AMBIENT)

    # Ground colour: a light neutral with a small per-scene shift.
    ground = torch.tensor(GROUND_BASE, **i64) + _uniform(w[:, _W_GROUND : _W_GROUND + 3], -12, 12)

    # Camera.
    cw = w[:, _W_CAM : _W_CAM + 5]
    look = torch.stack(
        [
            _uniform(cw[:, 0], -LOOK_JITTER, LOOK_JITTER),
            FIELD_Y + _uniform(cw[:, 1], -LOOK_JITTER, LOOK_JITTER),
            torch.zeros_like(cw[:, 0]),
        ],
        -1,
    )
    pos = look + torch.stack(
        [
            _uniform(cw[:, 2], *CAM_X),
            -_uniform(cw[:, 3], *CAM_BACK),
            _uniform(cw[:, 4], *CAM_HEIGHT),
        ],
        -1,
    )
    forward = normalize(look - pos)
    right = normalize(
        torch.stack([forward[:, 1], -forward[:, 0], torch.zeros_like(forward[:, 0])], -1)
    )
    up = shift_round(_cross(right, forward), DIR_BITS)

    scenes = SceneBatch(
        image_size=settings.image_size,
        num_lights=num_lights,
        light_dirs=dirs,
        light_intensity=intensity,
        light_tint=tint,
        dominant_index=dominant,
        dominant_dir=dominant_dir,
        ambient=ambient,
        num_objects=num_objects,
        obj_class=cls,
        obj_center=center,
        obj_half=half,
        obj_radius=radius,
        obj_color=color,
        distances=distances,
        box2d=torch.zeros(count, MAX_OBJECTS, 4, **i64),
        ground_color=ground,
        cam_pos=pos,
        cam_look=look,
        cam_forward=forward,
        cam_right=right,
        cam_up=up,
    )
    boxes = projected_boxes(scenes, box_corners(center, half))
    scenes.box2d = torch.where(p3, boxes, 0)
    return scenes
