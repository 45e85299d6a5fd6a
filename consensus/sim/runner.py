"""Running an experiment: every sweep point in worker processes, with a progress bar.

A worker gets a point's experiment tree (plain data, so it pickles), parses it again and runs it
in the point's mode. Results come back in point order whatever order the workers finish in;
wall time and peak memory are kept apart from the results, so that the same file and seed give
byte-identical results.
"""

from __future__ import annotations

import multiprocessing
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from consensus.sim.config import (
    Experiment,
    ExperimentError,
    Point,
    expand,
    parse_experiment,
)
from consensus.sim.metrics import compute


@dataclass(frozen=True)
class PointResult:
    index: int
    values: dict
    metrics: dict
    details: dict
    wall_s: float
    peak_rss_mb: float


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def simulate(exp: Experiment, unit_seconds: float):
    if exp.run.mode == "real":
        from consensus.sim.real import run_real

        with tempfile.TemporaryDirectory(prefix="pouw-sim-") as tmp:
            return run_real(exp, unit_seconds, Path(tmp))
    from consensus.sim.modelled import run_modelled

    return run_modelled(exp, unit_seconds)


def run_point(index: int, values: dict, data: dict, name: str, unit_seconds: float) -> PointResult:
    exp = parse_experiment(data, name)
    started = time.perf_counter()
    record = simulate(exp, unit_seconds)
    metrics, details = compute(record, exp)
    metrics = {
        "unit_seconds": unit_seconds,
        "initial_units_per_block": exp.chain.initial_units_per_block,
        "spot_checks": exp.chain.spot_checks,
        **metrics,
    }
    return PointResult(
        index, values, metrics, details, time.perf_counter() - started, peak_rss_mb()
    )


def resolve_unit_seconds(points: list[Point]) -> dict[int, float]:
    """Each point's verifier seconds per unit: the configured number, or one measurement per
    distinct task."""
    measured: dict[str, float] = {}
    out: dict[int, float] = {}
    for p in points:
        configured = p.experiment.work.unit_seconds
        if configured is not None:
            out[p.index] = configured
            continue
        key = repr(p.experiment.chain.default_task)
        if key not in measured:
            from consensus.sim.measure import measure_unit_seconds

            measured[key] = measure_unit_seconds(p.experiment.chain)
        out[p.index] = measured[key]
    return out


def run_experiment(
    data: dict, name: str, workers: int = 2, progress: bool = True
) -> list[PointResult]:
    points = expand(data, name)
    seconds = resolve_unit_seconds(points)
    results: dict[int, PointResult] = {}
    from tqdm import tqdm

    bar = tqdm(
        total=len(points), desc=f"sim {name}", unit="point", disable=not progress, file=sys.stderr
    )
    if workers <= 1 or len(points) == 1:
        for p in points:
            results[p.index] = run_point(p.index, p.values, p.data, name, seconds[p.index])
            bar.update()
    else:
        # spawn: a fresh interpreter per worker, safe whatever threads torch or the parent started.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(points)), mp_context=ctx) as pool:
            futures = {
                pool.submit(run_point, p.index, p.values, p.data, name, seconds[p.index]): p.index
                for p in points
            }
            for future in as_completed(futures):
                result = future.result()
                results[result.index] = result
                bar.update()
    bar.close()
    return [results[i] for i in sorted(results)]


__all__ = ["ExperimentError", "PointResult", "peak_rss_mb", "run_experiment", "run_point"]
