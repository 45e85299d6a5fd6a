"""Block headers, work claims and proofs, blocks; header signing, hashes and structural checks.

The block hash is H("block", unsigned header encoding): the signature is not part of a block's
identity, so nobody (not even the miner, whose Ed25519 signatures could vary) can publish two
versions of one block, and a relayed header with a broken signature is a bad message, not a
different block. The miner's key signs H("header-sig", unsigned header encoding).

A body either matches its header's commitments (`check_body_matches`: the transaction root, the
trace roots, the openings hash to their leaves) or it is not this block's body at all: a bad
message from whoever sent it. Only a matching body can make a block invalid (`check_proof_rules`).
"""

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Annotated

from chain.address import ADDRESS_SIZE
from chain.encoding import (
    U32,
    U64,
    U256,
    Bytes,
    ListOf,
    Nested,
    Packed,
    Record,
    VarBytes,
    encode_unsigned,
)
from chain.keys import PrivateKey, verify_signature
from chain.tx import Transaction
from chain.types import Address, BlockHash, RawPublicKey, TaskId
from useful_work.hashing import HASH_SIZE, ZERO_HASH, int_bytes, tagged_hash
from useful_work.merkle import merkle_proof, merkle_root, verify_merkle_proof
from useful_work.trace import (
    LEAF_SIZE,
    Leaf,
    leaves_chain,
    prefix_trace_roots,
    state_hash,
    trace_root,
)

MAX_CLAIMS = 16
MAX_SHARE_CLAIMS = 1024  # share claims one block may carry (consensus: max_share_claims)
MAX_SHARES_PER_CLAIM = 1 << 12
MAX_TXS = 100_000
MAX_LEAVES = 1 << 16
MAX_OPENINGS = 64
MAX_STATE_BYTES = 1 << 26  # one opened task state (weights plus optimizer state)
NO_SIGNATURE = bytes(64)
EMPTY_SHARES_ROOT = merkle_root([])


class BlockStructureError(ValueError):
    """A block whose parts do not fit together (counts, roots, openings); `reason` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BodyMismatch(BlockStructureError):
    """A body that does not match its header's commitments: not this block's body."""


@dataclass(frozen=True)
class WorkClaim(Record):
    task_id: Annotated[TaskId, Bytes(HASH_SIZE)]
    unit_count: Annotated[int, U32]
    trace_root: Annotated[bytes, Bytes(HASH_SIZE)]
    attempt: Annotated[int, U32] = 0  # which of the miner's traces on this parent: each is new work


@dataclass(frozen=True)
class Opening(Record):
    """The input state of unit `unit_index`, for a verifier to re-execute it."""

    unit_index: Annotated[int, U32]
    state: Annotated[bytes, VarBytes(MAX_STATE_BYTES)]


@dataclass(frozen=True)
class WorkProof(Record):
    leaves: Annotated[tuple[Leaf, ...], ListOf(Packed(Leaf, LEAF_SIZE), MAX_LEAVES)]
    openings: Annotated[tuple[Opening, ...], ListOf(Nested(Opening), MAX_OPENINGS)]


@dataclass(frozen=True)
class BlockHeader(Record):
    version: Annotated[int, U32]
    height: Annotated[int, U64]
    prev_hash: Annotated[BlockHash, Bytes(HASH_SIZE)]
    time_ms: Annotated[int, U64]
    target: Annotated[int, U256]
    miner: Annotated[
        Address, Bytes(ADDRESS_SIZE)
    ]  # the address of miner_key; the unit seeds commit to it
    miner_key: Annotated[RawPublicKey, Bytes(32)]
    payout: Annotated[
        Address, Bytes(ADDRESS_SIZE)
    ]  # where the reward goes; the header commitment covers it
    tx_root: Annotated[bytes, Bytes(HASH_SIZE)]
    state_root: Annotated[bytes, Bytes(HASH_SIZE)]
    work: Annotated[tuple[WorkClaim, ...], ListOf(Nested(WorkClaim), MAX_CLAIMS)]
    shares_root: Annotated[bytes, Bytes(HASH_SIZE)] = EMPTY_SHARES_ROOT  # root over share claim ids
    task_state: Annotated[bytes, Bytes(HASH_SIZE)] = ZERO_HASH  # the task's state after the work
    signature: Annotated[bytes, Bytes(64)] = NO_SIGNATURE

    @cached_property
    def hash(self) -> BlockHash:
        return BlockHash(tagged_hash("block", encode_unsigned(self)))

    def sig_hash(self) -> bytes:
        return tagged_hash("header-sig", encode_unsigned(self))

    def signature_ok(self) -> bool:
        return verify_signature(self.miner_key, self.signature, self.sig_hash())


@dataclass(frozen=True)
class ShareClaim(Record):
    """Another miner's trace on the block's parent that ends at a share (a prefix ticket under
    the share target), with the openings a verifier re-executes. `shares` lists the units whose
    prefix tickets are shares (increasing, the last unit last); the miner is the key's address,
    and the key signs everything but the openings (which the leaves fix)."""

    parent_hash: Annotated[BlockHash, Bytes(HASH_SIZE)]
    task_id: Annotated[TaskId, Bytes(HASH_SIZE)]
    attempt: Annotated[int, U32]
    payout: Annotated[Address, Bytes(ADDRESS_SIZE)]
    shares: Annotated[tuple[int, ...], ListOf(U32, MAX_SHARES_PER_CLAIM)]
    leaves: Annotated[tuple[Leaf, ...], ListOf(Packed(Leaf, LEAF_SIZE), MAX_LEAVES)]
    openings: Annotated[tuple[Opening, ...], ListOf(Nested(Opening), MAX_OPENINGS)]
    miner_key: Annotated[RawPublicKey, Bytes(32)]
    signature: Annotated[bytes, Bytes(64)]

    @cached_property
    def trace_root(self) -> bytes:
        return trace_root(self.leaves)

    @cached_property
    def share_roots(self) -> dict[int, bytes]:
        """The trace root of each listed share's prefix (units 0 .. u), hashed once a claim."""
        return prefix_trace_roots(self.leaves, self.shares)

    @cached_property
    def sig_hash(self) -> bytes:
        """What the key signs: the claim without its openings and signature."""
        shares = b"".join(int_bytes(u) for u in self.shares)
        return tagged_hash(
            "share-sig",
            self.parent_hash,
            self.task_id,
            int_bytes(self.attempt),
            self.payout,
            int_bytes(len(self.shares)),
            shares,
            int_bytes(len(self.leaves)),
            self.trace_root,
            self.miner_key,
        )

    @cached_property
    def claim_id(self) -> bytes:
        """What the header commits to (through `shares_root`): signed content and signature."""
        return tagged_hash("share-claim", self.sig_hash, self.signature)

    def signature_ok(self) -> bool:
        return verify_signature(self.miner_key, self.signature, self.sig_hash)


def sign_share_claim(claim: ShareClaim, key: PrivateKey) -> ShareClaim:
    """The claim with `key` as miner_key and its signature filled in."""
    unsigned = replace(claim, miner_key=key.public_key().raw, signature=NO_SIGNATURE)
    return replace(unsigned, signature=key.sign(unsigned.sig_hash))


def shares_root(claims: tuple[ShareClaim, ...] | list[ShareClaim]) -> bytes:
    return merkle_root([c.claim_id for c in claims])


@dataclass(frozen=True)
class Block(Record):
    header: Annotated[BlockHeader, Nested(BlockHeader)]
    txs: Annotated[tuple[Transaction, ...], ListOf(Nested(Transaction), MAX_TXS)]
    proofs: Annotated[tuple[WorkProof, ...], ListOf(Nested(WorkProof), MAX_CLAIMS)]
    shares: Annotated[tuple[ShareClaim, ...], ListOf(Nested(ShareClaim), MAX_SHARE_CLAIMS)] = ()

    @property
    def hash(self) -> BlockHash:
        return self.header.hash


def sign_header(header: BlockHeader, key: PrivateKey) -> BlockHeader:
    """The header with `key` as miner_key and its signature filled in."""
    unsigned = replace(header, miner_key=key.public_key().raw, signature=NO_SIGNATURE)
    return replace(unsigned, signature=key.sign(unsigned.sig_hash()))


def tx_root(txs: tuple[Transaction, ...] | list[Transaction]) -> bytes:
    return merkle_root([tx.txid for tx in txs])


def tx_proof(txs: tuple[Transaction, ...] | list[Transaction], index: int) -> list[bytes]:
    """Inclusion proof of txs[index] under `tx_root(txs)`, for `verify_tx_proof`."""
    return merkle_proof([tx.txid for tx in txs], index)


def verify_tx_proof(txid: bytes, index: int, count: int, proof: list[bytes], root: bytes) -> bool:
    return verify_merkle_proof(txid, index, count, proof, root)


def header_commitment(
    tx_root_: bytes, time_ms: int, payout: bytes, shares_root_: bytes = EMPTY_SHARES_ROOT
) -> bytes:
    """c = H("header-commit", tx root, time, payout, shares root): what a miner's units commit to
    of the header it will publish (the rest follows from the parent, the rules and the trace; the
    task state from the claims), so the share claims it carries cannot change after a win."""
    return tagged_hash("header-commit", tx_root_, int_bytes(time_ms), payout, shares_root_)


def check_body_matches(block: Block) -> None:
    """The body is the one the header commits to: counts, trace roots, tx root, openings in order
    and hashing to their leaves. Raises BodyMismatch (a bad message, never an invalid block)."""
    header = block.header
    if len(block.proofs) != len(header.work):
        raise BodyMismatch(f"{len(block.proofs)} work proofs for {len(header.work)} claims")
    for i, (claim, proof) in enumerate(zip(header.work, block.proofs, strict=True)):
        if claim.unit_count != len(proof.leaves):
            raise BodyMismatch(
                f"claim {i}: unit_count {claim.unit_count} but {len(proof.leaves)} leaves"
            )
        if trace_root(proof.leaves) != claim.trace_root:
            raise BodyMismatch(f"claim {i}: trace_root does not match the leaves")
        previous = -1
        for opening in proof.openings:
            if not previous < opening.unit_index < len(proof.leaves):
                raise BodyMismatch(
                    f"claim {i}: opening of unit {opening.unit_index} out of order or out of range"
                )
            if state_hash(opening.state) != proof.leaves[opening.unit_index].input_hash:
                raise BodyMismatch(
                    f"claim {i}: opened state of unit {opening.unit_index} does not match its leaf"
                )
            previous = opening.unit_index
    if tx_root(block.txs) != header.tx_root:
        raise BodyMismatch("tx_root does not match the transactions")
    if shares_root(block.shares) != header.shares_root:
        raise BodyMismatch("shares_root does not match the share claims")
    for i, share in enumerate(block.shares):
        _openings_match(f"share claim {i}", share.leaves, share.openings)


def _openings_match(what: str, leaves: tuple[Leaf, ...], openings: tuple[Opening, ...]) -> None:
    previous = -1
    for opening in openings:
        if not previous < opening.unit_index < len(leaves):
            raise BodyMismatch(
                f"{what}: opening of unit {opening.unit_index} out of order or out of range"
            )
        if state_hash(opening.state) != leaves[opening.unit_index].input_hash:
            raise BodyMismatch(
                f"{what}: opened state of unit {opening.unit_index} does not match its leaf"
            )
        previous = opening.unit_index


def check_proof_rules(block: Block) -> None:
    """Rules on a matching body's traces: at least one unit, the leaves chain, and the winner (the
    last leaf) was run for this very header. Raises BlockStructureError."""
    header = block.header
    committed = header_commitment(header.tx_root, header.time_ms, header.payout, header.shares_root)
    for i, (claim, proof) in enumerate(zip(header.work, block.proofs, strict=True)):
        if claim.unit_count < 1:
            raise BlockStructureError(f"claim {i}: no units")
        broken = leaves_chain(proof.leaves, proof.leaves[0].input_hash)
        if broken is not None:
            raise BlockStructureError(
                f"claim {i}: leaf {broken} does not start from the previous leaf's output"
            )
        if proof.leaves[-1].commitment != committed:
            raise BlockStructureError(
                f"claim {i}: the winning unit was run for another header "
                "(transactions, time, payout or share claims)"
            )
    winner_out = block.proofs[0].leaves[-1].output_hash if block.proofs else header.task_state
    if not block.shares and header.task_state != winner_out:
        raise BlockStructureError(
            "task_state is not the winning unit's output (a block without share claims)"
        )
    for i, share in enumerate(block.shares):
        if not share.leaves:
            raise BlockStructureError(f"share claim {i}: no units")
        broken = leaves_chain(share.leaves, share.leaves[0].input_hash)
        if broken is not None:
            raise BlockStructureError(
                f"share claim {i}: leaf {broken} does not start from the previous leaf's output"
            )


def check_block_structure(block: Block) -> None:
    """Both of the above: the body matches the header, and its traces keep the rules."""
    check_body_matches(block)
    check_proof_rules(block)
