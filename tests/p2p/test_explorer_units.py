"""The explorer's parts without a browser: the rendering bounds and cache, the mining rate, the
templates on API answers that carry fields this version does not know (the API may gain some)."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from PIL import Image

from p2p.explorer.gallery import Gallery, UnitJob
from p2p.explorer.pages import mining_rate, newest_first_slice
from p2p.explorer.source import PageError, loopback_url
from p2p.explorer.views import make_environment
from useful_work.hashing import tagged_hash
from useful_work.render import render_batch
from useful_work.render_task import batch_digest
from useful_work.specs import RenderSpec

SPEC = RenderSpec(units=4, images_per_unit=4, image_size=16, max_objects=2)
UNIT_PIXELS = SPEC.images_per_unit * SPEC.image_size**2


def _job(i: int, need: int, digest: bytes | None = b"") -> UnitJob:
    seed = tagged_hash("explorer-unit-test", bytes([i]))
    if digest == b"":
        digest = batch_digest(render_batch(seed, SPEC.images_per_unit, SPEC.scene))
    return UnitJob(("ab" * 32, 0, i), seed, SPEC, digest, need)


def test_a_request_renders_within_its_pixel_budget_and_the_cache_serves_repeats():
    gallery = Gallery()
    jobs = [_job(0, 2), _job(1, 1), _job(2, 2)]
    budget = (
        UNIT_PIXELS + SPEC.image_size**2 + 10
    )  # one whole unit, then one more image, then nothing
    first, second, third = asyncio.run(gallery.render(jobs, budget=budget))
    assert (
        first is not None and len(first.pngs) == SPEC.images_per_unit and first.checked is True
    )  # whole unit: digest checked
    assert (
        second is not None and len(second.pngs) == 1 and second.checked is None
    )  # its first image only
    assert third is None  # over the budget: not rendered
    assert gallery.rendered_pixels == UNIT_PIXELS + SPEC.image_size**2
    # The PNG is the rendered pixels exactly.
    expected = render_batch(jobs[0].seed, SPEC.images_per_unit, SPEC.scene).images.numpy()
    for i, png in enumerate(first.pngs):
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), expected[i])
    # Asking again renders nothing.
    again = asyncio.run(gallery.render(jobs[:1], budget=budget))
    assert again[0] is first and gallery.rendered_pixels == UNIT_PIXELS + SPEC.image_size**2


def test_a_unit_that_does_not_match_its_digest_is_flagged():
    (unit,) = asyncio.run(Gallery().render([_job(3, 1, digest=bytes(32))]))
    assert unit is not None and unit.checked is False


def test_renders_queue_one_at_a_time_and_refuse_beyond_the_queue():
    gallery = Gallery(max_waiting=1)

    async def burst():
        return await asyncio.gather(
            *(gallery.render([_job(i, 1)]) for i in range(3)), return_exceptions=True
        )

    results = asyncio.run(burst())
    refused = [r for r in results if isinstance(r, PageError)]
    assert refused and all(r.status == 503 for r in refused)
    assert any(not isinstance(r, Exception) and r[0] is not None for r in results)


def test_the_cache_stays_within_its_byte_limit():
    gallery = Gallery(cache_bytes=1)
    for i in range(3):
        asyncio.run(gallery.render([_job(i, 1)]))
    assert len(gallery.cache) == 1  # the newest unit only


def test_mining_rate_and_paging_arithmetic():
    blocks = [{"height": h, "time_ms": 1000 * h, "units": 4} for h in range(6)]
    rate = mining_rate(
        blocks
    )  # genesis left out: blocks 1..5, 4 intervals of 1 s, 16 units after block 1
    assert rate == {"units_per_s": 4.0, "blocks_per_min": 60.0, "blocks": 5}
    assert mining_rate(blocks[:2]) is None
    assert newest_first_slice(103, 0, 25) == (78, 25)
    assert newest_first_slice(103, 4, 25) == (0, 3)
    assert newest_first_slice(0, 0, 25) == (0, 0)
    assert loopback_url("0.0.0.0:8080") == "http://127.0.0.1:8080"
    assert loopback_url("[::]:8080") == "http://[::1]:8080"
    assert loopback_url("127.0.0.1:9") == "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def env():
    return make_environment()


def _frame() -> dict:
    status = {
        "network": "t",
        "height": 7,
        "best_hash": "ab" * 32,
        "peers": 0,
        "sync": {"state": "synced"},
        "mining": False,
        "genesis": "cd" * 32,
        "a_field_from_a_later_version": [1, 2],
    }
    return {"status": status, "rate": None, "title": "t", "page": "x"}


def test_account_page_shows_spendable_and_immature_balances_when_the_api_has_them(env):
    account = {
        "address": "pw" + "a" * 39,
        "balance": 300_000_000,
        "nonce": 2,
        "pending_transactions": 0,
        "next_nonce": 2,
        "spendable": 100_000_000,
        "immature": 200_000_000,
        "matures_at_height": 120,
    }
    html = env.get_template("account.html").render(
        **_frame(),
        account=account,
        extra={"matures_at_height": 120},
        items=[],
        total=0,
        page_no=0,
        last_page=0,
    )
    assert 'id="spendable">1 POUW' in html and 'id="immature">2 POUW' in html
    assert "Matures at height" in html and "120" in html
    plain = dict(account)
    del plain["spendable"], plain["immature"]
    html = env.get_template("account.html").render(
        **_frame(), account=plain, extra={}, items=[], total=0, page_no=0, last_page=0
    )
    assert "Spendable" not in html and 'id="balance">3 POUW' in html


def test_block_page_shows_every_leaf_field_the_api_sends(env):
    leaf = {
        "unit": 0,
        "input_hash": "11" * 32,
        "output_hash": "22" * 32,
        "digest": "33" * 32,
        "commitment": "44" * 32,
    }
    claim = {
        "index": 0,
        "task_id": "55" * 32,
        "unit_count": 1,
        "attempt": 0,
        "trace_root": "66" * 32,
        "ticket": "77" * 32,
        "winner": 0,
        "challenged": [],
        "opened": [0],
        "offset": 0,
        "leaves": [leaf],
        "task": None,
        "spec": None,
        "fields": [k for k in leaf if k != "unit"],
        "images": [],
        "challenged_set": set(),
        "opened_set": {0},
        "a_new_claim_field": 5,
    }
    block = {
        "hash": "88" * 32,
        "height": 3,
        "prev_hash": "99" * 32,
        "time_ms": 0,
        "miner": "pw" + "b" * 39,
        "status": "valid",
        "on_best_chain": True,
        "transactions": [],
        "work": [claim],
        "shares": [{"unknown": True}],
    }
    html = env.get_template("block.html").render(
        **_frame(),
        block=block,
        claims=[claim],
        leaves_page=0,
        leaves_last=0,
        leaves_size=100,
        has_next=False,
    )
    assert "<th>commitment</th>" in html and ("44" * 6) in html
    assert 'class="winner opened"' in html


def test_block_page_lists_the_blocks_share_claims(env):
    miner, payout = "pw" + "c" * 39, "pw" + "d" * 39
    share = {
        "index": 1,
        "claim_id": "aa" * 32,
        "miner": miner,
        "payout": payout,
        "task_id": "55" * 32,
        "attempt": 2,
        "shares": [3, 9, 17],
        "units": 18,
        "opened": [3, 5, 9, 17],
        "reward": 250_000_000,
        "bounty": 0,
    }
    block = {
        "hash": "88" * 32,
        "height": 3,
        "prev_hash": "99" * 32,
        "time_ms": 0,
        "miner": "pw" + "b" * 39,
        "status": "valid",
        "on_best_chain": True,
        "transactions": [],
        "work": [],
        "shares": [share, {**share, "index": 2, "reward": None, "attempt": 0}],
    }
    html = env.get_template("block.html").render(
        **_frame(), block=block, claims=[], leaves_page=0, leaves_last=0, leaves_size=100
    )
    assert 'id="share-claims"' in html and "Share claims <small>2" in html
    row = html[html.index('data-claim="1"') : html.index('data-claim="2"')]
    assert f'href="/account/{miner}"' in row and f'href="/account/{payout}"' in row
    assert ">18<" in row and ">3<" in row and "2.5 POUW" in row and ">2<" in row
    assert "matured (paid)" in html[html.index('data-claim="2"') :]
    block["shares"] = []
    html = env.get_template("block.html").render(
        **_frame(), block=block, claims=[], leaves_page=0, leaves_last=0, leaves_size=100
    )
    assert "share-claims" not in html
