"""Contact sheet: a PNG grid of rendered samples with their labels written under each image."""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from useful_work.render import RenderBatch, render_batch  # noqa: E402
from useful_work.scene import DIR_ONE  # noqa: E402
from useful_work.specs import SceneSettings  # noqa: E402

_SHORT = {"sphere": "S", "box": "B", "cylinder": "C"}


def caption(labels: dict) -> str:
    """Two short lines: light count with the dominant direction, then the object classes."""
    d = [round(x / DIR_ONE, 2) for x in labels["dominant_dir"]]
    classes = "".join(_SHORT[o["class"]] for o in labels["objects"])
    return (
        f"L={labels['num_lights']} "
        f"dom=({d[0]:+.2f},{d[1]:+.2f},{d[2]:.2f})\n{labels['num_objects']} obj: {classes}"
    )


def save_contact_sheet(
    batch: RenderBatch, path: str | Path, columns: int = 4, show_mask: bool = False
) -> Path:
    """Write a grid of the batch's images (and, optionally, their masks) with captions to `path`."""
    n = batch.images.shape[0]
    rows = -(-n // columns)
    per = 2 if show_mask else 1
    fig, axes = plt.subplots(
        rows, columns * per, figsize=(2.4 * columns * per, 2.9 * rows), squeeze=False
    )
    images = batch.images.cpu().numpy()
    masks = batch.mask.cpu().numpy()
    for k in range(rows * columns):
        r, c = divmod(k, columns)
        ax = axes[r][c * per]
        for a in axes[r][c * per : (c + 1) * per]:
            a.set_axis_off()
        if k >= n:
            continue
        ax.imshow(images[k], interpolation="nearest")
        ax.set_title(caption(batch.labels(k)), fontsize=7, y=-0.22)
        if show_mask:
            axes[r][c * per + 1].imshow(
                masks[k], interpolation="nearest", cmap="tab10", vmin=0, vmax=9
            )
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Render samples and save a labelled contact sheet PNG.")
    p.add_argument("--seed", default="0", help="any text; hashed to the 32-byte seed")
    p.add_argument("-n", type=int, default=16)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--masks", action="store_true", help="show each instance mask beside its image")
    p.add_argument("-o", "--out", default="out/sheet.png")
    args = p.parse_args(argv)
    from useful_work.hashing import tagged_hash

    seed = tagged_hash("contact-sheet", args.seed.encode())
    batch = render_batch(seed, args.n, SceneSettings(image_size=args.size))
    print(save_contact_sheet(batch, args.out, show_mask=args.masks))


if __name__ == "__main__":
    main()
