"""The node's configuration: command-line flags, a `--config FILE` and `<datadir>/pouw.toml`.

Every `pouw node` flag can be set in either file under its own name (`mine = true`,
`api = "127.0.0.1:8080"`, `peer = ["host:port", ...]`, `miner-address = "pw..."`; `-` and `_`
are the same). Flags win over `--config`, which wins over the data directory's pouw.toml.
A path in a file (a network file, the log file) is read relative to that file's folder. The
default data directory is `~/.pouw/<network>`, where a network file's name is its file name
without `.toml`.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

from p2p.lifecycle import EXIT_CONFIG, StartupError

CONFIG_FILE = "pouw.toml"
# consensus.params.PRESETS, without importing consensus here
PRESETS = ("devnet", "testnet", "sharenet")
HOME_DIR = Path("~/.pouw")
PATH_KEYS = ("datadir", "log_file")  # resolved relative to the config file; so is a network file


def network_name(network: str) -> str:
    return network if network in PRESETS else Path(network).stem


def default_datadir(network: str) -> Path:
    return HOME_DIR.expanduser() / network_name(network)


def read_table(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StartupError(
            EXIT_CONFIG, f"config {path}: cannot read ({exc.strerror or exc})"
        ) from None
    except UnicodeDecodeError:
        raise StartupError(EXIT_CONFIG, f"config {path}: not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StartupError(EXIT_CONFIG, f"config {path}: not valid TOML ({exc})") from None


def settable_actions(
    parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()
) -> dict[str, argparse.Action]:
    """dest -> action for every long option a config file may set."""
    out = {}
    for action in parser._actions:  # argparse keeps no public list of a parser's options
        if (
            not action.option_strings
            or action.dest in ("help", "version", *exclude)
            or action.help == argparse.SUPPRESS
        ):
            continue
        out[action.dest] = action
    return out


def _convert(action: argparse.Action, key: str, value: Any, where: str) -> Any:
    def bad(expected: str) -> StartupError:
        return StartupError(
            EXIT_CONFIG, f"config {where}: {key}: expected {expected}, got {value!r}"
        )

    if isinstance(action, (argparse.BooleanOptionalAction, argparse._StoreTrueAction)):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(action, argparse._AppendAction):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise bad("a string or a list of strings")
        return list(items)
    if action.type is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad("an integer")
    elif action.type is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise bad("a number")
        value = float(value)
    elif not isinstance(value, str):
        raise bad("a string")
    if action.choices is not None and value not in action.choices:
        raise bad("one of " + ", ".join(map(str, action.choices)))
    return value


def apply_file(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    path: Path,
    given: set[str],
    exclude: tuple[str, ...] = (),
) -> list[str]:
    """Set, from the TOML file `path`, every option not in `given` (the ones set by flags or an
    earlier file); return the keys it set. An unknown key is an error naming it."""
    table = read_table(path)
    actions = settable_actions(parser, exclude)
    base = path.resolve().parent
    applied = []
    for raw_key, value in table.items():
        dest = raw_key.replace("-", "_")
        action = actions.get(dest)
        if action is None:
            known = ", ".join(sorted(d.replace("_", "-") for d in actions))
            raise StartupError(
                EXIT_CONFIG, f"config {path}: {raw_key}: unknown setting (known: {known})"
            )
        value = _convert(action, raw_key, value, str(path))
        if dest in PATH_KEYS or (dest == "network" and value not in PRESETS):
            value = str(base / Path(value).expanduser())
        if dest in given:
            continue
        setattr(args, dest, value)
        given.add(dest)
        applied.append(dest)
    return applied


def given_options(args: argparse.Namespace, actions: dict[str, argparse.Action]) -> set[str]:
    """The options set on the command line (their parser default is None)."""
    return {dest for dest in actions if getattr(args, dest, None) is not None}


def resolve(
    parser: argparse.ArgumentParser, args: argparse.Namespace, defaults: dict[str, Any]
) -> list[str]:
    """Fill `args` from `--config`, then `<datadir>/pouw.toml`, then `defaults`; return the files
    read.

    `args.datadir` ends as a Path: the flag's, the --config file's, or ~/.pouw/<network>."""
    actions = settable_actions(parser, exclude=("config",))
    given = given_options(args, actions)
    files = []
    if getattr(args, "config", None):
        path = Path(args.config).expanduser()
        if not path.is_file():
            raise StartupError(EXIT_CONFIG, f"--config {path}: no such file")
        apply_file(parser, args, path, given, exclude=("config",))
        files.append(str(path))
    network = args.network or defaults.get("network", "devnet")
    datadir = Path(args.datadir).expanduser() if args.datadir else default_datadir(network)
    in_datadir = datadir / CONFIG_FILE
    if in_datadir.is_file():
        apply_file(parser, args, in_datadir, given, exclude=("config", "datadir"))
        files.append(str(in_datadir))
    for dest, value in defaults.items():
        if getattr(args, dest, None) is None:
            setattr(args, dest, value)
    args.datadir = datadir
    return files
