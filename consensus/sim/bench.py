"""`pouw sim bench`: the modelled engine at scale (default 1,000 nodes, 10,000 blocks), wall time
and peak memory.

One process, one point, so the figure is what one of the sweep's workers needs per point.
"""

from __future__ import annotations

import argparse
import json
import time


def scale_experiment(
    nodes: int = 1000, blocks: int = 10_000, seed: int = 1, degree: int = 8
) -> dict:
    pools = max(1, nodes // 100)
    small = max(0, int(nodes * 0.8) - pools)
    return {
        "name": "bench",
        "network": {
            "nodes": nodes,
            "topology": "random-regular",
            "degree": degree,
            "latency_ms": [20, 200],
            "bandwidth_mbps": 50,
            "block_bytes": 200_000,
        },
        "miners": [
            {"name": "pool", "count": pools, "unit_rate": 50.0},
            {"name": "home", "count": small, "unit_rate": 2.0},
        ],
        "work": {"unit_seconds": 0.02, "header_check_seconds": 0.0005},
        "run": {"mode": "modelled", "blocks": blocks, "seed": seed},
    }


def run(nodes: int, blocks: int, seed: int, degree: int) -> dict:
    from consensus.sim.config import parse_experiment
    from consensus.sim.metrics import compute
    from consensus.sim.modelled import run_modelled
    from consensus.sim.runner import peak_rss_mb

    before = peak_rss_mb()
    exp = parse_experiment(scale_experiment(nodes, blocks, seed, degree), "bench")
    started = time.perf_counter()
    cpu0 = time.process_time()
    record = run_modelled(exp, exp.work.unit_seconds or 0.0)
    sim_s = time.perf_counter() - started
    metrics, _ = compute(record, exp)
    total_s = time.perf_counter() - started
    return {
        "nodes": exp.network.nodes,
        "miners": sum(g.count for g in exp.miners),
        "blocks": metrics["height"],
        "blocks_found": metrics["blocks_found"],
        "topology": f"random-regular d={degree}",
        "simulate_s": round(sim_s, 2),
        "with_metrics_s": round(total_s, 2),
        "cpu_s": round(time.process_time() - cpu0, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_mb": round(before, 1),
        "candidates": record.extras["candidates"],
        "stale_rate": metrics["stale_rate"],
        "interval_mean_s": metrics["interval_mean_s"],
        "delay_mean_s": metrics.get("delay_mean_s"),
        "useful_fraction": metrics["useful_fraction"],
        "simulated_s": metrics["duration_s"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pouw sim bench", description=__doc__)
    add_arguments(parser)
    return execute(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=1000, help="nodes (default 1000; 80%% mine)")
    parser.add_argument(
        "--blocks", type=int, default=10_000, help="run until this height (default 10000)"
    )
    parser.add_argument(
        "--degree", type=int, default=8, help="random regular graph degree (default 8)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def execute(args: argparse.Namespace) -> int:
    result = run(args.nodes, args.blocks, args.seed, args.degree)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for key, value in result.items():
            print(f"{key:>16}  {value}")
    return 0
