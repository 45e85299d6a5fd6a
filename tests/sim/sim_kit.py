"""Simulator test kit: small experiment trees and a one-call runner."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

from consensus.sim.config import parse_experiment, set_path
from consensus.sim.metrics import compute
from consensus.sim.modelled import run_modelled

REPO = Path(__file__).resolve().parents[2]

TINY_RENDER = {
    "kind": "render",
    "units": 0,
    "images_per_unit": 1,
    "image_size": 16,
    "max_objects": 2,
}


def selfish_data(share: float, gamma: float, blocks: int, seed: int) -> dict:
    """Eyal and Sirer's setting: long intervals, a frozen target, a fast attacker, 20 equal
    honest miners."""
    return {
        "chain": {
            "block_interval_ms": 600_000,
            "retarget_half_life_ms": 10**10,
            "max_units_per_block": 1 << 20,
        },
        "network": {
            "topology": "mesh",
            "latency_ms": 100,
            "bandwidth_mbps": 1000,
            "block_bytes": 1000,
        },
        "miners": [{"name": "honest", "count": 20, "unit_rate": 1.0}],
        "work": {"unit_seconds": 0.0, "header_check_seconds": 0.0},
        "adversary": {"kind": "selfish", "share": share, "gamma": gamma},
        "run": {"blocks": blocks, "seed": seed, "settle_blocks": 50},
    }


def stale_data(latency_ms: float, blocks: int, seed: int, miners: int = 100) -> dict:
    """Every block reaches every node exactly `latency_ms` after it is found; constant block
    rate."""
    return {
        "chain": {"block_interval_ms": 10_000, "retarget_half_life_ms": 10**10},
        "network": {
            "topology": "mesh",
            "latency_ms": latency_ms,
            "bandwidth_mbps": 10**6,
            "block_bytes": 1000,
        },
        "miners": [{"count": miners, "unit_rate": 10.0}],
        "work": {"unit_seconds": 0.0, "header_check_seconds": 0.0},
        "run": {"blocks": blocks, "seed": seed, "warmup_blocks": 20},
    }


def small_data(blocks: int = 200, seed: int = 1, **changes) -> dict:
    """A 30-node random 6-regular network of 20 miners and 10 relays."""
    data = {
        "chain": {"block_interval_ms": 5000},
        "network": {
            "nodes": 30,
            "topology": "random-regular",
            "degree": 6,
            "latency_ms": [20, 100],
            "bandwidth_mbps": 100,
            "block_bytes": 100_000,
        },
        "miners": [{"name": "honest", "count": 20, "unit_rate": 10.0}],
        "work": {"unit_seconds": 0.02},
        "run": {"blocks": blocks, "seed": seed},
    }
    for key, value in changes.items():
        set_path(data, key.replace("__", "."), value)
    return data


def real_data(
    blocks: int, seed: int, adversary: dict | None = None, honest_miners: int = 3
) -> dict:
    data = {
        "chain": {
            "network": "simtest",
            "block_interval_ms": 2000,
            "retarget_half_life_ms": 30_000,
            "initial_units_per_block": 4,
            "spot_checks": 1,
            "default_task": dict(TINY_RENDER),
        },
        "network": {"nodes": honest_miners, "topology": "mesh", "latency_ms": 50},
        "miners": [{"name": "honest", "count": honest_miners, "unit_rate": 3.0}],
        "work": {"unit_seconds": 0.02},
        "run": {"mode": "real", "blocks": blocks, "seed": seed, "settle_blocks": 0},
    }
    if adversary:
        data["adversary"] = adversary
    return data


def run_metrics(data: dict, unit_seconds: float | None = None):
    exp = parse_experiment(copy.deepcopy(data))
    seconds = exp.work.unit_seconds if unit_seconds is None else unit_seconds
    if exp.run.mode == "real":
        from consensus.sim.real import run_real

        with tempfile.TemporaryDirectory(prefix="pouw-simtest-") as tmp:
            record = run_real(exp, seconds, Path(tmp))
    else:
        record = run_modelled(exp, seconds)
    metrics, _details = compute(record, exp)
    return metrics, record, exp
