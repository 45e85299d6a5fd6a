"""The network model: topologies, propagation times, the parent rule, relays, partitions, FIFO
verifiers."""

from collections import Counter

import numpy as np
import pytest

from consensus.sim import topology
from consensus.sim.flood import fifo_done
from consensus.sim.network import INF, Cut, Network


def _line_network(n: int, latency: float = 0.1, bandwidth: float = 1e6) -> Network:
    edges = topology.line(n)
    eu = [u for u, v in edges] + [v for u, v in edges]
    ev = [v for u, v in edges] + [u for u, v in edges]
    return Network(
        n, np.array(eu), np.array(ev), np.full(len(eu), latency), np.full(len(eu), bandwidth)
    )


@pytest.mark.parametrize("n, d", [(50, 4), (101, 6), (30, 3)])
def test_random_regular_graphs_are_regular_simple_connected_and_seeded(n, d):
    edges = topology.random_regular(n, d, np.random.default_rng(7))
    degrees = Counter(u for e in edges for u in e)
    assert set(degrees.values()) == {d} and len(degrees) == n
    assert len(set(edges)) == len(edges) and all(u != v for u, v in edges)
    assert topology.connected(n, edges)
    assert edges == topology.random_regular(n, d, np.random.default_rng(7))
    assert edges != topology.random_regular(n, d, np.random.default_rng(8))


def test_block_crosses_a_line_one_verified_hop_at_a_time():
    net = _line_network(5, latency=0.1, bandwidth=1000.0)
    relay = np.ones(5, dtype=bool)
    accept, recv = net.propagate(0, 10.0, 10.0, size=500, verify_s=0.2, relay=relay)
    hop = 0.1 + 500 / 1000 + 0.2
    assert accept == pytest.approx([10.0 + hop * i for i in range(5)])
    assert recv[1] == pytest.approx(10.0 + 0.6) and recv[0] == INF


def test_a_node_that_does_not_relay_stops_the_block():
    net = _line_network(4)
    relay = np.array([True, True, False, True])
    accept, _ = net.propagate(0, 0.0, 0.0, size=0, verify_s=0.0, relay=relay)
    assert np.isfinite(accept[:3]).all() and accept[3] == INF


def test_a_block_waits_for_its_parent_at_each_node():
    net = _line_network(3)
    relay = np.ones(3, dtype=bool)
    parent = np.array([0.0, 5.0, 9.0])  # when each node accepted the parent
    accept, _ = net.propagate(0, 1.0, 1.0, size=0, verify_s=0.5, relay=relay, parent_accept=parent)
    assert accept[1] == pytest.approx(5.5)  # arrived at 1.1, verified after the parent
    assert accept[2] == pytest.approx(9.5)


def test_rejecting_nodes_neither_accept_nor_relay():
    net = _line_network(3)
    reject = np.array([False, True, False])
    accept, recv = net.propagate(
        0, 0.0, 0.0, size=0, verify_s=0.0, relay=np.ones(3, dtype=bool), reject=reject
    )
    assert accept[1] == INF and accept[2] == INF and recv[1] < INF


def test_a_partition_holds_messages_until_it_heals():
    net = _line_network(3)
    crossing = (net.eu == 1) & (net.ev == 2) | (net.eu == 2) & (net.ev == 1)
    net.cuts.append(Cut(5.0, 20.0, crossing, np.array([0, 0, 1])))
    accept, _ = net.propagate(0, 6.0, 6.0, size=0, verify_s=0.0, relay=np.ones(3, dtype=bool))
    assert accept[1] == pytest.approx(6.1) and accept[2] == pytest.approx(20.1)
    assert net.arrival(1, 2, 7.0, 0) == pytest.approx(20.1)
    assert net.arrival(1, 2, 21.0, 0) == pytest.approx(21.1)


def test_fifo_verifier_matches_a_loop():
    rng = np.random.default_rng(3)
    arrive = np.sort(rng.uniform(0, 10, 200))
    cost = rng.uniform(0, 0.2, 200)
    done, last = [], -np.inf
    for a, c in zip(arrive, cost):
        last = max(a, last) + c
        done.append(last)
    assert fifo_done(arrive, cost) == pytest.approx(done)
