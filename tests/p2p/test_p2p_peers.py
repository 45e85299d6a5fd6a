"""Hostile peers: garbage, oversized frames, fabricated work, blocks on unknown parents.

Each is disconnected (and banned where the input shows intent: invalid work, repeated abuse),
while the node keeps mining and answering its API.
"""

import asyncio
import dataclasses
import os

import pytest
from framework import (
    TestPeer,
    reconnect_and_expect,
    send_and_expect_close,
    send_block_and_expect,
    wait_until,
)

from chain.address import address_of
from chain.block import Block, sign_header
from chain.keys import PrivateKey
from consensus.tickets import ticket, ticket_wins
from p2p.protocol import BlockMsg, GetData, Ping, Pong, encode

pytestmark = pytest.mark.integration


async def _fetch_tip_block(node, status) -> Block:
    peer = await TestPeer().connect(node.p2p_addr)
    try:
        await peer.handshake(status)
        await peer.send(GetData(blocks=(bytes.fromhex(status["best_hash"]),)))
        msg = await peer.recv_type(BlockMsg)
        return Block.from_bytes(msg.block)
    finally:
        await peer.close()


def _fabricated_work(block: Block, key: PrivateKey) -> Block:
    """The same block with a trace root whose ticket misses the target (work never done), re-signed
    under the key's own address (signing under another's address is refused before the ticket)."""
    header = dataclasses.replace(block.header, miner=address_of(key.public_key()))
    for i in range(1000):
        root = bytes([i % 256, i // 256]) + os.urandom(30)
        if not ticket_wins(ticket(header.prev_hash, header.miner, root), header.target):
            break
    claim = dataclasses.replace(header.work[0], trace_root=root)
    return Block(
        sign_header(dataclasses.replace(header, work=(claim,)), key), block.txs, block.proofs
    )


def _unknown_parent(block: Block, key: PrivateKey) -> Block:
    header = dataclasses.replace(block.header, prev_hash=os.urandom(32))
    return Block(sign_header(header, key), block.txs, block.proofs)


async def _attacks(node) -> None:
    """Each attack from its own peer, asserted where it happens."""
    status = node.status()
    key = PrivateKey.generate()

    # 1. Garbage bytes before anything else.
    await send_and_expect_close(node, status, [os.urandom(300)], "malformed", handshake=False)

    # 2. Oversized messages after the handshake: a ping-typed frame over the ping limit, a block
    #    frame just over the network's max_message_bytes (refused by our decoder), and one far
    #    over it (refused by the WebSocket layer from the frame header). Each sender is banned.
    p = await TestPeer().connect(node.p2p_addr)
    await p.handshake(status)
    await p.send(Ping(7))
    assert (await p.recv_type(Pong)).nonce == 7
    await p.close()
    await send_and_expect_close(node, status, [b"\x92\x02" + b"\x00" * 5000], "ping", "limit 64")
    max_bytes = node.get("/api/params")["max_message_bytes"]
    block_peer = TestPeer()
    await send_and_expect_close(
        node,
        status,
        [encode(BlockMsg(b"\x00" * max_bytes))],
        "banned",
        "limit 2097152",
        peer=block_peer,
    )
    await reconnect_and_expect(node, status, block_peer, "banned")
    frame_peer = TestPeer()
    await send_and_expect_close(
        node, status, [encode(BlockMsg(b"\x00" * (3 << 20)))], peer=frame_peer
    )
    # (the WebSocket layer closes with 1009, message too big, before the node's own check)
    await reconnect_and_expect(node, status, frame_peer, "banned")

    # 3. A block with fabricated work: banned, and the ban holds on reconnection.
    tip = await _fetch_tip_block(node, status)
    fabricator = TestPeer()
    await send_block_and_expect(
        node, status, _fabricated_work(tip, key), "banned", "ticket-above-target", peer=fabricator
    )
    await reconnect_and_expect(node, status, fabricator, "banned")

    # 4. Valid-looking blocks on an unknown parent: tolerated once (the node asks for headers),
    #    dropped when repeated.
    await send_and_expect_close(
        node,
        status,
        [
            BlockMsg(_unknown_parent(tip, key).to_bytes()),
            BlockMsg(_unknown_parent(tip, key).to_bytes()),
        ],
        "unknown parent",
    )


def test_misbehaving_peers_are_dropped_while_the_node_mines(make_node):
    node = make_node("victim").start(mine=True).wait_ready()
    wait_until(lambda: node.height() >= 3, 60, "a few blocks")
    before = node.height()
    asyncio.run(_attacks(node))
    peers = node.get("/api/peers")
    assert len(peers["banned"]) >= 5 and peers["peers"] == []
    assert any("frame over the message size limit" in b["reason"] for b in peers["banned"])
    # Still mining and answering.
    wait_until(lambda: node.height() >= before + 3, 60, "more blocks after the attacks")
    metrics = node.get("/metrics").decode()
    assert 'pouw_blocks_total{outcome="invalid",reason="ticket-above-target"}' in metrics
    assert node.stop() == 0
