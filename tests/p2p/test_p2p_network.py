"""Several real nodes on 127.0.0.1: agreement, late sync, SIGKILL during sync, reindex."""

import time

import pytest

from framework import wait_until, write_network

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
    tips = wait_until(
        lambda: (lambda s: s if len({x["best_hash"] for x in s}) == 1 else None)([n.status() for n in (a, b, c)]),
        30, "one tip on all three nodes",
    )
    height = tips[0]["height"]
    assert height >= 10
    chains = [n.block_hashes(height) for n in (a, b, c)]
    assert chains[0] == chains[1] == chains[2] and len(chains[0]) == height + 1
    miners = {a.get(f"/api/blocks/{h}")["miner"] for h in chains[0][1:]}
    print(f"\nthree nodes agree on {height} blocks, mined by {len(miners)} distinct miners")
    for n in (a, b, c):
        assert n.stop() == 0, n.log_tail()


def test_late_node_syncs_survives_sigkill_and_reindexes(make_node):
    a = make_node("a").start(mine=True).wait_ready()
    target = 110
    wait_until(lambda: a.height() >= target, 120, f"{target} blocks on the first node")
    a.admin("mining", {"enabled": False})
    time.sleep(0.5)
    tip = a.status()
    # A late node syncs from the first; it is killed with SIGKILL in the middle of it.
    b = make_node("b").start(peers=[a.p2p_addr]).wait_ready()
    started = time.monotonic()
    wait_until(lambda: b.height() >= 15, 60, "the late node to start syncing")
    mid = b.height()
    b.kill()
    assert mid < tip["height"], "synced before the kill: nothing was interrupted"
    b.start(peers=[a.p2p_addr]).wait_ready()
    assert b.height() >= mid - 1  # the store reopened at its last completed connect
    wait_until(lambda: b.status()["best_hash"] == tip["best_hash"], 120, "the restarted node to reach the tip")
    elapsed = time.monotonic() - started
    print(f"\nsynced {tip['height']} blocks (killed at {mid}) in {elapsed:.1f} s: {tip['height'] / elapsed:.1f} blocks/s with a restart")
    assert b.block_hashes(tip["height"]) == a.block_hashes(tip["height"])
    assert b.stop() == 0
    # --reindex rebuilds index and state from the stored blocks: same tip, same account state.
    b.start(peers=[], extra=["--reindex"]).wait_ready(timeout=120)
    st = b.status()
    assert st["best_hash"] == tip["best_hash"]
    miner = tip["miner_address"]
    assert b.get(f"/api/accounts/{miner}") == a.get(f"/api/accounts/{miner}")
    assert b.stop() == 0 and a.stop() == 0
