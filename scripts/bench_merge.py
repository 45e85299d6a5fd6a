"""The merge of share claims, in-process: one trace per block against the merge of several.

Runs a training task block by block without a network: without shares the task's next state is
one trace of `--units` units from the current state (the block winner's); with shares it is the
weighted floor mean (useful_work.merge, the consensus rule) of `--traces` traces from the same
state, the winner's of `--units` units and the others' of `--claim-fraction` of that (a claim
ends at its miner's last share). Each unit is the task's real `run_unit` with its own seed.
Prints held-out accuracy by height for both, and for each learning rate given, so the rate at
which merging helps can be chosen for a network (consensus/presets/sharenet.toml).

    .venv/bin/python scripts/bench_merge.py --lr 0.01,0.025,0.05 --units 900 --blocks 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from useful_work.evaluate import evaluate_state  # noqa: E402
from useful_work.hashing import int_bytes, tagged_hash  # noqa: E402
from useful_work.merge import merge_states  # noqa: E402
from useful_work.specs import TrainSpec  # noqa: E402
from useful_work.train_task import TrainTask  # noqa: E402


def run(lr_micro: int, args: argparse.Namespace) -> list[tuple[int, float, float]]:
    spec = TrainSpec(
        units=0, objective="lights", batch_size=args.batch, steps_per_unit=1, lr_micro=lr_micro
    )
    task = TrainTask(spec)
    claim_units = max(1, int(args.units * args.claim_fraction))
    counts = [args.units] + [claim_units] * (args.traces - 1)
    alone = merged = task.initial_state()
    rows = []
    bar = tqdm(total=args.blocks * (args.units + sum(counts)), unit="unit", desc=f"lr {lr_micro}")

    def trace(state: bytes, height: int, which: int, n: int) -> bytes:
        for u in range(n):
            seed = tagged_hash("bench-merge", int_bytes(height), int_bytes(which), int_bytes(u))
            state, _ = task.run_unit(state, seed)
            bar.update()
        return state

    for h in range(1, args.blocks + 1):
        alone = trace(alone, h, 0, args.units)  # the same seeds as the merged chain's winner
        outs = [trace(merged, h, i, n) for i, n in enumerate(counts)]
        merged = merge_states(task, outs, counts, counts)
        if h % args.eval_every == 0 or h == args.blocks:
            a = evaluate_state(alone, spec, count=args.heldout).accuracy
            b = evaluate_state(merged, spec, count=args.heldout).accuracy
            rows.append((h, float(a), float(b)))
    bar.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lr", default="0.025", help="learning rates, comma separated")
    parser.add_argument("--units", type=int, default=900, help="the winner's units a block")
    parser.add_argument("--traces", type=int, default=3, help="traces merged a block (miners)")
    parser.add_argument("--claim-fraction", type=float, default=0.8)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--eval-every", type=int, default=2)
    parser.add_argument("--heldout", type=int, default=1024)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for lr in args.lr.split(","):
        lr_micro = round(float(lr) * 1_000_000)
        rows = run(lr_micro, args)
        print(f"learning rate {lr} (batch {args.batch}, {args.units} units a block):")
        print(f"  {'height':>6} {'one trace':>10} {'merged':>10}")
        for h, a, b in rows:
            print(f"  {h:>6} {a:>10.3f} {b:>10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
