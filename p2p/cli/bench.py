"""`pouw bench ...`: benchmarks that print a table (or JSON) of ratios measured in one run."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks: chain, work, verify, shares, node-scale")
    bsub = bench.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    for name, help_text in (
        (
            "chain",
            "signing, verifying, encoding transactions; connecting blocks of 1,000 transfers",
        ),
        ("work", "rendering, exact vs float training steps, unit time, accuracy, unit cost model"),
        ("verify", "block verification time against mining time at devnet parameters"),
    ):
        p = bsub.add_parser(name, help=help_text)
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
        if name == "work":
            p.add_argument(
                "--steps", type=int, default=None, help="training steps (default 3000; quick 300)"
            )
            p.add_argument(
                "--direction-steps",
                type=int,
                default=None,
                help="steps of the light-direction run (0 skips it)",
            )
            p.add_argument("--plot", default=None, help="save the learning curves to this PNG")
            p.add_argument(
                "--cost-only",
                action="store_true",
                help="only the unit cost model against measured unit time",
            )
        if name == "verify":
            p.add_argument(
                "--network", default="devnet", help="preset or TOML file (default devnet)"
            )
            p.add_argument(
                "--blocks",
                type=int,
                default=None,
                help="blocks to mine and verify (default 8; quick 2)",
            )
        p.set_defaults(func=_run, bench_name=name)
    register_node_scale(bsub)
    shares = bsub.add_parser(
        "shares",
        help="a three-node devnet with and without shares: useful fraction, verification, accuracy",
    )
    from p2p.bench_shares import add_arguments

    add_arguments(shares)
    shares.set_defaults(func=_run_shares)


def _run_shares(args: argparse.Namespace) -> int:
    from p2p.bench_shares import run

    return int(run(args) or 0)


def _run(args: argparse.Namespace) -> int:
    argv = (["--json"] if args.json else []) + (["--quick"] if args.quick else [])
    argv += ["--cost-only"] if getattr(args, "cost_only", False) else []
    for option in ("steps", "direction_steps", "plot", "network", "blocks"):
        value = getattr(args, option, None)
        if value is not None:
            argv += [f"--{option.replace('_', '-')}", str(value)]
    if args.bench_name == "chain":
        from chain.bench import main
    elif args.bench_name == "work":
        from useful_work.bench import main
    else:
        from consensus.bench import main
    return int(main(argv) or 0)


# --- pouw bench node-scale ---------------------------------------------------------------------


def register_node_scale(bsub: argparse._SubParsersAction) -> None:
    """`pouw bench node-scale`: connect cost against ledger size, start-up against chain length,
    disk pruned and unpruned, sync with and without assume-valid (one table, one run)."""
    p = bsub.add_parser(
        "node-scale",
        help="connect cost at 1k..1M accounts, start-up time and RSS at 1k..50k blocks, disk "
        "pruned and unpruned, sync with and without assume-valid",
    )
    p.add_argument("--accounts", default="1000,10000,100000,1000000", help="ledger sizes")
    p.add_argument("--chain", default="1000,10000,50000", help="chain lengths for start-up")
    p.add_argument("--blocks", type=int, default=6, help="timed blocks per ledger size")
    p.add_argument("--sync-blocks", type=int, default=300, help="mined blocks to sync (0: skip)")
    p.add_argument(
        "--disk-blocks", type=int, default=2000, help="blocks of the disk rows (0: skip)"
    )
    p.add_argument("--opening-bytes", type=int, default=40_000, help="bytes of each opened state")
    p.add_argument("--image-size", type=int, default=64, help="render size of the sync task")
    p.add_argument(
        "--db-cache", type=int, default=256, help="LevelDB cache of the connect rows, MiB"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_run_node_scale)


def _run_node_scale(args: argparse.Namespace) -> int:
    """The measurement drives real node processes through the functional-test framework, so it
    lives beside it in the source tree (scripts/bench_node_scale.py) and is loaded from there."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_node_scale.py"
    if not script.is_file():
        print(f"pouw bench node-scale needs a source checkout: {script} is missing")
        return 2
    spec = importlib.util.spec_from_file_location("bench_node_scale", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--accounts", args.accounts, "--chain", args.chain, "--blocks", str(args.blocks)]
    argv += ["--sync-blocks", str(args.sync_blocks), "--disk-blocks", str(args.disk_blocks)]
    argv += ["--opening-bytes", str(args.opening_bytes), "--image-size", str(args.image_size)]
    argv += ["--db-cache", str(args.db_cache)] + (["--json"] if args.json else [])
    return int(module.main(argv) or 0)
