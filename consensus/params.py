"""Consensus parameters: one typed object, loadable from TOML, with named presets.

Everything a researcher may want to change lives here; consensus code reads these fields and no
module-level constant. Unknown keys and out-of-range values are errors that name the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from chain.state import NO_SHARE_REWARDS, ShareRewards
from useful_work.specs import (
    RenderSpec,
    TaskSpec,
    TaskSpecError,
    TrainSpec,
    unit_cost,
    validate_spec,
)

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
    version: int = (
        3  # 3: sparse Merkle state root, share claims in blocks (2: chained seeds, maturity)
    )
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
    # Shares: a prefix ticket under target * shares_per_block is a share (0: no shares)
    shares_per_block: int = 0
    share_reward_pct: int = 50  # percent of the subsidy paid per block at shares_per_block shares
    share_fee_pct: int = 10  # percent of each included share's reward paid to the block's miner
    share_spot_checks: int = 1  # units re-run per segment of a share claim, besides its last
    max_share_claims: int = 64  # share claims one block may carry
    max_share_bytes: int = 4 << 20  # encoded bytes of one block's share claims
    # Sizes
    max_block_bytes: int = 8 << 20
    max_block_txs: int = 2_000
    max_message_bytes: int = 16 << 20
    # Rewards
    block_reward: int = 50 * COIN
    halving_interval: int = 210_000
    reward_maturity: int = (
        100  # blocks before a block's reward is spendable (the fraud-proof window)
    )
    # The task market: a unit's cost is useful_work.specs.unit_cost(spec), in operations (one
    # operation: one training multiply-accumulate, about 0.14 ns on one CPU thread).
    min_bounty_per_unit: int = (
        1  # the least a unit pays, and the price of a unit of reference_unit_cost
    )
    reference_unit_cost: int = (
        100_000_000  # a unit costing c > this pays ceil(min_bounty_per_unit * c / this)
    )
    max_unit_cost: int = 600_000_000  # no task (the default task included) may cost more per unit
    # Fraud proofs (the window is reward_maturity)
    fraud_prover_share_pct: int = (
        50  # percent of a forfeit (its bounty share aside) paid to the prover; the rest is burned
    )
    max_fraud_proofs_per_block: int = 4  # each costs a verifier one unit
    # Genesis
    genesis_time_ms: int = 1_764_000_000_000
    genesis_message: str = "pouw devnet: useful work secures the ledger"
    allocations: tuple[Allocation, ...] = ()
    # Sync policy, not a rule: blocks at and below this hash are not re-executed while syncing
    assume_valid: str = ""  # a block hash (64 hex digits); "" off (devnet's default)
    assume_valid_min_work: int = 0  # the best header chain's work before assume-valid applies
    default_task: TaskSpec = field(
        default_factory=TrainSpec
    )  # a train or render spec; units 0 = open-ended

    def block_subsidy(self, height: int) -> int:
        """Block reward at a height: halves every `halving_interval` blocks."""
        halvings = height // self.halving_interval
        return 0 if halvings >= 64 else self.block_reward >> halvings

    def share_target(self, target: int) -> int:
        """The share target for a block target: target * shares_per_block (at most 2^256 - 1)."""
        return min(target * self.shares_per_block, MAX_TARGET)

    def share_split(self, height: int) -> tuple[int, ShareRewards]:
        """(the winner's subsidy, the reward per share and fee) at a height. With N shares per
        block and a = subsidy * share_reward_pct // 100 // N per share, the winner's block
        ticket counts as one share: it gets subsidy - a * (N - 1), each included share a (of
        which the fee goes to the includer), so a block with N - 1 included shares issues
        exactly the subsidy."""
        subsidy = self.block_subsidy(height)
        if not self.shares_per_block:
            return subsidy, NO_SHARE_REWARDS
        per_share = subsidy * self.share_reward_pct // 100 // self.shares_per_block
        fee = per_share * self.share_fee_pct // 100
        return subsidy - per_share * (self.shares_per_block - 1), ShareRewards(per_share, fee)

    @property
    def max_target(self) -> int:
        return MAX_TARGET // self.min_units_per_block

    @property
    def initial_target(self) -> int:
        return MAX_TARGET // self.initial_units_per_block


# key -> (low, high), inclusive
_RANGES: dict[str, tuple[int, int]] = {
    "version": (3, 3),
    "block_interval_ms": (10, 86_400_000),
    "retarget_half_life_ms": (1_000, 10**10),
    "initial_units_per_block": (1, 1 << 40),
    "min_units_per_block": (1, 1 << 40),
    "max_future_block_ms": (0, 86_400_000),
    "median_time_span": (1, 101),
    "spot_checks": (0, 64),
    "max_units_per_block": (1, 1 << 20),
    "max_opening_bytes": (1_024, 1 << 26),
    "shares_per_block": (0, 1 << 20),
    "share_reward_pct": (0, 100),
    "share_fee_pct": (0, 100),
    "share_spot_checks": (0, 64),
    "max_share_claims": (0, 1_024),
    "max_share_bytes": (0, 1 << 28),
    "max_block_bytes": (1_024, 1 << 28),
    "max_block_txs": (0, 1 << 20),
    "max_message_bytes": (1_024, 1 << 28),
    "block_reward": (0, 1 << 62),
    "halving_interval": (1, 1 << 40),
    "reward_maturity": (0, 100_000),
    "min_bounty_per_unit": (0, 1 << 62),
    "reference_unit_cost": (1, 1 << 40),
    "max_unit_cost": (1, 1 << 40),
    "fraud_prover_share_pct": (0, 100),
    "max_fraud_proofs_per_block": (0, 64),
    "assume_valid_min_work": (0, 1 << 512),
    "genesis_time_ms": (0, 1 << 50),
}

# key -> one line of meaning, for `pouw params` (every field of ConsensusParams has one, and every
# field of the default task as `default_task.FIELD`; the ranges of the task fields are the task's
# own).
MEANINGS: dict[str, str] = {
    "network": (
        "the network's name; the chain id that every transaction signs is derived from it and the "
        "genesis"
    ),
    "version": (
        "protocol version of block headers (3: the state root is the sparse Merkle state tree's "
        "root; share claims in blocks, merged task states; 2: chained unit seeds, matured rewards)"
    ),
    "block_interval_ms": "the block interval the difficulty retarget aims for",
    "retarget_half_life_ms": (
        "how fast the target follows solve times: a block one half-life late makes the next twice "
        "as easy"
    ),
    "initial_units_per_block": (
        "expected units of work to find a block at blocks 1 and 2 (sets the initial target)"
    ),
    "min_units_per_block": "the easiest target allowed, as expected units per block",
    "max_future_block_ms": "how far ahead of the local clock a block's time may be",
    "median_time_span": "blocks in the median-time-past that a block's time must exceed",
    "spot_checks": (
        "k: non-winning units of the block winner's trace a verifier re-executes, besides the "
        "winning unit (share claims: share_spot_checks)"
    ),
    "max_units_per_block": "the most units one key may search on one tip in one attempt",
    "max_opening_bytes": "the largest opened input state a block may carry",
    "shares_per_block": (
        "N: a trace prefix with a ticket under N x the block target is a share (paid, merged into "
        "the task; 0: no shares)"
    ),
    "share_reward_pct": "percent of the subsidy paid as share rewards at shares_per_block shares",
    "share_fee_pct": "percent of each included share's reward paid to the block's miner",
    "share_spot_checks": (
        "units a verifier re-executes in each segment of a share claim (the units after the "
        "previous share), besides the segment's last unit; drawn from that share's ticket"
    ),
    "max_share_claims": "the most share claims one block may carry",
    "max_share_bytes": "the most encoded bytes of share claims one block may carry",
    "max_block_bytes": "the largest encoded block",
    "max_block_txs": "the most transactions in one block",
    "max_message_bytes": "the largest peer message (a block travels in one)",
    "block_reward": "block subsidy at height 1, in base units (1 POUW = 10^8)",
    "halving_interval": "blocks between halvings of the subsidy",
    "reward_maturity": "blocks before a block's reward is spendable (the window for fraud proofs)",
    "min_bounty_per_unit": (
        "the least bounty per unit a submitted task must offer (base units), for a unit of up to "
        "reference_unit_cost"
    ),
    "reference_unit_cost": (
        "unit cost (operations) that min_bounty_per_unit buys; a dearer unit pays in proportion"
    ),
    "max_unit_cost": (
        "the most operations one unit of any task (the default task included) may cost"
    ),
    "fraud_prover_share_pct": (
        "percent of a forfeited reward (its bounty share aside) paid to the fraud proof's prover; "
        "the rest is burned"
    ),
    "max_fraud_proofs_per_block": (
        "fraud proofs one block may carry (each costs a verifier one unit)"
    ),
    "genesis_time_ms": (
        "time of the genesis block (Unix ms); block 1 anchors the retarget, not this"
    ),
    "genesis_message": "text hashed into the genesis block",
    "assume_valid": (
        "sync policy, not a rule: a syncing node checks the blocks up to this one (headers, "
        "tickets, transactions, state roots) without re-executing their units; --assume-valid "
        "overrides it"
    ),
    "assume_valid_min_work": (
        "sync policy: assume-valid applies only once the best header chain, which must contain the"
        " assume-valid block, carries at least this much chain work (as Bitcoin Core's minimum "
        "chain work); below it, or off that chain, blocks are fully validated"
    ),
    "allocations": "genesis balances: a list of {address, amount} tables",
    "default_task": (
        "the chain's default public task, mined when no paid task is open (train or render; "
        "open-ended)"
    ),
    "default_task.kind": (
        "train (a shared CNN learns from rendered scenes) or render (labelled images)"
    ),
    "default_task.units": "units of the task; a default task must be open-ended: 0",
    "default_task.images_per_unit": "images rendered per unit (render)",
    "default_task.image_size": "image side in pixels",
    "default_task.min_objects": "fewest objects in a scene",
    "default_task.max_objects": "most objects in a scene",
    "default_task.min_lights": "fewest lights in a scene",
    "default_task.max_lights": "most lights in a scene",
    "default_task.arch": "model preset (train)",
    "default_task.objective": (
        "what the model predicts: lights (how many) or light-direction (train)"
    ),
    "default_task.batch_size": "images per SGD step (train)",
    "default_task.steps_per_unit": "SGD steps per unit (train)",
    "default_task.lr_micro": "learning rate in millionths (train)",
    "default_task.momentum_milli": "momentum in thousandths (train)",
    "default_task.seed": "varies the initial weights (train)",
}

# The ranges of the fields that are not integers in _RANGES, as text for `pouw params`.
_RANGE_TEXT: dict[str, str] = {
    "network": "letters, digits, '-' and '_'",
    "genesis_message": "any text",
    "assume_valid": "empty, or a block hash of 64 hex digits",
    "allocations": "amounts 1 .. 2^63-1, checksummed addresses",
    "default_task": "a train or render table",
}


def parameter_range(name: str) -> str:
    """The allowed values of a parameter (`default_task.FIELD` for the task's fields), as text."""
    if name in _RANGES:
        low, high = _RANGES[name]
        return f"{low} .. {high}"
    if name in _RANGE_TEXT:
        return _RANGE_TEXT[name]
    if name.startswith("default_task."):
        from useful_work.specs import _INT_RANGES, _STR_VALUES

        key = name.removeprefix("default_task.")
        if key == "kind":
            return "train, render"
        if key == "units":
            return "0"
        if key in _STR_VALUES:
            return ", ".join(_STR_VALUES[key])
        low, high = _INT_RANGES[key]
        return f"{low} .. {high}"
    raise KeyError(name)


@lru_cache(maxsize=32)
def _task_state_bytes(spec: TaskSpec) -> int:
    from useful_work.tasks import make_task

    return len(make_task(spec).initial_state())


def _check_default_task(p: ConsensusParams) -> None:
    """Refuse a default task that the chain could not keep mining (each message names the key)."""
    try:
        validate_spec(p.default_task)
    except TaskSpecError as exc:
        raise ParamsError(f"default_task: {exc}") from None
    if p.default_task.units != 0:
        raise ParamsError(
            "default_task.units: a default task must be open-ended (0), got "
            f"{p.default_task.units}: "
            "after that many units no task would be open and mining would stop"
        )
    size = _task_state_bytes(p.default_task)
    if size > p.max_opening_bytes:
        raise ParamsError(
            f"max_opening_bytes: {p.max_opening_bytes} is less than the default task's "
            f"state ({size} bytes), "
            "so no block could carry the openings a verifier needs"
        )
    if (p.spot_checks + 1) * size > p.max_block_bytes // 2:
        raise ParamsError(
            f"max_block_bytes: {p.max_block_bytes} is too small: a block of the default "
            "task carries "
            f"spot_checks + 1 = {p.spot_checks + 1} openings of {size} bytes, which must "
            "fit in half a block"
        )


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
        raise ParamsError(
            "max_block_bytes: must not exceed max_message_bytes (a block travels in one message)"
        )
    if not p.network or not p.network.replace("-", "").replace("_", "").isalnum():
        raise ParamsError(f"network: {p.network!r} must be a short alphanumeric name")
    av = p.assume_valid
    if av and (len(av) != 64 or any(c not in "0123456789abcdef" for c in av)):
        raise ParamsError(f"assume_valid: {av!r} is not a block hash (64 lowercase hex digits)")
    for i, alloc in enumerate(p.allocations):
        if not isinstance(alloc.amount, int) or not 0 < alloc.amount < 1 << 63:
            raise ParamsError(f"allocations[{i}].amount: {alloc.amount!r} out of range 1 .. 2^63-1")
    _check_default_task(p)
    cost = unit_cost(p.default_task)
    if cost > p.max_unit_cost:
        raise ParamsError(
            f"default_task: unit cost {cost:,} operations exceeds max_unit_cost {p.max_unit_cost:,}"
        )
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
                    raise ParamsError(
                        f"allocations[{i}]: must have exactly the keys address and amount"
                    )
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
            # A default task is open-ended, whatever the kind's own default for a submitted task.
            start = (
                base.default_task
                if base.default_task.kind == kind
                else replace(kinds[kind](), units=0)
            )
            task_fields = {f.name for f in fields(kinds[kind])}
            for k in value:
                if k not in task_fields:
                    raise ParamsError(f"default_task.{k}: unknown {kind} task field")
            changes[key] = replace(start, **value)
        else:
            changes[key] = value
    return validate_params(replace(base, **changes))


# consensus/presets/NAME.toml; a preset may itself start from another with `base = "..."`.
PRESETS = ("devnet", "testnet", "sharenet")


def load_params(name_or_path: str | Path) -> ConsensusParams:
    """A preset name ("devnet", "testnet", "sharenet") or a TOML file, which may start from a
    preset with `base = "..."`."""
    text_name = str(name_or_path)
    if text_name in PRESETS:
        data = tomllib.loads(
            resources.files("consensus.presets").joinpath(f"{text_name}.toml").read_text()
        )
        if data.get("base") == text_name:
            raise ParamsError(f"preset {text_name}: base names the preset itself")
        return params_from_table(data)
    path = Path(name_or_path)
    if not path.is_file():
        raise ParamsError(
            f"network: {text_name!r} is neither a preset ({', '.join(PRESETS)}) nor a TOML file"
        )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ParamsError(f"{path}: not valid TOML ({exc})") from None
    return params_from_table(data)


def params_from_table(data: dict[str, Any]) -> ConsensusParams:
    """A TOML table of parameters that may start from a preset with `base = "devnet"` (else the
    defaults)."""
    table = dict(data)
    base = None
    if "base" in table:
        base_name = table.pop("base")
        if base_name not in PRESETS:
            raise ParamsError(f"base: {base_name!r} is not a preset ({', '.join(PRESETS)})")
        base = load_params(base_name)
    return params_from_dict(table, base)
