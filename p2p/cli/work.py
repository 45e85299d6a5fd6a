"""`pouw work ...`: run and inspect useful work without a node (anyone can replay a trace)."""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from useful_work.trace import Leaf


def register(sub: argparse._SubParsersAction) -> None:
    work = sub.add_parser("work", help="run, replay and look at useful work without a node")
    wsub = work.add_subparsers(dest="work_command", metavar="WORK_COMMAND", required=True)

    run = wsub.add_parser(
        "run", help="run N units of a task and print each unit's hashes and the trace root"
    )
    run.add_argument(
        "--task",
        default="default",
        help="default (the devnet training task), render, or a preset name/TOML file whose "
        "default_task is used",
    )
    run.add_argument("--units", type=int, default=4, help="number of units (default 4)")
    run.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)"
    )
    run.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    run.add_argument(
        "--parent", default="00" * 32, help="parent block hash (hex) the units are mined on"
    )
    run.add_argument(
        "--miner", default="00" * 20, help="miner address bytes (hex) the units are mined by"
    )
    run.add_argument("--json", action="store_true", help="print JSON instead of a table")
    run.set_defaults(func=_cmd_run)

    cross = wsub.add_parser(
        "crosscheck",
        help="run the same units on CPU and on CUDA and compare every hash (needs a GPU)",
    )
    cross.add_argument("--units", type=int, default=3, help="units of each task (default 3)")
    cross.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cross.set_defaults(func=_cmd_crosscheck)

    render = wsub.add_parser("render", help="render labelled sample images to a contact sheet PNG")
    render.add_argument("--seed", type=int, default=0, help="seed number (default 0)")
    render.add_argument("-n", "--count", type=int, default=16, help="number of images (default 16)")
    render.add_argument("--size", type=int, default=32, help="image size in pixels (default 32)")
    render.add_argument(
        "--masks", action="store_true", help="show each instance mask beside its image"
    )
    render.add_argument("-o", "--output", default="sheet.png", help="output PNG path")
    render.set_defaults(func=_cmd_render)


def _resolve_task(name: str):
    from useful_work.specs import RenderSpec
    from useful_work.tasks import make_task

    if name == "render":
        return make_task(RenderSpec())
    from consensus.params import load_params

    params = load_params("devnet" if name == "default" else name)
    return make_task(params.default_task)


def _cmd_run(args: argparse.Namespace) -> int:
    import torch

    from p2p.errors import UserError
    from useful_work.runner import iter_units
    from useful_work.trace import trace_root

    if args.units < 1:
        raise UserError("--units must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda: torch sees no CUDA device here")
    try:
        parent, miner = bytes.fromhex(args.parent), bytes.fromhex(args.miner)
    except ValueError as exc:
        raise UserError(f"--parent/--miner must be hex: {exc}") from None
    task = _resolve_task(args.task)
    leaves: list[Leaf] = []
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for result in iter_units(task, task.initial_state(), parent, miner, args.device):
        leaves.append(result.leaf)
        rows.append(
            {
                "unit": result.index,
                "seed": result.seed.hex(),
                "input": result.leaf.input_hash.hex(),
                "output": result.leaf.output_hash.hex(),
                "digest": result.leaf.digest.hex(),
            }
        )
        if not args.json:
            print(
                f"unit {result.index:4d}  in {rows[-1]['input'][:16]}  out "
                f"{rows[-1]['output'][:16]}  digest {rows[-1]['digest'][:16]}"
            )
        if len(leaves) == args.units:
            break
    elapsed = time.perf_counter() - started
    root = trace_root(leaves).hex()
    if args.json:
        print(
            json.dumps(
                {
                    "task": args.task,
                    "device": args.device,
                    "threads": torch.get_num_threads(),
                    "units": rows,
                    "trace_root": root,
                    "seconds": elapsed,
                },
                indent=2,
            )
        )
    else:
        print(
            f"trace root {root}  ({args.units} units, {elapsed / args.units * 1000:.1f} ms/unit, "
            f"{torch.get_num_threads()} threads, {args.device})"
        )
    return 0


def _trace(task, units: int, device: str) -> list:
    from useful_work.runner import iter_units

    leaves = []
    for result in iter_units(task, task.initial_state(), bytes(32), bytes(20), device):
        leaves.append(result.leaf)
        if len(leaves) == units:
            return leaves
    return leaves


def _cmd_crosscheck(args: argparse.Namespace) -> int:
    """Exit 0 when CPU and CUDA agree bit for bit on every unit of both task kinds, 1 when not."""
    import torch

    from p2p.errors import UserError
    from useful_work.trace import trace_root

    if not torch.cuda.is_available():
        raise UserError(
            "crosscheck: torch sees no CUDA device here; run it on a machine with a GPU"
        )
    rows, agree = [], True
    for name in ("default", "render"):
        task = _resolve_task(name)
        cpu, cuda = _trace(task, args.units, "cpu"), _trace(task, args.units, "cuda")
        same = [a == b for a, b in zip(cpu, cuda)]
        agree &= all(same)
        rows.append(
            {
                "task": name,
                "units": args.units,
                "cpu_root": trace_root(cpu).hex(),
                "cuda_root": trace_root(cuda).hex(),
                "units_equal": same,
            }
        )
    if args.json:
        print(
            json.dumps(
                {"device": torch.cuda.get_device_name(0), "agree": agree, "tasks": rows}, indent=2
            )
        )
    else:
        print(f"CUDA device: {torch.cuda.get_device_name(0)}")
        for r in rows:
            verdict = "identical" if all(r["units_equal"]) else "DIFFERENT"
            print(
                f"{r['task']:<8} {r['units']} units  cpu {r['cpu_root'][:16]}  cuda "
                f"{r['cuda_root'][:16]}  {verdict}"
            )
    return 0 if agree else 1


def _cmd_render(args: argparse.Namespace) -> int:
    from p2p.errors import UserError
    from useful_work.contact_sheet import save_contact_sheet
    from useful_work.hashing import int_bytes, tagged_hash
    from useful_work.render import render_batch
    from useful_work.specs import SceneSettings

    if not 1 <= args.count <= 256:
        raise UserError("-n must be between 1 and 256")
    if not 16 <= args.size <= 128:
        raise UserError("--size must be between 16 and 128")
    seed = tagged_hash("cli-render", int_bytes(args.seed))
    batch = render_batch(seed, args.count, SceneSettings(image_size=args.size))
    print(f"wrote {save_contact_sheet(batch, args.output, show_mask=args.masks)}")
    return 0
