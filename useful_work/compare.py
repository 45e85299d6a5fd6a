"""Exact fixed-point training against the float32 reference, on the same minibatches, in one run.

`train_and_compare` is what `pouw bench work` calls: it times each exact step and each
reference step (rendering timed apart), times whole units, and evaluates both models on the
held-out set after the same number of steps (and, optionally, every `eval_every` steps: with a
constant learning rate the last iterate's accuracy moves by a few points from one evaluation
to the next, so the mean over the last evaluations is the steadier figure to compare).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from tqdm import tqdm

from useful_work.evaluate import (
    HELDOUT_COUNT,
    EvalResult,
    evaluate_fixed,
    evaluate_float,
    heldout_set,
)
from useful_work.hashing import ZERO_HASH, int_bytes, tagged_hash
from useful_work.reference import ReferenceTrainer
from useful_work.specs import TrainSpec
from useful_work.train_task import TrainTask, render_minibatch, step_seed
from useful_work.trainer import decode_state, encode_state, train_step

COMPARE_MINER = b"train-and-compare".ljust(20, b"\0")
TIMING_MINER = b"unit-timing".ljust(20, b"\0")
LAST_EVALS = 4


def _offchain_seed(label: bytes, u: int) -> bytes:
    """Seed of unit u of an off-chain comparison run (the seeds these figures were always
    measured with)."""
    return tagged_hash("unit", ZERO_HASH, label, int_bytes(u))


def _median_ms(xs: list[float]) -> float:
    return round(1e3 * statistics.median(xs), 3) if xs else float("nan")


def train_and_compare(
    steps: int,
    spec: TrainSpec | None = None,
    *,
    eval_count: int = HELDOUT_COUNT,
    eval_every: int = 0,
    timing_units: int = 5,
    threads: int | None = 1,
    progress: bool = True,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train the exact model and the float reference for `steps` steps each; return the figures.

    Minibatch i is the one that step i % steps_per_unit of unit i // steps_per_unit trains on, for
    units mined on the zero parent by a fixed miner name. Times are medians in ms at `threads`
    torch threads (None: leave torch's setting). Accuracies are fractions of the held-out set.
    """
    spec = spec or TrainSpec()
    if steps < 1:
        raise ValueError("steps must be at least 1")
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run(steps, spec, eval_count, eval_every, timing_units, progress, device)
    finally:
        torch.set_num_threads(old_threads)


def _run(
    steps: int,
    spec: TrainSpec,
    eval_count: int,
    eval_every: int,
    timing_units: int,
    progress: bool,
    device: str,
) -> dict[str, Any]:
    task = TrainTask(spec)
    config, hyper = task.config, task.hyper
    state = decode_state(task.initial_state(), config, device)
    params_cpu = {k: v.cpu() for k, v in state.params.items()}
    ref = ReferenceTrainer.create(
        config, params_cpu, spec.lr_micro / 1e6, spec.momentum_milli / 1e3
    )
    data = heldout_set(spec.scene, eval_count, device)
    render_t: list[float] = []
    exact_t: list[float] = []
    ref_t: list[float] = []
    exact_loss: list[float] = []
    ref_loss: list[float] = []
    curve: list[tuple[int, float, float]] = []
    bar = tqdm(
        range(steps), desc=f"train {spec.objective}", unit="step", disable=not progress, leave=False
    )
    for i in bar:
        seed = step_seed(
            _offchain_seed(COMPARE_MINER, i // spec.steps_per_unit), i % spec.steps_per_unit
        )
        t0 = time.perf_counter()
        mb = render_minibatch(seed, spec.batch_size, spec.scene, device)
        t1 = time.perf_counter()
        state, stats = train_step(state, mb.images, mb.counts, mb.dirs, config, hyper)
        t2 = time.perf_counter()
        loss = ref.step(
            mb.images.cpu(), mb.counts.cpu(), mb.dirs.cpu() if config.direction else None
        )
        t3 = time.perf_counter()
        render_t.append(t1 - t0)
        exact_t.append(t2 - t1)
        ref_t.append(t3 - t2)
        exact_loss.append(stats.mean_loss(spec.batch_size))
        ref_loss.append(loss)
        if eval_every and (i + 1) % eval_every == 0 and i + 1 < steps:
            curve.append(
                (
                    i + 1,
                    evaluate_fixed(state.params, config, data).accuracy,
                    evaluate_float(ref.model, data).accuracy,
                )
            )
        if i % 10 == 0 or i == steps - 1:
            bar.set_postfix(
                exact=f"{exact_loss[-1]:.3f}",
                ref=f"{loss:.3f}",
                ms=f"{1e3 * (t2 - t1):.1f}/{1e3 * (t3 - t2):.1f}",
            )
    bar.close()
    fixed_eval = evaluate_fixed(state.params, config, data)
    ref_eval = evaluate_float(ref.model, data)
    curve.append((steps, fixed_eval.accuracy, ref_eval.accuracy))

    state_bytes = encode_state(state, config)
    unit_t: list[float] = []
    s = state_bytes
    for u in range(timing_units):
        t0 = time.perf_counter()
        s, _ = task.run_unit(s, _offchain_seed(TIMING_MINER, u), device)
        unit_t.append(time.perf_counter() - t0)

    return _figures(
        spec,
        steps,
        device,
        exact_t,
        ref_t,
        render_t,
        unit_t,
        exact_loss,
        ref_loss,
        curve,
        fixed_eval,
        ref_eval,
        data.counts,
        len(state_bytes),
    )


def _figures(
    spec: TrainSpec,
    steps: int,
    device: str,
    exact_t: list[float],
    ref_t: list[float],
    render_t: list[float],
    unit_t: list[float],
    exact_loss: list[float],
    ref_loss: list[float],
    curve: list[tuple[int, float, float]],
    fixed_eval: EvalResult,
    ref_eval: EvalResult,
    labels: torch.Tensor,
    state_bytes: int,
) -> dict[str, Any]:
    tail = max(1, steps // 10)
    exact_ms, ref_ms = _median_ms(exact_t), _median_ms(ref_t)
    last = curve[-LAST_EVALS:]
    out: dict[str, Any] = {
        "steps": steps,
        "objective": spec.objective,
        "batch_size": spec.batch_size,
        "image_size": spec.image_size,
        "steps_per_unit": spec.steps_per_unit,
        "threads": torch.get_num_threads(),
        "device": device,
        "exact_step_ms": exact_ms,
        "reference_step_ms": ref_ms,
        "exact_over_reference": round(exact_ms / ref_ms, 3),
        "render_batch_ms": _median_ms(render_t),
        "unit_ms": _median_ms(unit_t),
        "state_bytes": state_bytes,
        "exact_train_loss": round(statistics.fmean(exact_loss[-tail:]), 4),
        "reference_train_loss": round(statistics.fmean(ref_loss[-tail:]), 4),
        "heldout_count": fixed_eval.count,
        "heldout_class_balance": [
            round(float((labels.cpu() == k).double().mean()), 4) for k in (1, 2, 3)
        ],
        "exact_accuracy": round(fixed_eval.accuracy, 4),
        "reference_accuracy": round(ref_eval.accuracy, 4),
        "accuracy_gap_points": round(100 * (fixed_eval.accuracy - ref_eval.accuracy), 2),
        "exact_heldout_loss": round(fixed_eval.loss, 4),
        "reference_heldout_loss": round(ref_eval.loss, 4),
        "accuracy_curve": [[s, round(a, 4), round(b, 4)] for s, a, b in curve],
        "exact_accuracy_last_evals": round(statistics.fmean(a for _, a, _ in last), 4),
        "reference_accuracy_last_evals": round(statistics.fmean(b for _, _, b in last), 4),
    }
    out["gap_last_evals_points"] = round(
        100 * (out["exact_accuracy_last_evals"] - out["reference_accuracy_last_evals"]), 2
    )
    if fixed_eval.direction_error_deg is not None and ref_eval.direction_error_deg is not None:
        out["exact_direction_error_deg"] = round(fixed_eval.direction_error_deg, 2)
        out["reference_direction_error_deg"] = round(ref_eval.direction_error_deg, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    """python -m useful_work.compare --steps N [--objective light-direction] [--threads T]: print
    the figures as JSON."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m useful_work.compare", description=main.__doc__)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--objective", default="lights", choices=["lights", "light-direction"])
    ap.add_argument(
        "--seed", type=int, default=0, help="TrainSpec.seed (varies the initial weights)"
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (0: leave torch's default)"
    )
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-count", type=int, default=HELDOUT_COUNT)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    figures = train_and_compare(
        args.steps,
        TrainSpec(objective=args.objective, seed=args.seed),
        eval_count=args.eval_count,
        eval_every=args.eval_every,
        threads=args.threads or None,
        progress=not args.no_progress,
    )
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
