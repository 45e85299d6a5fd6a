"""Images of a render task, re-rendered here from the chain's seeds and served as PNG.

A unit's seed comes from its block, as every verifier derives it (chained seeds: the node's
trace API gives each leaf's, and a manifest's leaves give them through `manifest_seeds`); image i
of a unit depends only on (seed, i, scene settings), so the first n images of
a unit can be rendered without the rest. Where the whole unit fits the budget it is rendered in
full and its digest compared with the leaf on chain, so a grid can say the pictures are the
ones the chain committed to.

Bounds: one request renders at most RENDER_PIXEL_BUDGET pixels; renders run one at a time on a
worker thread and at most MAX_WAITING requests queue for it (others get 503); results are kept in
an LRU cache of at most CACHE_BYTES of PNG, keyed by (block, claim, unit), whose contents the block
hash fixes for good (so the PNGs are served as immutable).
"""

from __future__ import annotations

import asyncio
import io
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image

from p2p.explorer.source import PageError
from useful_work.render import render_batch
from useful_work.render_task import batch_digest
from useful_work.scene import CLASSES, DIR_ONE
from useful_work.specs import RenderSpec
from useful_work.trace import Leaf, prefix_commitments, unit_seed

RENDER_PIXEL_BUDGET = 1 << 21  # per request: 128 images of 128 x 128, or 8192 of 16 x 16
MAX_WAITING = 8
CACHE_BYTES = 32 << 20

UnitKey = tuple[str, int, int]  # (block hash hex, claim index, unit index)


@dataclass(frozen=True)
class UnitJob:
    key: UnitKey
    seed: bytes
    spec: RenderSpec
    digest: bytes | None  # the leaf's digest on chain (None: not known to the caller)
    need: int  # images wanted from the unit's start


@dataclass(frozen=True)
class RenderedUnit:
    pngs: tuple[bytes, ...]  # the unit's first len(pngs) images
    labels: tuple[str, ...]  # a hover label for each
    checked: (
        bool | None
    )  # whole unit re-rendered: does its digest equal the chain's? None: not checked

    @property
    def nbytes(self) -> int:
        return sum(len(p) for p in self.pngs) + sum(len(t) for t in self.labels)


def manifest_seeds(entry: dict) -> list[bytes]:
    """The unit seeds of one block of a task's manifest, derived from its leaves as every verifier
    derives them (chained: each covers the leaves before it and the unit's header commitment)."""
    from chain.address import parse_address

    leaves = [Leaf.from_bytes(bytes.fromhex(x)) for x in entry.get("leaves", [])]
    prefixes = prefix_commitments(leaves)
    parent, miner, attempt = (
        bytes.fromhex(entry["parent"]),
        parse_address(entry["miner"]),
        int(entry.get("attempt", 0)),
    )
    return [
        unit_seed(parent, miner, attempt, u, prefixes[u], leaf.commitment)
        for u, leaf in enumerate(leaves)
    ]


def png_bytes(rgb) -> bytes:
    """A [H, W, 3] uint8 array as PNG (no gamma or colour profile chunk: the bytes are the
    pixels)."""
    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def hover_label(labels: dict, unit: int, image: int) -> str:
    d = [x / DIR_ONE for x in labels["dominant_dir"]]
    classes = ", ".join(o["class"] for o in labels["objects"])
    lights = labels["num_lights"]
    return (
        f"unit {unit}, image {image}\n{lights} light{'s' if lights != 1 else ''}, dominant "
        f"direction ({d[0]:+.2f}, {d[1]:+.2f}, {d[2]:+.2f})\n{labels['num_objects']} "
        f"object{'s' if labels['num_objects'] != 1 else ''}: {classes}"
    )


def short_label(labels: dict) -> str:
    short = {name: name[0].upper() for name in CLASSES}
    return f"L{labels['num_lights']} · {''.join(short[o['class']] for o in labels['objects'])}"


def _render(job: UnitJob, count: int, full: bool) -> RenderedUnit:
    batch = render_batch(job.seed, count, job.spec.scene)
    images = batch.images.cpu().numpy()
    labels = batch.all_labels()
    checked = (batch_digest(batch) == job.digest) if full and job.digest is not None else None
    return RenderedUnit(
        tuple(png_bytes(images[i]) for i in range(count)),
        tuple(
            hover_label(labels[i], job.key[2], i) + "\n" + short_label(labels[i])
            for i in range(count)
        ),
        checked,
    )


class Gallery:
    def __init__(self, cache_bytes: int = CACHE_BYTES, max_waiting: int = MAX_WAITING) -> None:
        self.cache: OrderedDict[UnitKey, RenderedUnit] = OrderedDict()
        self.cache_bytes = cache_bytes
        self.max_waiting = max_waiting
        self._bytes = 0
        self._waiting = 0
        self._worker = asyncio.Lock()
        self.rendered_pixels = 0  # for the tests and the docs: how much work requests caused

    def cached(self, key: UnitKey, need: int = 1) -> RenderedUnit | None:
        found = self.cache.get(key)
        if found is None or len(found.pngs) < need:
            return None
        self.cache.move_to_end(key)
        return found

    def _store(self, key: UnitKey, unit: RenderedUnit) -> None:
        old = self.cache.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
        self.cache[key] = unit
        self._bytes += unit.nbytes
        while self._bytes > self.cache_bytes and len(self.cache) > 1:
            _, dropped = self.cache.popitem(last=False)
            self._bytes -= dropped.nbytes

    async def render(
        self, jobs: list[UnitJob], budget: int = RENDER_PIXEL_BUDGET
    ) -> list[RenderedUnit | None]:
        """Each job's images (None where the request's pixel budget ran out first)."""
        out: list[RenderedUnit | None] = []
        for job in jobs:
            found = self.cached(job.key, job.need)
            if found is not None:
                out.append(found)
                continue
            per_image = job.spec.image_size**2
            whole = job.spec.images_per_unit * per_image
            need = min(job.need, job.spec.images_per_unit)
            if whole <= budget:
                count, full = job.spec.images_per_unit, True
            elif need * per_image <= budget:
                count, full = need, False
            else:
                out.append(None)
                continue
            budget -= count * per_image
            out.append(await self._run(job, count, full))
        return out

    async def _run(self, job: UnitJob, count: int, full: bool) -> RenderedUnit:
        if self._waiting >= self.max_waiting:
            raise PageError(503, "the explorer is busy rendering; try again in a moment")
        self._waiting += 1
        try:
            async with self._worker:
                found = self.cached(job.key, count)
                if found is not None:
                    return found
                unit = await asyncio.to_thread(_render, job, count, full)
                self.rendered_pixels += count * job.spec.image_size**2
                self._store(job.key, unit)
                return unit
        finally:
            self._waiting -= 1
