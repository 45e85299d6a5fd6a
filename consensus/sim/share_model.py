"""Shares in modelled mode (consensus/sim/modelled.py): claims gossiped with delays, included in
blocks, paid by `ConsensusParams.share_split`.

With `chain.shares_per_block` = N > 0, every unit a miner runs on parent P is a share with
probability (q_s - q_b) / (1 - q_b) (q_b = the block target / 2^256 on P, q_s = N q_b: a share
that is not also a block), independently, as blocks are drawn from the block target. A miner's
claim on P is its trace up to its latest share; it gossips each version (one per share) to the
network, which carries it like a block of `claim_bytes` (the network model's delays, each relay
verifying 1 + share_spot_checks units first).

A block found at t by F on P includes, for every other miner j that mined on P, its latest share
that reached F before t: the units j ran on P up to t - D(j, F), D the claim's delay from j to F,
cut back to the last share (a geometric run of non-shares). At most `max_share_claims` claims,
the longest kept. Approximations (each named here, none an input of a result):
- A claim is drawn when a block needs it, from the units in the window (memoryless Bernoulli
  units); two blocks on one parent (a fork) draw their claims independently.
- A miner's time on P is its current segment (its tip is P) or its one previous segment (it
  moved from P to a sibling of the block being found); older segments give no claim.
- Claim delays ignore partitions and links' queues; D is symmetric (links are) and computed once
  per finder.
- Gossip verification: every node verifies every share version found on any parent once (on
  gossip, or in the block if the gossip had not reached it), 1 + share_spot_checks units each, so
  a block's claims cost a node nothing more; versions are counted per miner segment as
  Binomial(units, share chance), independently of the claims drawn for blocks. Nodes that have
  left P still count P's late shares: an upper bound, as for blocks.
- `max_share_bytes` is not applied (bytes are reported; `share_bytes_over_limit` counts blocks
  over it).
Honest miners only: an experiment with shares and an adversary is refused in config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from consensus.params import ConsensusParams
from consensus.sim.network import Network
from consensus.sim.shares import CLAIM_OVERHEAD_BYTES, LEAF_BYTES


def share_spot_checks(params: ConsensusParams) -> int:
    """Spot checks per claim version: one new segment's (`ConsensusParams.share_spot_checks`)."""
    return params.share_spot_checks


def share_chance(params: ConsensusParams, q_block: float) -> float:
    """Chance that a unit that did not win a block is a share, for a block chance q_block."""
    q_share = min(1.0, q_block * params.shares_per_block)
    return max(0.0, (q_share - q_block) / (1.0 - q_block)) if q_block < 1 else 0.0


@dataclass
class BlockShares:
    """The claims one block carries and what they are paid."""

    miners: np.ndarray  # node index per claim
    units: np.ndarray  # units credited per claim
    shares: np.ndarray  # shares per claim
    claim_rewards: np.ndarray  # reward per claim (its shares' rewards less the includer's fee)
    winner_reward: int  # the winner's subsidy and fees
    block_bytes: int
    fresh_verify_units: int  # a node that saw none of the claims on gossip re-runs this many


@dataclass
class SharesRecord:
    """What the metrics read of a run's shares (real mode builds it from the nodes' blocks)."""

    blocks: dict[int, BlockShares]
    s: int  # share_spot_checks
    versions: int  # share versions found
    dropped_claims: int = 0


@dataclass
class ShareModel:
    params: ConsensusParams
    net: Network
    relay: np.ndarray
    rate: np.ndarray  # units per second per node
    unit_seconds: float
    header_check_seconds: float
    state_bytes: int
    rng: np.random.Generator
    blocks: dict[int, BlockShares] = field(default_factory=dict)
    versions: int = 0  # share versions found on every parent (gossip)
    dropped_claims: int = 0  # claims left out by max_share_claims

    def __post_init__(self) -> None:
        n = len(self.rate)
        self.s = share_spot_checks(self.params)
        self.k = self.params.spot_checks
        self.prev_parent = np.full(n, -1, dtype=np.int64)
        self.prev_start = np.zeros(n)
        self.prev_end = np.zeros(n)
        self.rows: dict[int, np.ndarray] = {}
        p = self.params
        segment = max(1, p.initial_units_per_block // max(1, p.shares_per_block))
        # A claim version carries its new segment's leaves, its openings and the fixed fields.
        self.claim_bytes = (
            CLAIM_OVERHEAD_BYTES + segment * LEAF_BYTES + (1 + self.s) * self.state_bytes
        )
        self.claim_verify_s = self.header_check_seconds + (1 + self.s) * self.unit_seconds

    def delays_to(self, finder: int) -> np.ndarray:
        """Seconds a claim takes from each node to `finder` (the same as from it: links are
        symmetric)."""
        row = self.rows.get(finder)
        if row is None:
            row, _ = self.net.propagate(
                finder,
                0.0,
                0.0,
                self.claim_bytes,
                self.claim_verify_s,
                self.relay,
                ignore_cuts=True,
            )
            self.rows[finder] = row
        return row

    def segments_end(
        self,
        nodes: np.ndarray,
        parents: np.ndarray,
        starts: np.ndarray,
        at: np.ndarray,
        q: np.ndarray,
    ) -> None:
        """Miners leave the parents they mined on: keep the segment, count its share versions."""
        self.prev_parent[nodes] = parents
        self.prev_start[nodes] = starts
        self.prev_end[nodes] = at
        units = np.floor(np.maximum(at - starts, 0.0) * self.rate[nodes])
        units = np.minimum(units, self.params.max_units_per_block).astype(np.int64)
        chance = np.array([share_chance(self.params, float(x)) for x in q[parents].tolist()])
        if len(units):
            self.versions += int(self.rng.binomial(units, chance).sum())

    def claims(
        self,
        b: int,
        finder: int,
        parent: int,
        t: float,
        height: int,
        q_block: float,
        winner_units: int,
        miners: np.ndarray,
        tip: np.ndarray,
        seg_start: np.ndarray,
    ) -> int:
        """Draw the claims block b carries; returns the units they credit."""
        p = self.params
        chance = share_chance(p, q_block)
        on = tip == parent
        start = np.where(on, seg_start, self.prev_start[miners])
        end = np.where(on, t, self.prev_end[miners])
        ok = (on | (self.prev_parent[miners] == parent)) & (miners != finder)
        arrive_by = t - self.delays_to(finder)[miners]
        window = np.minimum(end, arrive_by) - start
        n_w = np.floor(np.maximum(window, 0.0) * self.rate[miners])
        n_w = np.minimum(n_w, p.max_units_per_block).astype(np.int64)
        if chance > 0:
            gap = self.rng.geometric(chance, size=len(miners))  # units back to the last share, +1
            units = n_w - gap + 1
        else:
            units = np.zeros(len(miners), dtype=np.int64)
        have = ok & (units >= 1)
        idx = np.flatnonzero(have)
        if len(idx) > p.max_share_claims:
            keep = np.argsort(-units[idx], kind="stable")[: p.max_share_claims]
            self.dropped_claims += len(idx) - len(keep)
            idx = np.sort(idx[keep])
        units = units[idx]
        shares = 1 + self.rng.binomial(units - 1, chance) if len(idx) else units.copy()
        subsidy, rewards = p.share_split(height)
        included = int(shares.sum())
        claim_bytes = int(
            (units * LEAF_BYTES).sum()
            + included * (1 + self.s) * self.state_bytes
            + len(idx) * CLAIM_OVERHEAD_BYTES
        )
        self.blocks[b] = BlockShares(
            miners=miners[idx],
            units=units,
            shares=shares,
            claim_rewards=shares * (rewards.per_share - rewards.fee),
            winner_reward=subsidy + rewards.fee * included,
            block_bytes=winner_units * LEAF_BYTES + (1 + self.k) * self.state_bytes + claim_bytes,
            fresh_verify_units=1 + min(self.k, max(winner_units - 1, 0)) + included * (1 + self.s),
        )
        return int(units.sum())
