"""Block headers, work claims and proofs, blocks; header signing, hashes and structural checks.

The block hash is H("block", signed header encoding), so header-only checks (ticket, signature)
need no body. The miner's key signs H("header-sig", unsigned header encoding): a wrong unit in
a signed block is evidence against that key.
"""

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Annotated

from useful_work.hashing import HASH_SIZE, tagged_hash
from useful_work.merkle import merkle_proof, merkle_root, verify_merkle_proof
from useful_work.trace import LEAF_SIZE, Leaf, leaves_chain, state_hash, trace_root

from chain.address import ADDRESS_SIZE
from chain.encoding import U32, U64, U256, Bytes, ListOf, Nested, Packed, Record, VarBytes, encode_unsigned
from chain.keys import PrivateKey, verify_signature
from chain.tx import Transaction

MAX_CLAIMS = 16
MAX_TXS = 100_000
MAX_LEAVES = 1 << 16
MAX_OPENINGS = 64
MAX_STATE_BYTES = 1 << 26  # one opened task state (weights plus optimizer state)
NO_SIGNATURE = bytes(64)


class BlockStructureError(ValueError):
    """A block whose parts do not fit together (counts, roots, openings); `reason` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class WorkClaim(Record):
    task_id: Annotated[bytes, Bytes(HASH_SIZE)]
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
    prev_hash: Annotated[bytes, Bytes(HASH_SIZE)]
    time_ms: Annotated[int, U64]
    target: Annotated[int, U256]
    miner: Annotated[bytes, Bytes(ADDRESS_SIZE)]
    miner_key: Annotated[bytes, Bytes(32)]
    tx_root: Annotated[bytes, Bytes(HASH_SIZE)]
    state_root: Annotated[bytes, Bytes(HASH_SIZE)]
    work: Annotated[tuple[WorkClaim, ...], ListOf(Nested(WorkClaim), MAX_CLAIMS)]
    signature: Annotated[bytes, Bytes(64)]

    @cached_property
    def hash(self) -> bytes:
        return tagged_hash("block", self.to_bytes())

    def sig_hash(self) -> bytes:
        return tagged_hash("header-sig", encode_unsigned(self))

    def signature_ok(self) -> bool:
        return verify_signature(self.miner_key, self.signature, self.sig_hash())


@dataclass(frozen=True)
class Block(Record):
    header: Annotated[BlockHeader, Nested(BlockHeader)]
    txs: Annotated[tuple[Transaction, ...], ListOf(Nested(Transaction), MAX_TXS)]
    proofs: Annotated[tuple[WorkProof, ...], ListOf(Nested(WorkProof), MAX_CLAIMS)]

    @property
    def hash(self) -> bytes:
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


def check_block_structure(block: Block) -> None:
    """Rules that tie a block's parts together, needing no state; raises BlockStructureError."""
    header = block.header
    if len(block.proofs) != len(header.work):
        raise BlockStructureError(f"{len(block.proofs)} work proofs for {len(header.work)} claims")
    for i, (claim, proof) in enumerate(zip(header.work, block.proofs, strict=True)):
        _check_proof(i, claim, proof)
    if tx_root(block.txs) != header.tx_root:
        raise BlockStructureError("tx_root does not match the transactions")


def _check_proof(i: int, claim: WorkClaim, proof: WorkProof) -> None:
    if claim.unit_count < 1:
        raise BlockStructureError(f"claim {i}: no units")
    if claim.unit_count != len(proof.leaves):
        raise BlockStructureError(f"claim {i}: unit_count {claim.unit_count} but {len(proof.leaves)} leaves")
    broken = leaves_chain(proof.leaves, proof.leaves[0].input_hash)
    if broken is not None:
        raise BlockStructureError(f"claim {i}: leaf {broken} does not start from the previous leaf's output")
    if trace_root(proof.leaves) != claim.trace_root:
        raise BlockStructureError(f"claim {i}: trace_root does not match the leaves")
    previous = -1
    for opening in proof.openings:
        if not previous < opening.unit_index < len(proof.leaves):
            raise BlockStructureError(
                f"claim {i}: opening of unit {opening.unit_index} out of order or out of range"
            )
        if state_hash(opening.state) != proof.leaves[opening.unit_index].input_hash:
            raise BlockStructureError(f"claim {i}: opened state of unit {opening.unit_index} does not match its leaf")
        previous = opening.unit_index
