"""The task market: which task blocks work on, where each task's state starts, and submission rules
(a cap on a task's unit cost and a minimum bounty that grows with it).

Tasks run in order: the oldest open paid task (by creation height, then id), else the chain's
default public task. Payment of bounty shares is part of the ledger transition (chain.state).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache

from chain.address import ZERO_ADDRESS
from chain.block import Block
from chain.state import LedgerState, TaskRecord, open_tasks
from chain.tx import SubmitTask, Transaction
from consensus.params import ConsensusParams
from useful_work.hashing import ZERO_HASH
from useful_work.specs import TaskSpec, parse_spec, unit_cost
from useful_work.tasks import Task, task_from_bytes
from useful_work.trace import state_hash


class MarketError(ValueError):
    """A submit-task transaction that breaks a market rule; names the rule."""


def active_task(state: LedgerState) -> TaskRecord:
    """The task the next block must work on."""
    tasks = open_tasks(state)
    for task in tasks:
        if task.owner != ZERO_ADDRESS:
            return task
    for task in tasks:
        if task.owner == ZERO_ADDRESS:
            return task
    raise ValueError("no open task: the default task is missing from the state")


@lru_cache(maxsize=64)
def task_for_spec(spec: bytes) -> Task:
    return task_from_bytes(spec)


@lru_cache(maxsize=64)
def initial_state(spec: bytes) -> bytes:
    return task_for_spec(spec).initial_state()


def task_start_hash(task: TaskRecord) -> bytes:
    """Hash of the state the task's next unit starts from (a new task starts from its spec's
    initial state)."""
    return state_hash(initial_state(task.spec)) if task.state_hash == ZERO_HASH else task.state_hash


def unit_price(min_bounty_per_unit: int, reference_unit_cost: int, cost: int) -> int:
    """The least bounty one unit of `cost` operations may pay: `min_bounty_per_unit` up to
    `reference_unit_cost`, then in proportion, rounded up. (Plain integers, so a wallet can apply
    the rule to the parameters a node publishes.)"""
    return max(min_bounty_per_unit, -(-min_bounty_per_unit * cost // reference_unit_cost))


def minimum_bounty(params: ConsensusParams, spec: TaskSpec) -> int:
    """The least bounty a task of `spec` may offer: units * unit_price(its unit cost)."""
    return spec.units_total * unit_price(
        params.min_bounty_per_unit, params.reference_unit_cost, unit_cost(spec)
    )


def check_market_rules(params: ConsensusParams, tx: Transaction) -> None:
    """Rules of the market beyond the ledger's: a unit may cost at most `max_unit_cost` operations
    (each block makes verifiers re-run some), and the bounty must pay at least the cost-scaled
    minimum per unit (so expensive units cannot be bought for the price of cheap ones)."""
    payload = tx.payload
    if not isinstance(payload, SubmitTask):
        return
    spec = parse_spec(payload.spec)
    units, cost = spec.units_total, unit_cost(spec)
    if cost > params.max_unit_cost:
        raise MarketError(
            f"task unit cost {cost:,} operations exceeds this network's limit of "
            f"{params.max_unit_cost:,} (max_unit_cost)"
        )
    price = unit_price(params.min_bounty_per_unit, params.reference_unit_cost, cost)
    if payload.bounty < price * units:
        raise MarketError(
            f"bounty {payload.bounty} is below the minimum of {price} per unit for {units} units "
            f"({price * units} in all; unit cost {cost:,} operations)"
        )


def credited_line(
    worked: list[tuple[int, bytes]], task: TaskRecord, load_block: Callable[[bytes], Block | None]
) -> list[tuple[int, bytes]]:
    """The blocks whose units make the task's current state, oldest first: from `worked` (every
    best-chain block that claimed work on the task, by height), the chain of claims linked by
    state hashes that ends at the task's state. Blocks a fraud proof uncredited (the guilty one and
    those built on its state) are not on it."""
    if task.state_hash == ZERO_HASH:
        return []
    expected, start = task.state_hash, task_start_hash(replace(task, state_hash=ZERO_HASH))
    line = []
    for height, h in reversed(worked):
        if expected == start:
            break
        block = load_block(h)
        if block is None:
            raise LookupError(f"block {h.hex()} of task {task.task_id.hex()} is not stored")
        for claim, proof in zip(block.header.work, block.proofs):
            # The block's task state (the merge of its winner's and share claims' outputs).
            if claim.task_id == task.task_id and block.header.task_state == expected:
                line.append((height, h))
                expected = proof.leaves[0].input_hash
                break
    return line[::-1]
