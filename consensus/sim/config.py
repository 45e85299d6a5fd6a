"""Experiment files: a TOML table tree parsed into typed, validated settings; errors name the key.

An experiment has [chain] (any consensus parameter, through consensus.params.params_from_dict),
[network], [[miners]], [adversary], [work], [[events]], [run], [sweep] and [plot]. A sweep point
is the same tree with some dotted paths replaced, parsed again, so a swept value is checked
exactly like a written one.
"""

from __future__ import annotations

import copy
import itertools
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consensus.params import ConsensusParams, ParamsError, params_from_table


class ExperimentError(ValueError):
    """An experiment file or value is invalid; the message starts with the dotted key."""


TOPOLOGIES = ("mesh", "random-regular", "ring", "line")
MODES = ("modelled", "real")
ADVERSARIES = ("none", "selfish", "fabricator", "withholder", "flooder", "reroller", "poisoner")
MINING_ADVERSARIES = ("selfish", "fabricator", "withholder", "reroller", "poisoner")
REAL_ADVERSARIES = ("none", "fabricator", "reroller")
FLOOD_KINDS = ("bad-ticket", "fake-work")
# consensus.attacks.REROLL_STRATEGIES (kept here so that parsing a file does not import the kernels;
# a test checks they agree)
REROLL_STRATEGIES = ("last", "chained")
SECTIONS = (
    "name",
    "description",
    "chain",
    "network",
    "miners",
    "work",
    "adversary",
    "auditors",
    "events",
    "run",
    "sweep",
    "plot",
)


@dataclass(frozen=True)
class MinerGroup:
    count: int
    unit_rate: float  # units per second, each miner of the group
    name: str


@dataclass(frozen=True)
class NetworkConfig:
    nodes: int  # honest nodes: miners first, the rest relay
    topology: str
    degree: int
    latency_s: tuple[float, float]  # uniform per link; equal ends for a fixed latency
    bandwidth_bytes_s: float
    block_bytes: int
    header_bytes: int


@dataclass(frozen=True)
class WorkConfig:
    unit_seconds: float | None  # a verifier's time to re-execute one unit; None: measure it
    header_check_seconds: float
    # bytes of one opening (a task input state) in a block or share claim, for bytes per block
    # (the default is the devnet training state, as consensus/sim/shares.py)
    state_bytes: int = 35_852


@dataclass(frozen=True)
class AdversaryConfig:
    kind: str
    share: float  # of all mining power (unit rate); 0 for a flooder
    peers: int  # connections to honest nodes (a selfish miner connects to every honest miner)
    gamma: float  # selfish: share of honest power that mines on the attacker's block in a tie
    fabricate: float  # fabricator: fraction f of non-winning units faked
    withhold: float  # withholder: fraction of its blocks held back
    delay_s: float | None  # withholder: publish held blocks after this delay; None: never
    rate: float  # flooder: blocks per second sent to each peer
    flood_kind: str
    # reroller: "chained" (a fabricated leaf, then one honest unit) or "last" (the fabricated leaf
    # wins)
    reroll_strategy: str
    honest_prefix: int  # reroller: honest units before the fabricated leaf
    # poisoner: index of the fabricated "jump" leaf in each trace (consensus.attacks.PoisonMiner)
    jump_at: int
    # poisoner: what a poisoned state that outlives the fraud window is worth to it, in block
    # rewards
    poison_gain: float
    ban: bool  # honest peers ban a peer that sent invalid work, for ban_seconds
    ban_seconds: float
    budget_seconds: float | None  # per-peer verification seconds per window; None: unlimited
    budget_window_s: float
    start_s: float
    stop_s: float | None


@dataclass(frozen=True)
class AuditorsConfig:
    """Auditing nodes (consensus.audit.Auditor) as a population: `share` of the honest nodes audit,
    each replays a random `blocks_share` of the best chain's blocks in full, oldest first, at
    `audit_speed` times the mean honest miner's unit rate; the fraud window is
    chain.reward_maturity."""

    share: float
    blocks_share: float
    audit_speed: float


@dataclass(frozen=True)
class PartitionEvent:
    at_s: float
    heal_s: float
    fractions: tuple[float, ...]


@dataclass(frozen=True)
class RunConfig:
    mode: str
    blocks: int | None  # stop when a block at this height is found
    duration_s: float | None
    seed: int
    warmup_blocks: int  # heights up to this are left out of the metrics
    settle_blocks: int  # the last heights are left out too (their fate is still open)


@dataclass(frozen=True)
class PlotConfig:
    x: str | None
    series: str | None
    y: tuple[str, ...]


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    chain: ConsensusParams
    network: NetworkConfig
    miners: tuple[MinerGroup, ...]
    work: WorkConfig
    adversary: AdversaryConfig
    events: tuple[PartitionEvent, ...]
    run: RunConfig
    plot: PlotConfig
    auditors: AuditorsConfig = AuditorsConfig(0.0, 1.0, 1.0)
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    sweep_zip: bool = False
    auto_initial_units: bool = False  # initial_units_per_block was set from the miners' rates

    @property
    def honest_rate(self) -> float:
        return sum(g.count * g.unit_rate for g in self.miners)

    @property
    def adversary_rate(self) -> float:
        a = self.adversary
        if a.kind not in MINING_ADVERSARIES or a.share <= 0:
            return 0.0
        return a.share / (1 - a.share) * self.honest_rate


# --- small checkers --------------------------------------------------------------------------


def _keys(table: Any, section: str, allowed: set[str]) -> dict:
    if not isinstance(table, dict):
        raise ExperimentError(f"{section}: must be a table")
    for key in table:
        if key not in allowed:
            raise ExperimentError(
                f"{section}.{key}: unknown key (known: {', '.join(sorted(allowed))})"
            )
    return table


def _num(
    table: dict,
    section: str,
    key: str,
    default: Any,
    low: float | None = None,
    high: float | None = None,
    integer: bool = False,
    optional: bool = False,
) -> Any:
    value = table.get(key, default)
    name = f"{section}.{key}"
    if optional and (value is None or value in ("none", "off")):
        return None  # TOML has no null: "none" switches an optional setting off
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExperimentError(f"{name}: must be a number, got {value!r}")
    if integer and not (isinstance(value, int) or float(value).is_integer()):
        raise ExperimentError(f"{name}: must be an integer, got {value!r}")
    if not math.isfinite(value):
        raise ExperimentError(f"{name}: must be finite, got {value!r}")
    if low is not None and value < low:
        raise ExperimentError(f"{name}: {value} is below the minimum {low}")
    if high is not None and value > high:
        raise ExperimentError(f"{name}: {value} is above the maximum {high}")
    return int(value) if integer else float(value)


def _choice(table: dict, section: str, key: str, default: str, choices: tuple[str, ...]) -> str:
    value = table.get(key, default)
    if value not in choices:
        raise ExperimentError(
            f"{section}.{key}: must be one of {', '.join(choices)}; got {value!r}"
        )
    return value


def _bool(table: dict, section: str, key: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ExperimentError(f"{section}.{key}: must be true or false, got {value!r}")
    return value


# --- sections --------------------------------------------------------------------------------


def _chain(data: dict) -> tuple[ConsensusParams, dict]:
    if not isinstance(data, dict):
        raise ExperimentError("chain: must be a table of consensus parameters")
    table = {k: v for k, v in data.items() if k != "base"}
    try:
        return params_from_table(data), table
    except ParamsError as exc:
        raise ExperimentError(f"chain.{exc}") from None


def _miners(data: Any) -> tuple[MinerGroup, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ExperimentError("miners: must be an array of tables ([[miners]])")
    groups = []
    for i, table in enumerate(data):
        section = f"miners.{i}"
        _keys(table, section, {"count", "unit_rate", "name"})
        count = _num(table, section, "count", 1, 1, 1_000_000, integer=True)
        if "unit_rate" not in table:
            raise ExperimentError(f"{section}.unit_rate: required (units per second per miner)")
        rate = _num(table, section, "unit_rate", None, 1e-9)
        name = table.get("name", f"group{i}")
        if not isinstance(name, str) or not name:
            raise ExperimentError(f"{section}.name: must be a non-empty string")
        groups.append(MinerGroup(count, rate, name))
    return tuple(groups)


def _network(data: Any, miners: tuple[MinerGroup, ...]) -> NetworkConfig:
    section = "network"
    table = _keys(
        data if data is not None else {},
        section,
        {
            "nodes",
            "topology",
            "degree",
            "latency_ms",
            "bandwidth_mbps",
            "block_bytes",
            "header_bytes",
        },
    )
    miner_nodes = sum(g.count for g in miners)
    nodes = _num(table, section, "nodes", max(miner_nodes, 1), 1, 1_000_000, integer=True)
    if nodes < miner_nodes:
        raise ExperimentError(f"network.nodes: {nodes} is fewer than the {miner_nodes} miners")
    topology = _choice(table, section, "topology", "random-regular", TOPOLOGIES)
    degree = _num(table, section, "degree", 8, 1, 10_000, integer=True)
    if topology == "random-regular" and nodes > 1:
        if degree >= nodes:
            raise ExperimentError(f"network.degree: {degree} must be below network.nodes ({nodes})")
        if (nodes * degree) % 2:
            raise ExperimentError(
                f"network.degree: nodes * degree must be even ({nodes} * {degree})"
            )
    latency = table.get("latency_ms", 50.0)
    if isinstance(latency, list):
        if len(latency) != 2:
            raise ExperimentError("network.latency_ms: a range must be [low, high]")
        low, high = (
            _num({"latency_ms": latency[0]}, section, "latency_ms", 0, 0),
            _num({"latency_ms": latency[1]}, section, "latency_ms", 0, 0),
        )
        if high < low:
            raise ExperimentError(f"network.latency_ms: range [{low}, {high}] is reversed")
    else:
        low = high = _num(table, section, "latency_ms", 50.0, 0)
    bandwidth = _num(table, section, "bandwidth_mbps", 100.0, 1e-6)
    return NetworkConfig(
        nodes=nodes,
        topology=topology,
        degree=degree,
        latency_s=(low / 1000, high / 1000),
        bandwidth_bytes_s=bandwidth * 1e6 / 8,
        block_bytes=_num(table, section, "block_bytes", 100_000, 1, integer=True),
        header_bytes=_num(table, section, "header_bytes", 500, 1, integer=True),
    )


def _work(data: Any) -> WorkConfig:
    section = "work"
    table = _keys(
        data if data is not None else {},
        section,
        {"unit_seconds", "header_check_seconds", "state_bytes"},
    )
    unit = table.get("unit_seconds", 0.02)
    unit_seconds = None if unit == "measure" else _num(table, section, "unit_seconds", 0.02, 0)
    return WorkConfig(
        unit_seconds,
        _num(table, section, "header_check_seconds", 0.0005, 0),
        _num(table, section, "state_bytes", 35_852, 1, 1 << 30, integer=True),
    )


_ADVERSARY_KEYS = {
    "kind",
    "share",
    "peers",
    "gamma",
    "fabricate",
    "withhold",
    "delay_s",
    "rate",
    "flood_kind",
    "ban",
    "ban_seconds",
    "budget_seconds",
    "budget_window_s",
    "start_s",
    "stop_s",
    "reroll_strategy",
    "honest_prefix",
    "jump_at",
    "poison_gain",
}


def _adversary(data: Any, network: NetworkConfig) -> AdversaryConfig:
    section = "adversary"
    table = _keys(data if data is not None else {}, section, _ADVERSARY_KEYS)
    kind = _choice(table, section, "kind", "none", ADVERSARIES)
    mines = kind in MINING_ADVERSARIES
    share = _num(table, section, "share", 0.0, 0.0, 0.95)
    if mines and share <= 0:
        raise ExperimentError(f"adversary.share: a {kind} mines, so its share must be above 0")
    fabricate = _num(table, section, "fabricate", 0.5, 0.0, 1.0)
    if kind == "fabricator" and not 0 < fabricate < 1:
        # At f = 1 every non-winning unit is faked and the block rate no longer follows the unit
        # rate.
        raise ExperimentError(f"adversary.fabricate: must be in (0, 1), got {fabricate!r}")
    return AdversaryConfig(
        kind=kind,
        share=share if mines else 0.0,
        peers=_num(
            table, section, "peers", min(network.degree, max(network.nodes, 1)), 1, integer=True
        ),
        gamma=_num(table, section, "gamma", 0.0, 0.0, 1.0),
        fabricate=fabricate,
        withhold=_num(table, section, "withhold", 1.0, 0.0, 1.0),
        delay_s=_num(table, section, "delay_s", None, 0.0, optional=True),
        rate=_num(table, section, "rate", 10.0, 0.0),
        flood_kind=_choice(table, section, "flood_kind", "fake-work", FLOOD_KINDS),
        reroll_strategy=_choice(table, section, "reroll_strategy", "chained", REROLL_STRATEGIES),
        honest_prefix=_num(table, section, "honest_prefix", 8, 0, 1_000_000, integer=True),
        jump_at=_num(table, section, "jump_at", 1, 0, 1_000_000, integer=True),
        poison_gain=_num(table, section, "poison_gain", 1.0, 0.0, 1e6),
        ban=_bool(table, section, "ban", False),
        ban_seconds=_num(table, section, "ban_seconds", 600.0, 0.0),
        budget_seconds=_num(table, section, "budget_seconds", None, 0.0, optional=True),
        budget_window_s=_num(table, section, "budget_window_s", 60.0, 1e-6),
        start_s=_num(table, section, "start_s", 0.0, 0.0),
        stop_s=_num(table, section, "stop_s", None, 0.0, optional=True),
    )


def _auditors(data: Any) -> AuditorsConfig:
    section = "auditors"
    table = _keys(
        data if data is not None else {}, section, {"share", "blocks_share", "audit_speed"}
    )
    return AuditorsConfig(
        share=_num(table, section, "share", 0.0, 0.0, 1.0),
        blocks_share=_num(table, section, "blocks_share", 1.0, 0.0, 1.0),
        audit_speed=_num(table, section, "audit_speed", 1.0, 1e-9, 1e9),
    )


def _events(data: Any) -> tuple[PartitionEvent, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ExperimentError("events: must be an array of tables ([[events]])")
    out = []
    for i, table in enumerate(data):
        section = f"events.{i}"
        _keys(table, section, {"kind", "at_s", "heal_s", "fractions"})
        _choice(table, section, "kind", "partition", ("partition",))
        if "at_s" not in table or "heal_s" not in table:
            raise ExperimentError(f"{section}: a partition needs at_s and heal_s")
        at = _num(table, section, "at_s", None, 0.0)
        heal = _num(table, section, "heal_s", None, 0.0)
        if heal <= at:
            raise ExperimentError(f"{section}.heal_s: {heal} must be after at_s ({at})")
        fractions = table.get("fractions", [0.5, 0.5])
        if (
            not isinstance(fractions, list)
            or len(fractions) < 2
            or any(
                isinstance(f, bool) or not isinstance(f, int | float) or f <= 0 for f in fractions
            )
        ):
            raise ExperimentError(f"{section}.fractions: must be two or more positive numbers")
        total = float(sum(fractions))
        out.append(PartitionEvent(at, heal, tuple(float(f) / total for f in fractions)))
    return tuple(out)


def _run(data: Any) -> RunConfig:
    section = "run"
    table = _keys(
        data if data is not None else {},
        section,
        {"mode", "blocks", "duration_s", "seed", "vary_seed", "warmup_blocks", "settle_blocks"},
    )
    _bool(table, section, "vary_seed", False)
    blocks = _num(table, section, "blocks", None, 1, integer=True, optional=True)
    duration = _num(table, section, "duration_s", None, 1e-9, optional=True)
    if blocks is None and duration is None:
        blocks = 1000
    return RunConfig(
        mode=_choice(table, section, "mode", "modelled", MODES),
        blocks=blocks,
        duration_s=duration,
        seed=_num(table, section, "seed", 0, 0, 2**63 - 1, integer=True),
        warmup_blocks=_num(table, section, "warmup_blocks", 0, 0, integer=True),
        settle_blocks=_num(table, section, "settle_blocks", 6, 0, integer=True),
    )


def _plot(data: Any) -> PlotConfig:
    table = _keys(data if data is not None else {}, "plot", {"x", "series", "y"})
    y = table.get("y", [])
    if isinstance(y, str):
        y = [y]
    if not isinstance(y, list) or not all(isinstance(v, str) for v in y):
        raise ExperimentError("plot.y: must be a metric name or a list of them")
    for key in ("x", "series"):
        if key in table and not isinstance(table[key], str):
            raise ExperimentError(f"plot.{key}: must be a dotted key such as adversary.share")
    return PlotConfig(table.get("x"), table.get("series"), tuple(y))


def _sweep(data: Any) -> tuple[dict[str, list[Any]], bool]:
    table = data if data is not None else {}
    if not isinstance(table, dict):
        raise ExperimentError('sweep: must be a table of "section.key" = [values]')
    out: dict[str, list[Any]] = {}
    zipped = False
    for key, values in table.items():
        if key == "zip":
            if not isinstance(values, bool):
                raise ExperimentError("sweep.zip: must be true or false")
            zipped = values
            continue
        head = key.split(".")[0]
        if (
            "." not in key
            or head not in SECTIONS
            or head in ("sweep", "plot", "name", "description")
        ):
            raise ExperimentError(
                f'sweep."{key}": must be a dotted key into chain, network, miners, work, '
                "adversary, events or run"
            )
        if not isinstance(values, list) or not values:
            raise ExperimentError(f'sweep."{key}": must be a non-empty list of values')
        out[key] = values
    if zipped and len({len(v) for v in out.values()}) > 1:
        raise ExperimentError("sweep.zip: every swept list must have the same length")
    return out, zipped


# --- the whole file --------------------------------------------------------------------------


def parse_experiment(data: dict, name: str = "experiment") -> Experiment:
    """Check and type an experiment tree (as tomllib gives it)."""
    if not isinstance(data, dict):
        raise ExperimentError("experiment: must be a table")
    for key in data:
        if key not in SECTIONS:
            raise ExperimentError(f"{key}: unknown section (known: {', '.join(SECTIONS)})")
    miners = _miners(data.get("miners"))
    network = _network(data.get("network"), miners)
    adversary = _adversary(data.get("adversary"), network)
    chain_table = data.get("chain", {})
    if not isinstance(chain_table, dict):
        raise ExperimentError("chain: must be a table of consensus parameters")
    chain_table = dict(chain_table)
    auto = False
    if "initial_units_per_block" not in chain_table:
        # Start at the difficulty the configured miners need, so no warm-up run is spent
        # retargeting.
        probe, _ = _chain(dict(chain_table))
        honest = sum(g.count * g.unit_rate for g in miners)
        total = honest / (1 - adversary.share) if adversary.share else honest
        if total > 0:
            units = max(probe.min_units_per_block, round(total * probe.block_interval_ms / 1000))
            chain_table["initial_units_per_block"] = int(units)
            auto = True
    chain, _ = _chain(chain_table)
    run = _run(data.get("run"))
    sweep, zipped = _sweep(data.get("sweep"))
    exp = Experiment(
        name=str(data.get("name", name)),
        description=str(data.get("description", "")),
        chain=chain,
        network=network,
        miners=miners,
        work=_work(data.get("work")),
        adversary=adversary,
        events=_events(data.get("events")),
        run=run,
        plot=_plot(data.get("plot")),
        auditors=_auditors(data.get("auditors")),
        sweep=sweep,
        sweep_zip=zipped,
        auto_initial_units=auto,
    )
    if exp.honest_rate + exp.adversary_rate <= 0:
        raise ExperimentError(
            "miners: at least one [[miners]] group (or a mining adversary) is needed"
        )
    if adversary.kind == "reroller" and adversary.honest_prefix + 2 > chain.max_units_per_block:
        # A re-rolled trace is the prefix, the fabricated leaf and (chained) one honest unit.
        raise ExperimentError(
            f"adversary.honest_prefix: {adversary.honest_prefix} leaves no room for the re-rolled "
            f"leaves under chain.max_units_per_block ({chain.max_units_per_block})"
        )
    if adversary.kind == "poisoner":
        if chain.reward_maturity < 2:
            raise ExperimentError(
                "chain.reward_maturity: a poisoner run needs a fraud window (reward_maturity >= "
                "2: a proof goes in a block above the guilty one and below its height plus "
                "reward_maturity)"
            )
        if adversary.jump_at + 2 > chain.max_units_per_block:
            raise ExperimentError(
                f"adversary.jump_at: {adversary.jump_at} leaves no winning unit under "
                f"chain.max_units_per_block ({chain.max_units_per_block})"
            )
    if chain.shares_per_block and adversary.kind != "none":
        raise ExperimentError(
            f"adversary.kind: shares (chain.shares_per_block > 0) are modelled for honest miners "
            f"only; got {adversary.kind}"
        )
    if run.mode == "real":
        if adversary.kind not in REAL_ADVERSARIES:
            raise ExperimentError(
                f'adversary.kind: {adversary.kind} runs in run.mode = "modelled" only (real mode: '
                f"{', '.join(REAL_ADVERSARIES)})"
            )
        if network.nodes + (adversary.kind != "none") > 16:
            raise ExperimentError(
                "network.nodes: real mode runs a handful of real nodes (at most 16)"
            )
    return exp


def load_experiment_data(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ExperimentError(f"{p}: no such experiment file")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{p}: not valid TOML ({exc})") from None


# --- dotted paths and sweeps -----------------------------------------------------------------


def split_path(dotted: str) -> list[str]:
    """`sweep."adversary.share"` -> ["sweep", "adversary.share"]: dots inside double quotes do
    not split."""
    parts, current, quoted = [], "", False
    for ch in dotted:
        if ch == '"':
            quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    if quoted:
        raise ExperimentError(f"{dotted}: unbalanced quote")
    parts.append(current)
    return parts


def set_path(data: dict, dotted: str, value: Any) -> None:
    """Set `a.b.0.c` in a TOML tree (a number indexes an array of tables), creating tables as
    needed."""
    parts = split_path(dotted)
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        here = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ExperimentError(f"{here}: no such entry (the array has {len(node)})")
            node = node[int(part)]
        elif isinstance(node, dict):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            node = nxt
        else:
            raise ExperimentError(f"{here}: is a value, not a table")
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ExperimentError(f"{dotted}: no such entry")
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ExperimentError(f"{dotted}: parent is a value, not a table")


def get_path(data: dict, dotted: str) -> Any:
    node: Any = data
    for part in split_path(dotted):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` from the command line; the value is read as TOML (a bare word is a string)."""
    if "=" not in text:
        raise ExperimentError(f"--set {text!r}: expected section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


@dataclass(frozen=True)
class Point:
    index: int
    values: dict[str, Any]  # the swept keys and their values at this point
    data: dict  # the full experiment tree of this point
    experiment: Experiment


def expand(data: dict, name: str = "experiment") -> list[Point]:
    """Every sweep point, each parsed and checked before anything runs."""
    base = parse_experiment(data, name)
    keys = list(base.sweep)
    if not keys:
        return [Point(0, {}, data, base)]
    lists = [base.sweep[k] for k in keys]
    combos = list(zip(*lists)) if base.sweep_zip else list(itertools.product(*lists))
    points = []
    for i, combo in enumerate(combos):
        point_data = copy.deepcopy(data)
        values = dict(zip(keys, combo))
        for key, value in values.items():
            set_path(point_data, key, value)
        run_table = point_data.get("run", {})
        if isinstance(run_table, dict) and run_table.get("vary_seed") and "run.seed" not in values:
            # Independent randomness per point (the default shares one seed: common random numbers).
            run_table["seed"] = int(run_table.get("seed", 0)) + i
        try:
            exp = parse_experiment(point_data, name)
        except ExperimentError as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
            raise ExperimentError(f"{exc} (at sweep point {i}: {shown})") from None
        points.append(Point(i, values, point_data, exp))
    return points
