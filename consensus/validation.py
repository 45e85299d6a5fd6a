"""Block validation, in the order a reader checks it: cheap rules first, re-execution last.

1. Header rules (no body, no state): version, height, time, target, one work claim, unit count,
   the miner address is the signing key's, the ticket is under the target; then the signature.
2. Body: first, does it match the header's commitments (roots, openings)? A body that does not is
   not this block's body: a bad message from its sender, never grounds to mark the header. Then
   the rules on a matching body: size, transaction count, the leaves chain, the winning unit was
   run for this header, the openings are exactly those a verifier needs.
3. Work (needs the parent's state): the claim is for the active task, leaf 0 starts from the
   task's state at the parent, the winning unit re-executes bit for bit, then the k challenged
   ones, each with its chained seed. Any failure while re-executing is invalid work.
4. Transactions and the state root (needs the parent's state): market rules, then fraud proofs
   (at most `max_fraud_proofs_per_block`, each re-running one unit: consensus.fraud), then the
   ledger transition.
Each failure raises InvalidBlock with a distinct Reason; `Reason.marks_invalid` says whether the
block hash may be marked invalid for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from chain.address import address_of
from chain.block import (
    Block,
    BlockHeader,
    BlockStructureError,
    BodyMismatch,
    check_body_matches,
    check_proof_rules,
)
from chain.state import LedgerState, StateError, Undo, apply_block
from chain.tx import FraudProof, TxError
from chain.types import TaskId
from consensus.fraud import BlockLoader, FraudError, check_fraud_proof
from consensus.market import (
    MarketError,
    active_task,
    check_market_rules,
    initial_state,
    task_for_spec,
    task_start_hash,
)
from consensus.params import ConsensusParams
from consensus.shares import (
    ShareRuleError,
    VerifiedClaims,
    check_share_body,
    check_share_openings,
    check_share_work,
    check_task_state,
    merged_state,
)
from consensus.targets import next_target
from consensus.tickets import challenged_units, ticket, ticket_wins
from useful_work.trace import prefix_commitments, unit_seed
from useful_work.verify import verify_unit


class Reason(str, Enum):
    # header rules: the hashed header content breaks them, so the hash is invalid for good
    BAD_VERSION = "bad-version"
    BAD_HEIGHT = "bad-height"
    TIME_TOO_OLD = "time-too-old"
    BAD_TARGET = "bad-target"
    BAD_WORK_COUNT = "bad-work-count"
    BAD_UNIT_COUNT = "bad-unit-count"
    MINER_NOT_KEY = "miner-not-key"
    TICKET_ABOVE_TARGET = "ticket-above-target"
    # not about the block: the message that carried it
    TIME_TOO_NEW = "time-too-new"  # may be valid later
    BAD_SIGNATURE = "bad-signature"  # the signature is not part of the block's identity
    BODY_MISMATCH = "body-mismatch"  # a body that is not this header's
    # rules on a body that matches every commitment
    TOO_LARGE = "block-too-large"
    TOO_MANY_TXS = "too-many-txs"
    BAD_TRACE = "bad-trace"
    BAD_OPENINGS = "bad-openings"
    WRONG_TASK = "wrong-task"
    BAD_TRACE_START = "bad-trace-start"
    BAD_WINNING_UNIT = "bad-winning-unit"
    BAD_SPOT_CHECK = "bad-spot-check"
    # share claims (consensus/shares.py), cheap rules first
    SHARES_OFF = "shares-off"
    TOO_MANY_SHARES = "too-many-shares"
    SHARES_TOO_LARGE = "shares-too-large"
    SHARE_WRONG_PARENT = "share-wrong-parent"
    BAD_SHARE_SIGNATURE = "bad-share-signature"
    DUPLICATE_SHARE = "duplicate-share"
    BAD_SHARE = "bad-share"
    SHARE_ABOVE_TARGET = "share-above-target"
    BAD_SHARE_START = "bad-share-start"
    BAD_SHARE_UNIT = "bad-share-unit"
    BAD_SHARE_SPOT_CHECK = "bad-share-spot-check"
    BAD_TASK_STATE = "bad-task-state"
    BAD_MARKET_RULE = "bad-market-rule"
    BAD_FRAUD_PROOF = "bad-fraud-proof"
    BAD_TRANSACTIONS = "bad-transactions"
    BAD_STATE_ROOT = "bad-state-root"
    INVALID_PARENT = "invalid-parent"

    @property
    def temporary(self) -> bool:
        """A block rejected for this reason may become valid later."""
        return self is Reason.TIME_TOO_NEW

    @property
    def bad_message(self) -> bool:
        """The sender's fault, not the block's: a broken signature or a body that is not the
        header's."""
        return self in (Reason.BAD_SIGNATURE, Reason.BODY_MISMATCH)

    @property
    def marks_invalid(self) -> bool:
        """Whether a block hash may be marked invalid for good with this reason."""
        return not (self.temporary or self.bad_message)


class InvalidBlock(Exception):
    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ParentInfo:
    """What the header rules need to know of the parent."""

    hash: bytes
    height: int
    time_ms: int
    target: int
    grandparent_time_ms: int  # the parent's own time for genesis
    median_time_past: int

    def next_target(self, params: ConsensusParams) -> int:
        return next_target(params, self.height, self.target, self.time_ms, self.grandparent_time_ms)


def median_time_past(times: list[int]) -> int:
    """Median of the last `median_time_span` block times (callers pass that many, or fewer near
    genesis)."""
    ordered = sorted(times)
    return ordered[len(ordered) // 2]


# --- 1. header -------------------------------------------------------------------------------


def check_header(
    params: ConsensusParams, header: BlockHeader, parent: ParentInfo, now_ms: int
) -> None:
    if header.version != params.version:
        raise InvalidBlock(
            Reason.BAD_VERSION, f"version {header.version}, expected {params.version}"
        )
    if header.height != parent.height + 1:
        raise InvalidBlock(
            Reason.BAD_HEIGHT, f"height {header.height} on a parent at {parent.height}"
        )
    if header.time_ms <= parent.median_time_past:
        raise InvalidBlock(
            Reason.TIME_TOO_OLD,
            f"time {header.time_ms} not after median time past {parent.median_time_past}",
        )
    if header.time_ms > now_ms + params.max_future_block_ms:
        raise InvalidBlock(
            Reason.TIME_TOO_NEW,
            f"time {header.time_ms} is more than {params.max_future_block_ms} ms ahead",
        )
    expected = parent.next_target(params)
    if header.target != expected:
        raise InvalidBlock(Reason.BAD_TARGET, f"target {header.target:#x}, expected {expected:#x}")
    if len(header.work) != 1:
        raise InvalidBlock(
            Reason.BAD_WORK_COUNT, f"{len(header.work)} work claims; blocks carry exactly one"
        )
    claim = header.work[0]
    if not 1 <= claim.unit_count <= params.max_units_per_block:
        raise InvalidBlock(
            Reason.BAD_UNIT_COUNT,
            f"{claim.unit_count} units, allowed 1 .. {params.max_units_per_block}",
        )
    # The unit seeds commit to the miner address: the key that signs must be that address's.
    if address_of(header.miner_key) != header.miner:
        raise InvalidBlock(Reason.MINER_NOT_KEY, "miner is not the address of miner_key")
    if not ticket_wins(ticket(header.prev_hash, header.miner, claim.trace_root), header.target):
        raise InvalidBlock(Reason.TICKET_ABOVE_TARGET)
    if not header.signature_ok():
        raise InvalidBlock(Reason.BAD_SIGNATURE)


# --- 2. body ---------------------------------------------------------------------------------


def required_openings(params: ConsensusParams, header: BlockHeader) -> list[int]:
    """Units a verifier re-executes: the k challenged ones and the winner (the last), sorted."""
    claim = header.work[0]
    t = ticket(header.prev_hash, header.miner, claim.trace_root)
    return sorted(
        {*challenged_units(t, claim.unit_count, params.spot_checks), claim.unit_count - 1}
    )


def check_body(params: ConsensusParams, block: Block, encoded_size: int | None = None) -> None:
    """Body against header (a mismatch is BODY_MISMATCH), then the rules on a matching body."""
    try:
        check_body_matches(block)
    except BodyMismatch as exc:
        raise InvalidBlock(Reason.BODY_MISMATCH, exc.reason) from None
    opened = [o.unit_index for o in block.proofs[0].openings]
    needed = required_openings(params, block.header)
    if opened != needed:
        # The openings are fixed by the header (the ticket picks them, the leaves fix their bytes).
        raise InvalidBlock(
            Reason.BODY_MISMATCH, f"opened units {opened}, a verifier needs {needed}"
        )
    try:
        check_share_openings(params, block)
    except ShareRuleError as exc:
        raise InvalidBlock(Reason(exc.reason), exc.detail) from None
    size = encoded_size if encoded_size is not None else len(block.to_bytes())
    if size > params.max_block_bytes:
        raise InvalidBlock(Reason.TOO_LARGE, f"{size} bytes, limit {params.max_block_bytes}")
    if len(block.txs) > params.max_block_txs:
        raise InvalidBlock(
            Reason.TOO_MANY_TXS, f"{len(block.txs)} transactions, limit {params.max_block_txs}"
        )
    try:
        check_proof_rules(block)
    except BlockStructureError as exc:
        raise InvalidBlock(Reason.BAD_TRACE, exc.reason) from None
    for o in block.proofs[0].openings:
        if len(o.state) > params.max_opening_bytes:
            raise InvalidBlock(
                Reason.BAD_OPENINGS, f"opening of unit {o.unit_index} is {len(o.state)} bytes"
            )
    try:
        check_share_body(params, block, block.header.target)
    except ShareRuleError as exc:
        raise InvalidBlock(Reason(exc.reason), exc.detail) from None


# --- 3. work ---------------------------------------------------------------------------------


def check_work(
    params: ConsensusParams,
    block: Block,
    state: LedgerState,
    device: str = "cpu",
    verified_claims: VerifiedClaims | None = None,
) -> bytes:
    """Re-execute the winner, then the challenged units, then every share claim's shares and
    spot checks (those in `verified_claims` were re-run on this parent already: their outputs are
    taken from it); return the task's next state (the merge of the winner's and the claims')."""
    header, proof = block.header, block.proofs[0]
    claim = header.work[0]
    task_record = active_task(state)
    if claim.task_id != task_record.task_id:
        raise InvalidBlock(
            Reason.WRONG_TASK,
            f"work on {claim.task_id.hex()}, the active task is {task_record.task_id.hex()}",
        )
    if proof.leaves[0].input_hash != task_start_hash(task_record):
        raise InvalidBlock(
            Reason.BAD_TRACE_START, "leaf 0 does not start from the task's state at the parent"
        )
    task = task_for_spec(task_record.spec)
    openings = {o.unit_index: o.state for o in proof.openings}
    prefixes = prefix_commitments(proof.leaves[:-1])

    def rerun(u: int, reason: Reason) -> bytes:
        leaf = proof.leaves[u]
        seed = unit_seed(
            header.prev_hash, header.miner, claim.attempt, u, prefixes[u], leaf.commitment
        )
        check = verify_unit(task, openings[u], seed, leaf, device)
        if not check.ok or check.output_state is None:
            raise InvalidBlock(reason, f"unit {u}: {check.reason}")
        return check.output_state

    winner = claim.unit_count - 1
    output = rerun(winner, Reason.BAD_WINNING_UNIT)
    for u in sorted(openings):
        if u != winner:
            rerun(u, Reason.BAD_SPOT_CHECK)
    if not block.shares:
        return output
    try:
        start = task_start_hash(task_record)
        outputs = check_share_work(task, task_record, start, block, device, verified_claims)
        merged = merged_state(task, task_record, output, claim.unit_count, block, outputs)
        check_task_state(merged, header.task_state)
    except ShareRuleError as exc:
        raise InvalidBlock(Reason(exc.reason), exc.detail) from None
    return merged


# --- 4. transactions and state ---------------------------------------------------------------


def check_transactions(
    params: ConsensusParams,
    block: Block,
    state: LedgerState,
    load_block: BlockLoader | None = None,
    *,
    device: str = "cpu",
    reexecute: bool = True,
) -> tuple[LedgerState, Undo]:
    """Market rules, fraud proofs (re-run one unit each unless `reexecute` is False: a block
    validated before), then the ledger transition and the state root."""
    frauds = 0
    for i, tx in enumerate(block.txs):
        try:
            check_market_rules(params, tx)
        except (MarketError, TxError, ValueError) as exc:
            raise InvalidBlock(Reason.BAD_MARKET_RULE, f"tx {i}: {exc}") from None
        if isinstance(tx.payload, FraudProof):
            frauds += 1
            if frauds > params.max_fraud_proofs_per_block:
                raise InvalidBlock(
                    Reason.BAD_FRAUD_PROOF,
                    f"tx {i}: more than {params.max_fraud_proofs_per_block} fraud proofs",
                )
            if load_block is None:
                raise InvalidBlock(
                    Reason.BAD_FRAUD_PROOF,
                    f"tx {i}: no block store to check the fraud proof against",
                )
            if reexecute:
                try:
                    check_fraud_proof(
                        params, tx.payload, state, block.header.height, load_block, device
                    )
                except FraudError as exc:
                    raise InvalidBlock(Reason.BAD_FRAUD_PROOF, f"tx {i}: {exc.reason}") from None

    def headers(block_hash: bytes) -> BlockHeader | None:
        found = load_block(block_hash) if load_block is not None else None
        return found.header if found is not None else None

    try:
        # check_body ran the structure rules before the block was stored: not again here.
        subsidy, share_rewards = params.share_split(block.header.height)
        new_state, undo = apply_block(
            state,
            block,
            subsidy,
            params.reward_maturity,
            check_structure=False,
            headers=headers,
            prover_share_pct=params.fraud_prover_share_pct,
            share_rewards=share_rewards,
        )
    except StateError as exc:
        raise InvalidBlock(Reason.BAD_TRANSACTIONS, exc.reason) from None
    if new_state.root != block.header.state_root:
        raise InvalidBlock(Reason.BAD_STATE_ROOT)
    return new_state, undo


@dataclass(frozen=True)
class Connected:
    state: LedgerState
    undo: Undo
    task_state: bytes | None  # the winner's output state, None when the work was not re-executed


def connect_checks(
    params: ConsensusParams,
    block: Block,
    state: LedgerState,
    *,
    device: str = "cpu",
    reexecute: bool = True,
    load_block: BlockLoader | None = None,
    verified_claims: VerifiedClaims | None = None,
) -> Connected:
    """Rules 3 and 4 on the parent's state. `reexecute=False` only for a block validated before.
    `load_block` finds the blocks that fraud proofs name (the node's block store)."""
    task_state = check_work(params, block, state, device, verified_claims) if reexecute else None
    new_state, undo = check_transactions(
        params, block, state, load_block, device=device, reexecute=reexecute
    )
    return Connected(new_state, undo, task_state)


StateLoader = Callable[[bytes], bytes | None]


def task_state_at(state: LedgerState, load_blob: StateLoader) -> tuple[TaskId, bytes]:
    """(task id, full state blob) the next unit of the active task starts from."""
    record = active_task(state)
    start = task_start_hash(record)
    blob = initial_state(record.spec) if start != record.state_hash else load_blob(start)
    if blob is None:
        raise LookupError(f"task state {start.hex()} of task {record.task_id.hex()} is not stored")
    return record.task_id, blob
