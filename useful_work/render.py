"""Batched integer ray caster: scenes -> uint8 RGB images, instance masks and depth maps.

Every step is int64 tensor arithmetic (fixed-point rays, exact `isqrt` for quadrics, floor
division for slabs), so the bits are the same on any CPU thread count and on CUDA. Work is cut by
testing each object only against the pixels inside its projected box (primary rays) and inside the
projected box of its shadow volume (shadow rays), gathered into flat candidate lists.

Objects are one primitive: a quadric |w * (p - c)|^2 <= r^2 (w in {0,1}^3: sphere 111, vertical
cylinder 110, box 000 = no constraint) intersected with the three slabs of its bounding box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from useful_work.exact import floor_div, isqrt, shift_round
from useful_work.scene import (
    CLASSES,
    DIR_BITS,
    DIR_ONE,
    MAX_LIGHTS,
    MAX_OBJECTS,
    PROJ_SUB,
    SPHERE,
    SceneBatch,
    box_corners,
    generate_scenes,
    pixel_box,
    project_points,
)
from useful_work.specs import SceneSettings

T_FRAC = 4  # ray parameters t are in 1/16 mm along a unit direction
_T_SHIFT = DIR_BITS + T_FRAC
_FAR = 1 << 40  # "no hit" ray parameter, far beyond any scene
_IRR_BITS = 12  # irradiance: 4096 = 1.0
MAX_IMAGE_SIZE = (
    128  # the largest size a task spec allows; the fixed-point ranges are checked for it
)


@dataclass
class Hits:
    """Ray-object intervals for N (ray, object) pairs: entry and exit t, and the entry
    constraint."""

    hit: torch.Tensor  # [N] bool: the ray's half-line t > 0 meets the object
    t_near: torch.Tensor  # [N] entry parameter (1/16 mm)
    kind: torch.Tensor  # [N] entry constraint: 0 quadric, 1 + k slab of axis k


Vec = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def intersect(
    origin: Vec, direction: Vec, center: Vec, half: Vec, qmask: Vec, radius: torch.Tensor
) -> Hits:
    """Exact interval test of rays (origin mm, direction * 2^14) against objects; vectors are [N]
    triples.

    A direction component of exactly 0 is taken as 1 (2^-14): its slab then gives |t| >= 2^18 mm
    outside the slab, beyond any scene, so the result is that of the true ray without a branch.
    """
    slab_near: list[torch.Tensor] = []
    t_far: torch.Tensor | None = None
    for o, d, c, h in zip(origin, direction, center, half):
        d = torch.where(d == 0, 1, d)
        t1 = floor_div((c - h - o) << _T_SHIFT, d)
        t2 = floor_div((c + h - o) << _T_SHIFT, d)
        slab_near.append(torch.minimum(t1, t2))
        far = torch.maximum(t1, t2)
        t_far = far if t_far is None else torch.minimum(t_far, far)
    assert t_far is not None
    # Quadric |w * (o + t d - c)|^2 = r^2, with a = |w d|^2, b = w d . (o - c), c = |w (o - c)|^2 -
    # r^2: t = 2^14 (-b +- sqrt(b^2 - a c)) / a mm; a = 0 (a box, or a vertical ray on a cylinder)
    # leaves no constraint when c <= 0 and no hit otherwise.
    oc = [o - c for o, c in zip(origin, center)]
    wd = [d * w for d, w in zip(direction, qmask)]
    a = wd[0] * direction[0] + wd[1] * direction[1] + wd[2] * direction[2]
    b = wd[0] * oc[0] + wd[1] * oc[1] + wd[2] * oc[2]
    cq = (
        oc[0] * oc[0] * qmask[0]
        + oc[1] * oc[1] * qmask[1]
        + oc[2] * oc[2] * qmask[2]
        - radius * radius
    )
    disc = b * b - a * cq
    real = disc >= 0
    s = isqrt(disc.clamp_min(0))
    flat = a == 0
    a1 = torch.where(flat, 1, a)
    q_near = floor_div((-b - s) << _T_SHIFT, a1)
    q_far = floor_div((-b + s) << _T_SHIFT, a1)
    q_near = torch.where(flat, torch.where(cq <= 0, -_FAR, _FAR), torch.where(real, q_near, _FAR))
    q_far = torch.where(flat, torch.where(cq <= 0, _FAR, -_FAR), torch.where(real, q_far, -_FAR))
    t_near = torch.maximum(
        torch.maximum(q_near, slab_near[0]), torch.maximum(slab_near[1], slab_near[2])
    )
    t_far = torch.minimum(t_far, q_far)
    # The entry constraint, ties going to the lowest index.
    kind = torch.where(
        q_near == t_near,
        0,
        torch.where(slab_near[0] == t_near, 1, torch.where(slab_near[1] == t_near, 2, 3)),
    )
    return Hits(hit=(t_near <= t_far) & (t_far > 0), t_near=t_near, kind=kind)


def ball_hit(
    origin: Vec, direction: Vec, center: Vec, radius_sq: torch.Tensor, dir_sq: torch.Tensor
) -> torch.Tensor:
    """Whether the half-line origin + t * direction (t >= 0) meets the ball |p - center|^2 <=
    radius_sq.

    Division- and root-free: with b = (o - c) . d and c' = |o - c|^2 - r^2, the line meets the ball
    iff b^2 >= |d|^2 c', and the half-line does iff moreover b < 0 or the origin is inside.
    """
    oc = [o - c for o, c in zip(origin, center)]
    b = oc[0] * direction[0] + oc[1] * direction[1] + oc[2] * direction[2]
    c = oc[0] * oc[0] + oc[1] * oc[1] + oc[2] * oc[2] - radius_sq
    return (b * b >= dir_sq * c) & ((b < 0) | (c <= 0))


def _columns(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table[:, index] for a [F, M] table (gather is much faster here than index_select along dim
    1)."""
    return torch.gather(table, 1, index.view(1, -1).expand(table.shape[0], -1))


def _quadric_mask(scenes: SceneBatch) -> torch.Tensor:
    """Per object slot, the quadric's axis mask [B,6,3]: sphere 111, cylinder 110, box and unused
    000."""
    dev = scenes.obj_class.device
    table = torch.tensor(
        [[0, 0, 0], [1, 1, 1], [0, 0, 0], [1, 1, 0]], dtype=torch.int64, device=dev
    )
    return table[scenes.obj_class + 1]


def _box_pixels(
    boxes: torch.Tensor, base: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pixel of K inclusive boxes [K,4] as flat lists: (box index, base[box] + y * size + x).

    Boxes are expanded into rows, then rows into pixels, so no per-pixel division is needed.
    """
    dev = boxes.device
    x0, y0, x1, y1 = boxes.unbind(-1)
    w = (x1 - x0 + 1).clamp_min(0)
    h = (y1 - y0 + 1).clamp_min(0)
    row_box = torch.repeat_interleave(
        torch.arange(boxes.shape[0], dtype=torch.int64, device=dev), h
    )
    row_y = (
        torch.arange(row_box.shape[0], dtype=torch.int64, device=dev)
        - (torch.cumsum(h, 0) - h - y0)[row_box]
    )
    row_w = w[row_box]
    row_first = base[row_box] + row_y * size + x0[row_box] - (torch.cumsum(row_w, 0) - row_w)
    pix_row = torch.repeat_interleave(
        torch.arange(row_box.shape[0], dtype=torch.int64, device=dev), row_w
    )
    pixel = row_first[pix_row] + torch.arange(pix_row.shape[0], dtype=torch.int64, device=dev)
    return row_box[pix_row], pixel


def _candidate_boxes(boxes: torch.Tensor, valid: torch.Tensor, size: int) -> torch.Tensor:
    """Label boxes ([x0, x1) in pixel units) -> inclusive candidate pixel boxes, one pixel wider
    each side."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    cand = torch.stack([x0 - 1, y0 - 1, x1, y1], -1).clamp(0, size - 1)
    empty = torch.tensor([1, 1, 0, 0], dtype=torch.int64, device=boxes.device)
    return torch.where(valid.unsqueeze(-1), cand, empty)


def _isqrt53(x: torch.Tensor) -> torch.Tensor:
    """floor(sqrt(x)) for int64 0 <= x < 2^53: x converts to float64 exactly and its correctly
    rounded root truncates to floor(sqrt(x)) or one more, so a single downward correction is
    exact."""
    r = torch.sqrt(x.to(torch.float64)).to(torch.int64)
    return r - (r * r > x).to(torch.int64)


def _ray_components(scenes: SceneBatch) -> Vec:
    """Unit ray directions * 2^14 through every pixel centre, as x, y, z tensors [B,H*W]."""
    size, f = scenes.image_size, scenes.focal
    dev = scenes.cam_pos.device
    u = (torch.arange(size, dtype=torch.int64, device=dev) * 2 + 1 - size).view(
        1, 1, size
    )  # x right, half pixels
    v = (size - 1 - torch.arange(size, dtype=torch.int64, device=dev) * 2).view(
        1, size, 1
    )  # y up, half pixels
    b = scenes.count
    d = [
        (
            scenes.cam_forward[:, k].view(b, 1, 1) * f
            + scenes.cam_right[:, k].view(b, 1, 1) * u
            + scenes.cam_up[:, k].view(b, 1, 1) * v
        ).view(b, -1)
        for k in range(3)
    ]
    # |d| < 2^14 * 5 * 128 for images up to 128 pixels, so |d|^2 < 2^49: within _isqrt53's range.
    if size > MAX_IMAGE_SIZE:
        raise ValueError(f"image size {size} exceeds {MAX_IMAGE_SIZE}")
    n = _isqrt53(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).clamp_min(1)
    return (
        floor_div(d[0] << DIR_BITS, n),
        floor_div(d[1] << DIR_BITS, n),
        floor_div(d[2] << DIR_BITS, n),
    )


def pixel_rays(scenes: SceneBatch) -> torch.Tensor:
    """Unit ray directions * 2^14 through every pixel centre: [B,H,W,3]."""
    size = scenes.image_size
    return torch.stack(_ray_components(scenes), -1).view(scenes.count, size, size, 3)


def _shadow_boxes(scenes: SceneBatch) -> torch.Tensor:
    """Pixel boxes [B,6,3,4] holding every visible point that object j can shadow from light l.

    Such a point lies in the convex hull of the object's bounding box and of that box's top
    corners projected along the light onto the ground, so the hull's projected box covers it.
    """
    corners = box_corners(scenes.obj_center, scenes.obj_half)  # [B,6,8,3]
    cx, cy = project_points(scenes, corners, PROJ_SUB)  # [B,6,8]
    top = corners[:, :, 1::2].unsqueeze(2)  # z = +half: [B,6,1,4,3]
    light = scenes.light_dirs.view(scenes.count, 1, MAX_LIGHTS, 1, 3)
    lz = light[..., 2].clamp_min(1)
    tz = top[..., 2]
    ground = torch.stack(
        [
            top[..., 0] - floor_div(tz * light[..., 0], lz),
            top[..., 1] - floor_div(tz * light[..., 1], lz),
            torch.zeros_like(tz * lz),
        ],
        -1,
    )  # [B,6,3,4,3]
    gx, gy = project_points(scenes, ground, PROJ_SUB)  # [B,6,3,4]
    xmin = torch.minimum(cx.amin(-1, keepdim=True), gx.amin(-1))
    xmax = torch.maximum(cx.amax(-1, keepdim=True), gx.amax(-1))
    ymin = torch.minimum(cy.amin(-1, keepdim=True), gy.amin(-1))
    ymax = torch.maximum(cy.amax(-1, keepdim=True), gy.amax(-1))
    return pixel_box(
        xmin, ymin, xmax, ymax, scenes.image_size
    )  # the candidate margin absorbs the floor divisions


@dataclass
class RenderBatch:
    """Rendered images with their exact labels; tensors live on the device they were rendered on."""

    images: torch.Tensor  # [B,H,W,3] uint8
    mask: torch.Tensor  # [B,H,W] int64: 0 background, i + 1 object i
    depth: torch.Tensor  # [B,H,W] int64: mm along the ray, 0 where the ray hits nothing
    scenes: SceneBatch
    _labels: list[dict] | None = field(default=None, repr=False)

    def visible_boxes(self) -> torch.Tensor:
        """[B,6,4] tight pixel box (x0, y0, x1, y1 exclusive) of each object's mask; -1s where
        none is visible."""
        size = self.mask.shape[1]
        dev = self.mask.device
        ids = torch.arange(1, MAX_OBJECTS + 1, dtype=torch.int64, device=dev).view(1, -1, 1, 1)
        m = self.mask.unsqueeze(1) == ids  # [B,6,H,W]
        cols = m.any(2)  # [B,6,W]
        rows = m.any(3)  # [B,6,H]
        idx = torch.arange(size, dtype=torch.int64, device=dev)
        x0 = torch.where(cols, idx, size).amin(-1)
        x1 = torch.where(cols, idx + 1, 0).amax(-1)
        y0 = torch.where(rows, idx, size).amin(-1)
        y1 = torch.where(rows, idx + 1, 0).amax(-1)
        box = torch.stack([x0, y0, x1, y1], -1)
        return torch.where(cols.any(-1, keepdim=True), box, -1)

    def pixel_counts(self) -> torch.Tensor:
        """[B,6] number of mask pixels of each object."""
        ids = torch.arange(1, MAX_OBJECTS + 1, dtype=torch.int64, device=self.mask.device).view(
            1, -1, 1, 1
        )
        return (self.mask.unsqueeze(1) == ids).sum((2, 3))

    def all_labels(self) -> list[dict]:
        """Labels of every image (cached): plain ints, lists and strings, JSON- and msgpack-able."""
        if self._labels is None:
            self._labels = _labels_of(self)
        return self._labels

    def labels(self, i: int) -> dict:
        return self.all_labels()[i]


def _labels_of(batch: RenderBatch) -> list[dict]:
    s = {k: v.cpu().tolist() for k, v in batch.scenes.tensors().items()}
    vis = batch.visible_boxes().cpu().tolist()
    pix = batch.pixel_counts().cpu().tolist()
    out = []
    for i in range(batch.scenes.count):
        nl, no = s["num_lights"][i], s["num_objects"][i]
        objects = [
            {
                "class": CLASSES[s["obj_class"][i][j]],
                "center": s["obj_center"][i][j],
                "half_extents": s["obj_half"][i][j],
                "radius": s["obj_radius"][i][j],
                "color": s["obj_color"][i][j],
                "box2d": s["box2d"][i][j],
                "visible_box": vis[i][j],
                "pixels": pix[i][j],
            }
            for j in range(no)
        ]
        out.append(
            {
                "image_size": batch.scenes.image_size,
                "dir_scale": DIR_ONE,
                "num_lights": nl,
                "light_dirs": s["light_dirs"][i][:nl],
                "light_intensities": s["light_intensity"][i][:nl],
                "light_tints": s["light_tint"][i][:nl],
                "dominant_light": s["dominant_index"][i],
                "dominant_dir": s["dominant_dir"][i],
                "ambient": s["ambient"][i],
                "ground_color": s["ground_color"][i],
                "camera": {
                    "position": s["cam_pos"][i],
                    "look_at": s["cam_look"][i],
                    "focal_half_pixels": batch.scenes.focal,
                },
                "num_objects": no,
                "objects": objects,
                "distances": [row[:no] for row in s["distances"][i][:no]],
            }
        )
    return out


def _primary(scenes: SceneBatch, rays: torch.Tensor, qmask: torch.Tensor) -> torch.Tensor:
    """Nearest object hit per pixel, [B*HW] keys (t << 6 | object << 3 | entry kind); no hit: _FAR
    << 6.

    `rays` is [3, B*HW]; each object is tested against the pixels of its projected box only.
    """
    b, size = scenes.count, scenes.image_size
    hw = size * size
    dev = rays.device
    k = b * MAX_OBJECTS
    cand = _candidate_boxes(scenes.box2d, scenes.obj_class >= 0, size).view(k, 4)
    img = torch.arange(b, dtype=torch.int64, device=dev).repeat_interleave(MAX_OBJECTS)
    box, pixel = _box_pixels(cand, img * hw, size)
    per_box = torch.cat(
        [
            scenes.cam_pos.repeat_interleave(MAX_OBJECTS, 0).t(),
            scenes.obj_center.reshape(k, 3).t(),
            scenes.obj_half.reshape(k, 3).t(),
            qmask.reshape(k, 3).t(),
            scenes.obj_radius.reshape(1, k),
            torch.arange(MAX_OBJECTS, dtype=torch.int64, device=dev).repeat(b).view(1, k),
        ]
    )
    per_box = _columns(per_box, box)  # [14, N]
    r = _columns(rays, pixel)
    h = intersect(
        tuple(per_box[0:3]),
        tuple(r),
        tuple(per_box[3:6]),
        tuple(per_box[6:9]),
        tuple(per_box[9:12]),
        per_box[12],
    )
    key = (h.t_near << 6) | (per_box[13] << 3) | h.kind
    key = torch.where(h.hit & (h.t_near > 0), key, _FAR << 6)  # the camera is outside every object
    best = torch.full((b * hw,), _FAR << 6, dtype=torch.int64, device=dev)
    return best.scatter_reduce(0, pixel, key, reduce="amin")


def _shadows(
    scenes: SceneBatch, point: Vec, hit_obj: torch.Tensor, qmask: torch.Tensor
) -> torch.Tensor:
    """[B*HW,3] count of objects between each visible point (x, y, z [B*HW]) and each light (0:
    lit).

    Candidates are the pixels of each (object, light) shadow box; a bounding-ball test settles
    spheres exactly and drops most of the rest, and only the survivors get the exact interval test.
    A convex object never shadows itself where it faces the light, so a point's own object is
    skipped.
    """
    b, size = scenes.count, scenes.image_size
    hw = size * size
    dev = hit_obj.device
    k = b * MAX_OBJECTS * MAX_LIGHTS
    present = scenes.obj_class >= 0
    lit = torch.arange(MAX_LIGHTS, dtype=torch.int64, device=dev).view(
        1, 1, -1
    ) < scenes.num_lights.view(-1, 1, 1)
    sboxes = _candidate_boxes(_shadow_boxes(scenes), present.unsqueeze(-1) & lit, size).view(k, 4)
    img = torch.arange(b, dtype=torch.int64, device=dev).repeat_interleave(MAX_OBJECTS * MAX_LIGHTS)
    box, pixel = _box_pixels(sboxes, img * hw, size)

    def per_object(
        x: torch.Tensor,
    ) -> torch.Tensor:  # [B,6,...] -> [F, K] over (image, object, light)
        return x.reshape(b, MAX_OBJECTS, 1, -1).expand(-1, -1, MAX_LIGHTS, -1).reshape(k, -1).t()

    def per_light(x: torch.Tensor) -> torch.Tensor:  # [B,3,...] -> [F, K]
        return x.reshape(b, 1, MAX_LIGHTS, -1).expand(-1, MAX_OBJECTS, -1, -1).reshape(k, -1).t()

    half = scenes.obj_half
    sphere = scenes.obj_class == SPHERE
    ball_sq = torch.where(sphere, scenes.obj_radius**2, (half * half).sum(-1))
    light_sq = (scenes.light_dirs**2).sum(-1)
    slots = (
        torch.arange(MAX_OBJECTS * MAX_LIGHTS, dtype=torch.int64, device=dev).repeat(b).view(1, k)
    )
    ball_table = torch.cat(
        [
            per_light(scenes.light_dirs),  # 0:3
            per_object(scenes.obj_center),  # 3:6
            per_object(ball_sq),  # 6
            per_light(light_sq),  # 7
            slots // MAX_LIGHTS,  # 8 object
            slots % MAX_LIGHTS,  # 9 light
            per_object(sphere.to(torch.int64)),  # 10
        ]
    )
    exact_table = torch.cat([per_object(half), per_object(qmask), per_object(scenes.obj_radius)])
    per_box = _columns(ball_table, box)  # [11, N]
    at = _columns(torch.stack([*point, hit_obj]), pixel)  # [4, N]
    p, lv, center = tuple(at[0:3]), tuple(per_box[0:3]), tuple(per_box[3:6])
    near = ball_hit(p, lv, center, per_box[6], per_box[7]) & (at[3] != per_box[8])
    is_sphere = per_box[10] == 1
    exact = torch.nonzero(near & ~is_sphere).squeeze(1)
    pe, ae = _columns(per_box, exact), _columns(at, exact)
    shape = _columns(exact_table, box.index_select(0, exact))
    h = intersect(
        tuple(ae[0:3]),
        tuple(pe[0:3]),
        tuple(pe[3:6]),
        tuple(shape[0:3]),
        tuple(shape[3:6]),
        shape[6],
    )
    slot = pixel * MAX_LIGHTS + per_box[9]
    counts = torch.zeros(b * hw * MAX_LIGHTS, dtype=torch.int64, device=dev)
    counts.index_add_(0, slot, (near & is_sphere).to(torch.int64))
    counts.index_add_(0, slot.index_select(0, exact), h.hit.to(torch.int64))
    return counts.view(b * hw, MAX_LIGHTS)


def _tone_table(device: torch.device) -> torch.Tensor:
    """Linear 0..255 -> display 0..255: 3/4 identity + 1/4 a gamma-0.5 curve (exact isqrt),
    lifting only the darkest shadows."""
    return torch.tensor(
        [(3 * i + math.isqrt(255 * i)) >> 2 for i in range(256)], dtype=torch.int64, device=device
    )


def _shade(
    albedo: torch.Tensor,
    cos: torch.Tensor,
    lit: torch.Tensor,
    weight: torch.Tensor,
    ambient: torch.Tensor,
    tone: torch.Tensor,
) -> torch.Tensor:
    """Display RGB 0..255 of albedo [...,3] under ambient [...] plus each light l (cos [...,L], lit
    0/1 [...,L], weight = intensity * tint [...,L,3]): tone(albedo * (ambient + sum_l lit cos
    weight) / 4096)."""
    irr = ((cos * lit).unsqueeze(-1) * weight).sum(-2)  # 2^14 * 2^10 * 2^8
    total = shift_round(irr, DIR_BITS + 10 + 8 - _IRR_BITS) + ambient.unsqueeze(-1)
    linear = ((albedo * total) >> _IRR_BITS).clamp(0, 255)
    return tone[linear]


def _flat_normals(scenes: SceneBatch) -> torch.Tensor:
    """Unit normals * 2^14 of the flat surfaces [B,1+3*6+1,3]: ground, each object's x, y, z face
    toward the camera (the side a camera ray enters), and a last all-zero entry for rays that hit
    nothing."""
    b = scenes.count
    dev = scenes.cam_pos.device
    eye = torch.eye(3, dtype=torch.int64, device=dev) * DIR_ONE
    side = torch.sign(scenes.cam_pos.unsqueeze(1) - scenes.obj_center)  # [B,6,3]
    faces = (side.unsqueeze(-1) * eye).view(b, 3 * MAX_OBJECTS, 3)
    ground = eye[2].expand(b, 1, 3)
    return torch.cat([ground, faces, torch.zeros(b, 1, 3, dtype=torch.int64, device=dev)], 1)


def render_scenes(scenes: SceneBatch) -> RenderBatch:
    """Ray-cast a scene batch on the device its tensors live on."""
    dev = scenes.cam_pos.device
    b, size = scenes.count, scenes.image_size
    hw = size * size
    dx, dy, dz = (d.reshape(-1) for d in _ray_components(scenes))  # [B*HW]
    qmask = _quadric_mask(scenes)
    best = _primary(scenes, torch.stack([dx, dy, dz]), qmask)

    # Nearest surface: an object, else the ground plane z = 0, else nothing.
    ox, oy, oz = (c.repeat_interleave(hw) for c in scenes.cam_pos.unbind(-1))
    down = dz < 0
    if bool(down.all()):  # the usual case; the general branch gives the same values
        t_ground = floor_div((-oz) << _T_SHIFT, dz)
    else:
        t_ground = torch.where(down, floor_div((-oz) << _T_SHIFT, torch.where(down, dz, -1)), _FAR)
    t_obj = best >> 6
    on_obj = t_obj < t_ground
    t = torch.minimum(t_obj, t_ground)
    any_hit = t < _FAR
    hit_obj = torch.where(on_obj, (best >> 3) & 7, -1)
    tc = t * any_hit
    point = (
        ox + ((tc * dx) >> _T_SHIFT),
        oy + ((tc * dy) >> _T_SHIFT),
        oz + ((tc * dz) >> _T_SHIFT),
    )
    shadow = _shadows(scenes, point, hit_obj, qmask)
    pattern = (shadow[:, 0] > 0) * 1 + (shadow[:, 1] > 0) * 2 + (shadow[:, 2] > 0) * 4  # [B*HW]

    # Flat surfaces (ground, box faces, cylinder tops) have one colour per image, surface and
    # shadow pattern: shade that palette once, then look pixels up in it.
    tone = _tone_table(dev)
    weight = scenes.light_intensity.unsqueeze(-1) * scenes.light_tint  # [B,3,3]
    n_flat = 2 + 3 * MAX_OBJECTS
    normals = _flat_normals(scenes)  # [B,20,3]
    flat_cos = shift_round(
        (normals.unsqueeze(2) * scenes.light_dirs.unsqueeze(1)).sum(-1), DIR_BITS
    ).clamp(0, DIR_ONE)
    albedo = torch.cat(
        [
            scenes.ground_color.unsqueeze(1),
            scenes.obj_color.repeat_interleave(3, 1),
            torch.zeros_like(scenes.ground_color).unsqueeze(1),
        ],
        1,
    )  # [B,20,3]
    bits = torch.arange(8, dtype=torch.int64, device=dev)
    lit_patterns = 1 - (
        (bits.unsqueeze(-1) >> torch.arange(MAX_LIGHTS, dtype=torch.int64, device=dev)) & 1
    )  # [8,3]
    palette = _shade(
        albedo.view(b, n_flat, 1, 3),
        flat_cos.view(b, n_flat, 1, 3),
        lit_patterns.view(1, 1, 8, 3),
        weight.view(b, 1, 1, MAX_LIGHTS, 3),
        scenes.ambient.view(b, 1, 1),
        tone,
    )  # [B,20,8,3]
    kind = best & 7
    surface = torch.where(on_obj, 3 * hit_obj + kind, torch.where(any_hit, 0, n_flat - 1))
    img_base = torch.arange(b, dtype=torch.int64, device=dev).repeat_interleave(hw) * (n_flat * 8)
    pixels = palette.view(-1, 3).index_select(0, img_base + surface * 8 + pattern)

    # Curved surfaces (quadrics entered through their curved side) are shaded per pixel.
    quad = torch.nonzero(on_obj & (kind == 0)).squeeze(1)
    q_img = quad // hw
    q_obj = q_img * MAX_OBJECTS + hit_obj.index_select(0, quad)
    q_point = torch.stack([c.index_select(0, quad) for c in point], -1)
    rel = (q_point - scenes.obj_center.view(-1, 3)[q_obj]) * qmask.view(-1, 3)[q_obj]
    inv_r = floor_div(
        torch.full_like(scenes.obj_radius, 1 << (2 * DIR_BITS)), scenes.obj_radius.clamp_min(1)
    ).view(-1)
    normal = (rel * inv_r[q_obj].unsqueeze(-1)) >> DIR_BITS
    q_cos = shift_round((normal.unsqueeze(1) * scenes.light_dirs[q_img]).sum(-1), DIR_BITS).clamp(
        0, DIR_ONE
    )
    q_lit = lit_patterns[pattern.index_select(0, quad)]
    q_rgb = _shade(
        scenes.obj_color.view(-1, 3)[q_obj],
        q_cos,
        q_lit,
        weight[q_img],
        scenes.ambient[q_img],
        tone,
    )
    pixels = pixels.index_copy(0, quad, q_rgb)

    images = pixels.to(torch.uint8).view(b, size, size, 3)
    mask = (hit_obj + 1).view(b, size, size)
    depth = ((t >> T_FRAC) * any_hit).view(b, size, size)
    return RenderBatch(images=images, mask=mask, depth=depth, scenes=scenes)


def render_batch(
    seed: bytes, count: int, settings: SceneSettings, device: str | torch.device = "cpu"
) -> RenderBatch:
    """Render the `count` scenes of `seed`: image i depends only on (seed, i, settings)."""
    return render_scenes(generate_scenes(seed, count, settings, device))
