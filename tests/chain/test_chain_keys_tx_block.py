"""Keys, addresses, transactions and blocks: signatures hold only for what was signed."""

from __future__ import annotations

from dataclasses import replace

import pytest
from chain_kit import (
    CHAIN_ID,
    MINER,
    OTHER_CHAIN_ID,
    addr,
    chained_leaves,
    header,
    make_keys,
    render_spec,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.address import TEXT_LENGTH, AddressError, address_of, format_address, parse_address
from chain.block import (
    Block,
    BlockStructureError,
    BodyMismatch,
    Opening,
    WorkClaim,
    WorkProof,
    check_block_structure,
    header_commitment,
    sign_header,
    tx_proof,
    tx_root,
    verify_tx_proof,
)
from chain.keys import InvalidKey, PrivateKey, PublicKey, verify_signature
from chain.tx import (
    SubmitTask,
    Transaction,
    Transfer,
    TxError,
    check_tx,
    make_submit_task,
    make_transfer,
)
from useful_work.hashing import ZERO_HASH
from useful_work.trace import Leaf, state_hash, trace_root

ALICE, BOB = make_keys(2, "kt")

# --- keys ----------------------------------------------------------------------------------------


def test_sign_and_verify_round_trip_and_key_bytes():
    key = PrivateKey.generate()
    again = PrivateKey.from_bytes(key.to_bytes())
    assert again.public_key() == key.public_key()
    sig = key.sign(b"message")
    assert len(sig) == 64
    assert key.public_key().verify(sig, b"message")
    assert not key.public_key().verify(sig, b"messagE")
    assert not again.public_key().verify(sig[:-1] + bytes([sig[-1] ^ 1]), b"message")
    assert not PrivateKey.generate().public_key().verify(sig, b"message")
    assert repr(key) == "PrivateKey()"  # the seed never shows in logs


def test_bad_key_bytes():
    with pytest.raises(InvalidKey):
        PrivateKey.from_bytes(b"short")
    with pytest.raises(InvalidKey):
        PublicKey(bytes(31))
    assert (
        verify_signature(b"\xff" * 32, bytes(64), b"m") is False
    )  # not a curve point: False, no exception
    assert verify_signature(ALICE.public_key().raw, b"x" * 63, b"m") is False


# --- addresses -----------------------------------------------------------------------------------


def test_address_text_round_trip():
    a = addr(ALICE)
    assert a == address_of(ALICE.public_key().raw) and len(a) == 20
    text = format_address(a)
    assert text.startswith("pw") and len(text) == TEXT_LENGTH == 41
    assert parse_address(text) == a


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=20, max_size=20), st.data())
def test_any_single_character_typo_is_rejected(address, data):
    text = format_address(address)
    i = data.draw(st.integers(2, len(text) - 1))
    ch = data.draw(st.sampled_from([c for c in "abcdefghijklmnopqrstuvwxyz234567" if c != text[i]]))
    with pytest.raises(AddressError):
        parse_address(text[:i] + ch + text[i + 1 :])


def test_malformed_address_texts_have_clear_errors():
    text = format_address(addr(BOB))
    with pytest.raises(AddressError, match="must start with 'pw'"):
        parse_address("px" + text[2:])
    with pytest.raises(AddressError, match="has 40 characters, expected 41"):
        parse_address(text[:-1])
    with pytest.raises(AddressError, match=r"invalid character '1' at position 5"):
        parse_address(text[:5] + "1" + text[6:])
    with pytest.raises(AddressError, match="invalid character"):
        parse_address(text.upper().replace("PW", "pw", 1))
    swapped = text[:10] + text[11] + text[10] + text[12:]
    if swapped != text:
        with pytest.raises(AddressError, match="bad checksum"):
            parse_address(swapped)
    with pytest.raises(AddressError):
        parse_address(b"pw" + b"a" * 39)  # type: ignore[arg-type]


# --- transactions --------------------------------------------------------------------------------


def test_transfer_signature_and_ids():
    tx = make_transfer(ALICE, CHAIN_ID, 3, 10, addr(BOB), 500)
    assert tx.sender == addr(ALICE) and tx.cost == 510
    assert tx.signature_ok()
    check_tx(tx, CHAIN_ID)
    decoded = Transaction.from_bytes(tx.to_bytes())
    assert decoded.txid == tx.txid and decoded.signature_ok()
    assert make_transfer(ALICE, CHAIN_ID, 3, 10, addr(BOB), 500) == tx  # Ed25519 is deterministic


@pytest.mark.parametrize(
    "change",
    [
        dict(nonce=4),
        dict(fee=11),
        dict(payload=Transfer(b"\x01" * 20, 500)),
        dict(payload=Transfer(b"\x00" * 20, 501)),
        dict(sender_key=BOB.public_key().raw),
        dict(kind=1),
    ],
    ids=["nonce", "fee", "to", "amount", "sender", "kind"],
)
def test_tampered_fields_break_the_signature(change):
    tx = make_transfer(ALICE, CHAIN_ID, 3, 10, bytes(20), 500)
    if change.get("kind") == 1:
        change = dict(kind=1, payload=SubmitTask(bytes(20), 500))  # same payload fields, other kind
    bad = replace(tx, **change)
    assert not bad.signature_ok()
    with pytest.raises(TxError, match="^bad signature$"):
        check_tx(bad, CHAIN_ID)
    assert bad.txid != tx.txid


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 63), st.integers(0, 7))
def test_any_flipped_signature_bit_is_rejected(byte, bit):
    tx = make_transfer(ALICE, CHAIN_ID, 0, 1, addr(BOB), 2)
    sig = bytearray(tx.signature)
    sig[byte] ^= 1 << bit
    assert not replace(tx, signature=bytes(sig)).signature_ok()


def test_a_transaction_signed_for_one_chain_fails_on_another():
    tx = make_transfer(ALICE, CHAIN_ID, 0, 1, addr(BOB), 2)
    with pytest.raises(TxError, match="^wrong chain id$"):
        check_tx(tx, OTHER_CHAIN_ID)
    relabelled = replace(tx, chain_id=OTHER_CHAIN_ID)  # same signature, claimed for the other chain
    with pytest.raises(TxError, match="^bad signature$"):
        check_tx(relabelled, OTHER_CHAIN_ID)
    assert tx.sig_hash() != relabelled.sig_hash()


def test_submit_task_checks_its_spec():
    tx = make_submit_task(ALICE, CHAIN_ID, 0, 5, render_spec(4), 1000)
    check_tx(tx, CHAIN_ID)
    assert tx.cost == 1005
    with pytest.raises(TxError, match=r"^bad task spec: spec: not valid msgpack"):
        check_tx(make_submit_task(ALICE, CHAIN_ID, 0, 5, b"\xc1", 1000), CHAIN_ID)
    from useful_work.specs import TrainSpec, encode_spec

    open_ended = make_submit_task(ALICE, CHAIN_ID, 0, 5, encode_spec(TrainSpec(units=0)), 1000)
    with pytest.raises(TxError, match="at least 1 unit"):
        check_tx(open_ended, CHAIN_ID)


def test_cost_overflow_and_out_of_schema_fields():
    tx = make_transfer(ALICE, CHAIN_ID, 0, 2**63, addr(BOB), 2**63)
    with pytest.raises(TxError, match="overflows u64"):
        check_tx(tx, CHAIN_ID)
    with pytest.raises(TxError, match=r"^malformed: Transaction.fee: expected u64, got -1$"):
        check_tx(replace(tx, fee=-1), CHAIN_ID)


# --- blocks --------------------------------------------------------------------------------------


def _block(txs=(), units=3, openings=(), leaves=None):
    shell = header(1, b"p" * 32, tx_root=tx_root(txs))
    committed = header_commitment(shell.tx_root, shell.time_ms, shell.payout)
    leaves = leaves if leaves is not None else chained_leaves(b"s" * 32, units, b"salt", committed)
    claim = WorkClaim(b"t" * 32, len(leaves), trace_root(leaves))
    h = replace(shell, work=(claim,), task_state=leaves[-1].output_hash if leaves else ZERO_HASH)
    return Block(sign_header(h, MINER), tuple(txs), (WorkProof(tuple(leaves), tuple(openings)),))


def test_header_signature_and_hash():
    block = _block()
    h = block.header
    assert h.signature_ok() and h.miner_key == MINER.public_key().raw
    assert block.hash == h.hash and len(h.hash) == 32
    assert not replace(h, time_ms=h.time_ms + 1).signature_ok()
    assert not replace(h, miner=bytes(20)).signature_ok()
    assert not replace(h, payout=bytes(20)).signature_ok()
    # The signature is not part of the block's identity: nobody can make a second version of a
    # block.
    broken = replace(h, signature=bytes(64))
    assert broken.hash == h.hash and not broken.signature_ok()
    assert replace(h, time_ms=h.time_ms + 1).hash != h.hash
    assert not replace(h, miner_key=ALICE.public_key().raw).signature_ok()
    decoded = Block.from_bytes(block.to_bytes())
    assert decoded == block and decoded.hash == block.hash


def test_structure_check_accepts_a_good_block():
    txs = [make_transfer(ALICE, CHAIN_ID, n, 1, addr(BOB), 5) for n in range(5)]
    check_block_structure(_block(txs))


def _swap_last_two(leaves):
    return leaves[:1] + leaves[2:] + leaves[1:2]


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda b: replace(b, proofs=()), "0 work proofs for 1 claims"),
        (
            lambda b: replace(b, header=replace(b.header, tx_root=ZERO_HASH)),
            "tx_root does not match the transactions",
        ),
        (lambda b: replace(b, txs=b.txs[:1]), "tx_root does not match the transactions"),
        (
            lambda b: replace(
                b, header=replace(b.header, work=(replace(b.header.work[0], unit_count=2),))
            ),
            "claim 0: unit_count 2 but 3 leaves",
        ),
        (
            lambda b: replace(
                b, header=replace(b.header, work=(replace(b.header.work[0], trace_root=ZERO_HASH),))
            ),
            "claim 0: trace_root does not match the leaves",
        ),
        (
            lambda b: replace(b, proofs=(WorkProof(_swap_last_two(b.proofs[0].leaves), ()),)),
            "claim 0: trace_root does not match the leaves",
        ),
    ],
)
def test_body_mismatches_name_the_problem(mutate, reason):
    txs = [make_transfer(ALICE, CHAIN_ID, n, 1, addr(BOB), 5) for n in range(2)]
    with pytest.raises(BodyMismatch) as err:
        check_block_structure(mutate(_block(txs)))
    assert err.value.reason == reason


def test_proof_rules_on_a_matching_body():
    txs = [make_transfer(ALICE, CHAIN_ID, n, 1, addr(BOB), 5) for n in range(2)]
    good = _block(txs).proofs[0].leaves
    with pytest.raises(
        BlockStructureError, match="claim 0: leaf 1 does not start from the previous leaf's output"
    ) as err:
        check_block_structure(_block(txs, leaves=_swap_last_two(good)))
    assert not isinstance(err.value, BodyMismatch)
    # The winning leaf was run for another header: other transactions, time or payout.
    other = chained_leaves(b"s" * 32, 3, b"salt", header_commitment(ZERO_HASH, 5, bytes(20)))
    with pytest.raises(BlockStructureError, match="the winning unit was run for another header"):
        check_block_structure(_block(txs, leaves=other))


def test_openings_must_match_their_leaves_and_be_ordered():
    state0 = b"initial task state"
    shell = header(1, ZERO_HASH)
    leaves = chained_leaves(
        state_hash(state0), 3, b"x", header_commitment(shell.tx_root, shell.time_ms, shell.payout)
    )
    claim = WorkClaim(b"t" * 32, 3, trace_root(leaves))

    def block(openings):
        header_ = replace(shell, work=(claim,), task_state=leaves[-1].output_hash)
        return Block(header_, (), (WorkProof(leaves, tuple(openings)),))

    check_block_structure(block([Opening(0, state0)]))
    with pytest.raises(BlockStructureError, match="opened state of unit 1 does not match its leaf"):
        check_block_structure(block([Opening(1, state0)]))
    with pytest.raises(BlockStructureError, match="out of order or out of range"):
        check_block_structure(block([Opening(0, state0), Opening(0, state0)]))
    with pytest.raises(BlockStructureError, match="out of order or out of range"):
        check_block_structure(block([Opening(3, state0)]))
    empty = Block(
        header(1, ZERO_HASH, work=(WorkClaim(b"t" * 32, 0, trace_root([])),)),
        (),
        (WorkProof((), ()),),
    )
    with pytest.raises(BlockStructureError, match="claim 0: no units"):
        check_block_structure(empty)


@pytest.mark.parametrize("count", [1, 2, 3, 7, 16])
def test_transaction_inclusion_proofs(count):
    txs = [make_transfer(ALICE, CHAIN_ID, n, 1, addr(BOB), 5) for n in range(count)]
    root = tx_root(txs)
    for i, tx in enumerate(txs):
        proof = tx_proof(txs, i)
        assert verify_tx_proof(tx.txid, i, count, proof, root)
        assert not verify_tx_proof(tx.txid, (i + 1) % count, count, proof, root) or count == 1
        assert not verify_tx_proof(b"\x00" * 32, i, count, proof, root)


def test_leaf_type_is_the_shared_one():
    block = _block()
    assert all(isinstance(leaf, Leaf) for leaf in block.proofs[0].leaves)
