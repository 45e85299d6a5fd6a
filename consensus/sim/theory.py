"""Closed forms the simulator is compared against. Used for tests, tables and plots, never by a
simulation."""

from __future__ import annotations

import math

import numpy as np


def selfish_revenue(alpha: float, gamma: float) -> float:
    """Eyal and Sirer (2014), eq. (8): the selfish pool's share of main-chain blocks.

    R = (a (1-a)^2 (4a + g (1-2a)) - a^3) / (1 - a (1 + (2-a) a)); it equals a at the threshold
    a = (1 - g) / (3 - 2g), which is 1/3 at g = 0 and 1/4 at g = 1/2.
    """
    a, g = alpha, gamma
    return (a * (1 - a) ** 2 * (4 * a + g * (1 - 2 * a)) - a**3) / (1 - a * (1 + (2 - a) * a))


def selfish_threshold(gamma: float) -> float:
    return (1 - gamma) / (3 - 2 * gamma)


def selfish_revenue_markov(alpha: float, gamma: float, max_lead: int = 200) -> float:
    """The same revenue from the strategy's Markov chain (states 0, 0', 1, 2, ...), solved
    numerically.

    An independent check of the closed form: stationary probabilities times the blocks each
    transition settles for the pool and for the honest miners.
    """
    a, b, g = alpha, 1 - alpha, gamma
    n = max_lead + 2  # index 0: state 0, 1: state 0', 2..: lead 1, 2, ...
    P = np.zeros((n, n))
    pool = np.zeros(n)
    honest = np.zeros(n)

    def lead(i: int) -> int:
        return i + 1

    P[0, 2] += a  # 0 -> 1
    P[0, 0] += b
    honest[0] += b * 1
    P[2, lead(2)] += a  # 1 -> 2
    P[2, 1] += b  # 1 -> 0'
    P[1, 0] += 1  # 0' -> 0
    pool[1] += a * 2 + b * g * 1
    honest[1] += b * g * 1 + b * (1 - g) * 2
    P[3, 4 if n > 4 else 3] += a  # 2 -> 3
    P[3, 0] += b  # 2 -> 0: the pool publishes both
    pool[3] += b * 2
    for i in range(4, n):  # lead >= 3
        P[i, min(i + 1, n - 1)] += a
        P[i, i - 1] += b
        pool[i] += b * 1
    A = P.T - np.eye(n)
    A[-1, :] = 1.0  # replace one balance equation by "probabilities sum to 1"
    rhs = np.zeros(n)
    rhs[-1] = 1.0
    pi = np.linalg.solve(A, rhs)
    rp, rh = float(pi @ pool), float(pi @ honest)
    return rp / (rp + rh)


def fork_rate(delay: float, interval: float) -> float:
    """1 - exp(-d/T): the chance that another block is found while a block propagates for d seconds.

    T is the mean time between blocks found anywhere (stale ones included). When every block reaches
    every miner exactly d after it is found, this is exactly the share of main-chain heights that
    also hold a stale block (a fork): the main block at a height is the first found there, and every
    block found in the d seconds after it is a sibling that loses.
    """
    return 1 - math.exp(-delay / interval)


def fork_rate_shares(delay: float, interval: float, shares: list[float] | np.ndarray) -> float:
    """The same with finite miners: a miner never races its own block, so miner i's rivals
    hold 1 - s_i."""
    s = np.asarray(shares, dtype=float)
    s = s / s.sum()
    return float((s * (1 - np.exp(-(1 - s) * delay / interval))).sum())


def stale_fraction(
    delay: float, interval: float, shares: list[float] | np.ndarray | None = None
) -> float:
    """Stale blocks over all blocks in the same model: x / (1 + x), x = d/T (times sum s_i (1 - s_i)
    with shares).

    Each main-chain block is followed by a Poisson(x) number of losing siblings, so a share
    x / (1 + x) of all blocks is stale; it agrees with 1 - exp(-x) to first order in x only.
    """
    x = delay / interval
    if shares is not None:
        s = np.asarray(shares, dtype=float)
        s = s / s.sum()
        x *= float((s * (1 - s)).sum())
    return x / (1 + x)


def detection(f: float, k: int) -> float:
    """1 - (1 - f)^k: a block with a fraction f of faked units fails one of k spot checks."""
    return 1 - (1 - f) ** k


def detection_for_units(f: float, k: int, units: int) -> float:
    """The same for a block of `units` units, where fewer than k non-winning units exist to
    check."""
    return 1 - (1 - f) ** min(k, units - 1)


def reroll_acceptance(strategy: str, k: int, units: int) -> float:
    """The chance that verifiers accept a re-rolled block of `units` leaves
    (consensus.attacks.RerollMiner).

    "chained": the fabricated leaf is one of the n - 1 non-winning units, and k of them are
    challenged: accepted with probability 1 - min(1, k / (n - 1)). "last": the fabricated leaf is
    the winner, which is always re-executed: never accepted.
    """
    if strategy == "last":
        return 0.0
    candidates = units - 1
    if k <= 0:
        return 1.0
    return max(0.0, 1.0 - k / candidates) if candidates > k else 0.0


def reroll_gain_pre_v2(
    tries_per_unit: float, units_per_block: float, prefix: int, k: int
) -> tuple[float, float]:
    """What re-rolling one fabricated leaf gave under the rule before protocol version 2 (unchained
    seeds).

    Then seed_u = H(P, M, u) did not depend on earlier leaves, so a miner ran `prefix` honest units
    and the winner once, and re-rolled the digest of a fabricated leaf between them for hashes only
    (`tries_per_unit` = T re-rolls in the time of one unit). The ticket told it the challenges
    before it published, so it kept only tickets that left the leaf unchallenged (a = 1 -
    k/(prefix+1) of them). With U = `units_per_block` (an honest miner's units per block):

    - per unit run: prefix + 1 units per block against U, a gain of U / (prefix + 1);
    - per unit of mining time: (prefix + 1) unit times plus U / (a T) unit times of hashing per
      block, a gain of 1 / ((prefix + 1) / U + 1 / (a T)), about a T while a T << U / (prefix + 1).

    Returns (gain per unit run, gain per unit of mining time); 1 is honest mining.
    """
    a = reroll_acceptance("chained", k, prefix + 2)
    if a <= 0:
        return 0.0, 0.0
    per_unit = units_per_block / (prefix + 1)
    per_time = 1.0 / ((prefix + 1) / units_per_block + 1.0 / (a * tries_per_unit))
    return per_unit, per_time
