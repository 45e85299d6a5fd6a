"""Modelled work: unit completions drawn from unit rates, blocks as lightweight records.

Each miner finds a block on its current parent at the rate unit_rate * target / 2^256 (a ticket
per unit, each under the target with that probability). The target of every block comes from
consensus.targets.next_target and its chain work from consensus.forkchoice.chain_work_after; a
node's tip is its most-work block by consensus.forkchoice.prefer, the first seen staying on a tie.

How it runs fast (1,000 nodes, 10,000 blocks):
- Block discovery is one Poisson stream of candidates at rate Q * (sum of unit rates), where Q
  bounds target / 2^256 over every block a miner could be on until the next event; a candidate
  picks a miner by unit rate and keeps the block with probability (its parent's target / 2^256) / Q.
  That thinning is exact for rates that change whenever a miner's tip changes.
- When a block is published the network model gives, for all nodes at once, the time each accepts
  it. A node's block tree is the set of blocks whose accept time has passed; tips are brought up
  to date (vectorised over nodes) only when an event needs them.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right

import numpy as np

from consensus.forkchoice import chain_work_after, prefer
from consensus.sim import selfish
from consensus.sim.config import Experiment
from consensus.sim.events import Draws, EventQueue
from consensus.sim.fabrication import fabricated_block
from consensus.sim.flood import FloodPlan, plan_flood
from consensus.sim.network import INF, build_network
from consensus.sim.poison import PoisonedBlock, poisoned_block
from consensus.sim.population import build_population
from consensus.sim.record import BlockLog, RunRecord
from consensus.sim.reroll import RerollAttempts, rerolled_block
from consensus.sim.share_model import ShareModel
from consensus.targets import block_work, next_target

TWO_256 = float(1 << 256)


class _Grow:
    """A numpy column that grows by doubling, for per-block values read with fancy indexing."""

    def __init__(self, dtype: type, first: float) -> None:
        self.a: np.ndarray = np.empty(1024, dtype=dtype)
        self.a[0] = first
        self.n = 1

    def append(self, value: float) -> None:
        if self.n == len(self.a):
            self.a = np.concatenate([self.a, np.empty_like(self.a)])
        self.a[self.n] = value
        self.n += 1


class ModelledSim:
    def __init__(self, exp: Experiment, unit_seconds: float) -> None:
        self.exp = exp
        self.params = exp.chain
        self.k = self.params.spot_checks
        self.unit_seconds = unit_seconds
        self.rng = np.random.default_rng(exp.run.seed)
        self.draws = Draws(self.rng)
        self.pop = build_population(exp)
        self.net = build_network(exp, self.pop, self.rng)
        n = self.pop.n
        self.kind = ["honest"] * n
        self.adv = self.pop.adversary
        if self.adv is not None:
            self.kind[self.adv] = exp.adversary.kind
        # Nodes that pass on others' blocks: honest ones, and adversaries that are plain nodes
        # otherwise.
        self.relay = self.pop.honest.copy()
        if self.adv is not None and exp.adversary.kind in (
            "fabricator",
            "withholder",
            "reroller",
            "poisoner",
        ):
            self.relay[self.adv] = True
        self.honest = self.pop.honest
        self.miners = self.pop.miners
        self.rates = self.pop.rate[self.miners]
        self.cum_rates = np.cumsum(self.rates)
        self.total_rate = float(self.cum_rates[-1])
        self.log = BlockLog()
        p = self.params
        g_target = p.initial_target
        self.log.work[0] = block_work(g_target)
        self.time_ms = [p.genesis_time_ms]
        self.child_target = [next_target(p, 0, g_target, p.genesis_time_ms, p.genesis_time_ms)]
        self.qchild = _Grow(float, self.child_target[0] / TWO_256)
        # views
        self.tip = np.zeros(n, dtype=np.int64)
        self.tip_work = np.full(n, self.log.work[0], dtype=np.int64)
        self.tip_acc = np.zeros(n)
        self.accept: dict[int, np.ndarray] = {}
        self.accept_max: list[float] = [0.0]
        self.in_flight: dict[
            int, None
        ] = {}  # blocks that have not yet reached every node they will reach
        self.due: list[tuple[float, int, int]] = []  # heap: (next arrival time, block, version)
        self.version: dict[int, int] = {}
        # Per in-flight block: node indexes in arrival order, their arrival times (then inf), how
        # many were taken.
        self.arrival_order: dict[int, np.ndarray] = {}
        self.arrival_times: dict[int, list[float]] = {}
        self.cursor: dict[int, int] = {}
        self._flight_bound: float | None = None
        self._tips_bound: float | None = (
            None  # max over miners' tips of target / 2^256, while tips stay put
        )
        self.last_own = np.zeros(n)
        self.queue = EventQueue()
        self.rows: dict[tuple[int, float], np.ndarray] = {}
        lat_max = float(self.net.latency.max()) if len(self.net.latency) else 0.0
        # A bound on how long a message can be under way, to know when a partition may matter.
        self.max_delay = self.pop.n * (
            lat_max
            + exp.network.block_bytes / exp.network.bandwidth_bytes_s
            + exp.work.header_check_seconds
            + (self.params.spot_checks + 1) * unit_seconds
        )
        self.now = 0.0
        self.verify_units = np.zeros(n, dtype=np.int64)
        self.verify_checks = np.zeros(n, dtype=np.int64)  # blocks each node verified
        self.honest_idx = np.flatnonzero(self.pop.honest)
        self.block_verify_units = [0]
        self.propagation: list[tuple[int, float, float, float]] = []
        self.cap_hits = 0
        self.candidates = 0
        self.agreement: list[float | None] = [None] * len(exp.events)
        self.healed: list[bool] = [False] * len(exp.events)
        for i, event in enumerate(exp.events):
            self.queue.push(event.heal_s, "heal", i)
        self.selfish_state: selfish.SelfishState | None = None
        self.head_since = 0.0
        if exp.adversary.kind == "selfish":
            self.selfish_state = selfish.SelfishState(0, 0, 0)
        self.flood: FloodPlan | None = None
        self.waits: dict = {}
        self.reroll: RerollAttempts | None = None
        self.mining_end: float | None = (
            None  # set when mining stops; the re-roller's events are void after it
        )
        self.poisoned: dict[
            int, PoisonedBlock
        ] = {}  # the poisoner's blocks whose trace holds its jump leaf
        if exp.adversary.kind == "poisoner":
            from consensus.tickets import challenged_units

            self._challenged = challenged_units
        if exp.adversary.kind == "reroller":
            from consensus.tickets import (
                challenged_units,  # the real challenge rule (imports the kernels' PRNG)
            )

            self._challenged = challenged_units
            self.reroll = RerollAttempts(
                exp.adversary.reroll_strategy,
                exp.adversary.honest_prefix,
                float(self.pop.rate[self.adv]),
            )
            self.queue.push(0.0, "reroll-tip", 0)
        if exp.adversary.kind == "flooder":
            assert self.adv is not None  # a flooder run has an adversary
            self.flood = plan_flood(
                exp.adversary,
                exp.network,
                self.net,
                self.adv,
                unit_seconds,
                exp.work.header_check_seconds,
                self._expected_end(),
                self.rng,
            )
            self.waits = self.flood.waits
        self.shares: ShareModel | None = None
        if self.params.shares_per_block > 0:
            self.shares = ShareModel(
                self.params,
                self.net,
                self.relay,
                self.pop.rate,
                unit_seconds,
                exp.work.header_check_seconds,
                exp.work.state_bytes,
                np.random.default_rng([exp.run.seed, 18]),
            )
        work0 = self.log.work[0]
        if work0 >= 1 << 62:
            raise ValueError(
                "chain.initial_units_per_block: chain work would not fit the simulator's 64-bit "
                "columns"
            )

    def _expected_end(self) -> float:
        run = self.exp.run
        if run.duration_s is not None:
            return run.duration_s
        assert run.blocks is not None  # a run stops after a duration or at a height
        return 1.5 * run.blocks * self.params.block_interval_ms / 1000 + max(
            (e.heal_s for e in self.exp.events), default=0.0
        )

    # --- views -----------------------------------------------------------------------------

    def _advance(self, t: float) -> None:
        """Bring every node's tip up to time t (equal to taking each block in its arrival order)."""
        due = self.due
        while due and due[0][0] <= t:
            _, b, version = heapq.heappop(due)
            if self.version.get(b) != version:
                continue  # re-published since: a newer entry stands for it
            times = self.arrival_times[b]
            cursor = self.cursor[b]
            end = min(bisect_right(times, t, cursor), len(times) - 1)
            nodes = self.arrival_order[b][cursor:end]
            at = np.array(times[cursor:end])
            w = self.log.work[b]
            current = self.tip_work[nodes]
            better = prefer(w, current) | ((current == w) & (at < self.tip_acc[nodes]))
            if better.any():
                self._tips_bound = None
                chosen = nodes[better]
                if self.shares is not None:
                    self._segments_end(chosen, at[better])
                self.tip[chosen] = b
                self.tip_work[chosen] = w
                self.tip_acc[chosen] = at[better]
            if end < len(times) - 1:
                self.cursor[b] = end
                heapq.heappush(due, (times[end], b, version))
            else:
                self._flight_bound = None
                del (
                    self.cursor[b],
                    self.arrival_times[b],
                    self.arrival_order[b],
                    self.version[b],
                    self.in_flight[b],
                )
                if len(times) - 1 == self.pop.n:
                    del self.accept[b]  # everyone has it: its children need no arrival constraint

    def _segments_end(self, nodes: np.ndarray, at: np.ndarray) -> None:
        """Miners among `nodes` stop mining their tips at `at` (shares: their segments end)."""
        assert self.shares is not None
        mining = self.pop.rate[nodes] > 0
        nodes, at = nodes[mining], at[mining]
        if self.mining_end is not None:
            at = np.minimum(at, self.mining_end)  # no units after mining stopped
        starts = np.maximum(self.tip_acc[nodes], self.last_own[nodes])
        self.shares.segments_end(nodes, self.tip[nodes].copy(), starts, at, self.qchild.a)

    def _track(self, b: int, acc: np.ndarray) -> None:
        """(Re)enter a block among those in flight, with its arrivals in time order."""
        self.in_flight[b] = None
        finite = int(np.count_nonzero(acc < INF))
        order = np.argsort(acc, kind="stable")[:finite]
        self.arrival_order[b] = order
        self.arrival_times[b] = acc[order].tolist() + [INF]
        self.cursor[b] = 0
        self.version[b] = version = self.version.get(b, 0) + 1
        heapq.heappush(self.due, (self.arrival_times[b][0], b, version))
        self._flight_bound = None

    def _parent_of(self, m: int) -> int:
        if self.selfish_state is not None and m == self.adv:
            return self.selfish_state.head
        return int(self.tip[m])

    def _attempt_start(self, m: int) -> float:
        if self.selfish_state is not None and m == self.adv:
            return max(self.head_since, self.last_own[m])
        return max(float(self.tip_acc[m]), float(self.last_own[m]))

    def _rate_bound(self) -> float:
        q = self.qchild.a
        if self._tips_bound is None:
            self._tips_bound = float(q[self.tip[self.miners]].max())
        bound = self._tips_bound
        if self.in_flight:
            if self._flight_bound is None:
                self._flight_bound = float(q[list(self.in_flight)].max())
            bound = max(bound, self._flight_bound)
        if self.selfish_state is not None:
            bound = max(bound, float(q[self.selfish_state.head]))
        return bound

    # --- blocks ----------------------------------------------------------------------------

    def _new_block(self, m: int, parent: int, t: float, units: int, real: int, useful: int) -> int:
        p = self.params
        log = self.log
        target = self.child_target[parent]
        height = log.height[parent] + 1
        time_ms = max(p.genesis_time_ms + round(t * 1000), self.time_ms[parent])
        work = chain_work_after(log.work[parent], target)
        if work >= 1 << 62:
            raise ValueError(
                "chain work outgrew the simulator's 64-bit columns; use fewer blocks or an easier "
                "chain"
            )
        b = log.add(parent, height, m, t, units, real, useful, work)
        self.time_ms.append(time_ms)
        child = next_target(p, height, target, time_ms, self.time_ms[parent])
        self.child_target.append(child)
        self.qchild.append(child / TWO_256)
        self.accept_max.append(INF)
        self.block_verify_units.append(1 + min(self.k, units - 1))
        return b

    def _accept_times(
        self,
        src: int,
        accepted_at: float,
        t: float,
        verify_s: float,
        parent_accept: np.ndarray | None,
    ) -> np.ndarray:
        """When each node accepts a block published by `src` at t (the network model's fixpoint).

        Without a flood, and away from partitions, that is t plus a fixed row per source (cached);
        the row holds whenever every node already had the parent by the time the block reached it.
        """
        size = self.exp.network.block_bytes
        quiet = not self.waits and not any(
            c.start - self.max_delay <= t < c.end for c in self.net.cuts
        )
        key = (src, verify_s)
        row = self.rows.get(key) if quiet else None
        if row is None and quiet and len(self.rows) < 4 * self.pop.n:
            row, _ = self.net.propagate(src, 0.0, 0.0, size, verify_s, self.relay, ignore_cuts=True)
            self.rows[key] = row
        if row is not None:
            acc = row + t
            acc[src] = accepted_at
            if parent_accept is None or (acc - verify_s >= parent_accept).all():
                return acc
        acc, _ = self.net.propagate(
            src,
            accepted_at,
            t,
            size,
            verify_s,
            self.relay,
            parent_accept=parent_accept,
            waits=self.waits,
        )
        return acc

    def _verify_seconds(self, units: int) -> float:
        return self.exp.work.header_check_seconds + units * self.unit_seconds

    def _publish(self, b: int, t: float) -> None:
        log = self.log
        src = log.miner[b]
        parent = log.parent[b]
        own = self.accept.get(b)
        accepted_at = float(own[src]) if own is not None and own[src] < INF else t
        vunits = self.block_verify_units[b]
        acc = self._accept_times(
            src, accepted_at, t, self._verify_seconds(vunits), self.accept.get(parent)
        )
        self.accept[b] = acc
        log.published[b] = t
        self._track(b, acc)
        times = self.arrival_times[b]  # finite accept times in order, then inf
        order = self.arrival_order[b]
        self.accept_max[b] = times[-2] if len(times) > 1 else t
        receivers = order[order != src]
        self.verify_checks[receivers] += 1
        self.verify_units[receivers] += vunits
        if self.adv is None:
            others = self.pop.n - 1
            count = len(receivers)
            total = sum(times[:-1]) - accepted_at - t * count
            latest = times[-2] - t
        else:
            honest_receivers = receivers[self.honest[receivers]]
            others = len(self.honest_idx) - (1 if self.honest[src] else 0)
            count = len(honest_receivers)
            delays = acc[honest_receivers] - t
            total = float(delays.sum())
            latest = float(delays.max()) if count else INF
        if count:
            log.checked[b] = True
        if others:
            self.propagation.append(
                (b, total / count, latest, count / others) if count else (b, INF, INF, 0.0)
            )
        if self.selfish_state is not None and src != self.adv and acc[self.adv] < INF:
            self.queue.push(float(acc[self.adv]), "notify", b)
        if self.reroll is not None and acc[self.adv] < INF:
            self.queue.push(float(acc[self.adv]), "reroll-tip", b)
        for i, event in enumerate(self.exp.events):
            if self.healed[i] and self.agreement[i] is None and self.accept_max[b] >= event.heal_s:
                self.queue.push(self.accept_max[b], "agree", (i, b))

    def _reject_everywhere(self, b: int, verify_units: int) -> None:
        """A caught block: its miner's own node and every honest peer it reaches refuse it."""
        log = self.log
        src = log.miner[b]
        log.published[b] = log.found[b]
        log.rejected[b] = True
        log.checked[b] = True
        for v in self.net.neighbours[src]:
            self.verify_units[v] += verify_units
            self.verify_checks[v] += 1

    # --- the re-roller (consensus/sim/reroll.py) ---------------------------------------------

    def _rr_sync(self, t: float) -> RerollAttempts:
        """Bring the re-roller's attempt up to time t: a new tip since the last look starts a new
        attempt."""
        rr = self.reroll
        assert rr is not None and self.adv is not None
        if self.mining_end is not None:
            return rr
        self._advance(t)
        tip = int(self.tip[self.adv])
        if tip != rr.tip:
            start = max(float(self.tip_acc[self.adv]), rr.start)
            rr.begin(tip, start, float(self.qchild.a[tip]))
            if rr.strategy == "last":
                # The prefix takes honest_prefix units; the grind after it takes hashes only.
                self.queue.push(max(t, start + rr.prefix / rr.rate), "reroll-last", rr.token)
        return rr

    def _rr_candidate(self, m: int, parent: int, t: float) -> int | None:
        """A ticket under the target from one of the re-roller's units (prefix or, chained,
        re-roll)."""
        rr = self._rr_sync(t)
        if rr.idle:
            return None  # it runs no units while idle, so this ticket was never drawn
        count = max(1, math.ceil(rr.units_since_start(t)))
        if count <= rr.prefix:
            b = self._new_block(m, parent, t, count, count, count)  # won inside the honest prefix
            self.last_own[m] = t
            self._publish(b, t)
            return b
        if rr.strategy == "last":
            return None  # past the prefix a "last" re-roller runs no units (its grind is an event)
        return self._rr_block(m, parent, t, count)

    def _rr_block(self, m: int, parent: int, t: float, real: int) -> int | None:
        rr = self.reroll
        assert rr is not None
        rb = rerolled_block(self.rng, rr.strategy, rr.prefix, self.k, self._challenged)
        b = self._new_block(m, parent, t, rb.claimed, real, 0 if rb.caught else rr.prefix + 1)
        self.log.rerolled[b] = True
        self.last_own[m] = t
        if rb.caught:
            self.block_verify_units[b] = rb.verify_units
            self._reject_everywhere(b, rb.verify_units)
            rr.go_idle(t)
            return None
        self._publish(b, t)
        return b

    def _rr_last(self, t: float, token: int) -> None:
        """A "last" re-roller's prefix is done: it grinds a fabricated winner (hashes only) and
        publishes it."""
        rr = self._rr_sync(t)
        if token != rr.token or rr.idle or self.mining_end is not None:
            return
        q = float(self.qchild.a[rr.tip])
        rr.hashes += int(self.rng.geometric(min(1.0, q)))
        m = self.adv
        assert m is not None
        self._rr_block(m, rr.tip, t, int(math.ceil(rr.units_since_start(t) - 1e-9)))

    def _found(self, m: int, parent: int, t: float, real: int) -> int | None:
        kind = self.kind[m]
        adv = self.exp.adversary
        if kind == "fabricator":
            fab = fabricated_block(self.rng, real, adv.fabricate, self.k)
            if fab.claimed > self.params.max_units_per_block:
                self.cap_hits += 1
                return None
            b = self._new_block(m, parent, t, fab.claimed, fab.real, fab.useful)
            self.last_own[m] = t
            if fab.caught:
                self.block_verify_units[b] = fab.verify_units
                self._reject_everywhere(b, fab.verify_units)
            else:
                self._publish(b, t)
            return b
        if kind == "poisoner" and real > adv.jump_at:
            pb = poisoned_block(self.rng, real, adv.jump_at, self.k, self._challenged)
            if pb.claimed > self.params.max_units_per_block:
                self.cap_hits += 1
                return None
            b = self._new_block(
                m, parent, t, pb.claimed, real, pb.jump
            )  # the units after the jump work on the poisoned state
            self.poisoned[b] = pb
            self.last_own[m] = t
            if pb.refused:
                self.block_verify_units[b] = pb.verify_units
                self._reject_everywhere(b, pb.verify_units)
            else:
                self._publish(b, t)
            return b
        b = self._new_block(m, parent, t, real, real, real)
        if self.shares is not None:
            miners = self.miners
            self.log.useful_units[b] += self.shares.claims(
                b,
                m,
                parent,
                t,
                self.log.height[b],
                float(self.qchild.a[parent]),
                real,
                miners,
                self.tip[miners],
                np.maximum(self.tip_acc[miners], self.last_own[miners]),
            )
        self.last_own[m] = t
        if kind == "withholder" and self.draws.uniform() < adv.withhold:
            if adv.delay_s is not None:
                self.queue.push(t + adv.delay_s, "publish", b)
            return b
        if kind == "selfish":
            acc = np.full(self.pop.n, INF)
            acc[m] = t
            self.accept[b] = acc
            self.accept_max[b] = t
            self._track(b, acc)
            assert self.selfish_state is not None
            self.selfish_state, shown = selfish.on_own_block(
                self.selfish_state, b, self.log.height[b]
            )
            self.head_since = t
            for x in shown:
                self._publish(x, t)
            return b
        self._publish(b, t)
        return b

    # --- events ----------------------------------------------------------------------------

    def _handle(self, t: float, kind: str, payload) -> None:
        if kind == "notify":
            assert self.selfish_state is not None
            before = self.selfish_state.head
            self.selfish_state, shown = selfish.on_public_block(
                self.selfish_state, payload, self.log.height[payload]
            )
            if self.selfish_state.head != before:
                self.head_since = t
            for x in shown:
                self._publish(x, t)
        elif kind == "publish":
            self._publish(payload, t)
        elif kind == "reroll-tip":
            if self.mining_end is None:
                self._rr_sync(t)
        elif kind == "reroll-last":
            self._rr_last(t, payload)
        elif kind == "heal":
            self.healed[payload] = True
            self._advance(t)
            self._check_agreement(payload, t)
            for b in self.in_flight:
                if self.accept_max[b] >= t:
                    self.queue.push(self.accept_max[b], "agree", (payload, b))
        elif kind == "agree":
            i, _ = payload
            if self.agreement[i] is None:
                self._advance(t)
                self._check_agreement(i, t)

    def _check_agreement(self, i: int, t: float) -> None:
        tips = self.tip[self.honest]
        if (tips == tips[0]).all():
            self.agreement[i] = t - self.exp.events[i].heal_s

    # --- the run ---------------------------------------------------------------------------

    def run(self) -> RunRecord:
        run = self.exp.run
        stop_t = run.duration_s if run.duration_s is not None else INF
        stop_h = run.blocks if run.blocks is not None else math.inf
        max_units = self.params.max_units_per_block
        t = 0.0
        while True:
            bound = self._rate_bound()
            t_cand = t + self.draws.exponential() / (bound * self.total_rate)
            t_event = self.queue.peek_time()
            if t_event <= t_cand and t_event < stop_t:
                t, kind, payload = self.queue.pop()
                self.now = t
                self._handle(t, kind, payload)
                continue
            if t_cand >= stop_t:
                t = stop_t
                break
            t = self.now = t_cand
            self.candidates += 1
            self._advance(t)
            i = int(
                np.searchsorted(
                    self.cum_rates, self.draws.uniform() * self.total_rate, side="right"
                )
            )
            m = int(self.miners[min(i, len(self.miners) - 1)])
            parent = self._parent_of(m)
            if self.draws.uniform() * bound >= self.qchild.a[parent]:
                continue
            if self.reroll is not None and m == self.adv:
                b = self._rr_candidate(m, parent, t)
                if b is not None and self.log.height[b] >= stop_h:
                    break
                continue
            units = max(1, math.ceil((t - self._attempt_start(m)) * float(self.pop.rate[m])))
            if units > max_units:
                self.cap_hits += 1
                continue
            b = self._found(m, parent, t, units)
            if b is not None and self.log.height[b] >= stop_h:
                break
        end = t
        if self.reroll is not None:
            self._rr_sync(end)
            self.reroll.finish(end)
        self.mining_end = end
        self._drain(end)
        return self._record(end)

    def _drain(self, end: float) -> None:
        """Mining stops; held blocks come out; messages in flight arrive."""
        if self.selfish_state is not None:
            self.selfish_state, shown = selfish.flush(self.selfish_state)
            for x in shown:
                self._publish(x, end)
        while len(self.queue):
            t, kind, payload = self.queue.pop()
            self.now = max(t, end)
            if (
                kind in ("heal", "agree")
                and self.exp.events[payload if kind == "heal" else payload[0]].heal_s > end
            ):
                continue  # the run ended before this partition healed
            self._handle(self.now, kind, payload)
        self._advance(INF)

    def _record(self, end: float) -> RunRecord:
        honest_tips = sorted(set(self.tip[self.honest].tolist()))
        counts = {b: int((self.tip[self.honest] == b).sum()) for b in honest_tips}
        best = max(honest_tips, key=lambda b: (self.log.work[b], counts[b], -b))
        units_run = np.floor(self.pop.rate * end).astype(np.int64)
        extras: dict = {}
        if self.reroll is not None:
            rr = self.reroll
            units_run[self.adv] = int(math.floor(rr.units_run + 1e-9))
            extras = {
                "reroll_prefix_units": rr.prefix_units,
                "reroll_roll_units": rr.roll_units,
                "reroll_expected_prefix": rr.expected_prefix,
                "reroll_expected_roll": rr.expected_roll,
                "reroll_idle_s": rr.idle_s,
                "reroll_hashes": rr.hashes
                if rr.strategy == "last"
                else int(rr.roll_units),  # chained: a fabricated leaf per re-roll unit
            }
        if self.exp.adversary.kind == "poisoner":
            extras.update(self._audits(best))
        if self.shares is not None:
            miners = self.miners
            self._segments_end(miners, np.full(len(miners), end))
            # Every node verifies every share version once (share_model's module note).
            self.verify_units[self.honest] += (1 + self.shares.s) * self.shares.versions
            extras["shares"] = self.shares
        flood = {}
        if self.flood is not None:
            flood = flood_summary(self.flood, end, self.exp.adversary.flood_kind)
        return RunRecord(
            mode="modelled",
            duration_s=end,
            population=self.pop,
            blocks=self.log,
            best_tip=best,
            tips=self.tip.copy(),
            units_run=units_run,
            verify_units=self.verify_units,
            verify_seconds=self.verify_units * self.unit_seconds
            + self.verify_checks * self.exp.work.header_check_seconds,
            propagation=self.propagation,
            agreement_s=self.agreement,
            flood=flood,
            extras={
                "cap_hits": self.cap_hits,
                "candidates": self.candidates,
                "gamma_realised": self.net.gamma_realised,
                "partition_sides": [cut.group.tolist() for cut in self.net.cuts]
                if self.pop.n <= 64
                else None,
                **extras,
            },
        )

    def _audits(self, best: int) -> dict:
        """The auditors' replays over the best chain (consensus/sim/audits.py) and the poisoner's
        blocks."""
        from consensus.sim.audits import audit_chain
        from consensus.sim.metrics import main_chain

        chain = main_chain(self.log.parent, best)[1:]
        found = np.array(self.log.found)[chain]
        units = np.array(self.log.units)[chain]
        jump = np.array(
            [self.poisoned[b].jump if b in self.poisoned else -1 for b in chain.tolist()],
            dtype=np.int64,
        )
        honest_miners = self.miners[self.honest[self.miners]]
        unit_rate = (
            float(self.pop.rate[honest_miners].mean())
            if len(honest_miners)
            else float(self.pop.rate[self.miners].mean())
        )
        audit = audit_chain(
            self.exp.auditors,
            self.exp.run.seed,
            self.honest_idx,
            found,
            units,
            jump,
            self.params.reward_maturity,
            unit_rate,
        )
        return {
            "poisoned": {b: (pb.claimed, pb.refused) for b, pb in self.poisoned.items()},
            "poison_proven": {
                int(chain[i]): int(self.log.height[chain[j]]) for i, j in audit.proven.items()
            },
            "audit_replayed": {int(chain[i]) for i in np.flatnonzero(audit.replayed).tolist()},
            "auditors": audit.auditors,
            "audit_unit_rate": audit.unit_rate,
            "audit_units": audit.units,
            "audit_skipped": audit.skipped,
            "audit_late": audit.late,
        }


def flood_summary(plan: FloodPlan, end: float, kind: str) -> dict:
    received = verified = 0
    seconds = 0.0
    worst_backlog = 0.0
    per_victim = []
    for q in plan.victims:
        inside = q.arrive <= end
        received += int(inside.sum())
        verified += int((q.expensive & inside).sum())
        s = float(q.cost[inside].sum())
        seconds += s
        per_victim.append(s)
        busy_in = q.busy_arrive <= end
        if busy_in.any():
            worst_backlog = max(
                worst_backlog, float((q.done[busy_in] - q.busy_arrive[busy_in]).max())
            )
    return {
        "kind": kind,
        "sent": plan.sent,
        "received": received,
        "reexecuted": verified,
        "verify_seconds": seconds,
        "verify_seconds_per_victim_max": max(per_victim, default=0.0),
        "victims": len(plan.victims),
        "max_wait_s": worst_backlog,
        "until_s": plan.until,  # the flood was planned up to here (1.5 times the expected run)
    }


def run_modelled(exp: Experiment, unit_seconds: float) -> RunRecord:
    return ModelledSim(exp, unit_seconds).run()
