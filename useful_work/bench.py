"""`pouw bench work`: rendering rate, exact vs float training step, unit time, held-out accuracy,
and how well the unit cost model (useful_work.specs.unit_cost) tracks measured unit time.

Every ratio is measured in one run on one machine (exact and float steps alternate on the same
minibatches), since these machines are shared and absolute times drift. The learning curves of
both models are saved as a PNG beside the table when `--plot` is given.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Any

import torch

from useful_work.compare import train_and_compare
from useful_work.cpu_memory import keep_freed_memory
from useful_work.hashing import int_bytes, tagged_hash
from useful_work.render import render_batch
from useful_work.render_task import RenderTask
from useful_work.specs import RenderSpec, SceneSettings, TaskSpec, TrainSpec, unit_cost
from useful_work.tasks import make_task


def render_rate(
    threads: int, repeats: int = 15, batch: int = 64, size: int = 32
) -> dict[str, float]:
    """Images per second rendering `batch` images of `size` pixels (scene generation included)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        settings = SceneSettings(image_size=size)
        render_batch(tagged_hash("bench-render", b"warm"), batch, settings)
        times = []
        for i in range(repeats):
            t0 = time.perf_counter()
            render_batch(tagged_hash("bench-render", int_bytes(i)), batch, settings)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        return {
            "threads": threads,
            "batch_ms": round(1e3 * med, 2),
            "images_per_s": round(batch / med, 1),
        }
    finally:
        torch.set_num_threads(old)


def render_unit_ms(repeats: int = 10) -> float:
    task = RenderTask(RenderSpec())
    state = task.initial_state()
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        state, _ = task.run_unit(state, tagged_hash("bench-unit", int_bytes(i)))
        times.append(time.perf_counter() - t0)
    return round(1e3 * statistics.median(times), 2)


COST_SPECS: tuple[tuple[str, TaskSpec], ...] = (
    ("train default (batch 32, 2 steps, 32 px)", TrainSpec()),
    ("train batch 8, 1 step, 16 px", TrainSpec(batch_size=8, steps_per_unit=1, image_size=16)),
    ("train batch 64", TrainSpec(batch_size=64)),
    ("train 6 steps", TrainSpec(steps_per_unit=6)),
    ("train 64 px, batch 16", TrainSpec(image_size=64, batch_size=16)),
    ("train light-direction", TrainSpec(objective="light-direction")),
    ("train 1 object, 1 light", TrainSpec(max_objects=1, max_lights=2)),
    ("train 64 px, batch 64, 4 steps", TrainSpec(image_size=64, batch_size=64, steps_per_unit=4)),
    ("render default (16 x 32 px)", RenderSpec()),
    ("render 64 x 32 px", RenderSpec(images_per_unit=64)),
    (
        "render 4 x 16 px, 1 object, 1 light",
        RenderSpec(images_per_unit=4, image_size=16, max_objects=1, max_lights=1),
    ),
    (
        "render 16 x 64 px, 6 objects, 3 lights",
        RenderSpec(image_size=64, min_objects=6, min_lights=3),
    ),
    ("render 16 x 128 px", RenderSpec(image_size=128)),
    ("render 64 x 128 px", RenderSpec(images_per_unit=64, image_size=128)),
    # near the devnet limit (600,000,000), where the largest working sets allowed are
    ("train batch 64, 3 steps", TrainSpec(batch_size=64, steps_per_unit=3)),
    ("train batch 200, 1 step", TrainSpec(batch_size=200, steps_per_unit=1)),
    (
        "train 64 px, batch 48, 1 step, 6 objects, 3 lights",
        TrainSpec(
            image_size=64,
            batch_size=48,
            steps_per_unit=1,
            min_objects=6,
            min_lights=3,
            objective="light-direction",
        ),
    ),
    (
        "render 25 x 128 px, 6 objects, 3 lights",
        RenderSpec(images_per_unit=25, image_size=128, min_objects=6, min_lights=3),
    ),
    (
        "render 256 x 32 px, 6 objects, 3 lights",
        RenderSpec(images_per_unit=256, min_objects=6, min_lights=3),
    ),
)
QUICK_COST_SPECS = (0, 1, 4, 8, 10, 12)  # indices into COST_SPECS


def unit_cpu_seconds(spec: TaskSpec, repeats: int) -> float:
    """Least CPU time of this thread over `repeats` runs of one unit (after a warm-up unit).

    With one torch thread every kernel runs on the calling thread, so its CPU time is the unit's
    work, less the time other processes on a shared machine hold the core.
    """
    task = make_task(spec)
    state = task.initial_state()
    task.run_unit(state, tagged_hash("bench-cost", b"warm"))
    times = []
    for i in range(repeats):
        t0 = time.thread_time()
        task.run_unit(state, tagged_hash("bench-cost", int_bytes(i)))
        times.append(time.thread_time() - t0)
    return min(times)


def cost_model(quick: bool = False) -> dict[str, Any]:
    """Unit cost against measured CPU seconds per unit (1 thread) for specs of both kinds.

    The least of a few runs is taken; the spread of ns per operation and the correlation of log
    cost with log time show how closely the model tracks time.
    """
    # as a training task does; renders of large batches fault in memory otherwise
    keep_freed_memory()
    chosen = [COST_SPECS[i] for i in QUICK_COST_SPECS] if quick else list(COST_SPECS)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows: list[dict[str, Any]] = []
        for name, spec in chosen:
            seconds = unit_cpu_seconds(spec, 2 if quick else 4)
            cost = unit_cost(spec)
            rows.append(
                {
                    "spec": name,
                    "unit_cost": cost,
                    "unit_ms": round(1e3 * seconds, 2),
                    "ns_per_op": round(1e9 * seconds / cost, 4),
                }
            )
    finally:
        torch.set_num_threads(old)
    ns = [r["ns_per_op"] for r in rows]
    logs = [(math.log(r["unit_cost"]), math.log(r["unit_ms"])) for r in rows]
    return {
        "rows": rows,
        "ns_per_op_min": min(ns),
        "ns_per_op_max": max(ns),
        "spread": round(max(ns) / min(ns), 2),
        "log_correlation": round(
            statistics.correlation([a for a, _ in logs], [b for _, b in logs]), 4
        ),
    }


def cost_table(report: dict[str, Any]) -> str:
    rows = report["rows"]
    width = max(len(r["spec"]) for r in rows) + 2
    lines = [
        f"{'unit cost model (1 thread, CPU time)':<{width}}"
        f"{'operations':>16}{'ms/unit':>11}{'ns/op':>9}"
    ]
    lines += [
        f"{r['spec']:<{width}}{r['unit_cost']:>16,}{r['unit_ms']:>11.2f}{r['ns_per_op']:>9.4f}"
        for r in rows
    ]
    lines.append(
        f"ns per operation {report['ns_per_op_min']} .. {report['ns_per_op_max']} (spread "
        f"{report['spread']}x); correlation of log cost and log time {report['log_correlation']}"
    )
    return "\n".join(lines)


def run(
    quick: bool = False,
    steps: int | None = None,
    direction_steps: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    steps = steps or (300 if quick else 3000)
    direction_steps = direction_steps if direction_steps is not None else (0 if quick else 1500)
    report: dict[str, Any] = {
        "render": [render_rate(1), render_rate(2)],
        "render_unit_ms": render_unit_ms(),
        "train_lights": train_and_compare(
            steps, TrainSpec(), eval_every=max(1, steps // 12), progress=progress
        ),
        "cost_model": cost_model(quick),
    }
    if direction_steps:
        report["train_direction"] = train_and_compare(
            direction_steps,
            TrainSpec(objective="light-direction"),
            eval_every=max(1, direction_steps // 6),
            progress=progress,
        )
    return report


def save_learning_curve(report: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = report["train_lights"]["accuracy_curve"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(
        [c[0] for c in curve],
        [100 * c[1] for c in curve],
        marker="o",
        label="exact fixed point (consensus)",
    )
    ax.plot(
        [c[0] for c in curve], [100 * c[2] for c in curve], marker="s", label="float32 reference"
    )
    ax.axhline(100 / 3, color="grey", linestyle=":", label="chance")
    ax.set_xlabel("SGD steps")
    ax.set_ylabel("held-out light-count accuracy (%)")
    ax.set_title("Same minibatches, same hyper-parameters")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _table(report: dict[str, Any]) -> str:
    t = report["train_lights"]
    rows = [
        (
            f"render 64 x 32px, {r['threads']} thread(s)",
            f"{r['images_per_s']:.0f} img/s ({r['batch_ms']} ms)",
        )
        for r in report["render"]
    ]
    rows += [
        ("render unit (16 images + labels + digest)", f"{report['render_unit_ms']} ms"),
        ("exact training step (batch 32)", f"{t['exact_step_ms']} ms"),
        ("float32 reference step (same batch)", f"{t['reference_step_ms']} ms"),
        ("exact / float32 step time", f"{t['exact_over_reference']:.2f}x (target <= 3x)"),
        ("training unit (2 steps incl. rendering)", f"{t['unit_ms']} ms"),
        ("task state (weights + momentum)", f"{t['state_bytes']} bytes"),
        (
            f"held-out accuracy after {t['steps']} steps: exact",
            f"{100 * t['exact_accuracy']:.1f} %",
        ),
        (
            f"held-out accuracy after {t['steps']} steps: float32",
            f"{100 * t['reference_accuracy']:.1f} %",
        ),
        (
            "  mean of the last evaluations: exact / float32",
            f"{100 * t['exact_accuracy_last_evals']:.1f} % / "
            f"{100 * t['reference_accuracy_last_evals']:.1f} %",
        ),
    ]
    d = report.get("train_direction")
    if d and "exact_direction_error_deg" in d:
        rows.append(
            (
                f"dominant light direction error after {d['steps']} steps",
                f"{d['exact_direction_error_deg']} deg exact / "
                f"{d['reference_direction_error_deg']} deg float32",
            )
        )
    width = max(len(r[0]) for r in rows) + 2
    return (
        "\n".join(f"{name:<{width}}{value}" for name, value in rows)
        + "\n\n"
        + cost_table(report["cost_model"])
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pouw bench work")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="training steps for the comparison (default 3000; quick 300)",
    )
    parser.add_argument(
        "--direction-steps",
        type=int,
        default=None,
        help="steps of the light-direction run (0 skips it)",
    )
    parser.add_argument("--plot", default=None, help="save the learning curves to this PNG")
    parser.add_argument(
        "--cost-only",
        action="store_true",
        help="only the unit cost model against measured unit time",
    )
    args = parser.parse_args(argv)
    if args.cost_only:
        cost = cost_model(args.quick)
        print(json.dumps(cost, indent=2) if args.json else cost_table(cost))
        return 0
    report = run(args.quick, args.steps, args.direction_steps, progress=not args.json)
    if args.plot:
        save_learning_curve(report, args.plot)
    print(json.dumps(report, indent=2) if args.json else _table(report))
    return 0
