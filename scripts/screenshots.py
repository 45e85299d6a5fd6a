"""Screenshots of the explorer's main pages, at 1280x800 and at a phone's width (390 px).

Starts the browser tests' devnet (tests/p2p/explorer_kit.py: a mining node, a peer, a paid
render task and a paid training task), waits for both tasks, and photographs the pages with the
same headless Chromium the tests use. Writes docs/img/explorer-*.png by default.

    .venv/bin/python scripts/screenshots.py [-o docs/img] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "p2p"))

from explorer_kit import start_devnet, wait_synced  # noqa: E402

from useful_work.specs import RenderSpec, TrainSpec  # noqa: E402

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
MAX_HEIGHT = 1700  # a long page is cut here: the top is what a reader sees first


def save_small(png: bytes, target: Path) -> None:
    """The screenshot in 256 colours (a third of the bytes; pages are flat colours and text)."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        target, "PNG", optimize=True
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "-o", "--out", default=str(REPO / "docs" / "img"), help="directory for the PNG files"
    )
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pouw-shots-") as tmp:
        net = start_devnet(
            Path(tmp),
            RenderSpec(units=24, images_per_unit=4, image_size=32, max_objects=4),
            TrainSpec(units=600, batch_size=16, steps_per_unit=1, image_size=16, max_objects=2),
            block_interval_ms=1000,
            retarget_half_life_ms=3000,
        )
        try:
            net.wait_tasks_done(timeout=300)
            wait_synced(net)
            time.sleep(5)  # a few more blocks of the default task after the paid ones
            node = net.miner
            render_block = node.get(f"/api/tasks/{net.render_task}/blocks")["blocks"][-1]["height"]
            miner = node.status()["miner_address"]
            shots = [
                ("home", "/", DESKTOP),
                ("block", f"/block/{render_block}", DESKTOP),
                ("task-render", f"/task/{net.render_task}", DESKTOP),
                ("task-train", f"/task/{net.train_task}", DESKTOP),
                ("account", f"/account/{miner}", DESKTOP),
                ("peers", "/peers", DESKTOP),
                ("not-found", "/block/99999", DESKTOP),
                ("home-mobile", "/", PHONE),
                ("task-render-mobile", f"/task/{net.render_task}", PHONE),
                ("task-train-mobile", f"/task/{net.train_task}", PHONE),
                ("block-mobile", f"/block/{render_block}", PHONE),
            ]
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium, args=ARGS)
                for name, path, viewport in shots:
                    page = browser.new_page(viewport=viewport, reduced_motion="reduce")
                    page.goto(node.api_url + path)
                    if page.locator("#curve").count():
                        page.wait_for_selector("#curve[data-complete=true]", timeout=120_000)
                    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
                    page.wait_for_timeout(2500)  # one live update of the status bar
                    height = min(MAX_HEIGHT, page.evaluate("document.documentElement.scrollHeight"))
                    target = out / f"explorer-{name}.png"
                    shot = page.screenshot(
                        full_page=True,
                        clip={"x": 0, "y": 0, "width": viewport["width"], "height": height},
                    )
                    save_small(shot, target)
                    print(target, flush=True)
                    page.close()
                browser.close()
        finally:
            net.shut_down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
