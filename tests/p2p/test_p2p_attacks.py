"""Attacks on the lottery's network half, against real node processes.

Each test starts real `pouw node` processes on 127.0.0.1, attacks one of them (the victim) with a
hand-driven TestPeer speaking the wire protocol, and asserts on what the victim reports through
its API: it keeps following the honest chain, bans or disconnects the attacker, and its miner
never stops. The attacker's blocks are built in the test process on the victim's chain
(framework.ChainFollower) with the real consensus code.

- Body poisoning: the header of a real block relayed with a body that is not its own (a
  transaction dropped; an opening changed) bans the sender and marks nothing; the real block,
  from an honest node, is accepted.
- A malformed opening (it hashes to its leaf but does not decode: run_unit raises) is invalid
  work, typed bad-winning-unit; the sender is banned and the node carries on, also after a restart.
- A fake branch from genesis claiming more work (headers cost hashes only) whose first body is
  invalid: the victim validates the branch before switching, so its height never drops.
- A fake header chain (~600 headers, hashes only) whose bodies never come: the victim mines on
  and follows the honest chain while it holds them, gives the branch up after its body timeout
  and disconnects the announcer; after a restart it holds nothing and mines on.
- The other side of the header bounds: an honest peer whose chain is longer than the victim may
  hold headers for is asked again as bodies catch up, never banned.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from framework import (
    ApiError,
    ChainFollower,
    HeightWatch,
    TestPeer,
    agree_on_one_tip,
    wait_until,
    write_network,
)

from chain.address import address_of, format_address
from chain.block import (
    Block,
    BlockHeader,
    Opening,
    WorkClaim,
    WorkProof,
    header_commitment,
    sign_header,
    tx_root,
)
from chain.keys import PrivateKey
from chain.mempool import Mempool
from chain.tx import make_transfer
from consensus.chainstate import ChainState, Outcome
from consensus.miner import Miner, make_template
from consensus.tickets import ticket, ticket_wins
from consensus.validation import InvalidBlock, Reason, check_body, check_work
from p2p.protocol import BlockMsg, GetData, GetHeaders, Headers
from useful_work.hashing import ZERO_HASH, tagged_hash
from useful_work.trace import Leaf, state_hash, trace_root

pytestmark = pytest.mark.integration

BODY_TIMEOUT_S = 3  # the victim's --body-timeout in these tests (the default is 60 s)
# A retarget half-life long enough that a header chain forged with timestamps close together
# keeps the initial target: its tickets stay cheap to grind (initial_units_per_block hashes a
# header).
SLOW_RETARGET = {"retarget_half_life_ms": 10**8}


def _key(label: str, i: int = 0) -> PrivateKey:
    return PrivateKey.from_bytes(
        tagged_hash("p2p-attack-key", label.encode(), i.to_bytes(4, "big"))
    )


def _metric(node, line_start: str) -> float:
    for line in node.get("/metrics").decode().splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    return 0.0


def _block_or_none(node, block_hash: bytes) -> dict | None:
    try:
        return node.get(f"/api/blocks/{block_hash.hex()}")
    except ApiError as exc:
        if exc.status != 404:
            raise
        return None


# --- forging ------------------------------------------------------------------------------------


def forge_fake_chain(chain: ChainState, count: int, key: PrivateKey, label: str) -> list[Block]:
    """`count` blocks on the chain's tip whose headers pass every header rule and whose bodies
    match their headers, though their one unit was never run: each leaf copies the task's input
    state and invents a digest, ground (hashes only) until the ticket is under the target.

    The headers are checked and indexed in `chain` (a ChainState of the attacker's own) as they
    are made; the timestamps are spaced so the last is a few seconds ahead of now."""
    params = chain.params
    template = make_template(chain)
    miner = address_of(key.public_key())
    start_hash = state_hash(template.start_state)
    empty_root = tx_root(())
    parent = chain.tip.hash
    parent_time = chain.header(parent).time_ms
    step = max(1, (int(time.time() * 1000) + 5_000 - parent_time) // (count + 1))
    blocks = []
    for i in range(count):
        info = chain.parent_info(parent)
        target = info.next_target(params)
        when = max(info.median_time_past + 1, parent_time + step)
        commitment = header_commitment(empty_root, when, miner)
        for n in range(1 << 24):
            digest = tagged_hash(
                "fake digest", label.encode(), i.to_bytes(4, "big"), n.to_bytes(8, "big")
            )
            leaf = Leaf(start_hash, start_hash, digest, commitment)
            root = trace_root([leaf])
            if ticket_wins(ticket(parent, miner, root), target):
                break
        header = sign_header(
            BlockHeader(
                params.version,
                info.height + 1,
                parent,
                when,
                target,
                miner,
                bytes(32),
                miner,
                empty_root,
                ZERO_HASH,
                (WorkClaim(template.task_id, 1, root, 0),),
                task_state=leaf.output_hash,
            ),
            key,
        )
        result = chain.process_header(header)
        assert result.outcome == Outcome.HEADER, result
        blocks.append(Block(header, (), (WorkProof((leaf,), (Opening(0, template.start_state),)),)))
        parent, parent_time = header.hash, when
    return blocks


def forge_malformed_opening(chain: ChainState, key: PrivateKey) -> Block:
    """A two-unit block on the chain's tip whose winning unit opens a state that hashes to its
    leaf but does not decode: unit 0 is fabricated to "output" the garbage, unit 1 (the winner,
    always re-executed) starts from it; the winner's digest is ground until the ticket wins."""
    miner = Miner(chain, key)
    template = make_template(chain)
    draft = miner.draft(template)
    start, garbage = template.start_state, b"\xff" * 64
    for i in range(1_000_000):
        unit0 = Leaf(
            state_hash(start),
            state_hash(garbage),
            tagged_hash("forged digest 0", i.to_bytes(8, "big")),
            draft.commitment,
        )
        unit1 = Leaf(
            state_hash(garbage),
            state_hash(garbage),
            tagged_hash("forged digest 1", i.to_bytes(8, "big")),
            draft.commitment,
        )
        if ticket_wins(
            ticket(template.parent_hash, miner.address, trace_root([unit0, unit1])), template.target
        ):
            return miner.assemble(template, [unit0, unit1], [start, garbage], 0, draft)
    raise AssertionError("no winning forged ticket in 10^6 tries")


# --- the attacker's side of the wire ------------------------------------------------------------


async def serve_until_closed(
    peer: TestPeer, blocks: dict[bytes, Block] | None, log: list[float] | None = None
) -> str:
    """Answer the victim's getdata from `blocks` (None: ignore every request, the bodies never
    come) until it closes the connection; return its close reason. `log` gets the time of each
    body request."""
    while True:
        try:
            msg = await peer.recv(timeout=60)
        except TimeoutError:
            return "still open after 60 s"
        if msg is None:
            return peer.close_reason() or "closed"
        if isinstance(msg, GetData) and msg.blocks:
            if log is not None:
                log += [time.monotonic()] * len(msg.blocks)
            for h in msg.blocks:
                if blocks is not None and h in blocks:
                    await peer.send(BlockMsg(blocks[h].to_bytes()))


async def send_headers_when_asked(
    peer: TestPeer, status: dict, headers: list[BlockHeader], work: int
) -> None:
    """Handshake claiming the fake chain's height and work, wait for the victim's getheaders,
    answer with the fake headers (whatever its locator says)."""
    await peer.handshake(status, height=headers[-1].height, chain_work=work)
    await peer.recv_type(GetHeaders, timeout=10)
    await peer.send(Headers(tuple(h.to_bytes() for h in headers)))


# --- 3. body poisoning --------------------------------------------------------------------------


def test_body_poisoning_bans_the_sender_and_the_real_block_is_accepted(make_node, tmp_path):
    sender_key = _key("sender")
    network = write_network(
        tmp_path / "net.toml",
        allocations=[(format_address(address_of(sender_key.public_key())), 10**9)],
    )
    honest = make_node("honest", network=network).start(mine=True)
    victim = make_node("victim", network=network).start(peers=[honest.p2p_addr], mine=True)
    honest.wait_ready()
    victim.wait_ready()
    wait_until(
        lambda: victim.status()["peers"] >= 1 and victim.height() >= 3,
        60,
        "the victim peered and a few blocks",
    )
    # Both miners pause while the attacker's blocks are built on their common tip and relayed:
    # the blocks must extend the tip when they arrive (on an older parent they would only be
    # stored as side blocks). Mining resumes afterwards, and must carry on.
    honest.admin("mining", {"enabled": False})
    victim.pause_mining()
    honest.pause_mining()
    tip = agree_on_one_tip([honest, victim], honest)[0]
    height = tip["height"]
    mined_before = victim.status()["blocks_mined"]
    follower = ChainFollower(tmp_path / "follower", network, mempool=Mempool(1 << 20))
    try:
        asyncio.run(follower.sync(honest))
        tx = make_transfer(
            sender_key,
            follower.chain.chain_id,
            nonce=0,
            fee=1_000,
            to=address_of(_key("recipient").public_key()),
            amount=5_000,
        )
        follower.chain.add_transaction(tx)
        real_miner = Miner(follower.chain, _key("real block miner"), mempool=follower.mempool)
        b1 = real_miner.mine_block()
        assert (
            b1 is not None
            and b1.header.height == height + 1
            and tx.txid in {t.txid for t in b1.txs}
        )
        assert follower.chain.process_block(b1).outcome == Outcome.NEW_TIP
        b2 = real_miner.mine_block()
        assert b2 is not None and b2.header.height == height + 2
    finally:
        follower.close()
    dropped_tx = Block(b1.header, (), b1.proofs)  # the transaction dropped
    proof = b2.proofs[0]
    opening = proof.openings[0]
    changed = dataclasses.replace(opening, state=bytes([opening.state[0] ^ 1]) + opening.state[1:])
    changed_opening = Block(
        b2.header, b2.txs, (dataclasses.replace(proof, openings=(changed, *proof.openings[1:])),)
    )
    for poisoned in (dropped_tx, changed_opening):  # bodies that are not their headers'
        with pytest.raises(InvalidBlock) as info:
            check_body(follower.params, poisoned)
        assert info.value.reason is Reason.BODY_MISMATCH
    status = victim.status()

    async def give_to_honest(block: Block) -> None:
        peer = await TestPeer().connect(honest.p2p_addr)
        await peer.handshake(honest.status())
        await peer.send(BlockMsg(block.to_bytes()))
        await asyncio.to_thread(
            wait_until,
            lambda: honest.status()["best_hash"] == block.hash.hex(),
            20,
            "the honest node to take the real block",
        )
        await peer.close()

    async def scenario() -> dict:
        out: dict = {}
        # (a) The attacker relays the real header of b1 first, and serves a body with its
        #     transaction dropped when the victim asks for it.
        a1 = await TestPeer().connect(victim.p2p_addr)
        await a1.handshake(status)
        await a1.send(Headers((b1.header.to_bytes(),)))
        asked = await a1.recv_type(GetData, timeout=10)
        assert b1.hash in asked.blocks, (
            "the victim asks the peer that announced the header for its body"
        )
        await a1.send(BlockMsg(dropped_tx.to_bytes()))
        out["a1"] = await a1.wait_closed(timeout=10)
        await a1.close()
        st = victim.status()
        out["after_a1"] = (st["height"], st["header_height"], _block_or_none(victim, b1.hash))
        # The real block reaches the victim from the honest node.
        started = time.monotonic()
        await give_to_honest(b1)
        await asyncio.to_thread(
            wait_until,
            lambda: victim.status()["best_hash"] == b1.hash.hex(),
            20,
            "the victim to take the real b1",
        )
        out["b1_s"] = time.monotonic() - started
        # (b) Another attacker pushes b2 with a changed opening before anyone has it.
        a2 = await TestPeer().connect(victim.p2p_addr)
        await a2.handshake(status)
        await a2.send(BlockMsg(changed_opening.to_bytes()))
        out["a2"] = await a2.wait_closed(timeout=10)
        await a2.close()
        out["after_a2"] = _block_or_none(victim, b2.hash)
        started = time.monotonic()
        await give_to_honest(b2)
        await asyncio.to_thread(
            wait_until,
            lambda: victim.status()["best_hash"] == b2.hash.hex(),
            20,
            "the victim to take the real b2",
        )
        out["b2_s"] = time.monotonic() - started
        return out

    out = asyncio.run(scenario())
    print(
        f"\nrelayed header, dropped transaction: {out['a1']}\npushed body, changed opening: "
        f"{out['a2']}\nreal blocks accepted from the honest node {out['b1_s']:.2f} s and "
        f"{out['b2_s']:.2f} s after it had them"
    )
    # The senders of the bodies that are not their headers' are banned, for a bad message.
    assert "banned" in out["a1"] and "body-mismatch" in out["a1"] and "tx_root" in out["a1"]
    assert "banned" in out["a2"] and "body-mismatch" in out["a2"] and "opened state" in out["a2"]
    # Nothing was stored or marked: the header of b1 stays held (unproven), b2 is unknown.
    assert out["after_a1"] == (height, height + 1, None)
    assert out["after_a2"] is None
    # The real blocks are valid on the victim's best chain; the honest node is still its peer.
    for block in (b1, b2):
        info = victim.get(f"/api/blocks/{block.hash.hex()}")
        assert info["status"] == "valid" and info["on_best_chain"] and info["reason"] == ""
    peers = victim.get("/api/peers")
    assert [p["listen"] for p in peers["peers"]] == [honest.p2p_addr] and peers["peers"][0][
        "score"
    ] == 0
    assert len(peers["banned"]) == 2 and all(
        "body-mismatch" in b["reason"] for b in peers["banned"]
    )
    assert _metric(victim, 'pouw_bad_messages_total{message="block",reason="body-mismatch"}') == 2.0
    assert _metric(victim, 'pouw_blocks_total{outcome="invalid",reason="body-mismatch"}') == 0.0
    # Both mine on, on one chain that holds the real blocks; the victim's own miner too.
    honest.admin("mining", {"enabled": True})
    victim.admin("mining", {"enabled": True})
    wait_until(
        lambda: victim.height() >= height + 5 and victim.status()["blocks_mined"] > mined_before,
        60,
        "the victim to mine on after the attack",
    )
    assert victim.block_hashes(height + 2, start=height + 1) == [b1.hash.hex(), b2.hash.hex()]
    assert honest.block_hashes(height + 2, start=height + 1) == [b1.hash.hex(), b2.hash.hex()]
    assert victim.stop() == 0 and honest.stop() == 0


# --- 4. malformed openings and a fake branch with an invalid first body --------------------------


def test_malformed_opening_is_invalid_work_and_the_node_carries_on(make_node, tmp_path):
    victim = make_node("victim").start(mine=True).wait_ready()
    wait_until(lambda: victim.height() >= 3, 60, "a few blocks")
    height = victim.pause_mining()  # the forged block must extend the tip to be re-executed
    follower = ChainFollower(tmp_path / "follower", victim.network)
    try:
        asyncio.run(follower.sync(victim))
        forged = forge_malformed_opening(follower.chain, _key("malformed"))
        check_body(follower.params, forged)  # it matches its header: it is this block's body
        with pytest.raises(InvalidBlock) as info:
            check_work(follower.params, forged, follower.chain.state)
        assert (
            info.value.reason is Reason.BAD_WINNING_UNIT
            and "re-execution failed" in info.value.detail
        )
    finally:
        follower.close()
    status = victim.status()

    async def send() -> str:
        peer = await TestPeer().connect(victim.p2p_addr)
        await peer.handshake(status)
        await peer.send(BlockMsg(forged.to_bytes()))
        reason = await peer.wait_closed(timeout=30)
        await peer.close()
        return reason

    reason = asyncio.run(send())
    print(f"\nmalformed opening: {reason}")
    assert "banned" in reason and "bad-winning-unit" in reason and "re-execution failed" in reason
    info = victim.get(f"/api/blocks/{forged.hash.hex()}")
    assert (
        info["status"] == "invalid"
        and info["reason"].startswith("bad-winning-unit")
        and not info["on_best_chain"]
    )
    assert victim.height() == height
    assert _metric(victim, 'pouw_blocks_total{outcome="invalid",reason="bad-winning-unit"}') == 1.0
    victim.admin("mining", {"enabled": True})
    wait_until(
        lambda: victim.height() >= height + 2, 60, "mining to carry on after the malformed block"
    )
    # After a restart the block is still known invalid, and the node mines on.
    assert victim.stop() == 0
    victim.start(mine=True).wait_ready()
    restarted_at = victim.height()
    info = victim.get(f"/api/blocks/{forged.hash.hex()}")
    assert info["status"] == "invalid" and info["reason"].startswith("bad-winning-unit")
    wait_until(
        lambda: victim.height() >= restarted_at + 2, 60, "mining to carry on after the restart"
    )
    assert victim.stop() == 0


def test_fake_branch_from_genesis_with_an_invalid_first_body_leaves_the_tip(make_node, tmp_path):
    network = write_network(tmp_path / "net.toml", **SLOW_RETARGET)
    victim = make_node("victim", network=network).start(mine=True).wait_ready()
    attacker_chain = ChainFollower(
        tmp_path / "attacker", network
    )  # at genesis: the branch forks there
    try:
        fake = forge_fake_chain(attacker_chain.chain, 120, _key("fake branch"), "genesis branch")
        fake_work = attacker_chain.chain.entry(fake[-1].hash).chain_work
        with pytest.raises(InvalidBlock) as info:  # the first body's work was never done
            check_work(attacker_chain.params, fake[0], attacker_chain.chain.state)
        assert info.value.reason is Reason.BAD_WINNING_UNIT
    finally:
        attacker_chain.close()
    wait_until(lambda: victim.height() >= 10, 60, "ten blocks")
    before = victim.status()
    assert fake_work > int(before["chain_work"]), (
        "the fake branch must claim more work than the victim's chain"
    )
    bodies = {b.hash: b for b in fake}
    asked: list[float] = []

    async def attack() -> str:
        peer = await TestPeer().connect(victim.p2p_addr)
        await send_headers_when_asked(peer, before, [b.header for b in fake], fake_work)
        reason = await serve_until_closed(peer, bodies, asked)
        await peer.close()
        return reason

    with HeightWatch(victim) as watch:
        started = time.monotonic()
        reason = asyncio.run(attack())
        elapsed = time.monotonic() - started
        after = victim.status()
        time.sleep(0.5)
    print(
        f"\nfake branch of {len(fake)} headers from genesis: {len(asked)} bodies asked for, "
        f"attacker closed after {elapsed:.2f} s: {reason}\nvictim heights polled "
        f"{len(watch.samples)} times: {watch.samples[0][1]} -> {watch.samples[-1][1]}, drops "
        f"{watch.drops()}"
    )
    assert "banned" in reason and ("bad-winning-unit" in reason or "invalid-parent" in reason)
    assert len(watch.samples) > 10 and watch.drops() == []  # the height never went down
    first = victim.get(f"/api/blocks/{fake[0].hash.hex()}")
    assert (
        first["status"] == "invalid"
        and first["reason"].startswith("bad-winning-unit")
        and not first["on_best_chain"]
    )
    # The tip stayed on the victim's chain, and the fake headers are no longer its best claim.
    assert victim.block_hashes(before["height"], start=before["height"]) == [before["best_hash"]]
    assert after["height"] >= before["height"] and after["header_height"] <= after["height"] + 1
    assert any(
        "bad-winning-unit" in b["reason"] or "invalid-parent" in b["reason"]
        for b in victim.get("/api/peers")["banned"]
    )
    wait_until(
        lambda: victim.height() >= after["height"] + 3,
        60,
        "mining to carry on after the fake branch",
    )
    assert victim.stop() == 0


# --- 5. fake header chains ------------------------------------------------------------------------


def test_fake_header_chain_is_given_up_while_the_victim_mines_on(make_node, tmp_path):
    # Blocks of about 40 units (a few tenths of a second): long enough against propagation
    # that both nodes' blocks make it into the chain they share.
    network = write_network(tmp_path / "net.toml", initial_units_per_block=40, **SLOW_RETARGET)
    flags = ["--body-timeout", str(BODY_TIMEOUT_S)]
    honest = make_node("honest", network=network).start(mine=True)
    victim = make_node("victim", network=network).start(
        peers=[honest.p2p_addr], mine=True, extra=flags
    )
    attacker_chain = ChainFollower(tmp_path / "attacker", network)
    try:  # built while the nodes start: two fake chains of 600 headers each, by two keys
        fake_a = [
            b.header for b in forge_fake_chain(attacker_chain.chain, 600, _key("fake a"), "a")
        ]
        work_a = attacker_chain.chain.entry(fake_a[-1].hash).chain_work
        fake_b = [
            b.header for b in forge_fake_chain(attacker_chain.chain, 600, _key("fake b"), "b")
        ]
        work_b = attacker_chain.chain.entry(fake_b[-1].hash).chain_work
    finally:
        attacker_chain.close()
    honest.wait_ready()
    victim.wait_ready()
    wait_until(
        lambda: victim.status()["peers"] >= 1 and victim.height() >= 3,
        60,
        "the victim peered and a few blocks",
    )
    honest_miner = honest.status()["miner_address"]
    status = victim.status()
    assert work_a > int(status["chain_work"])
    samples: list[dict] = []

    def watch_until(predicate, timeout: float, what: str) -> dict:
        def check():
            st = {**victim.status(), "t": time.monotonic()}
            samples.append(st)
            return st if predicate(st) else None

        return wait_until(check, timeout, what, interval=0.1)

    async def phase_one() -> tuple[str, float, dict, dict, int]:
        peer = await TestPeer().connect(victim.p2p_addr)
        await send_headers_when_asked(peer, status, fake_a, work_a)
        sent = time.monotonic()
        asked: list[float] = []
        served = asyncio.create_task(serve_until_closed(peer, None, asked))  # the bodies never come
        held = await asyncio.to_thread(
            watch_until, lambda st: st["header_height"] >= 600, 10, "the fake headers to be held"
        )
        dropped = await asyncio.to_thread(
            watch_until, lambda st: st["header_height"] < 600, 30, "the fake branch to be given up"
        )
        reason = await served
        await peer.close()
        return reason, dropped["t"] - sent, held, dropped, len(asked)

    reason, drop_s, held, dropped, asked = asyncio.run(phase_one())
    during = [s for s in samples if s["header_height"] >= 600]
    mined_during = dropped["blocks_mined"] - held["blocks_mined"]
    honest_blocks = {
        s["best_hash"]
        for s in during
        if victim.get(f"/api/blocks/{s['best_hash']}")["miner"] == honest_miner
    }
    print(
        f"\n600 fake headers held {drop_s:.1f} s (body timeout {BODY_TIMEOUT_S} s), {asked} "
        f"bodies asked for; victim height {held['height']} -> {dropped['height']} meanwhile, "
        f"{mined_during} blocks by its own miner, {len(honest_blocks)} tips by the honest "
        f"node\nattacker: {reason}"
    )
    assert "bodies did not arrive" in reason and "banned" not in reason
    assert BODY_TIMEOUT_S <= drop_s <= BODY_TIMEOUT_S + 10
    assert asked >= 1  # the victim did ask for the bodies
    # Its miner never stopped: it ran units all along (blocks of its own depend on the machine's
    # load).
    units_during = dropped["units_mined"] - held["units_mined"]
    assert dropped["height"] > held["height"] and units_during >= 1, (
        "the victim mines on while the fake headers are held"
    )
    assert honest_blocks, "the victim follows the honest chain while the fake headers are held"
    assert dropped["header_height"] <= dropped["height"] + 1
    assert _metric(victim, "pouw_header_branches_dropped_total") == 1.0
    assert (
        victim.get("/api/peers")["banned"] == []
    )  # disconnected, not banned: the headers were valid

    # The same branch again: refused for now (it was given up), which is not a ban.
    async def phase_two() -> tuple[str, dict]:
        peer = await TestPeer().connect(victim.p2p_addr)
        await send_headers_when_asked(peer, victim.status(), fake_a, work_a)
        await asyncio.sleep(1.5)
        st = victim.status()
        open_ = not peer.ws.closed
        await peer.close()
        return open_, st

    still_open, st = asyncio.run(phase_two())
    assert still_open and st["header_height"] < 600
    assert _metric(victim, 'pouw_headers_total{outcome="rejected"}') >= 1.0

    # A second fake chain, held when the victim restarts: held in memory only, so the restarted
    # victim holds nothing, and mines on.
    async def phase_three() -> dict:
        peer = await TestPeer().connect(victim.p2p_addr)
        await send_headers_when_asked(peer, victim.status(), fake_b, work_b)
        st = await asyncio.to_thread(
            watch_until, lambda s: s["header_height"] >= 600, 10, "the second fake chain to be held"
        )
        await peer.close()
        return st

    held_b = asyncio.run(phase_three())
    assert victim.stop() == 0
    victim.start(peers=[honest.p2p_addr], mine=True, extra=flags).wait_ready()
    st = victim.status()
    # (its header height may be a little above its height: the honest node mined on meanwhile)
    assert st["header_height"] < 600 and st["height"] >= held_b["height"]
    wait_until(
        lambda: victim.height() >= st["height"] + 3 and victim.status()["blocks_mined"] >= 1,
        60,
        "the restarted victim to mine on",
    )
    assert victim.stop() == 0 and honest.stop() == 0


def test_honest_chain_longer_than_the_header_window_syncs_without_bans(make_node, tmp_path):
    # A fixed easy target (about 3 units a block), and a victim that holds headers at most 8
    # blocks above its validated tip: the honest peer's headers are refused for now, again and
    # again, and the victim asks again as the bodies catch up.
    network = write_network(
        tmp_path / "quick.toml", retarget_half_life_ms=10**10, initial_units_per_block=3
    )
    honest = make_node("honest", network=network).start(mine=True)
    victim = make_node("victim", network=network).start(extra=["--max-headers-ahead", "8"])
    honest.wait_ready()
    victim.wait_ready()
    wait_until(lambda: honest.height() >= 40, 60, "40 blocks on the honest node")
    tip = honest.pause_mining()
    target = honest.status()["best_hash"]
    started = time.monotonic()
    victim.admin("peers", {"address": honest.p2p_addr})
    wait_until(
        lambda: victim.status()["best_hash"] == target, 60, "the victim to sync the honest chain"
    )
    elapsed = time.monotonic() - started
    refused = _metric(victim, 'pouw_headers_total{outcome="rejected"}')
    print(
        f"\nsynced {tip} blocks through an 8-header window in {elapsed:.1f} s; header batches "
        f"refused for now: {refused:.0f}"
    )
    assert refused >= 1, "the window was hit: the test exercises the refused-for-now path"
    peers = victim.get("/api/peers")
    assert peers["banned"] == [] and len(peers["peers"]) == 1 and peers["peers"][0]["score"] == 0
    assert victim.block_hashes(tip) == honest.block_hashes(tip)
    assert victim.stop() == 0 and honest.stop() == 0
