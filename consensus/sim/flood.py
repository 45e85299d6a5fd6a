"""The flooder: invalid blocks sent at a rate to its peers, and what each defence makes them cost.

Two kinds of flood block, both built on the victim's tip so they could become the best chain:
- "bad-ticket": a header whose ticket is above the target (free to make); the header check
  rejects it, so each costs the victim one header check.
- "fake-work": a fabricated trace whose root was ground until the ticket fell under the target
  (about 1/p hashes); it passes the header and body checks and fails at the re-execution of the
  winning unit, so each costs a header check plus one unit.
Defences per peer: a ban (a peer that sent invalid work is refused for ban_seconds) and a
verification budget (at most budget_seconds of re-execution per budget_window_s; blocks beyond it
get the header check only). Each victim verifies in arrival order on one verifier, so flood work
ahead of an honest block delays that block (the wait this module hands the propagation model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from consensus.sim.config import AdversaryConfig, NetworkConfig
from consensus.sim.network import Network

MAX_FLOOD_ITEMS = 5_000_000


@dataclass
class VictimQueue:
    """One honest peer's verifier under the flood: verified items and when each is done."""

    node: int
    arrive: np.ndarray  # every flood block that reached it (bans drop the rest earlier)
    cost: np.ndarray  # verification seconds each took
    expensive: np.ndarray  # bool: re-executed a unit
    busy_arrive: np.ndarray  # arrival times of the items with a cost, for the wait
    done: np.ndarray  # when the verifier finished each of them (FIFO, one at a time)

    def wait(self, x: float) -> float:
        j = int(np.searchsorted(self.busy_arrive, x, side="right")) - 1
        return x if j < 0 else max(x, float(self.done[j]))


@dataclass
class FloodPlan:
    victims: list[VictimQueue]
    sent: int  # flood blocks sent over all links
    until: float

    @property
    def waits(self) -> dict:
        return {q.node: q.wait for q in self.victims}


def fifo_done(arrive: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Finish times of a single FIFO server: d_i = max(a_i, d_{i-1}) + c_i, without a Python
    loop."""
    if len(arrive) == 0:
        return arrive.copy()
    c = np.cumsum(cost)
    return c + np.maximum.accumulate(arrive - (c - cost))


def _banned_out(arrive: np.ndarray, ban_seconds: float) -> np.ndarray:
    """Indexes that reach the victim: the first, then the first after each ban it triggers runs
    out."""
    keep = []
    i = 0
    while i < len(arrive):
        keep.append(i)
        i = int(np.searchsorted(arrive, arrive[i] + ban_seconds, side="left"))
        if ban_seconds <= 0:
            i = keep[-1] + 1
    return np.array(keep, dtype=np.int64)


def plan_flood(
    adv: AdversaryConfig,
    net_cfg: NetworkConfig,
    net: Network,
    flooder: int,
    unit_seconds: float,
    header_seconds: float,
    until: float,
    rng: np.random.Generator,
) -> FloodPlan:
    start = adv.start_s
    stop = min(adv.stop_s, until) if adv.stop_s is not None else until
    size = net_cfg.header_bytes if adv.flood_kind == "bad-ticket" else net_cfg.block_bytes
    victims: list[VictimQueue] = []
    sent = 0
    span = max(0.0, stop - start)
    expected = adv.rate * span * len(net.neighbours[flooder])
    if expected > MAX_FLOOD_ITEMS:
        raise ValueError(
            f"adversary.rate: {expected:.0f} flood blocks in this run; keep rate * duration * "
            f"peers under {MAX_FLOOD_ITEMS}"
        )
    for v in net.neighbours[flooder]:
        if adv.rate <= 0 or span <= 0:
            times = np.empty(0)
        else:
            count = rng.poisson(adv.rate * span)
            times = np.sort(rng.uniform(start, stop, size=count))
        sent += len(times)
        e = net.index[(flooder, v)]
        gap = size / float(net.bandwidth[e])
        idx = np.arange(len(times))
        # The link sends one block at a time: each leaves no earlier than the previous one plus its
        # transfer.
        leave = np.maximum.accumulate(times - idx * gap) + idx * gap if len(times) else times
        arrive = leave + gap + float(net.latency[e])
        if adv.ban:
            arrive = arrive[_banned_out(arrive, adv.ban_seconds)]
        expensive = np.full(len(arrive), adv.flood_kind == "fake-work")
        if adv.budget_seconds is not None and unit_seconds > 0 and expensive.any():
            per_window = int(adv.budget_seconds // unit_seconds)
            window = np.floor(arrive / adv.budget_window_s).astype(np.int64)
            first = np.searchsorted(window, window, side="left")
            rank = np.arange(len(window)) - first
            expensive &= rank < per_window
        cost = header_seconds + np.where(expensive, unit_seconds, 0.0)
        busy = cost > 0
        victims.append(
            VictimQueue(
                v, arrive, cost, expensive, arrive[busy], fifo_done(arrive[busy], cost[busy])
            )
        )
    return FloodPlan(victims, sent, stop)
