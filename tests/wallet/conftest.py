"""Fixtures for the wallet tests: a wallet directory with a cheap scrypt cost, the `pouw` CLI run
in-process (real code, exit codes included), and real node processes from tests/p2p/framework.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from framework import NodeProcess, write_network
from wallet_kit import PASSWORD, TEST_SCRYPT_N, Result


@pytest.fixture
def wallet_env(tmp_path, monkeypatch) -> Path:
    wallet_dir = tmp_path / "wallet"
    monkeypatch.setenv("POUW_WALLET_DIR", str(wallet_dir))
    monkeypatch.setenv("POUW_WALLET_SCRYPT_N", str(TEST_SCRYPT_N))
    monkeypatch.setenv("POUW_WALLET_PASSWORD", PASSWORD)
    monkeypatch.delenv("POUW_WALLET", raising=False)
    monkeypatch.delenv("POUW_NODE", raising=False)
    return wallet_dir


@pytest.fixture
def pouw(capsys, wallet_env, monkeypatch):
    """Run `pouw ARGS...` in this process; returns its exit code, stdout and stderr.

    Standard input is empty and no terminal, as in a script (even under `pytest -s` at a
    terminal): nothing waits for an answer. Prompts are tested in test_wallet_pty.py."""
    import io

    from p2p.cli.main import main

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def start_node(tmp_path) -> Iterator:
    """start_node(miner_address, name, extra) -> a mining NodeProcess on a fast render network
    (fixed difficulty)."""
    nodes: list[NodeProcess] = []
    # A fixed target (no retarget) keeps blocks at ~8 units whatever the task, so a training
    # task's blocks come as quickly as a render task's units allow.
    network = write_network(tmp_path / "wallet-net.toml", retarget_half_life_ms=10**10)

    def factory(miner_address: str, name: str = "node", extra: tuple[str, ...] = ()) -> NodeProcess:
        node = NodeProcess(tmp_path / name, network=network, name=name)
        nodes.append(node)
        return node.start(mine=True, extra=["--miner-address", miner_address, *extra]).wait_ready()

    yield factory
    for node in nodes:
        node.shut_down(timeout=20)
