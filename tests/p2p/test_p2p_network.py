"""Several real nodes on 127.0.0.1: agreement, transaction relay, late sync, SIGKILL during sync,
reindex."""

import time

import pytest
from framework import ApiError, agree_on_one_tip, wait_until, write_network

from chain.address import address_of, format_address
from chain.keys import PrivateKey
from chain.tx import make_transfer
from useful_work.hashing import tagged_hash

pytestmark = pytest.mark.integration


def test_three_mining_nodes_agree_on_every_block(make_node, tmp_path):
    # Harder blocks than fast.toml, so that each block takes longer than its propagation and
    # every miner gets a share.
    network = write_network(tmp_path / "net.toml", initial_units_per_block=120)
    a, b, c = (make_node(n, network=network) for n in "abc")
    addrs = [a.p2p_addr, b.p2p_addr, c.p2p_addr]
    for n in (a, b, c):
        n.start(peers=[x for x in addrs if x != n.p2p_addr], mine=True)
    for n in (a, b, c):
        n.wait_ready()
    wait_until(lambda: all(n.status()["peers"] >= 2 for n in (a, b, c)), 30, "full mesh of peers")
    wait_until(lambda: min(n.height() for n in (a, b, c)) >= 12, 90, "12 blocks on every node")
    for n in (a, b, c):
        assert n.admin("mining", {"enabled": False}) == {"mining": False}
    tips = agree_on_one_tip([a, b, c], a)
    height = tips[0]["height"]
    assert height >= 10
    chains = [n.block_hashes(height) for n in (a, b, c)]
    assert chains[0] == chains[1] == chains[2] and len(chains[0]) == height + 1
    miners = {a.get(f"/api/blocks/{h}")["miner"] for h in chains[0][1:]}
    print(f"\nthree nodes agree on {height} blocks, mined by {len(miners)} distinct miners")
    for n in (a, b, c):
        assert n.stop() == 0, n.log_tail()


def test_late_node_syncs_survives_sigkill_and_reindexes(make_node, tmp_path):
    # A fixed, easy target (no retarget: about 3 units a block) so that the chain to sync is quick
    # to mine.
    network = write_network(
        tmp_path / "quick.toml", retarget_half_life_ms=10**10, initial_units_per_block=3
    )
    a = make_node("a", network=network).start(mine=True).wait_ready()
    b = (
        make_node("b", network=network).start().wait_ready()
    )  # no peers yet: started early to save time
    target = 110
    wait_until(lambda: a.height() >= target, 120, f"{target} blocks on the first node")
    a.pause_mining()
    tip = a.status()
    assert b.height() == 0
    # The late node syncs from the first; it is killed with SIGKILL in the middle of it.
    b.admin("peers", {"address": a.p2p_addr})
    started = time.monotonic()
    wait_until(lambda: b.height() >= 15, 60, "the late node to start syncing")
    mid = b.height()
    b.kill()
    assert mid < tip["height"], "synced before the kill: nothing was interrupted"
    b.start(peers=[a.p2p_addr]).wait_ready()
    assert b.height() >= mid - 1  # the store reopened at its last completed connect
    wait_until(
        lambda: b.status()["best_hash"] == tip["best_hash"],
        120,
        "the restarted node to reach the tip",
    )
    elapsed = time.monotonic() - started
    print(
        f"\nsynced {tip['height']} blocks (killed at {mid}) in {elapsed:.1f} s: "
        f"{tip['height'] / elapsed:.1f} blocks/s with a restart"
    )
    assert b.block_hashes(tip["height"]) == a.block_hashes(tip["height"])
    assert b.stop() == 0
    # --reindex rebuilds index and state from the stored blocks: same tip, same account state.
    b.start(peers=[], extra=["--reindex"]).wait_ready(timeout=120)
    st = b.status()
    assert st["best_hash"] == tip["best_hash"]
    miner = tip["miner_address"]
    assert b.get(f"/api/accounts/{miner}") == a.get(f"/api/accounts/{miner}")
    assert b.stop() == 0 and a.stop() == 0


@pytest.mark.slow
def test_late_node_syncs_hundreds_of_blocks_from_two_peers_while_the_chain_grows(
    make_node, tmp_path
):
    """The bigger sync (the CI version above syncs about 110 blocks): 320+ blocks, bodies from two
    peers, while the miner keeps extending the chain the late node is chasing."""
    # A fixed, easy target (no retarget: about 3 units a block): quick blocks.
    network = write_network(
        tmp_path / "quick.toml", retarget_half_life_ms=10**10, initial_units_per_block=3
    )
    a = make_node("a", network=network).start(mine=True).wait_ready()
    b = (
        make_node("b", network=network).start(peers=[a.p2p_addr]).wait_ready()
    )  # follows a as it mines
    c = make_node("c", network=network).start().wait_ready()  # the late node: no peers yet
    target = 320
    wait_until(
        lambda: min(a.height(), b.height()) >= target,
        240,
        f"{target} blocks on the first two nodes",
    )
    assert c.height() == 0
    started = time.monotonic()
    c.admin("peers", {"address": a.p2p_addr})
    c.admin("peers", {"address": b.p2p_addr})
    wait_until(lambda: c.height() >= target, 180, f"the late node to sync {target} blocks")
    synced = time.monotonic() - started
    # a is still mining: the late node must follow the moving tip, then everyone agrees.
    a.pause_mining()
    tips = wait_until(
        lambda: (lambda s: s if len({x["best_hash"] for x in s}) == 1 else None)(
            [n.status() for n in (a, b, c)]
        ),
        60,
        "one tip on all three nodes",
    )
    height = tips[0]["height"]
    assert c.block_hashes(height) == a.block_hashes(height) == b.block_hashes(height)
    served = {p["listen"]: p["bytes_in"] for p in c.get("/api/peers")["peers"]}
    print(
        f"\nlate node synced {target} blocks in {synced:.1f} s ({target / synced:.1f} blocks/s) "
        f"while the chain grew to {height}; bytes received from a: {served.get(a.p2p_addr)}, from "
        f"b: {served.get(b.p2p_addr)}"
    )
    assert set(served) == {a.p2p_addr, b.p2p_addr}
    for n in (a, b, c):
        assert n.stop() == 0, n.log_tail()


def test_transaction_relays_to_every_mempool_and_is_mined_into_an_agreed_block(make_node, tmp_path):
    sender = PrivateKey.from_bytes(tagged_hash("p2p-test-key", b"funded"))
    funded = format_address(address_of(sender.public_key()))
    recipient = address_of(
        PrivateKey.from_bytes(tagged_hash("p2p-test-key", b"recipient")).public_key()
    )
    network = write_network(tmp_path / "funded.toml", allocations=[(funded, 10**12)])
    a, b, c = (make_node(n, network=network) for n in "abc")
    addrs = [a.p2p_addr, b.p2p_addr, c.p2p_addr]
    for n in (
        a,
        b,
        c,
    ):  # nobody mines yet: the transaction must travel as a transaction, not in a block
        n.start(peers=[x for x in addrs if x != n.p2p_addr])
    for n in (a, b, c):
        n.wait_ready()
    wait_until(lambda: all(n.status()["peers"] >= 2 for n in (a, b, c)), 30, "full mesh of peers")
    st = c.status()
    assert c.get(f"/api/accounts/{funded}")["balance"] == 10**12
    tx = make_transfer(
        sender, bytes.fromhex(st["chain_id"]), nonce=0, fee=1_000, to=recipient, amount=12_345
    )
    txid = tx.txid.hex()
    assert c.request("POST", "/api/txs", {"tx": tx.to_bytes().hex()}) == {
        "txid": txid,
        "status": "pending",
    }
    started = time.monotonic()
    for n in (a, b):
        wait_until(
            lambda n=n: _tx_status(n, txid) == "pending",
            20,
            f"the transaction in {n.name}'s mempool",
        )
    relayed = time.monotonic() - started
    assert all(n.status()["mempool"]["transactions"] == 1 for n in (a, b, c))
    # The one miner (a) includes it; every node confirms it in the same block.
    a.admin("mining", {"enabled": True})
    wait_until(
        lambda: all(_tx_status(n, txid) == "confirmed" for n in (a, b, c)),
        60,
        "the transaction confirmed on every node",
    )
    where = [n.get(f"/api/txs/{txid}") for n in (a, b, c)]
    assert len({(w["block"], w["height"], w["index"]) for w in where}) == 1
    block_hash, height = where[0]["block"], where[0]["height"]
    for n in (a, b, c):
        assert n.get(f"/api/blocks/{height}")["hash"] == block_hash
        assert n.get(f"/api/accounts/{format_address(recipient)}")["balance"] == 12_345
        sent = n.get(f"/api/accounts/{funded}")
        assert (sent["balance"], sent["nonce"]) == (10**12 - 12_345 - 1_000, 1)
    # Submitted again, anywhere, it is refused: its nonce is spent.
    with pytest.raises(ApiError) as exc:
        b.request("POST", "/api/txs", {"tx": tx.to_bytes().hex()})
    assert exc.value.status == 400 and "nonce" in exc.value.body["error"]
    print(
        f"\ntransaction relayed to both other mempools in {relayed:.2f} s, mined at height {height}"
    )
    for n in (a, b, c):
        assert n.stop() == 0, n.log_tail()


def _tx_status(node, txid: str) -> str | None:
    try:
        return node.get(f"/api/txs/{txid}")["status"]
    except ApiError as exc:
        if exc.status != 404:
            raise
        return None
