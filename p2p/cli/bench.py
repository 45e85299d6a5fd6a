"""`pouw bench ...`: benchmarks that print a table (or JSON) of ratios measured in one run."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks: chain, work, verify, shares")
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
