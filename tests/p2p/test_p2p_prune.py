"""Pruning with real nodes: a node started with --prune BLOCKS syncs a chain, then keeps the
openings and undo records of only the last BLOCKS blocks. It says so in its handshake, serves
headers and recent blocks, refuses old bodies (notfound on the wire, a 410 naming the horizon in
the API), still serves every block's transactions and leaves, the task's manifest and state,
and reorganises within its horizon."""

from __future__ import annotations

import asyncio

import pytest
from framework import NodeProcess, TestPeer, wait_until, write_network

from chain.block import Block
from p2p.protocol import BlockMsg, GetData, NotFound

pytestmark = pytest.mark.integration

KEEP = 8


async def ask_blocks(node: NodeProcess, hashes: list[bytes]) -> tuple[object, list[object]]:
    peer = await TestPeer().connect(node.p2p_addr)
    try:
        hello = await peer.handshake(node.status())
        replies = []
        for h in hashes:
            await peer.send(GetData(blocks=(h,)))
            msg = await peer.recv()
            while not isinstance(msg, (BlockMsg, NotFound)):
                msg = await peer.recv()
            replies.append(msg)
        return hello, replies
    finally:
        await peer.close()


def test_a_pruned_node_serves_headers_and_recent_blocks_and_every_task_result(tmp_path):
    network = write_network(tmp_path / "net.toml")
    a = NodeProcess(tmp_path / "a", network, "a").start(mine=True).wait_ready()
    b = NodeProcess(tmp_path / "b", network, "b")
    nodes = [a, b]
    try:
        wait_until(lambda: a.height() >= 25, 180, "25 blocks on a")
        b.start(peers=[a.p2p_addr], mine=True, extra=["--prune", str(KEEP)]).wait_ready()
        wait_until(lambda: b.height() >= a.height() >= 25, 120, "b synced")
        # both mine now: ties and short reorgs within the horizon happen; they must agree again
        wait_until(lambda: b.height() >= 32, 180, "b mining past the sync")
        for n in (a, b):
            n.admin("mining", {"enabled": False})
        a.pause_mining()
        b.pause_mining()
        # Two tips of equal work (each node's own block at the last height) stay apart, the
        # first seen kept: one more block from a breaks the tie.
        for _ in range(3):
            try:
                wait_until(
                    lambda: a.status()["best_hash"] == b.status()["best_hash"], 20, "one tip"
                )
                break
            except AssertionError:
                top = a.height()
                a.admin("mining", {"enabled": True})
                wait_until(lambda top=top: a.height() > top, 60, "a block to break the tie")
                a.pause_mining()
        wait_until(lambda: a.status()["best_hash"] == b.status()["best_hash"], 60, "one tip")
        status = b.status()
        tip = status["height"]
        assert status["prune"] == KEEP
        old, recent = b.get("/api/blocks/3"), b.get(f"/api/blocks/{tip - 2}")
        assert old["pruned"] and old["openings"] == [[]] and old["transactions"] is not None
        assert not recent["pruned"] and recent["openings"] != [[]]
        with pytest.raises(Exception) as refused:
            b.get("/api/blocks/3/trace")
        assert refused.value.status == 410 and f"last {KEEP} blocks" in refused.value.body["error"]
        assert b.get(f"/api/blocks/{tip - 2}/trace")["claims"]
        # headers all stay, over the API and the wire
        headers = b.get("/api/headers?start=0")["headers"]
        assert len(headers) == tip + 1
        assert headers == a.get(f"/api/headers?start=0&limit={tip + 1}")["headers"]
        hello, replies = asyncio.run(
            ask_blocks(b, [bytes.fromhex(old["hash"]), bytes.fromhex(recent["hash"])])
        )
        assert hello.pruned == KEEP
        assert isinstance(replies[0], NotFound) and replies[0].blocks == (
            bytes.fromhex(old["hash"]),
        )
        assert (
            isinstance(replies[1], BlockMsg)
            and Block.from_bytes(replies[1].block).hash.hex() == recent["hash"]
        )
        # every task result: the default task's manifest over all its blocks, and its state
        task = status["active_task"]["task_id"]
        manifest_b = b.get(f"/api/tasks/{task}/manifest?limit=100")
        manifest_a = a.get(f"/api/tasks/{task}/manifest?limit=100")
        assert manifest_b == manifest_a and len(manifest_b["blocks"]) >= tip - 1
        assert b.get(f"/api/tasks/{task}/result?partial=1") == a.get(
            f"/api/tasks/{task}/result?partial=1"
        )
        assert "pruned here" in b.log_path.read_text()
    finally:
        for n in nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.stop()
