"""`pouw bench chain`: transaction signing, verifying, encoding, decoding, and block connection.

The raw `cryptography` Ed25519 verify rate is measured in the same run, so the table shows what
the chain's own layers (encoding, hashing, key parsing) cost on top of the signature check.
"""

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chain.address import address_of
from chain.block import (
    NO_SIGNATURE,
    Block,
    BlockHeader,
    WorkClaim,
    WorkProof,
    header_commitment,
    sign_header,
    tx_root,
)
from chain.keys import PrivateKey
from chain.state import apply_block, default_task_record, genesis_state
from chain.storage import ChainStore
from chain.tx import Transaction, make_transfer
from chain.types import BlockHash
from useful_work.hashing import ZERO_HASH, int_bytes, tagged_hash
from useful_work.specs import TrainSpec, encode_spec
from useful_work.trace import Leaf, trace_root

CHAIN_ID = tagged_hash("bench-chain")
TXS_PER_BLOCK = 1000


def _rate(fn: Callable[[], object], count: int) -> float:
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


def _keys(n: int) -> list[PrivateKey]:
    return [PrivateKey.from_bytes(tagged_hash("bench-key", int_bytes(i))) for i in range(n)]


def _transfers(keys: list[PrivateKey], count: int, first_nonce: int = 0) -> list[Transaction]:
    """`count` transfers round-robin over the keys, each to the next key's address."""
    addresses = [address_of(k.public_key()) for k in keys]
    txs = []
    for i in range(count):
        s = i % len(keys)
        nonce = first_nonce + i // len(keys)
        txs.append(
            make_transfer(
                keys[s], CHAIN_ID, nonce, 10 + i % 7, addresses[(s + 1) % len(keys)], 1000 + i
            )
        )
    return txs


def _tx_rates(n: int) -> dict[str, float]:
    keys = _keys(100)
    txs: list[Transaction] = []
    sign = _rate(lambda: txs.extend(_transfers(keys, n)), n)
    fresh = [Transaction.from_bytes(tx.to_bytes()) for tx in txs]  # no cached encodings
    verify = _rate(lambda: all(tx.signature_ok() for tx in fresh), n)
    encoded: list[bytes] = []
    encode = _rate(lambda: encoded.extend(tx.to_bytes() for tx in fresh), n)
    decode = _rate(lambda: [Transaction.from_bytes(b) for b in encoded], n)
    raw_key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    raw_pub = raw_key.public_key()
    messages = [tagged_hash("bench-msg", int_bytes(i)) for i in range(n)]
    signatures = [raw_key.sign(m) for m in messages]
    raw_verify = _rate(
        lambda: [raw_pub.verify(s, m) for s, m in zip(signatures, messages, strict=True)], n
    )
    return {
        "tx_sign_per_s": sign,
        "tx_verify_per_s": verify,
        "tx_encode_per_s": encode,
        "tx_decode_per_s": decode,
        "raw_ed25519_verify_per_s": raw_verify,
    }


def _connect_rates(blocks: int) -> dict[str, float]:
    keys = _keys(TXS_PER_BLOCK)
    miner = PrivateKey.from_bytes(tagged_hash("bench-miner"))
    task = default_task_record(encode_spec(TrainSpec()))
    state = genesis_state(CHAIN_ID, {address_of(k.public_key()): 10**15 for k in keys}, task)
    genesis = Block(
        sign_header(_header(0, BlockHash(ZERO_HASH), miner, state.root, [], ()), miner), (), ()
    )
    prepared = []  # signed in advance: the timing covers apply_block and the atomic write only
    for b in range(blocks):
        prepared.append(_transfers(keys, TXS_PER_BLOCK, first_nonce=b))
    with tempfile.TemporaryDirectory(prefix="pouw-bench-") as tmp:
        store = ChainStore(tmp)
        store.init_genesis(genesis, state, chain_work=1)
        parent = genesis.header
        elapsed = 0.0
        for b, txs in enumerate(prepared):
            shell = _header(parent.height + 1, parent.hash, miner, ZERO_HASH, txs, ())
            committed = header_commitment(shell.tx_root, shell.time_ms, shell.payout)
            leaves = _leaves(task.state_hash if b == 0 else parent.work[0].trace_root, b, committed)
            claim = WorkClaim(task.task_id, len(leaves), trace_root(leaves))
            header = _header(parent.height + 1, parent.hash, miner, ZERO_HASH, txs, (claim,))
            header = replace(header, task_state=leaves[-1].output_hash)
            block = Block(sign_header(header, miner), tuple(txs), (WorkProof(tuple(leaves), ()),))
            start = time.perf_counter()
            new_state, undo = apply_block(state, block, subsidy=5_000_000_000)
            _ = new_state.root  # what a validator compares with the header's state_root
            store.connect_block(block, undo, new_state, chain_work=parent.height + 2)
            elapsed += time.perf_counter() - start
            state, parent = store.state(), block.header
        store.close()
    return {
        "connect_blocks_per_s": blocks / elapsed,
        "connect_tx_per_s": blocks * TXS_PER_BLOCK / elapsed,
    }


def _header(height: int, prev: BlockHash, miner: PrivateKey, root: bytes, txs, work) -> BlockHeader:
    return BlockHeader(
        version=1,
        height=height,
        prev_hash=prev,
        time_ms=1_700_000_000_000 + height * 10_000,
        target=1 << 255,
        miner=address_of(miner.public_key()),
        miner_key=miner.public_key().raw,
        payout=address_of(miner.public_key()),
        tx_root=tx_root(txs),
        state_root=root,
        work=tuple(work),
        signature=NO_SIGNATURE,
    )


def _leaves(start: bytes, salt: int, commitment: bytes) -> list[Leaf]:
    """A chained trace of 4 units (hashes only: this bench measures the ledger, not the work)."""
    leaves, current = [], start
    for u in range(4):
        out = tagged_hash("bench-out", current, int_bytes(salt), int_bytes(u))
        leaves.append(Leaf(current, out, tagged_hash("bench-digest", out), commitment))
        current = out
    return leaves


def run(json_out: bool = False, quick: bool = False) -> dict:
    """Measure everything once; return the figures (per second), JSON-ready either way.

    `json_out` is accepted for symmetry with the other `pouw bench` runners; `main` prints.
    """
    results = _tx_rates(2_000 if quick else 20_000)
    results.update(_connect_rates(3 if quick else 10))
    results["quick"] = quick
    return results


ROWS = (
    ("tx_sign_per_s", "transaction sign", "tx/s"),
    ("tx_verify_per_s", "transaction verify (encode + hash + Ed25519)", "tx/s"),
    ("raw_ed25519_verify_per_s", "raw cryptography Ed25519 verify", "sig/s"),
    ("tx_encode_per_s", "transaction encode", "tx/s"),
    ("tx_decode_per_s", "transaction decode (canonical check)", "tx/s"),
    ("connect_blocks_per_s", f"connect block of {TXS_PER_BLOCK} transfers", "blocks/s"),
    ("connect_tx_per_s", "  same, per transaction (apply + atomic write)", "tx/s"),
)


def format_table(results: dict) -> str:
    lines = [f"{'measure':<48} {'rate':>12}  unit", "-" * 70]
    for key, label, unit in ROWS:
        value = results[key]
        lines.append(f"{label:<48} {value:>12,.{1 if value < 100 else 0}f}  {unit}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pouw bench chain", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    results = run(json_out=args.json, quick=args.quick)
    print(json.dumps(results, indent=2) if args.json else format_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
