"""Assume-valid sync with real nodes: below the named block a syncing node checks headers,
tickets, transactions and state roots but does not re-execute units; above it, it does."""

from __future__ import annotations

import pytest
from framework import NodeProcess, wait_until, write_network

pytestmark = pytest.mark.integration


def test_a_node_syncs_without_reexecuting_up_to_the_assume_valid_block(tmp_path):
    network = write_network(tmp_path / "net.toml")
    a = NodeProcess(tmp_path / "a", network, "a").start(mine=True).wait_ready()
    nodes = [a]
    try:
        wait_until(lambda: a.height() >= 10, 180, "10 blocks on a")
        height = a.pause_mining()
        assumed_at = height - 3
        assume = a.get(f"/api/blocks/{assumed_at}")["hash"]
        b = NodeProcess(tmp_path / "b", network, "b").start(
            peers=[a.p2p_addr], extra=["--assume-valid", assume]
        )
        c = NodeProcess(tmp_path / "c", network, "c").start(peers=[a.p2p_addr])
        nodes += [b, c]
        for n in (b, c):
            n.wait_ready()
        for n in (b, c):
            wait_until(
                lambda n=n: n.status()["best_hash"] == a.status()["best_hash"],
                120,
                f"{n.name} synced",
            )
        status_b, status_c = b.status(), c.status()
        assert status_b["assume_valid"] == {
            "block": assume,
            "connected_without_reexecution": assumed_at,
        }
        assert status_c["assume_valid"] == {"block": None, "connected_without_reexecution": 0}
        # the blocks above it were re-executed: b has the tip's task state, so it can mine on
        assert b.admin("mining", {"enabled": True})
        wait_until(lambda: b.height() > height, 120, "b mining on the synced chain")
        bad = NodeProcess(tmp_path / "d", network, "d")
        nodes.append(bad)
        bad.start(extra=["--assume-valid", "xyz"])
        assert bad.proc.wait(30) != 0 and "--assume-valid 'xyz'" in bad.log_tail()
    finally:
        for n in nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.stop()
