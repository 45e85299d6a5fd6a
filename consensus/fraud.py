"""Fraud proofs: checking one (one unit re-run) and building one from a replayed trace.

A fraud proof (chain.tx.FraudProof) names a block, a claim, a unit index j and the input state
of unit j. It is valid in a block at height H when (cheapest first):

1. the state is at most `max_opening_bytes`;
2. the named block is known, on this chain and inside the fraud window (H - reward_maturity <
   its height < H), and its reward has not been forfeited already (chain.state.fraud_target);
3. the state hashes to leaf j's input hash;
4. re-running unit j from that state with its chained seed does not reproduce leaf j (any
   failure while re-running counts as not reproducing, as in block validation).

Its effects on the ledger are chain.state's (forfeit, prover share, burn, task rewind).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chain.block import Block
from chain.state import LedgerState, StateError, fraud_target
from chain.tx import FraudProof
from consensus.market import initial_state, task_for_spec
from consensus.params import ConsensusParams
from consensus.shares import share_miner
from useful_work.trace import Leaf, prefix_commitments, state_hash, unit_seed
from useful_work.verify import verify_unit

BlockLoader = Callable[[bytes], Block | None]


class FraudError(ValueError):
    """A fraud proof that is refused; `reason` says which rule it breaks."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TraceRef:
    """One trace of a block: claim 0 is the winner's, claim i >= 1 the share claim i - 1."""

    miner: bytes
    attempt: int
    task_id: bytes
    leaves: tuple[Leaf, ...]


def claim_count(block: Block) -> int:
    """The traces a fraud proof may name: the winner's and every share claim."""
    return len(block.header.work) + len(block.shares)


def trace_of(block: Block, claim_index: int) -> TraceRef:
    header = block.header
    if claim_index < len(header.work):
        claim = header.work[claim_index]
        leaves = block.proofs[claim_index].leaves
        return TraceRef(header.miner, claim.attempt, claim.task_id, leaves)
    share = block.shares[claim_index - len(header.work)]
    return TraceRef(share_miner(share), share.attempt, share.task_id, share.leaves)


def unit_seed_of(block: Block, claim_index: int, unit_index: int) -> bytes:
    """The chained seed of one unit of a block's trace (the winner's or a share claim's)."""
    trace = trace_of(block, claim_index)
    prefixes = prefix_commitments(trace.leaves[:unit_index])
    leaf = trace.leaves[unit_index]
    return unit_seed(
        block.header.prev_hash,
        trace.miner,
        trace.attempt,
        unit_index,
        prefixes[unit_index],
        leaf.commitment,
    )


def check_fraud_proof(
    params: ConsensusParams,
    proof: FraudProof,
    state: LedgerState,
    height: int,
    load_block: BlockLoader,
    device: str = "cpu",
) -> int:
    """Check a fraud proof for a block at `height` on `state` (the parent's); return the guilty
    block's height. Raises FraudError naming the rule."""
    if len(proof.state) > params.max_opening_bytes:
        raise FraudError(
            f"fraud proof: state of {len(proof.state)} bytes exceeds {params.max_opening_bytes}"
        )
    block = load_block(proof.block_hash)
    try:
        record = fraud_target(
            state,
            proof,
            block.header if block is not None else None,
            height,
            params.reward_maturity,
        )
    except StateError as exc:
        raise FraudError(exc.reason) from None
    assert block is not None
    if proof.claim_index >= claim_count(block):
        name = proof.block_hash.hex()[:16]
        raise FraudError(f"fraud proof: block {name} has no claim {proof.claim_index}")
    trace = trace_of(block, proof.claim_index)
    if proof.unit_index >= len(trace.leaves):
        raise FraudError(f"fraud proof: claim {proof.claim_index} has no unit {proof.unit_index}")
    leaf = trace.leaves[proof.unit_index]
    if state_hash(proof.state) != leaf.input_hash:
        raise FraudError(f"fraud proof: the state does not hash to unit {proof.unit_index}'s input")
    task_record = state.tasks.get(trace.task_id)
    if task_record is None:
        raise FraudError(f"fraud proof: task {trace.task_id.hex()} is unknown")
    task = task_for_spec(task_record.spec)
    check = verify_unit(
        task, proof.state, unit_seed_of(block, proof.claim_index, proof.unit_index), leaf, device
    )
    if check.ok:
        raise FraudError(
            f"fraud proof: unit {proof.unit_index} of block {proof.block_hash.hex()[:16]} "
            "reproduces its leaf: no fraud"
        )
    return record.height


def find_fraud(
    block: Block,
    start_state: bytes,
    device: str = "cpu",
    *,
    on_unit: Callable[[int], bool] | None = None,
    spec: bytes,
    claim_index: int = 0,
) -> tuple[int, bytes] | None:
    """Replay every unit of one claim of `block` (0: the winner's; every claim starts from the
    task's state at the parent, `start_state`): (unit index, its input state) of the first unit
    that does not reproduce its leaf, else None.

    A leaf whose input does not follow on from the replayed state cannot be reached honestly
    either: the unit before it is then the one that does not reproduce (its output differs).
    `on_unit(u)` is called after each unit; returning False stops the replay (None is returned).
    """
    task = task_for_spec(spec)
    trace = trace_of(block, claim_index)
    prefixes = prefix_commitments(trace.leaves[:-1])
    state = start_state
    for u, leaf in enumerate(trace.leaves):
        seed = unit_seed(
            block.header.prev_hash, trace.miner, trace.attempt, u, prefixes[u], leaf.commitment
        )
        check = verify_unit(task, state, seed, leaf, device)
        if not check.ok or check.output_state is None:
            return u, state
        state = check.output_state
        if on_unit is not None and not on_unit(u):
            return None
    return None


def block_start_state(
    block: Block, spec: bytes, load_blob: Callable[[bytes], bytes | None]
) -> bytes | None:
    """The task state claim 0 of `block` starts from (its leaf 0 input): a stored blob, or the
    task's initial state; None when this node does not hold it."""
    start = block.proofs[0].leaves[0].input_hash
    blob = load_blob(start)
    if blob is None:
        initial = initial_state(spec)
        blob = initial if state_hash(initial) == start else None
    return blob
