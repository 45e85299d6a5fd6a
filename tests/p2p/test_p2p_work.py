"""Blocks that pass the cheap checks but carry forged work, and the per-peer verification budget.

The test process follows the node's chain with its own ChainState (framework.ChainFollower) and
builds blocks on it with the real consensus miner:
- a block whose non-winning units are all fabricated (Miner(fabricate=1.0): its ticket is under
  the target and its header is signed, the winner was run honestly, every spot-checked unit is
  fake) must be re-executed, rejected as bad-spot-check, and its sender banned;
- a one-unit block whose only (winning) unit is fabricated, its digest ground until the ticket
  wins, must be rejected as bad-winning-unit, and its sender banned;
- valid blocks that do not become the best chain (siblings of the node's blocks) are charged to
  the sender's verification budget; a peer over budget is disconnected, not banned.
"""

import asyncio
import time

import pytest
from framework import ApiError, ChainFollower, TestPeer, wait_until

from chain.block import Block
from chain.keys import PrivateKey
from consensus.miner import Miner, make_template
from consensus.tickets import ticket, ticket_wins
from consensus.validation import InvalidBlock, Reason, check_work
from p2p.protocol import BlockMsg
from useful_work.hashing import tagged_hash
from useful_work.trace import Leaf, state_hash, trace_root

pytestmark = pytest.mark.integration


def _key(label: str, i: int = 0) -> PrivateKey:
    return PrivateKey.from_bytes(tagged_hash("p2p-test-key", label.encode(), i.to_bytes(4, "big")))


def forge_spot_checked_units(chain) -> Block:
    """A block on the chain's tip whose non-winning units are all fabricated (at least two units,
    so that the spot checks, which only pick non-winning units, must hit a fake)."""
    for i in range(50):  # a key whose first unit wins gives a one-unit block: try the next key
        key = _key("spot-check", i)
        block = Miner(chain, key, fabricate=1.0).mine_block()
        if block is not None and block.header.work[0].unit_count >= 2:
            return block
    raise AssertionError("no fabricated block with two or more units in 50 keys")


def forge_winning_unit(chain) -> Block:
    """A one-unit block on the chain's tip whose unit was never run: the leaf copies the input
    state and invents a digest, ground (hashes only) until its ticket is under the target."""
    key = _key("winner")
    miner = Miner(chain, key)
    template = make_template(chain)
    draft = miner.draft(template)
    start = template.start_state
    for i in range(1_000_000):
        leaf = Leaf(
            state_hash(start),
            state_hash(start),
            tagged_hash("forged digest", i.to_bytes(8, "big")),
            draft.commitment,
        )
        if ticket_wins(
            ticket(template.parent_hash, miner.address, trace_root([leaf])), template.target
        ):
            return miner.assemble(template, [leaf], [start], 0, draft)
    raise AssertionError("no winning forged ticket in 10^6 tries")


async def send_block(
    node, status: dict, block: Block, peer: TestPeer | None = None
) -> tuple[TestPeer, str]:
    """Send a block from a (new) test peer and return how the node closed the connection."""
    peer = peer or TestPeer()
    await peer.connect(node.p2p_addr)
    await peer.handshake(status)
    await peer.send(BlockMsg(block.to_bytes()))
    reason = await peer.wait_closed(timeout=30)
    await peer.close()
    return peer, reason


async def reconnect(node, status: dict, old: TestPeer) -> str:
    """Connect again as the same node (listen address and nonce): '' if the handshake succeeds."""
    again = TestPeer()
    again.nonce, again.listen = old.nonce, old.listen
    await again.connect(node.p2p_addr)
    try:
        await again.handshake(status)
        return ""
    except AssertionError as exc:
        return str(exc)
    finally:
        await again.close()


def test_forged_work_is_reexecuted_rejected_and_banned(make_node, tmp_path):
    node = make_node("victim").start(mine=True).wait_ready()
    wait_until(lambda: node.height() >= 3, 60, "a few blocks")
    # Mining is paused while the forged blocks are built and sent: a forged block is re-executed
    # only if it would become the best chain, so it must extend the node's tip at the moment it
    # arrives. With the miner running, the tip could move in between and the block would only
    # be stored as a side branch (no re-execution, nothing to ban for).
    height = node.pause_mining()
    follower = ChainFollower(tmp_path / "follower", node.network)
    try:
        asyncio.run(follower.sync(node))
        assert follower.chain.tip.height == height
        spot = forge_spot_checked_units(follower.chain)
        winner = forge_winning_unit(follower.chain)
        # The forgeries fail exactly where intended when checked locally.
        for block, reason in ((spot, Reason.BAD_SPOT_CHECK), (winner, Reason.BAD_WINNING_UNIT)):
            with pytest.raises(InvalidBlock) as info:
                check_work(follower.params, block, follower.chain.state)
            assert info.value.reason is reason
    finally:
        follower.close()

    status = node.status()
    started = time.monotonic()
    p1, spot_reason = asyncio.run(send_block(node, status, spot))
    p2, winner_reason = asyncio.run(send_block(node, status, winner))
    elapsed = time.monotonic() - started
    print(
        f"\nforged blocks ({spot.header.work[0].unit_count} and 1 units) rejected in "
        f"{elapsed:.2f} s:\n  {spot_reason}\n  {winner_reason}"
    )
    assert "banned" in spot_reason and "bad-spot-check" in spot_reason
    assert "banned" in winner_reason and "bad-winning-unit" in winner_reason
    for block, reason in ((spot, "bad-spot-check"), (winner, "bad-winning-unit")):
        info = node.get(f"/api/blocks/{block.hash.hex()}")
        assert (
            info["status"] == "invalid"
            and info["reason"].startswith(reason)
            and not info["on_best_chain"]
        )
    assert node.height() == height
    # The bans hold on reconnection, and are listed with their reasons.
    assert "banned" in asyncio.run(reconnect(node, status, p1))
    assert "banned" in asyncio.run(reconnect(node, status, p2))
    banned = node.get("/api/peers")["banned"]
    assert any("bad-spot-check" in b["reason"] for b in banned)
    assert any("bad-winning-unit" in b["reason"] for b in banned)
    metrics = node.get("/metrics").decode()
    assert 'pouw_blocks_total{outcome="invalid",reason="bad-spot-check"} 1.0' in metrics
    assert 'pouw_blocks_total{outcome="invalid",reason="bad-winning-unit"} 1.0' in metrics
    # The node carries on: it mines again on its own (valid) tip and answers its API.
    node.admin("mining", {"enabled": True})
    wait_until(
        lambda: node.height() >= height + 3, 60, "mining to carry on after the forged blocks"
    )
    assert node.status()["mining"] is True
    assert node.stop() == 0


def test_side_blocks_spend_the_verification_budget(make_node, tmp_path):
    # A budget of a microsecond (refilling in 100 s): the first side block validated costs more
    # than that (a signature check alone does), so the second one finds the budget spent. The
    # node keeps mining throughout: a sibling of one of its blocks is a side branch whatever
    # the tip does meanwhile (equal work never displaces the block seen first).
    node = make_node("budget").start(mine=True, extra=["--verify-budget", "0.000001"]).wait_ready()
    wait_until(lambda: node.height() >= 3, 60, "a few blocks")
    status = node.status()
    parent_height = status["height"] - 1
    follower = ChainFollower(tmp_path / "follower", node.network)
    try:
        asyncio.run(follower.sync(node, upto=parent_height))
        siblings = []
        for i in range(
            2
        ):  # honest blocks by two keys on the same parent: siblings of the node's block
            key = _key("sibling", i)
            block = Miner(follower.chain, key).mine_block()
            assert block is not None and block.header.height == parent_height + 1
            siblings.append(block)
    finally:
        follower.close()

    async def scenario() -> tuple[str, dict, str]:
        peer = await TestPeer().connect(node.p2p_addr)
        await peer.handshake(status)
        await peer.send(BlockMsg(siblings[0].to_bytes()))
        first = await asyncio.to_thread(
            wait_until,
            lambda: _block_or_none(node, siblings[0]),
            20,
            "the first sibling to be stored",
        )
        await peer.send(BlockMsg(siblings[1].to_bytes()))
        reason = await peer.wait_closed(timeout=20)
        await peer.close()
        return reason, first, await reconnect(node, status, peer)

    reason, first, refused = asyncio.run(scenario())
    print(f"\nside block {first['status']}, on best chain {first['on_best_chain']}; then: {reason}")
    assert (
        first["status"] == "body" and not first["on_best_chain"]
    )  # stored as a side branch, valid so far
    assert "verification budget exhausted" in reason
    assert refused == "", f"a peer over budget is dropped, not banned: {refused}"
    assert node.get("/api/peers")["banned"] == []
    with pytest.raises(ApiError) as missing:
        node.get(f"/api/blocks/{siblings[1].hash.hex()}")
    assert missing.value.status == 404  # the second sibling was never looked at
    h = node.height()
    wait_until(lambda: node.height() >= h + 2, 60, "mining to carry on")
    assert node.stop() == 0


def _block_or_none(node, block: Block) -> dict | None:
    try:
        return node.get(f"/api/blocks/{block.hash.hex()}")
    except ApiError as exc:  # 404 until it is stored
        if exc.status != 404:
            raise
        return None
