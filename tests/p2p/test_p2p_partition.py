"""A partition that heals, on loopback (the peers of the minority side are dropped by running it
without them): a 2-vs-1 split mines apart, then the sides are joined. They converge with no bans,
and the getdata and notfound messages stay within a small multiple of the blocks exchanged."""

from __future__ import annotations

import time

from framework import agree_on_one_tip, wait_until, write_network
from prometheus_client.parser import text_string_to_metric_families


def _messages(node) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(node.get("/metrics").decode()):
        if family.name == "pouw_peer_messages":
            for s in family.samples:
                if s.name.endswith("_total"):
                    out[s.labels["type"]] = s.value
    return out


def test_a_two_against_one_partition_heals_without_bans_or_request_storms(make_node, tmp_path):
    network = write_network(
        tmp_path / "quick.toml", retarget_half_life_ms=10**10, initial_units_per_block=3
    )
    a = make_node("a", network=network)
    b = make_node("b", network=network)
    c = make_node("c", network=network)
    a.start(peers=[b.p2p_addr], mine=True).wait_ready()
    b.start(peers=[a.p2p_addr], mine=True).wait_ready()
    c.start(mine=True).wait_ready()  # the minority side: no peers
    wait_until(lambda: a.height() >= 15 and c.height() >= 15, 90, "both sides to mine 15 blocks")
    for n in (
        a,
        b,
        c,
    ):  # all off first: a node of the majority settles only when its peer stops too
        n.admin("mining", {"enabled": False})
    for n in (a, b, c):
        n.pause_mining()
    split = {n.name: n.status() for n in (a, b, c)}
    assert split["a"]["best_hash"] != split["c"]["best_hash"], "the sides did not diverge"
    before = {n.name: _messages(n) for n in (a, b, c)}
    started = time.monotonic()
    c.admin("peers", {"address": a.p2p_addr})
    c.admin("peers", {"address": b.p2p_addr})

    # Equal work on both sides (fixed difficulty, same height) is a tie no node leaves: then a mines
    # one more block.
    agree_on_one_tip([a, b, c], a, wait_s=30)
    healed_s = time.monotonic() - started
    time.sleep(1.0)
    after = {n.name: _messages(n) for n in (a, b, c)}
    delta = {
        k: sum(after[n].get(k, 0) - before[n].get(k, 0) for n in after)
        for k in ("block", "getdata", "notfound")
    }
    for n in (a, b, c):
        assert n.get("/api/peers")["banned"] == [], (n.name, n.get("/api/peers"))
        assert "banned" not in n.log_path.read_text(errors="replace"), n.name
    blocks = max(1.0, delta["block"])
    print(
        f"\npartition healed in {healed_s:.1f} s: {delta['block']:.0f} blocks exchanged, "
        f"{delta['getdata']:.0f} getdata, {delta['notfound']:.0f} notfound"
    )
    assert delta["getdata"] <= 3 * blocks + 10, delta
    assert delta["notfound"] <= blocks + 10, delta
    for n in (a, b, c):
        assert n.stop() == 0
