"""What the re-roller would gain under the rule before protocol version 2, analytically
(`python -m consensus.sim.pre_v2`).

Before version 2 a unit's seed was H(P, M, u): it did not depend on earlier leaves, so a
fabricated leaf between an honest prefix and the winner could be re-rolled for hashes only
(consensus.sim.theory.reroll_gain_pre_v2 has the closed form). This prints that gain for measured
tries per unit: the wall time of one unit of a chain's default task over the wall time of one
re-roll (a made-up digest, the trace root, the ticket; consensus.sim.measure). Nothing here runs
under today's rule; the simulator's re-roller (consensus/sim/reroll.py) does.
"""

from __future__ import annotations

import argparse

from consensus.params import load_params
from consensus.sim.measure import measure_reroll_seconds, measure_unit_seconds
from consensus.sim.theory import reroll_acceptance, reroll_gain_pre_v2


def table(
    units_per_block: float, k: int, prefixes: list[int], unit_s: float, tries: dict[int, float]
) -> list[dict]:
    rows = []
    for h in prefixes:
        t = unit_s / tries[h]
        per_unit, per_time = reroll_gain_pre_v2(t, units_per_block, h, k)
        rows.append(
            {
                "prefix": h,
                "acceptance": reroll_acceptance("chained", k, h + 2),
                "tries_per_unit": t,
                "gain_per_unit": per_unit,
                "gain_per_time": per_time,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m consensus.sim.pre_v2", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--preset",
        default="devnet",
        help="chain preset or parameter file whose default task is timed (default devnet)",
    )
    parser.add_argument(
        "--units-per-block",
        type=float,
        help="an honest miner's units per block (default: the preset's initial_units_per_block)",
    )
    parser.add_argument("--spot-checks", type=int, help="k (default: the preset's)")
    parser.add_argument(
        "--prefix",
        type=int,
        action="append",
        help="honest prefix h (repeatable; default 4, 8, 16, 64)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for the unit (default 1, as `pouw bench work` trains)",
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    params = load_params(args.preset)
    units = args.units_per_block or params.initial_units_per_block
    k = params.spot_checks if args.spot_checks is None else args.spot_checks
    prefixes = args.prefix or [4, 8, 16, 64]
    unit_s = measure_unit_seconds(params)
    tries = {h: measure_reroll_seconds(h + 2) for h in prefixes}
    print(
        f"pre-version-2 rule: {args.preset} default task, {unit_s * 1000:.1f} ms per unit; U = "
        f"{units:g} units per block, k = {k}"
    )
    print(
        f"{'h':>5} {'accepted':>9} {'re-roll us':>11} {'tries/unit T':>13} "
        f"{'gain per unit run':>18} {'gain per mining time':>21}"
    )
    for row in table(units, k, prefixes, unit_s, tries):
        h = row["prefix"]
        print(
            f"{h:>5} {row['acceptance']:>9.3f} {tries[h] * 1e6:>11.1f} "
            f"{row['tries_per_unit']:>13,.0f} {row['gain_per_unit']:>17,.1f}x "
            f"{row['gain_per_time']:>20,.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
