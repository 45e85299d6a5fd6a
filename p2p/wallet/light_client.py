"""A wallet's own check of a balance: headers verified from genesis, then the account's proof.

The wallet derives the genesis block from the network's parameters (a preset or TOML file it
holds, not the node's word), fetches the node's best chain of headers and checks each one with
the consensus header rules (link, height, time, target, ticket, signature), then checks the
account's state-tree proof against the state root of a header it verified. A node that reports
another balance or nonce than its own state holds, or a proof for another root, is caught.

What it does not prove: that the chain is the network's best (a node can show an older valid
chain: the verified height and time say how recent it is), nor the validity of the blocks'
bodies and work (a light client trusts that the work behind valid tickets was checked by
validating nodes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chain.block import BlockHeader
from chain.encoding import DecodeError
from chain.smt import Proof, verify
from chain.state import Account
from chain.state_view import account_key, value_hash
from consensus.genesis import build_genesis
from consensus.params import ConsensusParams
from consensus.validation import InvalidBlock, ParentInfo, check_header, median_time_past


class VerifyFailed(Exception):
    """What the node sent does not check out; the message says which part and how."""


def verify_header_chain(
    params: ConsensusParams, encoded: list[bytes], now_ms: int
) -> list[BlockHeader]:
    """Decode and check headers 0 .. n: genesis as derived here, then each by the header rules."""
    genesis = build_genesis(params).block.header
    headers: list[BlockHeader] = []
    for height, raw in enumerate(encoded):
        try:
            header = BlockHeader.from_bytes(raw)
        except DecodeError as exc:
            raise VerifyFailed(f"header {height} does not decode: {exc}") from None
        if height == 0:
            if header.hash != genesis.hash:
                raise VerifyFailed(
                    f"the node's genesis {header.hash.hex()[:16]} is not {params.network}'s "
                    f"({genesis.hash.hex()[:16]})"
                )
        else:
            parent = headers[-1]
            if header.prev_hash != parent.hash:
                raise VerifyFailed(f"header {height} does not link to header {height - 1}")
            try:
                check_header(params, header, _parent_info(params, headers), now_ms)
            except InvalidBlock as exc:
                raise VerifyFailed(f"header {height} breaks a header rule: {exc}") from None
        headers.append(header)
    return headers


def _parent_info(params: ConsensusParams, headers: list[BlockHeader]) -> ParentInfo:
    parent = headers[-1]
    times = [h.time_ms for h in headers[-params.median_time_span :]][::-1]
    grandparent_time = headers[-2].time_ms if len(headers) > 1 else parent.time_ms
    return ParentInfo(
        parent.hash,
        parent.height,
        parent.time_ms,
        parent.target,
        grandparent_time,
        median_time_past(times),
    )


@dataclass(frozen=True)
class VerifiedAccount:
    balance: int
    nonce: int
    height: int
    block_hash: bytes


def verify_account(
    headers: list[BlockHeader], address: bytes, answer: dict[str, Any]
) -> VerifiedAccount:
    """Check the node's account answer (with `proof`) against the verified headers."""
    proof_json = answer.get("proof")
    if not isinstance(proof_json, dict):
        raise VerifyFailed("the node sent no proof (does it run protocol 3?)")
    try:
        height = int(proof_json["height"])
        block_hash = bytes.fromhex(proof_json["block"])
        record_hex = proof_json["account"]
        record = Account.from_bytes(bytes.fromhex(record_hex)) if record_hex is not None else None
        proof = Proof(
            tuple(bytes.fromhex(s) for s in proof_json["siblings"]),
            bytes.fromhex(proof_json["leaf_key"]) if proof_json["leaf_key"] is not None else None,
            bytes.fromhex(proof_json["leaf_value"])
            if proof_json["leaf_value"] is not None
            else None,
        )
        Proof.from_bytes(proof.to_bytes())  # lengths and counts within the schema
    except (KeyError, TypeError, ValueError) as exc:
        raise VerifyFailed(f"the node's proof is malformed: {exc}") from None
    if not 0 <= height < len(headers) or headers[height].hash != block_hash:
        raise VerifyFailed(
            f"the proof is for block {block_hash.hex()[:16]} at height {height}, "
            "which is not on the header chain this wallet verified"
        )
    root = headers[height].state_root
    leaf = value_hash(record.to_bytes()) if record is not None else None
    if not verify(root, account_key(address), leaf, proof):
        raise VerifyFailed(
            f"the proof does not match the state root of block {height} ({root.hex()[:16]})"
        )
    proven = record if record is not None else Account(0, 0)
    if (answer.get("balance"), answer.get("nonce")) != (proven.balance, proven.nonce):
        raise VerifyFailed(
            f"the node reported balance {answer.get('balance')} and nonce {answer.get('nonce')}, "
            f"its proof shows balance {proven.balance} and nonce {proven.nonce} at height {height}"
        )
    return VerifiedAccount(proven.balance, proven.nonce, height, block_hash)
