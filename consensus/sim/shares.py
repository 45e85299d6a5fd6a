"""Shares in modelled mode: useful fraction, verification, block size and reward variance.

`python -m consensus.sim.shares` sweeps `shares_per_block` N x miners m x units per miner per
block interval u and prints, per point, from a Monte Carlo of block intervals:

- useful fraction: units credited to the task / units mined. In each interval every unit is a
  ticket; the interval ends at the network's first ticket under the block target (B = m * u
  expected units), a unit is a share with probability N / B. The winner's whole trace is
  credited; every other miner's trace is credited up to its last share (the units after it
  are lost when the block arrives), nothing for a miner without a share. Without shares only
  the winner's trace counts.
- block verification units: what a node that saw none of the block's claims (one syncing)
  re-runs to validate it: the winner's last unit and k spot checks (`spot_checks`), and for
  each claim, per segment, its share's last unit and c spot checks (`share_spot_checks`), at
  most 1 + c a share. A node that saw the claims on gossip re-runs the winner's 1 + k only.
- gossip verification units: what one node re-runs for claims before relay when every share
  is published at once: each version of a claim re-runs its new segment only, at most 1 + c
  units (the earlier segments' openings are the previous version's), so a claim of s shares
  costs s (1 + c) in all, once.
- verification, two ways, both counting one node's units per block interval as the winner's
  1 + k plus the gossip units (the claims are not re-run again in the block):
  `ver/B` = that / B, a node's verification against the block's work (every miner's units of
  the interval); `ver/u` = that / u, against the node's own mining (every node verifies
  everything, so this is also all nodes' verification over all their mining).
- bytes per block: 128 per credited leaf, an opening (`--state-bytes`) per re-run unit, and
  about 250 bytes of fixed fields per claim.
- reward variance of a small miner: the coefficient of variation of one miner's reward per
  interval (block rewards as `ConsensusParams.share_split`), with shares and without.

Arrivals of claims are assumed in time for the block (no propagation delay) and every miner
runs one trace per interval; a real network loses the claims that arrive after the block.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLAIM_OVERHEAD_BYTES = 250
LEAF_BYTES = 128


@dataclass(frozen=True)
class Point:
    shares_per_block: int
    miners: int
    units_per_miner: int
    useful: float
    useful_no_shares: float
    block_verify_units: float
    gossip_verify_units: float
    verify_over_block_work: float
    verify_over_own_mining: float
    block_bytes: float
    reward_cv: float
    reward_cv_no_shares: float


def simulate(
    shares: int,
    miners: int,
    units: int,
    blocks: int,
    k: int,
    state_bytes: int,
    share_reward_pct: int = 50,
    fee_pct: int = 10,
    seed: int = 0,
    c: int = 1,
) -> Point:
    """Monte Carlo of `blocks` intervals of `miners` equal miners (u = `units` each)."""
    rng = np.random.default_rng(seed)
    total = miners * units  # expected units per block: the block target gives 1 / total
    p_block = 1.0 / total
    # Units each miner ran before the block: the network's count is geometric; its split among
    # equal miners is multinomial, the winner's last unit included.
    counts = rng.geometric(p_block, size=blocks)
    per_miner = np.stack([rng.multinomial(c, np.full(miners, 1.0 / miners)) for c in counts])
    winner = np.array([rng.choice(miners, p=row / row.sum()) for row in per_miner])
    mined = per_miner.sum()
    subsidy = 1.0
    useful_none = per_miner[np.arange(blocks), winner].sum() / mined
    reward_none = np.zeros((blocks, miners))
    reward_none[np.arange(blocks), winner] = subsidy
    if not shares:
        return Point(
            0,
            miners,
            units,
            useful_none,
            useful_none,
            1 + k,
            0.0,
            (1 + k) / total,
            (1 + k) / units,
            float(per_miner[np.arange(blocks), winner].mean()) * LEAF_BYTES + (1 + k) * state_bytes,
            _cv(reward_none),
            _cv(reward_none),
        )
    q = (
        min(1.0, (shares - 1) / (total - 1)) if total > 1 else 0.0
    )  # a non-winning unit's share chance
    n_shares = rng.binomial(per_miner, q)
    # The trailing run of non-shares after a trace's last share: min(geometric, n).
    tail = np.minimum(rng.geometric(q, size=per_miner.shape) - 1, per_miner) if q > 0 else per_miner
    credited = np.where(n_shares > 0, per_miner - tail, 0)
    rows = np.arange(blocks)
    credited[rows, winner] = per_miner[rows, winner]
    n_shares[rows, winner] = 0  # the winner's trace counts as its block's one share
    claims = (n_shares > 0).sum(axis=1)
    included = n_shares.sum(axis=1)
    # Each share's segment: its last unit and c spot checks (fewer in a segment of c units or
    # less; the model counts 1 + c, an upper bound).
    claims_verify = included * (1 + c)
    block_verify = (1 + k) + claims_verify  # a node that saw none of the claims
    gossip_verify = claims_verify  # each version re-runs its new segment: s (1 + c) a claim
    per_share = subsidy * share_reward_pct / 100 / shares
    fee = per_share * fee_pct / 100
    reward = n_shares * (per_share - fee)
    reward[rows, winner] += subsidy - per_share * (shares - 1) + fee * included
    leaves = credited.sum(axis=1)
    opened = block_verify  # the block carries every opening, seen on gossip or not
    block_bytes = leaves * LEAF_BYTES + opened * state_bytes + claims * CLAIM_OVERHEAD_BYTES
    verify = (1 + k) + gossip_verify.mean()  # one node: claims on gossip, the winner in the block
    return Point(
        shares,
        miners,
        units,
        credited.sum() / mined,
        useful_none,
        float(block_verify.mean()),
        float(gossip_verify.mean()),
        verify / total,
        verify / units,
        float(block_bytes.mean()),
        _cv(reward),
        _cv(reward_none),
    )


def _cv(reward: np.ndarray) -> float:
    """Coefficient of variation of one (equal, small) miner's reward per interval, over every
    miner's intervals pooled (the miners are alike)."""
    return float(reward.std() / reward.mean())


def sweep(
    shares_values: list[int],
    miners_values: list[int],
    units_values: list[int],
    blocks: int,
    k: int,
    state_bytes: int,
    c: int = 1,
) -> list[Point]:
    out = []
    for m in miners_values:
        for u in units_values:
            for n in shares_values:
                seed = hash((n, m, u)) % 2**32
                out.append(simulate(n, m, u, blocks, k, state_bytes, seed=seed, c=c))
    return out


def plot(points: list[Point], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from consensus.sim.plots import FRONTIER_AXES, Frontier, draw_frontier

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    series: Frontier = []
    for m, u in sorted({(p.miners, p.units_per_miner) for p in points}):
        pts = sorted(
            (p for p in points if (p.miners, p.units_per_miner) == (m, u) and p.shares_per_block),
            key=lambda p: p.shares_per_block,
        )
        xs = {a: [getattr(p, a) for p in pts] for a in FRONTIER_AXES}
        series.append((f"{m} miners, {u} units each", xs, [p.useful for p in pts]))
    draw_frontier(axes, series)
    axes[0].legend(fontsize=8)
    fig.suptitle("Shares: useful fraction against verification (each point a shares_per_block)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shares",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[0, 100, 300, 1000, 3000, 10000, 30000],
    )
    parser.add_argument(
        "--miners", type=lambda s: [int(x) for x in s.split(",")], default=[100, 1000]
    )
    parser.add_argument(
        "--units", type=lambda s: [int(x) for x in s.split(",")], default=[500, 2000, 5000]
    )
    parser.add_argument("--blocks", type=int, default=400)
    parser.add_argument("--spot-checks", type=int, default=3, help="k, the winner's")
    parser.add_argument(
        "--share-spot-checks", type=int, default=1, help="c, per segment of a share claim"
    )
    parser.add_argument(
        "--state-bytes", type=int, default=35_852, help="one opening (devnet train state)"
    )
    parser.add_argument("--plot", type=Path, default=Path("docs/img/shares_frontier.png"))
    args = parser.parse_args(argv)
    points = sweep(
        args.shares,
        args.miners,
        args.units,
        args.blocks,
        args.spot_checks,
        args.state_bytes,
        args.share_spot_checks,
    )
    head = (
        f"{'miners':>6} {'u':>5} {'N':>6} {'useful':>7} {'(none)':>7} {'blk ver':>8} {'gossip':>8} "
        f"{'ver/B':>7} {'ver/u':>8} {'MB/blk':>7} {'CV':>6} {'(none)':>7}"
    )
    print(head)
    for p in points:
        print(
            f"{p.miners:>6} {p.units_per_miner:>5} {p.shares_per_block:>6} {p.useful:>7.1%} "
            f"{p.useful_no_shares:>7.1%} {p.block_verify_units:>8.0f} "
            f"{p.gossip_verify_units:>8.0f} "
            f"{p.verify_over_block_work:>7.2%} {p.verify_over_own_mining:>8.1%} "
            f"{p.block_bytes / 1e6:>7.2f} {p.reward_cv:>6.2f} {p.reward_cv_no_shares:>7.2f}"
        )
    plot(points, args.plot)
    print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
