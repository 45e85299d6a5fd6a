"""Audits with real nodes: a poisoner's blocks pass the spot checks, an auditing node replays
them, its fraud proofs are mined, the poisoner's rewards are gone and the task is back on an
honest line on every node; the customer's dataset, every unit re-rendered from the chain's seeds,
checks out against the chain's task state. (In-process, tests/consensus/test_fraud.py replays
every unit of a rewound task from its initial state, bit for bit.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from framework import REPO, wait_until, write_network

from chain.address import address_of, format_address, parse_address
from chain.keys import PrivateKey
from chain.tx import make_submit_task
from useful_work.hashing import tagged_hash
from useful_work.specs import RenderSpec, encode_spec

pytestmark = pytest.mark.integration

UNITS = 150  # of the paid render task: a dozen blocks or more, so that the poisoner works on it
CUSTOMER = PrivateKey.from_bytes(tagged_hash("audit-test-customer"))


def metric(node, name: str) -> float:
    for line in node.request("GET", "/metrics").decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{node.name} reports no {name}")


def test_auditor_proves_poisoned_blocks_and_the_task_is_rewound_everywhere(make_node, tmp_path):
    network = write_network(
        tmp_path / "audit.toml",
        [(format_address(address_of(CUSTOMER.public_key())), 10**9)],
        reward_maturity=40,
        block_interval_ms=1000,
        initial_units_per_block=12,
    )
    honest = make_node("honest", network=network).start(mine=True).wait_ready()
    auditor = (
        make_node("auditor", network=network)
        .start(peers=[honest.p2p_addr], extra=["--audit", "--audit-share", "1"])
        .wait_ready()
    )
    poisoner = (
        make_node("poisoner", network=network)
        .start(peers=[honest.p2p_addr], mine=True, extra=["--poison-at", "1"])
        .wait_ready()
    )
    bad = format_address(parse_address(poisoner.status()["miner_address"]))

    def poisoned_blocks(task: str | None = None) -> int:
        blocks = honest.get("/api/blocks?limit=100")["blocks"]
        return sum(1 for b in blocks if b["miner"] == bad and (task is None or task in b["tasks"]))

    wait_until(poisoned_blocks, 90, "a poisoned block on the honest node's chain")
    # A paid render task, submitted while only the poisoner mines, so that it poisons the task.
    honest.pause_mining()
    status = honest.status()
    spec = encode_spec(RenderSpec(units=UNITS, images_per_unit=1, image_size=16, max_objects=2))
    submit = make_submit_task(
        CUSTOMER, bytes.fromhex(status["chain_id"]), 0, 10_000, spec, 100 * UNITS
    )
    honest.request("POST", "/api/txs", {"tx": submit.to_bytes().hex()})
    task_id = submit.txid.hex()
    # The poisoner's blocks on the paid task get onto the chain (the spot checks miss the jump) ...
    wait_until(
        lambda: poisoned_blocks(task_id),
        60,
        "a poisoned block of the paid task on the honest node's chain",
    )
    # ... the auditor proves them, and the honest miner mines the proofs and redoes the units.
    wait_until(
        lambda: metric(auditor, "pouw_audit_proofs_found_total") >= 2,
        60,
        "the auditor's fraud proofs",
    )
    poisoner.pause_mining()
    honest.admin("mining", {"enabled": True})
    wait_until(
        lambda: honest.get(f"/api/tasks/{task_id}")["status"] == "done", 120, "the paid task done"
    )
    wait_until(
        lambda: (
            auditor.status()["audit"]["lag_blocks"] == 0
            and metric(auditor, "pouw_audit_proofs_included_total")
            == metric(auditor, "pouw_audit_proofs_found_total")
        ),
        60,
        "every fraud proof mined and the auditor caught up",
    )
    # A proof mined after the task was done rewinds it: done again, on the honest work only.
    wait_until(
        lambda: honest.get(f"/api/tasks/{task_id}")["status"] == "done",
        120,
        "the paid task done after the last fraud proof",
    )
    top = honest.pause_mining()
    wait_until(
        lambda: all(n.height() == top for n in (auditor, poisoner)),
        30,
        "every node at the honest tip",
    )

    # The poisoner's rewards are gone: it has neither balance nor immature rewards.
    account = honest.get(f"/api/accounts/{bad}")
    assert account["balance"] == 0 and account["immature"] == 0, account

    # Every node holds the same task states; the auditor vouches for every credited block.
    default_task = honest.status()["active_task"]["task_id"]
    views = {
        node.name: [node.get(f"/api/tasks/{t}") for t in (task_id, default_task)]
        for node in (honest, auditor, poisoner)
    }
    assert len({tuple(v["state_hash"] for v in vs) for vs in views.values()}) == 1, views
    paid = views["auditor"][0]
    assert paid["status"] == "done" and paid["paid"] == paid["bounty"]
    assert paid["audit"]["rolled_back_blocks"] >= 1 and paid["audit"]["fully_audited"], paid[
        "audit"
    ]
    assert all(
        v[0]["audit"]["rolled_back_blocks"] == paid["audit"]["rolled_back_blocks"]
        for v in views.values()
    )

    # The customer's dataset checks out against the chain: every unit of the task's credited
    # blocks re-rendered from its seed gives the leaf's digest, and the digests give the task's
    # state.
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "p2p.cli",
            "task",
            "result",
            submit.txid.hex(),
            "--node",
            auditor.api_url,
            "--output",
            str(tmp_path / "dataset"),
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    result = json.loads(out.stdout)
    assert result["verified"] and result["units"] == UNITS
    assert result["fully_audited"] is True
