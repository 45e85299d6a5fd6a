"""Fees: the mempool's minimum relay fee and fee estimate, GET /api/fees, the wallet's default fee
(the node's estimate) and its guards, on a real node."""

from __future__ import annotations

import pytest
from framework import wait_until
from wallet_kit import PASSWORD

from chain.address import address_of
from chain.keys import PrivateKey
from chain.state import default_task_record, genesis_state
from chain.tx import make_transfer
from useful_work.hashing import tagged_hash
from useful_work.specs import TrainSpec, encode_spec

USAGE, REJECTED, NEEDS_YES = 2, 7, 13
COIN = 100_000_000
CHAIN_ID = tagged_hash("fees-test", b"chain")


def _key(i: int) -> PrivateKey:
    return PrivateKey.from_bytes(tagged_hash("fees-test", bytes([i])))


def test_mempool_minimum_relay_fee_and_estimate():
    from chain.mempool import Mempool, TxRejected

    keys = [_key(i) for i in range(6)]
    state = genesis_state(
        CHAIN_ID,
        {address_of(k.public_key()): 10 * COIN for k in keys},
        default_task_record(encode_spec(TrainSpec())),
    )
    to = address_of(_key(99).public_key())
    pool = Mempool(1 << 20, min_fee_rate=5)
    cheap = make_transfer(keys[0], CHAIN_ID, 0, 5 * 100, to, 1000)
    with pytest.raises(
        TxRejected,
        match=rf"fee 500 is below this node's minimum relay fee of {5 * cheap.size} for "
        rf"{cheap.size} bytes \(5 per byte\)",
    ):
        pool.add(cheap, state, CHAIN_ID)
    ok = make_transfer(keys[0], CHAIN_ID, 0, 5 * 200, to, 1000)
    pool.add(ok, state, CHAIN_ID)
    assert pool.fee_estimate(1 << 20) == 5  # the pool fits in a block: the minimum is enough
    for i, rate in enumerate((10, 20, 30, 40), start=1):
        pool.add(make_transfer(keys[i], CHAIN_ID, 0, rate * 180, to, 1000), state, CHAIN_ID)
    size = ok.size
    # Room for two transactions: outbid the third best rate (20 per byte, slightly more per byte
    # after rounding).
    estimate = pool.fee_estimate(2 * size + size // 2)
    third = sorted((e.rate for e in pool._entries.values()), reverse=True)[2]
    assert third < estimate <= third + 1


def test_wallet_fee_default_minimum_and_guards(pouw, start_node, wallet_env, tmp_path):
    payer = pouw("wallet", "create", "-w", "payer", "--json").json()["address"]
    other = pouw("wallet", "create", "-w", "other", "--json").json()["address"]
    node = start_node(payer, extra=("--min-relay-fee-rate", "7"))
    url = node.api_url
    fees = node.get("/api/fees")
    assert (
        fees["min_relay_fee_rate"] == 7
        and fees["estimate_fee_rate"] == 7
        and fees["block_room_bytes"] > 0
    )
    # More than the 100 POUW fee below: that send must meet the fee guard, not a short balance.
    wait_until(
        lambda: node.get(f"/api/accounts/{payer}")["balance"] >= 101 * COIN,
        60,
        "rewards mined to the payer",
    )

    # No --fee: the node's estimate for this very transaction (rate x size).
    r = pouw("wallet", "send", "other", "1", "-w", "payer", "--node", url, "--json")
    assert r.code == 0, r.err
    sent = r.json()
    tx = node.get(f"/api/txs/{sent['txid'][:10]}")["tx"]  # a unique prefix finds the transaction
    assert sent["fee_source"] == "estimate" and sent["fee"]["units"] == 7 * tx["size"] == tx["fee"]

    # Below the minimum: refused by the wallet with the minimum, and by the node for a transaction
    # sent anyway.
    r = pouw("wallet", "send", "other", "1", "--fee", "0", "-w", "payer", "--node", url)
    assert (
        r.code == USAGE
        and "below the node's minimum relay fee of 0.0000116" in r.err
        and "7 base units per byte" in r.err
    ), r.err
    from p2p.wallet.client import NodeClient
    from p2p.wallet.errors import TxRejectedByNode
    from p2p.wallet.keystore import Keystore

    client = NodeClient(url)
    signer = Keystore(wallet_env).unlock("payer", PASSWORD)[1]
    account = client.account(payer)
    low = make_transfer(
        signer,
        bytes.fromhex(client.status()["chain_id"]),
        account["next_nonce"],
        100,
        address_of(signer.public_key()),
        1,
    )
    with pytest.raises(TxRejectedByNode, match="below this node's minimum relay fee"):
        client.submit_tx(low.to_bytes())

    # A fee 200x the amount, or above 1 POUW, needs --yes; nothing is sent without it.
    next_nonce = client.account(payer)[
        "next_nonce"
    ]  # nonce + pending: unchanged by blocks, moved by a send
    r = pouw("wallet", "send", "other", "0.5", "--fee", "100", "-w", "payer", "--node", url)
    assert r.code == NEEDS_YES and "more than 1 POUW" in r.err and "pass --yes" in r.err
    r = pouw("wallet", "send", "other", "0.01", "--fee", "0.005", "-w", "payer", "--node", url)
    assert (
        r.code == NEEDS_YES
        and "is 50% of the amount 0.01 POUW" in r.err
        and "the node's estimate is" in r.err
    )
    assert client.account(payer)["next_nonce"] == next_nonce
    r = pouw(
        "wallet",
        "send",
        "other",
        "0.01",
        "--fee",
        "0.005",
        "--yes",
        "-w",
        "payer",
        "--node",
        url,
        "--json",
    )
    assert r.code == 0 and r.json()["fee"]["units"] == 500_000
    # The estimate itself never trips the share guard, even on a tiny amount.
    r = pouw("wallet", "send", "other", "0.00001", "-w", "payer", "--node", url, "--json")
    assert r.code == 0 and r.json()["fee"]["units"] > 1000 - 1, r.err
    # The same guards on a task's bounty.
    r = pouw(
        "task",
        "submit",
        "render",
        "--count",
        "4",
        "--image-size",
        "16",
        "--bounty",
        "0.01",
        "--fee",
        "0.5",
        "-w",
        "payer",
        "--node",
        url,
    )
    assert r.code == NEEDS_YES and "of the bounty 0.01 POUW" in r.err
    assert other
