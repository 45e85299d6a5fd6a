"""Tasks a wallet user can follow, on a real node: pending from the mempool right after submit,
unique id prefixes, --follow / --wait to completion, a partial result pinned to one state, and a
DataLoader batch of a downloaded dataset straight into the downloaded model."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from framework import REPO, ApiError, wait_until

pytestmark = pytest.mark.integration

COIN = 100_000_000
NOT_READY = 10
SCENE = ("--image-size", "16", "--max-objects", "2")


def _funded(pouw, start_node, name: str = "owner"):
    owner = pouw("wallet", "create", "-w", name, "--json").json()["address"]
    node = start_node(owner)
    wait_until(
        lambda: node.get(f"/api/accounts/{owner}")["balance"] >= 5 * COIN,
        60,
        "rewards mined to the owner",
    )
    return owner, node


def test_pending_task_prefixes_follow_and_wait(pouw, start_node, wallet_env, tmp_path):
    owner, node = _funded(pouw, start_node)
    url = node.api_url
    node.pause_mining()
    r = pouw(
        "task",
        "submit",
        "render",
        "--count",
        "32",
        *SCENE,
        "--bounty",
        "0.5",
        "-w",
        "owner",
        "--node",
        url,
        "--json",
    )
    assert r.code == 0, r.err
    task_id = r.json()["task_id"]
    prefix = task_id[:6]

    # Right after submit, the task is pending (its transaction is in the mempool), under its prefix
    # too.
    r = pouw("task", "status", prefix, "--node", url)
    assert r.code == 0, r.err
    assert (
        f"task {task_id}" in r.out and "pending: its transaction is in the node's mempool" in r.out
    )
    assert pouw("task", "status", prefix, "--node", url, "--json").json()["status"] == "pending"
    listing = pouw("task", "list", "--node", url, "--json").json()
    assert [t["task_id"] for t in listing["pending"]] == [task_id]
    assert "pending" in pouw("task", "list", "--node", url).out
    r = pouw("task", "result", prefix, "-o", tmp_path / "early", "--node", url)
    assert r.code == NOT_READY and "pending" in r.err and not (tmp_path / "early").exists()
    with pytest.raises(ApiError) as exc:
        node.get(f"/api/tasks/{prefix}/manifest")
    assert exc.value.status == 409

    # Followed by a real `pouw` process from pending to done (mining resumes meanwhile).
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p2p.cli",
            "task",
            "status",
            prefix,
            "--follow",
            "--interval",
            "0.3",
            "--timeout",
            "90",
            "--node",
            url,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Mining resumes once the follower has reported the task pending (a fixed wait raced a
        # slow start under load); the follower's own --timeout bounds the reads.
        early = []
        while line := follower.stderr.readline():
            early.append(line)
            if line.startswith(f"task {task_id[:8]}: "):
                break
        node.admin("mining", {"enabled": True})
        out, err = follower.communicate(timeout=120)
        err = "".join(early) + err
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0, err
    seen = [line for line in err.splitlines() if line.startswith(f"task {task_id[:8]}: ")]
    assert (
        seen[0].startswith(f"task {task_id[:8]}: pending (in the mempool); 0/2 units")
        and "done; 2/2 units" in seen[-1]
    ), err
    assert "status   done at height" in out

    # submit --wait: one command from signing to the finished task (JSON: the submission and the
    # final status).
    r = pouw(
        "task",
        "submit",
        "train",
        "--steps",
        "16",
        "--batch-size",
        "8",
        *SCENE,
        "--bounty",
        "0.5",
        "--wait",
        "--interval",
        "0.3",
        "--timeout",
        "90",
        "-w",
        "owner",
        "--node",
        url,
        "--json",
    )
    assert r.code == 0, r.err
    waited = r.json()
    assert (
        waited["sent"]
        and waited["final"]["status"] == "done"
        and waited["final"]["units_done"] >= 8
    )
    assert waited["final"]["heldout"]["images"] == 1024 and waited["final"]["heldout"]["step"] >= 16

    # A prefix that names nothing, or too short a one, is a clear error.
    r = pouw(
        "task",
        "status",
        "ffffffffff" if not task_id.startswith("ff") else "eeeeeeeeee",
        "--node",
        url,
    )
    assert r.code == NOT_READY and "no task with id prefix" in r.err
    r = pouw("task", "status", "abc", "--node", url)
    assert r.code == 2 and "prefix of at least 4" in r.err


def test_ambiguous_prefixes_are_refused_naming_matches():
    from p2p.api import ApiError as NodeApiError
    from p2p.api import _id_or_prefix, _unique

    ids = [
        bytes.fromhex("abcd" + "0" * 60),
        bytes.fromhex("abce" + "0" * 60),
        bytes.fromhex("abcd" + "1" * 60),
    ]
    assert _unique("abce", ids, "task") == ids[1]
    with pytest.raises(
        NodeApiError, match=r"task id prefix abcd is ambiguous: 2 match \(abcd0000, abcd1111\)"
    ):
        _unique("abcd", ids, "task")
    with pytest.raises(NodeApiError, match="no task with id prefix abcf"):
        _unique("abcf", ids, "task")
    assert _id_or_prefix("ABCD", "task id") == (None, "abcd")
    for bad in ("abc", "xyzw", "a" * 65):
        with pytest.raises(NodeApiError):
            _id_or_prefix(bad, "task id")


def test_partial_result_is_pinned_to_one_state(pouw, start_node, wallet_env, tmp_path):
    owner, node = _funded(pouw, start_node)
    url = node.api_url
    r = pouw(
        "task",
        "submit",
        "train",
        "--steps",
        "4000",
        "--batch-size",
        "8",
        *SCENE,
        "--bounty",
        "1",
        "-w",
        "owner",
        "--node",
        url,
        "--json",
    )
    assert r.code == 0, r.err
    task_id = r.json()["task_id"]
    wait_until(
        lambda: node.get(f"/api/tasks/{task_id[:8]}")["units_done"] >= 4, 60, "the task under way"
    )
    r = pouw(
        "task",
        "result",
        task_id[:8],
        "--partial",
        "-o",
        tmp_path / "partial.pt",
        "--node",
        url,
        "--json",
    )
    assert r.code == 0, r.err
    got = r.json()
    # The file, the figure measured here and the node's figure are all of the one state the download
    # took.
    assert (
        got["node_heldout"]["step"] == got["step"]
        and got["height"] >= 1
        and got["units_done"] * 2 == got["step"]
    )
    assert got["heldout"]["accuracy"] == got["node_heldout"]["exported_accuracy"]
    assert got["heldout"]["correct"] == got["node_heldout"]["exported_correct"]
    text = pouw(
        "task", "result", task_id[:8], "--partial", "-o", tmp_path / "again.pt", "--node", url
    ).out
    assert "the task's state at height" in text and "of the same state" in text
    # Later the task has moved on; the pinned state still scores as it did.
    wait_until(
        lambda: node.get(f"/api/tasks/{task_id}")["units_done"] * 2 > got["step"],
        60,
        "the task moving on",
    )
    pinned = node.get(f"/api/tasks/{task_id}/metrics?state={got['state_hash']}")
    current = node.get(f"/api/tasks/{task_id}/metrics")
    assert pinned["state_hash"] == got["state_hash"] and pinned["heldout"]["step"] == got["step"]
    assert current["heldout"]["step"] > got["step"]
    with pytest.raises(ApiError) as exc:
        node.get(f"/api/tasks/{task_id}/metrics?state={'ab' * 32}")
    assert exc.value.status == 404


def test_dataloader_batch_into_the_downloaded_model_scores_what_the_chain_reports(
    pouw, start_node, wallet_env, tmp_path
):
    from torch.utils.data import DataLoader

    from useful_work.export_dataset import RenderedDataset
    from useful_work.export_model import MODEL_INPUT, InputTransform, load_model, predict_exported

    owner, node = _funded(pouw, start_node)
    url = node.api_url
    common = ("-w", "owner", "--node", url, "--json")
    r = pouw("task", "submit", "render", "--count", "512", *SCENE, "--bounty", "0.5", *common)
    assert r.code == 0, r.err
    render_id = r.json()["task_id"]
    r = pouw(
        "task",
        "submit",
        "train",
        "--steps",
        "160",
        "--batch-size",
        "16",
        *SCENE,
        "--bounty",
        "0.5",
        "--wait",
        "--interval",
        "0.5",
        "--timeout",
        "120",
        *common,
    )
    assert r.code == 0, r.err
    train = r.json()
    reported = train["final"]["heldout"]
    assert pouw("task", "status", render_id, "--follow", "--timeout", "60", "--node", url).code == 0
    assert pouw("task", "result", render_id, "-o", tmp_path / "ds", "--node", url).code == 0
    r = pouw(
        "task", "result", train["task_id"], "-o", tmp_path / "model.pt", "--node", url, "--json"
    )
    assert r.code == 0, r.err

    # The model file records the transform the loader applies by default.
    ck = torch.load(tmp_path / "model.pt", weights_only=True)
    assert ck["config"]["normalization"] == MODEL_INPUT.to_json() == {"mean": 128.0, "scale": 128.0}
    assert InputTransform.of_checkpoint(ck) == MODEL_INPUT
    net = load_model(tmp_path / "model.pt")
    ds = RenderedDataset(tmp_path / "ds", target="lights")
    images, labels = next(iter(DataLoader(ds, batch_size=len(ds), shuffle=False)))
    with torch.no_grad():
        predicted = net(images)[:, :3].argmax(dim=1)
    accuracy = float((predicted == labels).double().mean())
    # The same predictions as the node's own pipeline on the raw pixels...
    raw = torch.from_numpy(ds.data.images)
    counts, _ = predict_exported(net, raw)
    assert torch.equal(predicted + 1, counts)
    # ...and the same accuracy as the chain reports for the model, within sampling error of the two
    # samples.
    p, n = reported["exported_accuracy"], len(ds)
    sigma = math.sqrt(max(p * (1 - p), 0.05) * (1 / n + 1 / reported["images"]))
    print(
        f"\nDataLoader batch of {n} downloaded images -> downloaded model: accuracy "
        f"{accuracy:.3f}; the chain reports {p:.3f} on its {reported['images']} held-out images "
        f"(4 sigma = {4 * sigma:.3f})"
    )
    assert abs(accuracy - p) <= 4 * sigma
    # The old mismatch (pixels in 0..1 fed to a model that expects (p - 128) / 128) changes what the
    # model predicts.
    unit_range = RenderedDataset(
        tmp_path / "ds", target="lights", verify=False, transform=InputTransform(0.0, 255.0)
    )
    wrong_images, _ = next(iter(DataLoader(unit_range, batch_size=len(ds))))
    with torch.no_grad():
        wrong = net(wrong_images)[:, :3].argmax(dim=1)
    assert not torch.equal(wrong, predicted)
