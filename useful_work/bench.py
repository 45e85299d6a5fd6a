"""`pouw bench work`: rendering rate, exact vs float training step, unit time, held-out accuracy.

Every ratio is measured in one run on one machine (exact and float steps alternate on the same
minibatches), since these machines are shared and absolute times drift. The learning curves of
both models are saved as a PNG beside the table when `--plot` is given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch

from useful_work.compare import train_and_compare
from useful_work.hashing import int_bytes, tagged_hash
from useful_work.render import render_batch
from useful_work.render_task import RenderTask
from useful_work.tasks import RenderSpec, SceneSettings, TrainSpec


def render_rate(threads: int, repeats: int = 15, batch: int = 64, size: int = 32) -> dict[str, float]:
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
        return {"threads": threads, "batch_ms": round(1e3 * med, 2), "images_per_s": round(batch / med, 1)}
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


def run(quick: bool = False, steps: int | None = None, direction_steps: int | None = None, progress: bool = True) -> dict[str, Any]:
    steps = steps or (300 if quick else 3000)
    direction_steps = direction_steps if direction_steps is not None else (0 if quick else 1500)
    report: dict[str, Any] = {
        "render": [render_rate(1), render_rate(2)],
        "render_unit_ms": render_unit_ms(),
        "train_lights": train_and_compare(steps, TrainSpec(), eval_every=max(1, steps // 12), progress=progress),
    }
    if direction_steps:
        report["train_direction"] = train_and_compare(
            direction_steps, TrainSpec(objective="light-direction"), eval_every=max(1, direction_steps // 6), progress=progress
        )
    return report


def save_learning_curve(report: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = report["train_lights"]["accuracy_curve"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([c[0] for c in curve], [100 * c[1] for c in curve], marker="o", label="exact fixed point (consensus)")
    ax.plot([c[0] for c in curve], [100 * c[2] for c in curve], marker="s", label="float32 reference")
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
    rows = [(f"render 64 x 32px, {r['threads']} thread(s)", f"{r['images_per_s']:.0f} img/s ({r['batch_ms']} ms)") for r in report["render"]]
    rows += [
        ("render unit (16 images + labels + digest)", f"{report['render_unit_ms']} ms"),
        ("exact training step (batch 32)", f"{t['exact_step_ms']} ms"),
        ("float32 reference step (same batch)", f"{t['reference_step_ms']} ms"),
        ("exact / float32 step time", f"{t['exact_over_reference']:.2f}x (target <= 3x)"),
        ("training unit (2 steps incl. rendering)", f"{t['unit_ms']} ms"),
        ("task state (weights + momentum)", f"{t['state_bytes']} bytes"),
        (f"held-out accuracy after {t['steps']} steps: exact", f"{100 * t['exact_accuracy']:.1f} %"),
        (f"held-out accuracy after {t['steps']} steps: float32", f"{100 * t['reference_accuracy']:.1f} %"),
        ("  mean of the last evaluations: exact / float32", f"{100 * t['exact_accuracy_last_evals']:.1f} % / {100 * t['reference_accuracy_last_evals']:.1f} %"),
    ]
    d = report.get("train_direction")
    if d and "exact_direction_error_deg" in d:
        rows.append((f"dominant light direction error after {d['steps']} steps", f"{d['exact_direction_error_deg']} deg exact / {d['reference_direction_error_deg']} deg float32"))
    width = max(len(r[0]) for r in rows) + 2
    return "\n".join(f"{name:<{width}}{value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pouw bench work")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None, help="training steps for the comparison (default 3000; quick 300)")
    parser.add_argument("--direction-steps", type=int, default=None, help="steps of the light-direction run (0 skips it)")
    parser.add_argument("--plot", default=None, help="save the learning curves to this PNG")
    args = parser.parse_args(argv)
    report = run(args.quick, args.steps, args.direction_steps, progress=not args.json)
    if args.plot:
        save_learning_curve(report, args.plot)
    print(json.dumps(report, indent=2) if args.json else _table(report))
    return 0
