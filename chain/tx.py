"""Transactions: transfer, submit-task and fraud proof, signed over the chain id and the unsigned
body.

The signature covers H("tx-sig", chain_id, unsigned body), so a transaction signed for one chain
is invalid on any other. The txid is H("txid", full encoding), signature included.
"""

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Annotated

from chain.address import ADDRESS_SIZE, address_of
from chain.encoding import (
    U32,
    U64,
    U64_MAX,
    Bytes,
    Record,
    UInt,
    VarBytes,
    Variant,
    encode_unsigned,
)
from chain.keys import PrivateKey, verify_signature
from chain.types import Address, BlockHash, RawPublicKey, TxId
from useful_work.hashing import tagged_hash
from useful_work.specs import MAX_SPEC_BYTES, TaskSpecError, parse_spec

TX_TRANSFER = 0
TX_SUBMIT_TASK = 1
TX_FRAUD_PROOF = 2

MAX_FRAUD_STATE_BYTES = (
    1 << 26
)  # the opened input state of the disputed unit (consensus bounds it further)

CHAIN_ID_SIZE = 32
NO_SIGNATURE = bytes(64)


class TxError(ValueError):
    """A transaction that breaks a rule needing no state (chain id, signature, spec); `reason`
    says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Transfer(Record):
    to: Annotated[Address, Bytes(ADDRESS_SIZE)]
    amount: Annotated[int, U64]


@dataclass(frozen=True)
class SubmitTask(Record):
    spec: Annotated[bytes, VarBytes(MAX_SPEC_BYTES)]
    bounty: Annotated[int, U64]


@dataclass(frozen=True)
class FraudProof(Record):
    """Unit `unit_index` of claim `claim_index` of block `block_hash` does not reproduce its leaf
    when re-run from `state` (which must hash to the leaf's input). The sender is the prover."""

    block_hash: Annotated[BlockHash, Bytes(32)]
    claim_index: Annotated[int, U32]
    unit_index: Annotated[int, U32]
    state: Annotated[bytes, VarBytes(MAX_FRAUD_STATE_BYTES)]


Payload = Transfer | SubmitTask | FraudProof


@dataclass(frozen=True)
class Transaction(Record):
    kind: Annotated[int, UInt(8, choices=(TX_TRANSFER, TX_SUBMIT_TASK, TX_FRAUD_PROOF))]
    chain_id: Annotated[bytes, Bytes(CHAIN_ID_SIZE)]
    sender_key: Annotated[RawPublicKey, Bytes(32)]
    nonce: Annotated[int, U64]
    fee: Annotated[int, U64]
    payload: Annotated[
        Payload,
        Variant(
            "kind", {TX_TRANSFER: Transfer, TX_SUBMIT_TASK: SubmitTask, TX_FRAUD_PROOF: FraudProof}
        ),
    ]
    signature: Annotated[bytes, Bytes(64)]

    @cached_property
    def encoded(self) -> bytes:
        return self.to_bytes()

    @cached_property
    def txid(self) -> TxId:
        return TxId(tagged_hash("txid", self.encoded))

    @cached_property
    def sender(self) -> Address:
        return address_of(self.sender_key)

    @property
    def size(self) -> int:
        return len(self.encoded)

    @property
    def value(self) -> int:
        """What the payload takes from the sender besides the fee: the amount, the bounty, or
        nothing (a fraud proof)."""
        if isinstance(self.payload, Transfer):
            return self.payload.amount
        if isinstance(self.payload, SubmitTask):
            return self.payload.bounty
        return 0

    @property
    def is_fraud_proof(self) -> bool:
        return isinstance(self.payload, FraudProof)

    @property
    def cost(self) -> int:
        """Fee plus value: what the sender's balance must cover (may exceed u64; callers check)."""
        return self.fee + self.value

    def sig_hash(self) -> bytes:
        return tagged_hash("tx-sig", self.chain_id, encode_unsigned(self))

    def signature_ok(self) -> bool:
        return verify_signature(self.sender_key, self.signature, self.sig_hash())


def sign_tx(tx: Transaction, key: PrivateKey) -> Transaction:
    """The transaction with `key` as sender and its signature filled in."""
    unsigned = replace(tx, sender_key=key.public_key().raw, signature=NO_SIGNATURE)
    return replace(unsigned, signature=key.sign(unsigned.sig_hash()))


def make_transfer(
    key: PrivateKey, chain_id: bytes, nonce: int, fee: int, to: Address, amount: int
) -> Transaction:
    payload = Transfer(to=to, amount=amount)
    return sign_tx(_unsigned(TX_TRANSFER, chain_id, nonce, fee, payload), key)


def make_submit_task(
    key: PrivateKey, chain_id: bytes, nonce: int, fee: int, spec: bytes, bounty: int
) -> Transaction:
    payload = SubmitTask(spec=spec, bounty=bounty)
    return sign_tx(_unsigned(TX_SUBMIT_TASK, chain_id, nonce, fee, payload), key)


def make_fraud_proof(
    key: PrivateKey,
    chain_id: bytes,
    nonce: int,
    fee: int,
    block_hash: BlockHash,
    claim_index: int,
    unit_index: int,
    state: bytes,
) -> Transaction:
    payload = FraudProof(
        block_hash=block_hash, claim_index=claim_index, unit_index=unit_index, state=state
    )
    return sign_tx(_unsigned(TX_FRAUD_PROOF, chain_id, nonce, fee, payload), key)


def _unsigned(kind: int, chain_id: bytes, nonce: int, fee: int, payload: Payload) -> Transaction:
    return Transaction(kind, chain_id, RawPublicKey(bytes(32)), nonce, fee, payload, NO_SIGNATURE)


def task_units(spec: bytes) -> int:
    """Units a submitted spec asks for; a submitted task must ask for at least one (TxError
    otherwise)."""
    try:
        units = parse_spec(spec).units_total
    except TaskSpecError as exc:
        raise TxError(f"bad task spec: {exc}") from None
    if units < 1:
        raise TxError(
            "bad task spec: a submitted task must ask for at least 1 unit (open-ended is "
            "the default task only)"
        )
    return units


def check_tx(tx: Transaction, chain_id: bytes, *, verify_signature: bool = True) -> None:
    """Rules a transaction must pass whatever the state, cheapest first; raises TxError.

    `verify_signature=False` only where the caller has already verified this signature.
    """
    try:
        _ = tx.encoded
    except ValueError as exc:  # EncodeError: a field out of its schema
        raise TxError(f"malformed: {exc}") from None
    if tx.chain_id != chain_id:
        raise TxError("wrong chain id")
    if tx.cost > U64_MAX:
        raise TxError("fee plus value overflows u64")
    if verify_signature and not tx.signature_ok():
        raise TxError("bad signature")
    if isinstance(tx.payload, SubmitTask):
        task_units(tx.payload.spec)
