"""The network model: directed links with latency and bandwidth, partitions, and block propagation.

A message on a link arrives latency + bytes / bandwidth after it is sent (no queueing on the
link). A link cut by a partition holds what is sent over it until the partition heals, which is
also how two halves resynchronise: each side hands the other what it missed when they reconnect.
A node relays a block once it has verified it, and cannot verify a block before its parent, so
the time each node accepts a block is the earliest-arrival fixpoint of

    accept[v] = max(min over links u->v (send[u] + delay(u, v)), accept_parent[v])
                + wait_v + verify,

computed for all nodes at once, by label-correcting (Bellman-Ford) rounds over numpy arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from consensus.sim import topology
from consensus.sim.config import Experiment
from consensus.sim.population import Population, gamma_group

INF = float("inf")
Wait = Callable[[float], float]  # arrival time at a busy verifier -> time its verification starts


@dataclass(frozen=True)
class Cut:
    """Links cut from `start` until `end` (a partition)."""

    start: float
    end: float
    edges: np.ndarray  # bool over directed edges
    group: np.ndarray  # side of each node


@dataclass
class Network:
    n: int
    eu: np.ndarray  # directed edges, sorted by destination
    ev: np.ndarray
    latency: np.ndarray  # seconds, per directed edge
    bandwidth: np.ndarray  # bytes per second, per directed edge
    cuts: list[Cut] = field(default_factory=list)
    gamma_group: np.ndarray | None = None
    gamma_realised: float | None = None

    def __post_init__(self) -> None:
        order = np.lexsort((self.eu, self.ev))
        self.eu, self.ev = self.eu[order], self.ev[order]
        self.latency, self.bandwidth = self.latency[order], self.bandwidth[order]
        counts = np.bincount(self.ev, minlength=self.n)
        self.has_in = counts > 0
        self.starts = (np.cumsum(counts) - counts)[self.has_in]
        self.index = {
            (int(u), int(v)): i for i, (u, v) in enumerate(zip(self.eu.tolist(), self.ev.tolist()))
        }
        self.neighbours: list[list[int]] = [[] for _ in range(self.n)]
        for u, v in zip(self.eu.tolist(), self.ev.tolist()):
            self.neighbours[u].append(v)

    def _delay(self, size: int) -> np.ndarray:
        """Latency plus transfer time per directed edge for a message of `size` bytes (cached per
        size)."""
        cache = self.__dict__.setdefault("_delays", {})
        if size not in cache:
            cache[size] = self.latency + size / self.bandwidth
        return cache[size]

    # --- one message (the real-mode engine) -------------------------------------------------

    def arrival(self, u: int, v: int, send: float, size: int) -> float:
        e = self.index[(u, v)]
        for cut in self.cuts:
            if cut.edges[e] and cut.start <= send < cut.end:
                send = cut.end
        return send + float(self.latency[e]) + size / float(self.bandwidth[e])

    # --- a block to everyone (the modelled engine) ------------------------------------------

    def _held(self, send: np.ndarray) -> np.ndarray:
        for cut in self.cuts:
            held = cut.edges & (send >= cut.start) & (send < cut.end)
            if held.any():
                send = np.where(held, cut.end, send)
        return send

    def propagate(
        self,
        src: int,
        accepted_at: float,
        send_at: float,
        size: int,
        verify_s: float,
        relay: np.ndarray,
        parent_accept: np.ndarray | None = None,
        reject: np.ndarray | None = None,
        waits: dict[int, Wait] | None = None,
        ignore_cuts: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(accept, receive): when each node accepts the block (inf: never) and first receives it.

        `relay` says which nodes pass blocks on (the source always sends, from `send_at`);
        `reject` marks nodes that receive the block, verify it, and refuse it.
        """
        n = self.n
        accept = np.full(n, INF)
        accept[src] = accepted_at
        send = np.full(n, INF)
        send[src] = send_at
        delay = self._delay(size)
        all_in = bool(self.has_in.all())
        recv = np.full(n, INF)
        for _ in range(n + 1):
            out = send[self.eu]
            if self.cuts and not ignore_cuts:
                out = self._held(out)
            arrive = out + delay
            if all_in:
                recv = np.minimum.reduceat(arrive, self.starts)
            else:
                recv = np.full(n, INF)
                if len(arrive):
                    recv[self.has_in] = np.minimum.reduceat(arrive, self.starts)
            start = recv if parent_accept is None else np.maximum(recv, parent_accept)
            if waits:
                start = start.copy()
                for v, wait in waits.items():
                    if start[v] < INF:
                        start[v] = wait(float(start[v]))
            new = start + verify_s
            if reject is not None:
                new[reject] = INF
            new[src] = accepted_at
            if not (new < accept).any():
                break
            accept = np.minimum(accept, new)
            send = np.where(relay, accept, INF)
            send[src] = send_at
        recv[src] = INF
        return accept, recv


def build_network(exp: Experiment, pop: Population, rng: np.random.Generator) -> Network:
    net_cfg = exp.network
    low, high = net_cfg.latency_s
    honest_edges = topology.build(net_cfg.topology, pop.honest_n, net_cfg.degree, rng)
    eu: list[int] = []
    ev: list[int] = []
    lat: list[float] = []
    draws = (
        rng.uniform(low, high, size=len(honest_edges))
        if high > low
        else np.full(len(honest_edges), low)
    )
    for (u, v), d in zip(honest_edges, draws.tolist()):
        eu += [u, v]
        ev += [v, u]
        lat += [d, d]
    group_nodes, gamma_real = None, None
    a = pop.adversary
    if a is not None:
        adv = exp.adversary
        if adv.kind == "selfish":
            # Eyal and Sirer's attacker hears every honest block at once and reaches a gamma share
            # of honest power before the honest block does, and the rest only after it.
            fast, slow = 0.1 * low, 3.0 * high
            group_nodes, gamma_real = gamma_group(pop, adv.gamma, rng)
            in_group = set(group_nodes.tolist())
            for m in pop.honest_miners.tolist():
                eu += [m, a]
                ev += [a, m]
                lat += [fast, fast if m in in_group else slow]
        else:
            peers = rng.choice(pop.honest_n, size=min(adv.peers, pop.honest_n), replace=False)
            for p in sorted(peers.tolist()):
                d = float(rng.uniform(low, high)) if high > low else low
                eu += [p, a]
                ev += [a, p]
                lat += [d, d]
    n_edges = len(eu)
    network = Network(
        n=pop.n,
        eu=np.array(eu, dtype=np.int64),
        ev=np.array(ev, dtype=np.int64),
        latency=np.array(lat, dtype=float),
        bandwidth=np.full(n_edges, net_cfg.bandwidth_bytes_s),
        gamma_group=group_nodes,
        gamma_realised=gamma_real,
    )
    for event in exp.events:
        side = np.zeros(pop.n, dtype=np.int64)
        order = rng.permutation(pop.honest_n)
        bounds = np.round(np.cumsum(event.fractions) * pop.honest_n).astype(int)
        start = 0
        for g, end in enumerate(bounds.tolist()):
            side[order[start:end]] = g
            start = end
        if a is not None:
            side[a] = 0
        network.cuts.append(
            Cut(event.at_s, event.heal_s, side[network.eu] != side[network.ev], side)
        )
    return network
