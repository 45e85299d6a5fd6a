"""Export a rendered dataset as `dataset.npz` (images, masks, depth) plus `labels.json`, and load it
back.

Each unit is (seed, images); its digest is `render_task.unit_digest` over the stored arrays and
labels, the same digest a render task's unit puts on chain, so an export can be checked against
the chain when written (expected digests) and again when loaded (the digests in labels.json).

Loading into PyTorch:

    from torch.utils.data import DataLoader
    from useful_work.export_dataset import RenderedDataset
    ds = RenderedDataset("out/dataset", target="lights")  # verifies every unit's digest
    image, label = ds[0]  # float32 [3,H,W] = (p - 128) / 128; light count - 1
    # batches go straight into an exported model:
    loader = DataLoader(ds, batch_size=64, shuffle=True)

The default transform is export_model.MODEL_INPUT, the normalisation an exported model records
in its file (config["normalization"]); `transform=None` gives the stored uint8 pixels [H,W,3],
`transform=InputTransform(0, 255)` pixels in 0..1, channels first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from useful_work.export_model import MODEL_INPUT, InputTransform
from useful_work.render import render_batch
from useful_work.render_task import canonical_arrays, unit_digest
from useful_work.scene import DIR_ONE
from useful_work.specs import RenderSpec, SceneSettings

FORMAT = "pouw-render-dataset/1"
ARRAYS = "dataset.npz"
LABELS = "labels.json"


class DatasetError(ValueError):
    """An exported dataset does not match its digests or is malformed; the message names the
    unit."""


@dataclass(frozen=True)
class UnitRecord:
    seed: str  # hex
    images: int
    first: int  # index of the unit's first image in the arrays
    digest: str  # hex


@dataclass
class LoadedDataset:
    images: np.ndarray  # [N,H,W,3] uint8
    masks: np.ndarray  # [N,H,W] uint8
    depth: np.ndarray  # [N,H,W] int32 mm
    labels: list[dict]
    units: list[UnitRecord]
    settings: SceneSettings


def export_dataset(
    out_dir: str | Path,
    units: Sequence[tuple[bytes, int]],
    settings: SceneSettings,
    expected_digests: Sequence[bytes] | None = None,
    device: str = "cpu",
) -> Path:
    """Render each (seed, images) unit, check it against its expected digest if given, and write the
    files.

    Returns the directory. Raises DatasetError naming the first unit whose digest differs.
    """
    if expected_digests is not None and len(expected_digests) != len(units):
        raise ValueError(f"{len(expected_digests)} expected digests for {len(units)} units")
    images: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    depths: list[np.ndarray] = []
    labels, records = [], []
    first = 0
    for u, (seed, count) in enumerate(units):
        batch = render_batch(seed, count, settings, device)
        arrays = canonical_arrays(batch)
        unit_labels = batch.all_labels()
        digest = unit_digest(*arrays, unit_labels)
        if expected_digests is not None and digest != expected_digests[u]:
            raise DatasetError(
                f"unit {u} (seed {seed.hex()}): digest {digest.hex()} != expected "
                f"{expected_digests[u].hex()}"
            )
        for acc, arr in zip((images, masks, depths), arrays):
            acc.append(arr)
        labels.extend(unit_labels)
        records.append(UnitRecord(seed.hex(), count, first, digest.hex()))
        first += count
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out / ARRAYS,
        images=np.concatenate(images),
        masks=np.concatenate(masks),
        depth=np.concatenate(depths),
    )
    manifest = {
        "format": FORMAT,
        "settings": asdict(settings),
        "dir_scale": DIR_ONE,
        "units": [asdict(r) for r in records],
        "labels": labels,
    }
    (out / LABELS).write_text(json.dumps(manifest, separators=(",", ":")))
    return out


def export_render_task(
    out_dir: str | Path,
    spec: RenderSpec,
    seeds: Sequence[bytes],
    expected_digests: Sequence[bytes] | None = None,
    device: str = "cpu",
) -> Path:
    """Export the units of a render task given their seeds (and, to check against the chain,
    their digests)."""
    return export_dataset(
        out_dir, [(s, spec.images_per_unit) for s in seeds], spec.scene, expected_digests, device
    )


def load_dataset(
    directory: str | Path, verify: bool = True, expected_digests: Sequence[bytes] | None = None
) -> LoadedDataset:
    """Read an export; with `verify`, recompute each unit's digest from the files and compare."""
    d = Path(directory)
    try:
        manifest = json.loads((d / LABELS).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{LABELS}: cannot read ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise DatasetError(f"{LABELS}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    with np.load(d / ARRAYS) as z:
        images, masks, depth = z["images"], z["masks"], z["depth"]
    units = [UnitRecord(**r) for r in manifest["units"]]
    labels = manifest["labels"]
    n = sum(u.images for u in units)
    if not (len(labels) == len(images) == len(masks) == len(depth) == n):
        raise DatasetError(
            f"dataset: {n} images in units, {len(images)} in arrays, {len(labels)} labels"
        )
    if expected_digests is not None and len(expected_digests) != len(units):
        raise DatasetError(f"dataset: {len(units)} units, {len(expected_digests)} expected digests")
    if verify:
        for u, rec in enumerate(units):
            sl = slice(rec.first, rec.first + rec.images)
            digest = unit_digest(images[sl], masks[sl], depth[sl], labels[sl])
            if digest.hex() != rec.digest:
                raise DatasetError(
                    f"unit {u} (seed {rec.seed}): files give digest {digest.hex()}, {LABELS} "
                    f"records {rec.digest}"
                )
            if expected_digests is not None and digest != expected_digests[u]:
                raise DatasetError(
                    f"unit {u} (seed {rec.seed}): digest {digest.hex()} != expected "
                    f"{expected_digests[u].hex()}"
                )
    return LoadedDataset(images, masks, depth, labels, units, SceneSettings(**manifest["settings"]))


TARGETS = ("lights", "dominant_dir", "mask", "depth")


class RenderedDataset(Dataset):
    """An exported dataset as (image, target).

    image: `transform` of the stored uint8 pixels [H,W,3]; by default MODEL_INPUT, float32 [3,H,W]
    = (p - 128) / 128, what an exported model expects (its file records it); None for the uint8
    pixels as stored. target by name: "lights" (int, light count - 1, the index of the model's
    logit), "dominant_dir" (float32 [3] unit vector), "mask" (int64 [H,W]), "depth" (float32 [H,W]
    metres).
    """

    def __init__(
        self,
        directory: str | Path,
        target: str = "lights",
        verify: bool = True,
        transform: InputTransform | None = MODEL_INPUT,
    ) -> None:
        if target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}")
        self.data = load_dataset(directory, verify=verify)
        self.target = target
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor | int]:
        pixels = torch.from_numpy(self.data.images[i])
        image = self.transform(pixels) if self.transform is not None else pixels
        lab = self.data.labels[i]
        if self.target == "lights":
            return image, lab["num_lights"] - 1
        if self.target == "dominant_dir":
            return image, torch.tensor(lab["dominant_dir"], dtype=torch.float32) / DIR_ONE
        if self.target == "mask":
            return image, torch.from_numpy(self.data.masks[i].astype(np.int64))
        return image, torch.from_numpy(self.data.depth[i].astype(np.float32)) / 1000.0
