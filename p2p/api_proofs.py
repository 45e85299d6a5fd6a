"""What a light client needs from the API: headers by height, and an account with its proof.

A wallet that checks these (p2p.wallet.light_client) trusts no node for a balance: it verifies the
headers itself from genesis (links, targets, tickets, signatures) and the account's tree proof
against the state root of a header it verified.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chain.state import LedgerState

if TYPE_CHECKING:
    from consensus.chainstate import ChainState

MAX_HEADERS_PAGE = 2_000


def headers_page(chain: ChainState, start: int, limit: int) -> dict[str, Any]:
    """Canonical header encodings of the best chain from `start`, at most `limit`."""
    tip = chain.tip.height
    out = []
    for height in range(start, min(tip, start + limit - 1) + 1):
        h = chain.hash_at(height)
        header = chain.header(h) if h else None
        if header is None:
            break
        out.append(header.to_bytes().hex())
    return {"tip": tip, "start": start, "headers": out}


def tip_state(chain: ChainState, tries: int = 5) -> tuple[LedgerState, bytes, int] | None:
    """(state, tip hash, height) read together: the state's root is the tip header's."""
    for _ in range(tries):
        state, tip = chain.state, chain.tip
        header = chain.header(tip.hash)
        if header is not None and header.state_root == state.root:
            return state, tip.hash, tip.height
    return None


def account_proof_json(
    state: LedgerState, block_hash: bytes, height: int, address: bytes
) -> dict[str, Any]:
    """The account's record (null: absent) and its tree proof against the block's state root."""
    proof = state.prove_account(address)
    record = state.accounts.get(address)
    return {
        "block": block_hash.hex(),
        "height": height,
        "state_root": state.root.hex(),
        "account": record.to_bytes().hex() if record is not None else None,
        "siblings": [s.hex() for s in proof.siblings],
        "leaf_key": proof.leaf_key.hex() if proof.leaf_key is not None else None,
        "leaf_value": proof.leaf_value.hex() if proof.leaf_value is not None else None,
    }
