"""Real work: a handful of nodes, each a real ChainState over its own LevelDB store and a real
Miner.

The event clock is every node's clock. A miner that starts on a tip at time t runs
consensus.miner.Miner.mine_block at once (the work is a deterministic function of the parent and
the miner's key) and the block is found at t + (real units) / unit rate; if the tip moves first,
the attempt is dropped and only the units that fitted before the move count as run. With
shares (chain.shares_per_block > 0) every miner has a real SharePool and its Miner publishes its
share claims: each reaches the other miners after the network model's delay from the time the
miner's clock reaches the share, and enters a miner's pool (verified by the real SharePool)
before the unit its clock is at when the claim arrives, so the block carries it. A claim from an
attempt computed after the receiver's own attempt (both start on one tip) is missed: the
receiver's units were already run. A node's verification counts its pool's re-run units.
A miner that finds nothing within max_units_per_block, or whose block its own node rejects,
waits for the tip to move: mining the same parent again would repeat the same units.
Only a change of tip restarts an attempt. The re-roller is consensus.attacks.RerollMiner (its
units are the ones it really ran:
the honest prefix, and one per "chained" re-roll; a "last" grind takes hashes only, no simulated
time); honest nodes refuse its blocks by the real validation. Blocks travel through the
network model (one message per link) and every node validates them with
ChainState.process_block, re-execution and all; verification takes (opened units) * unit_seconds
of simulated time, one block at a time per node.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chain.block import Block
from chain.keys import PrivateKey
from chain.storage import STATUS_INVALID, STATUS_VALID, ChainStore
from consensus.attacks import RerollMiner, RerollStats
from consensus.chainstate import ChainState, Outcome
from consensus.miner import Miner, Template, make_template
from consensus.share_pool import SharePool
from consensus.shares import ShareRuleError
from consensus.sim.config import Experiment
from consensus.sim.events import EventQueue
from consensus.sim.network import Network, build_network
from consensus.sim.population import build_population
from consensus.sim.record import BlockLog, RunRecord
from consensus.sim.share_model import BlockShares, SharesRecord, share_spot_checks
from consensus.tickets import challenged_units, ticket
from consensus.validation import Reason
from useful_work.hashing import int_bytes, tagged_hash


@dataclass
class _Node:
    index: int
    chain: ChainState
    store: ChainStore
    rate: float
    miner: Miner | None = None
    token: int = 0  # bumped whenever the current attempt is dropped
    base_t: float = 0.0
    base_units: int = 0
    attempt_real: int = 0
    mining: bool = False
    busy_until: float = 0.0
    seen: set[bytes] = field(default_factory=set)
    validated: set[bytes] = field(default_factory=set)
    units_run: int = 0
    verify_units: int = 0
    verify_seconds: float = 0.0
    pool: SharePool | None = None  # shares on: the node's verified claims on its tip
    # claims on their way to this node: (arrival, sequence, share time, source node, claim)
    pending: list = field(default_factory=list)
    template: Template | None = None  # the current attempt's (shares on: for the pool's checks)


def _reroll(node: _Node) -> RerollStats:
    """The re-roll counters of an adversary node's miner (a RerollMiner in the re-roller runs)."""
    assert isinstance(node.miner, RerollMiner)
    return node.miner.reroll


def _real_units(miner: Miner, fakes, claimed: int) -> int:
    """Units of `claimed` a miner really ran: the winner always, the others unless its fake
    decider faked them."""
    if not miner.fabricate:
        return claimed
    return 1 + sum(1 for u in range(claimed - 1) if not fakes(u))


class RealSim:
    def __init__(self, exp: Experiment, unit_seconds: float, workdir: Path) -> None:
        self.exp = exp
        self.params = exp.chain
        self.unit_seconds = unit_seconds
        self.rng = np.random.default_rng(exp.run.seed)
        self.pop = build_population(exp)
        self.net: Network = build_network(exp, self.pop, self.rng)
        self.queue = EventQueue()
        self.now = 0.0
        self.stopped = False
        self.log = BlockLog()
        self.ids: dict[bytes, int] = {}
        self.accepted_at: dict[int, dict[int, float]] = {}
        self.agreement: list[float | None] = [None] * len(exp.events)
        self.nodes: list[_Node] = []
        genesis_ms = self.params.genesis_time_ms
        self.mining_wall = 0.0
        self.shares_on = self.params.shares_per_block > 0
        self.claim_seq = 0
        self.share_versions = 0
        self.share_blocks: dict[int, BlockShares] = {}
        self.addresses: dict[bytes, int] = {}
        for i in range(self.pop.n):
            store = ChainStore(str(workdir / f"node{i}"))
            chain = ChainState(store, self.params, clock=lambda: genesis_ms + int(self.now * 1000))
            node = _Node(i, chain, store, float(self.pop.rate[i]))
            if node.rate > 0 and self.shares_on:
                node.pool = SharePool(self.params)
                chain.verified_claims = node.pool.verified_output  # as a node's share relay does
            if node.rate > 0:
                key = PrivateKey.from_bytes(
                    tagged_hash("sim-node-key", int_bytes(exp.run.seed), int_bytes(i))
                )
                node.miner = self._make_miner(i, chain, key, node)
            self.nodes.append(node)
        self.ids[self.nodes[0].chain.genesis.block.hash] = 0
        self._fakes: Callable[[int], bool] | None = None
        self.reroll_units = {"prefix": 0, "roll": 0}  # the re-roller's counted units, by phase
        self.reroll_expected = {
            "prefix": 0.0,
            "roll": 0.0,
        }  # the blocks those units win on average (units times target / 2^256)
        self.reroll_q = 0.0  # target / 2^256 of the re-roller's current attempt
        self.reroll_computed = {
            "roll_units": 0,
            "tickets": 0,
        }  # every re-roll it computed, counted or not
        self.reroll_predicted: dict[
            int, bool
        ] = {}  # rerolled block -> the challenge rule says verifiers refuse it
        for i, event in enumerate(exp.events):
            self.queue.push(event.heal_s, "heal", i)

    def _make_miner(self, i: int, chain: ChainState, key: PrivateKey, node: _Node) -> Miner:
        adv = self.exp.adversary
        if i == self.pop.adversary and adv.kind == "reroller":
            from consensus.attacks import RerollMiner

            return RerollMiner(
                chain,
                key,
                strategy=adv.reroll_strategy,
                honest_prefix=adv.honest_prefix,
                clock=self._mining_clock(node),
            )
        f = adv.fabricate if i == self.pop.adversary and adv.kind == "fabricator" else 0.0
        miner = Miner(
            chain,
            key,
            clock=self._mining_clock(node),
            fabricate=f,
            share_pool=node.pool,
            on_share=None if node.pool is None else (lambda c: self._share_found(node, c)),
        )
        self.addresses[bytes(miner.address)] = i
        return miner

    # --- shares: claims gossiped to the miners' pools -------------------------------------------

    def _claim_delays(self, src: int, size: int) -> np.ndarray:
        """Seconds a claim of `size` bytes takes from `src` to every node (the network model,
        relays verifying 1 + share_spot_checks units first; partitions left out)."""
        verify = (
            self.exp.work.header_check_seconds
            + (1 + share_spot_checks(self.params)) * self.unit_seconds
        )
        relay = np.ones(self.pop.n, dtype=bool)
        row, _ = self.net.propagate(src, 0.0, 0.0, size, verify, relay, ignore_cuts=True)
        return row

    def _share_found(self, node: _Node, claim) -> None:
        """A share in the attempt being mined: its claim reaches each other miner's pool after
        the network's delay, from the time the miner's clock reaches it."""
        self.share_versions += 1
        share_t = node.base_t + (claim.shares[-1] + 1) / node.rate
        delays = self._claim_delays(node.index, len(claim.to_bytes()))
        for other in self.nodes:
            if other.pool is None or other is node or not math.isfinite(delays[other.index]):
                continue
            self.claim_seq += 1
            other.pending.append(
                (share_t + float(delays[other.index]), self.claim_seq, share_t, node.index, claim)
            )
            other.pending.sort(key=lambda e: (e[0], e[1]))

    def _drop_claims_after(self, node: _Node, t: float) -> None:
        """The attempt stopped at t: its shares after t were never found."""
        for other in self.nodes:
            if other.pending:
                other.pending = [e for e in other.pending if not (e[3] == node.index and e[2] > t)]

    def _deliver_claims(self, node: _Node) -> bool:
        """Before each unit: the claims that reached this miner by its clock enter its pool
        (verified by the real SharePool); never stops the attempt."""
        if node.pool is None or node.template is None or node.miner is None:
            return False
        now = node.base_t + (node.miner.stats.units - node.base_units) / node.rate
        template = node.template
        while node.pending and node.pending[0][0] <= now:
            claim = node.pending.pop(0)[4]
            if claim.parent_hash != template.parent_hash:
                continue
            try:
                node.pool.add(claim, template.parent_hash, template.target, template.state)
            except ShareRuleError:
                pass  # a shorter claim than one held, or one the rules refuse
        return False

    def _rerolling(self, node: _Node) -> bool:
        return node.index == self.pop.adversary and self.exp.adversary.kind == "reroller"

    def _count_units(self, node: _Node, units: int) -> None:
        """Units of an attempt that count as run; the re-roller's are split into prefix and
        re-roll units."""
        node.units_run += units
        if self._rerolling(node):
            prefix = min(
                units, self.exp.adversary.honest_prefix, self.params.max_units_per_block - 2
            )
            self.reroll_units["prefix"] += prefix
            self.reroll_units["roll"] += units - prefix
            self.reroll_expected["prefix"] += prefix * self.reroll_q
            self.reroll_expected["roll"] += (units - prefix) * self.reroll_q

    def _count_computed(self, node: _Node, units: int, tickets: int) -> None:
        prefix = min(units, self.exp.adversary.honest_prefix, self.params.max_units_per_block - 2)
        self.reroll_computed["roll_units"] += units - prefix
        self.reroll_computed["tickets"] += tickets

    def _refused_by_rule(self, block: Block) -> bool:
        """Whether the units a verifier re-executes (the winner, and the ticket's challenges)
        include the fabricated leaf."""
        header = block.header
        claim = header.work[0]
        n = claim.unit_count
        fake = n - 1 if self.exp.adversary.reroll_strategy == "last" else n - 2
        t = ticket(header.prev_hash, header.miner, claim.trace_root)
        return fake == n - 1 or fake in challenged_units(t, n, self.params.spot_checks)

    def _mining_clock(self, node: _Node):
        genesis_ms = self.params.genesis_time_ms

        def clock() -> int:
            assert node.miner is not None
            claimed = node.miner.stats.units - node.base_units
            real = (
                _real_units(node.miner, self._fakes, claimed) if node.miner.fabricate else claimed
            )
            return genesis_ms + round((node.base_t + real / node.rate) * 1000)

        return clock

    def close(self) -> None:
        for node in self.nodes:
            node.store.close()

    # --- mining ----------------------------------------------------------------------------

    def _stop_attempt(self, node: _Node, t: float) -> None:
        if node.mining and self.shares_on:
            self._drop_claims_after(node, t)
        if node.mining:
            self._count_units(
                node, min(node.attempt_real, math.floor((t - node.base_t) * node.rate))
            )
        node.mining = False
        node.token += 1

    def _start_mining(self, node: _Node, t: float) -> None:
        self._stop_attempt(node, t)
        if node.miner is None or self.stopped:
            return
        node.base_t, node.base_units = t, node.miner.stats.units
        fabricating = bool(node.miner.fabricate)
        if fabricating:
            # The fake decider is the miner's own, so the count of real units matches what it did.
            self._fakes = node.miner.fake_decider(make_template(node.chain))
        rerolling = self._rerolling(node)
        rolls = _reroll(node).tickets if rerolling else 0
        if rerolling:
            self.reroll_q = make_template(node.chain).target / float(1 << 256)
        if node.pool is not None:
            node.template = make_template(node.chain)
            node.pool.reset(node.template.parent_hash)
        started = time.perf_counter()
        block = node.miner.mine_block(
            should_stop=lambda: self._deliver_claims(node),
            max_units=self.params.max_units_per_block,
        )
        self.mining_wall += time.perf_counter() - started
        claimed = node.miner.stats.units - node.base_units
        real = _real_units(node.miner, self._fakes, claimed) if fabricating else claimed
        node.mining = True
        node.attempt_real = real
        if block is None:
            if not rerolling:
                node.attempt_real = self.params.max_units_per_block
            else:
                self._count_computed(node, real, _reroll(node).tickets - rolls)
            return
        rerolled = (
            rerolling and _reroll(node).tickets > rolls
        )  # a prefix win returns before any re-roll
        if rerolling:
            claimed = len(block.proofs[0].leaves)
            self._count_computed(node, real, _reroll(node).tickets - rolls)
        useful = claimed + sum(len(c.leaves) for c in block.shares)
        if fabricating:
            fakes = self._fakes
            assert fakes is not None
            faked = [u for u in range(claimed - 1) if fakes(u)]
            useful = faked[0] if faked else claimed
        if rerolled:
            useful = (
                claimed - 1 if self.exp.adversary.reroll_strategy == "chained" else 0
            )  # all but the fabricated leaf
        self.queue.push(
            t + real / node.rate,
            "found",
            (node.index, node.token, block, claimed, real, useful, rerolled),
        )

    def _found(self, t: float, payload) -> None:
        i, token, block, claimed, real, useful, rerolled = payload
        node = self.nodes[i]
        if token != node.token:
            return
        self._count_units(node, real)
        node.mining = False
        node.token += 1
        parent = self.ids[block.header.prev_hash]
        b = self.log.add(parent, block.header.height, i, t, claimed, real, useful, 0)
        self.log.rerolled[b] = rerolled
        if rerolled:
            self.reroll_predicted[b] = self._refused_by_rule(block)
        self.log.published[b] = t
        self.ids[block.hash] = b
        if self.shares_on:
            self.share_blocks[b] = self._block_shares(block, claimed)
        self.accepted_at[b] = {}
        node.seen.add(block.hash)
        # The miner broadcasts what it found; its own node validates it like any other (a
        # fabricator's node may refuse it: then it waits for the tip to move, see the module note).
        self._validate(node, block, None, t)
        for w in self.net.neighbours[i]:
            self._send(i, w, block, t)

    def _block_shares(self, block: Block, claimed: int) -> BlockShares:
        from consensus.shares import share_miner

        claims = block.shares
        subsidy, rewards = self.params.share_split(block.header.height)
        shares = np.array([len(c.shares) for c in claims], dtype=np.int64)
        included = int(shares.sum())
        return BlockShares(
            miners=np.array(
                [self.addresses.get(bytes(share_miner(c)), -1) for c in claims], dtype=np.int64
            ),
            units=np.array([len(c.leaves) for c in claims], dtype=np.int64),
            shares=shares,
            claim_rewards=shares * (rewards.per_share - rewards.fee),
            winner_reward=subsidy + rewards.fee * included,
            block_bytes=len(block.to_bytes()),
            fresh_verify_units=len(block.proofs[0].openings) + sum(len(c.openings) for c in claims),
        )

    # --- blocks on the wire ----------------------------------------------------------------

    def _send(self, u: int, w: int, block: Block, t: float) -> None:
        size = len(block.to_bytes())
        self.queue.push(self.net.arrival(u, w, t, size), "deliver", (w, block, u))

    def _deliver(self, t: float, payload) -> None:
        v, block, sender = payload
        node = self.nodes[v]
        if block.hash in node.seen:
            return
        node.seen.add(block.hash)
        cost = (
            self.exp.work.header_check_seconds + len(block.proofs[0].openings) * self.unit_seconds
        )
        start = max(t, node.busy_until)
        node.busy_until = start + cost
        self.queue.push(node.busy_until, "verified", (v, block, sender))

    def _validate(self, node: _Node, block: Block, sender: int | None, t: float) -> list[Block]:
        """Run the real ChainState on a block; return the blocks this node newly holds as valid,
        for relaying."""
        chain = node.chain
        before_tip = chain.tip.hash
        orphans_before = set(chain.orphans)
        result = chain.process_block(block)
        newly: list[Block] = []
        if result.outcome in (Outcome.NEW_TIP, Outcome.SIDE):
            newly.append(block)
        for h in orphans_before - set(chain.orphans):
            entry = chain.entry(h)
            if entry is not None and entry.status != STATUS_INVALID:
                adopted = chain.get_block(h)
                if adopted is not None:
                    newly.append(adopted)
        for connected in result.connected:
            if connected.hash not in node.validated:
                node.validated.add(connected.hash)
                node.verify_units += len(connected.proofs[0].openings)
                node.verify_seconds += (
                    self.exp.work.header_check_seconds
                    + len(connected.proofs[0].openings) * self.unit_seconds
                )
        if result.outcome is Outcome.INVALID and result.reason in (
            Reason.BAD_SPOT_CHECK,
            Reason.BAD_WINNING_UNIT,
        ):
            node.verify_units += len(block.proofs[0].openings)
            node.verify_seconds += (
                self.exp.work.header_check_seconds
                + len(block.proofs[0].openings) * self.unit_seconds
            )
        for nb in newly:
            b = self.ids.get(nb.hash)
            if b is not None:
                self.accepted_at[b].setdefault(node.index, t)
        if chain.tip.hash != before_tip and node.miner is not None:
            # Only a new tip restarts the attempt (ChainState also bumps tip_version when it refuses
            # a branch and keeps its tip; restarting then would hand every invalid block a reset of
            # all miners).
            self._start_mining(node, t)
        return newly

    def _verified(self, t: float, payload) -> None:
        v, block, sender = payload
        node = self.nodes[v]
        for nb in self._validate(node, block, sender, t):
            for w in self.net.neighbours[v]:
                if w != sender or nb.hash != block.hash:
                    self._send(v, w, nb, t)
        self._check_agreement(t)

    def _check_agreement(self, t: float) -> None:
        for i, event in enumerate(self.exp.events):
            if self.agreement[i] is None and t >= event.heal_s:
                tips = {
                    self.nodes[v].chain.tip.hash for v in range(self.pop.n) if self.pop.honest[v]
                }
                if len(tips) == 1:
                    self.agreement[i] = t - event.heal_s

    # --- the run ---------------------------------------------------------------------------

    def run(self) -> RunRecord:
        run = self.exp.run
        stop_t = run.duration_s if run.duration_s is not None else math.inf
        stop_h = run.blocks if run.blocks is not None else math.inf
        for node in self.nodes:
            self._start_mining(node, 0.0)
        end = 0.0
        while len(self.queue):
            if self.queue.peek_time() >= stop_t and not self.stopped:
                end = stop_t
                self._stop_mining(end)
            t, kind, payload = self.queue.pop()
            self.now = t
            if kind == "found":
                if self.stopped:
                    continue
                self._found(t, payload)
                if self.log.height[-1] >= stop_h and not self.stopped:
                    end = t
                    self._stop_mining(t)
            elif kind == "deliver":
                self._deliver(t, payload)
            elif kind == "verified":
                self._verified(t, payload)
            elif kind == "heal":
                self._check_agreement(t)
        if not self.stopped:
            end = self.now
        return self._record(end)

    def _stop_mining(self, t: float) -> None:
        self.stopped = True
        for node in self.nodes:
            self._stop_attempt(node, t)

    def _record(self, end: float) -> RunRecord:
        honest = [v for v in range(self.pop.n) if self.pop.honest[v]]
        ref = self.nodes[honest[0]].chain
        log = self.log
        by_hash = dict(self.ids)
        for h, b in by_hash.items():
            if b == 0:
                genesis_entry = ref.entry(h)
                assert genesis_entry is not None
                log.work[0] = genesis_entry.chain_work
                continue
            verdicts = [e for v in honest if (e := self.nodes[v].chain.entry(h)) is not None]
            log.work[b] = verdicts[0].chain_work if verdicts else 0
            log.checked[b] = any(e.status == STATUS_VALID for e in verdicts) or any(
                e.status == STATUS_INVALID
                and e.reason.startswith(
                    (Reason.BAD_SPOT_CHECK.value, Reason.BAD_WINNING_UNIT.value)
                )
                for e in verdicts
            )
            log.rejected[b] = any(e.status == STATUS_INVALID for e in verdicts)
        tips = np.array(
            [self.ids.get(node.chain.tip.hash, 0) for node in self.nodes], dtype=np.int64
        )
        honest_tips = sorted(set(tips[honest].tolist()))
        best = max(honest_tips, key=lambda b: (log.work[b], int((tips[honest] == b).sum()), -b))
        propagation = []
        for b in range(1, len(log)):
            src = log.miner[b]
            others = [v for v in honest if v != src]
            got = [
                self.accepted_at[b][v] - log.found[b] for v in others if v in self.accepted_at[b]
            ]
            if others:
                propagation.append(
                    (
                        b,
                        float(np.mean(got)) if got else math.inf,
                        float(np.max(got)) if got else math.inf,
                        len(got) / len(others),
                    )
                )
        share_extras: dict = {}
        if self.shares_on:
            checked = [n.pool.units_checked if n.pool is not None else 0 for n in self.nodes]
            share_extras = {
                "shares": SharesRecord(
                    self.share_blocks, share_spot_checks(self.params), self.share_versions
                ),
                "share_units_checked": int(sum(checked)),
                "share_verify_cpu_seconds": float(
                    sum(n.pool.cpu_seconds for n in self.nodes if n.pool is not None)
                ),
            }
            for n, units in zip(self.nodes, checked):
                n.verify_units += units
                n.verify_seconds += units * self.unit_seconds
        return RunRecord(
            mode="real",
            duration_s=end,
            population=self.pop,
            blocks=log,
            best_tip=best,
            tips=tips,
            units_run=np.array([n.units_run for n in self.nodes], dtype=np.int64),
            verify_units=np.array([n.verify_units for n in self.nodes], dtype=np.int64),
            verify_seconds=np.array([n.verify_seconds for n in self.nodes]),
            propagation=propagation,
            agreement_s=self.agreement,
            extras={
                "gamma_realised": None,
                "cap_hits": 0,
                "tips_agree": len(set(tips[honest].tolist())) == 1,
                "mining_wall_s": self.mining_wall,
                **self._reroll_extras(),
                **share_extras,
            },
        )

    def _reroll_extras(self) -> dict:
        if self.pop.adversary is None or self.exp.adversary.kind != "reroller":
            return {}
        stats = _reroll(self.nodes[self.pop.adversary])
        return {
            "reroll_prefix_units": self.reroll_units["prefix"],
            "reroll_roll_units": self.reroll_units["roll"],
            "reroll_expected_prefix": self.reroll_expected["prefix"],
            "reroll_expected_roll": self.reroll_expected["roll"],
            "reroll_tickets": self.reroll_computed["tickets"],
            "reroll_roll_units_computed": self.reroll_computed["roll_units"],
            "reroll_hashes": stats.hashes,
            "reroll_refusal_predicted": dict(self.reroll_predicted),
        }


def run_real(exp: Experiment, unit_seconds: float, workdir: Path) -> RunRecord:
    # Every caught block makes each node's chain state log a warning; the run counts them instead.
    chain_log = logging.getLogger("pouw.chainstate")
    level = chain_log.level
    chain_log.setLevel(logging.ERROR)
    sim = RealSim(exp, unit_seconds, workdir)
    try:
        return sim.run()
    finally:
        sim.close()
        chain_log.setLevel(level)
