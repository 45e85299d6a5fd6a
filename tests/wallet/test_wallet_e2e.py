"""End to end on a real node process: wallets, a transfer, histories, user errors, and paid tasks.

The node mines a fast render network to wallet 1; the `pouw` CLI talks to its HTTP API.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch
from framework import wait_until
from wallet_kit import PASSWORD

pytestmark = pytest.mark.integration

COIN = 100_000_000
WRONG_PASSWORD, INSUFFICIENT, BAD_ADDRESS, REJECTED, BAD_SPEC, NOT_FOUND = 3, 4, 5, 7, 8, 10


def _balance(pouw, node, who: str) -> int:
    r = pouw("wallet", "balance", who, "--node", node.api_url, "--json")
    assert r.code == 0, r.err
    return r.json()["balance"]["units"]


def _history(pouw, node, who: str) -> list[dict]:
    items: list[dict] = []
    while True:
        r = pouw(
            "wallet",
            "history",
            who,
            "--node",
            node.api_url,
            "--json",
            "--limit",
            "100",
            "--offset",
            str(len(items)),
        )
        assert r.code == 0, r.err
        page = r.json()
        items += page["items"]
        if len(items) >= page["total"]:
            return items


def _settle(node, quiet_s: float = 1.0) -> None:
    """Wait until no block has arrived for `quiet_s` (a block being mined when mining stopped
    lands first)."""
    last = {"height": node.height(), "since": time.monotonic()}

    def quiet() -> bool:
        h = node.height()
        if h != last["height"]:
            last.update(height=h, since=time.monotonic())
        return time.monotonic() - last["since"] >= quiet_s

    wait_until(quiet, 20, "the chain to stand still", interval=0.1)


def test_two_wallets_transfer_history_and_errors(pouw, start_node, wallet_env, tmp_path):
    one = pouw("wallet", "create", "-w", "one", "--json").json()["address"]
    two = pouw("wallet", "create", "-w", "two", "--json").json()["address"]
    node = start_node(one)
    url = node.api_url
    wait_until(lambda: _balance(pouw, node, "one") >= 20 * COIN, 60, "rewards mined to wallet one")

    # Send 12.5 POUW to wallet two, by name; wait for the block.
    r = pouw(
        "wallet",
        "send",
        "two",
        "12.5",
        "--fee",
        "0.001",
        "-w",
        "one",
        "--node",
        url,
        "--wait",
        "60",
        "--json",
    )
    assert r.code == 0, r.err
    sent = r.json()
    assert sent["status"] == "confirmed" and sent["to"] == two and sent["from"] == one
    assert (
        sent["amount"] == {"units": 1_250_000_000, "pouw": "12.5"}
        and sent["fee"]["units"] == 100_000
    )
    node.admin(
        "mining", {"enabled": False}
    )  # a still chain from here: balances and histories must add up
    _settle(node)

    assert _balance(pouw, node, "two") == 1_250_000_000
    two_history = _history(pouw, node, two)
    assert [(e["kind"], e["amount"], e["counterparty"], e["txid"]) for e in two_history] == [
        ("transfer-in", 1_250_000_000, one, sent["txid"])
    ]
    one_history = _history(pouw, node, "one")
    outs = [e for e in one_history if e["kind"] == "transfer-out"]
    assert [(e["amount"], e["fee"], e["counterparty"], e["txid"], e["height"]) for e in outs] == [
        (1_250_000_000, 100_000, two, sent["txid"], sent["height"])
    ]
    rewards = sum(e["amount"] for e in one_history if e["kind"] == "reward")
    immature = node.get(f"/api/accounts/{one}")["immature"]  # the last rewards have not matured yet
    assert immature > 0
    assert _balance(pouw, node, "one") + immature == rewards - 1_250_000_000 - 100_000
    text = pouw("wallet", "history", "-w", "two", "--node", url).out
    assert "transfer-in" in text and "+12.5 POUW" in text and one in text
    assert "12.5 POUW" in pouw("wallet", "balance", "-w", "two", "--node", url).out

    # A wrong password: a clear error, and the key file stays byte for byte as it was.
    key_file = wallet_env / "one.json"
    before = key_file.read_bytes()
    (tmp_path / "wrong").write_text("not it\n")
    r = pouw(
        "wallet",
        "send",
        "two",
        "1",
        "-w",
        "one",
        "--node",
        url,
        "--password-file",
        tmp_path / "wrong",
    )
    assert r.code == WRONG_PASSWORD and "wrong password" in r.err
    assert key_file.read_bytes() == before

    # More than the balance: refused before signing, with both amounts.
    r = pouw("wallet", "send", "one", "100", "--fee", "0.0001", "-w", "two", "--node", url)
    assert r.code == INSUFFICIENT and "has 12.5 POUW, this needs 100.0001 POUW" in r.err
    # A reused nonce: the node refuses it and says why.
    r = pouw("wallet", "send", "two", "1", "-w", "one", "--node", url, "--nonce", "0")
    assert r.code == REJECTED and "transaction rejected by the node: nonce 0 already used" in r.err
    # A mistyped recipient never reaches the node.
    typo = (
        two[:-2] + two[-1] + two[-2]
        if two[-1] != two[-2]
        else two[:-1] + ("a" if two[-1] != "a" else "b")
    )
    r = pouw("wallet", "send", typo, "1", "-w", "one", "--node", url)
    assert r.code == BAD_ADDRESS and "bad checksum" in r.err
    r = pouw("task", "status", "00" * 32, "--node", url)
    assert r.code == NOT_FOUND and "neither on this node's chain nor in its mempool" in r.err
    assert _balance(pouw, node, "two") == 1_250_000_000


def test_paid_render_and_training_tasks(pouw, start_node, wallet_env, tmp_path):
    from chain.tx import make_submit_task
    from p2p.wallet.client import NodeClient
    from p2p.wallet.errors import ResultMismatch, TxRejectedByNode
    from p2p.wallet.keystore import Keystore
    from p2p.wallet.task_results import check_render_manifest, fetch_manifest
    from useful_work.evaluate import HELDOUT_COUNT, heldout_set
    from useful_work.export_dataset import load_dataset
    from useful_work.specs import RenderSpec, encode_spec, parse_spec

    owner = pouw("wallet", "create", "-w", "owner", "--json").json()["address"]
    node = start_node(owner)
    url = node.api_url
    wait_until(lambda: _balance(pouw, node, "owner") >= 5 * COIN, 60, "rewards mined to the owner")

    # Two tasks signed back to back: the second takes the nonce after the pending first one.
    r = pouw(
        "task",
        "submit",
        "render",
        "--count",
        "12",
        "--images-per-unit",
        "2",
        "--image-size",
        "16",
        "--max-objects",
        "2",
        "--bounty",
        "0.6",
        "-w",
        "owner",
        "--node",
        url,
        "--json",
    )
    assert r.code == 0, r.err
    render = r.json()
    r = pouw(
        "task",
        "submit",
        "train",
        "--steps",
        "24",
        "--batch-size",
        "16",
        "--bounty",
        "1.2",
        "-w",
        "owner",
        "--node",
        url,
        "--json",
    )
    assert r.code == 0, r.err
    train = r.json()
    assert (
        (render["nonce"], train["nonce"]) == (0, 1)
        and render["units"] == 6
        and train["units"] == 12
    )

    # A bounty under the network's minimum per unit is refused by the wallet, and by the node for
    # a transaction that reaches it anyway (it would otherwise sit in the mempool, never mined).
    r = pouw(
        "task",
        "submit",
        "render",
        "--count",
        "12",
        "--images-per-unit",
        "2",
        "--bounty",
        "0.00000005",
        "-w",
        "owner",
        "--node",
        url,
    )
    assert r.code == BAD_SPEC and "below this network's minimum of 0.00000001 per unit" in r.err
    # The wallet shows a task's unit cost and minimum bounty, and refuses units over the limit.
    r = pouw(
        "task",
        "submit",
        "train",
        "--steps",
        "40",
        "--batch-size",
        "64",
        "--bounty",
        "1",
        "-w",
        "owner",
        "--node",
        url,
        "--dry-run",
    )
    assert (
        r.code == 0
        and "unit cost 386,116,608 operations (limit 600,000,000), minimum bounty 0.0000008 POUW "
        "(0.00000004 per unit)"
        in r.out
    )
    r = pouw(
        "task",
        "submit",
        "train",
        "--steps",
        "40",
        "--steps-per-unit",
        "4",
        "--batch-size",
        "64",
        "--bounty",
        "1",
        "-w",
        "owner",
        "--node",
        url,
    )
    assert (
        r.code == BAD_SPEC
        and "unit cost 772,233,216 operations exceeds this network's limit of 600,000,000" in r.err
    )
    client = NodeClient(url)
    status = client.status()
    key = Keystore(wallet_env).unlock("owner", PASSWORD)[1]
    cheap = make_submit_task(
        key, bytes.fromhex(status["chain_id"]), 2, 10_000, encode_spec(RenderSpec(units=6)), 5
    )
    with pytest.raises(
        TxRejectedByNode, match="bounty 5 is below the minimum of 1 per unit for 6 units"
    ):
        client.submit_tx(cheap.to_bytes())

    def done(task_id: str) -> dict | None:
        r = pouw("task", "status", task_id, "--node", url, "--no-metrics", "--json")
        return r.json() if r.code == 0 and r.json()["status"] == "done" else None

    rstat = wait_until(lambda: done(render["task_id"]), 90, "the render task to complete")
    tstat = wait_until(lambda: done(train["task_id"]), 90, "the training task to complete")
    for stat, sub in ((rstat, render), (tstat, train)):
        assert (
            stat["owner"] == owner
            and stat["paid"] == sub["bounty"]
            and stat["units_done"] >= stat["units_total"]
        )
        assert stat["blocks"] >= 1 and stat["completed_height"] >= stat["created_height"]

    # The default task never completes: asking for its result says so.
    default = next(t for t in node.get("/api/tasks")["tasks"] if t["default"])
    r = pouw("task", "result", default["task_id"], "-o", tmp_path / "nothing", "--node", url)
    assert (
        r.code == NOT_FOUND
        and "never completes; pass --partial" in r.err
        and not (tmp_path / "nothing").exists()
    )

    # Render: downloaded by re-rendering from the chain's seeds; every unit matches the chain's
    # digest.
    r = pouw(
        "task", "result", render["task_id"], "-o", tmp_path / "dataset", "--node", url, "--json"
    )
    assert r.code == 0, r.err
    got = r.json()
    assert got["verified"] and got["images"] == 12 and got["units"] == 6
    manifest = fetch_manifest(client, render["task_id"])
    data = load_dataset(tmp_path / "dataset", verify=True, expected_digests=manifest.digests[:6])
    assert data.images.shape == (12, 16, 16, 3) and len(data.labels) == 12
    assert [bytes.fromhex(u.seed) for u in data.units] == manifest.seeds[:6]
    # A manifest whose digests were altered does not match the task's state on chain.
    block = manifest.blocks[0]
    first = block.leaves[0]
    forged_leaf = type(first)(first.input_hash, first.output_hash, bytes(32), first.commitment)
    forged = dataclasses.replace(block, leaves=(forged_leaf,) + block.leaves[1:])
    with pytest.raises(ResultMismatch):
        check_render_manifest(dataclasses.replace(manifest, blocks=(forged,) + manifest.blocks[1:]))

    # Training: the node reports held-out metrics; the downloaded file loads in plain PyTorch and
    # scores at least what the chain reported.
    r = pouw("task", "status", train["task_id"], "--node", url, "--json")
    reported = r.json()["heldout"]
    assert (
        reported["images"] == HELDOUT_COUNT
        and 0 <= reported["accuracy"] <= 1
        and reported["step"] >= 24
    )
    r = pouw(
        "task", "result", train["task_id"], "-o", tmp_path / "model.pt", "--node", url, "--json"
    )
    assert r.code == 0, r.err
    result = r.json()
    assert result["verified"] and result["step"] == reported["step"]
    assert result["heldout"]["accuracy"] >= reported["exported_accuracy"]

    ck = torch.load(tmp_path / "model.pt", weights_only=True)
    cfg = ck["config"]
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.MaxPool2d(2), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.MaxPool2d(2), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(cfg["feat_dim"], cfg["outputs"]),
    )  # fmt: skip
    net.load_state_dict(ck["state_dict"])
    spec = parse_spec(bytes.fromhex(node.get(f"/api/tasks/{train['task_id']}")["spec"]))
    held = heldout_set(spec.scene, HELDOUT_COUNT)
    with torch.no_grad():
        out = net.eval()((held.images.permute(0, 3, 1, 2).float() - 128) / 128)
    accuracy = float((out[:, :3].argmax(1) + 1 == held.counts).double().mean())
    print(
        f"\nheld-out accuracy: downloaded model {accuracy:.4f}, chain reported "
        f"{reported['accuracy']:.4f} (fixed-point) / {reported['exported_accuracy']:.4f} "
        f"(export), after {reported['step']} steps"
    )
    assert accuracy >= reported["exported_accuracy"]  # the chain's figure for the model it exports
    assert (
        accuracy >= reported["accuracy"] - 0.01
    )  # and within 1% of its fixed-point model (>= 99% agreement)
