"""Fixtures for the p2p integration tests: real node processes, stopped at test end."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from framework import NodeProcess, write_network  # noqa: E402


@pytest.fixture
def make_node(tmp_path):
    nodes: list[NodeProcess] = []
    default_network = write_network(tmp_path / "fast-now.toml")

    def factory(name: str | None = None, **kw) -> NodeProcess:
        name = name or f"node{len(nodes)}"
        kw.setdefault("network", default_network)
        node = NodeProcess(tmp_path / name, name=name, **kw)
        nodes.append(node)
        return node

    yield factory
    for node in nodes:
        node.shut_down(timeout=20)
