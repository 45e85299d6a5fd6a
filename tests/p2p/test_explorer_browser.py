"""The web explorer in a real headless Chromium (Playwright), against a small devnet of real nodes.

One module-wide devnet (explorer_kit: a mining node and a peer, a paid render task and a paid
training task, both run to completion) and one browser serve every test. Chromium is Debian's
`chromium` (scripts/test.sh installs it when it can; POUW_CHROMIUM names another binary); without
it, or without the playwright package, the module is skipped with one line saying which is missing.
"""

from __future__ import annotations

import os
import shutil
import urllib.request

import numpy as np
import pytest
from explorer_kit import FUNDED, start_devnet, wait_synced

from chain.address import parse_address
from useful_work.render import render_batch
from useful_work.specs import RenderSpec, TrainSpec
from useful_work.trace import Leaf, prefix_commitments, unit_seed

# One worker runs the whole module (with `--dist loadgroup`, as scripts/test.sh runs the suite), so
# the devnet and the browser start once.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("explorer-browser")]

CHROMIUM = os.environ.get("POUW_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip(
        "explorer browser tests skipped: the playwright package is not installed (pip install -e "
        "'.[dev]')",
        allow_module_level=True,
    )
if not os.path.exists(CHROMIUM):  # pragma: no cover
    pytest.skip(
        f"explorer browser tests skipped: no Chromium at {CHROMIUM} (apt-get install chromium, or "
        "set POUW_CHROMIUM)",
        allow_module_level=True,
    )

RENDER = RenderSpec(units=8, images_per_unit=3, image_size=16, max_objects=3)
TRAIN = TrainSpec(units=24, batch_size=8, steps_per_unit=1, image_size=16, max_objects=2)


def _seed(node, block_hash: str, claim_index: int, unit: int) -> bytes:
    """A unit's seed computed here from the block's leaves (chained seeds), not taken from the
    node."""
    block = node.get(f"/api/blocks/{block_hash}")
    claim = node.get(f"/api/blocks/{block_hash}/trace?limit={unit + 1}")["claims"][claim_index]
    fields = ("input_hash", "output_hash", "digest", "commitment")
    leaves = [Leaf(*(bytes.fromhex(leaf[f]) for f in fields)) for leaf in claim["leaves"]]
    prefix = prefix_commitments(leaves[:unit])[-1]
    return unit_seed(
        bytes.fromhex(block["prev_hash"]),
        parse_address(block["miner"]),
        claim["attempt"],
        unit,
        prefix,
        leaves[unit].commitment,
    )


@pytest.fixture(scope="module")
def devnet(tmp_path_factory):
    net = start_devnet(tmp_path_factory.mktemp("explorer"), RENDER, TRAIN)
    try:
        net.wait_tasks_done(timeout=120)
        wait_synced(net)
        yield net
    finally:
        net.shut_down()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def _worked_heights(node, task_id: str) -> list[int]:
    return [b["height"] for b in node.get(f"/api/tasks/{task_id}/blocks?limit=1000")["blocks"]]


def test_pages_open_and_links_lead_from_a_block_to_its_miner_and_task(devnet, page):
    node = devnet.miner
    url = node.api_url
    resp = page.goto(url + "/")
    assert resp.status == 200 and "text/html" in resp.headers["content-type"]
    assert page.locator("#recent-blocks tbody tr").count() >= 5
    assert int(page.text_content("#st-height")) >= 3
    assert page.text_content("#st-sync") == "synced"

    # A block of the render task, from the task's page, then its miner and its task by links.
    height = _worked_heights(node, devnet.render_task)[0]
    page.goto(f"{url}/task/{devnet.render_task}")
    page.click(f"#task-blocks-table a[href='/block/{height}']")
    page.wait_for_url(f"**/block/{height}")
    block = node.get(f"/api/blocks/{height}")
    trace = node.get(f"/api/blocks/{height}/trace")["claims"][0]
    assert block["hash"] in page.text_content("#header-fields")
    rows = page.locator("#leaves-0 tbody tr")
    assert rows.count() == block["work"][0]["unit_count"]
    assert [
        int(u)
        for u in page.eval_on_selector_all(
            "#leaves-0 tr.winner", "rs => rs.map(r => r.dataset.unit)"
        )
    ] == [trace["winner"]]
    assert [
        int(u)
        for u in page.eval_on_selector_all(
            "#leaves-0 tr.challenged", "rs => rs.map(r => r.dataset.unit)"
        )
    ] == trace["challenged"]
    assert page.locator(".tiles img").count() > 0  # a render block shows its units' images

    page.click("#miner-link")
    page.wait_for_url(f"**/account/{block['miner']}")
    assert page.text_content("#account-address").strip() == block["miner"]
    balance = node.get(f"/api/accounts/{block['miner']}")["balance"]
    assert page.text_content("#balance").strip().endswith("POUW") and balance > 0
    assert page.locator("#history tbody tr").count() > 0
    page.go_back()
    page.click("#task-link-0")
    page.wait_for_url(f"**/task/{devnet.render_task}")
    assert devnet.render_task in page.text_content("#task-fields")
    assert page.text_content("#task-status") == "done"

    # The other page types.
    page.goto(url + "/tasks")
    assert page.locator("#tasks tbody tr").count() == 3  # the default task and the two paid ones
    page.goto(
        f"{url}/tx/{devnet.train_task}"
    )  # a task's id is the id of the transaction that submitted it
    assert "submit-task" in page.content() and FUNDED in page.content()
    page.goto(url + "/peers")
    peers = page.locator("#peers tbody tr")
    assert peers.count() == 1 and "inbound" in peers.first.text_content()
    page.goto(f"{url}/blocks?page=0")
    assert page.locator("table.blocks tbody tr").count() >= 5

    # Search by height, hash, address and task id.
    for query, expected in (
        (str(height), f"/block/{height}"),
        (block["hash"], f"/block/{block['hash']}"),
        (block["miner"], f"/account/{block['miner']}"),
        (devnet.train_task, f"/task/{devnet.train_task}"),
    ):
        page.fill("form.search input[name=q]", query)
        page.press("form.search input[name=q]", "Enter")
        page.wait_for_url(f"**{expected}")


def test_render_grid_shows_the_images_a_local_render_gives(devnet, page):
    node = devnet.miner
    page.goto(f"{node.api_url}/task/{devnet.render_task}")
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#grid .tiles img')).every(i => i.complete && "
        "i.naturalWidth > 0)"
    )
    shown = page.eval_on_selector_all(
        "#grid .tiles img",
        """imgs => imgs.map(img => {
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d');
        g.drawImage(img, 0, 0);
        return {block: img.dataset.block, claim: +img.dataset.claim, unit: +img.dataset.unit,
                image: +img.dataset.image, label: img.closest('figure').title,
                w: c.width, h: c.height,
                rgba: Array.from(g.getImageData(0, 0, c.width, c.height).data)};
    })""",
    )
    blocks = {b["hash"] for b in node.get(f"/api/tasks/{devnet.render_task}/blocks")["blocks"]}
    assert (
        shown and {s["block"] for s in shown} == blocks
    )  # 3 blocks or so: all on the first grid page
    renders: dict = {}
    for s in shown:
        key = (s["block"], s["unit"])
        if key not in renders:
            renders[key] = render_batch(
                _seed(node, s["block"], s["claim"], s["unit"]), RENDER.images_per_unit, RENDER.scene
            ).images.numpy()
        expected = renders[key][s["image"]]
        got = np.array(s["rgba"], dtype=np.uint8).reshape(s["h"], s["w"], 4)
        assert (s["h"], s["w"]) == (RENDER.image_size, RENDER.image_size)
        assert (got[..., 3] == 255).all()
        assert np.array_equal(got[..., :3], expected), (
            f"image {s['image']} of unit {s['unit']} of block {s['block'][:16]} differs"
        )
        assert "light" in s["label"] and "object" in s["label"]  # the hover label
    assert "its digest equals the leaf on chain" in page.text_content("#grid")
    # The PNGs are immutable and cached by the browser.
    with urllib.request.urlopen(
        node.api_url + page.get_attribute("#grid .tiles img", "src")
    ) as resp:
        assert resp.headers["Content-Type"] == "image/png"
        assert "immutable" in resp.headers["Cache-Control"] and resp.headers["ETag"]


def test_training_chart_has_one_point_per_height_with_work(devnet, page):
    node = devnet.miner
    page.goto(f"{node.api_url}/task/{devnet.train_task}")
    page.wait_for_selector("#curve[data-complete=true]", timeout=60_000)
    heights = _worked_heights(node, devnet.train_task)
    assert len(heights) >= 2
    points = page.eval_on_selector_all(
        "#curve-svg circle.acc", "cs => cs.map(c => [+c.dataset.height, +c.dataset.accuracy])"
    )
    assert sorted(h for h, _ in points) == heights
    assert page.locator("#curve-table tbody tr").count() == len(heights)
    for (
        h,
        accuracy,
    ) in points:  # each point is the node's held-out figure for the state after that block
        assert (
            accuracy
            == node.get(f"/api/tasks/{devnet.train_task}/metrics?height={h}")["heldout"]["accuracy"]
        )
    assert page.locator("#curve-svg polyline").count() == 2


def test_live_status_advances_without_reloading(devnet, page):
    node = devnet.miner
    page.goto(node.api_url + "/")
    start = int(page.text_content("#st-height"))
    top = int(page.get_attribute("#recent-blocks tbody tr", "data-height"))
    page.wait_for_function(
        f"+document.getElementById('st-height').textContent > {start}", timeout=30_000
    )
    page.wait_for_function(
        f"+document.querySelector('#recent-blocks tbody tr').dataset.height > {top}", timeout=10_000
    )
    assert (
        page.evaluate("performance.getEntriesByType('navigation').length") == 1
    )  # the same page, updated in place
    assert node.height() >= int(page.text_content("#st-height"))


BAD_URLS = [
    ("/block/zz", 400, "block hash"),
    ("/block/" + "0" * 64, 404, "block " + "0" * 64 + " not found"),
    ("/block/99999999", 404, "no block at height"),
    ("/block/" + "9" * 5000, 404, "no block at height"),
    ("/task/xyz", 400, "task id"),
    ("/task/" + "0" * 64, 404, "task " + "0" * 64 + " not found"),
    ("/tx/00", 400, "txid"),
    ("/account/notanaddress", 400, "address"),
    ("/blocks?page=99999999999999999999", 404, "no page"),
    ("/blocks?page=-1", 400, "not a page number"),
    ("/search?q=what%20is%20this", 400, "not a height"),
    ("/search?q=" + "ab" * 32, 404, "no block, task or transaction"),
    ("/img/zz/0/0/0.png", 404, "no such image"),
    ("/no/such/page", 404, "no such page"),
]


def test_bad_urls_give_friendly_error_pages(devnet, page):
    node = devnet.miner
    render_block = node.get(f"/api/tasks/{devnet.render_task}/blocks")["blocks"][0]["hash"]
    cases = BAD_URLS + [
        (f"/account/{FUNDED}?page=999", 404, "no page"),
        (f"/task/{devnet.render_task}?grid=999999", 404, "no page"),
        (f"/block/{render_block}?leaves=999", 404, "no page"),
        (f"/img/{render_block}/0/0/{RENDER.images_per_unit}.png", 404, "image"),
        (f"/img/{render_block}/0/99999/0.png", 404, "units 0"),
        (f"/img/{render_block}/7/0/0.png", 404, "no claim 7"),
    ]
    for path, status, text in cases:
        resp = page.goto(node.api_url + path)
        assert resp.status == status, (path, resp.status)
        assert "text/html" in resp.headers["content-type"], path
        body = page.text_content("main")
        assert page.text_content("h1").startswith(str(status)), path
        assert text.lower() in body.lower(), (path, body)
        assert "Traceback" not in page.content() and 'File "' not in page.content()
    assert node.get("/api/status")["height"] > 0  # the node carries on
