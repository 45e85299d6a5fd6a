"""Consensus parameters: one typed object, loadable from TOML, with named presets.

Everything a researcher may want to change lives here; consensus code reads these fields and no
module-level constant. Unknown keys and out-of-range values are errors that name the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from useful_work.tasks import RenderSpec, TaskSpec, TaskSpecError, TrainSpec, validate_spec

COIN = 100_000_000
MAX_TARGET = (1 << 256) - 1


class ParamsError(ValueError):
    """A consensus parameter file or value is invalid; the message names the key."""


@dataclass(frozen=True)
class Allocation:
    address: str  # checksummed text form
    amount: int


@dataclass(frozen=True)
class ConsensusParams:
    network: str = "devnet"
    version: int = 2  # 2: chained unit seeds bound to the header, matured rewards
    # Time and difficulty
    block_interval_ms: int = 5_000
    retarget_half_life_ms: int = 60_000
    initial_units_per_block: int = 60  # expected units to find a block at genesis
    min_units_per_block: int = 1  # the easiest target allowed
    max_future_block_ms: int = 15_000
    median_time_span: int = 11
    # Work and verification
    spot_checks: int = 4
    max_units_per_block: int = 16_384  # the most units one key can search on one tip
    max_opening_bytes: int = 1 << 20
    # Sizes
    max_block_bytes: int = 8 << 20
    max_block_txs: int = 2_000
    max_message_bytes: int = 16 << 20
    # Rewards
    block_reward: int = 50 * COIN
    halving_interval: int = 210_000
    reward_maturity: int = 100  # blocks before a block's reward is spendable (the fraud-proof window)
    min_bounty_per_unit: int = 1
    # Fraud proofs (the window is reward_maturity)
    fraud_prover_share_pct: int = 50  # percent of a forfeit (its bounty share aside) paid to the prover; the rest is burned
    max_fraud_proofs_per_block: int = 4  # each costs a verifier one unit
    # Genesis
    genesis_time_ms: int = 1_764_000_000_000
    genesis_message: str = "pouw devnet: useful work secures the ledger"
    allocations: tuple[Allocation, ...] = ()
    default_task: TaskSpec = field(default_factory=TrainSpec)  # a train or render spec; units 0 = open-ended

    def block_subsidy(self, height: int) -> int:
        """Block reward at a height: halves every `halving_interval` blocks."""
        halvings = height // self.halving_interval
        return 0 if halvings >= 64 else self.block_reward >> halvings

    @property
    def max_target(self) -> int:
        return MAX_TARGET // self.min_units_per_block

    @property
    def initial_target(self) -> int:
        return MAX_TARGET // self.initial_units_per_block


# key -> (low, high), inclusive
_RANGES: dict[str, tuple[int, int]] = {
    "version": (2, 2),
    "block_interval_ms": (10, 86_400_000),
    "retarget_half_life_ms": (1_000, 10**10),
    "initial_units_per_block": (1, 1 << 40),
    "min_units_per_block": (1, 1 << 40),
    "max_future_block_ms": (0, 86_400_000),
    "median_time_span": (1, 101),
    "spot_checks": (0, 64),
    "max_units_per_block": (1, 1 << 20),
    "max_opening_bytes": (1_024, 1 << 26),
    "max_block_bytes": (1_024, 1 << 28),
    "max_block_txs": (0, 1 << 20),
    "max_message_bytes": (1_024, 1 << 28),
    "block_reward": (0, 1 << 62),
    "halving_interval": (1, 1 << 40),
    "reward_maturity": (0, 100_000),
    "min_bounty_per_unit": (0, 1 << 62),
    "fraud_prover_share_pct": (0, 100),
    "max_fraud_proofs_per_block": (0, 64),
    "genesis_time_ms": (0, 1 << 50),
}


def validate_params(p: ConsensusParams) -> ConsensusParams:
    for name, (low, high) in _RANGES.items():
        value = getattr(p, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ParamsError(f"{name}: must be an integer, got {type(value).__name__}")
        if not low <= value <= high:
            raise ParamsError(f"{name}: {value} out of range {low} .. {high}")
    if p.min_units_per_block > p.initial_units_per_block:
        raise ParamsError("min_units_per_block: must not exceed initial_units_per_block")
    if p.max_block_bytes > p.max_message_bytes:
        raise ParamsError("max_block_bytes: must not exceed max_message_bytes (a block travels in one message)")
    if not p.network or not p.network.replace("-", "").replace("_", "").isalnum():
        raise ParamsError(f"network: {p.network!r} must be a short alphanumeric name")
    for i, alloc in enumerate(p.allocations):
        if not isinstance(alloc.amount, int) or not 0 < alloc.amount < 1 << 63:
            raise ParamsError(f"allocations[{i}].amount: {alloc.amount!r} out of range 1 .. 2^63-1")
    try:
        validate_spec(p.default_task)
    except TaskSpecError as exc:
        raise ParamsError(f"default_task: {exc}") from None
    return p


def params_from_dict(data: dict[str, Any], base: ConsensusParams | None = None) -> ConsensusParams:
    """Overlay a TOML-shaped dict on `base` (default: the built-in defaults)."""
    base = base or ConsensusParams()
    known = {f.name for f in fields(ConsensusParams)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ParamsError(f"{key}: unknown consensus parameter")
        if key == "allocations":
            if not isinstance(value, list):
                raise ParamsError("allocations: must be a list of {address, amount} tables")
            allocs = []
            for i, item in enumerate(value):
                if not isinstance(item, dict) or set(item) != {"address", "amount"}:
                    raise ParamsError(f"allocations[{i}]: must have exactly the keys address and amount")
                allocs.append(Allocation(str(item["address"]), item["amount"]))
            changes[key] = tuple(allocs)
        elif key == "default_task":
            if not isinstance(value, dict):
                raise ParamsError("default_task: must be a table of task fields")
            value = dict(value)
            kind = value.pop("kind", base.default_task.kind)
            kinds = {"train": TrainSpec, "render": RenderSpec}
            if kind not in kinds:
                raise ParamsError(f"default_task.kind: must be train or render, got {kind!r}")
            start = base.default_task if base.default_task.kind == kind else kinds[kind]()
            task_fields = {f.name for f in fields(kinds[kind])}
            for k in value:
                if k not in task_fields:
                    raise ParamsError(f"default_task.{k}: unknown {kind} task field")
            changes[key] = replace(start, **value)
        else:
            changes[key] = value
    return validate_params(replace(base, **changes))


PRESETS = ("devnet", "testnet")


def load_params(name_or_path: str | Path) -> ConsensusParams:
    """A preset name ("devnet", "testnet") or a TOML file, which may start from a preset with `base = "..."`."""
    text_name = str(name_or_path)
    if text_name in PRESETS:
        data = tomllib.loads(resources.files("consensus.presets").joinpath(f"{text_name}.toml").read_text())
        return params_from_dict(data)
    path = Path(name_or_path)
    if not path.is_file():
        raise ParamsError(f"network: {text_name!r} is neither a preset ({', '.join(PRESETS)}) nor a TOML file")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ParamsError(f"{path}: not valid TOML ({exc})") from None
    return params_from_table(data)


def params_from_table(data: dict[str, Any]) -> ConsensusParams:
    """A TOML table of parameters that may start from a preset with `base = "devnet"` (else the defaults)."""
    table = dict(data)
    base = None
    if "base" in table:
        base_name = table.pop("base")
        if base_name not in PRESETS:
            raise ParamsError(f"base: {base_name!r} is not a preset ({', '.join(PRESETS)})")
        base = load_params(base_name)
    return params_from_dict(table, base)
