"""`pouw sim ...`: simulate networks of nodes (consensus.sim): experiments, sweeps, tables and
plots."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    sim = sub.add_parser(
        "sim", help="simulate networks of nodes: consensus parameters, attacks, sweeps, plots"
    )
    ssub = sim.add_subparsers(dest="sim_command", metavar="SIM_COMMAND", required=True)

    run = ssub.add_parser(
        "run", help="run an experiment file (every sweep point) and write CSV, JSON and PNG plots"
    )
    run.add_argument(
        "experiment", help="experiment TOML file (see experiments/ and docs/simulator.md)"
    )
    run.add_argument("--out", help="output folder (default out/sim/<experiment file name>)")
    run.add_argument(
        "--json",
        action="store_true",
        help="print the results JSON (every point) to stdout instead of a table",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=2,
        help="parallel worker processes for sweep points (default 2)",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value, e.g. --set run.blocks=500 (repeatable)",
    )
    run.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=_cmd_run)

    check = ssub.add_parser(
        "check", help="check an experiment file and list its sweep points, without running them"
    )
    check.add_argument("experiment")
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    check.set_defaults(func=_cmd_check)

    plot = ssub.add_parser(
        "plot", help="draw the PNG plots again from a results folder's points.json"
    )
    plot.add_argument("folder")
    plot.set_defaults(func=_cmd_plot)

    bench = ssub.add_parser(
        "bench",
        help="modelled mode at scale: 1,000 nodes and 10,000 blocks by default; wall time and "
        "peak memory",
    )
    from consensus.sim.bench import add_arguments

    add_arguments(bench)
    bench.set_defaults(func=_cmd_bench)


def _load(args: argparse.Namespace) -> tuple[dict, str]:
    from consensus.sim.config import (
        ExperimentError,
        load_experiment_data,
        parse_override,
        set_path,
    )
    from p2p.errors import UserError

    try:
        data = load_experiment_data(args.experiment)
        for item in args.set:
            key, value = parse_override(item)
            set_path(data, key, value)
    except ExperimentError as exc:
        raise UserError(str(exc)) from None
    return data, Path(args.experiment).stem


def _cmd_run(args: argparse.Namespace) -> int:
    from consensus.sim.config import ExperimentError
    from consensus.sim.output import (
        results_document,
        summary_table,
        to_json,
        write_outputs,
    )
    from consensus.sim.runner import run_experiment
    from p2p.errors import UserError

    if args.workers < 1:
        raise UserError("--workers must be at least 1")
    data, name = _load(args)
    out = Path(args.out) if args.out else Path("out") / "sim" / name
    started = time.perf_counter()
    try:
        results = run_experiment(data, name, workers=args.workers, progress=not args.no_progress)
    except (ExperimentError, ValueError) as exc:
        raise UserError(str(exc)) from None
    wall = time.perf_counter() - started
    paths = write_outputs(out, name, data, results, wall, args.workers)
    doc = results_document(name, data, results)
    plots = []
    if not args.no_plots:
        from consensus.sim.plots import make_plots

        plots = make_plots(doc, out)
    if args.json:
        print(to_json(doc))
    else:
        kind = str(data.get("adversary", {}).get("kind", "none"))
        print(summary_table(results, kind))
        print(
            f"\n{len(results)} point(s) in {wall:.1f} s; wrote {paths['csv']}, {paths['json']}, "
            f"{paths['timings']}"
        )
        for p in plots:
            print(f"plot {p}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from consensus.sim.config import ExperimentError, expand
    from p2p.errors import UserError

    data, name = _load(args)
    try:
        points = expand(data, name)
    except ExperimentError as exc:
        raise UserError(str(exc)) from None
    exp = points[0].experiment
    print(
        f"{name}: mode {exp.run.mode}, adversary {exp.adversary.kind}, {exp.network.nodes} honest "
        f"nodes ({exp.network.topology}), {len(points)} point(s)"
    )
    for p in points:
        shown = ", ".join(f"{k}={v!r}" for k, v in p.values.items()) or "(no sweep)"
        print(f"  {p.index}: {shown}")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    import json

    from consensus.sim.plots import make_plots
    from p2p.errors import UserError

    folder = Path(args.folder)
    source = folder / "points.json"
    if not source.is_file():
        raise UserError(f"{source}: no such file (run `pouw sim run` first)")
    for p in make_plots(json.loads(source.read_text()), folder):
        print(f"plot {p}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from consensus.sim.bench import execute

    return execute(args)
