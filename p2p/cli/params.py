"""`pouw params [--network X]`: every consensus parameter with its value, default, range and
meaning."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields, replace


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "params", help="list every consensus parameter: value, default, range and meaning"
    )
    p.add_argument(
        "--network",
        default="devnet",
        help="devnet, testnet or a network TOML file (default devnet)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=_cmd_params)


MAX_CELL = 28


def _power(n: int) -> str:
    """2^40 for 1099511627776, 2^64-1 for 18446744073709551615, else the number."""
    for k in range(20, 257):
        if n == 1 << k:
            return f"2^{k}"
        if n == (1 << k) - 1:
            return f"2^{k}-1"
    return str(n)


def _text(value: object) -> str:
    if isinstance(value, list):  # allocations
        return f"{len(value)} ({sum(a['amount'] for a in value)} base units)" if value else "none"
    if isinstance(value, int) and not isinstance(value, bool):
        return _power(value)
    text = str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def _range_text(text: str) -> str:
    return " .. ".join(_power(int(part)) if part.isdigit() else part for part in text.split(" .. "))


def _json_value(value: object) -> object:
    if isinstance(value, tuple):
        return [{"address": a.address, "amount": a.amount} for a in value]
    return value


def parameter_rows(network: str) -> list[dict]:
    from consensus.params import MEANINGS, ConsensusParams, load_params, parameter_range
    from useful_work.specs import RenderSpec, TrainSpec

    params = load_params(network)
    defaults = ConsensusParams()
    rows = []
    for f in fields(ConsensusParams):
        value, default = getattr(params, f.name), getattr(defaults, f.name)
        if f.name == "default_task":
            kinds = {"train": TrainSpec, "render": RenderSpec}
            kind_default = replace(kinds[value.kind](), units=0)
            rows.append(
                {
                    "name": "default_task.kind",
                    "value": value.kind,
                    "default": defaults.default_task.kind,
                    "range": parameter_range("default_task.kind"),
                    "meaning": MEANINGS["default_task.kind"],
                }
            )
            for tf in fields(value):
                key = f"default_task.{tf.name}"
                rows.append(
                    {
                        "name": key,
                        "value": getattr(value, tf.name),
                        "default": getattr(kind_default, tf.name),
                        "range": parameter_range(key),
                        "meaning": MEANINGS[key],
                    }
                )
            continue
        rows.append(
            {
                "name": f.name,
                "value": _json_value(value),
                "default": _json_value(default),
                "range": parameter_range(f.name),
                "meaning": MEANINGS[f.name],
            }
        )
    return rows


def _cmd_params(args: argparse.Namespace) -> int:
    from consensus.params import ParamsError
    from p2p.lifecycle import EXIT_NETWORK

    try:
        rows = parameter_rows(args.network)
    except ParamsError as exc:
        print(f"pouw: error: --network: {exc}", file=sys.stderr)
        return EXIT_NETWORK
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"consensus parameters of {args.network} (a value that differs from the default is marked "
        "*)"
    )
    heads = ("name", "value", "default", "range")
    table = [
        [r["name"], _text(r["value"]), _text(r["default"]), _range_text(r["range"])] for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(heads)]
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths)) + "   meaning")
    for r, cells in zip(rows, table):
        mark = "*" if r["value"] != r["default"] else " "
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)) + f" {mark} {r['meaning']}")
    return 0
